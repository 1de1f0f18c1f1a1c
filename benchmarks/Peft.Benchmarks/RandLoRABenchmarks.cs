using BenchmarkDotNet.Attributes;
using Peft.Runtime.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// One training step of RandLoRA at rank R (n = ⌈d / R⌉ bases, a width-d bottleneck) against LoRA at the same rank: the
/// layer's factored forward (two GEMMs through the bottleneck) and the alternative that forms ΔW = s·B̃·Ã once per step
/// and runs one GEMM with W + ΔW.
/// </summary>
public class RandLoRABenchmarks : AdapterBenchmark
{
    /// <summary>The rank of each random basis (and LoRA's rank).</summary>
    [ParamsSource(nameof(Ranks))]
    public int R { get; set; }

    /// <summary>The ranks measured.</summary>
    public static int[] Ranks => BenchmarkSizes.Pick(new[] { 16, 64 }, 16);

    private LoRALinear _lora = null!;
    private RandLoRALinear _rand = null!;
    private RandLoRALinear _formed = null!;
    private Tensor _a = null!, _b = null!, _lambda = null!, _gamma = null!, _formedLambda = null!, _formedGamma = null!;

    /// <inheritdoc />
    protected override void SetUpAdapter()
    {
        _lora = new LoRALinear("bench.q", BaseLayer, "default", new LoRAOptions { Rank = R, Alpha = 2 * R });
        _a = _lora.LoraA("default");
        _b = _lora.LoraB("default");
        using (no_grad()) _b.normal_(0, 0.02);
        _lora.train();
        _rand = new RandLoRALinear("bench.q", BaseLayer, "default", new RandLoRAOptions { Rank = R, Alpha = 2 * R });
        _lambda = _rand.Lambda("default");
        _gamma = _rand.Gamma("default");
        using (no_grad()) _lambda.normal_(0, 0.02);
        _rand.train();
        _rand.FormDelta = false;
        _formed = new RandLoRALinear("bench.q", BaseLayer, "default", new RandLoRAOptions { Rank = R, Alpha = 2 * R }) { FormDelta = true };
        _formedLambda = _formed.Lambda("default");
        _formedGamma = _formed.Gamma("default");
        using (no_grad()) _formedLambda.copy_(_lambda);
    }

    /// <summary>LoRA at rank R.</summary>
    [Benchmark(Description = "LoRA")]
    public void LoRA() => Step(_lora, _a, _b);

    /// <summary>RandLoRA's layer: Ã formed, then (x·Ãᵀ)·B̃ᵀ.</summary>
    [Benchmark(Description = "RandLoRA factored")]
    public void RandLoRAFactored() => Step(_rand, _lambda, _gamma);

    /// <summary>RandLoRA with ΔW = s·B̃·Ã formed once per step and one GEMM with W + ΔW.</summary>
    [Benchmark(Description = "RandLoRA ΔW formed")]
    public void RandLoRAFormed() => Step(_formed, _formedLambda, _formedGamma);

    /// <inheritdoc />
    protected override void CleanUpAdapter()
    {
        _formed.Dispose();
        _rand.Dispose();
        _lora.Dispose();
    }
}
