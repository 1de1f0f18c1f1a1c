using BenchmarkDotNet.Attributes;
using Peft.Runtime.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// Dropout masks for an [N, D] input at p = 0.05: libtorch's <c>bernoulli_</c> (the baseline), against the Philox
/// mask as the kernels use it (bits only) and materialised as a float tensor (tests and the composed fallback).
/// </summary>
public class DropoutMaskBenchmarks
{
    /// <summary>Rows.</summary>
    [Params(2048)]
    public int N { get; set; }

    /// <summary>Columns.</summary>
    [Params(1024)]
    public int D { get; set; }

    private Tensor _buffer = null!;
    private ulong[] _bits = null!;
    private ulong _seed = 1;

    /// <summary>Allocates the buffers.</summary>
    [GlobalSetup]
    public void GlobalSetup()
    {
        _buffer = torch.empty(N, D);
        _bits = new ulong[((long)N * D + 63) / 64];
    }

    /// <summary>libtorch's Bernoulli mask.</summary>
    [Benchmark(Baseline = true, Description = "bernoulli_")]
    public void TorchBernoulli() => _buffer.bernoulli_(0.95);

    /// <summary>Philox mask bits for every element.</summary>
    [Benchmark(Description = "Philox bits")]
    public void PhiloxBits() => new DropoutMask(_seed++, 0.05).DroppedBits(0, _bits);

    /// <summary>The Philox mask as a float tensor.</summary>
    [Benchmark(Description = "Philox float mask")]
    public void PhiloxTensor()
    {
        using var mask = LoRAFunction.MaskTensor(_seed++, 0.05, new long[] { N, D });
    }

    /// <summary>Frees the buffer.</summary>
    [GlobalCleanup]
    public void GlobalCleanup() => _buffer.Dispose();
}
