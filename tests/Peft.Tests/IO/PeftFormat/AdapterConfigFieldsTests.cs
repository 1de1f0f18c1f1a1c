using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using Xunit;

namespace Peft.Tests.IO;

/// <summary>
/// The table PEFT017 compares attributes by (src/Shared/AdapterConfigFields.cs) is what the runtime's settings write:
/// the same keys held once per adapter, the same per-layer keys, and the same JSON for each attribute's defaults.
/// </summary>
public sealed class AdapterConfigFieldsTests
{
    /// <summary>Each method's options record (its settings) at its attribute's defaults (DoRA: LoRA with use_dora).</summary>
    public static IEnumerable<object[]> DefaultSettings() => AdapterConfigFields.Methods.Select(m => new object[]
    {
        m.Name, (AdapterSettings)Activator.CreateInstance(typeof(LoRAOptions).Assembly.GetType("Peft.Runtime.Adapters." + m.Name + "Options", throwOnError: true)!)!,
    });

    [Theory]
    [MemberData(nameof(DefaultSettings))]
    public void TheTableHoldsWhatTheSettingsWrite(string methodName, AdapterSettings settings)
    {
        var method = AdapterConfigFields.Find(methodName)!;
        Assert.Equal(settings.PeftType, method.PeftType);
        var written = new JsonObject();
        settings.WriteSharedFields(written);
        Assert.Equal(written.Select(f => f.Key).OrderBy(k => k, StringComparer.Ordinal), method.Shared.Select(f => f.Key).OrderBy(k => k, StringComparer.Ordinal));
        Assert.Equal(settings.PerLayerFields.Keys.OrderBy(k => k, StringComparer.Ordinal), method.PerLayer.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var field in method.Shared)
            Assert.Equal(written[field.Key]!.ToJsonString(), field.DefaultJson);
    }

    [Fact]
    public void EveryMethodOfTheDslIsInTheTable() =>
        Assert.Equal(
            AdapterConfigFields.Methods.Select(m => m.Name).OrderBy(n => n, StringComparer.Ordinal),
            typeof(LoRAAttribute).Assembly.GetTypes().Where(t => t.Namespace == "Peft" && t.Name.EndsWith("Attribute") && t.GetProperty("Targets") is not null)
                .Select(t => t.Name[..^"Attribute".Length]).OrderBy(n => n, StringComparer.Ordinal));

    [Fact]
    public void EnumValuesAreWrittenAsTheTableSays()
    {
        var lora = AdapterConfigFields.Find("LoRA")!.Shared.Single(f => f.Key == "init_lora_weights");
        foreach (LoRAInit init in Enum.GetValues<LoRAInit>())
        {
            var written = new JsonObject();
            new LoRAOptions { Init = init }.WriteSharedFields(written);
            Assert.Equal(written["init_lora_weights"]!.ToJsonString(), lora.EnumJson[(int)init]);
        }

        var bone = AdapterConfigFields.Find("Bone")!.Shared.Single(f => f.Key == "init_weights");
        foreach (BoneVariant variant in Enum.GetValues<BoneVariant>())
        {
            var written = new JsonObject();
            new BoneOptions { Block = 4, Variant = variant }.WriteSharedFields(written);
            Assert.Equal(written["init_weights"]!.ToJsonString(), bone.EnumJson[(int)variant]);
        }
    }

    [Fact]
    public void TheSaveRefusesWithTheConstructionCheck()
    {
        var sites = new List<(string, AdapterSettings)>
        {
            ("attn.q", new LoRAOptions { Rank = 4, Alpha = 8 }),
            ("mlp.fc", new DoRAOptions { Rank = 8, Alpha = 16 }),
        };
        string expected = PeftMessages.Format(PeftMessages.SharedConfigMismatch, "mlp.fc", "task", "use_dora", "true", "false", "attn.q");
        Assert.Equal(expected, AdapterConfig.SharedFieldConflict(sites, "task"));
        var ex = Assert.Throws<InvalidOperationException>(() => AdapterConfig.Build(sites, Array.Empty<string>(), null, null, "task"));
        Assert.Equal(expected, ex.Message);
        // Rank and alpha alone differ: one config, with patterns.
        sites[1] = ("mlp.fc", new LoRAOptions { Rank = 8, Alpha = 16 });
        Assert.Null(AdapterConfig.SharedFieldConflict(sites, "task"));
    }

    /// <summary>Python's repr of a float, which its json writes and PEFT's configs hold (checked against CPython 3.11).</summary>
    [Theory]
    [InlineData(0.0, "0.0")]
    [InlineData(-0.0, "-0.0")]
    [InlineData(0.05, "0.05")]
    [InlineData(0.1, "0.1")]
    [InlineData(1.0, "1.0")]
    [InlineData(-2.5, "-2.5")]
    [InlineData(123.45, "123.45")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(0.00012, "0.00012")]
    [InlineData(1e-05, "1e-05")]
    [InlineData(1.5e-07, "1.5e-07")]
    [InlineData(1e15, "1000000000000000.0")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1.2345e20, "1.2345e+20")]
    [InlineData(1e-300, "1e-300")]
    public void FloatsAreWrittenAsPythonWritesThem(double value, string python) =>
        Assert.Equal(python, AdapterConfigFields.PythonFloat(value));
}
