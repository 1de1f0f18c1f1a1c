using System;
using System.Collections.Generic;
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

public class BoneTests
{
    private static BoneLinear Make(long inF = 12, long outF = 8, int block = 4, BoneVariant variant = BoneVariant.Bone, bool randomD = true, long seed = 1)
    {
        manual_seed(seed);
        var layer = new BoneLinear("T.q", nn.Linear(inF, outF), "default", new BoneOptions { Block = block, Variant = variant });
        if (randomD)
            using (no_grad()) layer.Block("default").normal_(0, 0.3);
        return layer;
    }

    private static double[] Values(Tensor t) => t.detach().to(float64).contiguous().data<double>().ToArray();

    /// <summary>ΔW[o, i] = D[i mod r, o], written out entry by entry.</summary>
    private static Tensor NaiveBoneDelta(Tensor d, long outF, long inF)
    {
        long r = d.shape[0];
        var dv = Values(d);
        var delta = new double[outF * inF];
        for (long o = 0; o < outF; o++)
            for (long i = 0; i < inF; i++)
                delta[o * inF + i] = dv[(i % r) * outF + o];
        return tensor(delta, new[] { outF, inF });
    }

    /// <summary>
    /// Bat, tile by tile: with o = I·r + a and i = J·r + b, W'[o, i] = W[o, i] + Σ_c W[I·r + a, J·r + c]·D[I, c, b] + D[I, a, b]
    /// (W_IJ ← W_IJ + W_IJ·D_I + D_I; D is indexed by the output block I). This is what PEFT's
    /// W.reshape(out/r, r, in/r, r).permute(2, 0, 1, 3) @ D + D computes: the permuted tensor is [J, I, a, b] and D
    /// [out/r, r, r] broadcasts along J.
    /// </summary>
    private static Tensor NaiveBatWeight(Tensor w, Tensor d)
    {
        long outF = w.shape[0], inF = w.shape[1], r = d.shape[^1];
        var wv = Values(w);
        var dv = Values(d);
        var result = new double[outF * inF];
        for (long o = 0; o < outF; o++)
            for (long i = 0; i < inF; i++)
            {
                long I = o / r, a = o % r, J = i / r, b = i % r;
                double sum = wv[o * inF + i] + dv[(I * r + a) * r + b];
                for (long c = 0; c < r; c++) sum += wv[o * inF + J * r + c] * dv[(I * r + c) * r + b];
                result[o * inF + i] = sum;
            }
        return tensor(result, new[] { outF, inF });
    }

    private static Tensor Weight(BoneLinear layer) => layer.BaseLayer.get_parameter("weight")!;

    private static Tensor Bias(BoneLinear layer) => layer.BaseLayer.get_parameter("bias")!;

    [Fact]
    public void BoneForwardFoldsTheInputIntoBlocksAndMultipliesByD()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var x = randn(5, 12);
        var d = layer.Block("default");
        // y = x Wᵀ + b + (x[:, 0:4] + x[:, 4:8] + x[:, 8:12]) · D, written out.
        var folded = x[.., 0..4] + x[.., 4..8] + x[.., 8..12];
        var expected = x.matmul(Weight(layer).t()) + Bias(layer) + folded.matmul(d);
        TensorAssert.Close(expected, layer.forward(x), atol: 1e-5);
        // The same through the delta weight, entry by entry, and on a batch with two leading dimensions.
        var x3 = randn(2, 3, 12);
        var w = Weight(layer).to(float64) + NaiveBoneDelta(d, 8, 12);
        TensorAssert.Close(x3.to(float64).matmul(w.t()) + Bias(layer).to(float64), layer.forward(x3), atol: 1e-5);
    }

    [Fact]
    public void BoneDeltaWeightIsDAtInputIndexModBlock()
    {
        using var scope = NewDisposeScope();
        var layer = Make(inF: 12, outF: 8, block: 3);
        Assert.Equal(new long[] { 3, 8 }, layer.Block("default").shape);
        TensorAssert.Close(NaiveBoneDelta(layer.Block("default"), 8, 12), layer.DeltaWeight("default"));
    }

    [Fact]
    public void BatUpdatesEveryTileWithTheOutputBlocksD()
    {
        using var scope = NewDisposeScope();
        var layer = Make(inF: 12, outF: 8, block: 4, variant: BoneVariant.Bat);
        Assert.Equal(new long[] { 2, 4, 4 }, layer.Block("default").shape);
        var w = Weight(layer);
        var expectedWeight = NaiveBatWeight(w, layer.Block("default"));
        TensorAssert.Close(expectedWeight - w.to(float64), layer.DeltaWeight("default"), atol: 1e-5);
        var x = randn(6, 12);
        TensorAssert.Close(x.to(float64).matmul(expectedWeight.t()) + Bias(layer).to(float64), layer.forward(x), atol: 1e-5);
    }

    [Theory]
    [InlineData(BoneVariant.Bone, new long[] { 4, 8 })]
    [InlineData(BoneVariant.Bat, new long[] { 2, 4, 4 })]
    public void StartsAtZeroSoTheLayerStartsEqualToTheBase(BoneVariant variant, long[] shape)
    {
        using var scope = NewDisposeScope();
        var layer = Make(variant: variant, randomD: false);
        Assert.Equal(shape, layer.Block("default").shape);
        Assert.Equal(0, layer.Block("default").abs().sum().item<float>());
        var x = randn(3, 12);
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));
    }

    [Theory]
    [InlineData(BoneVariant.Bone)]
    [InlineData(BoneVariant.Bat)]
    public void GradientsReachOnlyTheBlock(BoneVariant variant)
    {
        using var scope = NewDisposeScope();
        var layer = Make(variant: variant);
        layer.forward(randn(6, 12)).square().sum().backward();
        Assert.Null(Weight(layer).grad);
        Assert.Null(Bias(layer).grad);
        Assert.NotNull(layer.Block("default").grad);
        Assert.True(layer.Block("default").grad!.abs().sum().item<float>() > 0);
        Assert.Equal(new[] { "miss_block.default" },
            layer.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToArray());
        Assert.Equal(new[] { "base_layer.weight", "base_layer.bias", "miss_block.default" },
            layer.named_parameters().Select(p => p.name).ToArray());
    }

    [Theory]
    [InlineData(BoneVariant.Bone)]
    [InlineData(BoneVariant.Bat)]
    public void MergeMatchesUnmergedForwardAndUnmergeRestores(BoneVariant variant)
    {
        using var scope = NewDisposeScope();
        var layer = Make(variant: variant);
        var x = randn(7, 12);
        var before = layer.forward(x);
        var w0 = Weight(layer).detach().clone();
        var b0 = Bias(layer).detach().clone();
        var delta = layer.DeltaWeight("default").detach().clone();
        layer.Merge(new[] { "default" });
        Assert.Equal(new[] { "default" }, layer.MergedAdapters);
        TensorAssert.Close(before, layer.forward(x), rtol: 1e-5, atol: 1e-5);
        TensorAssert.Close(w0 + delta, Weight(layer), atol: 1e-6);
        TensorAssert.Equal(b0, Bias(layer));
        // The delta weight is still the change to the base layer's own weight while merged.
        TensorAssert.Close(delta, layer.DeltaWeight("default"), atol: 1e-5);
        layer.Unmerge();
        TensorAssert.Close(w0, Weight(layer), atol: 1e-6);
        TensorAssert.Close(before, layer.forward(x), atol: 1e-5);
    }

    [Fact]
    public void SeveralAdaptersComposeInActiveOrderAsMergingThemDoes()
    {
        using var scope = NewDisposeScope();
        var layer = Make(variant: BoneVariant.Bone);
        layer.AddAdapter("bat", new BoneOptions { Block = 2, Variant = BoneVariant.Bat });
        using (no_grad()) layer.Block("bat").normal_(0, 0.3);
        layer.SetActiveAdapters(new[] { "default", "bat" });
        var x = randn(4, 12);
        // Bat acts on the weight the Bone adapter left: W'' = bat(W + ΔW_bone).
        var afterBone = Weight(layer).to(float64) + NaiveBoneDelta(layer.Block("default"), 8, 12);
        var expected = NaiveBatWeight(afterBone, layer.Block("bat"));
        var y = layer.forward(x);
        TensorAssert.Close(x.to(float64).matmul(expected.t()) + Bias(layer).to(float64), y, atol: 1e-5);
        var w0 = Weight(layer).detach().clone();
        layer.Merge(layer.ActiveAdapters);
        TensorAssert.Close(expected, Weight(layer), atol: 1e-5);
        TensorAssert.Close(y, layer.forward(x), atol: 1e-5);
        layer.Unmerge();
        TensorAssert.Close(w0, Weight(layer), atol: 1e-6);
    }

    [Fact]
    public void BatMergeThatCouldNotBeUndoneIsRefused()
    {
        using var scope = NewDisposeScope();
        var layer = Make(variant: BoneVariant.Bat);
        using (no_grad()) layer.Block("default")[1].copy_(-eye(4)); // I + D_1 = 0
        var w0 = Weight(layer).detach().clone();
        var ex = Assert.Throws<InvalidOperationException>(() => layer.Merge(new[] { "default" }));
        Assert.StartsWith("T.q: ", ex.Message);
        Assert.Contains("'default'", ex.Message);
        Assert.Contains("singular", ex.Message);
        TensorAssert.Equal(w0, Weight(layer));
        Assert.Empty(layer.MergedAdapters);
    }

    [Fact]
    public void MergeRefusesNonFiniteResultAndLeavesTheWeight()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        using (no_grad()) layer.Block("default")[0, 0] = float.NaN;
        var w0 = Weight(layer).detach().clone();
        var ex = Assert.Throws<InvalidOperationException>(() => layer.Merge(new[] { "default" }));
        Assert.Contains("T.q", ex.Message);
        TensorAssert.Equal(w0, Weight(layer));
    }

    [Fact]
    public void DisabledAdaptersGiveTheBaseOutput()
    {
        using var scope = NewDisposeScope();
        var layer = Make(variant: BoneVariant.Bat);
        var x = randn(3, 12);
        layer.AdaptersDisabled = true;
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));
        layer.AdaptersDisabled = false;
        Assert.False(layer.BaseLayer.forward(x).allclose(layer.forward(x)));
    }

    [Theory]
    [InlineData(12, 8, 0, BoneVariant.Bone, "Bone block must be at least 1, got 0")]
    [InlineData(12, 8, -2, BoneVariant.Bat, "Bone block must be at least 1, got -2")]
    [InlineData(12, 8, 5, BoneVariant.Bone, "Bone block 5 does not divide the layer's in-features 12 (the layer is 12 → 8); the nearest block that does is 4")]
    [InlineData(12, 8, 3, BoneVariant.Bat, "Bone block 3 does not divide the layer's in-features 12 and out-features 8 (Bat needs both); the nearest block that does is 2")]
    [InlineData(12, 10, 4, BoneVariant.Bat, "Bone block 4 does not divide the layer's in-features 12 and out-features 10 (Bat needs both); the nearest block that does is 2")]
    public void InvalidBlocksFailAtRegistrationNamingTheSiteAndShape(long inF, long outF, int block, BoneVariant variant, string message)
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            Bone.Wrap(nn.Linear(inF, outF), "Demo.Block.v", "default", new BoneOptions { Block = block, Variant = variant }));
        Assert.StartsWith("Demo.Block.v: ", ex.Message);
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void ABlockThatDividesInButNotOutIsFineForBone()
    {
        using var scope = NewDisposeScope();
        var layer = (BoneLinear)Bone.Wrap(nn.Linear(12, 10), "Demo.Block.v", "default", new BoneOptions { Block = 4 });
        Assert.Equal(new long[] { 4, 10 }, layer.Block("default").shape);
    }

    [Fact]
    public void WrapRejectsWhatItCannotAdaptAndAddsToAnExistingLayer()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => Bone.Wrap(nn.ReLU(), "Demo.Block.act", "default", new BoneOptions { Block = 2 }));
        Assert.StartsWith("Demo.Block.act: ", ex.Message);
        Assert.Contains("ReLU", ex.Message);
        Assert.Throws<InvalidOperationException>(() => Bone.Wrap(null, "Demo.Block.v", "default", new BoneOptions()));
        var lora = LoRA.Wrap(nn.Linear(12, 8), "Demo.Block.v", "default", new LoRAOptions { Rank = 2 });
        Assert.Contains("LoRALinear", Assert.Throws<InvalidOperationException>(() => Bone.Wrap(lora, "Demo.Block.v", "b", new BoneOptions { Block = 4 })).Message);
        var wrapped = Bone.Wrap(nn.Linear(12, 8), "Demo.Block.v", "default", new BoneOptions { Block = 4 });
        Assert.Same(wrapped, Bone.Wrap(wrapped, "Demo.Block.v", "b", new BoneOptions { Block = 2, Variant = BoneVariant.Bat }));
        Assert.Equal(new[] { "default", "b" }, ((BoneLinear)wrapped).AdapterNames);
        Assert.Throws<ArgumentException>(() => Bone.Wrap(wrapped, "Demo.Block.v", "b", new BoneOptions { Block = 4 }));
        ((BoneLinear)wrapped).DeleteAdapter("b");
        Assert.Equal(new[] { "base_layer.weight", "base_layer.bias", "miss_block.default" }, wrapped.named_parameters().Select(p => p.name).ToArray());
    }

    [Fact]
    public void OptionDefaultsMatchTheAttribute()
    {
        var attribute = new BoneAttribute(64);
        var options = new BoneOptions();
        Assert.Equal(attribute.Block, options.Block);
        Assert.Equal(attribute.Variant, options.Variant);
        Assert.Equal("default", attribute.Name);
    }

    [Theory]
    [InlineData(BoneVariant.Bone)]
    [InlineData(BoneVariant.Bat)]
    public void TrainingReducesTheLossOnASmallRegression(BoneVariant variant)
    {
        manual_seed(7);
        var layer = (BoneLinear)Bone.Wrap(nn.Linear(16, 16), "T.q", "default", new BoneOptions { Block = 4, Variant = variant });
        var (first, last) = MiscAdapterKit.Train(layer, x =>
        {
            // The task: recover a block the layer can represent (drawn at random, then reset to Bone's zero start).
            layer.Block("default").normal_(0, 0.2);
            var y = layer.forward(x);
            layer.Block("default").zero_();
            return y;
        });
        Assert.True(last < first * 0.01, $"loss went from {first} to {last}");
    }

    private static (nn.Module<Tensor, Tensor> Root, PeftModelCore Core) Model(BoneVariant variant, long seed, int blockV = 4)
    {
        manual_seed(seed);
        var root = nn.Sequential(
            ("q", Bone.Wrap(nn.Linear(16, 16), "T.q", "default", new BoneOptions { Block = 4, Variant = variant })),
            ("v", Bone.Wrap(nn.Linear(16, 8), "T.v", "default", new BoneOptions { Block = blockV, Variant = variant })));
        manual_seed(99); // the same base weights in every model
        using (no_grad())
            foreach (var (name, p) in root.named_parameters().Where(p => p.name.Contains("base_layer")))
                p.normal_(0, 0.3);
        var core = PeftModelCore.Attach(root, new PeftModelInfo("T", Array.Empty<AdapterSiteInfo>(), Array.Empty<string>(), Array.Empty<PeftModelInfo>()));
        manual_seed(seed);
        using (no_grad())
            foreach (var (_, layer) in core.AdapterLayers)
                ((BoneLinear)layer).Block("default").normal_(0, 0.2);
        return (root, core);
    }

    [Theory]
    [InlineData(BoneVariant.Bone, "true")]
    [InlineData(BoneVariant.Bat, "\"bat\"")]
    public void SaveWritesPeftMissKeysAndConfigAndLoadRestoresExactly(BoneVariant variant, string initWeights)
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, core) = Model(variant, seed: 1);
        core.SaveAdapters(folder.Path);

        var header = Safetensors.ReadHeader(Path.Combine(folder.Path, PeftAdapterFormat.WeightsFileName));
        var shapes = header.Entries.ToDictionary(e => e.Name, e => e.Shape);
        var expectedShapes = variant == BoneVariant.Bat
            ? new Dictionary<string, long[]> { ["base_model.model.q.miss_block"] = new long[] { 4, 4, 4 }, ["base_model.model.v.miss_block"] = new long[] { 2, 4, 4 } }
            : new Dictionary<string, long[]> { ["base_model.model.q.miss_block"] = new long[] { 4, 16 }, ["base_model.model.v.miss_block"] = new long[] { 4, 8 } };
        Assert.Equal(expectedShapes.Keys.OrderBy(k => k), shapes.Keys.OrderBy(k => k));
        foreach (var (key, shape) in expectedShapes) Assert.Equal(shape, shapes[key]);
        Assert.All(header.Entries, e => Assert.Equal("F32", e.DType));
        Assert.Equal("pt", header.Metadata["format"]);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(folder.Path, AdapterConfig.FileName)))!.AsObject();
        Assert.Equal("MISS", config["peft_type"]!.GetValue<string>());
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.Equal(initWeights, config["init_weights"]!.ToJsonString());
        Assert.Equal(new[] { "q", "v" }, config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).OrderBy(s => s));
        Assert.True(config.ContainsKey("modules_to_save"));
        // Only fields PEFT's MissConfig has long known: no LoRA pattern fields.
        Assert.False(config.ContainsKey("rank_pattern"));
        Assert.False(config.ContainsKey("alpha_pattern"));
        Assert.Equal(config.Select(p => p.Key).OrderBy(k => k, StringComparer.Ordinal), config.Select(p => p.Key));

        var (root2, core2) = Model(variant, seed: 2);
        var x = randn(5, 16);
        Assert.False(TensorAssert.Same(root.forward(x), root2.forward(x)));
        core2.LoadAdapters(folder.Path);
        TensorAssert.Equal(root.forward(x), root2.forward(x));
    }

    [Fact]
    public void LoadRefusesAFileOfTheOtherVariantAndLeavesTheModel()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (_, core) = Model(BoneVariant.Bat, seed: 1);
        core.SaveAdapters(folder.Path);
        var (root2, core2) = Model(BoneVariant.Bone, seed: 2);
        var before = root2.named_parameters().Select(p => p.parameter.detach().clone()).ToList();
        // Bat's [out/r, r, r] never has Bone's [r, out] shape: the key check refuses it before anything is assigned.
        var ex = Assert.Throws<InvalidDataException>(() => core2.LoadAdapters(folder.Path));
        Assert.Contains("base_model.model.q.miss_block' has shape [4, 4, 4], but the model's parameter has shape [4, 16]", ex.Message);
        Assert.All(root2.named_parameters().Zip(before), p => TensorAssert.Equal(p.Second, p.First.parameter));
        // The layer itself refuses settings of the other variant or block.
        var layer = (BoneLinear)core2.AdapterLayers[0].Layer;
        Assert.Contains("variant", Assert.Throws<InvalidOperationException>(() => layer.ApplySettings("default", new BoneOptions { Block = 4, Variant = BoneVariant.Bat })).Message);
        Assert.Contains("block", Assert.Throws<InvalidOperationException>(() => layer.ApplySettings("default", new BoneOptions { Block = 8, Variant = BoneVariant.Bone })).Message);
    }

    [Fact]
    public void LayersOfOneAdapterWithDifferentBlocksCannotShareOnePeftConfig()
    {
        // MiSS has no rank_pattern: refused when the model is built (PEFT017's words), never first at save.
        using var scope = NewDisposeScope();
        var ex = Assert.Throws<InvalidOperationException>(() => Model(BoneVariant.Bone, seed: 1, blockV: 8));
        Assert.Equal(PeftMessages.Format(PeftMessages.SharedConfigMismatch, "v", "default", "r", 8, 4, "q"), ex.Message);
    }

    [Theory]
    [InlineData(BoneVariant.Bone, "true")]
    [InlineData(BoneVariant.Bat, "\"bat\"")]
    public void LegacyBoneFilesFromPeftBefore019Load(BoneVariant variant, string initWeights)
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, core) = Model(variant, seed: 1);
        // What PEFT 0.13-0.18 wrote: peft_type BONE, key bone_block (here without the base_model.model. prefix for v,
        // which readers accept too).
        var tensors = new Dictionary<string, Tensor>
        {
            ["base_model.model.q.bone_block"] = ((BoneLinear)core.AdapterLayers.Single(l => l.Path == "q").Layer).Block("default").detach(),
            ["v.bone_block"] = ((BoneLinear)core.AdapterLayers.Single(l => l.Path == "v").Layer).Block("default").detach(),
        };
        Safetensors.Write(Path.Combine(folder.Path, PeftAdapterFormat.WeightsFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(Path.Combine(folder.Path, AdapterConfig.FileName),
            $"{{\"peft_type\": \"BONE\", \"r\": 4, \"init_weights\": {initWeights}, \"target_modules\": [\"q\", \"v\"], \"bias\": \"none\"}}");

        var (root2, core2) = Model(variant, seed: 2);
        core2.LoadAdapters(folder.Path);
        var x = randn(5, 16);
        TensorAssert.Equal(root.forward(x), root2.forward(x));
    }

    [Theory]
    [InlineData("{\"peft_type\": \"MISS\", \"r\": 4, \"init_weights\": \"mini\", \"mini_r\": 4}", "\"mini\"")]
    [InlineData("{\"peft_type\": \"MISS\", \"r\": 4.5}", "'r'")]
    [InlineData("{\"peft_type\": \"MISS\", \"r\": 4, \"init_weights\": 3}", "'init_weights'")]
    public void ConfigsPeftDslCannotHonourAreRefusedNamingTheFile(string json, string message)
    {
        using var folder = new TempFolder();
        string path = Path.Combine(folder.Path, AdapterConfig.FileName);
        File.WriteAllText(path, json);
        var config = AdapterConfig.Read(path);
        var ex = Assert.Throws<InvalidDataException>(() => AdapterConfig.SettingsFor(config, "q", path));
        Assert.StartsWith(path, ex.Message);
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void PeftsDefaultsApplyToFieldsAConfigLeavesOut()
    {
        using var folder = new TempFolder();
        string path = Path.Combine(folder.Path, AdapterConfig.FileName);
        File.WriteAllText(path, "{\"peft_type\": \"MISS\", \"init_weights\": false}");
        Assert.Equal(new BoneOptions { Block = 64, Variant = BoneVariant.Bone }, AdapterConfig.SettingsFor(AdapterConfig.Read(path), "q", path));
    }
}
