using BenchmarkDotNet.Attributes;
using Peft.Runtime.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// Merge time of one LoRA layer (safe merge: computed on a copy, checked for NaN / Inf, then assigned) followed by
/// the unmerge that restores the base, against the floor any merge pays: one copy of the base weight.
/// </summary>
public class MergeBenchmarks
{
    /// <summary>In and out features of the square base layer.</summary>
    [Params(1024, 4096)]
    public int D { get; set; }

    /// <summary>The LoRA rank.</summary>
    [Params(8, 64)]
    public int R { get; set; }

    private LoRALinear _layer = null!;
    private Tensor _weight = null!;

    /// <summary>Builds the layer with a non-zero B.</summary>
    [GlobalSetup]
    public void GlobalSetup()
    {
        torch.manual_seed(0);
        _layer = new LoRALinear("bench.q", nn.Linear(D, D), "default", new LoRAOptions { Rank = R, Alpha = 2 * R });
        using (no_grad()) _layer.LoraB("default").normal_(0, 0.02);
        _weight = _layer.BaseLayer.get_parameter("weight")!;
    }

    /// <summary>A copy of the base weight.</summary>
    [Benchmark(Baseline = true, Description = "copy W")]
    public void CopyWeight()
    {
        using var copy = _weight.detach().clone();
    }

    /// <summary>ΔW = s·B·A alone.</summary>
    [Benchmark(Description = "delta weight")]
    public void DeltaWeight()
    {
        using (no_grad())
        using (var delta = _layer.DeltaWeight("default")) { }
    }

    /// <summary>Merge into the base, then unmerge.</summary>
    [Benchmark(Description = "merge + unmerge")]
    public void MergeUnmerge()
    {
        _layer.Merge(new[] { "default" });
        _layer.Unmerge();
    }

    /// <summary>Frees the layer.</summary>
    [GlobalCleanup]
    public void GlobalCleanup() => _layer.Dispose();
}
