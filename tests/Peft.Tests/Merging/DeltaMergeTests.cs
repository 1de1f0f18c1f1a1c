using System;
using System.Collections.Generic;
using System.Linq;
using Peft.Runtime.Merging;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Merging;

public class DeltaMergeTests
{
    private static Tensor T(params double[] values) => tensor(values, dtype: float64);

    [Fact]
    public void Ties_on_a_hand_made_example()
    {
        // density 0.5 keeps two of four entries per task:
        //   t1 [ 3, −2,  1, 0.5] → [3, −2,  0, 0]
        //   t2 [−1, −4,  2, 0.1] → [0, −4,  2, 0]
        //   t3 [ 2,  1, −5, 0.2] → [2,  0, −5, 0]
        // unweighted sums [5, −6, −3, 0] elect signs [+, −, −, +] (0 counts as +);
        // weights [1, 0.5, 2]: entry 0: (1·3 + 2·2) / 2 = 3.5; entry 1: (1·(−2) + 0.5·(−4)) / 2 = −2;
        // entry 2: only t3 agrees: 2·(−5) / 1 = −10; entry 3: nothing kept, 0.
        var merged = DeltaMerge.Ties(new[] { T(3, -2, 1, 0.5), T(-1, -4, 2, 0.1), T(2, 1, -5, 0.2) }, new[] { 1, 0.5, 2 }, 0.5);
        Assert.Equal(new[] { 3.5, -2, -10, 0 }, NaiveMerge.Values(merged));
    }

    [Fact]
    public void Ties_elects_the_sign_from_the_unweighted_tensors()
    {
        // Weighted, 10·1 − 1·3 = 7 would elect +; unweighted, 1 − 3 = −2 elects −, so only t2 survives: 1·(−3) / 1.
        var merged = DeltaMerge.Ties(new[] { T(1), T(-3) }, new[] { 10.0, 1.0 }, 1);
        Assert.Equal(new[] { -3.0 }, NaiveMerge.Values(merged));
    }

    [Fact]
    public void Ties_matches_the_formula_written_out_on_random_tensors()
    {
        manual_seed(3);
        var xs = Enumerable.Range(0, 3).Select(_ => randn(6, 5, dtype: float64)).ToList();
        var w = new[] { 0.7, -0.4, 1.3 };
        var expected = NaiveMerge.Ties(xs.Select(NaiveMerge.Values).ToList(), w, 0.4);
        TensorAssert.Close(tensor(expected, new long[] { 6, 5 }), DeltaMerge.Ties(xs, w, 0.4), 1e-12, 1e-12);
    }

    [Theory]
    [InlineData(1.0, 10)]
    [InlineData(0.5, 5)]
    [InlineData(0.29, 2)]   // ⌊0.29·10⌋, as PEFT's int(density·numel)
    [InlineData(0.05, 0)]
    public void Magnitude_prune_keeps_the_largest_magnitudes(double density, int kept)
    {
        var x = T(0.1, -9, 3, -0.5, 7, 2, -4, 0.3, 6, -1);
        var pruned = NaiveMerge.Values(DeltaMerge.MagnitudePrune(x, density));
        Assert.Equal(kept, pruned.Count(v => v != 0));
        Assert.Equal(NaiveMerge.Prune(NaiveMerge.Values(x), density), pruned);
    }

    [Fact]
    public void Magnitude_prune_then_sum_matches_the_formula()
    {
        manual_seed(4);
        var xs = Enumerable.Range(0, 2).Select(_ => randn(4, 7, dtype: float64)).ToList();
        var w = new[] { 0.5, 2.0 };
        var expected = NaiveMerge.WeightedSum(xs.Select(x => NaiveMerge.Prune(NaiveMerge.Values(x), 0.3)).ToList(), w);
        TensorAssert.Close(tensor(expected, new long[] { 4, 7 }), DeltaMerge.MagnitudePruneSum(xs, w, 0.3), 1e-12, 1e-12);
    }

    [Fact]
    public void Dare_keeps_entries_rescaled_by_one_over_density_and_is_reproducible()
    {
        manual_seed(5);
        var x = randn(40, 30, dtype: float64);
        using var g1 = new Generator(AdapterMerger.DareSeed(7, 0), CPU);
        using var g2 = new Generator(AdapterMerger.DareSeed(7, 0), CPU);
        using var g3 = new Generator(AdapterMerger.DareSeed(7, 1), CPU);
        var a = DeltaMerge.RandomPrune(x, 0.25, g1);
        var b = DeltaMerge.RandomPrune(x, 0.25, g2);
        var c = DeltaMerge.RandomPrune(x, 0.25, g3);
        TensorAssert.Equal(a, b);
        Assert.False(TensorAssert.Same(a, c), "another layer position must draw another mask");
        var kept = a.ne(0);
        TensorAssert.Close(x.masked_select(kept).div(0.25), a.masked_select(kept), 1e-15, 0);
        double fraction = kept.to(float64).mean().item<double>();
        Assert.InRange(fraction, 0.18, 0.32);
    }

    [Fact]
    public void Dare_preserves_the_expectation()
    {
        // E[mask·x / p] = x: averaged over 2000 independent masks, each entry is within 5 standard errors of x,
        // the standard error being |x|·√((1 − p) / p) / √2000.
        manual_seed(6);
        var x = randn(4, 3, dtype: float64);
        const double p = 0.3;
        const int draws = 2000;
        using var generator = new Generator(42, CPU);
        var sum = zeros_like(x);
        for (int i = 0; i < draws; i++) sum.add_(DeltaMerge.RandomPrune(x, p, generator));
        var mean = sum / draws;
        var bound = x.abs() * Math.Sqrt((1 - p) / p) / Math.Sqrt(draws) * 5;
        Assert.True((mean - x).abs().le(bound).all().item<bool>(), $"max deviation {(mean - x).abs().max().item<double>():G4}");
    }

    [Fact]
    public void DareTies_is_ties_election_on_the_dropped_tensors()
    {
        manual_seed(7);
        var xs = Enumerable.Range(0, 3).Select(_ => randn(5, 5, dtype: float64)).ToList();
        var w = new[] { 1.0, 0.5, 0.25 };
        using var g = new Generator(9, CPU);
        var merged = DeltaMerge.DareTies(xs, w, 0.6, g);
        using var replay = new Generator(9, CPU);
        var dropped = xs.Select(x => NaiveMerge.Values(DeltaMerge.RandomPrune(x, 0.6, replay))).ToList();
        TensorAssert.Close(tensor(NaiveMerge.ElectAndMean(dropped, w), new long[] { 5, 5 }), merged, 1e-12, 1e-12);
    }

    [Fact]
    public void Model_stock_interpolates_by_the_angle()
    {
        // Two deltas at 45°: cos θ = 1/√2, t = 2c / (1 + c).
        var a = T(1, 0);
        var b = T(1, 1);
        double c = 1 / Math.Sqrt(2);
        double t = 2 * c / (1 + c);
        Assert.Equal(t, DeltaMerge.ModelStockRatio(new[] { a, b }), 12);
        TensorAssert.Close(T(t, t / 2), DeltaMerge.ModelStock(new[] { a, b }), 1e-12, 1e-12);

        // Parallel deltas: t = 1 (the mean itself); opposite ones: cos θ clamped to 0, t = 0 (the base); one delta: itself.
        Assert.Equal(1, DeltaMerge.ModelStockRatio(new[] { a, a * 3 }), 12);
        Assert.Equal(0, DeltaMerge.ModelStockRatio(new[] { a, -a }));
        TensorAssert.Close(b, DeltaMerge.ModelStock(new[] { b }));

        manual_seed(8);
        var xs = Enumerable.Range(0, 4).Select(_ => randn(3, 4, dtype: float64) + 1).ToList();
        TensorAssert.Close(tensor(NaiveMerge.ModelStock(xs.Select(NaiveMerge.Values).ToList()), new long[] { 3, 4 }), DeltaMerge.ModelStock(xs), 1e-12, 1e-12);
    }

    [Fact]
    public void Truncated_svd_error_is_exactly_the_discarded_singular_values()
    {
        manual_seed(9);
        var delta = randn(12, 9, dtype: float64);
        var s = linalg.svdvals(delta);
        var (a, b) = LowRankFactorization.Truncated(delta, 4);
        Assert.Equal(new long[] { 4, 9 }, a.shape);
        Assert.Equal(new long[] { 12, 4 }, b.shape);
        var error = delta - b.matmul(a);
        double frobenius = error.norm().item<double>();
        double discarded = Math.Sqrt(s.narrow(0, 4, 5).square().sum().item<double>());
        Assert.Equal(discarded, frobenius, 10);
        Assert.Equal(s[4].item<double>(), linalg.matrix_norm(error, 2.0).item<double>(), 10);
        // Balanced factors: both carry √σ.
        TensorAssert.Close(s.narrow(0, 0, 4).sqrt(), a.square().sum(dim: 1).sqrt(), 1e-10, 1e-12);
        TensorAssert.Close(s.narrow(0, 0, 4).sqrt(), b.square().sum(dim: 0).sqrt(), 1e-10, 1e-12);
        // Full rank is exact.
        var (fa, fb) = LowRankFactorization.Truncated(delta, 9);
        TensorAssert.Close(delta, fb.matmul(fa), 1e-10, 1e-10);
        Assert.Throws<ArgumentOutOfRangeException>(() => LowRankFactorization.Truncated(delta, 10));
    }
}
