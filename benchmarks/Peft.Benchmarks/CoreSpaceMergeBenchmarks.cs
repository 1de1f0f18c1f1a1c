using BenchmarkDotNet.Attributes;
using Peft.Runtime.Adapters;
using Peft.Runtime.Merging;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// The time to build one merged adapter from <see cref="Sources"/> LoRA adapters of rank <see cref="R"/> on a d×d layer
/// (<see cref="AdapterMerger.Factors"/>: the new A and B, checked for NaN / Inf), in Core Space against the same method
/// in full space, which forms the dense deltas, combines them and re-factorises the result by truncated SVD.
/// </summary>
public class CoreSpaceMergeBenchmarks
{
    /// <summary>In and out features of the square base layer.</summary>
    [Params(512, 4096)]
    public int D { get; set; }

    /// <summary>The merge method, the same in both spaces.</summary>
    [Params(MergeMethod.Ties, MergeMethod.IsoC)]
    public MergeMethod Method { get; set; } = MergeMethod.Ties;

    /// <summary>The rank of every source.</summary>
    public int R { get; set; } = 16;

    /// <summary>How many adapters are merged.</summary>
    public int Sources { get; set; } = 4;

    private LoRALinear _layer = null!;
    private MergeSpec _full = null!;
    private MergeSpec _core = null!;

    /// <summary>Builds the layer with <see cref="Sources"/> adapters, each with a non-zero B.</summary>
    [GlobalSetup]
    public void GlobalSetup()
    {
        torch.manual_seed(0);
        var names = new string[Sources];
        for (int i = 0; i < Sources; i++)
        {
            names[i] = "t" + i;
            if (i == 0) _layer = new LoRALinear("bench.q", nn.Linear(D, D), names[i], new LoRAOptions { Rank = R, Alpha = 2 * R });
            else _layer.AddAdapter(names[i], new LoRAOptions { Rank = R, Alpha = 2 * R });
            using (no_grad()) _layer.LoraB(names[i]).normal_(0, 0.02);
        }
        _full = new MergeSpec("merged", names) { Method = Method, Density = 0.5 };
        _core = _full with { Space = MergeSpace.Core };
    }

    /// <summary>Full space: dense deltas, the method on [d, d] matrices, truncated SVD to rank Σ rᵢ.</summary>
    [Benchmark(Baseline = true, Description = "full space")]
    public void Full() => Run(_full);

    /// <summary>Core Space: two thin SVDs of the stacked factors, the method on [R, R] cores, exact export.</summary>
    [Benchmark(Description = "core space")]
    public void Core() => Run(_core);

    private void Run(MergeSpec spec)
    {
        var (a, b) = AdapterMerger.Factors("bench.q", _layer, spec, 0);
        a.Dispose();
        b.Dispose();
    }

    /// <summary>Frees the layer.</summary>
    [GlobalCleanup]
    public void GlobalCleanup() => _layer.Dispose();
}
