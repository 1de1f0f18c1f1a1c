using System.Collections.Generic;
using System.Linq;
using Peft.Runtime.Adapters;
using Peft.Runtime.Kernels;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Kernels;

public class DoRAFunctionTests
{
    private sealed class Setup
    {
        public Tensor X = null!, W = null!, A = null!, B = null!, M = null!;
        public Tensor? Bias;
        public double Scaling = 2.0;
    }

    private static Setup Make(long[] inputShape, long outF, int rank, bool bias = true, bool inputGrad = true)
    {
        manual_seed(11);
        long inF = inputShape[^1];
        return new Setup
        {
            X = randn(inputShape).requires_grad_(inputGrad),
            W = randn(outF, inF) * 0.1,
            Bias = bias ? randn(outF) : null,
            A = (randn(rank, inF) * 0.1).requires_grad_(),
            B = (randn(outF, rank) * 0.1).requires_grad_(),
            M = (rand(outF) + 0.5).requires_grad_(),
        };
    }

    // DoRA written out densely, independently of the kernel: n = ‖W + s·B·A‖ per row (a constant), g = m / n,
    // y = g ⊙ (x·Wᵀ + s·x·Aᵀ·Bᵀ) + b.
    private static Tensor Composed(Setup s)
    {
        Tensor norm;
        using (no_grad()) norm = (s.W + s.B.detach().matmul(s.A.detach()) * s.Scaling).square().sum(1).sqrt();
        var g = s.M / norm;
        var z = s.X.matmul(s.W.t()) + s.X.matmul(s.A.t()).matmul(s.B.t()) * s.Scaling;
        var y = z * g;
        return s.Bias is null ? y : y + s.Bias;
    }

    private static Tensor Fused(Setup s) => DoRAFunction.Linear(s.X, s.W, s.Bias, s.A, s.B, s.M, s.Scaling);

    private static IList<Tensor> Grads(Tensor y, Tensor upstream, params Tensor[] inputs) =>
        torch.autograd.grad(new[] { y }, inputs, new[] { upstream }, allow_unused: true);

    private static Tensor[] Trainable(Setup s) => s.X.requires_grad ? new[] { s.X, s.A, s.B, s.M } : new[] { s.A, s.B, s.M };

    [Theory]
    [InlineData(new long[] { 37, 24 }, 20, 4, true, true)]
    [InlineData(new long[] { 37, 24 }, 20, 4, false, true)]
    [InlineData(new long[] { 3, 11, 24 }, 20, 4, true, true)]
    [InlineData(new long[] { 64, 128 }, 96, 16, true, false)]   // input needs no gradient
    [InlineData(new long[] { 5, 130 }, 33, 3, false, true)]     // widths off the vector size
    [InlineData(new long[] { 70, 200 }, 150, 64, true, true)]   // several column tiles and row groups
    public void ForwardAndEveryGradientEqualTheComposition(long[] shape, long outF, int rank, bool bias, bool inputGrad)
    {
        // Both vector widths where the machine has AVX-512 (the 256-bit loops forced).
        KernelWidths.Each(() =>
        {
            using var scope = NewDisposeScope();
            var s = Make(shape, outF, rank, bias, inputGrad);
            var upstream = randn(shape.Take(shape.Length - 1).Append(outF).ToArray());
            var expected = Composed(s);
            var expectedGrads = Grads(expected, upstream, Trainable(s));
            var actual = Fused(s);
            var actualGrads = Grads(actual, upstream, Trainable(s));

            TensorAssert.Close(expected, actual, rtol: 1e-4, atol: 1e-4);
            Assert.Equal(expectedGrads.Count, actualGrads.Count);
            for (int i = 0; i < expectedGrads.Count; i++)
                TensorAssert.Close(expectedGrads[i], actualGrads[i], rtol: 1e-4, atol: 1e-4);
        });
    }

    /// <summary>
    /// Two fused DoRA layers in one graph, the second wider: each backward borrows the thread's scratch buffer for its
    /// scaled gradient, and neither may see the other's (nor a size left over from it).
    /// </summary>
    [Fact]
    public void StackedLayersEachGetTheirOwnGradients()
    {
        using var scope = NewDisposeScope();
        var first = Make(new long[] { 33, 24 }, 40, 4);
        var second = Make(new long[] { 33, 40 }, 56, 8, inputGrad: false);
        var upstream = randn(33, 56);

        second.X = Composed(first);
        var expected = Composed(second);
        var expectedGrads = Grads(expected, upstream, first.X, first.A, first.B, first.M, second.A, second.B, second.M);

        second.X = Fused(first);
        var actual = Fused(second);
        var actualGrads = Grads(actual, upstream, first.X, first.A, first.B, first.M, second.A, second.B, second.M);

        TensorAssert.Close(expected, actual, rtol: 1e-4, atol: 1e-4);
        for (int i = 0; i < expectedGrads.Count; i++)
            TensorAssert.Close(expectedGrads[i], actualGrads[i], rtol: 1e-4, atol: 1e-4);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)] // 200 rows: chunks of 64 rows on two workers, the last one short
    public void TheThinNormFormulaEqualsTheDenseRowNorm(int threads)
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 4, 300 }, 200, 12);
        (Tensor norm, Tensor factor) = (null!, null!);
        try
        {
            DoRAFunction.KernelThreadsOverride = threads;
            (norm, factor) = DoRAFunction.NormAndFactor(s.W, s.A, s.B, s.M, s.Scaling);
        }
        finally
        {
            DoRAFunction.KernelThreadsOverride = null;
        }
        var dense = DoRA.RowNorm(s.W + s.B.detach().matmul(s.A.detach()) * s.Scaling);
        TensorAssert.Close(dense, norm, rtol: 1e-5, atol: 1e-6);
        TensorAssert.Close(s.M.detach() / dense, factor, rtol: 1e-5, atol: 1e-6);
        Assert.False(factor.requires_grad);
    }

    [Fact]
    public void AZeroRowPassesThroughUnscaledWithoutNaNAndItsMagnitudeGetsNoGradient()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 9, 16 }, 8, 2);
        using (no_grad())
        {
            s.W[3].zero_();
            s.B[3].zero_();
        }
        var y = Fused(s);
        Assert.False(y.isnan().any().item<bool>());
        // Row 3 of W + ΔW is zero, so g = 1 there: the output is the bias alone.
        TensorAssert.Close(s.Bias!.expand(9, 8)[.., 3], y[.., 3], rtol: 0, atol: 1e-6);
        var grads = Grads(y, ones_like(y), s.M, s.A, s.B);
        Assert.Equal(0f, grads[0][3].item<float>());
        foreach (var g in grads) Assert.False(g.isnan().any().item<bool>());
    }

    [Fact]
    public void AnEmptyBatchGivesAnEmptyOutputAndZeroGradients()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 0, 24 }, 20, 4);
        var y = Fused(s);
        Assert.Equal(new long[] { 0, 20 }, y.shape);
        var grads = Grads(y, zeros(0, 20), Trainable(s));
        Assert.Equal(new long[] { 0, 24 }, grads[0].shape);
        for (int i = 1; i < grads.Count; i++) Assert.Equal(0, grads[i].abs().sum().item<float>());
    }

    [Fact]
    public void BackwardLeavesTheFrozenWeightAndBiasAlone()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 16, 32 }, 24, 4, inputGrad: false);
        Fused(s).square().sum().backward();
        Assert.Null(s.W.grad);
        Assert.Null(s.Bias!.grad);
        Assert.Null(s.X.grad);
        Assert.NotNull(s.A.grad);
        Assert.NotNull(s.B.grad);
        Assert.NotNull(s.M.grad);
    }

    [Fact]
    public void AnUnfrozenBaseAndOtherDtypesTakeTheComposedPathWithTheSameResult()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 16, 32 }, 24, 4);
        var upstream = randn(16, 24);
        var reference = Fused(s);
        var d = DoRAFunction.Linear(s.X.to(float64), s.W.to(float64), s.Bias!.to(float64), s.A.to(float64), s.B.to(float64), s.M.to(float64), s.Scaling);
        Assert.Equal(ScalarType.Float64, d.dtype);
        TensorAssert.Close(reference, d, rtol: 1e-4, atol: 1e-4);

        s.W.requires_grad_();
        var expected = Grads(Composed(s), upstream, s.X, s.W, s.A, s.B, s.M);
        var actual = Grads(Fused(s), upstream, s.X, s.W, s.A, s.B, s.M);
        for (int i = 0; i < expected.Count; i++) TensorAssert.Close(expected[i], actual[i], rtol: 1e-4, atol: 1e-4);
    }

    [Fact]
    public void WithoutGradientsTheResultIsIdenticalToTheGraphPath()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 4, 33, 64 }, 48, 8);
        var withGraph = Fused(s);
        Assert.True(withGraph.requires_grad);
        Tensor plain;
        using (no_grad()) plain = Fused(s);
        Assert.False(plain.requires_grad);
        TensorAssert.Equal(withGraph, plain);
    }

    [Fact]
    public void SecondDerivativesMatchTheComposition()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 12, 16 }, 10, 3);
        // A gradient penalty: ‖∂L/∂x‖² differentiated with respect to A, B and m.
        Tensor Penalty(Tensor y)
        {
            var gx = torch.autograd.grad(new[] { y.square().sum() }, new[] { s.X }, retain_graph: true, create_graph: true)[0];
            return gx.square().sum();
        }
        var expected = Grads(Penalty(Composed(s)), tensor(1f), s.A, s.B, s.M);
        var actual = Grads(Penalty(Fused(s)), tensor(1f), s.A, s.B, s.M);
        for (int i = 0; i < 3; i++) TensorAssert.Close(expected[i], actual[i], rtol: 1e-4, atol: 1e-4);
    }

    [Fact]
    public void ActivationsSavedAreTheInputTheThinProductAndTheUnscaledOutput()
    {
        using var scope = NewDisposeScope();
        const int n = 256, d = 512, r = 8;
        var s = Make(new long[] { n, d }, d, r);
        var y = Fused(s);
        var report = DoRAFunction.LastSave!;
        Assert.Equal((long)n * d * 4, report.InputBytes);                  // x itself, shared with the frozen layer
        Assert.Equal((long)(n * r + n * d + 2 * d) * 4, report.ActivationBytes); // u [n, r], z [n, out], n and g [out]
        Assert.Equal((long)(d * d + r * d + d * r + d) * 4, report.ParameterBytes);
        Assert.True(report.OutputCacheReleased);
        y.sum().backward();
        Assert.NotNull(s.M.grad);
    }

    [Fact]
    public void LoRALinearRunsTheFusedFunctionWithoutDropoutAndComposesWithIt()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var layer = new LoRALinear("T.q", nn.Linear(24, 20), "default", new DoRAOptions { Rank = 4, Alpha = 8 });
        using (no_grad()) layer.LoraB("default").normal_(0, 0.1);
        layer.train();
        var x = randn(6, 24).requires_grad_();
        var y = RanFused(() => layer.forward(x), out bool fused);
        Assert.True(fused);
        var s = new Setup
        {
            X = x, W = layer.BaseLayer.get_parameter("weight")!, Bias = layer.BaseLayer.get_parameter("bias"),
            A = layer.LoraA("default"), B = layer.LoraB("default"), M = layer.Magnitude("default"), Scaling = 2.0,
        };
        TensorAssert.Close(Composed(s), y, rtol: 1e-5, atol: 1e-5);

        // With dropout, in training and in evaluation (where it drops nothing).
        var dropping = new LoRALinear("T.k", nn.Linear(24, 20), "default", new DoRAOptions { Rank = 4, Alpha = 8, Dropout = 0.1 });
        dropping.train();
        RanFused(() => dropping.forward(x), out fused);
        Assert.True(fused);
        dropping.eval();
        RanFused(() => dropping.forward(x), out fused);
        Assert.True(fused);

        // A DoRA adapter after another adapter rescales the weight the first amounts to: the composed path.
        layer.AddAdapter("second", new DoRAOptions { Rank = 4, Alpha = 8 });
        layer.SetActiveAdapters(new[] { "default", "second" });
        RanFused(() => layer.forward(x), out fused);
        Assert.False(fused);
    }

    // PEFT's DoRA in training, written out as PEFT writes it, with the mask of the fused call's seed:
    // y = x·Wᵀ + b + (g − 1) ⊙ xd·Wᵀ + g ⊙ s·(xd·Aᵀ)·Bᵀ, xd = x ⊙ mask.
    private static Tensor ComposedWithDropout(Setup s, double p, ulong seed)
    {
        Tensor norm;
        using (no_grad()) norm = (s.W + s.B.detach().matmul(s.A.detach()) * s.Scaling).square().sum(1).sqrt();
        var g = s.M / norm;
        var xd = s.X * LoRAFunction.MaskTensor(seed, p, s.X.shape);
        var y = s.X.matmul(s.W.t()) + (g - 1) * xd.matmul(s.W.t()) + g * xd.matmul(s.A.t()).matmul(s.B.t()) * s.Scaling;
        return s.Bias is null ? y : y + s.Bias;
    }

    [Theory]
    [InlineData(new long[] { 37, 24 }, 20, 4, true, true, 0.1)]
    [InlineData(new long[] { 3, 11, 24 }, 20, 4, false, true, 0.5)]
    [InlineData(new long[] { 64, 128 }, 96, 16, true, false, 0.05)]  // input needs no gradient
    [InlineData(new long[] { 5, 130 }, 33, 3, true, true, 0.3)]       // widths off the vector size
    [InlineData(new long[] { 70, 200 }, 150, 64, true, true, 0.05)]   // 14,000 elements: several mask chunks, one partial
    public void WithDropoutForwardAndEveryGradientEqualPeftsFormulaWithTheSameMask(long[] shape, long outF, int rank, bool bias, bool inputGrad, double p)
    {
        using var scope = NewDisposeScope();
        const ulong seed = 0x5eed_1234_abcdUL;
        var s = Make(shape, outF, rank, bias, inputGrad);
        var upstream = randn(shape.Take(shape.Length - 1).Append(outF).ToArray());
        var expected = ComposedWithDropout(s, p, seed);
        var expectedGrads = Grads(expected, upstream, Trainable(s));
        var actual = DoRAFunction.Apply(s.X, s.W, s.Bias, s.A, s.B, s.M, s.Scaling, p, seed);
        var actualGrads = Grads(actual, upstream, Trainable(s));

        TensorAssert.Close(expected, actual, rtol: 1e-4, atol: 1e-4);
        Assert.Equal(expectedGrads.Count, actualGrads.Count);
        for (int i = 0; i < expectedGrads.Count; i++)
            TensorAssert.Close(expectedGrads[i], actualGrads[i], rtol: 1e-4, atol: 1e-4);
        // The mask matters: without it (or with another seed) the result differs.
        Assert.False(Fused(s).allclose(actual, rtol: 1e-3, atol: 1e-3));
        Assert.False(DoRAFunction.Apply(s.X, s.W, s.Bias, s.A, s.B, s.M, s.Scaling, p, seed + 1).allclose(actual, rtol: 1e-3, atol: 1e-3));
    }

    [Fact]
    public void WithDropoutTheMaskPassesSharedBetweenWorkersGiveTheSameResult()
    {
        // 600 × 1024 elements: three spans of the mask passes, the last one partial, on two workers.
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 600, 1024 }, 48, 4);
        var upstream = randn(600, 48);
        var expected = ComposedWithDropout(s, 0.1, 99);
        var expectedGrads = Grads(expected, upstream, Trainable(s));
        try
        {
            DoRAFunction.KernelThreadsOverride = 2;
            var actual = DoRAFunction.Apply(s.X, s.W, s.Bias, s.A, s.B, s.M, s.Scaling, 0.1, 99);
            var actualGrads = Grads(actual, upstream, Trainable(s));
            TensorAssert.Close(expected, actual, rtol: 1e-4, atol: 1e-4);
            for (int i = 0; i < expectedGrads.Count; i++)
                TensorAssert.Close(expectedGrads[i], actualGrads[i], rtol: 1e-4, atol: 1e-4);
        }
        finally
        {
            DoRAFunction.KernelThreadsOverride = null;
        }
    }

    [Fact]
    public void WithDropoutSecondDerivativesAndTheComposedPathUseTheSameMask()
    {
        using var scope = NewDisposeScope();
        const ulong seed = 77;
        var s = Make(new long[] { 12, 16 }, 10, 3);
        Tensor Penalty(Tensor y)
        {
            var gx = torch.autograd.grad(new[] { y.square().sum() }, new[] { s.X }, retain_graph: true, create_graph: true)[0];
            return gx.square().sum();
        }
        var expected = Grads(Penalty(ComposedWithDropout(s, 0.3, seed)), tensor(1f), s.A, s.B, s.M);
        var actual = Grads(Penalty(DoRAFunction.Apply(s.X, s.W, s.Bias, s.A, s.B, s.M, s.Scaling, 0.3, seed)), tensor(1f), s.A, s.B, s.M);
        for (int i = 0; i < 3; i++) TensorAssert.Close(expected[i], actual[i], rtol: 1e-4, atol: 1e-4);

        // float64 cannot take the raw loops: the composed path, with the same Philox mask.
        var d = new Setup { X = s.X.detach().to(float64), W = s.W.to(float64), Bias = s.Bias!.to(float64), A = s.A.detach().to(float64),
            B = s.B.detach().to(float64), M = s.M.detach().to(float64), Scaling = s.Scaling };
        TensorAssert.Close(ComposedWithDropout(d, 0.3, seed), DoRAFunction.Apply(d.X, d.W, d.Bias, d.A, d.B, d.M, d.Scaling, 0.3, seed), rtol: 1e-9, atol: 1e-9);
    }

    [Fact]
    public void WithDropoutAFirstLayerStillGetsItsMagnitudeGradientUnderCreateGraph()
    {
        // Input without gradient, create_graph on: the recomputed layer needs W for m's gradient even though dX is not wanted.
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 9, 16 }, 10, 3, inputGrad: false);
        var upstream = randn(9, 10);
        var expected = torch.autograd.grad(new[] { ComposedWithDropout(s, 0.2, 5) }, new[] { s.A, s.M }, new[] { upstream }, create_graph: true);
        var actual = torch.autograd.grad(new[] { DoRAFunction.Apply(s.X, s.W, s.Bias, s.A, s.B, s.M, s.Scaling, 0.2, 5) }, new[] { s.A, s.M }, new[] { upstream }, create_graph: true);
        for (int i = 0; i < 2; i++) TensorAssert.Close(expected[i], actual[i], rtol: 1e-4, atol: 1e-4);
    }

    // Whether the call ran DoRAFunction's forward: each run records a new save report.
    private static Tensor RanFused(System.Func<Tensor> call, out bool fused)
    {
        var before = DoRAFunction.LastSave;
        var y = call();
        fused = !ReferenceEquals(before, DoRAFunction.LastSave);
        return y;
    }
}
