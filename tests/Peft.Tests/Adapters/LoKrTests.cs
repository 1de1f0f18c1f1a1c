using System;
using System.Linq;
using Peft.Runtime.Adapters;
using Peft.Tests.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

public class LoKrTests
{
    /// <summary>Linear(16, 12): in 16 = 4·4, out 12 = 3·4; rank 1 makes W2 low-rank (1 &lt; max(4, 4) / 2).</summary>
    private static LoKrLinear Make(LoKrOptions? options = null, bool randomize = true, long inF = 16, long outF = 12)
    {
        manual_seed(1);
        var layer = new LoKrLinear("T.q", nn.Linear(inF, outF), "default", options ?? new LoKrOptions { Rank = 1, Alpha = 3 });
        if (randomize) MiscAdapterKit.Randomize(layer, 2);
        return layer;
    }

    private static string[] Names(LoKrLinear layer) =>
        layer.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToArray();

    private static long[] Shape(LoKrLinear layer, string name) => MiscAdapterKit.Param(layer, name).shape;

    [Theory]
    [InlineData(256, -1, 16, 16)]  // PEFT's own examples
    [InlineData(128, -1, 8, 16)]
    [InlineData(127, -1, 1, 127)]
    [InlineData(128, 4, 4, 32)]
    [InlineData(16, 8, 8, 2)]      // a dividing factor is taken as is, larger first if so
    [InlineData(128, 3, 2, 64)]    // a factor that does not divide bounds the smaller member
    [InlineData(12, 8, 3, 4)]
    [InlineData(1, -1, 1, 1)]
    public void FactorizationIsPefts(long dimension, int factor, long m, long n)
    {
        Assert.Equal((m, n), LoKr.Factorization(dimension, factor));
    }

    [Fact]
    public void ShapesFollowPeftsRules()
    {
        using var scope = NewDisposeScope();
        var lowRank = Make(randomize: false);
        Assert.Equal(new[] { "lokr_w1.default", "lokr_w2_a.default", "lokr_w2_b.default" }, Names(lowRank));
        Assert.Equal(new long[] { 3, 4 }, Shape(lowRank, "lokr_w1.default"));
        Assert.Equal(new long[] { 4, 1 }, Shape(lowRank, "lokr_w2_a.default"));
        Assert.Equal(new long[] { 1, 4 }, Shape(lowRank, "lokr_w2_b.default"));

        var full = Make(new LoKrOptions { Rank = 2 }, randomize: false); // 2 ≥ max(4, 4) / 2: W2 full
        Assert.Equal(new[] { "lokr_w1.default", "lokr_w2.default" }, Names(full));
        Assert.Equal(new long[] { 4, 4 }, Shape(full, "lokr_w2.default"));

        var both = Make(new LoKrOptions { Rank = 1, DecomposeBoth = true }, randomize: false, inF: 64, outF: 64);
        Assert.Equal(new[] { "lokr_w1_a.default", "lokr_w1_b.default", "lokr_w2_a.default", "lokr_w2_b.default" }, Names(both));
        Assert.Equal(new long[] { 8, 1 }, Shape(both, "lokr_w1_a.default"));
        Assert.Equal(new long[] { 1, 8 }, Shape(both, "lokr_w1_b.default"));

        var factored = Make(new LoKrOptions { Rank = 8, DecomposeFactor = 2 }, randomize: false); // in (2, 8), out (2, 6)
        Assert.Equal(new long[] { 2, 2 }, Shape(factored, "lokr_w1.default"));
        Assert.Equal(new long[] { 6, 8 }, Shape(factored, "lokr_w2.default"));
    }

    // ΔW[a·B + b, c·D + d] = W1[a, c] · W2[b, d] · α / r, the Kronecker product written out.
    private static Tensor NaiveDelta(LoKrLinear layer, string adapter)
    {
        var w1 = layer.W1(adapter).detach().to(float64);
        var w2 = layer.W2(adapter).detach().to(float64);
        var o = layer.Options(adapter);
        long rows2 = w2.shape[0], cols2 = w2.shape[1];
        var delta = zeros(layer.OutFeatures, layer.InFeatures, dtype: float64);
        for (long a = 0; a < w1.shape[0]; a++)
            for (long c = 0; c < w1.shape[1]; c++)
                for (long b = 0; b < rows2; b++)
                    for (long d = 0; d < cols2; d++)
                        delta[a * rows2 + b, c * cols2 + d] = w1[a, c].item<double>() * w2[b, d].item<double>() * o.Alpha / o.Rank;
        return delta;
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(1, true)]
    public void DeltaWeightIsTheScaledKroneckerProduct(int rank, bool decomposeBoth)
    {
        using var scope = NewDisposeScope();
        var layer = Make(new LoKrOptions { Rank = rank, Alpha = 3, DecomposeBoth = decomposeBoth }, inF: 64, outF: 48);
        TensorAssert.Close(NaiveDelta(layer, "default"), layer.DeltaWeight("default"), atol: 1e-5);
        var x = randn(5, 64);
        var expected = layer.BaseLayer.forward(x) + x.matmul(NaiveDelta(layer, "default").to(float32).t());
        TensorAssert.Close(expected, layer.forward(x), atol: 1e-4);
    }

    [Fact]
    public void InitFollowsPeftAndStartsAtTheBaseLayer()
    {
        using var scope = NewDisposeScope();
        var layer = Make(new LoKrOptions { Rank = 1, DecomposeBoth = true }, randomize: false, inF: 64, outF: 64);
        Assert.Equal(0, MiscAdapterKit.Param(layer, "lokr_w1_a.default").abs().sum().item<float>());
        Assert.True(MiscAdapterKit.Param(layer, "lokr_w1_b.default").abs().sum().item<float>() > 0);
        // Kaiming-uniform with a = √5 on W2 [8, 8]: bound 1/√8.
        var full = Make(new LoKrOptions { Rank = 4 }, randomize: false, inF: 64, outF: 64);
        Assert.Equal(0, MiscAdapterKit.Param(full, "lokr_w1.default").abs().sum().item<float>());
        Assert.InRange(MiscAdapterKit.Param(full, "lokr_w2.default").abs().max().item<float>(), 0.5 / Math.Sqrt(8), 1 / Math.Sqrt(8) + 1e-6);
        var x = randn(3, 64);
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));
        TensorAssert.Equal(full.BaseLayer.forward(x), full.forward(x));
    }

    [Fact]
    public void GradientsReachOnlyTheFactors()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.forward(randn(6, 16)).square().sum().backward();
        Assert.Null(layer.BaseLayer.get_parameter("weight")!.grad);
        Assert.Null(layer.BaseLayer.get_parameter("bias")!.grad);
        foreach (var name in Names(layer)) Assert.NotNull(MiscAdapterKit.Param(layer, name).grad);
        Assert.Equal(new[] { "base_layer.weight", "base_layer.bias", "lokr_w1.default", "lokr_w2_a.default", "lokr_w2_b.default" },
            layer.named_parameters().Select(p => p.name).ToArray());
    }

    [Fact]
    public void MergeMatchesUnmergedForwardAndUnmergeRestores()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.eval();
        var x = randn(7, 16);
        var before = layer.forward(x);
        var w0 = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        layer.Merge(new[] { "default" });
        TensorAssert.Close(before, layer.forward(x), rtol: 1e-5, atol: 1e-5);
        TensorAssert.Close(w0 + layer.DeltaWeight("default"), layer.BaseLayer.get_parameter("weight")!);
        layer.Unmerge();
        TensorAssert.Close(w0, layer.BaseLayer.get_parameter("weight")!, atol: 1e-6);
        TensorAssert.Close(before, layer.forward(x), rtol: 1e-5, atol: 1e-5);
    }

    [Fact]
    public void RankDropoutDropsRowsWithoutRescalingInTrainingOnly()
    {
        using var scope = NewDisposeScope();
        var layer = Make(new LoKrOptions { Rank = 1, Alpha = 3, RankDropout = 0.5 }, inF: 64, outF: 48);
        var x = randn(4, 64);
        var full = x.matmul(layer.DeltaWeight("default").t());
        var baseOut = layer.BaseLayer.forward(x);
        layer.eval();
        TensorAssert.Close(baseOut + full, layer.forward(x), atol: 1e-5);
        layer.train();
        manual_seed(9);
        var update = (layer.forward(x) - baseOut).detach();
        var live = update.abs().sum(dim: 0).gt(0).to(float32);
        Assert.InRange(live.sum().item<float>(), 1, 47);
        TensorAssert.Close(full * live, update, atol: 1e-5); // PEFT's default rank_dropout_scale: false
    }

    [Theory]
    [InlineData(0, -1, 0.0, "LoKr rank must be at least 1, got 0")]
    [InlineData(2, 0, 0.0, "LoKr decompose factor 0 must be -1 (factors near the square root) or at least 1 (layer in 16, out 12)")]
    [InlineData(2, -2, 0.0, "LoKr decompose factor -2 must be -1")]
    [InlineData(2, -1, 1.5, "LoKr rank dropout 1.5 is outside [0, 1)")]
    public void InvalidOptionsFailAtRegistrationNamingTheSite(int rank, int factor, double rankDropout, string message)
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            LoKr.Wrap(nn.Linear(16, 12), "Demo.Block.q", "default", new LoKrOptions { Rank = rank, DecomposeFactor = factor, RankDropout = rankDropout }));
        Assert.StartsWith("Demo.Block.q: ", ex.Message);
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void WrapRejectsWhatItCannotAdaptAndAddsNamedAdapters()
    {
        using var scope = NewDisposeScope();
        var ex = Assert.Throws<InvalidOperationException>(() => LoKr.Wrap(nn.ReLU(), "Demo.Block.act", "default", new LoKrOptions()));
        Assert.Contains("ReLU", ex.Message);
        Assert.Throws<InvalidOperationException>(() => LoKr.Wrap(null, "Demo.Block.q", "default", new LoKrOptions()));
        var wrapped = (LoKrLinear)LoKr.Wrap(nn.Linear(16, 12), "Demo.Block.q", "default", new LoKrOptions { Rank = 1 });
        Assert.Same(wrapped, LoKr.Wrap(wrapped, "Demo.Block.q", "b", new LoKrOptions { Rank = 4 }));
        Assert.Equal(new[] { "default", "b" }, wrapped.AdapterNames);
        Assert.Contains(wrapped.named_parameters(), p => p.name == "lokr_w2.b");
        wrapped.DeleteAdapter("b");
        Assert.DoesNotContain(wrapped.named_parameters(), p => p.name.EndsWith(".b"));
    }

    [Fact]
    public void TrainingReducesTheLoss()
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var layer = new LoKrLinear("T.q", nn.Linear(16, 16), "default", new LoKrOptions { Rank = 4, Alpha = 4 });
        var w = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        var bias = layer.BaseLayer.get_parameter("bias")!.detach().clone();
        var shift = kron(randn(4, 4), randn(4, 4)) * 0.1; // a change LoKr can express
        var (first, last) = MiscAdapterKit.Train(layer, x => x.matmul((w + shift).t()) + bias, steps: 300, lr: 1e-2);
        Assert.True(last < first * 0.1, $"loss {first} -> {last}");
        TensorAssert.Equal(w, layer.BaseLayer.get_parameter("weight")!);
    }

    private static (nn.Module Root, LoKrLinear Q, LoKrLinear V) TwoLayers(int adapterSeed, int factor = -1)
    {
        manual_seed(3);
        var q = (LoKrLinear)LoKr.Wrap(nn.Linear(16, 12), "T.q", "default", new LoKrOptions { Rank = 1, Alpha = 2, DecomposeFactor = factor });
        var v = (LoKrLinear)LoKr.Wrap(nn.Linear(64, 64), "T.v", "default", new LoKrOptions { Rank = 2, Alpha = 2, DecomposeFactor = factor });
        var root = nn.Sequential(("q", q), ("v", v));
        MiscAdapterKit.Randomize(root, adapterSeed);
        return (root, q, v);
    }

    [Fact]
    public void SavesPeftsKeysAndConfigAndLoadsThemBack()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, q, v) = TwoLayers(5);
        MiscAdapterKit.Attach(root).SaveAdapters(folder.Path);

        var keys = MiscAdapterKit.Keys(folder.Path);
        Assert.Equal(new[]
        {
            "base_model.model.q.lokr_w1", "base_model.model.q.lokr_w2_a", "base_model.model.q.lokr_w2_b",
            "base_model.model.v.lokr_w1", "base_model.model.v.lokr_w2_a", "base_model.model.v.lokr_w2_b",
        }, keys.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray());
        Assert.Equal(new long[] { 3, 4 }, keys["base_model.model.q.lokr_w1"]);
        Assert.Equal(new long[] { 8, 2 }, keys["base_model.model.v.lokr_w2_a"]);

        var config = MiscAdapterKit.Config(folder.Path);
        Assert.Equal("LOKR", config["peft_type"]!.GetValue<string>());
        Assert.Equal(1, config["r"]!.GetValue<int>());
        Assert.Equal(2, config["rank_pattern"]!["v"]!.GetValue<int>());
        Assert.Equal(2, config["alpha"]!.GetValue<int>());
        Assert.Empty((System.Text.Json.Nodes.JsonObject)config["alpha_pattern"]!);
        Assert.Equal(-1, config["decompose_factor"]!.GetValue<int>());
        Assert.False(config["decompose_both"]!.GetValue<bool>());
        Assert.Equal(0.0, config["rank_dropout"]!.GetValue<double>());
        Assert.Equal(0.0, config["module_dropout"]!.GetValue<double>());
        Assert.Equal(new[] { "q", "v" }, MiscAdapterKit.Strings(config["target_modules"]));

        var (root2, q2, v2) = TwoLayers(77);
        MiscAdapterKit.CopyBase(root, root2);
        Assert.False(TensorAssert.Same(q.W1("default"), q2.W1("default")));
        MiscAdapterKit.Attach(root2).LoadAdapters(folder.Path);
        q.eval(); v.eval(); q2.eval(); v2.eval();
        var xq = randn(3, 16);
        var xv = randn(3, 64);
        TensorAssert.Equal(q.forward(xq), q2.forward(xq));
        TensorAssert.Equal(v.forward(xv), v2.forward(xv));
    }

    [Fact]
    public void LoadingRefusesAFileWhoseFactorisationGivesOtherShapes()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, _, _) = TwoLayers(5, factor: 4); // q: in 16 = 4·4, out 12 = 4·3 (a dividing factor comes first)
        MiscAdapterKit.Attach(root).SaveAdapters(folder.Path);
        var (root2, q2, _) = TwoLayers(6);          // q: in 4·4, out 3·4
        var before = q2.W1("default").detach().clone();
        var ex = Assert.Throws<System.IO.InvalidDataException>(() => MiscAdapterKit.Attach(root2).LoadAdapters(folder.Path));
        Assert.Contains("key 'base_model.model.q.lokr_w1' has shape [4, 4], but the model's parameter has shape [3, 4]", ex.Message);
        TensorAssert.Equal(before, q2.W1("default"));
    }

    [Fact]
    public void SettingsThatChangeTheShapesAreRefusedAndOthersAdopted()
    {
        using var scope = NewDisposeScope();
        var layer = Make(new LoKrOptions { Rank = 2, Alpha = 2 }, inF: 64, outF: 64); // W1 [8, 8], W2 [8, 8] of rank 2
        var ex = Assert.Throws<InvalidOperationException>(() =>
            layer.ApplySettings("default", new LoKrOptions { Rank = 2, Alpha = 2, DecomposeFactor = 4 }));
        Assert.Equal("T.q: adapter 'default' is shaped W1 [8, 8] ⊗ W2 [8, 8] of rank 2; the file's settings (r 2, decompose_factor 4, decompose_both false) give W1 [4, 4] ⊗ W2 [16, 16] of rank 2", ex.Message);
        Assert.Throws<InvalidOperationException>(() => layer.ApplySettings("default", new LoKrOptions { Rank = 3, Alpha = 2 }));
        layer.ApplySettings("default", new LoKrOptions { Rank = 2, Alpha = 6, RankDropout = 0.25 });
        Assert.Equal(3.0, layer.Options("default").Scaling);
        Assert.Equal(0.25, layer.Options("default").RankDropout);
        // With both factors full, the rank only scales: a file with another rank is the same shapes, PEFT's α / r.
        var full = Make(new LoKrOptions { Rank = 8, Alpha = 8 }, inF: 64, outF: 64);
        full.ApplySettings("default", new LoKrOptions { Rank = 16, Alpha = 8 });
        Assert.Equal(0.5, full.Options("default").Scaling);
    }
}
