using System;
using System.IO;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.Merging;
using Peft.Tests.IO;
using Peft.Tests.Merging;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.EndToEnd;

public class MergeTests
{
    private const string Base = PeftModelCore.BaseAdapterName;

    /// <summary>A model whose adapters look trained: random B everywhere (B = 0 would make every check trivial).</summary>
    private static TwoTask Trained(int seed)
    {
        manual_seed(seed);
        var model = new TwoTask();
        using (no_grad())
            foreach (var (_, layer) in model.AdapterLayers)
                foreach (var adapter in layer.AdapterNames)
                    ((LoRALinear)layer).LoraB(adapter).normal_(0, 0.3);
        return model;
    }

    private static Tensor Delta(IAdapterLayer layer, string adapter) => layer.DeltaWeight(adapter).detach().to(float64);

    private static Tensor State(nn.Module model) =>
        cat(model.state_dict().OrderBy(p => p.Key).Select(p => p.Value.detach().reshape(-1).to(float64)).ToArray(), 0);

    [Fact]
    public void The_generated_MergeAb_adds_the_TIES_formula_on_every_layer()
    {
        using var scope = NewDisposeScope();
        var model = Trained(1);
        Assert.Equal(new[] { "q", "v", "head.proj" }, model.AdapterLayers.Select(l => l.Path));
        model.MergeAb();
        foreach (var (path, layer) in model.AdapterLayers)
        {
            var expected = NaiveMerge.Ties(new[] { NaiveMerge.Values(Delta(layer, "a")), NaiveMerge.Values(Delta(layer, "b")) }, new[] { 0.5, 0.5 }, 0.5);
            // Ranks 4 + 4 and 2 + 6 both reach min(8, 8): the re-factorisation is exact on every layer.
            TensorAssert.Close(tensor(expected, new long[] { 8, 8 }), Delta(layer, "ab"), 1e-5, 1e-6);
            var options = ((LoRALinear)layer).Options("ab");
            Assert.Equal(8, options.Rank);
            Assert.Equal(1.0, options.Scaling);
            Assert.Equal(new[] { "a" }, layer.ActiveAdapters);
        }

        // Selected, it is what forward applies: base + ΔW_ab.
        var x = randn(5, 8);
        model.SetActiveAdapters("ab");
        var withAb = model.forward(x);
        model.MergeAdapters();
        TensorAssert.Close(withAb, model.forward(x), 1e-4, 1e-5);
    }

    [Fact]
    public void Linear_field_and_component_merges_cover_their_own_layers()
    {
        var model = Trained(2);
        model.MergeAPlusB();
        foreach (var (_, layer) in model.AdapterLayers)
            TensorAssert.Close(Delta(layer, "a") * 0.7 + Delta(layer, "b") * 0.3, Delta(layer, "a_plus_b"), 1e-5, 1e-6);

        model.MergeVSvd();
        var v = (LoRALinear)model.V;
        Assert.Equal(3, v.Options("v_svd").Rank);
        Assert.DoesNotContain("v_svd", ((IAdapterLayer)model.Q).AdapterNames);
        var sum = Delta(v, "a") + Delta(v, "b");
        var s = linalg.svdvals(sum);
        Assert.Equal(Math.Sqrt(s.narrow(0, 3, 5).square().sum().item<double>()), (sum - Delta(v, "v_svd")).norm().item<double>(), 4);

        model.Head.MergeDare();
        var proj = (IAdapterLayer)model.Head.Proj;
        Assert.Contains("dare", proj.AdapterNames);
        Assert.DoesNotContain("dare", ((IAdapterLayer)model.Q).AdapterNames);
        var again = Trained(2);
        again.Head.MergeDare();
        TensorAssert.Equal(Delta(proj, "dare"), Delta((IAdapterLayer)again.Head.Proj, "dare"));
    }

    [Fact]
    public void A_mixed_batch_equals_its_rows_run_alone()
    {
        using var scope = NewDisposeScope();
        var model = Trained(3);
        model.MergeAb();
        string[] rows = { "a", "b", Base, "ab", "b", "a", Base };
        var x = randn(rows.Length, 8);

        Tensor mixed;
        using (model.MixedBatch(rows))
        {
            // Grouped once for the scope: every layer holds the same routing.
            var routings = model.AdapterLayers.Select(l => l.Layer.RowAdapters).Distinct().ToList();
            Assert.Single(routings);
            Assert.IsType<RowRouting>(routings[0]);
            mixed = model.forward(x);
        }
        Assert.All(model.AdapterLayers, l => Assert.Null(l.Layer.RowAdapters));

        for (int i = 0; i < rows.Length; i++)
        {
            if (rows[i] == Base) model.DisableAdapters();
            else model.SetActiveAdapters(rows[i]);
            TensorAssert.Close(model.forward(x[i].unsqueeze(0)), mixed[i].unsqueeze(0), 1e-5, 1e-6);
            model.EnableAdapters();
        }

        // Outside the scope the active adapter applies to every row again.
        model.SetActiveAdapters("b");
        var all = model.forward(x);
        for (int i = 0; i < rows.Length; i++) TensorAssert.Close(model.forward(x[i].unsqueeze(0)), all[i].unsqueeze(0), 1e-5, 1e-6);

        Assert.Throws<ArgumentException>(() => model.MixedBatch("a", "nope"));
        model.SetActiveAdapters("a");
        model.MergeAdapters();
        Assert.Throws<InvalidOperationException>(() => model.MixedBatch("a", "b"));
    }

    [Fact]
    public void A_merge_that_would_create_a_NaN_is_refused_without_changing_the_model()
    {
        var model = Trained(4);
        using (no_grad()) ((LoRALinear)model.Head.Proj).LoraB("b")[1, 2].fill_(double.NaN);
        var before = State(model);
        var names = model.AdapterLayers.Select(l => l.Layer.AdapterNames.ToList()).ToList();
        var ex = Assert.Throws<InvalidOperationException>(() => model.MergeAb());
        Assert.Contains("head.proj", ex.Message);
        Assert.Contains("'ab'", ex.Message);
        Assert.True(TensorAssert.Same(before, State(model)), "the model changed");
        Assert.Equal(names, model.AdapterLayers.Select(l => l.Layer.AdapterNames.ToList()).ToList());
    }

    [Fact]
    public void Merging_a_merged_adapter_into_the_base_is_safe()
    {
        var model = Trained(5);
        model.MergeAb();
        using (no_grad())
        {
            ((LoRALinear)model.V).LoraA("ab").fill_(1e20f);
            ((LoRALinear)model.V).LoraB("ab").fill_(1e20f);
        }
        model.SetActiveAdapters("ab");
        var before = State(model);
        var ex = Assert.Throws<InvalidOperationException>(() => model.MergeAdapters());
        Assert.Contains("'v'", ex.Message);
        Assert.Contains("'ab'", ex.Message);
        Assert.True(TensorAssert.Same(before, State(model)), "a refused merge changed the weights");
        Assert.All(model.AdapterLayers, l => Assert.Empty(l.Layer.MergedAdapters));
    }

    [Fact]
    public void Named_adapters_save_and_load_one_by_one_and_all_together()
    {
        using var folder = new TempFolder();
        var source = Trained(6);
        source.MergeAb();
        source.SaveAdapters(folder.Path);
        // PEFT's layout: no "default" adapter, so nothing at the root; one subfolder per adapter.
        Assert.False(File.Exists(folder.File("adapter_config.json")));
        foreach (var name in new[] { "a", "b", "ab" })
            Assert.True(File.Exists(Path.Combine(folder.Path, name, "adapter_model.safetensors")), name);

        manual_seed(6);
        var target = new TwoTask(); // the same base weights as the source, adapters untrained
        target.MergeAb();
        target.LoadAdapters(folder.Path);
        var x = randn(3, 8);
        foreach (var name in new[] { "a", "b", "ab" })
        {
            source.SetActiveAdapters(name);
            target.SetActiveAdapters(name);
            TensorAssert.Close(source.forward(x), target.forward(x), 1e-6, 1e-6);
        }

        // One adapter straight into a folder, then into another model's adapter of the same shapes.
        string single = Path.Combine(folder.Path, "just-b");
        source.SaveAdapter(single, "b");
        Assert.True(File.Exists(Path.Combine(single, "adapter_config.json")));
        manual_seed(6);
        var other = new TwoTask();
        other.LoadAdapter(single, "b");
        source.SetActiveAdapters("b");
        other.SetActiveAdapters("b");
        TensorAssert.Close(source.forward(x), other.forward(x), 1e-6, 1e-6);

        // Into an adapter of other shapes (a has ranks 4 / 2 where b has 4 / 6): refused, nothing changed.
        var before = State(other);
        Assert.ThrowsAny<Exception>(() => other.LoadAdapter(single, "a"));
        Assert.True(TensorAssert.Same(before, State(other)));
        Assert.Throws<ArgumentException>(() => other.LoadAdapter(single, "missing"));
    }

    [Fact]
    public void Adapters_can_be_deleted_enabled_and_disabled()
    {
        var model = Trained(9);
        var x = randn(4, 8);
        model.DisableAdapters();
        var baseOutput = model.forward(x);
        model.EnableAdapters();
        Assert.False(TensorAssert.Same(baseOutput, model.forward(x)));

        model.DeleteAdapter("b");
        Assert.All(model.AdapterLayers, l => Assert.Equal(new[] { "a" }, l.Layer.AdapterNames));
        Assert.DoesNotContain(model.named_parameters(), p => p.name.Contains(".b."));
        Assert.Throws<ArgumentException>(() => model.DeleteAdapter("b"));

        model.MergeAdapters();
        Assert.Throws<InvalidOperationException>(() => model.DeleteAdapter("a"));
        model.UnmergeAdapters();
        model.DeleteAdapter("a");
        TensorAssert.Close(baseOutput, model.forward(x), 1e-5, 1e-6);
    }

    [Fact]
    public void Bone_layers_refuse_the_LoRA_result_and_fold_it_into_the_base()
    {
        manual_seed(10);
        var model = new BoneTwoTask();
        using (no_grad())
            foreach (var (_, layer) in model.AdapterLayers)
                foreach (var adapter in layer.AdapterNames)
                    ((BoneLinear)layer).Block(adapter).normal_(0, 0.2);
        var before = State(model);
        var ex = Assert.Throws<NotSupportedException>(() => model.MergeAb());
        Assert.Contains("'q'", ex.Message);
        Assert.True(TensorAssert.Same(before, State(model)));

        // Mixed batches route Bone and Bat rows as well.
        string[] rows = { "b", Base, "a" };
        var x = randn(3, 8);
        Tensor mixed;
        using (model.MixedBatch(rows)) mixed = model.forward(x);
        for (int i = 0; i < rows.Length; i++)
        {
            if (rows[i] == Base) model.DisableAdapters();
            else model.SetActiveAdapters(rows[i]);
            TensorAssert.Close(model.forward(x[i].unsqueeze(0)), mixed[i].unsqueeze(0), 1e-5, 1e-6);
            model.EnableAdapters();
        }

        // The fold: W ← W + ΔW_a + ΔW_b on each layer; with adapters disabled the model is base + combination.
        var expected = model.AdapterLayers.Select(l =>
            l.Layer.BaseLayer.get_parameter("weight")!.detach().to(float64) + Delta(l.Layer, "a") + Delta(l.Layer, "b")).ToList();
        AdapterMerger.FoldIntoBase(model, new MergeSpec("ab", new[] { "a", "b" }));
        for (int i = 0; i < expected.Count; i++)
            TensorAssert.Close(expected[i], model.AdapterLayers[i].Layer.BaseLayer.get_parameter("weight")!, 1e-5, 1e-6);
    }
}
