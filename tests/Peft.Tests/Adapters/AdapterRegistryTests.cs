using System;
using System.Collections.Generic;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

/// <summary>
/// <see cref="AdapterLayerBase"/> lists and removes an adapter's parameters through the containers each layer
/// registers once (PEFT's <c>adapter_layer_names</c>). For every method: the layer's own parameters, outside
/// <c>base_layer</c>, are exactly the union of its adapters' <see cref="IAdapterLayer.AdapterParameters"/>, under the
/// same (PEFT) names, and deleting an adapter leaves exactly the other's.
/// </summary>
public class AdapterRegistryTests
{
    public static TheoryData<string> Methods() => new() { "LoRA", "DoRA", "Bone", "Hydra", "VeRA", "LoHa", "LoKr", "LoKrBoth", "IA3" };

    private static AdapterLayerBase Make(string method)
    {
        var linear = nn.Linear(16, 16);
        nn.Module<Tensor, Tensor> Two(Func<nn.Module<Tensor, Tensor>, string, nn.Module<Tensor, Tensor>> wrap) => wrap(wrap(linear, "a"), "b");
        return (AdapterLayerBase)(method switch
        {
            "LoRA" => Two((l, n) => LoRA.Wrap(l, "T.q", n, new LoRAOptions { Rank = 2 })),
            "DoRA" => DoRA.Wrap(LoRA.Wrap(linear, "T.q", "a", new LoRAOptions { Rank = 2 }), "T.q", "b", new DoRAOptions { Rank = 2 }),
            "Bone" => Bone.Wrap(Bone.Wrap(linear, "T.q", "a", new BoneOptions { Block = 4 }), "T.q", "b", new BoneOptions { Block = 4, Variant = BoneVariant.Bat }),
            "Hydra" => Two((l, n) => Hydra.Wrap(l, "T.q", n, new HydraOptions { ParallelRank = 2, SequentialRank = 2 })),
            "VeRA" => Two((l, n) => VeRA.Wrap(l, "T.q", n, new VeRAOptions { Rank = 4 })),
            "LoHa" => Two((l, n) => LoHa.Wrap(l, "T.q", n, new LoHaOptions { Rank = 2 })),
            "LoKr" => Two((l, n) => LoKr.Wrap(l, "T.q", n, new LoKrOptions { Rank = 1 })),
            "LoKrBoth" => LoKr.Wrap(LoKr.Wrap(linear, "T.q", "a", new LoKrOptions { Rank = 8 }), "T.q", "b", new LoKrOptions { Rank = 1, DecomposeBoth = true }),
            "IA3" => IA3.Wrap(IA3.Wrap(linear, "T.q", "a", new IA3Options()), "T.q", "b", new IA3Options { FeedForward = true }),
            _ => throw new ArgumentOutOfRangeException(nameof(method)),
        });
    }

    private static string[] OwnParameters(AdapterLayerBase layer) =>
        layer.named_parameters().Select(p => p.name).Where(n => !n.StartsWith("base_layer.", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();

    private static string[] Listed(AdapterLayerBase layer, params string[] adapters) =>
        adapters.SelectMany(a => layer.AdapterParameters(a).Select(p => p.Name)).Order(StringComparer.Ordinal).ToArray();

    [Theory]
    [MemberData(nameof(Methods))]
    public void AdapterParametersAreTheLayersOwnAndDeleteRemovesThem(string method)
    {
        using var scope = NewDisposeScope();
        var layer = Make(method);
        Assert.Equal(new[] { "a", "b" }, layer.AdapterNames);
        Assert.Equal(OwnParameters(layer), Listed(layer, "a", "b"));
        Assert.All(Listed(layer, "b"), name => Assert.Contains(".b", name));

        // The listed parameter is the registered one, not a copy.
        var registered = layer.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, parameter) in layer.AdapterParameters("a"))
            Assert.Same(registered[name], parameter);

        var keep = Listed(layer, "b");
        layer.DeleteAdapter("a");
        Assert.Equal(new[] { "b" }, layer.AdapterNames);
        Assert.Equal(keep, OwnParameters(layer));
        Assert.Equal(keep, Listed(layer, "b"));
        Assert.Throws<ArgumentException>(() => layer.AdapterParameters("a").ToList());
        Assert.Throws<ArgumentException>(() => layer.Settings("a"));
    }

    [Fact]
    public void NamesFollowPeft()
    {
        using var scope = NewDisposeScope();
        Assert.Equal(new[] { "lora_A.b.weight", "lora_B.b.weight", "lora_magnitude_vector.b.weight" }, Make("DoRA").AdapterParameters("b").Select(p => p.Name));
        Assert.Equal(new[] { "miss_block.a" }, Make("Bone").AdapterParameters("a").Select(p => p.Name));
        Assert.Equal(new[] { "lokr_w1_a.b", "lokr_w1_b.b", "lokr_w2_a.b", "lokr_w2_b.b" }, Make("LoKrBoth").AdapterParameters("b").Select(p => p.Name));
        Assert.Equal(new[] { "lokr_w1.a", "lokr_w2.a" }, Make("LoKrBoth").AdapterParameters("a").Select(p => p.Name));
        Assert.Equal(new[] { "vera_lambda_b.a", "vera_lambda_d.a" }, Make("VeRA").AdapterParameters("a").Select(p => p.Name));
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void SizesComeFromTheBaseWeight(string method)
    {
        using var scope = NewDisposeScope();
        var layer = Make(method);
        Assert.Equal(16, layer.InFeatures);
        Assert.Equal(16, layer.OutFeatures);
    }
}
