using System;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.EndToEnd;

/// <summary>
/// PEFT017 across classes: layers of one adapter name in different submodules must agree on what PEFT's
/// adapter_config.json holds once per adapter. The root refuses when it is built, in PEFT017's words, never first at save.
/// </summary>
public sealed class SharedConfigTests
{
    [Fact]
    public void DifferentDropoutsUnderOneNameAreRefusedWhenTheModelIsBuilt()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => new DropoutConflictModel());
        Assert.Equal(
            PeftMessages.Format(PeftMessages.SharedConfigMismatch, "mlp.fc", "default", "lora_dropout", "0.1", "0.0", "attn.q"),
            ex.Message);
    }

    [Fact]
    public void TwoMethodsUnderOneNameAreRefusedWhenTheModelIsBuilt()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => new MethodConflictModel());
        Assert.Equal(
            "mlp.fc: adapter 'default' has peft_type = \"MISS\" here but \"LORA\" at attn.q; PEFT's adapter_config.json holds one peft_type for every layer of an adapter, so give one of these layers another adapter Name",
            ex.Message);
    }

    [Fact]
    public void DifferentRanksUnderOneNameBuildAndSaveAsOneAdapter()
    {
        using var scope = NewDisposeScope();
        var model = new RankOnlyModel();
        Assert.Equal(new[] { "attn.q", "mlp.fc" }, model.AdapterLayers.Select(l => l.Path));
        string dir = Path.Combine(Path.GetTempPath(), "peft017-" + Guid.NewGuid().ToString("N"));
        try
        {
            model.SaveAdapters(dir);
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!;
            Assert.Equal(8, config["rank_pattern"]!["mlp.fc"]!.GetValue<int>());
            Assert.Equal(16, config["alpha_pattern"]!["mlp.fc"]!.GetValue<int>());
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void LoRAOnAttentionAndBoneOnTheMlpTrainTogetherUnderTwoNames()
    {
        using var scope = NewDisposeScope();
        var model = new NamedMethodsModel();
        Assert.Equal(new[] { "attn.q:default", "mlp.fc:mlp" }, model.AdapterLayers.Select(l => l.Path + ":" + string.Join(",", l.Layer.AdapterNames)));
        model.SetActiveAdapters("default", "mlp");
        Assert.Contains(model.named_parameters(), p => p.parameter.requires_grad && p.name.Contains("lora_A.default"));
        Assert.Contains(model.named_parameters(), p => p.parameter.requires_grad && p.name.Contains("miss_block.mlp"));
        string dir = Path.Combine(Path.GetTempPath(), "peft017-" + Guid.NewGuid().ToString("N"));
        try
        {
            model.SaveAdapters(dir);
            Assert.Contains("\"LORA\"", File.ReadAllText(Path.Combine(dir, "adapter_config.json")));
            Assert.Contains("\"MISS\"", File.ReadAllText(Path.Combine(dir, "mlp", "adapter_config.json")));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
