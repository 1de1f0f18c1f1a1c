using System;
using System.Collections.Generic;
using System.Linq;
using Peft.Runtime.Adapters;
using Peft.Runtime.Kernels;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Kernels;

public class LoRAFunctionTests
{
    private sealed class Setup
    {
        public Tensor X = null!, W = null!, A = null!, B = null!;
        public Tensor? Bias;
        public double Scaling = 2.0;
    }

    private static Setup Make(long[] inputShape, long outF, int rank, bool bias = true, bool inputGrad = true)
    {
        manual_seed(7);
        long inF = inputShape[^1];
        var s = new Setup
        {
            X = randn(inputShape).requires_grad_(inputGrad),
            W = randn(outF, inF) * 0.1,
            Bias = bias ? randn(outF) : null,
            A = (randn(rank, inF) * 0.1).requires_grad_(),
            B = (randn(outF, rank) * 0.1).requires_grad_(),
        };
        return s;
    }

    // The formula written out with TorchSharp ops: y = x Wᵀ + b + s·((x ⊙ mask) Aᵀ) Bᵀ, mask ∈ {0, 1/(1 − p)}.
    private static Tensor Composed(Setup s, Tensor? mask)
    {
        var dropped = mask is null ? s.X : s.X * mask;
        var y = s.X.matmul(s.W.t()) + dropped.matmul(s.A.t()).matmul(s.B.t()) * s.Scaling;
        return s.Bias is null ? y : y + s.Bias;
    }

    private static IList<Tensor> Grads(Tensor y, Tensor upstream, params Tensor[] inputs) =>
        torch.autograd.grad(new[] { y }, inputs, new[] { upstream }, allow_unused: true);

    private static Tensor[] Trainable(Setup s) => s.X.requires_grad ? new[] { s.X, s.A, s.B } : new[] { s.A, s.B };

    [Theory]
    [InlineData(new long[] { 37, 24 }, 20, 4, true, true, 0.0)]
    [InlineData(new long[] { 37, 24 }, 20, 4, false, true, 0.0)]
    [InlineData(new long[] { 3, 11, 24 }, 20, 4, true, true, 0.0)]
    [InlineData(new long[] { 37, 24 }, 20, 4, true, true, 0.3)]
    [InlineData(new long[] { 3, 11, 24 }, 20, 4, true, true, 0.3)]
    [InlineData(new long[] { 2, 9, 100 }, 70, 8, false, true, 0.05)]   // rows straddle 64-element blocks
    [InlineData(new long[] { 64, 128 }, 96, 16, true, false, 0.1)]     // input needs no gradient
    [InlineData(new long[] { 5, 130 }, 33, 3, true, false, 0.5)]       // rank not a multiple of the vector width
    [InlineData(new long[] { 70, 200 }, 150, 64, true, true, 0.1)]     // several column tiles and row groups, partial ones
    public void ForwardAndGradientsEqualTheCompositionWithTheSameMask(long[] shape, long outF, int rank, bool bias, bool inputGrad, double p)
    {
        // Both vector widths where the machine has AVX-512 (the 256-bit mask passes forced), else the 256-bit ones.
        KernelWidths.Each(() =>
        {
            using var scope = NewDisposeScope();
            var s = Make(shape, outF, rank, bias, inputGrad);
            const ulong seed = 0x1234_5678_9ABC_DEF0;
            var mask = p > 0 ? LoRAFunction.MaskTensor(seed, p, shape) : null;
            var upstream = randn(s.X.shape.Take(shape.Length - 1).Append(outF).ToArray());

            var expected = Composed(s, mask);
            var expectedGrads = Grads(expected, upstream, Trainable(s));
            var actual = LoRAFunction.Apply(s.X, null, s.W, s.Bias, s.A, s.B, s.Scaling, p, seed);
            var actualGrads = Grads(actual, upstream, Trainable(s));

            TensorAssert.Close(expected, actual, rtol: 1e-4, atol: 1e-4);
            for (int i = 0; i < expectedGrads.Count; i++)
                TensorAssert.Close(expectedGrads[i], actualGrads[i], rtol: 1e-4, atol: 1e-4);
            Assert.Equal(s.A.shape, actualGrads[^2].shape);
        });
    }

    /// <summary>
    /// The mixed batch's packed operands are the plain transposes, at ranks and widths with and without whole 8 × 8
    /// blocks (the register transposes) and with tails (the element copies), at each vector width.
    /// </summary>
    [Theory]
    [InlineData(16, 1024, 64)]
    [InlineData(11, 70, 37)]
    [InlineData(3, 5, 16)]
    [InlineData(24, 13, 48)]
    public unsafe void PackedPanelsAreTheTransposes(int rank, int inF, int outF)
    {
        using var scope = NewDisposeScope();
        var a = randn(rank, inF);
        var b = randn(outF, rank);
        KernelWidths.Each(() =>
        {
            int w = LoRAKernels.Width, chunks = (rank + w - 1) / w;
            var at = new float[LoRAKernels.RankPanelFloats(rank, inF)];
            var bt = new float[LoRAKernels.TransposedFloats(outF, rank)];
            fixed (float* atp = at, btp = bt)
            {
                LoRAKernels.PackRankPanels(TensorData.Floats(a), rank, inF, atp);
                LoRAKernels.PackTransposed(TensorData.Floats(b), outF, rank, btp);
            }
            var aValues = a.data<float>().ToArray();
            var bValues = b.data<float>().ToArray();
            for (int chunk = 0; chunk < chunks; chunk++)
                for (int j = 0; j < inF; j++)
                    for (int l = 0; l < w; l++)
                    {
                        int k = chunk * w + l;
                        Assert.Equal(k < rank ? aValues[k * inF + j] : 0f, at[((long)chunk * inF + j) * w + l]);
                    }
            for (int chunk = 0; chunk < outF / w; chunk++)
                for (int k = 0; k < rank; k++)
                    for (int l = 0; l < w; l++)
                        Assert.Equal(bValues[(chunk * w + l) * rank + k], bt[((long)chunk * rank + k) * w + l]);
        });
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(false, 3)]
    [InlineData(true, 1)]
    [InlineData(true, 2)]
    public void VectorWidthsAndWorkerSplitsAgree(bool narrow, int threads)
    {
        using var scope = NewDisposeScope();
        long[] shape = { 2, 150, 72 };                // 300 rows: up to four workers of 64+ rows, a partial last block
        var s = Make(shape, 40, 5);
        var mask = LoRAFunction.MaskTensor(31, 0.1, shape);
        var upstream = randn(2, 150, 40);
        var expected = Composed(s, mask);
        var expectedGrads = Grads(expected, upstream, Trainable(s));
        bool wasNarrow = LoRAKernels.ForceNarrow;
        try
        {
            LoRAKernels.ForceNarrow = narrow;
            LoRAFunction.KernelThreadsOverride = threads;
            var actual = LoRAFunction.Apply(s.X, null, s.W, s.Bias, s.A, s.B, s.Scaling, 0.1, 31);
            var actualGrads = Grads(actual, upstream, Trainable(s));
            TensorAssert.Close(expected, actual, rtol: 1e-4, atol: 1e-4);
            for (int i = 0; i < expectedGrads.Count; i++)
                TensorAssert.Close(expectedGrads[i], actualGrads[i], rtol: 1e-4, atol: 1e-4);
        }
        finally
        {
            LoRAKernels.ForceNarrow = wasNarrow;
            LoRAFunction.KernelThreadsOverride = null;
        }
    }

    [Theory]
    [InlineData(true, 0.0)]
    [InlineData(true, 0.1)]
    [InlineData(false, 0.1)]
    public void AnEmptyBatchGivesAnEmptyOutputAndZeroFactorGradients(bool bias, double p)
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 0, 24 }, 20, 4, bias);
        var y = LoRAFunction.Apply(s.X, null, s.W, s.Bias, s.A, s.B, s.Scaling, p, 3);
        Assert.Equal(new long[] { 0, 20 }, y.shape);
        var grads = Grads(y, zeros(0, 20), Trainable(s));
        Assert.Equal(new long[] { 0, 24 }, grads[0].shape);
        Assert.Equal(s.A.shape, grads[1].shape);
        Assert.Equal(s.B.shape, grads[2].shape);
        Assert.Equal(0, grads[1].abs().sum().item<float>());
        Assert.Equal(0, grads[2].abs().sum().item<float>());
    }

    [Fact]
    public void BackwardLeavesFrozenWeightAndBiasAloneAndFillsOnlyTheAdapterGrads()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 16, 32 }, 24, 4, inputGrad: false);
        LoRAFunction.Apply(s.X, null, s.W, s.Bias, s.A, s.B, s.Scaling, 0.2, 99).square().sum().backward();
        Assert.Null(s.W.grad);
        Assert.Null(s.Bias!.grad);
        Assert.Null(s.X.grad);
        Assert.NotNull(s.A.grad);
        Assert.NotNull(s.B.grad);
    }

    [Fact]
    public void AnUnfrozenBaseTakesTheComposedPathAndGetsItsGradient()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 16, 32 }, 24, 4);
        s.W.requires_grad_();
        var mask = LoRAFunction.MaskTensor(5, 0.25, s.X.shape);
        var upstream = randn(16, 24);
        var expected = Grads(Composed(s, mask), upstream, s.X, s.W, s.A, s.B);
        var actual = Grads(LoRAFunction.Apply(s.X, null, s.W, s.Bias, s.A, s.B, s.Scaling, 0.25, 5), upstream, s.X, s.W, s.A, s.B);
        for (int i = 0; i < 4; i++) TensorAssert.Close(expected[i], actual[i], rtol: 1e-4, atol: 1e-4);
    }

    [Fact]
    public void OtherDtypesAndLayoutsUseTheSameMask()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 40, 24 }, 20, 4);
        var reference = LoRAFunction.Apply(s.X, null, s.W, s.Bias, s.A, s.B, s.Scaling, 0.3, 11);
        // float64: the composed TorchSharp path, same Philox mask.
        var d = LoRAFunction.Apply(s.X.to(float64), null, s.W.to(float64), s.Bias!.to(float64), s.A.to(float64), s.B.to(float64), s.Scaling, 0.3, 11);
        Assert.Equal(ScalarType.Float64, d.dtype);
        TensorAssert.Close(reference, d, rtol: 1e-4, atol: 1e-4);
        // A non-contiguous input with the same logical values.
        var xt = s.X.detach().t().contiguous().t();
        Assert.False(xt.is_contiguous());
        TensorAssert.Close(reference, LoRAFunction.Apply(xt, null, s.W, s.Bias, s.A, s.B, s.Scaling, 0.3, 11), rtol: 1e-4, atol: 1e-4);
    }

    [Fact]
    public void WithoutGradientsTheResultIsIdenticalToTheGraphPath()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 4, 33, 64 }, 48, 8);
        foreach (double p in new[] { 0.0, 0.1 })
        {
            var withGraph = LoRAFunction.Apply(s.X, null, s.W, s.Bias, s.A, s.B, s.Scaling, p, 3);
            Assert.True(withGraph.requires_grad);
            Tensor plain;
            using (no_grad()) plain = LoRAFunction.Apply(s.X, null, s.W, s.Bias, s.A, s.B, s.Scaling, p, 3);
            Assert.False(plain.requires_grad);
            TensorAssert.Equal(withGraph, plain);
        }
    }

    [Fact]
    public void ASecondAdapterAddsToThePreviousOutputAndPassesItsGradientThrough()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 2, 10, 24 }, 20, 4);
        var a2 = (randn(2, 24) * 0.1).requires_grad_();
        var b2 = (randn(20, 2) * 0.1).requires_grad_();
        var m1 = LoRAFunction.MaskTensor(1, 0.2, s.X.shape);
        var m2 = LoRAFunction.MaskTensor(2, 0.2, s.X.shape);
        var upstream = randn(2, 10, 20);
        var expected = Composed(s, m1) + (s.X * m2).matmul(a2.t()).matmul(b2.t()) * 0.5;
        var first = LoRAFunction.Apply(s.X, null, s.W, s.Bias, s.A, s.B, s.Scaling, 0.2, 1);
        var actual = LoRAFunction.Apply(s.X, first, null, null, a2, b2, 0.5, 0.2, 2);
        TensorAssert.Close(expected, actual, rtol: 1e-4, atol: 1e-4);
        var inputs = new[] { s.X, s.A, s.B, a2, b2 };
        var e = Grads(expected, upstream, inputs);
        var g = Grads(actual, upstream, inputs);
        for (int i = 0; i < inputs.Length; i++) TensorAssert.Close(e[i], g[i], rtol: 1e-4, atol: 1e-4);
    }

    [Fact]
    public void SecondDerivativesMatchTheComposition()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 12, 16 }, 10, 3);
        var mask = LoRAFunction.MaskTensor(8, 0.2, s.X.shape);
        // A gradient penalty: ‖∂L/∂x‖² differentiated with respect to A and B.
        Tensor Penalty(Tensor y)
        {
            var gx = torch.autograd.grad(new[] { y.square().sum() }, new[] { s.X }, retain_graph: true, create_graph: true)[0];
            return gx.square().sum();
        }
        var expected = Grads(Penalty(Composed(s, mask)), tensor(1f), s.A, s.B);
        var actual = Grads(Penalty(LoRAFunction.Apply(s.X, null, s.W, s.Bias, s.A, s.B, s.Scaling, 0.2, 8)), tensor(1f), s.A, s.B);
        for (int i = 0; i < 2; i++) TensorAssert.Close(expected[i], actual[i], rtol: 1e-4, atol: 1e-4);
    }

    [Fact]
    public void ActivationsSavedAreTheInputItselfTheThinProductAndTheMaskAsBits()
    {
        using var scope = NewDisposeScope();
        const int n = 256, d = 512, r = 8;
        var s = Make(new long[] { n, d }, d, r);
        var y = LoRAFunction.Apply(s.X, null, s.W, s.Bias, s.A, s.B, s.Scaling, 0.05, 21);
        var report = LoRAFunction.LastSave!;
        // Beyond the input (the same tensor, no copy) and the parameters: only u = drop(x)·Aᵀ, [n, r] floats, and the
        // mask as bits, [n, d / 64] words.
        Assert.Equal((long)n * d * 4, report.InputBytes);
        Assert.Equal((long)n * r * 4 + (long)n * d / 8, report.ActivationBytes);
        Assert.Equal((long)(d * d + r * d + d * r) * 4, report.ParameterBytes);
        Assert.True(report.ActivationBytes * 16 <= (long)n * d * 4, "no [n, d] tensor is kept beyond the input");
        // TorchSharp's per-output zero-gradient template ([n, out]) is released as well.
        Assert.True(report.OutputCacheReleased);
        y.sum().backward();
        Assert.NotNull(s.A.grad);
    }

    [Fact]
    public void LoRALinearRunsTheFusedFunctionWithASeedFromTheTorchGenerator()
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        var layer = new LoRALinear("T.q", nn.Linear(24, 20), "default", new LoRAOptions { Rank = 4, Alpha = 8, Dropout = 0.3 });
        using (no_grad()) layer.LoraB("default").normal_();
        var x = randn(6, 24).requires_grad_();
        layer.train();
        manual_seed(42);
        var y = layer.forward(x);
        Assert.NotNull(LoRAFunction.LastSave);
        manual_seed(42);
        ulong seed = LoRAFunction.NextSeed();
        var s = new Setup
        {
            X = x, W = layer.BaseLayer.get_parameter("weight")!, Bias = layer.BaseLayer.get_parameter("bias"),
            A = layer.LoraA("default"), B = layer.LoraB("default"), Scaling = 2.0,
        };
        TensorAssert.Close(Composed(s, LoRAFunction.MaskTensor(seed, 0.3, x.shape)), y, rtol: 1e-5, atol: 1e-5);
    }
}

public class DropoutMaskTests
{
    [Theory]
    [InlineData(0u, 0u, 0u, 0u, 0u, 0u, 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u)]
    [InlineData(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu)]
    [InlineData(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u, 0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u)]
    public void PhiloxMatchesRandom123KnownAnswers(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1, uint x0, uint x1, uint x2, uint x3) =>
        Assert.Equal((x0, x1, x2, x3), Philox4x32.Block(c0, c1, c2, c3, k0, k1));

    [Theory]
    [InlineData(0ul, 0.05)]
    [InlineData(0xDEADBEEF_CAFEF00Dul, 0.5)]
    [InlineData(17ul, 0.999)]
    public void VectorPathsProduceTheScalarDefinition(ulong seed, double p)
    {
        var mask = new DropoutMask(seed, p);
        foreach (long first in new long[] { 0, 1, 7, (1L << 29) - 3 }) // odd starts and a counter past 2³²
        {
            var fast = new ulong[37];
            var slow = new ulong[37];
            mask.DroppedBits(first, fast);
            mask.DroppedBitsScalar(first, slow);
            Assert.Equal(slow, fast);
            for (int bit = 0; bit < 64; bit += 5)
                Assert.Equal(((slow[3] >> bit) & 1) != 0, mask.IsDropped((first + 3) * 64 + bit));
        }
    }

    [Theory]
    [InlineData(0.05)]
    [InlineData(0.3)]
    [InlineData(0.5)]
    public unsafe void TheMaskIsReproducibleFromItsSeedAndKeepsOneMinusP(double p)
    {
        using var scope = NewDisposeScope();
        var a = LoRAFunction.MaskTensor(123, p, new long[] { 1000, 1000 });
        var again = LoRAFunction.MaskTensor(123, p, new long[] { 1000, 1000 });
        var other = LoRAFunction.MaskTensor(124, p, new long[] { 1000, 1000 });
        TensorAssert.Equal(a, again);
        Assert.False(TensorAssert.Same(a, other));
        float keep = (float)(1 / (1 - p));
        Assert.True((a.eq(0) | a.eq(keep)).all().item<bool>());
        double keepRate = a.ne(0).to(float64).mean().item<double>();
        double sigma = Math.Sqrt(p * (1 - p) / 1e6);
        Assert.InRange(keepRate, 1 - p - 5 * sigma, 1 - p + 5 * sigma);
        // Each row and each column sees the rate too (no striping from the block layout).
        var rowRates = a.ne(0).to(float64).mean(new long[] { 1 });
        var colRates = a.ne(0).to(float64).mean(new long[] { 0 });
        double rowSigma = Math.Sqrt(p * (1 - p) / 1000);
        Assert.True((rowRates - (1 - p)).abs().max().item<double>() < 6 * rowSigma);
        Assert.True((colRates - (1 - p)).abs().max().item<double>() < 6 * rowSigma);
    }

    [Fact]
    public void ZeroDropoutDropsNothing()
    {
        var mask = new DropoutMask(5, 0);
        Assert.False(mask.DropsAny);
        var bits = new ulong[8];
        mask.DroppedBits(0, bits);
        Assert.All(bits, b => Assert.Equal(0ul, b));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DropoutMask(5, 1.0));
    }

    [Theory]
    [InlineData(0L, 100)]
    [InlineData(300L, 100)]
    [InlineData(1L << 33, 70)]
    [InlineData(63L, 1)]
    public unsafe void RowBitsAreAlignedToTheRowStart(long first, int count)
    {
        var mask = new DropoutMask(77, 0.2);
        int words = (count + 63) / 64;
        var bits = new ulong[words];
        var scratch = new ulong[words + 1];
        fixed (ulong* b = bits, sc = scratch) mask.RowBits(first, count, b, sc);
        for (int t = 0; t < count; t++)
            Assert.Equal(mask.IsDropped(first + t), ((bits[t / 64] >> (t % 64)) & 1) != 0);
    }
}
