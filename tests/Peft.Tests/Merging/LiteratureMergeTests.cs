using System;
using System.Collections.Generic;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.Merging;
using TorchSharp;
using Xunit;
using static Peft.Tests.Merging.AdapterMergerTests;
using static TorchSharp.torch;

namespace Peft.Tests.Merging;

/// <summary>
/// The merges of METHODS-WAVE2 §9 and §12 — Core Space, TSV, Iso-C / Iso-CTS, WIDEN and LoRA-LEGO — against the
/// deterministic checks listed there, each computed in float64.
/// </summary>
public class LiteratureMergeTests
{
    private const double Exact = 1e-10;

    /// <summary>T random LoRA factor pairs (A [rᵢ, in], B [out, rᵢ]) in float64, ranks as given.</summary>
    private static (List<Tensor> A, List<Tensor> B) Factors(long outF, long inF, long seed, params int[] ranks)
    {
        manual_seed(seed);
        return (ranks.Select(r => randn(r, inF, dtype: float64)).ToList(), ranks.Select(r => randn(outF, r, dtype: float64)).ToList());
    }

    private static List<Tensor> Deltas(List<Tensor> a, List<Tensor> b) => a.Select((ai, i) => matmul(b[i], ai)).ToList();

    private static double MaxAbs(Tensor x, Tensor y) => (x - y).abs().max().item<double>();

    private static Tensor SingularValues(Tensor x) => linalg.svdvals(x);

    /// <summary>A LoRA layer with adapters a (r 2, α 4) and b (r 3, α 6, rsLoRA) and random B's, in float64.</summary>
    private static LoRALinear Layer() => TwoAdapters(inF: 12, outF: 9, seed: 3, dtype: float64);

    // ---- Core Space ---------------------------------------------------------------------------------------------

    [Fact]
    public void Core_matrices_reconstruct_every_source_exactly()
    {
        var (a, b) = Factors(20, 17, 1, 3, 5, 2);
        var (u, v) = CoreSpace.Bases(a, b);
        Assert.Equal(new long[] { 20, 10 }, u.shape);
        Assert.Equal(new long[] { 10, 17 }, v.shape);
        for (int i = 0; i < a.Count; i++)
        {
            var core = CoreSpace.Core(u, v, a[i], b[i]);
            Assert.Equal(new long[] { 10, 10 }, core.shape);
            Assert.True(MaxAbs(matmul(matmul(u, core), v), matmul(b[i], a[i])) < Exact);
        }
    }

    [Fact]
    public void Core_sum_is_Linear_with_rank_at_most_R()
    {
        var (a, b) = Factors(20, 17, 2, 3, 5);
        var weights = new[] { 0.7, -1.3 };
        var (ma, mb) = CoreSpace.Merge(a, b, MergeMethod.Linear, weights, 1, null);
        Assert.Equal(8, ma.shape[0]);
        var deltas = Deltas(a, b);
        Assert.True(MaxAbs(matmul(mb, ma), DeltaMerge.WeightedSum(deltas, weights)) < Exact);
    }

    [Fact]
    public void Core_sum_of_more_ranks_than_outputs_has_rank_out()
    {
        // out = 4 < R = 6: U_ref is [4, 4] and M is [4, 6]; the export keeps the smaller side.
        var (a, b) = Factors(4, 11, 21, 3, 3);
        var (ma, mb) = CoreSpace.Merge(a, b, MergeMethod.Linear, new[] { 1.0, 1.0 }, 1, null);
        Assert.Equal(4, ma.shape[0]);
        Assert.True(MaxAbs(matmul(mb, ma), DeltaMerge.WeightedSum(Deltas(a, b), new[] { 1.0, 1.0 })) < Exact);
    }

    [Fact]
    public void Dare_and_magnitude_pruning_in_core_at_density_one_are_the_core_sum()
    {
        var (a, b) = Factors(15, 11, 3, 4, 2, 3);
        var weights = new[] { 1.0, 0.5, 2.0 };
        var (sa, sb) = CoreSpace.Merge(a, b, MergeMethod.Linear, weights, 1, null);
        var sum = matmul(sb, sa);
        foreach (var method in new[] { MergeMethod.DareLinear, MergeMethod.MagnitudePrune })
        {
            using var generator = new Generator(5, CPU);
            var (ma, mb) = CoreSpace.Merge(a, b, method, weights, 1, generator);
            Assert.True(MaxAbs(matmul(mb, ma), sum) < Exact, method.ToString());
        }
    }

    [Fact]
    public void Ties_in_core_over_one_source_is_that_source()
    {
        var (a, b) = Factors(15, 11, 4, 4);
        var (ma, mb) = CoreSpace.Merge(a, b, MergeMethod.Ties, new[] { 1.0 }, 1, null);
        Assert.True(MaxAbs(matmul(mb, ma), matmul(b[0], a[0])) < Exact);
    }

    [Fact]
    public void Ties_in_core_at_density_one_still_drops_disagreeing_core_entries()
    {
        // The caution of §12: TIES's sign election is not the sum even when nothing is trimmed.
        var (a, b) = Factors(15, 11, 5, 3, 3);
        var (ta, tb) = CoreSpace.Merge(a, b, MergeMethod.Ties, new[] { 1.0, 1.0 }, 1, null);
        var (u, v) = CoreSpace.Bases(a, b);
        var cores = a.Select((ai, i) => CoreSpace.Core(u, v, ai, b[i])).ToList();
        var expected = matmul(matmul(u, DeltaMerge.DisjointMean(cores, new[] { 1.0, 1.0 }, DeltaMerge.ElectSign(cores))), v);
        Assert.True(MaxAbs(matmul(tb, ta), expected) < Exact);
        Assert.True(MaxAbs(matmul(tb, ta), DeltaMerge.WeightedSum(Deltas(a, b), new[] { 1.0, 1.0 })) > 1e-3);
    }

    [Fact]
    public void Core_space_through_the_merger_is_exact_and_low_rank_on_a_layer()
    {
        var layer = Layer();
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("core", new[] { "a", "b" }) { Weights = new[] { 0.4, 1.5 }, Space = MergeSpace.Core }, "T");
        TensorAssert.Close(Delta(layer, "a") * 0.4 + Delta(layer, "b") * 1.5, Delta(layer, "core"), 1e-9, 1e-10);
        Assert.Equal(5, layer.Options("core").Rank);
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("iso", new[] { "a", "b" }) { Method = MergeMethod.IsoC, Space = MergeSpace.Core }, "T");
        Assert.Equal(5, layer.Options("iso").Rank);
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("tsv3", new[] { "a", "b" }) { Method = MergeMethod.Tsv, Space = MergeSpace.Core, Rank = 3 }, "T");
        Assert.Equal(3, layer.Options("tsv3").Rank);
    }

    [Fact]
    public void Core_space_refuses_a_DoRA_source_naming_layer_and_adapter()
    {
        manual_seed(4);
        var layer = new LoRALinear("T.q", nn.Linear(8, 6), "a", new LoRAOptions { Rank = 2, Alpha = 4 });
        layer.AddAdapter("d", new DoRAOptions { Rank = 2, Alpha = 4 });
        var error = Assert.Throws<NotSupportedException>(() =>
            AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("m", new[] { "a", "d" }) { Space = MergeSpace.Core }, "T"));
        Assert.Contains("layer 'q'", error.Message);
        Assert.Contains("'d' is not a plain LoRA adapter", error.Message);
        Assert.DoesNotContain("m", layer.AdapterNames);
    }

    [Theory]
    [InlineData(MergeMethod.Widen, MergeSpace.Core, 0, 0.8, "cannot run in core space")]
    [InlineData(MergeMethod.LoraLego, MergeSpace.Full, 0, 0.8, "needs Rank")]
    [InlineData(MergeMethod.IsoCts, MergeSpace.Full, 0, 0.0, "common fraction 0 is outside (0, 1]")]
    public void Specs_that_cannot_run_are_refused(MergeMethod method, MergeSpace space, int rank, double fraction, string message)
    {
        var spec = new MergeSpec("m", new[] { "a", "b" }) { Method = method, Space = space, Rank = rank, CommonFraction = fraction };
        Assert.Contains(message, Assert.Throws<ArgumentException>(() => spec.Validate("T")).Message);
    }

    // ---- Iso-C / Iso-CTS -----------------------------------------------------------------------------------------

    [Fact]
    public void IsoC_in_core_has_equal_singular_values_and_the_sums_nuclear_norm()
    {
        var (a, b) = Factors(20, 17, 6, 3, 4);
        var (ia, ib) = CoreSpace.Merge(a, b, MergeMethod.IsoC, new[] { 1.0, 1.0 }, 1, null);
        var result = matmul(ib, ia);
        var s = SingularValues(result).narrow(0, 0, 7);
        var sum = SingularValues(DeltaMerge.WeightedSum(Deltas(a, b), new[] { 1.0, 1.0 }));
        Assert.True((s - s.mean()).abs().max().item<double>() < 1e-9);
        Assert.True(Math.Abs(s.sum().item<double>() - sum.sum().item<double>()) < 1e-9);
        Assert.True(SingularValues(result)[7].item<double>() < 1e-9); // rank ≤ R = 7
    }

    [Fact]
    public void IsoC_in_full_space_spreads_the_mean_over_every_direction()
    {
        var (a, b) = Factors(9, 12, 7, 2, 2);
        var s = SingularValues(DeltaMerge.IsoC(Deltas(a, b), new[] { 1.0, 1.0 }));
        Assert.Equal(9, s.shape[0]);
        Assert.True((s - s.mean()).abs().max().item<double>() < 1e-9); // full rank 9, where the sum had rank 4
    }

    [Fact]
    public void IsoCts_splits_as_the_paper_and_reduces_to_IsoC_at_fraction_one()
    {
        Assert.Equal((6L, 2L), DeltaMerge.IsoCtsSplit(10, 2, 0.5));
        Assert.Equal((10L, 0L), DeltaMerge.IsoCtsSplit(10, 4, 0.8)); // 10 − round(2/4 = 0.5 → 0, half to even)·4
        Assert.Equal((4L, 2L), DeltaMerge.IsoCtsSplit(10, 3, 0.5)); // 5 → 10 − round(5/3)·3 = 4
        var (a, b) = Factors(9, 12, 8, 3, 3);
        var deltas = Deltas(a, b);
        Assert.True(MaxAbs(DeltaMerge.IsoCts(deltas, new[] { 1.0, 1.0 }, 1.0), DeltaMerge.IsoC(deltas, new[] { 1.0, 1.0 })) < 1e-9);
        var s = SingularValues(DeltaMerge.IsoCts(deltas, new[] { 1.0, 1.0 }, 0.5));
        Assert.True((s - s.mean()).abs().max().item<double>() < 1e-9);
    }

    // ---- TSV -------------------------------------------------------------------------------------------------------

    [Fact]
    public void Tsv_keeps_each_tasks_top_singular_values_on_orthonormal_stacks()
    {
        var (a, b) = Factors(10, 8, 9, 3, 3, 2);
        var deltas = Deltas(a, b);
        var weights = new[] { 1.0, 0.5, 2.0 };
        var expected = deltas.Select((d, i) => SingularValues(d * weights[i]).narrow(0, 0, 8 / 3)).ToArray();
        var s = SingularValues(DeltaMerge.Tsv(deltas, weights));
        var sorted = cat(expected, 0).sort(descending: true).Values;
        Assert.True(MaxAbs(s.narrow(0, 0, 6), sorted) < 1e-9);
    }

    [Fact]
    public void Tsv_of_tasks_on_orthogonal_subspaces_is_their_sum()
    {
        manual_seed(10);
        var first = zeros(8, 8, dtype: float64);
        var second = zeros(8, 8, dtype: float64);
        first.narrow(0, 0, 4).narrow(1, 0, 4).copy_(randn(4, 4, dtype: float64));
        second.narrow(0, 4, 4).narrow(1, 4, 4).copy_(randn(4, 4, dtype: float64));
        Assert.True(MaxAbs(DeltaMerge.Tsv(new[] { first, second }, new[] { 1.0, 1.0 }), first + second) < 1e-9);
    }

    // ---- WIDEN -----------------------------------------------------------------------------------------------------

    private static double[,] Array2(Tensor t)
    {
        var v = NaiveMerge.Values(t);
        long rows = t.shape[0], cols = t.shape[1];
        var r = new double[rows, cols];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                r[i, j] = v[i * cols + j];
        return r;
    }

    [Fact]
    public void Widen_column_weights_match_the_naive_formula()
    {
        manual_seed(11);
        var w0 = randn(9, 13, dtype: float64);
        var deltas = new[] { randn(9, 13, dtype: float64) * 0.3, randn(9, 13, dtype: float64) * 0.1, randn(9, 13, dtype: float64) * 0.2 };
        var expected = NaiveWiden.ColumnWeights(Array2(w0), deltas.Select(Array2).ToList());
        var actual = Widen.ColumnWeights(w0, deltas);
        for (int t = 0; t < 3; t++)
            Assert.True(MaxAbs(actual[t], tensor(expected[t], dtype: float64)) < 1e-12, $"source {t}: {string.Join(", ", NaiveMerge.Values(actual[t]))} vs {string.Join(", ", expected[t])}");
    }

    [Fact]
    public void Widen_with_one_source_weights_every_column_one()
    {
        manual_seed(12);
        var w0 = randn(6, 7, dtype: float64);
        var delta = randn(6, 7, dtype: float64);
        Assert.True(MaxAbs(Widen.ColumnWeights(w0, new[] { delta }), ones(1, 7, dtype: float64)) < Exact);
        var layer = Layer();
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("w", new[] { "b" }) { Method = MergeMethod.Widen }, "T");
        TensorAssert.Close(Delta(layer, "b"), Delta(layer, "w"), 1e-9, 1e-10);
        Assert.Equal(3, layer.Options("w").Rank);
    }

    [Fact]
    public void Widen_over_LoRA_sources_stays_exactly_low_rank()
    {
        var layer = Layer();
        var w0 = layer.BaseLayer.get_parameter("weight")!.detach();
        var deltas = new[] { Delta(layer, "a"), Delta(layer, "b") };
        var c = NaiveWiden.ColumnWeights(Array2(w0), deltas.Select(Array2).ToList());
        var expected = deltas[0] * tensor(c[0], dtype: float64).unsqueeze(0) * 0.5 + deltas[1] * tensor(c[1], dtype: float64).unsqueeze(0) * 2.0;
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("w", new[] { "a", "b" }) { Method = MergeMethod.Widen, Weights = new[] { 0.5, 2.0 } }, "T");
        TensorAssert.Close(expected, Delta(layer, "w"), 1e-9, 1e-10);
        Assert.Equal(5, layer.Options("w").Rank); // B·(A·diag(c)), concatenated: no truncation
    }

    // ---- LoRA-LEGO -------------------------------------------------------------------------------------------------

    [Fact]
    public void Lego_with_a_cluster_per_unit_is_the_sum_scaled_by_the_output_reweighting()
    {
        var (a, b) = Factors(9, 7, 13, 2, 3);
        using var generator = new Generator(1, CPU);
        var (la, lb) = LoraLego.Merge(a, b, 5, generator);
        var expected = DeltaMerge.WeightedSum(Deltas(a, b), new[] { 1.0, 1.0 }) * Math.Sqrt(2.5 / 5);
        Assert.True(MaxAbs(matmul(lb, la), expected) < Exact);
    }

    [Fact]
    public void Lego_canonicalises_the_sign_so_a_negated_copy_clusters_with_its_unit()
    {
        // (a, b) and (−a, −b) are one unit: merging a LoRA with its sign-flipped copy at k = r gives the LoRA back.
        // Without canonicalisation each pair's centroid would be 0.
        var (a, b) = Factors(9, 7, 14, 3);
        using var generator = new Generator(2, CPU);
        var (la, lb) = LoraLego.Merge(new[] { a[0], -a[0] }, new[] { b[0], -b[0] }, 3, generator);
        Assert.True(MaxAbs(matmul(lb, la), matmul(b[0], a[0])) < Exact);
        var units = LoraLego.Units(new[] { a[0] }, new[] { b[0] });
        var head = units.narrow(1, 0, 7);
        var pivot = head.abs().argmax(1, keepdim: true);
        Assert.True(head.gather(1, pivot).gt(0).all().item<bool>());
    }

    [Fact]
    public void Lego_rescales_each_centroid_to_its_members_mean_norm_and_is_seeded()
    {
        var (a, b) = Factors(9, 7, 15, 4, 4, 4);
        var units = LoraLego.Units(a, b);
        int[] assignment;
        using (var g = new Generator(DareSeedLike(3), CPU)) assignment = LoraLego.Cluster(units, 5, g);
        Assert.Equal(Enumerable.Range(0, 5), assignment.Distinct().OrderBy(c => c));
        (Tensor A, Tensor B) first, second;
        using (var g = new Generator(DareSeedLike(3), CPU)) first = LoraLego.Merge(a, b, 5, g);
        using (var g = new Generator(DareSeedLike(3), CPU)) second = LoraLego.Merge(a, b, 5, g);
        Assert.True(MaxAbs(first.A, second.A) == 0 && MaxAbs(first.B, second.B) == 0);
        double gamma = Math.Sqrt(4.0 / 5);
        var merged = cat(new[] { first.A, first.B.t() / gamma }, 1);
        var norms = units.norm(1, false, 2);
        for (int c = 0; c < 5; c++)
        {
            var members = tensor(assignment.Select(x => x == c).ToArray());
            Assert.True(Math.Abs(merged[c].norm().item<double>() - norms.index(members).mean().item<double>()) < 1e-10, $"cluster {c}");
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => { using var g = new Generator(1, CPU); LoraLego.Merge(a, b, 13, g); });
    }

    [Fact]
    public void Lego_through_the_merger_makes_a_rank_k_adapter()
    {
        var layer = Layer();
        AdapterMerger.AddMergedAdapter(Sites(layer), new MergeSpec("lego", new[] { "a", "b" }) { Method = MergeMethod.LoraLego, Rank = 2, Seed = 4 }, "T");
        Assert.Equal(2, layer.Options("lego").Rank);
        Assert.True(Delta(layer, "lego").abs().sum().item<double>() > 0);
    }

    private static ulong DareSeedLike(int seed) => AdapterMerger.DareSeed(seed, 0);
}
