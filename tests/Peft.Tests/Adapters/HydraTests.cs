using System;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using Peft.Tests.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

public class HydraTests
{
    private static HydraLinear Make(long inF = 12, long outF = 10, HydraOptions? options = null, bool randomB = true)
    {
        manual_seed(1);
        var layer = new HydraLinear("T.q", nn.Linear(inF, outF), "default", options ?? new HydraOptions { ParallelRank = 4, SequentialRank = 2, Alpha = 8 });
        if (randomB) RandomizeB(layer, "default");
        return layer;
    }

    private static void RandomizeB(HydraLinear layer, string adapter)
    {
        using (no_grad())
        {
            layer.ParallelB(adapter).normal_(0, 0.2);
            layer.SequentialB(adapter).normal_(0, 0.2);
        }
    }

    private static Tensor Weight(HydraLinear layer) => layer.BaseLayer.get_parameter("weight")!;

    private static Tensor Bias(HydraLinear layer) => layer.BaseLayer.get_parameter("bias")!;

    [Fact]
    public void ForwardIsBasePlusParallelBranchPlusSequentialBranchOnTheUnbiasedBaseOutput()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var x = randn(5, 12);
        var w = Weight(layer);
        var b = Bias(layer);
        // y = x Wᵀ + b + (α / r_p) · x A_pᵀ B_pᵀ + (α / r_s) · (x Wᵀ) A_sᵀ B_sᵀ, written out.
        var wx = x.matmul(w.t());
        var expected = wx + b
            + x.matmul(layer.ParallelA("default").t()).matmul(layer.ParallelB("default").t()) * (8.0 / 4)
            + wx.matmul(layer.SequentialA("default").t()).matmul(layer.SequentialB("default").t()) * (8.0 / 2);
        TensorAssert.Close(expected, layer.forward(x), atol: 1e-5);
    }

    [Fact]
    public void DeltaWeightIsSequentialTimesWPlusParallel()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var w = Weight(layer);
        var expected = matmul(layer.SequentialB("default"), matmul(layer.SequentialA("default"), w)) * 4.0
            + matmul(layer.ParallelB("default"), layer.ParallelA("default")) * 2.0;
        var delta = layer.DeltaWeight("default");
        Assert.Equal(new long[] { 10, 12 }, delta.shape);
        TensorAssert.Close(expected, delta, atol: 1e-6);
        // The forward is the layer with weight W + ΔW and the bias untouched.
        var x = randn(3, 12);
        TensorAssert.Close(x.matmul((w + delta).t()) + Bias(layer), layer.forward(x), atol: 1e-5);
    }

    [Fact]
    public void StartsEqualToTheBaseWithKaimingAsAndZeroBs()
    {
        using var scope = NewDisposeScope();
        var layer = Make(inF: 256, outF: 64, options: new HydraOptions { ParallelRank = 8, SequentialRank = 4 }, randomB: false);
        Assert.Equal(new long[] { 8, 256 }, layer.ParallelA("default").shape);
        Assert.Equal(new long[] { 64, 8 }, layer.ParallelB("default").shape);
        Assert.Equal(new long[] { 4, 64 }, layer.SequentialA("default").shape);
        Assert.Equal(new long[] { 64, 4 }, layer.SequentialB("default").shape);
        var x = randn(3, 256);
        TensorAssert.Close(layer.BaseLayer.forward(x), layer.forward(x), rtol: 0, atol: 1e-6);
        Assert.Equal(0, layer.ParallelB("default").abs().sum().item<float>());
        Assert.Equal(0, layer.SequentialB("default").abs().sum().item<float>());
        // Kaiming-uniform with a = √5: bound = 1/√fan_in — 1/16 for A_p (fan_in 256), 1/8 for A_s (fan_in 64).
        Assert.InRange(layer.ParallelA("default").abs().max().item<float>(), 0.055, 1.0 / 16 + 1e-6);
        Assert.InRange(layer.SequentialA("default").abs().max().item<float>(), 0.11, 1.0 / 8 + 1e-6);
    }

    [Fact]
    public void GradientsReachOnlyTheFourFactors()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.forward(randn(6, 12)).square().sum().backward();
        Assert.Null(Weight(layer).grad);
        Assert.Null(Bias(layer).grad);
        foreach (var p in new[] { layer.ParallelA("default"), layer.ParallelB("default"), layer.SequentialA("default"), layer.SequentialB("default") })
            Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0);
        var expected = new[]
        {
            "hydra_parallel_A.default.weight", "hydra_parallel_B.default.weight",
            "hydra_sequential_A.default.weight", "hydra_sequential_B.default.weight",
        };
        Assert.Equal(expected, layer.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToArray());
        Assert.Equal(new[] { "base_layer.weight", "base_layer.bias" }.Concat(expected), layer.named_parameters().Select(p => p.name).ToArray());
        Assert.Equal(expected, layer.AdapterParameters("default").Select(p => p.Name).ToArray());
    }

    [Fact]
    public void DropoutActsOnTheBranchesOnlyAndOnlyInTraining()
    {
        using var scope = NewDisposeScope();
        var layer = Make(options: new HydraOptions { ParallelRank = 4, SequentialRank = 2, Dropout = 0.5 });
        var x = randn(64, 12);
        layer.eval();
        var exact = layer.forward(x);
        layer.train();
        var dropped = layer.forward(x);
        Assert.False(exact.allclose(dropped));
        // With the branches' B's at zero, dropout has nothing to act on: the base path is never dropped.
        using (no_grad())
        {
            layer.ParallelB("default").zero_();
            layer.SequentialB("default").zero_();
        }
        TensorAssert.Close(layer.BaseLayer.forward(x), layer.forward(x), rtol: 0, atol: 1e-6);
    }

    [Fact]
    public void MergeMatchesUnmergedForwardLeavesTheBiasAndUnmergeRestores()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.eval();
        var x = randn(7, 12);
        var before = layer.forward(x);
        var w0 = Weight(layer).detach().clone();
        var b0 = Bias(layer).detach().clone();
        var delta = layer.DeltaWeight("default").detach().clone();
        layer.Merge(new[] { "default" });
        Assert.Equal(new[] { "default" }, layer.MergedAdapters);
        // W' = (I + s_s·B_s·A_s)·W + s_p·B_p·A_p, written out.
        var expected = (eye(10) + matmul(layer.SequentialB("default"), layer.SequentialA("default")) * 4.0).matmul(w0)
            + matmul(layer.ParallelB("default"), layer.ParallelA("default")) * 2.0;
        TensorAssert.Close(expected, Weight(layer), atol: 1e-6);
        TensorAssert.Equal(b0, Bias(layer));
        TensorAssert.Close(before, layer.forward(x), rtol: 1e-5, atol: 1e-5);
        TensorAssert.Close(delta, layer.DeltaWeight("default"), atol: 1e-5);
        layer.Unmerge();
        TensorAssert.Close(w0, Weight(layer), atol: 1e-6);
        TensorAssert.Close(before, layer.forward(x), atol: 1e-5);
    }

    [Fact]
    public void SeveralAdaptersComposeInActiveOrderAsMergingThemDoes()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.AddAdapter("other", new HydraOptions { ParallelRank = 2, SequentialRank = 3, Alpha = 3 });
        RandomizeB(layer, "other");
        layer.SetActiveAdapters(new[] { "default", "other" });
        var x = randn(4, 12);
        var w0 = Weight(layer).detach().clone();
        // W₁ = (I + S₁)W + P₁, then W₂ = (I + S₂)W₁ + P₂.
        var w1 = (eye(10) + matmul(layer.SequentialB("default"), layer.SequentialA("default")) * 4.0).matmul(w0)
            + matmul(layer.ParallelB("default"), layer.ParallelA("default")) * 2.0;
        var w2 = (eye(10) + matmul(layer.SequentialB("other"), layer.SequentialA("other")) * 1.0).matmul(w1)
            + matmul(layer.ParallelB("other"), layer.ParallelA("other")) * 1.5;
        var y = layer.forward(x);
        TensorAssert.Close(x.matmul(w2.t()) + Bias(layer), y, atol: 1e-5);
        layer.Merge(layer.ActiveAdapters);
        TensorAssert.Close(w2, Weight(layer), atol: 1e-5);
        TensorAssert.Close(y, layer.forward(x), atol: 1e-5);
        layer.Unmerge();
        TensorAssert.Close(w0, Weight(layer), atol: 1e-6);
        layer.DeleteAdapter("other");
        Assert.DoesNotContain(layer.named_parameters(), p => p.name.Contains(".other."));
    }

    [Fact]
    public void AMergeThatCouldNotBeUndoneIsRefused()
    {
        using var scope = NewDisposeScope();
        var layer = Make(options: new HydraOptions { ParallelRank = 2, SequentialRank = 1, Alpha = 2 });
        using (no_grad())
        {
            // s_s = 2: A_s·B_s = −1/2 makes I + s_s·A_s·B_s = 0, so I + s_s·B_s·A_s is singular.
            layer.SequentialB("default").zero_();
            layer.SequentialB("default")[0, 0] = 1;
            layer.SequentialA("default").zero_();
            layer.SequentialA("default")[0, 0] = -0.5f;
        }
        var w0 = Weight(layer).detach().clone();
        var ex = Assert.Throws<InvalidOperationException>(() => layer.Merge(new[] { "default" }));
        Assert.StartsWith("T.q: ", ex.Message);
        Assert.Contains("'default'", ex.Message);
        Assert.Contains("singular", ex.Message);
        TensorAssert.Equal(w0, Weight(layer));
        Assert.Empty(layer.MergedAdapters);
    }

    [Theory]
    [InlineData(0, 2, 0.0, "Hydra parallel rank must be at least 1, got 0")]
    [InlineData(2, 0, 0.0, "Hydra sequential rank must be at least 1, got 0")]
    [InlineData(11, 2, 0.0, "Hydra parallel rank 11 is larger than min(in 12, out 10) = 10")]
    [InlineData(2, 11, 0.0, "Hydra sequential rank 11 is larger than the layer's out-features 10; use a rank from 1 to 10")]
    [InlineData(2, 2, 1.0, "dropout 1 is outside [0, 1)")]
    [InlineData(2, 2, -0.1, "dropout -0.1 is outside [0, 1)")]
    public void InvalidOptionsFailAtRegistrationNamingTheSite(int parallel, int sequential, double dropout, string message)
    {
        var ex = Assert.Throws<ArgumentException>(() => Hydra.Wrap(nn.Linear(12, 10), "Demo.Block.q", "default",
            new HydraOptions { ParallelRank = parallel, SequentialRank = sequential, Dropout = dropout }));
        Assert.StartsWith("Demo.Block.q: ", ex.Message);
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void WrapRejectsWhatItCannotAdaptAndAddsToAnExistingLayer()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => Hydra.Wrap(nn.ReLU(), "Demo.Block.act", "default", new HydraOptions()));
        Assert.StartsWith("Demo.Block.act: ", ex.Message);
        Assert.Contains("ReLU", ex.Message);
        Assert.Throws<InvalidOperationException>(() => Hydra.Wrap(null, "Demo.Block.q", "default", new HydraOptions()));
        var wrapped = Hydra.Wrap(nn.Linear(12, 10), "Demo.Block.q", "default", new HydraOptions { ParallelRank = 2, SequentialRank = 2 });
        Assert.Same(wrapped, Hydra.Wrap(wrapped, "Demo.Block.q", "b", new HydraOptions { ParallelRank = 1, SequentialRank = 1 }));
        Assert.Equal(new[] { "default", "b" }, ((HydraLinear)wrapped).AdapterNames);
    }

    [Fact]
    public void OptionDefaultsMatchTheAttribute()
    {
        var attribute = new HydraAttribute(8, 8);
        var options = new HydraOptions();
        Assert.Equal(attribute.ParallelRank, options.ParallelRank);
        Assert.Equal(attribute.SequentialRank, options.SequentialRank);
        Assert.Equal(attribute.Alpha, options.Alpha);
        Assert.Equal(attribute.Dropout, options.Dropout);
        Assert.Equal("default", attribute.Name);
    }

    [Fact]
    public void TrainingReducesTheLossOnASmallRegression()
    {
        manual_seed(7);
        var layer = (HydraLinear)Hydra.Wrap(nn.Linear(16, 16), "T.q", "default", new HydraOptions { ParallelRank = 4, SequentialRank = 4 });
        var (first, last) = MiscAdapterKit.Train(layer, x => layer.BaseLayer.forward(x) + x.matmul((randn(16, 2) * 0.3).matmul(randn(2, 16))), steps: 200);
        Assert.True(last < first * 0.01, $"loss went from {first} to {last}");
    }

    private static (nn.Module<Tensor, Tensor> Root, PeftModelCore Core) Model(long seed)
    {
        manual_seed(seed);
        var root = nn.Sequential(
            ("q", Hydra.Wrap(nn.Linear(16, 16), "T.q", "default", new HydraOptions { ParallelRank = 4, SequentialRank = 2, Alpha = 16, Dropout = 0.1 })),
            ("act", nn.Tanh()),
            ("o", Hydra.Wrap(nn.Linear(16, 8), "T.o", "default", new HydraOptions { ParallelRank = 2, SequentialRank = 3, Alpha = 16, Dropout = 0.1 })));
        manual_seed(99); // the same base weights in every model
        using (no_grad())
            foreach (var (_, p) in root.named_parameters().Where(p => p.name.Contains("base_layer")))
                p.normal_(0, 0.3);
        var core = PeftModelCore.Attach(root, new PeftModelInfo("T", Array.Empty<AdapterSiteInfo>(), Array.Empty<string>(), Array.Empty<PeftModelInfo>()));
        manual_seed(seed);
        foreach (var (_, layer) in core.AdapterLayers) RandomizeB((HydraLinear)layer, "default");
        root.eval();
        return (root, core);
    }

    [Fact]
    public void SaveWritesPeftStyleKeysAndConfigAndLoadRestoresExactly()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, core) = Model(seed: 1);
        core.SaveAdapters(folder.Path);

        var header = Safetensors.ReadHeader(Path.Combine(folder.Path, PeftAdapterFormat.WeightsFileName));
        var shapes = header.Entries.ToDictionary(e => e.Name, e => e.Shape);
        var expected = new (string Key, long[] Shape)[]
        {
            ("base_model.model.o.hydra_parallel_A.weight", new long[] { 2, 16 }),
            ("base_model.model.o.hydra_parallel_B.weight", new long[] { 8, 2 }),
            ("base_model.model.o.hydra_sequential_A.weight", new long[] { 3, 8 }),
            ("base_model.model.o.hydra_sequential_B.weight", new long[] { 8, 3 }),
            ("base_model.model.q.hydra_parallel_A.weight", new long[] { 4, 16 }),
            ("base_model.model.q.hydra_parallel_B.weight", new long[] { 16, 4 }),
            ("base_model.model.q.hydra_sequential_A.weight", new long[] { 2, 16 }),
            ("base_model.model.q.hydra_sequential_B.weight", new long[] { 16, 2 }),
        };
        Assert.Equal(expected.Select(e => e.Key), shapes.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (key, shape) in expected) Assert.Equal(shape, shapes[key]);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(folder.Path, AdapterConfig.FileName)))!.AsObject();
        Assert.Equal("HYDRA", config["peft_type"]!.GetValue<string>());
        Assert.Equal(16, config["lora_alpha"]!.GetValue<int>());
        Assert.Equal(0.1, config["lora_dropout"]!.GetValue<double>());
        Assert.Equal(new[] { "o", "q" }, config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).OrderBy(s => s));
        Assert.True(config.ContainsKey("modules_to_save"));
        // Two layers, two values each: the most common (ties: the smaller) is global, the other goes to the pattern.
        Assert.Equal(2, config["r"]!.GetValue<int>());
        Assert.Equal("{\"q\":4}", config["rank_pattern"]!.ToJsonString());
        Assert.Equal(2, config["sequential_r"]!.GetValue<int>());
        Assert.Equal("{\"o\":3}", config["sequential_rank_pattern"]!.ToJsonString());
        Assert.Equal("{}", config["alpha_pattern"]!.ToJsonString());

        var (root2, core2) = Model(seed: 2);
        var x = randn(5, 16);
        Assert.False(TensorAssert.Same(root.forward(x), root2.forward(x)));
        core2.LoadAdapters(folder.Path);
        TensorAssert.Equal(root.forward(x), root2.forward(x));
    }

    [Fact]
    public void LoadTakesAlphaAndDropoutFromTheFileAndRefusesOtherRanks()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (_, core) = Model(seed: 1);
        core.SaveAdapters(folder.Path);
        string configPath = Path.Combine(folder.Path, AdapterConfig.FileName);
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["lora_alpha"] = 4;
        config["lora_dropout"] = 0.25;
        File.WriteAllText(configPath, config.ToJsonString());

        var (_, core2) = Model(seed: 2);
        core2.LoadAdapters(folder.Path);
        var q = (HydraLinear)core2.AdapterLayers.Single(l => l.Path == "q").Layer;
        Assert.Equal(new HydraOptions { ParallelRank = 4, SequentialRank = 2, Alpha = 4, Dropout = 0.25 }, q.Options("default"));
        Assert.Equal(1.0, q.Options("default").ParallelScaling);
        Assert.Equal(2.0, q.Options("default").SequentialScaling);

        config["sequential_rank_pattern"] = new JsonObject { ["o"] = 5 };
        File.WriteAllText(configPath, config.ToJsonString());
        var (root3, core3) = Model(seed: 3);
        var before = root3.named_parameters().Select(p => p.parameter.detach().clone()).ToList();
        var ex = Assert.Throws<InvalidOperationException>(() => core3.LoadAdapters(folder.Path));
        Assert.Contains("T.o", ex.Message);
        Assert.Contains("sequential 5", ex.Message);
        Assert.All(root3.named_parameters().Zip(before), p => TensorAssert.Equal(p.Second, p.First.parameter));
        // q's settings were applied before o's refused: rolled back.
        var q3 = (HydraLinear)core3.AdapterLayers.Single(l => l.Path == "q").Layer;
        Assert.Equal(16, q3.Options("default").Alpha);
        Assert.Equal(0.1, q3.Options("default").Dropout);
    }

    [Fact]
    public void LayersOfOneAdapterWithDifferentDropoutCannotShareOneConfig()
    {
        // Refused when the model is built (PEFT017's words), never first at save.
        using var scope = NewDisposeScope();
        var root = nn.Sequential(
            ("q", Hydra.Wrap(nn.Linear(8, 8), "T.q", "default", new HydraOptions { ParallelRank = 2, SequentialRank = 2, Dropout = 0.1 })),
            ("v", Hydra.Wrap(nn.Linear(8, 8), "T.v", "default", new HydraOptions { ParallelRank = 2, SequentialRank = 2 })));
        var ex = Assert.Throws<InvalidOperationException>(() =>
            PeftModelCore.Attach(root, new PeftModelInfo("T", Array.Empty<AdapterSiteInfo>(), Array.Empty<string>(), Array.Empty<PeftModelInfo>())));
        Assert.Equal(PeftMessages.Format(PeftMessages.SharedConfigMismatch, "v", "default", "lora_dropout", "0.0", "0.1", "q"), ex.Message);
    }
}
