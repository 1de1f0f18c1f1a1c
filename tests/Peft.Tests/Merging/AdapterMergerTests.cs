using System;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.Merging;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Merging;

public class AdapterMergerTests
{
    /// <summary>A LoRA layer with adapters a (r 2, α 4) and b (r 3, α 6, rsLoRA), both with random A and B.</summary>
    internal static LoRALinear TwoAdapters(long inF = 10, long outF = 7, long seed = 1, ScalarType? dtype = null)
    {
        manual_seed(seed);
        var layer = new LoRALinear("T.q", nn.Linear(inF, outF, dtype: dtype), "a", new LoRAOptions { Rank = 2, Alpha = 4 });
        layer.AddAdapter("b", new LoRAOptions { Rank = 3, Alpha = 6, UseRsLora = true });
        using (no_grad())
            foreach (var n in new[] { "a", "b" }) layer.LoraB(n).normal_(0, 0.5);
        return layer;
    }

    internal static (string, IAdapterLayer)[] Sites(IAdapterLayer layer) => new[] { ("q", layer) };

    internal static Tensor Delta(IAdapterLayer layer, string adapter) => layer.DeltaWeight(adapter).detach().to(float64);

    [Fact]
    public void Linear_is_exactly_the_weighted_sum_by_concatenation_with_scaling_one()
    {
        var layer = TwoAdapters();
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("ab", new[] { "a", "b" }) { Weights = new[] { 0.3, -1.2 } }, "T");
        var expected = Delta(layer, "a") * 0.3 - Delta(layer, "b") * 1.2;
        TensorAssert.Close(expected, Delta(layer, "ab"), 1e-6, 1e-7);
        var options = layer.Options("ab");
        Assert.Equal(5, options.Rank);           // 2 + 3: the factors concatenated
        Assert.Equal(1.0, options.Scaling);
        // A = [A_a; A_b] and B = [0.3·s_a·B_a, −1.2·s_b·B_b], as written.
        TensorAssert.Close(cat(new[] { layer.LoraA("a"), layer.LoraA("b") }, 0), layer.LoraA("ab"));
        TensorAssert.Close(layer.LoraB("b") * (-1.2 * 6 / Math.Sqrt(3)), layer.LoraB("ab").narrow(1, 2, 3));
        Assert.Equal(new[] { "a" }, layer.ActiveAdapters); // a new adapter starts inactive
    }

    [Fact]
    public void A_DoRA_source_merges_through_its_full_delta_weight()
    {
        // DoRA's change g ⊙ (W + sBA) − W is not low-rank, so Linear re-factorises the exact sum at full rank
        // (min(in, out) = 7): the merged adapter's delta equals Σ wᵢ ΔWᵢ, with no rsLoRA/DoRA scaling slip (PEFT 3761).
        manual_seed(9);
        var layer = new LoRALinear("T.q", nn.Linear(10, 7), "a", new DoRAOptions { Rank = 2, Alpha = 4 });
        layer.AddAdapter("b", new LoRAOptions { Rank = 3, Alpha = 6, UseRsLora = true });
        using (no_grad())
        {
            foreach (var n in new[] { "a", "b" }) layer.LoraB(n).normal_(0, 0.5);
            layer.Magnitude("a").mul_(1.3);
        }
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("ab", new[] { "a", "b" }) { Weights = new[] { 0.7, 0.4 } }, "T");
        TensorAssert.Close(Delta(layer, "a") * 0.7 + Delta(layer, "b") * 0.4, Delta(layer, "ab"), 1e-5, 1e-6);
        Assert.False(layer.IsDora("ab"));
    }

    [Fact]
    public void Cat_beyond_full_rank_is_refactorised_exactly_at_full_rank()
    {
        manual_seed(2);
        var layer = new LoRALinear("T.q", nn.Linear(4, 3), "a", new LoRAOptions { Rank = 2, Alpha = 2 });
        layer.AddAdapter("b", new LoRAOptions { Rank = 3, Alpha = 5 });
        using (no_grad())
            foreach (var n in new[] { "a", "b" }) layer.LoraB(n).normal_(0, 0.5);
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("ab", new[] { "a", "b" }) { Method = MergeMethod.Cat }, "T");
        Assert.Equal(3, layer.Options("ab").Rank);
        TensorAssert.Close(Delta(layer, "a") + Delta(layer, "b"), Delta(layer, "ab"), 1e-5, 1e-6);
    }

    [Fact]
    public void Svd_keeps_the_best_rank_r_approximation()
    {
        var layer = TwoAdapters();
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("s", new[] { "a", "b" }) { Method = MergeMethod.Svd, Rank = 2, Weights = new[] { 1.0, 0.5 } }, "T");
        var sum = Delta(layer, "a") + Delta(layer, "b") * 0.5;
        var s = linalg.svdvals(sum);
        Assert.Equal(2, layer.Options("s").Rank);
        double error = (sum - Delta(layer, "s")).norm().item<double>();
        Assert.Equal(Math.Sqrt(s.narrow(0, 2, s.shape[0] - 2).square().sum().item<double>()), error, 5);
    }

    [Fact]
    public void Ties_adapter_equals_the_formula_at_the_default_rank()
    {
        // Default rank: 2 + 3 = 5 = min(7, 5) for a 5 → 7 layer, so the re-factorisation is exact.
        var layer = TwoAdapters(inF: 5, outF: 7);
        var w = new[] { 0.5, 0.5 };
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("t", new[] { "a", "b" }) { Method = MergeMethod.Ties, Weights = w, Density = 0.5 }, "T");
        var expected = NaiveMerge.Ties(new[] { NaiveMerge.Values(Delta(layer, "a")), NaiveMerge.Values(Delta(layer, "b")) }, w, 0.5);
        Assert.Equal(5, layer.Options("t").Rank);
        TensorAssert.Close(tensor(expected, new long[] { 7, 5 }), Delta(layer, "t"), 1e-5, 1e-6);
    }

    [Fact]
    public void Dare_merges_are_reproducible_from_the_seed()
    {
        Tensor Run(int seed)
        {
            var layer = TwoAdapters(seed: 3);
            AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("d", new[] { "a", "b" }) { Method = MergeMethod.DareLinear, Density = 0.5, Seed = seed }, "T");
            return Delta(layer, "d");
        }
        TensorAssert.Equal(Run(11), Run(11));
        Assert.False(TensorAssert.Same(Run(11), Run(12)));
    }

    [Fact]
    public void Model_stock_adapter_equals_the_formula()
    {
        var layer = TwoAdapters(inF: 5, outF: 7);
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("m", new[] { "a", "b" }) { Method = MergeMethod.ModelStock }, "T");
        var expected = NaiveMerge.ModelStock(new[] { NaiveMerge.Values(Delta(layer, "a")), NaiveMerge.Values(Delta(layer, "b")) });
        TensorAssert.Close(tensor(expected, new long[] { 7, 5 }), Delta(layer, "m"), 1e-5, 1e-6);
    }

    [Fact]
    public void A_merge_that_would_hold_NaN_is_refused_and_changes_nothing()
    {
        var layer = TwoAdapters();
        using (no_grad()) layer.LoraB("b")[0, 0].fill_(double.NaN);
        var ex = Assert.Throws<InvalidOperationException>(() =>
            AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("ab", new[] { "a", "b" }) { Method = MergeMethod.Ties, Density = 0.5 }, "T"));
        Assert.Contains("'q'", ex.Message);
        Assert.Contains("'ab'", ex.Message);
        Assert.Equal(new[] { "a", "b" }, layer.AdapterNames);
    }

    [Fact]
    public void Bad_specs_and_existing_names_are_refused_before_anything_changes()
    {
        var layer = TwoAdapters();
        Assert.Throws<ArgumentException>(() => AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("x", new[] { "a", "b" }) { Weights = new[] { 1.0 } }, "T"));
        Assert.Throws<ArgumentException>(() => AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("x", new[] { "a" }) { Density = 0 }, "T"));
        Assert.Throws<ArgumentException>(() => AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("x", new[] { "a", "zzz" }), "T"));
        Assert.Throws<ArgumentException>(() => AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("b", new[] { "a" }), "T"));
        Assert.Throws<ArgumentException>(() => AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec(PeftModelCore.BaseAdapterName, new[] { "a" }), "T"));
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("x", new[] { "a" }), "T");
        var ex = Assert.Throws<ArgumentException>(() => AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("x", new[] { "b" }), "T"));
        Assert.Contains("already has an adapter named 'x'", ex.Message);
        Assert.Equal(new[] { "a", "b", "x" }, layer.AdapterNames);
    }

    [Fact]
    public void Bone_layers_refuse_a_LoRA_result_and_fold_the_combination_into_the_base_instead()
    {
        manual_seed(4);
        var layer = new BoneLinear("T.v", nn.Linear(8, 6), "a", new BoneOptions { Block = 2 });
        layer.AddAdapter("b", new BoneOptions { Block = 4 });
        using (no_grad())
        {
            layer.Block("a").normal_(0, 0.3);
            layer.Block("b").normal_(0, 0.3);
        }
        var spec = new MergeSpec("ab", new[] { "a", "b" }) { Weights = new[] { 0.5, 2.0 } };
        var ex = Assert.Throws<NotSupportedException>(() => AdapterMerger.AddMergedAdapter(new[] { ("v", (IAdapterLayer)layer) }, spec, "T"));
        Assert.Contains("'v'", ex.Message);
        Assert.Contains("MISS", ex.Message);

        var w = layer.BaseLayer.get_parameter("weight")!.detach().to(float64).clone();
        var expected = w + Delta(layer, "a") * 0.5 + Delta(layer, "b") * 2.0;
        AdapterMerger.FoldIntoBase(new[] { ("v", (IAdapterLayer)layer) }, spec, "T");
        TensorAssert.Close(expected, layer.BaseLayer.get_parameter("weight")!, 1e-6, 1e-6);

        // Bone's rank bound is its block; the combination of blocks 2 and 4 has rank at most 6 = min(6, 8): exact.
        Assert.Equal(2, AdapterMerger.RankBound(layer, "a"));
        Assert.Equal(6, AdapterMerger.TargetRank(layer, spec));
    }

    [Fact]
    public void Folding_a_NaN_is_refused_and_leaves_the_weight_untouched()
    {
        manual_seed(5);
        var layer = new BoneLinear("T.v", nn.Linear(8, 6), "a", new BoneOptions { Block = 2 });
        using (no_grad()) layer.Block("a")[0, 0].fill_(double.PositiveInfinity);
        var before = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        Assert.Throws<InvalidOperationException>(() => AdapterMerger.FoldIntoBase(new[] { ("v", (IAdapterLayer)layer) }, new MergeSpec("x", new[] { "a" }), "T"));
        TensorAssert.Equal(before, layer.BaseLayer.get_parameter("weight")!);
    }

    [Fact]
    public void Hydra_sources_merge_through_their_delta_weights()
    {
        manual_seed(6);
        var layer = new HydraLinear("T.o", nn.Linear(6, 6), "a", new HydraOptions { ParallelRank = 1, SequentialRank = 1 });
        layer.AddAdapter("b", new HydraOptions { ParallelRank = 2, SequentialRank = 1 });
        using (no_grad())
            foreach (var n in new[] { "a", "b" })
            {
                layer.ParallelB(n).normal_(0, 0.3);
                layer.SequentialB(n).normal_(0, 0.3);
            }
        Assert.Equal(5, AdapterMerger.TargetRank(layer, new MergeSpec("ab", new[] { "a", "b" })));
        var w = layer.BaseLayer.get_parameter("weight")!.detach().to(float64).clone();
        var expected = w + Delta(layer, "a") + Delta(layer, "b");
        AdapterMerger.FoldIntoBase(new[] { ("o", (IAdapterLayer)layer) }, new MergeSpec("ab", new[] { "a", "b" }), "T");
        TensorAssert.Close(expected, layer.BaseLayer.get_parameter("weight")!, 1e-6, 1e-6);
    }

    [Fact]
    public void A_merged_adapter_whose_merge_into_the_base_overflows_is_refused()
    {
        var layer = TwoAdapters();
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("ab", new[] { "a", "b" }), "T");
        using (no_grad()) layer.LoraB("ab").fill_(1e37f);
        using (no_grad()) layer.LoraA("ab").fill_(1e3f);
        var before = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        var ex = Assert.Throws<InvalidOperationException>(() => layer.Merge(new[] { "ab" }));
        Assert.Contains("'ab'", ex.Message);
        TensorAssert.Equal(before, layer.BaseLayer.get_parameter("weight")!);
        Assert.Empty(layer.MergedAdapters);
    }
}
