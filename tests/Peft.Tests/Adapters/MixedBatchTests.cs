using System;
using System.Collections.Generic;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

/// <summary>Row routing on each adapter layer: a mixed batch equals every row run alone with its adapter.</summary>
public class MixedBatchTests
{
    private static readonly string[] Rows = { "a", "b", PeftModelCore.BaseAdapterName, "b", "a", "a", PeftModelCore.BaseAdapterName };

    private static LoRALinear LoRA()
    {
        manual_seed(1);
        var layer = new LoRALinear("T.q", nn.Linear(6, 5), "a", new LoRAOptions { Rank = 2, Alpha = 4 });
        layer.AddAdapter("b", new LoRAOptions { Rank = 3, Alpha = 3, UseRsLora = true });
        using (no_grad())
            foreach (var n in layer.AdapterNames) layer.LoraB(n).normal_(0, 0.5);
        return layer;
    }

    /// <summary>DoRA "a" and plain LoRA "b" on one layer: rows of a DoRA adapter rescale their own output only.</summary>
    private static LoRALinear DoRA()
    {
        manual_seed(4);
        var layer = new LoRALinear("T.k", nn.Linear(6, 5), "a", new DoRAOptions { Rank = 2, Alpha = 4 });
        layer.AddAdapter("b", new LoRAOptions { Rank = 2, Alpha = 2 });
        using (no_grad())
        {
            foreach (var n in layer.AdapterNames) layer.LoraB(n).normal_(0, 0.5);
            layer.Magnitude("a").mul_(1.5);
        }
        return layer;
    }

    private static BoneLinear Bone(BoneVariant variant)
    {
        manual_seed(2);
        var layer = new BoneLinear("T.v", nn.Linear(6, 6), "a", new BoneOptions { Block = 2, Variant = variant });
        layer.AddAdapter("b", new BoneOptions { Block = 3, Variant = variant });
        using (no_grad())
            foreach (var n in layer.AdapterNames) layer.Block(n).normal_(0, 0.3);
        return layer;
    }

    private static HydraLinear Hydra()
    {
        manual_seed(3);
        var layer = new HydraLinear("T.o", nn.Linear(6, 5), "a", new HydraOptions { ParallelRank = 2, SequentialRank = 1 });
        layer.AddAdapter("b", new HydraOptions { ParallelRank = 1, SequentialRank = 2 });
        using (no_grad())
            foreach (var n in layer.AdapterNames)
            {
                layer.ParallelB(n).normal_(0, 0.3);
                layer.SequentialB(n).normal_(0, 0.3);
            }
        return layer;
    }

    private static SaRALinear SaRA()
    {
        manual_seed(5);
        var layer = new SaRALinear("T.s", nn.Linear(6, 5), "a", new SaRAOptions { Rank = 1 });
        layer.AddAdapter("b", new SaRAOptions { Rank = 2 });
        using (no_grad())
            foreach (var n in layer.AdapterNames) layer.Values(n).normal_(0, 0.5);
        return layer;
    }

    private static RandLoRALinear RandLoRA()
    {
        manual_seed(6);
        var layer = new RandLoRALinear("T.r", nn.Linear(6, 5), "a", new RandLoRAOptions { Rank = 2, Alpha = 4 });
        layer.AddAdapter("b", new RandLoRAOptions { Rank = 3, Alpha = 6, ProjectionSeed = 1 });
        using (no_grad())
            foreach (var n in layer.AdapterNames) layer.Lambda(n).normal_(0, 0.5);
        return layer;
    }

    public static IEnumerable<object[]> Layers() => new[]
    {
        new object[] { "LoRA" }, new object[] { "DoRA" }, new object[] { "Bone" }, new object[] { "Bat" }, new object[] { "Hydra" },
        new object[] { "SaRA" }, new object[] { "RandLoRA" },
    };

    private static AdapterLayerBase Make(string kind) => kind switch
    {
        "LoRA" => LoRA(),
        "DoRA" => DoRA(),
        "Bone" => Bone(BoneVariant.Bone),
        "Bat" => Bone(BoneVariant.Bat),
        "Hydra" => Hydra(),
        "SaRA" => SaRA(),
        "RandLoRA" => RandLoRA(),
        _ => throw new ArgumentException(kind),
    };

    /// <summary>Row <paramref name="i"/> of <paramref name="x"/> run alone with only its adapter active (or adapters disabled).</summary>
    private static Tensor Alone(AdapterLayerBase layer, Tensor x, long i, string adapter)
    {
        var active = layer.ActiveAdapters.ToList();
        try
        {
            if (adapter == PeftModelCore.BaseAdapterName) layer.AdaptersDisabled = true;
            else layer.SetActiveAdapters(new[] { adapter });
            return layer.forward(x[i].unsqueeze(0));
        }
        finally
        {
            layer.AdaptersDisabled = false;
            layer.SetActiveAdapters(active);
        }
    }

    [Theory]
    [MemberData(nameof(Layers))]
    public void Each_row_equals_the_row_run_alone(string kind)
    {
        using var scope = NewDisposeScope();
        var layer = Make(kind);
        var x = randn(Rows.Length, 6);
        layer.RowAdapters = Rows;
        var mixed = layer.forward(x);
        layer.RowAdapters = null;
        var expected = cat(Rows.Select((a, i) => Alone(layer, x, i, a)).ToArray(), 0);
        TensorAssert.Close(expected, mixed, 1e-5, 1e-6);
        // The routing is gone with the setting: the active adapter applies to every row again.
        TensorAssert.Close(cat(Enumerable.Range(0, Rows.Length).Select(i => Alone(layer, x, i, "a")).ToArray(), 0), layer.forward(x), 1e-5, 1e-6);
    }

    [Fact]
    public void Rows_are_the_first_dimension_of_a_sequence_batch()
    {
        using var scope = NewDisposeScope();
        var layer = LoRA();
        var x = randn(3, 4, 6);
        var rows = new[] { "b", PeftModelCore.BaseAdapterName, "a" };
        layer.RowAdapters = rows;
        var mixed = layer.forward(x);
        layer.RowAdapters = null;
        for (int i = 0; i < 3; i++) TensorAssert.Close(Alone(layer, x, i, rows[i]), mixed[i].unsqueeze(0), 1e-5, 1e-6);
    }

    [Fact]
    public void Gradients_of_a_mixed_batch_reach_each_adapter_from_its_own_rows()
    {
        var layer = LoRA();
        var x = randn(Rows.Length, 6);
        layer.RowAdapters = Rows;
        layer.forward(x).square().sum().backward();
        layer.RowAdapters = null;
        var mixedA = layer.LoraB("a").grad!.clone();
        var mixedB = layer.LoraB("b").grad!.clone();
        layer.zero_grad();

        for (int i = 0; i < Rows.Length; i++)
            if (Rows[i] != PeftModelCore.BaseAdapterName) Alone(layer, x, i, Rows[i]).square().sum().backward(); // base rows reach no adapter
        TensorAssert.Close(layer.LoraB("a").grad!, mixedA, 1e-5, 1e-6);
        TensorAssert.Close(layer.LoraB("b").grad!, mixedB, 1e-5, 1e-6);
    }

    [Fact]
    public void A_row_count_mismatch_or_a_merged_adapter_is_refused()
    {
        var layer = LoRA();
        layer.RowAdapters = new[] { "a", "b" };
        var ex = Assert.Throws<ArgumentException>(() => layer.forward(randn(3, 6)));
        Assert.Contains("T.q", ex.Message);
        layer.RowAdapters = null;
        layer.Merge(new[] { "a" });
        layer.RowAdapters = new[] { "a", "b" };
        Assert.Throws<InvalidOperationException>(() => layer.forward(randn(2, 6)));
    }

    [Fact]
    public void The_base_row_name_cannot_name_an_adapter()
    {
        var layer = LoRA();
        Assert.Throws<ArgumentException>(() => layer.AddAdapter(PeftModelCore.BaseAdapterName, new LoRAOptions { Rank = 1 }));
    }
}
