using System.Collections.Generic;
using BenchmarkDotNet.Attributes;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// An AdaLoRA training step against a LoRA step at the same (initial) rank, both through the fused LoRA kernel (AdaLoRA
/// folds Λ into P first), no dropout. "AdaLoRA step" adds what AdapterTrainer adds per step: the orthogonal regulariser
/// in the loss (its forward and backward) and the importance update after the optimizer step (the EMAs of P, Λ, Q).
/// The masking itself (a k-th value over r₀ scores per layer every DeltaT steps) is left out: it is negligible.
/// </summary>
public class AdaLoRABenchmarks : AdapterBenchmark
{
    /// <summary>The rank (LoRA's r, AdaLoRA's InitRank).</summary>
    [ParamsSource(nameof(Ranks))]
    public int R { get; set; }

    /// <summary>r ∈ {8, 16, 64}; only 16 with <c>PEFT_BENCH_HEADLINE=1</c>.</summary>
    public static int[] Ranks => BenchmarkSizes.Pick(new[] { 8, 16, 64 }, 16);

    private LoRALinear _lora = null!;
    private AdaLoRALinear _ada = null!;
    private List<(string, IAdapterLayer)> _sites = null!;

    /// <inheritdoc />
    protected override void SetUpAdapter()
    {
        _lora = new LoRALinear("bench.q", BaseLayer, "default", new LoRAOptions { Rank = R, Alpha = 2 * R });
        using (no_grad()) _lora.LoraB("default").normal_(0, 0.02);
        _lora.train();
        // A schedule whose warm-up covers every measured step: the importance EMAs update, nothing is masked.
        _ada = new AdaLoRALinear("bench.q", BaseLayer, "default",
            new AdaLoRAOptions { TargetRank = R / 2, InitRank = R, Alpha = 2 * R, TotalSteps = int.MaxValue, Tinit = int.MaxValue - 1 });
        using (no_grad()) _ada.LoraE("default").normal_();
        _ada.train();
        _sites = new List<(string, IAdapterLayer)> { ("q", _ada) };
    }

    /// <summary>The fused LoRA layer at rank R.</summary>
    [Benchmark(Description = "LoRA fused")]
    public void LoRA() => Step(_lora, _lora.LoraA("default"), _lora.LoraB("default"));

    /// <summary>The AdaLoRA layer alone (forward and backward).</summary>
    [Benchmark(Description = "AdaLoRA layer")]
    public void AdaLoRALayer() => Step(_ada, _ada.LoraA("default"), _ada.LoraE("default"), _ada.LoraB("default"));

    /// <summary>The AdaLoRA layer, its regulariser's forward and backward, and the importance update.</summary>
    [Benchmark(Description = "AdaLoRA step")]
    public void AdaLoRAStep()
    {
        using (NewDisposeScope())
            AdaLoRA.Allocator.Regularization(_sites, "default")!.backward();
        Step(_ada); // gradients kept for the importance update
        AdaLoRA.Allocator.UpdateAndAllocate(_sites, "default", 0);
        _ada.LoraA("default").grad = null;
        _ada.LoraE("default").grad = null;
        _ada.LoraB("default").grad = null;
    }
}
