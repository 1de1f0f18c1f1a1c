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

    private static LaMDALinear LaMDA()
    {
        manual_seed(5);
        var layer = new LaMDALinear("T.u", nn.Linear(6, 5), "a", new LaMDAOptions { Rank = 2, Alpha = 4 });
        layer.AddAdapter("b", new LaMDAOptions { Rank = 3, Alpha = 3 });
        using (no_grad())
            foreach (var n in layer.AdapterNames) layer.Core(n).normal_(0, 0.5);
        return layer;
    }

    private static LoLDULinear LoLDU()
    {
        manual_seed(6);
        var layer = new LoLDULinear("T.w", nn.Linear(6, 5), "a", new LoLDUOptions { Rank = 2 });
        layer.AddAdapter("b", new LoLDUOptions { Rank = 3 });
        using (no_grad())
            foreach (var n in layer.AdapterNames) layer.Z(n).mul_(1.7);
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
        new object[] { "SaRA" },
        new object[] { "LaMDA" },
        new object[] { "LoLDU" },
        new object[] { "RandLoRA" },
    };

    private static AdapterLayerBase Make(string kind) => kind switch
    {
        "LoRA" => LoRA(),
        "DoRA" => DoRA(),
        "Bone" => Bone(BoneVariant.Bone),
        "Bat" => Bone(BoneVariant.Bat),
        "Hydra" => Hydra(),
        "SaRA" => SaRA(),
        "LaMDA" => LaMDA(),
        "LoLDU" => LoLDU(),
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

    /// <summary>
    /// LoRA's grouped path (base once, thin products added into each adapter's rows): the output and every gradient
    /// (input, A and B of each adapter, and the bias left alone) equal the composed formula written per row.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void LoRA_grouped_rows_match_the_composed_formula_and_all_gradients(bool contiguous)
    {
        using var scope = NewDisposeScope();
        var layer = LoRA();
        var rows = contiguous ? new[] { "a", "a", "b", "b", "b", PeftModelCore.BaseAdapterName, "other" } : Rows;
        var leaf = randn(rows.Length, 6, requires_grad: true);
        var grad = randn(rows.Length, 5);

        layer.RowAdapters = rows;
        var mixed = layer.forward(leaf.mul(1));
        layer.RowAdapters = null;
        mixed.backward(new[] { grad });
        var got = new[] { leaf.grad!.clone(), layer.LoraA("a").grad!.clone(), layer.LoraB("a").grad!.clone(), layer.LoraA("b").grad!.clone(), layer.LoraB("b").grad!.clone() };

        leaf.grad = null;
        layer.zero_grad();
        var weight = layer.BaseLayer.get_parameter("weight")!;
        var bias = layer.BaseLayer.get_parameter("bias")!;
        var expected = cat(rows.Select((adapter, i) =>
        {
            var x = leaf[i].unsqueeze(0);
            var y = nn.functional.linear(x, weight, bias);
            if (adapter is "a" or "b")
                y = y.add(x.matmul(layer.LoraA(adapter).t()).matmul(layer.LoraB(adapter).t()).mul(layer.Options(adapter).Scaling));
            return y;
        }).ToArray(), 0);
        expected.backward(new[] { grad });
        TensorAssert.Close(expected, mixed, 1e-5, 1e-6);
        var want = new[] { leaf.grad!, layer.LoraA("a").grad!, layer.LoraB("a").grad!, layer.LoraA("b").grad!, layer.LoraB("b").grad! };
        for (int k = 0; k < want.Length; k++) TensorAssert.Close(want[k], got[k], 1e-5, 1e-6);
    }

    [Fact]
    public void LoRA_grouped_rows_without_gradient_equal_the_rows_run_alone()
    {
        using var scope = NewDisposeScope();
        var layer = LoRA();
        layer.eval();
        var x = randn(Rows.Length, 2, 6);
        Tensor mixed;
        using (no_grad())
        {
            layer.RowAdapters = Rows;
            mixed = layer.forward(x);
            layer.RowAdapters = null;
        }
        Assert.False(mixed.requires_grad);
        for (int i = 0; i < Rows.Length; i++) TensorAssert.Close(Alone(layer, x, i, Rows[i]), mixed[i].unsqueeze(0), 1e-5, 1e-6);
    }

    /// <summary>
    /// The hand-written inference pass at sizes that exercise its blocks (rows in chunks of 64, partial blocks of four,
    /// vector tails, a sequence dimension, rows of no adapter, no bias): every row equals the composed formula, and no
    /// fallback is recorded.
    /// </summary>
    [Theory]
    [InlineData(true, 1)]
    [InlineData(false, 3)]
    public void LoRA_inference_kernel_rows_match_the_composed_formula(bool hasBias, int inner)
    {
        using var scope = NewDisposeScope();
        manual_seed(9);
        var layer = new LoRALinear("T.big", nn.Linear(70, 37, hasBias: hasBias), "a", new LoRAOptions { Rank = 5, Alpha = 10 });
        layer.AddAdapter("b", new LoRAOptions { Rank = 16, Alpha = 8 });
        layer.AddAdapter("c", new LoRAOptions { Rank = 3, Alpha = 3, UseRsLora = true });
        using (no_grad())
            foreach (var n in layer.AdapterNames) layer.LoraB(n).normal_(0, 0.5);
        layer.eval();
        string[] names = { "a", "b", "c", PeftModelCore.BaseAdapterName, "b", "missing" };
        var rows = Enumerable.Range(0, 203).Select(i => names[(i * 7 + i / 5) % names.Length]).ToArray();
        var x = inner == 1 ? randn(rows.Length, 70) : randn(rows.Length, inner, 70);
        var weight = layer.BaseLayer.get_parameter("weight")!;
        var bias = layer.BaseLayer.get_parameter("bias");
        // Both vector widths where the machine has AVX-512: 37 outputs are two 16-wide panels (four 8-wide) and a tail.
        Peft.Tests.Kernels.KernelWidths.Each(() =>
        {
            long before = Peft.Runtime.Kernels.FusedKernels.FallbackCount;
            Tensor mixed;
            using (no_grad())
            {
                layer.RowAdapters = rows;
                mixed = layer.forward(x);
                layer.RowAdapters = null;
            }
            if (System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated) Assert.Equal(before, Peft.Runtime.Kernels.FusedKernels.FallbackCount);
            using (no_grad())
                for (int i = 0; i < rows.Length; i++)
                {
                    var xi = x[i];
                    var y = nn.functional.linear(xi, weight, bias);
                    if (layer.AdapterNames.Contains(rows[i]))
                        y = y.add(xi.matmul(layer.LoraA(rows[i]).t()).matmul(layer.LoraB(rows[i]).t()).mul(layer.Options(rows[i]).Scaling));
                    TensorAssert.Close(y, mixed[i], 1e-4, 1e-5);
                }
        });
    }

    [Fact]
    public void A_routing_groups_rows_once_and_is_shared_as_given()
    {
        using var routing = new RowRouting(new[] { "b", "a", "b", PeftModelCore.BaseAdapterName, "a", "a" });
        Assert.Equal(new[] { "b", "a", PeftModelCore.BaseAdapterName }, routing.Groups.Select(g => g.Adapter));
        Assert.Equal(new long[] { 0, 2 }, routing.Groups[0].Rows);
        Assert.Equal(new long[] { 1, 4, 5 }, routing.Groups[1].Rows);
        Assert.False(routing.Groups[0].Contiguous);
        Assert.True(routing.Groups[2].Contiguous);
        Assert.Same(routing.Index(1, CPU), routing.Index(1, CPU)); // built once per device
        // cat(groups) then the inverse gives the rows back in order.
        var order = cat(routing.Groups.Select((g, k) => routing.Index(k, CPU)).ToArray(), 0).index_select(0, routing.Inverse(CPU));
        Assert.Equal(new long[] { 0, 1, 2, 3, 4, 5 }, order.data<long>().ToArray());

        var layer = LoRA();
        layer.RowAdapters = routing;
        Assert.Same(routing, layer.RowAdapters); // a layer keeps the shared routing, it does not copy it
        layer.RowAdapters = null;
        routing.Dispose();
        Assert.Equal(3, routing.Index(0, CPU).numel() + 1); // usable again after Dispose (tensors rebuilt)
    }

    [Fact]
    public void The_base_row_name_cannot_name_an_adapter()
    {
        var layer = LoRA();
        Assert.Throws<ArgumentException>(() => layer.AddAdapter(PeftModelCore.BaseAdapterName, new LoRAOptions { Rank = 1 }));
    }
}
