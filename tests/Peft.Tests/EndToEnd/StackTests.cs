using System;
using System.IO;
using System.Linq;
using Peft.Runtime.Adapters;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.EndToEnd;

public sealed class StackTests
{
    [Fact]
    public void TheRootFindsAdaptersInsidePlainSubmodules()
    {
        var stack = new Stack();
        Assert.Equal(new[] { "layers.0.proj", "layers.1.proj", "layers.2.proj" }, stack.AdapterLayers.Select(l => l.Path));
        Assert.Equal(3 * (2 * 16 + 16 * 2) + (16 * 3 + 3), stack.TrainableParameterCount);
        var rs = (LoRALinear)stack.AdapterLayers[0].Layer;
        Assert.Equal(4 / Math.Sqrt(2), rs.Options("default").Scaling, 12);
    }

    [Fact]
    public void MergeAndUnloadLeavesAPlainModelComputingTheSameFunction()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var stack = new Stack();
        using (no_grad())
            foreach (var (_, layer) in stack.AdapterLayers) ((LoRALinear)layer).LoraB("default").normal_();
        stack.eval();
        var x = randn(5, 16);
        var before = stack.forward(x);
        stack.MergeAndUnload();
        Assert.Empty(stack.AdapterLayers);
        Assert.DoesNotContain(stack.named_parameters(), p => p.name.Contains("lora_") || p.name.Contains("base_layer"));
        Assert.Contains(stack.named_parameters(), p => p.name == "layers.0.proj.weight");
        TensorAssert.Close(before, stack.forward(x), atol: 1e-5);
    }

    [Fact]
    public void SaveAndLoadUseFullModulePaths()
    {
        string dir = Path.Combine(Path.GetTempPath(), "peft-stack-" + Guid.NewGuid().ToString("N"));
        try
        {
            var stack = new Stack();
            stack.SaveAdapters(dir);
            var header = Peft.Runtime.IO.Safetensors.ReadHeader(Path.Combine(dir, "adapter_model.safetensors"));
            Assert.Contains(header.Entries, e => e.Name == "base_model.model.layers.2.proj.lora_B.weight");
            Assert.Contains(header.Entries, e => e.Name == "base_model.model.score.weight");
            string config = File.ReadAllText(Path.Combine(dir, "adapter_config.json"));
            Assert.Contains("\"use_rslora\": true", config);
            new Stack().LoadAdapters(dir);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
