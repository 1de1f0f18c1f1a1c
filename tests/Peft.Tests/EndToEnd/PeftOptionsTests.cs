using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using Peft.Tests.SharedData;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.EndToEnd;

/// <summary>
/// What PEFT's configs carry beyond the tensors: a value that differs from the declaration (the file wins, with a
/// warning naming the layer and both values; shapes are refused), MiSS's <c>miss_dropout</c>, LoKr's
/// <c>rank_dropout_scale</c>, VeRA's <c>save_projection: false</c>, and fields of later PEFT versions.
/// </summary>
public sealed class PeftOptionsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-options-" + Guid.NewGuid().ToString("N"));
    private readonly List<PeftWarning> _warnings = new();

    public PeftOptionsTests() => PeftWarnings.Raised += Collect;

    public void Dispose()
    {
        PeftWarnings.Raised -= Collect;
        if (Directory.Exists(_dir)) Directory.Delete(_dir, true);
    }

    private void Collect(PeftWarning warning)
    {
        if (!warning.Source.StartsWith(_dir, StringComparison.Ordinal)) return; // other tests' loads run in parallel
        lock (_warnings) _warnings.Add(warning);
    }

    private string ConfigPath => Path.Combine(_dir, AdapterConfig.FileName);

    private void EditConfig(Action<JsonObject> edit)
    {
        var config = AdapterConfig.Read(ConfigPath);
        edit(config);
        File.WriteAllText(ConfigPath, AdapterConfig.Serialize(config));
    }

    private static Dictionary<string, T> Layers<T>(IPeftModel model) => model.AdapterLayers.ToDictionary(l => l.Path, l => (T)l.Layer);

    [Fact]
    public void AFileAlphaThatDiffersFromTheDeclaredOneWinsWithAWarningNamingLayerAndBothValues()
    {
        var source = new WrittenLoRA(); // declares Alpha = 8 on q, v, f
        PeftWrittenTests.Randomise(source, seed: 3);
        source.SaveAdapters(_dir);
        EditConfig(c =>
        {
            c["lora_alpha"] = 16;
            c["alpha_pattern"] = new JsonObject { ["v"] = 2 };
        });

        var model = new WrittenLoRA();
        model.LoadAdapters(_dir);
        var layers = Layers<LoRALinear>(model);
        Assert.Equal(16, layers["q"].Options("default").Alpha);
        Assert.Equal(2, layers["v"].Options("default").Alpha);
        Assert.Equal(16.0 / 4, layers["f"].Options("default").Scaling);

        var messages = _warnings.Select(w => w.Message).OrderBy(m => m, StringComparer.Ordinal).ToList();
        Assert.Equal(3, messages.Count);
        Assert.Contains(messages, m => m.Contains("layer 'q', adapter 'default': the file's lora_alpha = 16 replaces the adapter's 8"));
        Assert.Contains(messages, m => m.Contains("layer 'v', adapter 'default': the file's lora_alpha = 2 replaces the adapter's 8"));
        Assert.Contains(messages, m => m.Contains("layer 'f', adapter 'default': the file's lora_alpha = 16 replaces the adapter's 8"));
        Assert.All(messages, m => Assert.StartsWith(ConfigPath, m));

        // Saved again, the file's values are what the model holds: PEFT's config comes back.
        string again = Path.Combine(_dir, "again");
        model.SaveAdapters(again);
        var config = AdapterConfig.Read(Path.Combine(again, AdapterConfig.FileName));
        Assert.Equal("16", config["lora_alpha"]!.ToJsonString());
        Assert.Equal("{\"v\":2}", config["alpha_pattern"]!.ToJsonString());
    }

    [Fact]
    public void ASharedFieldThatDiffersWinsWithAWarning()
    {
        new WrittenLoRA().SaveAdapters(_dir);
        EditConfig(c => c["lora_dropout"] = 0.1);
        var model = new WrittenLoRA();
        model.LoadAdapters(_dir);
        Assert.All(Layers<LoRALinear>(model).Values, l => Assert.Equal(0.1, l.Options("default").Dropout));
        Assert.Equal(3, _warnings.Count);
        Assert.Contains(_warnings, w => w.Message.Contains("layer 'q', adapter 'default': the file's lora_dropout = 0.1 replaces the adapter's 0.0"));
    }

    [Fact]
    public void AFileThatMatchesTheDeclarationLoadsWithoutAWarning()
    {
        new WrittenLoKr().SaveAdapters(_dir);
        new WrittenLoKr().LoadAdapters(_dir);
        Assert.Empty(_warnings);
    }

    [Fact]
    public void ARankThatDiffersIsStillRefusedAndWarnsNothing()
    {
        new WrittenLoRA().SaveAdapters(_dir);
        EditConfig(c =>
        {
            c["lora_alpha"] = 16;
            c["rank_pattern"] = new JsonObject { ["f"] = 2 };
        });
        var model = new WrittenLoRA();
        var ex = Assert.Throws<InvalidDataException>(() => model.LoadAdapters(_dir));
        Assert.Contains("layer 'f'", ex.Message);
        Assert.Contains("has rank 4; the file has rank 2", ex.Message);
        Assert.Equal(8, Layers<LoRALinear>(model)["q"].Options("default").Alpha); // nothing changed
        Assert.Empty(_warnings);
    }

    [Fact]
    public void MissDropoutIsDeclaredSavedAndRead()
    {
        var model = new MissWithDropout();
        model.SaveAdapters(_dir);
        var config = AdapterConfig.Read(ConfigPath);
        Assert.Equal("0.25", config["miss_dropout"]!.ToJsonString());

        var plain = new WrittenMiss(); // declares no dropout: the file's 0.25 wins, with a warning per layer
        plain.LoadAdapters(_dir);
        Assert.All(Layers<BoneLinear>(plain).Values, l => Assert.Equal(0.25, l.Options("default").Dropout));
        Assert.Contains(_warnings, w => w.Message.Contains("layer 'v', adapter 'default': the file's miss_dropout = 0.25 replaces the adapter's 0.0"));

        EditConfig(c => c["miss_dropout"] = 1.5);
        var ex = Assert.Throws<InvalidDataException>(() => new WrittenMiss().LoadAdapters(_dir));
        Assert.Contains("miss_dropout", ex.Message);
        Assert.Contains(ConfigPath, ex.Message);
    }

    [Fact]
    public void MissDropoutDropsTheFoldedInputInTrainingAsPeftDoes()
    {
        var bone = new BoneLinear("test.q", nn.Linear(16, 24), "default", new BoneOptions { Block = 4, Dropout = 0.25 });
        using (no_grad()) bone.Block("default").copy_(randn(4, 24));
        var x = randn(5, 16);
        bone.train();
        manual_seed(42);
        var y = bone.forward(x);
        manual_seed(42);
        var dropped = nn.functional.dropout(x, 0.25, training: true);
        var expected = bone.BaseLayer.forward(x) + dropped.reshape(5, 4, 4).sum(-2).matmul(bone.Block("default"));
        TensorAssert.Close(expected, y, rtol: 1e-5, atol: 1e-6);

        bone.eval(); // no dropout in eval: the fused path, the plain formula
        var evalExpected = bone.BaseLayer.forward(x) + x.reshape(5, 4, 4).sum(-2).matmul(bone.Block("default"));
        TensorAssert.Close(evalExpected, bone.forward(x), rtol: 1e-5, atol: 1e-6);
    }

    [Fact]
    public void LoKrRankDropoutScaleIsDeclaredSavedAndRead()
    {
        new LoKrScaledRankDropout().SaveAdapters(_dir);
        var config = AdapterConfig.Read(ConfigPath);
        Assert.Equal("true", config["rank_dropout_scale"]!.ToJsonString());
        Assert.Equal("0.5", config["rank_dropout"]!.ToJsonString());

        var model = new LoKrScaledRankDropout();
        model.LoadAdapters(_dir);
        Assert.All(Layers<LoKrLinear>(model).Values, l => Assert.True(l.Options("default").RankDropoutScale));
        Assert.Empty(_warnings);

        var plain = new WrittenLoKr(); // declares neither: the file's values win
        plain.LoadAdapters(_dir);
        Assert.All(Layers<LoKrLinear>(plain).Values, l => Assert.True(l.Options("default").RankDropoutScale));
        Assert.Contains(_warnings, w => w.Message.Contains("layer 'q', adapter 'default': the file's rank_dropout_scale = true replaces the adapter's false"));

        EditConfig(c => c["rank_dropout_scale"] = "yes");
        var ex = Assert.Throws<InvalidDataException>(() => new WrittenLoKr().LoadAdapters(_dir));
        Assert.Contains("rank_dropout_scale", ex.Message);
    }

    [Fact]
    public void LoKrScaledRankDropoutDividesTheKeptRowsByTheFractionKept()
    {
        var layer = new LoKrLinear("test.q", nn.Linear(16, 24), "default", new LoKrOptions { Rank = 4, Alpha = 8, RankDropout = 0.5, RankDropoutScale = true });
        using (no_grad()) foreach (var (_, p) in layer.AdapterParameters("default")) p.copy_(randn(p.shape));
        var x = randn(3, 16);
        var delta = layer.DeltaWeight("default");
        layer.train();
        manual_seed(5);
        var y = layer.forward(x);
        manual_seed(5);
        var keep = rand(24).gt(0.5).to(float32);
        keep = keep.div(keep.mean().clamp_min(1e-12));
        var expected = layer.BaseLayer.forward(x) + nn.functional.linear(x, delta.mul(keep.unsqueeze(1)));
        TensorAssert.Close(expected, y, rtol: 1e-5, atol: 1e-5);
    }

    [Fact]
    public void VeRAWithoutSavedProjectionsRoundTrips()
    {
        var model = new VeRAWithoutProjections();
        PeftWrittenTests.Randomise(model, seed: 9);
        model.SaveAdapters(_dir);
        Assert.Equal("false", AdapterConfig.Read(ConfigPath)["save_projection"]!.ToJsonString());
        using (var file = Safetensors.Read(Path.Combine(_dir, PeftAdapterFormat.WeightsFileName)))
        {
            Assert.DoesNotContain(file.Tensors.Keys, k => k.StartsWith("base_model.vera_", StringComparison.Ordinal));
            Assert.Equal(6, file.Tensors.Count); // λ_b and λ_d of q, v, f
        }

        var x = randn(3, 16);
        model.eval();
        var again = new VeRAWithoutProjections();
        foreach (var (name, p) in model.named_parameters().Where(p => p.name.Contains("base_layer") || p.name.StartsWith("head.", StringComparison.Ordinal)))
            using (no_grad()) again.named_parameters().First(q => q.name == name).parameter.copy_(p);
        again.LoadAdapters(_dir);
        again.eval();
        using var _ = no_grad();
        TensorAssert.Equal(model.forward(x), again.forward(x));
        Assert.Empty(_warnings);
    }

    [SharedDataFact(PeftWrittenTests.Folder)]
    public void PeftsVeRAFileWithoutItsProjectionsGivesPeftsOutputs()
    {
        // What PEFT writes with save_projection: false is its VeRA file less base_model.vera_A / vera_B: both sides
        // draw the projections again from projection_prng_key.
        // With PEFT_VERA_NOPROJ=DIR, DIR is such a file written by real PEFT (tools/peft-interop/README.md says how).
        string? real = Environment.GetEnvironmentVariable("PEFT_VERA_NOPROJ");
        string fixture = string.IsNullOrEmpty(real) ? PeftWrittenTests.CaseFolder("vera") : real;
        Directory.CreateDirectory(_dir);
        if (!string.IsNullOrEmpty(real))
            foreach (var name in new[] { PeftAdapterFormat.WeightsFileName, AdapterConfig.FileName })
                File.Copy(Path.Combine(real, name), Path.Combine(_dir, name));
        else
        using (var file = Safetensors.Read(Path.Combine(fixture, PeftAdapterFormat.WeightsFileName)))
            Safetensors.Write(Path.Combine(_dir, PeftAdapterFormat.WeightsFileName),
                file.Tensors.Where(t => !t.Key.StartsWith("base_model.vera_", StringComparison.Ordinal)), file.Metadata);
        if (string.IsNullOrEmpty(real))
        {
            File.Copy(Path.Combine(fixture, AdapterConfig.FileName), ConfigPath);
            EditConfig(c => c["save_projection"] = false);
        }
        Assert.Equal("false", AdapterConfig.Read(ConfigPath)["save_projection"]!.ToJsonString());

        var model = new WrittenVeRA();
        PeftWrittenTests.LoadBase(model, Path.Combine(fixture, "base.safetensors"));
        model.LoadAdapters(_dir);
        model.eval();
        using var reference = Safetensors.Read(Path.Combine(fixture, "reference.safetensors"));
        using var _ = no_grad();
        TensorAssert.Close(reference.Tensors["y"], model.forward(reference.Tensors["x"]), rtol: 1e-5, atol: 1e-5);
        Assert.Empty(_warnings);
    }

    [Fact]
    public void VeRAWithoutProjectionsAndAnotherSeedIsRefusedNamingTheSeed()
    {
        new VeRAWithoutProjections().SaveAdapters(_dir);
        EditConfig(c => c["projection_prng_key"] = 5);
        var ex = Assert.Throws<InvalidDataException>(() => new VeRAWithoutProjections().LoadAdapters(_dir));
        Assert.Contains(ConfigPath, ex.Message);
        Assert.Contains("projection_prng_key 5", ex.Message);
    }

    [SharedDataFact(PeftWrittenTests.Folder)]
    public void FieldsOfLaterPeftVersionsAreIgnored()
    {
        string fixture = PeftWrittenTests.CaseFolder("lora");
        Directory.CreateDirectory(_dir);
        File.Copy(Path.Combine(fixture, PeftAdapterFormat.WeightsFileName), Path.Combine(_dir, PeftAdapterFormat.WeightsFileName));
        File.Copy(Path.Combine(fixture, AdapterConfig.FileName), ConfigPath);
        EditConfig(c =>
        {
            c["peft_version"] = "0.99.0";
            c["lora_future_option"] = new JsonObject { ["mode"] = "fast", ["levels"] = new JsonArray(1, 2) };
            c["use_something_new"] = true;
        });
        var model = new WrittenLoRA();
        PeftWrittenTests.LoadBase(model, Path.Combine(fixture, "base.safetensors"));
        model.LoadAdapters(_dir);
        model.eval();
        using var reference = Safetensors.Read(Path.Combine(fixture, "reference.safetensors"));
        using var _ = no_grad();
        TensorAssert.Close(reference.Tensors["y"], model.forward(reference.Tensors["x"]), rtol: 1e-5, atol: 1e-5);
    }
}
