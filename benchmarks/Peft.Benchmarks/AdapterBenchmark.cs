using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// Forward + backward of a frozen <c>Linear(D, D)</c> (the baseline) and of an adapted layer around it, in the same
/// run, on an [N, D] float32 input that requires grad, as inside a network: the frozen layer computes dX only.
/// </summary>
/// <remarks>
/// A suite for a new adapter method derives from this class, builds its layer in <see cref="SetUpAdapter"/> and adds
/// one <c>[Benchmark]</c> that calls <see cref="Step"/> with it (see <see cref="LoRABenchmarks"/>). The input is a
/// view of a leaf, as a layer's input in a network is some other node's output: its gradient then flows to that
/// node, as it would, instead of being stored into a leaf's <c>.grad</c> (where libtorch copies a gradient that a
/// custom function's managed handle still references, 0.3 ms here, a cost no real network pays).
/// </remarks>
public abstract class AdapterBenchmark
{
    /// <summary>Rows of the input (tokens in a batch).</summary>
    [ParamsSource(nameof(Ns))]
    public int N { get; set; }

    /// <summary>In and out features of the square base layer.</summary>
    [ParamsSource(nameof(Ds))]
    public int D { get; set; }

    /// <summary>n ∈ {512, 2048}; only 2048 with <c>PEFT_BENCH_HEADLINE=1</c>.</summary>
    public static int[] Ns => BenchmarkSizes.Pick(new[] { 512, 2048 }, 2048);

    /// <summary>d ∈ {1024, 4096}; only 1024 with <c>PEFT_BENCH_HEADLINE=1</c>.</summary>
    public static int[] Ds => BenchmarkSizes.Pick(new[] { 1024, 4096 }, 1024);

    /// <summary>
    /// Whether the input requires grad (the default: a layer inside a network). False times a model's first layer, whose
    /// input is data: the frozen base then runs forward only and the adapter's backward computes its own gradients alone.
    /// </summary>
    public bool InputNeedsGrad { get; set; } = true;

    /// <summary>The frozen base layer, shared by the baseline and the adapter.</summary>
    protected Linear BaseLayer { get; private set; } = null!;

    private Tensor _leaf = null!, _gradOutput = null!;

    /// <summary>Builds the base layer, the input and the upstream gradient, then the adapter.</summary>
    [GlobalSetup]
    public void GlobalSetup()
    {
        torch.manual_seed(0);
        BaseLayer = nn.Linear(D, D);
        foreach (var p in BaseLayer.parameters()) p.requires_grad = false;
        _leaf = torch.randn(N, D).requires_grad_(InputNeedsGrad);
        _gradOutput = torch.randn(N, D);
        SetUpAdapter();
    }

    /// <summary>Builds the adapted layer around <see cref="BaseLayer"/>.</summary>
    protected abstract void SetUpAdapter();

    /// <summary>The frozen base layer alone.</summary>
    [Benchmark(Baseline = true, Description = "frozen base")]
    public void FrozenBase() => Step(BaseLayer);

    /// <summary>One forward and backward of <paramref name="layer"/>; gradients are reset as <c>zero_grad(set_to_none)</c> does.</summary>
    protected void Step(nn.Module<Tensor, Tensor> layer, params Tensor[] trainable)
    {
        using (NewDisposeScope())
        {
            var input = _leaf.view(N, D);
            var y = layer.forward(input);
            if (y.requires_grad) y.backward(new[] { _gradOutput }); // a frozen first layer has nothing to differentiate
        }
        _leaf.grad = null;
        foreach (var t in trainable) t.grad = null;
    }

    /// <summary>Frees the tensors.</summary>
    [GlobalCleanup]
    public void GlobalCleanup()
    {
        CleanUpAdapter();
        BaseLayer.Dispose();
        _leaf.Dispose();
        _gradOutput.Dispose();
    }

    /// <summary>Frees what <see cref="SetUpAdapter"/> made.</summary>
    protected virtual void CleanUpAdapter() { }
}

/// <summary>
/// The parameter grids, or only the headline case (n = 2048, d = 1024, r = 16) when the environment variable
/// <c>PEFT_BENCH_HEADLINE</c> is 1: BenchmarkDotNet filters by method, not by parameter.
/// </summary>
public static class BenchmarkSizes
{
    /// <summary>Whether only the headline case runs.</summary>
    public static bool Headline => System.Environment.GetEnvironmentVariable("PEFT_BENCH_HEADLINE") == "1";

    /// <summary><paramref name="grid"/>, or <paramref name="headline"/> alone.</summary>
    public static int[] Pick(int[] grid, int headline) => Headline ? new[] { headline } : grid;
}

internal static class NativeBootstrap
{
    [ModuleInitializer]
    internal static void Initialize() => Peft.Runtime.Native.TorchNative.EnsureLoaded();
}
