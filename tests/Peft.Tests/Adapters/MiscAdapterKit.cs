using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime;
using Peft.Runtime.IO;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

/// <summary>Shared steps of the adapter tests: a short training run and the PEFT-format round trip.</summary>
internal static class MiscAdapterKit
{
    /// <summary>
    /// Trains the layer's trainable parameters with Adam on y = target(x) for <paramref name="steps"/> steps and
    /// returns (first loss, last loss).
    /// </summary>
    public static (double First, double Last) Train(nn.Module<Tensor, Tensor> layer, Func<Tensor, Tensor> target, int steps = 300, double lr = 1e-2, long inFeatures = 16)
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        var x = randn(64, inFeatures);
        Tensor y;
        using (no_grad()) y = target(x);
        var trainable = layer.parameters().Where(p => p.requires_grad).ToList();
        var optimizer = optim.Adam(trainable, lr);
        double first = double.NaN, last = double.NaN;
        layer.train();
        for (int step = 0; step < steps; step++)
        {
            using var stepScope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = nn.functional.mse_loss(layer.forward(x), y);
            loss.backward();
            optimizer.step();
            double value = loss.item<float>();
            if (step == 0) first = value;
            last = value;
        }
        layer.eval();
        return (first, last);
    }

    /// <summary>An attached model core over a hand-built root (what generated code does for a [PeftModel] class).</summary>
    public static PeftModelCore Attach(nn.Module root) =>
        PeftModelCore.Attach(root, new PeftModelInfo("T", Array.Empty<AdapterSiteInfo>(), Array.Empty<string>(), Array.Empty<PeftModelInfo>()));

    /// <summary>The safetensors header of a saved adapter as key → shape.</summary>
    public static Dictionary<string, long[]> Keys(string directory)
    {
        var header = Safetensors.ReadHeader(Path.Combine(directory, PeftAdapterFormat.WeightsFileName));
        Assert.Equal("pt", header.Metadata["format"]);
        return header.Entries.ToDictionary(e => e.Name, e => e.Shape);
    }

    /// <summary>The saved <c>adapter_config.json</c>.</summary>
    public static JsonObject Config(string directory) =>
        (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(directory, AdapterConfig.FileName)))!;

    /// <summary>Every parameter and buffer of the module, cloned, by name.</summary>
    public static Dictionary<string, Tensor> Snapshot(nn.Module module) =>
        module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());

    /// <summary>Sets every trainable parameter of <paramref name="module"/> to random values, so an adapter is not at its init.</summary>
    public static void Randomize(nn.Module module, int seed)
    {
        manual_seed(seed);
        using (no_grad())
            foreach (var p in module.parameters().Where(p => p.requires_grad)) p.normal_(0, 0.5);
    }

    /// <summary>
    /// Copies every frozen base-layer parameter of <paramref name="from"/> into <paramref name="to"/> (same structure), so
    /// two models differ in their adapters alone; tests run in parallel, so seeding the global generator cannot ensure it.
    /// </summary>
    public static void CopyBase(nn.Module from, nn.Module to)
    {
        var target = to.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
            foreach (var (name, p) in from.named_parameters())
                if (name.Contains("base_layer.", StringComparison.Ordinal)) target[name].copy_(p);
    }

    /// <summary>
    /// For a method saved as exactly a LoRA, on root = (q: Linear(16, 8) rank 4, v: Linear(12, 20) rank 2): the file in
    /// <paramref name="directory"/> holds PEFT's four LoRA keys with their shapes and <c>peft_type: "LORA"</c>, and plain
    /// <c>[LoRA]</c> layers on root's base weights load it and give root's eval outputs. Returns the config.
    /// </summary>
    public static JsonObject AssertPlainLoRAOfQV(string directory, nn.Module<Tensor, Tensor> q, nn.Module<Tensor, Tensor> v, nn.Module root)
    {
        var keys = Keys(directory);
        Assert.Equal(new[] { "base_model.model.q.lora_A.weight", "base_model.model.q.lora_B.weight", "base_model.model.v.lora_A.weight", "base_model.model.v.lora_B.weight" },
            keys.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray());
        Assert.Equal(new long[] { 4, 16 }, keys["base_model.model.q.lora_A.weight"]);
        Assert.Equal(new long[] { 20, 2 }, keys["base_model.model.v.lora_B.weight"]);
        var config = Config(directory);
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
        Assert.Equal(2, config["r"]!.GetValue<int>());
        Assert.Equal(4, config["rank_pattern"]!["q"]!.GetValue<int>());

        var lq = Runtime.Adapters.LoRA.Wrap(nn.Linear(16, 8), "T.q", "default", new Runtime.Adapters.LoRAOptions { Rank = 4 });
        var lv = Runtime.Adapters.LoRA.Wrap(nn.Linear(12, 20), "T.v", "default", new Runtime.Adapters.LoRAOptions { Rank = 2 });
        var lora = nn.Sequential(("q", lq), ("v", lv));
        CopyBase(root, lora);
        Attach(lora).LoadAdapters(directory);
        q.eval(); v.eval(); lq.eval(); lv.eval();
        var xq = randn(3, 16);
        var xv = randn(3, 12);
        TensorAssert.Close(q.forward(xq), lq.forward(xq), 1e-5, 1e-6);
        TensorAssert.Close(v.forward(xv), lv.forward(xv), 1e-5, 1e-6);
        return config;
    }

    /// <summary>The JSON array <paramref name="node"/> as strings.</summary>
    public static string[] Strings(JsonNode? node) => ((JsonArray)node!).Select(n => n!.GetValue<string>()).ToArray();

    /// <summary>The parameter of a module by its full name.</summary>
    public static Parameter Param(nn.Module module, string name) => module.named_parameters().Single(p => p.name == name).parameter;
}
