using System;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.EndToEnd;

public sealed class BlockTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-block-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private static Block Trained(int seed)
    {
        manual_seed(seed);
        var block = new Block();
        // Pretend training happened: B is zero at init, which would make every check below trivial.
        using (no_grad())
            foreach (var (_, layer) in block.AdapterLayers)
                ((LoRALinear)layer).LoraB("default").normal_(0, 0.1);
        return block;
    }

    [Fact]
    public void TheGeneratorWrapsAnnotatedFieldsOnly()
    {
        var block = new Block();
        Assert.IsType<LoRALinear>(block.Q);
        Assert.IsType<LoRALinear>(block.V);
        Assert.IsType<TorchSharp.Modules.Linear>(block.O);
        Assert.IsType<TorchSharp.Modules.Linear>(block.Head);
        Assert.Equal(new[] { "q", "v" }, block.AdapterLayers.Select(l => l.Path));
    }

    [Fact]
    public void TrainableCountIsAdaptersPlusHead()
    {
        var block = new Block();
        long adapters = 2 * (4 * 32 + 32 * 4);
        long head = 32 * 10 + 10;
        Assert.Equal(adapters + head, block.TrainableParameterCount);
        Assert.Equal(
            new[] { "q.lora_A.default.weight", "q.lora_B.default.weight", "v.lora_A.default.weight", "v.lora_B.default.weight", "head.weight", "head.bias" }.OrderBy(n => n),
            block.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).OrderBy(n => n));
        Assert.All(block.named_parameters().Where(p => p.name.Contains("base_layer") || p.name.StartsWith("o.")), p => Assert.False(p.parameter.requires_grad));
    }

    [Fact]
    public void QComputesBasePlusScaledLowRankUpdate()
    {
        using var scope = NewDisposeScope();
        var block = Trained(1);
        var q = (LoRALinear)block.Q;
        var x = randn(5, 32);
        var w = q.BaseLayer.get_parameter("weight")!;
        var b = q.BaseLayer.get_parameter("bias")!;
        var expected = x.matmul(w.t()) + b + (8.0 / 4.0) * x.matmul(q.LoraA("default").t()).matmul(q.LoraB("default").t());
        TensorAssert.Close(expected, q.forward(x));
    }

    [Fact]
    public void GradientsReachAdaptersAndHeadOnly()
    {
        using var scope = NewDisposeScope();
        var block = Trained(2);
        block.forward(randn(8, 32)).square().mean().backward();
        foreach (var (name, parameter) in block.named_parameters())
        {
            bool shouldLearn = name.Contains("lora_") || name.StartsWith("head.");
            Assert.True(shouldLearn == (parameter.grad is not null), $"{name}: gradient {(parameter.grad is null ? "missing" : "present")}");
        }
    }

    [Fact]
    public void MergeKeepsTheFunctionAndUnmergeRestoresTheWeights()
    {
        using var scope = NewDisposeScope();
        var block = Trained(3);
        block.eval();
        var x = randn(6, 32);
        var before = block.forward(x);
        var q0 = block.Q.named_parameters().First(p => p.name == "base_layer.weight").parameter.detach().clone();
        block.MergeAdapters();
        TensorAssert.Close(before, block.forward(x), rtol: 1e-5, atol: 1e-5);
        block.UnmergeAdapters();
        TensorAssert.Close(q0, block.Q.named_parameters().First(p => p.name == "base_layer.weight").parameter, atol: 1e-6);
        TensorAssert.Close(before, block.forward(x), atol: 1e-5);
    }

    [Fact]
    public void DisableAdaptersGivesTheBaseModel()
    {
        using var scope = NewDisposeScope();
        var block = Trained(4);
        var x = randn(3, 32);
        var adapted = block.forward(x);
        block.DisableAdapters();
        var plain = block.Head.forward(block.O.forward(((LoRALinear)block.Q).BaseLayer.forward(x) + ((LoRALinear)block.V).BaseLayer.forward(x)));
        TensorAssert.Equal(plain, block.forward(x));
        block.EnableAdapters();
        TensorAssert.Equal(adapted, block.forward(x));
    }

    [Fact]
    public void SaveWritesPeftKeysShapesAndConfig()
    {
        var block = Trained(5);
        block.SaveAdapters(_dir);
        Assert.Equal(new[] { "adapter_config.json", "adapter_model.safetensors" }, Directory.GetFiles(_dir).Select(Path.GetFileName).OrderBy(n => n));

        var header = Safetensors.ReadHeader(Path.Combine(_dir, "adapter_model.safetensors"));
        Assert.Equal("pt", header.Metadata["format"]);
        Assert.Equal(new[]
            {
                "base_model.model.head.bias [10]",
                "base_model.model.head.weight [10, 32]",
                "base_model.model.q.lora_A.weight [4, 32]",
                "base_model.model.q.lora_B.weight [32, 4]",
                "base_model.model.v.lora_A.weight [4, 32]",
                "base_model.model.v.lora_B.weight [32, 4]",
            },
            header.Entries.Select(e => $"{e.Name} [{string.Join(", ", e.Shape)}]").OrderBy(n => n, StringComparer.Ordinal));
        Assert.All(header.Entries, e => Assert.Equal("F32", e.DType));

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "adapter_config.json")))!.AsObject();
        Assert.Equal("LORA", (string)config["peft_type"]!);
        Assert.Equal(4, (int)config["r"]!);
        Assert.Equal(8, (double)config["lora_alpha"]!);
        Assert.Equal(0, (double)config["lora_dropout"]!);
        Assert.Equal(new[] { "q", "v" }, config["target_modules"]!.AsArray().Select(n => (string)n!));
        Assert.Equal(new[] { "head" }, config["modules_to_save"]!.AsArray().Select(n => (string)n!));
        Assert.False((bool)config["use_rslora"]!);
        Assert.False((bool)config["use_dora"]!);
        Assert.False((bool)config["fan_in_fan_out"]!);
        Assert.Equal("none", (string)config["bias"]!);
        Assert.True((bool)config["init_lora_weights"]!);
        Assert.True((bool)config["inference_mode"]!);
        Assert.Empty(config["rank_pattern"]!.AsObject());
        // PEFT writes sorted keys; so do we.
        var keys = config.Select(p => p.Key).ToList();
        Assert.Equal(keys.OrderBy(k => k, StringComparer.Ordinal), keys);
    }

    [Fact]
    public void LoadIntoAFreshInstanceReproducesTheOutputs()
    {
        using var scope = NewDisposeScope();
        var trained = Trained(6);
        trained.eval();
        trained.SaveAdapters(_dir);

        manual_seed(99); // different adapter init, same base (below)
        var fresh = new Block();
        fresh.eval();
        // Same base weights: copy the frozen ones from the trained model (in real use, both load the base checkpoint).
        using (no_grad())
            foreach (var (name, p) in fresh.named_parameters())
                if (!name.Contains("lora_") && !name.StartsWith("head."))
                    p.copy_(trained.named_parameters().First(t => t.name == name).parameter);

        var x = randn(4, 32);
        Assert.False(trained.forward(x).allclose(fresh.forward(x)));
        fresh.LoadAdapters(_dir);
        TensorAssert.Equal(trained.forward(x), fresh.forward(x));
    }

    [Fact]
    public void LoadWithWrongShapesNamesKeyAndShapesAndChangesNothing()
    {
        using var scope = NewDisposeScope();
        var block = Trained(7);
        block.SaveAdapters(_dir);
        // Rewrite the file with q's A of rank 3 instead of 4.
        string weights = Path.Combine(_dir, "adapter_model.safetensors");
        using (var file = Safetensors.Read(weights))
        {
            var tensors = file.Tensors.ToDictionary(t => t.Key, t => t.Value);
            tensors["base_model.model.q.lora_A.weight"] = zeros(3, 32);
            Safetensors.Write(weights, tensors, file.Metadata);
        }
        var target = Trained(8);
        var snapshot = target.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
        var ex = Assert.Throws<InvalidDataException>(() => target.LoadAdapters(_dir));
        Assert.Contains("base_model.model.q.lora_A.weight", ex.Message);
        Assert.Contains("[3, 32]", ex.Message);
        Assert.Contains("[4, 32]", ex.Message);
        foreach (var (name, value) in target.state_dict()) TensorAssert.Equal(snapshot[name], value);
    }

    [Fact]
    public void MergeRefusingNaNLeavesEveryLayerUntouched()
    {
        using var scope = NewDisposeScope();
        var block = Trained(9);
        using (no_grad()) ((LoRALinear)block.V).LoraB("default")[0, 0] = float.NaN; // v is the second layer
        var snapshot = block.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
        var ex = Assert.Throws<InvalidOperationException>(() => block.MergeAdapters());
        Assert.Contains("'v'", ex.Message);
        Assert.Contains("NaN", ex.Message);
        foreach (var (name, value) in block.state_dict())
            Assert.True(TensorAssert.Same(value, snapshot[name]) || name.Contains("lora_B"), $"{name} changed");
        Assert.All(block.AdapterLayers, l => Assert.Empty(l.Layer.MergedAdapters));
    }

    [Fact]
    public void PeftInfoDescribesWhatTheCompilerSaw()
    {
        var info = Block.PeftInfo;
        Assert.Equal("Peft.Tests.EndToEnd.Block", info.TypeName);
        Assert.Equal(new[] { "q", "v" }, info.Sites.Select(s => s.Member));
        Assert.All(info.Sites, s =>
        {
            Assert.Equal("LoRA", s.Method);
            Assert.Equal("default", s.Adapter);
            Assert.Equal(32, s.InFeatures);
            Assert.Equal(32, s.OutFeatures);
        });
        Assert.Equal(new[] { "head" }, info.TrainableMembers);
    }
}
