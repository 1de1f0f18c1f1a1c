using System;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using Peft.Samples.Llama;
using Peft.Tests.IO;
using Peft.Tests.SharedData;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Llama;

/// <summary>
/// The sample's C# Llama on a real pre-trained checkpoint (shared/models/stories260K) reproduces the golden values two
/// independent reference forwards computed (expected.json); skipped where the folder is absent.
/// </summary>
public sealed class LlamaGoldenTests
{
    private const string Folder = "models/stories260K";

    private static (LlamaForCausalLM Model, LlamaText Text, JsonNode Expected) Load()
    {
        string dir = SharedFolder.Require(Folder);
        var model = LlamaForCausalLM.FromPretrained(dir);
        return (model, LlamaText.Load(dir), JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")))!);
    }

    private static int[] Ints(JsonNode? node) => node!.AsArray().Select(n => n!.GetValue<int>()).ToArray();

    [SharedDataFact(Folder)]
    public void ParameterPathsAreTheCheckpointsKeysAndLoRASitsOnQueryAndValue()
    {
        var (model, _, _) = Load();
        var keys = Safetensors.ReadHeader(Path.Combine(SharedFolder.Require(Folder), "model.safetensors")).Entries.Select(e => e.Name).ToHashSet();
        var baseNames = model.named_parameters().Select(p => BaseWeights.WithoutBaseLayer(p.name)).Where(n => !n.Contains("lora_")).Distinct().ToList();
        Assert.Equal(keys.Order(), baseNames.Where(n => n != "lm_head.weight").Order());
        Assert.Equal(Enumerable.Range(0, 5).SelectMany(i => new[] { $"model.layers.{i}.self_attn.q_proj", $"model.layers.{i}.self_attn.v_proj" }),
            model.AdapterLayers.Select(l => l.Path));
        Assert.True(model.AdapterLayers.All(l => l.Layer is LoRALinear));
        Assert.Equal(5 * (8 * 64 + 64 * 8 + 8 * 64 + 32 * 8), model.TrainableParameterCount);
    }

    [SharedDataFact(Folder)]
    public void TokenizerGivesTheReferencePromptIds()
    {
        var (_, text, expected) = Load();
        Assert.Equal(Ints(expected["prompt_ids_with_bos"]), text.Encode(expected["prompt"]!.GetValue<string>()));
    }

    [SharedDataFact(Folder)]
    public void GreedyContinuationMatchesExactly()
    {
        var (model, text, expected) = Load();
        var prompt = Ints(expected["prompt_ids_with_bos"]);
        var continuation = LlamaEval.Greedy(model, prompt, 30);
        Assert.Equal(Ints(expected["greedy_next_30_ids"]), continuation);
        Assert.Equal(expected["greedy_text"]!.GetValue<string>(), text.Decode(prompt.Concat(continuation)));
    }

    [SharedDataFact(Folder)]
    public void TopFiveLogitsAfterBosWithin1e3()
    {
        var (model, _, expected) = Load();
        using var _ = no_grad();
        var logits = model.forward(tensor(new long[] { 1 }).unsqueeze(0))[0, 0];
        var (values, indices) = logits.topk(5);
        Assert.Equal(Ints(expected["pos0_after_bos_top5_ids"]), indices.data<long>().Select(i => (int)i).ToArray());
        var want = expected["pos0_after_bos_top5_logits"]!.AsArray().Select(n => n!.GetValue<double>()).ToArray();
        var got = values.data<float>().ToArray();
        for (int i = 0; i < 5; i++) Assert.True(Math.Abs(want[i] - got[i]) < 1e-3, $"logit {i}: {got[i]}, expected {want[i]}");
    }

    [SharedDataFact(Folder)]
    public void InDomainAndOutOfDomainNllMatch()
    {
        var (model, text, expected) = Load();
        var inDomain = expected["mean_nll_in_domain"]!;
        var ids = text.Encode(inDomain["text"]!.GetValue<string>());
        Assert.Equal(inDomain["tokens_incl_bos"]!.GetValue<int>(), ids.Length);
        double nll = LlamaEval.MeanNll(model, ids);
        Assert.True(Math.Abs(nll - inDomain["nats_per_token"]!.GetValue<double>()) < 1e-3, $"in-domain NLL {nll}");
        var outDomain = expected["mean_nll_out_of_domain"]!;
        double ood = LlamaEval.MeanNll(model, text.Encode(outDomain["text"]!.GetValue<string>()));
        Assert.True(Math.Abs(ood - outDomain["nats_per_token"]!.GetValue<double>()) < 1e-3, $"out-of-domain NLL {ood}");
    }

    [SharedDataFact(Folder)]
    public void AdapterSavesInPeftsLlamaLayoutAndTheMergedExportReloads()
    {
        var (model, _, _) = Load();
        manual_seed(3);
        using (no_grad())
            foreach (var (_, layer) in model.AdapterLayers) ((LoRALinear)layer).LoraB("default").normal_(0, 0.05);
        var ids = tensor(new long[] { 1, 403, 407, 261, 378 }).unsqueeze(0);
        Tensor adapted;
        using (no_grad()) adapted = model.forward(ids);

        using var dir = new TempFolder();
        string adapterDir = Path.Combine(dir.Path, "adapter"), merged = Path.Combine(dir.Path, "merged");
        model.SaveAdapters(adapterDir);
        var keys = Safetensors.ReadHeader(Path.Combine(adapterDir, "adapter_model.safetensors")).Entries.Select(e => e.Name).ToList();
        Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", keys);
        Assert.Contains("base_model.model.model.layers.4.self_attn.v_proj.lora_B.weight", keys);
        Assert.Equal(20, keys.Count);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapterDir, "adapter_config.json")))!;
        Assert.Equal(new[] { "q_proj", "v_proj" }, config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal("CAUSAL_LM", config["task_type"]!.GetValue<string>());
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());

        model.SaveMergedModel(merged);
        Assert.True(File.Exists(Path.Combine(merged, "config.json")));
        var header = Safetensors.ReadHeader(Path.Combine(merged, "model.safetensors"));
        Assert.Equal(47, header.Entries.Count);
        Assert.DoesNotContain(header.Entries, e => e.Name == "lm_head.weight");

        var reloaded = LlamaForCausalLM.FromPretrained(merged);
        reloaded.DisableAdapters();
        using (no_grad()) TensorAssert.Close(adapted, reloaded.forward(ids), rtol: 1e-4, atol: 1e-4);
        var plain = LlamaForCausalLM.FromPretrained(SharedFolder.Require(Folder));
        using (no_grad()) Assert.False(plain.forward(ids).allclose(adapted, 1e-3, 1e-3));
    }
}
