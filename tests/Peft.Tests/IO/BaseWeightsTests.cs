using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Peft;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Tests.IO;

/// <summary>An attention-like block: LoRA on <c>q_proj</c> (no bias), a plain <c>o_proj</c> with bias.</summary>
public sealed partial class BwAttention : Module<Tensor, Tensor>
{
    [LoRA(2, Alpha = 4)]
    private Module<Tensor, Tensor> q_proj = Linear(8, 8, hasBias: false);

    private Module<Tensor, Tensor> o_proj = Linear(8, 8);

    public BwAttention() : base(nameof(BwAttention)) => RegisterComponents();

    public override Tensor forward(Tensor x) => o_proj.forward(functional.gelu(q_proj.forward(x)));
}

public sealed class BwBody : Module<Tensor, Tensor>
{
    public Embedding embed_tokens = Embedding(16, 8);
    private readonly ModuleList<BwAttention> layers = new(new BwAttention(), new BwAttention());

    public BwBody() : base(nameof(BwBody)) => RegisterComponents();

    public override Tensor forward(Tensor ids)
    {
        Tensor x = embed_tokens.forward(ids);
        foreach (var layer in layers) x = x + layer.forward(x);
        return x;
    }
}

/// <summary>A causal-LM-shaped model: <c>model.*</c> and an <c>lm_head</c> tied to the embeddings, as Hugging Face's Llama.</summary>
[PeftModel]
public sealed partial class BwLm : Module<Tensor, Tensor>
{
    private readonly BwBody model = new();
    private readonly Linear lm_head = Linear(8, 16, hasBias: false);

    public BwLm(bool tied = true) : base(nameof(BwLm))
    {
        RegisterComponents();
        if (tied) lm_head.weight = model.embed_tokens.weight!;
    }

    public override Tensor forward(Tensor ids) => lm_head.forward(model.forward(ids));
}

public sealed class BaseWeightsTests
{
    private static readonly Tensor Ids = tensor(new long[] { 1, 5, 7, 3, 15, 0 }).reshape(2, 3);

    /// <summary>A checkpoint as Hugging Face writes one: the model's base tensors under plain names, tied head left out.</summary>
    private static Dictionary<string, Tensor> Checkpoint(BwLm source, ScalarType dtype = ScalarType.Float32) =>
        source.state_dict().Where(p => !p.Key.Contains("lora_") && p.Key != "lm_head.weight")
            .ToDictionary(p => BaseWeights.WithoutBaseLayer(p.Key), p => p.Value.detach().to(dtype).clone());

    private static Tensor Out(BwLm m)
    {
        using var _ = no_grad();
        return m.forward(Ids);
    }

    private static void RandomizeAdapters(BwLm m)
    {
        using var _ = no_grad();
        foreach (var (_, layer) in m.AdapterLayers) ((LoRALinear)layer).LoraB("default").normal_(0, 0.3);
    }

    [Fact]
    public void SingleFileLoadsIntoBaseLayersAndTiedHead()
    {
        using var dir = new TempFolder();
        manual_seed(1);
        var source = new BwLm();
        Safetensors.Write(dir.File("model.safetensors"), Checkpoint(source));
        var target = new BwLm();
        Assert.False(TensorAssert.Same(Out(source), Out(target)));

        target.LoadBaseWeights(dir.Path);

        TensorAssert.Equal(Out(source), Out(target));
        Assert.Contains(target.named_parameters(), p => p.name == "model.layers.0.q_proj.base_layer.weight");
        Assert.False(target.named_parameters().Single(p => p.name == "model.embed_tokens.weight").parameter.requires_grad);
    }

    [Theory]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    public void HalfPrecisionCheckpointsConvertToTheParameterDtype(ScalarType dtype)
    {
        using var dir = new TempFolder();
        manual_seed(2);
        var source = new BwLm();
        var checkpoint = Checkpoint(source, dtype);
        Safetensors.Write(dir.File("model.safetensors"), checkpoint);
        var target = new BwLm();
        target.LoadBaseWeights(dir.File("model.safetensors"));
        var loaded = target.state_dict()["model.layers.1.q_proj.base_layer.weight"];
        Assert.Equal(ScalarType.Float32, loaded.dtype);
        TensorAssert.Equal(checkpoint["model.layers.1.q_proj.weight"].to(ScalarType.Float32), loaded);
    }

    [Fact]
    public void ShardedCheckpointFollowsTheIndex()
    {
        using var dir = new TempFolder();
        manual_seed(3);
        var source = new BwLm();
        var all = Checkpoint(source).ToList();
        var first = all.Take(3).ToList();
        var second = all.Skip(3).ToList();
        Safetensors.Write(dir.File("model-00001-of-00002.safetensors"), first);
        Safetensors.Write(dir.File("model-00002-of-00002.safetensors"), second);
        var map = first.Select(p => $"\"{p.Key}\": \"model-00001-of-00002.safetensors\"")
            .Concat(second.Select(p => $"\"{p.Key}\": \"model-00002-of-00002.safetensors\""));
        File.WriteAllText(dir.File("model.safetensors.index.json"), "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {" + string.Join(", ", map) + "}}");

        var target = new BwLm();
        target.LoadBaseWeights(dir.Path);
        TensorAssert.Equal(Out(source), Out(target));
    }

    [Fact]
    public void AnIndexThatLeavesItsFolderIsRefused()
    {
        using var dir = new TempFolder();
        File.WriteAllText(dir.File("model.safetensors.index.json"), "{\"weight_map\": {\"a\": \"../x.safetensors\"}}");
        Assert.Throws<InvalidDataException>(() => new BwLm().LoadBaseWeights(dir.Path));
    }

    [Fact]
    public void OneErrorListsEveryMissingUnexpectedAndMisshapenKeyAndChangesNothing()
    {
        using var dir = new TempFolder();
        manual_seed(4);
        var checkpoint = Checkpoint(new BwLm());
        checkpoint.Remove("model.layers.0.o_proj.bias");
        checkpoint["model.layers.0.k_proj.weight"] = zeros(8, 8);
        checkpoint["model.layers.1.q_proj.weight"] = zeros(8, 4);
        Safetensors.Write(dir.File("model.safetensors"), checkpoint);
        var target = new BwLm();
        var before = target.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());

        var ex = Assert.Throws<BaseWeightsMismatchException>(() => target.LoadBaseWeights(dir.Path));

        Assert.Equal(new[] { "model.layers.0.o_proj.bias" }, ex.Missing);
        Assert.Equal(new[] { "model.layers.0.k_proj.weight" }, ex.Unexpected);
        Assert.Single(ex.Misshapen);
        Assert.Contains("model.layers.1.q_proj.weight: checkpoint [8, 4], model 'model.layers.1.q_proj.base_layer.weight' [8, 8]", ex.Message);
        Assert.Contains("1 missing", ex.Message);
        Assert.Contains("nothing was loaded", ex.Message);
        foreach (var (name, value) in target.state_dict()) TensorAssert.Equal(before[name], value);
    }

    [Fact]
    public void NonStrictKeepsWhatTheCheckpointLacksButStillChecksShapes()
    {
        using var dir = new TempFolder();
        manual_seed(5);
        var source = new BwLm();
        var checkpoint = Checkpoint(source);
        checkpoint.Remove("model.layers.0.o_proj.bias");
        checkpoint["extra.weight"] = zeros(2);
        Safetensors.Write(dir.File("model.safetensors"), checkpoint);
        var target = new BwLm();
        var keptBias = target.state_dict()["model.layers.0.o_proj.bias"].detach().clone();
        target.LoadBaseWeights(dir.Path, new BaseWeightOptions { Strict = false });
        TensorAssert.Equal(keptBias, target.state_dict()["model.layers.0.o_proj.bias"]);
        TensorAssert.Equal(checkpoint["model.layers.1.o_proj.bias"], target.state_dict()["model.layers.1.o_proj.bias"]);
    }

    [Fact]
    public void PrefixRenameAndAliasesMapForeignNames()
    {
        using var dir = new TempFolder();
        manual_seed(6);
        var source = new BwLm(tied: false);
        var checkpoint = source.state_dict().Where(p => !p.Key.Contains("lora_") && p.Key != "lm_head.weight")
            .ToDictionary(p => "transformer." + BaseWeights.WithoutBaseLayer(p.Key).Replace("model.embed_tokens", "wte"), p => p.Value.detach().clone());
        Safetensors.Write(dir.File("model.safetensors"), checkpoint);
        var target = new BwLm(tied: false);
        target.LoadBaseWeights(dir.Path, new BaseWeightOptions
        {
            Prefix = "transformer.",
            Rename = key => key.StartsWith("wte.") ? "model.embed_tokens." + key[4..] : key,
            Aliases = new Dictionary<string, string> { ["lm_head.weight"] = "model.embed_tokens.weight" },
        });
        TensorAssert.Equal(source.state_dict()["model.embed_tokens.weight"], target.state_dict()["lm_head.weight"]);
        TensorAssert.Equal(source.state_dict()["model.layers.1.o_proj.weight"], target.state_dict()["model.layers.1.o_proj.weight"]);

        var ex = Assert.Throws<BaseWeightsMismatchException>(() => new BwLm(tied: false).LoadBaseWeights(dir.Path));
        Assert.Contains("lm_head.weight", ex.Missing);
        Assert.Equal(checkpoint.Count, ex.Unexpected.Count);
    }

    [Fact]
    public void SaveMergedModelReloadsIntoTheAdaptedOutputsUnderTheCheckpointsNames()
    {
        using var dir = new TempFolder();
        string src = Path.Combine(dir.Path, "src"), merged = Path.Combine(dir.Path, "merged");
        Directory.CreateDirectory(src);
        manual_seed(7);
        var source = new BwLm();
        Safetensors.Write(Path.Combine(src, "model.safetensors"), Checkpoint(source, ScalarType.BFloat16));
        File.WriteAllText(Path.Combine(src, "config.json"), "{\"model_type\": \"tiny\"}");

        var tuned = new BwLm();
        tuned.LoadBaseWeights(src);
        RandomizeAdapters(tuned);
        Tensor adapted = Out(tuned);
        var before = tuned.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());

        tuned.SaveMergedModel(merged);

        foreach (var (name, value) in tuned.state_dict()) TensorAssert.Equal(before[name], value); // the model is unchanged
        Assert.Equal("{\"model_type\": \"tiny\"}", File.ReadAllText(Path.Combine(merged, "config.json")));
        var written = Safetensors.ReadHeader(Path.Combine(merged, "model.safetensors"));
        var original = Safetensors.ReadHeader(Path.Combine(src, "model.safetensors"));
        Assert.Equal(original.Entries.Select(e => e.Name).Order(), written.Entries.Select(e => e.Name).Order());
        Assert.All(written.Entries, e => Assert.Equal("BF16", e.DType));

        var reloaded = new BwLm();
        reloaded.LoadBaseWeights(merged);
        reloaded.DisableAdapters();
        TensorAssert.Close(adapted, Out(reloaded), rtol: 3e-2, atol: 3e-2); // BF16 storage

        string f32 = Path.Combine(dir.Path, "f32");
        manual_seed(8);
        var fresh = new BwLm();
        RandomizeAdapters(fresh);
        Tensor adaptedFresh = Out(fresh);
        fresh.SaveMergedModel(f32); // never loaded a checkpoint: its own names, the tied head once
        var f32Header = Safetensors.ReadHeader(Path.Combine(f32, "model.safetensors"));
        Assert.DoesNotContain(f32Header.Entries, e => e.Name == "lm_head.weight" || e.Name.Contains("lora_") || e.Name.Contains("base_layer"));
        var back = new BwLm();
        back.LoadBaseWeights(f32);
        back.DisableAdapters();
        TensorAssert.Close(adaptedFresh, Out(back), rtol: 1e-5, atol: 1e-5);
    }
}
