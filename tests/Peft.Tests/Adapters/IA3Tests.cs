using System;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using Peft.Tests.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

public class IA3Tests
{
    private static IA3Linear Make(bool feedForward = false, bool randomize = true, long inF = 12, long outF = 10)
    {
        manual_seed(1);
        var layer = new IA3Linear("T.q", nn.Linear(inF, outF), "default", new IA3Options { FeedForward = feedForward });
        if (randomize)
            using (no_grad()) layer.Scale("default").uniform_(0.5, 1.5);
        return layer;
    }

    [Fact]
    public void OutputScalingMultipliesTheWholeOutput()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        Assert.Equal(new long[] { 10, 1 }, layer.Scale("default").shape); // PEFT's [out, 1]
        var x = randn(5, 12);
        var w = layer.BaseLayer.get_parameter("weight")!;
        var b = layer.BaseLayer.get_parameter("bias")!;
        var l = layer.Scale("default").detach();
        var expected = zeros(5, 10);
        for (long n = 0; n < 5; n++)
            for (long o = 0; o < 10; o++)
                expected[n, o] = (x[n].dot(w[o]) + b[o]) * l[o, 0]; // y = (xWᵀ + b) ⊙ l
        TensorAssert.Close(expected, layer.forward(x), atol: 1e-5);
    }

    [Fact]
    public void FeedForwardScalingMultipliesTheInput()
    {
        using var scope = NewDisposeScope();
        var layer = Make(feedForward: true);
        Assert.Equal(new long[] { 1, 12 }, layer.Scale("default").shape); // PEFT's [1, in]
        var x = randn(5, 12);
        var w = layer.BaseLayer.get_parameter("weight")!;
        var b = layer.BaseLayer.get_parameter("bias")!;
        var l = layer.Scale("default").detach();
        var expected = zeros(5, 10);
        for (long n = 0; n < 5; n++)
            for (long o = 0; o < 10; o++)
                expected[n, o] = (x[n] * l[0]).dot(w[o]) + b[o]; // y = (x ⊙ l)Wᵀ + b
        TensorAssert.Close(expected, layer.forward(x), atol: 1e-5);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void StartsAtOneAndEqualToTheBaseLayer(bool feedForward)
    {
        using var scope = NewDisposeScope();
        var layer = Make(feedForward, randomize: false);
        Assert.True(layer.Scale("default").eq(1).all().item<bool>());
        var x = randn(3, 12);
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void DeltaWeightIsTheChangeAMergeMakes(bool feedForward)
    {
        using var scope = NewDisposeScope();
        var layer = Make(feedForward);
        var w0 = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        var delta = layer.DeltaWeight("default").detach().clone();
        var l = layer.Scale("default").detach();
        for (long o = 0; o < 10; o++)
            for (long i = 0; i < 12; i++)
            {
                double scale = feedForward ? l[0, i].item<float>() : l[o, 0].item<float>();
                Assert.Equal(w0[o, i].item<float>() * (scale - 1), delta[o, i].item<float>(), 5);
            }
        layer.Merge(new[] { "default" });
        TensorAssert.Close(w0 + delta, layer.BaseLayer.get_parameter("weight")!, atol: 1e-6);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MergeMatchesUnmergedForwardAndUnmergeRestores(bool feedForward)
    {
        using var scope = NewDisposeScope();
        var layer = Make(feedForward);
        var x = randn(7, 12);
        var before = layer.forward(x);
        var w0 = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        var b0 = layer.BaseLayer.get_parameter("bias")!.detach().clone();
        layer.Merge(new[] { "default" });
        TensorAssert.Close(before, layer.forward(x), rtol: 1e-5, atol: 1e-5);
        var bias = layer.BaseLayer.get_parameter("bias")!;
        if (feedForward) TensorAssert.Equal(b0, bias);                                  // input scaling leaves the bias
        else TensorAssert.Close(b0 * layer.Scale("default").detach().reshape(-1), bias); // output scaling scales it
        layer.Unmerge();
        TensorAssert.Close(w0, layer.BaseLayer.get_parameter("weight")!, rtol: 1e-6, atol: 1e-7);
        TensorAssert.Close(b0, layer.BaseLayer.get_parameter("bias")!, rtol: 1e-6, atol: 1e-7);
        TensorAssert.Close(before, layer.forward(x), rtol: 1e-5, atol: 1e-5);
    }

    [Fact]
    public void UnmergeIsRefusedWhereTheVectorHoldsAZero()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        using (no_grad()) layer.Scale("default")[3, 0] = 0;
        layer.Merge(new[] { "default" });
        var merged = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        var ex = Assert.Throws<InvalidOperationException>(() => layer.Unmerge());
        Assert.Equal("T.q: cannot unmerge (IA)³ adapter 'default': its vector ia3_l holds 1 zero entry, so the merged weight lost those rows; the layer stays merged", ex.Message);
        TensorAssert.Equal(merged, layer.BaseLayer.get_parameter("weight")!);
        Assert.Equal(new[] { "default" }, layer.MergedAdapters);
    }

    [Fact]
    public void SeveralActiveAdaptersMultiply()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.AddAdapter("ff", new IA3Options { FeedForward = true });
        using (no_grad()) layer.Scale("ff").uniform_(0.5, 1.5);
        layer.SetActiveAdapters(new[] { "default", "ff" });
        var x = randn(4, 12);
        var expected = layer.BaseLayer.forward(x * layer.Scale("ff").detach()) * layer.Scale("default").detach().reshape(-1);
        TensorAssert.Close(expected, layer.forward(x), atol: 1e-5);
        layer.Merge(new[] { "default", "ff" });
        TensorAssert.Close(expected, layer.forward(x), rtol: 1e-5, atol: 1e-5);
    }

    [Fact]
    public void GradientsReachOnlyTheVector()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.forward(randn(6, 12)).square().sum().backward();
        Assert.Null(layer.BaseLayer.get_parameter("weight")!.grad);
        Assert.Null(layer.BaseLayer.get_parameter("bias")!.grad);
        Assert.NotNull(layer.Scale("default").grad);
        Assert.Equal(new[] { "ia3_l.default" }, layer.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToArray());
    }

    [Fact]
    public void WrapRejectsWhatItCannotAdaptAndAddsNamedAdapters()
    {
        using var scope = NewDisposeScope();
        var ex = Assert.Throws<InvalidOperationException>(() => IA3.Wrap(nn.ReLU(), "Demo.Block.act", "default", new IA3Options()));
        Assert.StartsWith("Demo.Block.act: ", ex.Message);
        Assert.Contains("ReLU", ex.Message);
        Assert.Throws<InvalidOperationException>(() => IA3.Wrap(null, "Demo.Block.q", "default", new IA3Options()));
        var wrapped = (IA3Linear)IA3.Wrap(nn.Linear(12, 10), "Demo.Block.q", "default", new IA3Options());
        Assert.Same(wrapped, IA3.Wrap(wrapped, "Demo.Block.q", "b", new IA3Options { FeedForward = true }));
        Assert.Equal(new[] { "default", "b" }, wrapped.AdapterNames);
        var dup = Assert.Throws<ArgumentException>(() => IA3.Wrap(wrapped, "Demo.Block.q", "b", new IA3Options()));
        Assert.StartsWith("Demo.Block.q: ", dup.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TrainingReducesTheLoss(bool feedForward)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var layer = new IA3Linear("T.q", nn.Linear(16, 16), "default", new IA3Options { FeedForward = feedForward });
        var w = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        var bias = layer.BaseLayer.get_parameter("bias")!.detach().clone();
        var target = rand(16) + 0.5; // a scaling (IA)³ can express
        Func<Tensor, Tensor> f = feedForward ? x => (x * target).matmul(w.t()) + bias : x => (x.matmul(w.t()) + bias) * target;
        var (first, last) = MiscAdapterKit.Train(layer, f, steps: 300, lr: 2e-2);
        Assert.True(last < first * 0.05, $"loss {first} -> {last}");
        TensorAssert.Equal(w, layer.BaseLayer.get_parameter("weight")!);
    }

    [Fact]
    public void SavesPeftsKeysAndConfigAndLoadsThemBack()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        (nn.Module Root, IA3Linear K, IA3Linear Down) Build(int adapterSeed)
        {
            manual_seed(3);
            var k = (IA3Linear)IA3.Wrap(nn.Linear(16, 8), "T.k", "default", new IA3Options());
            var down = (IA3Linear)IA3.Wrap(nn.Linear(12, 20), "T.down", "default", new IA3Options { FeedForward = true });
            var root = nn.Sequential(("k", k), ("mlp", nn.Sequential(("down", down))));
            MiscAdapterKit.Randomize(root, adapterSeed);
            return (root, k, down);
        }
        var (root, k, down) = Build(5);
        MiscAdapterKit.Attach(root).SaveAdapters(folder.Path);

        var keys = MiscAdapterKit.Keys(folder.Path);
        Assert.Equal(new[] { "base_model.model.k.ia3_l", "base_model.model.mlp.down.ia3_l" }, keys.Keys.OrderBy(x => x, StringComparer.Ordinal).ToArray());
        Assert.Equal(new long[] { 8, 1 }, keys["base_model.model.k.ia3_l"]);
        Assert.Equal(new long[] { 1, 12 }, keys["base_model.model.mlp.down.ia3_l"]);

        var config = MiscAdapterKit.Config(folder.Path);
        Assert.Equal("IA3", config["peft_type"]!.GetValue<string>());
        Assert.Equal(new[] { "k", "mlp.down" }, MiscAdapterKit.Strings(config["target_modules"]));
        Assert.Equal(new[] { "mlp.down" }, MiscAdapterKit.Strings(config["feedforward_modules"]));
        Assert.True(config["init_ia3_weights"]!.GetValue<bool>());
        Assert.Null(config["modules_to_save"]);

        var (root2, k2, down2) = Build(77);
        MiscAdapterKit.CopyBase(root, root2);
        MiscAdapterKit.Attach(root2).LoadAdapters(folder.Path);
        var xk = randn(3, 16);
        var xd = randn(3, 12);
        TensorAssert.Equal(k.forward(xk), k2.forward(xk));
        TensorAssert.Equal(down.forward(xd), down2.forward(xd));
    }

    [Fact]
    public void FeedForwardModulesAreMatchedAsPeftMatchesThem()
    {
        var list = new JsonObject { ["peft_type"] = "IA3", ["feedforward_modules"] = new JsonArray("mlp.down", "fc2") };
        Assert.True(((IA3Options)AdapterConfig.SettingsFor(list, "layers.0.mlp.down", "f")).FeedForward);
        Assert.True(((IA3Options)AdapterConfig.SettingsFor(list, "h.3.fc2", "f")).FeedForward);
        Assert.False(((IA3Options)AdapterConfig.SettingsFor(list, "layers.0.mlp.up", "f")).FeedForward);
        var regex = new JsonObject { ["peft_type"] = "IA3", ["feedforward_modules"] = ".*\\.down" };
        Assert.True(((IA3Options)AdapterConfig.SettingsFor(regex, "layers.0.mlp.down", "f")).FeedForward);
        Assert.False(((IA3Options)AdapterConfig.SettingsFor(regex, "layers.0.mlp.down_proj", "f")).FeedForward); // a full match, as re.fullmatch
        var none = new JsonObject { ["peft_type"] = "IA3" };
        Assert.False(((IA3Options)AdapterConfig.SettingsFor(none, "k", "f")).FeedForward);
    }

    [Fact]
    public void LoadingRefusesAFileThatScalesTheOtherSide()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        manual_seed(3);
        var root = nn.Sequential(("k", IA3.Wrap(nn.Linear(12, 12), "T.k", "default", new IA3Options { FeedForward = true })));
        MiscAdapterKit.Attach(root).SaveAdapters(folder.Path);
        var root2 = nn.Sequential(("k", IA3.Wrap(nn.Linear(12, 12), "T.k", "default", new IA3Options())));
        var ex = Assert.Throws<System.IO.InvalidDataException>(() => MiscAdapterKit.Attach(root2).LoadAdapters(folder.Path));
        Assert.Contains("key 'base_model.model.k.ia3_l' has shape [1, 12], but the model's parameter has shape [12, 1]", ex.Message);
        var settings = Assert.Throws<InvalidOperationException>(() => ((IA3Linear)root2.named_children().Single().module).ApplySettings("default", new IA3Options { FeedForward = true }));
        Assert.Equal("T.k: adapter 'default' scales the layer's outputs, but the file lists this layer in feedforward_modules", settings.Message);
    }
}
