using System;
using System.IO;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.EndToEnd;

/// <summary>Each method, declared by attribute, trains, merges exactly and round-trips through SaveAdapters / LoadAdapters.</summary>
public sealed class FamilyTests
{
    [Fact]
    public void EachAttributeWrapsItsLayer()
    {
        var model = new Family();
        Assert.Equal(
            new[] { "dora:LORA", "pissa:LORA", "bone:MISS", "bat:MISS", "hydra:HYDRA", "vera:VERA", "loha:LOHA", "lokr:LOKR", "ia3:IA3", "ia3ff:IA3" },
            model.AdapterLayers.Select(l => $"{l.Path}:{l.Layer.PeftType}"));
        Assert.True(((LoRALinear)model.AdapterLayers[0].Layer).IsDora("dora"));
        Assert.IsType<BoneLinear>(model.AdapterLayers[2].Layer);
        Assert.IsType<HydraLinear>(model.AdapterLayers[4].Layer);
        Assert.IsType<VeRALinear>(model.AdapterLayers[5].Layer);
        Assert.IsType<LoHaLinear>(model.AdapterLayers[6].Layer);
        Assert.IsType<LoKrLinear>(model.AdapterLayers[7].Layer);
        Assert.IsType<IA3Linear>(model.AdapterLayers[8].Layer);
        Assert.All(model.named_parameters().Where(p => p.name.Contains("base_layer")), p => Assert.False(p.parameter.requires_grad));
    }

    [Fact]
    public void TrainsMergesExactlyAndRoundTrips()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var model = new Family();
        var x = randn(64, 16);
        var target = randn(64, 16).tanh();
        var optimizer = optim.Adam(model.TrainableParameters(), 2e-2);
        double first = 0, last = 0;
        for (int step = 0; step < 200; step++)
        {
            using var stepScope = NewDisposeScope();
            var loss = nn.functional.mse_loss(model.forward(x), target);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            if (step == 0) first = loss.item<float>();
            last = loss.item<float>();
        }
        Assert.True(last < 0.8 * first, $"loss {first} → {last}");
        foreach (var (name, p) in model.named_parameters())
            Assert.True(p.grad is null || !name.Contains("base_layer"), $"{name} has a gradient");

        model.eval();
        var adapted = model.forward(x);
        model.MergeAdapters();
        TensorAssert.Close(adapted, model.forward(x), rtol: 1e-5, atol: 1e-5);
        model.UnmergeAdapters();
        TensorAssert.Close(adapted, model.forward(x), rtol: 1e-5, atol: 1e-5);

        string dir = Path.Combine(Path.GetTempPath(), "peft-family-" + Guid.NewGuid().ToString("N"));
        try
        {
            var saved = model.forward(x); // after the unmerge, whose float error moved the base by ~1e-7
            model.SaveAdapters(dir);
            // One PEFT adapter per name: Bone's "default" in the directory itself, each other in a folder of its name.
            Assert.Contains("\"MISS\"", File.ReadAllText(Path.Combine(dir, "adapter_config.json")));
            foreach (var name in new[] { "hydra", "vera", "loha", "lokr", "ia3" })
                Assert.True(File.Exists(Path.Combine(dir, name, "adapter_config.json")), name);
            Assert.Contains("\"bat\"", File.ReadAllText(Path.Combine(dir, "bat", "adapter_config.json")));
            Assert.Contains("\"use_dora\": true", File.ReadAllText(Path.Combine(dir, "dora", "adapter_config.json")));
            Assert.Contains("\"pissa\"", File.ReadAllText(Path.Combine(dir, "pissa", "adapter_config.json")));

            manual_seed(77);
            var fresh = new Family();
            fresh.eval();
            using (no_grad())
                foreach (var (name, p) in fresh.named_parameters())
                    if (name.Contains("base_layer")) p.copy_(model.named_parameters().First(t => t.name == name).parameter);
            Assert.False(TensorAssert.Same(adapted, fresh.forward(x)));
            fresh.LoadAdapters(dir);
            TensorAssert.Equal(saved, fresh.forward(x));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void PeftInfoRecordsEachMethodAndShape()
    {
        var sites = Family.PeftInfo.Sites;
        Assert.Equal(new[] { "DoRA", "LoRA", "Bone", "Bone", "Hydra", "VeRA", "LoHa", "LoKr", "IA3", "IA3" }, sites.Select(s => s.Method));
        Assert.All(sites, s => Assert.Equal((16L, 16L), (s.InFeatures!.Value, s.OutFeatures!.Value)));
        Assert.Equal("block: 4, Variant = BoneVariant.Bat", sites[3].Options);
        Assert.Equal("bat", sites[3].Adapter);
    }
}
