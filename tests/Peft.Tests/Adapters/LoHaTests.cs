using System;
using System.Linq;
using Peft.Runtime.Adapters;
using Peft.Tests.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

public class LoHaTests
{
    private static LoHaLinear Make(long inF = 12, long outF = 10, LoHaOptions? options = null, bool randomW2B = true)
    {
        manual_seed(1);
        var layer = new LoHaLinear("T.q", nn.Linear(inF, outF), "default", options ?? new LoHaOptions { Rank = 3, Alpha = 6 });
        if (randomW2B)
            using (no_grad()) layer.W2B("default").normal_();
        return layer;
    }

    // ΔW[o, i] = (Σ_k W1a[o, k] W1b[k, i]) · (Σ_k W2a[o, k] W2b[k, i]) · α / r, entry by entry.
    private static Tensor NaiveDelta(LoHaLinear layer, string adapter)
    {
        var w1a = layer.W1A(adapter).detach().to(float64);
        var w1b = layer.W1B(adapter).detach().to(float64);
        var w2a = layer.W2A(adapter).detach().to(float64);
        var w2b = layer.W2B(adapter).detach().to(float64);
        var o = layer.Options(adapter);
        var delta = zeros(layer.OutFeatures, layer.InFeatures, dtype: float64);
        for (long r = 0; r < layer.OutFeatures; r++)
            for (long c = 0; c < layer.InFeatures; c++)
            {
                double p1 = 0, p2 = 0;
                for (long k = 0; k < o.Rank; k++)
                {
                    p1 += w1a[r, k].item<double>() * w1b[k, c].item<double>();
                    p2 += w2a[r, k].item<double>() * w2b[k, c].item<double>();
                }
                delta[r, c] = p1 * p2 * o.Alpha / o.Rank;
            }
        return delta;
    }

    [Fact]
    public void DeltaWeightIsTheScaledHadamardProductOfTwoLowRankProducts()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        TensorAssert.Close(NaiveDelta(layer, "default"), layer.DeltaWeight("default"), atol: 1e-6);
        Assert.Equal(new long[] { 10, 12 }, layer.DeltaWeight("default").shape);
    }

    [Fact]
    public void ForwardIsBasePlusInputTimesDelta()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var x = randn(5, 12);
        var w = layer.BaseLayer.get_parameter("weight")!;
        var b = layer.BaseLayer.get_parameter("bias")!;
        var expected = x.matmul(w.t()) + b + x.matmul(NaiveDelta(layer, "default").to(float32).t());
        TensorAssert.Close(expected, layer.forward(x), atol: 1e-5);
    }

    [Fact]
    public void InitFollowsPeftAndStartsAtTheBaseLayer()
    {
        using var scope = NewDisposeScope();
        var layer = Make(inF: 64, outF: 48, options: new LoHaOptions { Rank = 8 }, randomW2B: false);
        Assert.Equal(new long[] { 48, 8 }, layer.W1A("default").shape);
        Assert.Equal(new long[] { 8, 64 }, layer.W1B("default").shape);
        Assert.Equal(new long[] { 48, 8 }, layer.W2A("default").shape);
        Assert.Equal(new long[] { 8, 64 }, layer.W2B("default").shape);
        Assert.Equal(0, layer.W2B("default").abs().sum().item<float>());
        // Kaiming-uniform with a = √5: bound 1/√fan_in, fan_in = r for W1a, W2a and in for W1b.
        Assert.InRange(layer.W1A("default").abs().max().item<float>(), 0.8 / Math.Sqrt(8), 1 / Math.Sqrt(8) + 1e-6);
        Assert.InRange(layer.W2A("default").abs().max().item<float>(), 0.8 / Math.Sqrt(8), 1 / Math.Sqrt(8) + 1e-6);
        Assert.InRange(layer.W1B("default").abs().max().item<float>(), 0.8 / 8, 1.0 / 8 + 1e-6);
        var x = randn(3, 64);
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));
    }

    [Fact]
    public void GradientsReachOnlyTheFactors()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.forward(randn(6, 12)).square().sum().backward();
        Assert.Null(layer.BaseLayer.get_parameter("weight")!.grad);
        Assert.Null(layer.BaseLayer.get_parameter("bias")!.grad);
        foreach (var p in new[] { layer.W1A("default"), layer.W1B("default"), layer.W2A("default"), layer.W2B("default") })
            Assert.NotNull(p.grad);
        Assert.Equal(new[] { "hada_w1_a.default", "hada_w1_b.default", "hada_w2_a.default", "hada_w2_b.default" },
            layer.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToArray());
    }

    [Fact]
    public void MergeMatchesUnmergedForwardAndUnmergeRestores()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.eval();
        var x = randn(7, 12);
        var before = layer.forward(x);
        var w0 = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        var b0 = layer.BaseLayer.get_parameter("bias")!.detach().clone();
        layer.Merge(new[] { "default" });
        TensorAssert.Close(before, layer.forward(x), rtol: 1e-5, atol: 1e-5);
        TensorAssert.Close(w0 + layer.DeltaWeight("default"), layer.BaseLayer.get_parameter("weight")!);
        TensorAssert.Equal(b0, layer.BaseLayer.get_parameter("bias")!);
        layer.Unmerge();
        TensorAssert.Close(w0, layer.BaseLayer.get_parameter("weight")!, atol: 1e-6);
        TensorAssert.Close(before, layer.forward(x), rtol: 1e-5, atol: 1e-5);
    }

    [Fact]
    public void RankAndModuleDropoutActOnlyInTraining()
    {
        using var scope = NewDisposeScope();
        var layer = Make(options: new LoHaOptions { Rank = 3, RankDropout = 0.5, ModuleDropout = 0.5 });
        var x = randn(4, 12);
        var baseOut = layer.BaseLayer.forward(x);
        layer.eval();
        var exact = layer.forward(x);
        TensorAssert.Close(baseOut + x.matmul(layer.DeltaWeight("default").t()), exact, atol: 1e-5);
        layer.train();
        manual_seed(5);
        int skipped = 0, dropped = 0;
        for (int i = 0; i < 40; i++)
        {
            var update = (layer.forward(x) - baseOut).detach(); // [4, 10]: each column is one output row of ΔW
            var live = update.abs().sum(dim: 0).gt(0);
            long liveRows = live.sum().item<long>();
            if (liveRows == 0) { skipped++; continue; }
            dropped++;
            // Kept rows are rescaled by 1 / (fraction kept), PEFT's drop /= drop.mean().
            var expected = x.matmul(layer.DeltaWeight("default").t()) * (10.0 / liveRows) * live.to(float32);
            TensorAssert.Close(expected, update, atol: 1e-5);
        }
        Assert.InRange(skipped, 8, 32); // about half of the batches skip the module
        Assert.True(dropped > 0);
    }

    [Theory]
    [InlineData(0, 0.0, 0.0, "LoHa rank must be at least 1, got 0")]
    [InlineData(11, 0.0, 0.0, "LoHa rank 11 is larger than min(in 12, out 10) = 10")]
    [InlineData(3, 1.0, 0.0, "LoHa rank dropout 1 is outside [0, 1)")]
    [InlineData(3, 0.0, -0.5, "LoHa module dropout -0.5 is outside [0, 1)")]
    public void InvalidOptionsFailAtRegistrationNamingTheSite(int rank, double rankDropout, double moduleDropout, string message)
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            LoHa.Wrap(nn.Linear(12, 10), "Demo.Block.q", "default", new LoHaOptions { Rank = rank, RankDropout = rankDropout, ModuleDropout = moduleDropout }));
        Assert.StartsWith("Demo.Block.q: ", ex.Message);
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void WrapRejectsWhatItCannotAdaptAndAddsNamedAdapters()
    {
        using var scope = NewDisposeScope();
        var ex = Assert.Throws<InvalidOperationException>(() => LoHa.Wrap(nn.ReLU(), "Demo.Block.act", "default", new LoHaOptions()));
        Assert.Contains("Demo.Block.act", ex.Message);
        Assert.Contains("ReLU", ex.Message);
        Assert.Throws<InvalidOperationException>(() => LoHa.Wrap(null, "Demo.Block.q", "default", new LoHaOptions()));
        var wrapped = (LoHaLinear)LoHa.Wrap(nn.Linear(12, 10), "Demo.Block.q", "default", new LoHaOptions { Rank = 2 });
        Assert.Same(wrapped, LoHa.Wrap(wrapped, "Demo.Block.q", "b", new LoHaOptions { Rank = 4 }));
        Assert.Equal(new[] { "default", "b" }, wrapped.AdapterNames);
        wrapped.DeleteAdapter("b");
        Assert.DoesNotContain(wrapped.named_parameters(), p => p.name.EndsWith(".b"));
    }

    [Fact]
    public void TrainingReducesTheLoss()
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var layer = new LoHaLinear("T.q", nn.Linear(16, 16), "default", new LoHaOptions { Rank = 4, Alpha = 4 });
        var w = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        var bias = layer.BaseLayer.get_parameter("bias")!.detach().clone();
        var shift = randn(16, 2).matmul(randn(2, 16)) * 0.2;
        var (first, last) = MiscAdapterKit.Train(layer, x => x.matmul((w + shift).t()) + bias, steps: 300, lr: 1e-2);
        Assert.True(last < first * 0.1, $"loss {first} -> {last}");
        TensorAssert.Equal(w, layer.BaseLayer.get_parameter("weight")!);
    }

    [Fact]
    public void SavesPeftsKeysAndConfigAndLoadsThemBack()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        (nn.Module Root, LoHaLinear Q, LoHaLinear V) Build(int adapterSeed)
        {
            manual_seed(3);
            var q = (LoHaLinear)LoHa.Wrap(nn.Linear(16, 8), "T.q", "default", new LoHaOptions { Rank = 4, Alpha = 8, RankDropout = 0.1 });
            var v = (LoHaLinear)LoHa.Wrap(nn.Linear(12, 20), "T.v", "default", new LoHaOptions { Rank = 2, Alpha = 3, RankDropout = 0.1 });
            var root = nn.Sequential(("q", q), ("v", v));
            MiscAdapterKit.Randomize(root, adapterSeed);
            return (root, q, v);
        }
        var (root, q, v) = Build(5);
        MiscAdapterKit.Attach(root).SaveAdapters(folder.Path);

        var keys = MiscAdapterKit.Keys(folder.Path);
        Assert.Equal(new[]
        {
            "base_model.model.q.hada_w1_a", "base_model.model.q.hada_w1_b", "base_model.model.q.hada_w2_a", "base_model.model.q.hada_w2_b",
            "base_model.model.v.hada_w1_a", "base_model.model.v.hada_w1_b", "base_model.model.v.hada_w2_a", "base_model.model.v.hada_w2_b",
        }, keys.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray());
        Assert.Equal(new long[] { 8, 4 }, keys["base_model.model.q.hada_w1_a"]);
        Assert.Equal(new long[] { 4, 16 }, keys["base_model.model.q.hada_w2_b"]);
        Assert.Equal(new long[] { 20, 2 }, keys["base_model.model.v.hada_w2_a"]);

        var config = MiscAdapterKit.Config(folder.Path);
        Assert.Equal("LOHA", config["peft_type"]!.GetValue<string>());
        // Two layers, one value each: the tie goes to the smaller value, the other layer into the pattern.
        Assert.Equal(2, config["r"]!.GetValue<int>());
        Assert.Equal(3, config["alpha"]!.GetValue<int>());
        Assert.Equal(4, config["rank_pattern"]!["q"]!.GetValue<int>());
        Assert.Equal(8, config["alpha_pattern"]!["q"]!.GetValue<int>());
        Assert.False(((System.Text.Json.Nodes.JsonObject)config["rank_pattern"]!).ContainsKey("v"));
        Assert.Equal(0.1, config["rank_dropout"]!.GetValue<double>());
        Assert.Equal(0.0, config["module_dropout"]!.GetValue<double>());
        Assert.Equal(new[] { "q", "v" }, MiscAdapterKit.Strings(config["target_modules"]));
        Assert.Null(config["modules_to_save"]);

        var (root2, q2, v2) = Build(77);
        MiscAdapterKit.CopyBase(root, root2);
        Assert.False(TensorAssert.Same(q.W1A("default"), q2.W1A("default")));
        MiscAdapterKit.Attach(root2).LoadAdapters(folder.Path);
        q.eval(); v.eval(); q2.eval(); v2.eval();
        var xq = randn(3, 16);
        var xv = randn(3, 12);
        TensorAssert.Equal(q.forward(xq), q2.forward(xq));
        TensorAssert.Equal(v.forward(xv), v2.forward(xv));
        Assert.Equal(8, q2.Options("default").Alpha);
        Assert.Equal(3, v2.Options("default").Alpha);
    }
}
