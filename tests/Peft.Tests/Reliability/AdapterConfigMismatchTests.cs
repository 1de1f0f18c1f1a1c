using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using Peft.Tests.EndToEnd;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Reliability;

/// <summary>
/// Loading an adapter whose config does not fit the model changes nothing (weights and settings) and says which field
/// or key and which values; a config with fields this version does not know loads (forward compatibility); one
/// without the required <c>peft_type</c> fails clearly.
/// </summary>
public sealed class AdapterConfigMismatchTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-config-" + Guid.NewGuid().ToString("N"));
    private readonly DisposeScope _scope = NewDisposeScope();

    public void Dispose()
    {
        _scope.Dispose();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private string ConfigPath => Path.Combine(_dir, AdapterConfig.FileName);
    private string WeightsPath => Path.Combine(_dir, PeftAdapterFormat.WeightsFileName);

    private static Block Trained(int seed)
    {
        manual_seed(seed);
        var block = new Block();
        using (no_grad())
            foreach (var (_, layer) in block.AdapterLayers)
                ((LoRALinear)layer).LoraB("default").normal_(0, 0.1);
        block.eval();
        return block;
    }

    /// <summary>Saves a trained Block's adapter, then lets <paramref name="edit"/> change its config.</summary>
    private void SaveThenEdit(Action<JsonObject> edit)
    {
        Trained(1).SaveAdapters(_dir);
        var config = JsonNode.Parse(File.ReadAllText(ConfigPath))!.AsObject();
        edit(config);
        File.WriteAllText(ConfigPath, config.ToJsonString());
    }

    /// <summary>Loading must throw <typeparamref name="T"/> and leave every tensor, setting and output as it was.</summary>
    private static T LoadFailsAndChangesNothing<T>(string dir) where T : Exception
    {
        var target = Trained(2);
        var x = randn(3, 32);
        var before = target.forward(x).detach().clone();
        var snapshot = target.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());
        var options = target.AdapterLayers.Select(l => ((LoRALinear)l.Layer).Options("default")).ToList();

        var ex = Assert.Throws<T>(() => target.LoadAdapters(dir));

        foreach (var (name, value) in target.state_dict())
            Assert.True(TensorAssert.Same(snapshot[name], value), $"{name} changed");
        Assert.Equal(options, target.AdapterLayers.Select(l => ((LoRALinear)l.Layer).Options("default")));
        TensorAssert.Equal(before, target.forward(x));
        return ex;
    }

    [Theory]
    [InlineData("MISS")]
    [InlineData("ADALORA")]
    public void AWrongPeftTypeNamesTheFileAndBothTypes(string type)
    {
        SaveThenEdit(c => c["peft_type"] = type);
        var ex = LoadFailsAndChangesNothing<InvalidDataException>(_dir);
        Assert.Contains(ConfigPath, ex.Message);
        Assert.Contains($"peft_type is '{type}'", ex.Message);
        Assert.Contains("is LORA", ex.Message);
    }

    [Fact]
    public void ADoRAConfigOnALoRAModelIsRefused()
    {
        SaveThenEdit(c => c["use_dora"] = true);
        var ex = LoadFailsAndChangesNothing<InvalidDataException>(_dir);
        Assert.Contains(ConfigPath, ex.Message);
        Assert.Contains("layer 'q'", ex.Message);
        Assert.Contains("is a LoRA adapter; the file describes a DoRA adapter", ex.Message);
    }

    [Fact]
    public void ADoRAFileOnALoRAModelIsNamedAsDoRA()
    {
        // A whole DoRA adapter (config and magnitude vectors): named as what it is, not as an unknown key.
        SaveThenEdit(c => c["use_dora"] = true);
        using (var file = Safetensors.Read(WeightsPath))
        {
            var tensors = file.Tensors.ToDictionary(t => t.Key, t => t.Value);
            tensors["base_model.model.q.lora_magnitude_vector"] = ones(32);
            tensors["base_model.model.v.lora_magnitude_vector"] = ones(32);
            Safetensors.Write(WeightsPath, tensors, file.Metadata);
        }
        var ex = LoadFailsAndChangesNothing<InvalidDataException>(_dir);
        Assert.Contains(ConfigPath, ex.Message);
        Assert.Contains("the file describes a DoRA adapter", ex.Message);
    }

    [Fact]
    public void AConfigRankThatDisagreesWithTheModelNamesLayerAndBothRanks()
    {
        // The tensors still have rank 4, as the model; only the config says 8.
        SaveThenEdit(c => c["r"] = 8);
        var ex = LoadFailsAndChangesNothing<InvalidDataException>(_dir);
        Assert.Contains(ConfigPath, ex.Message);
        Assert.Contains("has rank 4; the file has rank 8", ex.Message);
    }

    [Fact]
    public void ARankPatternOnTheSecondLayerRollsBackTheFirstLayersSettings()
    {
        // q accepts the new alpha; v's rank pattern refuses: q's alpha must be rolled back (checked in LoadFailsAndChangesNothing).
        SaveThenEdit(c =>
        {
            c["lora_alpha"] = 32;
            c["rank_pattern"] = new JsonObject { ["v"] = 2 };
        });
        var ex = LoadFailsAndChangesNothing<InvalidDataException>(_dir);
        Assert.Contains("layer 'v'", ex.Message);
        Assert.Contains("has rank 4; the file has rank 2", ex.Message);
    }

    [Fact]
    public void TensorsOfTheSecondLayerWithAnotherRankNameKeyAndShapes()
    {
        // The config agrees with the model; v's tensors do not. q's tensors are fine but must not be assigned either.
        Trained(1).SaveAdapters(_dir);
        using (var file = Safetensors.Read(WeightsPath))
        {
            var tensors = file.Tensors.ToDictionary(t => t.Key, t => t.Value);
            tensors["base_model.model.v.lora_B.weight"] = zeros(32, 2);
            Safetensors.Write(WeightsPath, tensors, file.Metadata);
        }
        var ex = LoadFailsAndChangesNothing<InvalidDataException>(_dir);
        Assert.Contains(WeightsPath, ex.Message);
        Assert.Contains("base_model.model.v.lora_B.weight", ex.Message);
        Assert.Contains("[32, 2]", ex.Message);
        Assert.Contains("[32, 4]", ex.Message);
    }

    [Fact]
    public void MissingPeftTypeFailsClearly()
    {
        SaveThenEdit(c => c.Remove("peft_type"));
        var ex = LoadFailsAndChangesNothing<InvalidDataException>(_dir);
        Assert.Equal($"{ConfigPath}: the required field 'peft_type' is missing", ex.Message);
    }

    [Fact]
    public void APeftTypeThatIsNoStringFailsClearly()
    {
        SaveThenEdit(c => c["peft_type"] = 3);
        var ex = LoadFailsAndChangesNothing<InvalidDataException>(_dir);
        Assert.Contains(ConfigPath, ex.Message);
        Assert.Contains("'peft_type' must be a string", ex.Message);
    }

    [Fact]
    public void ANumberFieldOfTheWrongTypeNamesTheField()
    {
        SaveThenEdit(c => c["r"] = "four");
        var ex = LoadFailsAndChangesNothing<InvalidDataException>(_dir);
        Assert.Contains(ConfigPath, ex.Message);
        Assert.Contains("field 'r' must be a number", ex.Message);
    }

    [Fact]
    public void AConfigThatIsNoJsonNamesTheFile()
    {
        Trained(1).SaveAdapters(_dir);
        File.WriteAllText(ConfigPath, "{\"peft_type\": \"LORA\", \"r\": ");
        var ex = LoadFailsAndChangesNothing<InvalidDataException>(_dir);
        Assert.StartsWith($"{ConfigPath}: not valid JSON", ex.Message);
    }

    [Fact]
    public void UnknownFieldsAreIgnored()
    {
        // Fields a later PEFT may write (and some real ones this library does not use): all ignored on load.
        SaveThenEdit(c =>
        {
            c["a_field_from_the_future"] = new JsonObject { ["nested"] = new JsonArray(1, 2, 3) };
            c["layer_replication"] = null;
            c["megatron_config"] = null;
            c["loftq_config"] = new JsonObject();
            c["eva_config"] = null;
            c["corda_config"] = null;
            c["exclude_modules"] = null;
            c["lora_bias"] = false;
            c["trainable_token_indices"] = null;
            c["revision"] = "main";
            c["auto_mapping"] = new JsonObject { ["base_model_class"] = "Block", ["parent_library"] = "PeftDsl" };
        });
        var source = Trained(1);
        var target = Trained(2);
        var x = randn(3, 32);
        Assert.False(TensorAssert.Same(source.forward(x), target.forward(x)));
        target.LoadAdapters(_dir);
        // Same base (same seed before the adapters differ) is not given: compare the adapter and head tensors.
        var expected = source.state_dict();
        foreach (var (name, value) in target.state_dict().Where(p => p.Key.Contains("lora_") || p.Key.StartsWith("head.")))
            TensorAssert.Equal(expected[name], value);
    }
}
