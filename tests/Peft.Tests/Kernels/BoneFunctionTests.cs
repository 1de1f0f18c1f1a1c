using System;
using System.Collections.Generic;
using System.Linq;
using Peft.Runtime.Adapters;
using Peft.Runtime.Kernels;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Kernels;

/// <summary>
/// <see cref="BoneFunction"/> against an independent reference: the dense adapted weight built entry by entry from its
/// definition (ΔW[o, i] = D[i mod r, o] for Bone, each tile W_IJ + W_IJ·D_I + D_I sliced out one by one for Bat), with
/// gradients from libtorch's autograd through that construction.
/// </summary>
public class BoneFunctionTests
{
    private sealed class Setup
    {
        public Tensor X = null!, W = null!;
        public Tensor? Bias, Bat;
        public Tensor[] Bones = Array.Empty<Tensor>();

        public Tensor[] Blocks => (Bat is null ? Bones : Bones.Prepend(Bat)).ToArray();

        public Tensor[] Differentiable => X.requires_grad ? Blocks.Prepend(X).ToArray() : Blocks;
    }

    /// <summary>A layer [out, in] with a Bat block of size <paramref name="bat"/> (0: none) and Bone blocks of the given sizes.</summary>
    private static Setup Make(long[] inputShape, long outF, int bat, int[] bones, bool bias = true, bool inputGrad = true)
    {
        manual_seed(11);
        long inF = inputShape[^1];
        return new Setup
        {
            X = randn(inputShape).requires_grad_(inputGrad),
            W = randn(outF, inF) * 0.2,
            Bias = bias ? randn(outF) : null,
            Bat = bat > 0 ? (randn(outF / bat, bat, bat) * 0.3).requires_grad_() : null,
            Bones = bones.Select(r => (randn(r, outF) * 0.3).requires_grad_()).ToArray(),
        };
    }

    /// <summary>ΔW[o, i] = D[i mod r, o], by gathering D's rows with an index built from the definition.</summary>
    private static Tensor BoneDelta(Tensor d, long inF)
    {
        long r = d.shape[0];
        var rows = tensor(Enumerable.Range(0, (int)inF).Select(i => (long)(i % r)).ToArray());
        return d.index_select(0, rows).t(); // [out, in]: column i is D[i mod r, :]
    }

    /// <summary>Every r × r tile W_IJ replaced by W_IJ + W_IJ·D_I + D_I, sliced out and put back one tile at a time.</summary>
    private static Tensor BatWeight(Tensor w, Tensor d)
    {
        long r = d.shape[^1], outBlocks = w.shape[0] / r, inBlocks = w.shape[1] / r;
        var rows = new List<Tensor>();
        for (long I = 0; I < outBlocks; I++)
        {
            var tiles = new List<Tensor>();
            for (long J = 0; J < inBlocks; J++)
            {
                var tile = w[TensorIndex.Slice(I * r, (I + 1) * r), TensorIndex.Slice(J * r, (J + 1) * r)];
                tiles.Add(tile + tile.matmul(d[I]) + d[I]);
            }
            rows.Add(cat(tiles, 1));
        }
        return cat(rows, 0);
    }

    private static Tensor Reference(Setup s)
    {
        var w = s.Bat is null ? s.W : BatWeight(s.W, s.Bat);
        foreach (var d in s.Bones) w = w + BoneDelta(d, s.W.shape[1]);
        var y = s.X.matmul(w.t());
        return s.Bias is null ? y : y + s.Bias;
    }

    private static Tensor Fused(Setup s) => BoneFunction.Linear(s.X, s.W, s.Bias, s.Bat, s.Bones);

    private static IList<Tensor> Grads(Tensor y, Tensor upstream, params Tensor[] inputs) =>
        torch.autograd.grad(new[] { y }, inputs, new[] { upstream }, allow_unused: true);

    private static T WithDense<T>(bool? dense, Func<T> body)
    {
        var was = BoneFunction.DenseOverride;
        BoneFunction.DenseOverride = dense;
        try { return body(); }
        finally { BoneFunction.DenseOverride = was; }
    }

    public static IEnumerable<object?[]> Cases()
    {
        var shapes = new[] { new long[] { 37, 24 }, new long[] { 3, 5, 24 } };
        var layouts = new (int Bat, int[] Bones)[]
        {
            (0, new[] { 4 }),          // Bone
            (0, new[] { 3 }),          // Bone, block not a power of two
            (4, Array.Empty<int>()),   // Bat
            (2, new[] { 4 }),          // Bat, then a Bone adapter on the Bat-adapted weight
            (0, new[] { 4, 6, 4 }),    // several Bone adapters, two with the same block
        };
        foreach (var shape in shapes)
            foreach (var (bat, bones) in layouts)
                foreach (bool bias in new[] { true, false })
                    foreach (bool? dense in new bool?[] { false, true })
                        yield return new object?[] { shape, bat, bones, bias, dense };
        // 36 columns: whole vector periods of lcm(r, 8) floats and leftover blocks (r = 3, 12), a period wider than
        // the row (r = 36, a single block), and several block sizes at once.
        var wide = new (int Bat, int[] Bones)[] { (0, new[] { 3 }), (0, new[] { 12 }), (0, new[] { 36 }), (2, new[] { 3, 12, 4 }) };
        foreach (var (bat, bones) in wide)
            foreach (bool? dense in new bool?[] { false, true })
                yield return new object?[] { new long[] { 2, 9, 36 }, bat, bones, true, dense };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardAndGradientsEqualTheDenseDefinition(long[] shape, int bat, int[] bones, bool bias, bool? dense)
    {
        using var scope = NewDisposeScope();
        var s = Make(shape, 20, bat, bones, bias);
        var upstream = randn(shape.Take(shape.Length - 1).Append(20L).ToArray());
        var expected = Reference(s);
        var expectedGrads = Grads(expected, upstream, s.Differentiable);
        var (actual, actualGrads) = WithDense(dense, () =>
        {
            var y = Fused(s);
            Assert.NotNull(BoneFunction.LastSave);
            return (y, Grads(y, upstream, s.Differentiable));
        });
        Assert.True(actual.requires_grad);
        TensorAssert.Close(expected, actual, rtol: 1e-4, atol: 1e-4);
        Assert.Equal(expectedGrads.Count, actualGrads.Count);
        for (int i = 0; i < expectedGrads.Count; i++)
        {
            Assert.Equal(s.Differentiable[i].shape, actualGrads[i].shape);
            TensorAssert.Close(expectedGrads[i], actualGrads[i], rtol: 1e-4, atol: 1e-4);
        }
    }

    /// <summary>
    /// Bat's dD computed a slab of output blocks at a time: one block per slab, a slab that leaves a partial last one,
    /// and all blocks at once give the definition's gradients (dD, dX) for Bat alone and Bat followed by Bone.
    /// </summary>
    [Theory]
    [InlineData(1L)]        // 4·r·in bytes for r = 4, in = 24 is 384: one block per slab
    [InlineData(384L * 3)]  // three blocks per slab over five: a partial last slab
    [InlineData(1L << 20)]  // all blocks in one slab
    public void BatGradientsAgreeWhateverTheSlab(long slabBytes)
    {
        using var scope = NewDisposeScope();
        long was = BoneFunction.BatSlabBytes;
        BoneFunction.BatSlabBytes = slabBytes;
        try
        {
            foreach (var bones in new[] { Array.Empty<int>(), new[] { 4 } })
            {
                var s = Make(new long[] { 37, 24 }, 20, 4, bones);
                var upstream = randn(37, 20);
                var expected = Grads(Reference(s), upstream, s.Differentiable);
                var actual = Grads(Fused(s), upstream, s.Differentiable);
                for (int i = 0; i < expected.Count; i++) TensorAssert.Close(expected[i], actual[i], rtol: 1e-4, atol: 1e-4);
            }
        }
        finally
        {
            BoneFunction.BatSlabBytes = was;
        }
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(false, 3)]
    [InlineData(true, 1)]
    [InlineData(true, 2)]
    public void VectorWidthsAndWorkerSplitsAgree(bool narrow, int threads)
    {
        using var scope = NewDisposeScope();
        // 100 outputs: whole column tiles of dD and a partial one; blocks of 12 and 8: whole and partial row tiles.
        // Bat blocks of 16 and 8 over 128 outputs: the 512-bit, 256-bit and scalar tile loops, several row chunks.
        var layouts = new (long Out, int Bat, int[] Bones)[] { (100, 0, new[] { 12, 8 }), (128, 16, Array.Empty<int>()), (128, 8, new[] { 12 }) };
        bool wasNarrow = LoRAKernels.ForceNarrow;
        try
        {
            foreach (var (outF, bat, bones) in layouts)
            {
                var s = Make(new long[] { 2, 75, 48 }, outF, bat, bones);
                var upstream = randn(2, 75, outF);
                var expected = Grads(Reference(s), upstream, s.Differentiable);
                LoRAKernels.ForceNarrow = narrow;
                BoneFunction.KernelThreadsOverride = threads;
                foreach (bool dense in new[] { false, true })
                {
                    var actual = WithDense(dense, () => Grads(Fused(s), upstream, s.Differentiable));
                    for (int i = 0; i < expected.Count; i++) TensorAssert.Close(expected[i], actual[i], rtol: 1e-4, atol: 1e-4);
                }
                LoRAKernels.ForceNarrow = wasNarrow;
                BoneFunction.KernelThreadsOverride = null;
            }
        }
        finally
        {
            LoRAKernels.ForceNarrow = wasNarrow;
            BoneFunction.KernelThreadsOverride = null;
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AnInputThatNeedsNoGradientGetsOnlyTheBlockGradients(bool dense)
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 16, 24 }, 12, 4, new[] { 6 }, inputGrad: false);
        var upstream = randn(16, 12);
        var expected = Grads(Reference(s), upstream, s.Blocks);
        var actual = WithDense(dense, () => Grads(Fused(s), upstream, s.Blocks));
        for (int i = 0; i < expected.Count; i++) TensorAssert.Close(expected[i], actual[i], rtol: 1e-4, atol: 1e-4);
    }

    [Fact]
    public void AFrozenBlockGetsNoGradientAndTheOthersTheirOwn()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 10, 24 }, 12, 0, new[] { 4, 3 });
        s.Bones[0].requires_grad_(false);
        var upstream = randn(10, 12);
        var expected = Grads(Reference(s), upstream, s.X, s.Bones[1]);
        var y = Fused(s);
        Assert.Equal(10L * 3 * 4, BoneFunction.LastSave!.ActivationBytes); // only the trainable block's fold
        var actual = Grads(y, upstream, s.X, s.Bones[1]);
        for (int i = 0; i < 2; i++) TensorAssert.Close(expected[i], actual[i], rtol: 1e-4, atol: 1e-4);
    }

    [Theory]
    [InlineData(0, 4)]
    [InlineData(4, 0)]
    [InlineData(4, 2)]
    public void BackwardLeavesTheFrozenWeightAndBiasAlone(int bat, int bone)
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 16, 32 }, 24, bat, bone > 0 ? new[] { bone } : Array.Empty<int>(), inputGrad: false);
        Fused(s).square().sum().backward();
        Assert.Null(s.W.grad);
        Assert.Null(s.Bias!.grad);
        Assert.Null(s.X.grad);
        foreach (var d in s.Blocks)
        {
            Assert.NotNull(d.grad);
            Assert.True(d.grad!.abs().sum().item<float>() > 0);
        }
    }

    [Fact]
    public void BoneSavesOnlyTheFoldOfItsOwnAndBatOnlyTheInputItself()
    {
        using var scope = NewDisposeScope();
        const int n = 256, d = 512, r = 64;
        var bone = Make(new long[] { n, d }, d, 0, new[] { r });
        var y = Fused(bone);
        var report = BoneFunction.LastSave!;
        // No copy of x at all, and nothing [n, d]: the fold, [n, r], is the only activation.
        Assert.Equal(0, report.InputBytes);
        Assert.Equal((long)n * r * 4, report.ActivationBytes);
        Assert.Equal((long)(d * d + r * d) * 4, report.ParameterBytes);
        Assert.True(report.OutputCacheReleased);
        y.sum().backward();
        Assert.NotNull(bone.Bones[0].grad);

        var bat = Make(new long[] { n, d }, d, r, Array.Empty<int>());
        y = Fused(bat);
        report = BoneFunction.LastSave!;
        // Bat's dD needs dYᵀ·x, so x itself is kept (the same tensor, no copy); W' is recomputed, never saved.
        Assert.Equal((long)n * d * 4, report.InputBytes);
        Assert.Equal(0, report.ActivationBytes);
        Assert.Equal((long)(d * d + d * r) * 4, report.ParameterBytes);
        Assert.True(report.OutputCacheReleased);
        y.sum().backward();
        Assert.NotNull(bat.Bat!.grad);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void WithoutGradientsTheResultIsIdenticalToTheGraphPath(bool dense)
    {
        using var scope = NewDisposeScope();
        foreach (var (bat, bones) in new (int, int[])[] { (0, new[] { 8 }), (8, Array.Empty<int>()), (4, new[] { 8, 2 }) })
        {
            var s = Make(new long[] { 4, 33, 64 }, 48, bat, bones);
            var (withGraph, plain) = WithDense(dense, () =>
            {
                var g = Fused(s);
                Tensor p;
                using (no_grad()) p = Fused(s);
                return (g, p);
            });
            Assert.True(withGraph.requires_grad);
            Assert.False(plain.requires_grad);
            TensorAssert.Equal(withGraph, plain);
        }
    }

    [Fact]
    public void AnUnfrozenBaseTakesTheComposedPathAndGetsItsGradient()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 16, 24 }, 12, 4, new[] { 6 });
        s.W.requires_grad_();
        s.Bias!.requires_grad_();
        var inputs = s.Differentiable.Append(s.W).Append(s.Bias).ToArray();
        var upstream = randn(16, 12);
        var expected = Grads(Reference(s), upstream, inputs);
        Assert.False(BoneFunction.CanFuse(s.X, s.W, s.Bias, s.Bat, s.Bones));
        var actual = Grads(Fused(s), upstream, inputs);
        for (int i = 0; i < inputs.Length; i++) TensorAssert.Close(expected[i], actual[i], rtol: 1e-4, atol: 1e-4);
    }

    [Fact]
    public void OtherDtypesAndLayoutsComposeToTheSameValues()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 40, 24 }, 20, 4, new[] { 6 });
        var reference = Fused(s);
        var d = BoneFunction.Linear(s.X.to(float64), s.W.to(float64), s.Bias!.to(float64), s.Bat!.to(float64), s.Bones.Select(b => b.to(float64)).ToArray());
        Assert.Equal(ScalarType.Float64, d.dtype);
        TensorAssert.Close(reference, d, rtol: 1e-4, atol: 1e-4);
        var xt = s.X.detach().t().contiguous().t();
        Assert.False(xt.is_contiguous());
        TensorAssert.Close(reference, BoneFunction.Linear(xt, s.W, s.Bias, s.Bat, s.Bones), rtol: 1e-4, atol: 1e-4);
    }

    [Fact]
    public void AnEmptyBatchGivesAnEmptyOutputAndZeroBlockGradients()
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 0, 24 }, 12, 4, new[] { 6 });
        var y = Fused(s);
        Assert.Equal(new long[] { 0, 12 }, y.shape);
        var grads = Grads(y, zeros(0, 12), s.Differentiable);
        Assert.Equal(new long[] { 0, 24 }, grads[0].shape);
        for (int i = 1; i < grads.Count; i++) Assert.Equal(0, grads[i].abs().sum().item<float>());
    }

    [Theory]
    [InlineData(0, 4, false)]
    [InlineData(0, 4, true)]
    [InlineData(4, 0, false)]
    [InlineData(2, 4, true)]
    public void SecondDerivativesMatchTheDefinition(int bat, int bone, bool dense)
    {
        using var scope = NewDisposeScope();
        var s = Make(new long[] { 12, 16 }, 8, bat, bone > 0 ? new[] { bone } : Array.Empty<int>());
        // A penalty on the input gradient, differentiated with respect to the blocks, and a penalty on the blocks'
        // gradients, differentiated with respect to the input (dD depends on x through the fold, or through x for Bat).
        Tensor Penalties(Tensor y)
        {
            var first = torch.autograd.grad(new[] { y.square().sum() }, s.Differentiable, retain_graph: true, create_graph: true);
            var p = first[0].square().sum();
            for (int i = 1; i < first.Count; i++) p = p + first[i].square().sum();
            return p;
        }
        var expected = Grads(Penalties(Reference(s)), tensor(1f), s.Differentiable);
        var actual = WithDense(dense, () => Grads(Penalties(Fused(s)), tensor(1f), s.Differentiable));
        for (int i = 0; i < expected.Count; i++) TensorAssert.Close(expected[i], actual[i], rtol: 1e-3, atol: 1e-3);
    }

    [Fact]
    public void TheDenseArithmeticIsChosenForManyRowsAndTheThinOneForFew()
    {
        using var scope = NewDisposeScope();
        // n·r against in: 2048·64 ≥ 32·1024, while 8·4 < 32·24.
        var many = Make(new long[] { 2048, 1024 }, 16, 0, new[] { 64 });
        var few = Make(new long[] { 8, 24 }, 16, 0, new[] { 4 });
        Assert.True(BoneFunction.ChoosesDense(many.X, many.Bones));
        Assert.False(BoneFunction.ChoosesDense(few.X, few.Bones));
    }

    [Fact]
    public void BoneLinearRunsTheFusedFunctionWhenTheOrderAllowsAndComposesOtherwise()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var layer = new BoneLinear("T.q", nn.Linear(24, 16), "bat", new BoneOptions { Block = 4, Variant = BoneVariant.Bat });
        layer.AddAdapter("bone", new BoneOptions { Block = 6 });
        using (no_grad())
        {
            layer.Block("bat").normal_(0, 0.3);
            layer.Block("bone").normal_(0, 0.3);
        }
        var x = randn(5, 24).requires_grad_();
        var s = new Setup
        {
            X = x, W = layer.BaseLayer.get_parameter("weight")!, Bias = layer.BaseLayer.get_parameter("bias"),
        };
        // Bat first, then Bone: fused (a fresh save report), equal to the definition.
        layer.SetActiveAdapters(new[] { "bat", "bone" });
        s.Bat = layer.Block("bat");
        s.Bones = new Tensor[] { layer.Block("bone") };
        var before = BoneFunction.LastSave;
        var y = layer.forward(x);
        Assert.NotSame(before, BoneFunction.LastSave);
        TensorAssert.Close(Reference(s), y, rtol: 1e-4, atol: 1e-4);
        // Bone first, then Bat: the Bat acts on W + ΔW_bone, which needs the composition (no new report).
        layer.SetActiveAdapters(new[] { "bone", "bat" });
        before = BoneFunction.LastSave;
        y = layer.forward(x);
        Assert.Same(before, BoneFunction.LastSave);
        var w = BatWeight(s.W + BoneDelta(layer.Block("bone"), 24), layer.Block("bat"));
        TensorAssert.Close(x.matmul(w.t()) + s.Bias!, y, rtol: 1e-4, atol: 1e-4);
    }
}
