using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using Peft.Runtime.Training;
using Peft.Tests.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

public class SaRATests
{
    private static SaRALinear Make(long inF = 12, long outF = 10, SaRAOptions? options = null, bool randomValues = true, int seed = 1)
    {
        manual_seed(seed);
        var layer = new SaRALinear("T.q", nn.Linear(inF, outF), "default", options ?? new SaRAOptions { Rank = 2 });
        if (randomValues) RandomValues(layer, "default");
        return layer;
    }

    private static void RandomValues(SaRALinear layer, string adapter)
    {
        using (no_grad()) layer.Values(adapter).normal_(0, 0.5);
    }

    private static Tensor Weight(SaRALinear layer) => layer.BaseLayer.get_parameter("weight")!;

    /// <summary>(row, column) of each selected entry, as a list.</summary>
    private static List<(long Row, long Col)> Entries(SaRALinear layer, string adapter)
    {
        var idx = layer.Indices(adapter).to(int64);
        return Enumerable.Range(0, (int)idx.shape[1]).Select(k => (idx[0, k].item<long>(), idx[1, k].item<long>())).ToList();
    }

    // ΔW[o, i] = Σ_k [row_k = o][col_k = i] · v_k, entry by entry in float64.
    private static Tensor NaiveDelta(SaRALinear layer, string adapter)
    {
        var values = layer.Values(adapter).detach().to(float64).data<double>().ToArray();
        var delta = new double[layer.OutFeatures, layer.InFeatures];
        var entries = Entries(layer, adapter);
        for (int k = 0; k < entries.Count; k++) delta[entries[k].Row, entries[k].Col] += values[k];
        return tensor(delta);
    }

    [Fact]
    public void SelectsTheRankTimesInPlusOutSmallestMagnitudesInRowMajorOrder()
    {
        using var scope = NewDisposeScope();
        var layer = Make(randomValues: false);
        var w = Weight(layer).detach().to(float64);
        long k = 2 * (12 + 10);
        Assert.Equal(new[] { 2L, k }, layer.Indices("default").shape);
        Assert.Equal(ScalarType.Int32, layer.Indices("default").dtype);
        Assert.Equal(new[] { k }, layer.Values("default").shape);
        // Naively: every entry sorted by |W|; the first k are the selection.
        var all = new List<(double Magnitude, long Row, long Col)>();
        for (long o = 0; o < 10; o++)
            for (long i = 0; i < 12; i++) all.Add((Math.Abs(w[o, i].item<double>()), o, i));
        var expected = all.OrderBy(e => e.Magnitude).Take((int)k).Select(e => (e.Row, e.Col)).OrderBy(e => e.Row).ThenBy(e => e.Col).ToList();
        Assert.Equal(expected, Entries(layer, "default"));
    }

    [Fact]
    public void AThresholdSelectsEveryWeightBelowIt()
    {
        using var scope = NewDisposeScope();
        var layer = Make(options: new SaRAOptions { Rank = 1, Threshold = 0.1 }, randomValues: false);
        var w = Weight(layer).detach();
        var expected = new List<(long, long)>();
        for (long o = 0; o < 10; o++)
            for (long i = 0; i < 12; i++)
                if (Math.Abs(w[o, i].item<float>()) < 0.1) expected.Add((o, i));
        Assert.NotEmpty(expected);
        Assert.NotEqual(1 * (12 + 10), expected.Count);
        Assert.Equal(expected, Entries(layer, "default"));
        Assert.Equal("SARA", layer.Options("default").PeftType);
    }

    [Fact]
    public void ForwardIsTheBaseWithTheSparseDeltaAdded()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var x = randn(5, 12, dtype: float64);
        var w = Weight(layer).detach().to(float64);
        var b = layer.BaseLayer.get_parameter("bias")!.detach().to(float64);
        var expected = x.matmul((w + NaiveDelta(layer, "default")).t()) + b;
        TensorAssert.Close(expected, layer.forward(x.to(float32)).to(float64), atol: 1e-5);
        TensorAssert.Close(NaiveDelta(layer, "default"), layer.DeltaWeight("default").to(float64), atol: 1e-7);
    }

    [Fact]
    public void StartsAtTheBaseLayer()
    {
        using var scope = NewDisposeScope();
        var layer = Make(randomValues: false);
        var x = randn(4, 12);
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));
    }

    [Fact]
    public void GradientsReachOnlyTheSelectedValuesAndEqualTheNaiveSum()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var trainable = layer.parameters().Where(p => p.requires_grad).ToList();
        Assert.Single(trainable); // the [K] values; W, its bias and the indices have none
        var x = randn(6, 12);
        var g = randn(6, 10);
        layer.forward(x).mul(g).sum().backward();
        // ∂L/∂v_k = Σ_n g[n, row_k] · x[n, col_k]
        var xd = x.to(float64);
        var gd = g.to(float64);
        var entries = Entries(layer, "default");
        var expected = new double[entries.Count];
        for (int k = 0; k < entries.Count; k++)
            for (long n = 0; n < 6; n++)
                expected[k] += gd[n, entries[k].Row].item<double>() * xd[n, entries[k].Col].item<double>();
        TensorAssert.Close(tensor(expected), layer.Values("default").grad!.to(float64), atol: 1e-5);
        Assert.Null(Weight(layer).grad);
    }

    [Fact]
    public void MergeMatchesUnmergedForwardAndUnmergeRestores()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var x = randn(4, 12);
        var before = Weight(layer).detach().clone();
        var unmerged = layer.forward(x);
        layer.Merge(new[] { "default" });
        TensorAssert.Close(before + NaiveDelta(layer, "default").to(float32), Weight(layer), atol: 1e-7);
        TensorAssert.Close(unmerged, layer.forward(x), atol: 1e-5);
        layer.Unmerge();
        TensorAssert.Close(before, Weight(layer), atol: 1e-7);
        TensorAssert.Close(unmerged, layer.forward(x), atol: 1e-6);
    }

    [Fact]
    public void ReselectionFreezesTheEntriesThatGrewPastTheCut()
    {
        using var scope = NewDisposeScope();
        var layer = Make(randomValues: false);
        var w = Weight(layer).detach();
        var entries = Entries(layer, "default");
        double cut = entries.Max(e => Math.Abs(w[e.Row, e.Col].item<float>()));
        using (no_grad())
        {
            var v = layer.Values("default");
            v.zero_();
            v[0] = tensor(10f); // grows far past the cut
            v[1] = tensor(1e-5f); // stays within it
        }
        long training = layer.Reselect("default");
        var mask = layer.Training("default")!;
        Assert.False(mask[0].item<bool>());
        Assert.True(mask[1].item<bool>());
        Assert.Equal(entries.Count - 1, training);
        Assert.True(Math.Abs(w[entries[1].Row, entries[1].Col].item<float>() + 1e-5) <= cut);

        // A frozen entry gets no gradient and keeps its value however the optimizer moves it.
        var optimizer = optim.AdamW(new[] { layer.Values("default") }, 0.1);
        layer.train();
        for (int step = 0; step < 3; step++)
        {
            optimizer.zero_grad();
            layer.forward(randn(8, 12)).square().sum().backward();
            Assert.Equal(0f, layer.Values("default").grad![0].item<float>());
            optimizer.step();
        }
        TensorAssert.Close(NaiveDelta(layer, "default").to(float32), layer.DeltaWeight("default"), atol: 1e-7); // restored before it acts
        Assert.Equal(10f, layer.Values("default")[0].item<float>());
        Assert.NotEqual(1e-5f, layer.Values("default")[1].item<float>()); // the others trained
        Assert.Equal(10f, layer.AdapterParameters("default").Single().Parameter[0].item<float>()); // and what a save reads
    }

    [Fact]
    public void ReselectAfterRunsBeforeTheNextTrainingStep()
    {
        using var scope = NewDisposeScope();
        var layer = Make(options: new SaRAOptions { Rank = 2, ReselectAfter = 2 }, randomValues: false);
        layer.train();
        using (no_grad()) layer.Values("default")[3] = tensor(50f);
        layer.forward(randn(2, 12));
        layer.forward(randn(2, 12));
        Assert.Null(layer.Training("default"));
        using (no_grad()) layer.forward(randn(2, 12)); // no gradient: not a training step
        Assert.Null(layer.Training("default"));
        layer.forward(randn(2, 12));
        Assert.False(layer.Training("default")![3].item<bool>());
    }

    [Fact]
    public void TheNuclearNormRegulariserIsTheNaiveOneAndTheTrainerAddsIt()
    {
        using var scope = NewDisposeScope();
        var layer = Make(options: new SaRAOptions { Rank = 2, NuclearNormWeight = 0.3 });
        // ‖W ⊙ M‖_* with W + ΔW at the selected entries and zero elsewhere; its gradient in v_k is λ·(U Vᵀ)[row_k, col_k].
        var w = Weight(layer).detach().to(float64);
        var values = layer.Values("default").detach().to(float64);
        var entries = Entries(layer, "default");
        var masked = zeros(10, 12, dtype: float64);
        for (int k = 0; k < entries.Count; k++)
            masked[entries[k].Row, entries[k].Col] = w[entries[k].Row, entries[k].Col] + values[k];
        var (u, s, vh) = linalg.svd(masked, fullMatrices: false);
        var loss = layer.RegularizationLoss()!;
        Assert.Equal(0.3 * s.sum().item<double>(), loss.item<float>(), 4);
        loss.backward();
        var uv = u.matmul(vh);
        var expected = entries.Select(e => 0.3 * uv[e.Row, e.Col].item<double>()).ToArray();
        TensorAssert.Close(tensor(expected), layer.Values("default").grad!.to(float64), atol: 1e-5);

        layer.Values("default").grad!.zero_();
        var x = randn(8, 12);
        var trainer = new AdapterTrainer(layer, optim.SGD(new[] { layer.Values("default") }, 0.0));
        double dataLoss;
        using (no_grad()) dataLoss = layer.forward(x).square().mean().item<float>();
        double reported = trainer.Step(() => layer.forward(x).square().mean());
        Assert.Equal(dataLoss + 0.3 * s.sum().item<double>(), reported, 4);
        Assert.Null(Make(options: new SaRAOptions { Rank = 2 }).RegularizationLoss());
    }

    [Fact]
    public void TrainingReducesTheLoss()
    {
        manual_seed(11);
        var target = nn.Linear(16, 8);
        var layer = (SaRALinear)SaRA.Wrap(nn.Linear(16, 8), "T.q", "default", new SaRAOptions { Rank = 3 });
        var (first, last) = MiscAdapterKit.Train(layer, x => target.forward(x));
        Assert.True(last < first * 0.6, $"loss {first} → {last}");
    }

    [Theory]
    [InlineData(0, 0.0, 0, 0.0, "T.q: SaRA rank must be at least 1, got 0")]
    [InlineData(6, 0.0, 0, 0.0, "T.q: SaRA rank 6 selects 6·(12 + 10) = 132 weights, more than the layer's 120; use a rank from 1 to 5")]
    [InlineData(2, -0.5, 0, 0.0, "T.q: SaRA threshold must be at least 0, got -0.5")]
    [InlineData(2, 0.0, -1, 0.0, "T.q: SaRA reselect after must be at least 0, got -1")]
    [InlineData(2, 0.0, 0, -1e-3, "T.q: SaRA nuclear norm weight must be at least 0, got -0.001")]
    public void InvalidOptionsFailAtRegistrationNamingTheSite(int rank, double threshold, int reselect, double nuclear, string message)
    {
        var options = new SaRAOptions { Rank = rank, Threshold = threshold, ReselectAfter = reselect, NuclearNormWeight = nuclear };
        var ex = Assert.Throws<ArgumentException>(() => SaRA.Wrap(nn.Linear(12, 10), "T.q", "default", options));
        Assert.Equal(message, ex.Message);
    }

    [Fact]
    public void AThresholdBelowEveryWeightIsRefused()
    {
        var linear = nn.Linear(12, 10);
        using (no_grad()) linear.weight!.fill_(0.5f);
        var ex = Assert.Throws<ArgumentException>(() => SaRA.Wrap(linear, "T.q", "default", new SaRAOptions { Rank = 1, Threshold = 0.1 }));
        Assert.Equal("T.q: SaRA threshold 0.1 selects no weight of the layer (its smallest |W| is 0.5); raise Threshold", ex.Message);
    }

    private static (nn.Module Root, SaRALinear Q, SaRALinear V) TwoLayers(int seed, SaRAOptions? v = null)
    {
        manual_seed(seed);
        var q = (SaRALinear)SaRA.Wrap(nn.Linear(16, 8), "T.q", "default", new SaRAOptions { Rank = 2 });
        var vLayer = (SaRALinear)SaRA.Wrap(nn.Linear(12, 20), "T.v", "default", v ?? new SaRAOptions { Rank = 2 });
        RandomValues(q, "default");
        RandomValues(vLayer, "default");
        return (nn.Sequential(("q", q), ("v", vLayer)), q, vLayer);
    }

    [Fact]
    public void SavesShirasKeysAndConfigAndLoadsThemBack()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, q, v) = TwoLayers(3);
        MiscAdapterKit.Attach(root).SaveAdapters(folder.Path);

        var header = Safetensors.ReadHeader(Path.Combine(folder.Path, PeftAdapterFormat.WeightsFileName));
        var entries = header.Entries.ToDictionary(e => e.Name);
        Assert.Equal(new[] { "base_model.model.q.shira_indices", "base_model.model.q.shira_weight", "base_model.model.v.shira_indices", "base_model.model.v.shira_weight" },
            entries.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray());
        Assert.Equal(new long[] { 2 * (16 + 8) }, entries["base_model.model.q.shira_weight"].Shape);
        Assert.Equal(new long[] { 2, 2 * (16 + 8) }, entries["base_model.model.q.shira_indices"].Shape);
        Assert.Equal("I32", entries["base_model.model.q.shira_indices"].DType);
        Assert.Equal("F32", entries["base_model.model.v.shira_weight"].DType);

        var config = MiscAdapterKit.Config(folder.Path);
        Assert.Equal("SHIRA", config["peft_type"]!.GetValue<string>());
        Assert.Equal(2, config["r"]!.GetValue<int>());
        Assert.Equal("random", config["mask_type"]!.GetValue<string>());
        Assert.True(config["init_weights"]!.GetValue<bool>());
        Assert.False(config.ContainsKey("rank_pattern")); // ShiraConfig has none
        Assert.Equal(new[] { "q", "v" }, MiscAdapterKit.Strings(config["target_modules"]));

        // Another model: same base, other values, and on q other indices (as PEFT's random mask would give): the file's replace them.
        var (root2, q2, v2) = TwoLayers(4);
        MiscAdapterKit.CopyBase(root, root2);
        using (no_grad()) q2.Indices("default")[1].copy_(q2.Indices("default")[1].flip(0));
        MiscAdapterKit.Attach(root2).LoadAdapters(folder.Path);
        TensorAssert.Equal(q.Indices("default"), q2.Indices("default"));
        TensorAssert.Equal(q.Values("default"), q2.Values("default"));
        var xq = randn(3, 16);
        var xv = randn(3, 12);
        TensorAssert.Equal(q.forward(xq), q2.forward(xq));
        TensorAssert.Equal(v.forward(xv), v2.forward(xv));
    }

    [Fact]
    public void AThresholdAdapterSavesAsSaraAndLoadsBack()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, _, v) = TwoLayers(5, new SaRAOptions { Rank = 2, Threshold = 0.05 });
        // Two layers of one adapter must agree on the type: a SHiRA q and a SARA v are refused as PEFT017 words it.
        var ex = Assert.Throws<InvalidOperationException>(() => MiscAdapterKit.Attach(root));
        Assert.Equal(PeftMessages.Format(PeftMessages.SharedConfigMismatch, "v", "default", "peft_type", "\"SARA\"", "\"SHIRA\"", "q"), ex.Message);

        var only = nn.Sequential(("v", v));
        MiscAdapterKit.Attach(only).SaveAdapters(folder.Path);
        var config = MiscAdapterKit.Config(folder.Path);
        Assert.Equal("SARA", config["peft_type"]!.GetValue<string>());
        Assert.Equal(0.05, config["threshold"]!.GetValue<double>());
        Assert.False(config.ContainsKey("mask_type"));
        var keys = MiscAdapterKit.Keys(folder.Path);
        Assert.Equal(v.Values("default").shape, keys["base_model.model.v.shira_weight"]);

        // A fresh layer on the same base weight selects the same count (the threshold's selection depends on W).
        var linear = nn.Linear(12, 20);
        using (no_grad())
        {
            linear.weight!.copy_(v.BaseLayer.get_parameter("weight")!);
            linear.bias!.copy_(v.BaseLayer.get_parameter("bias")!);
        }
        var v2 = (SaRALinear)SaRA.Wrap(linear, "T.v", "default", new SaRAOptions { Rank = 2, Threshold = 0.05 });
        var only2 = nn.Sequential(("v", v2));
        Assert.Equal(v.Values("default").shape, v2.Values("default").shape);
        Assert.False(TensorAssert.Same(v.Values("default"), v2.Values("default")));
        MiscAdapterKit.Attach(only2).LoadAdapters(folder.Path);
        var x = randn(3, 12);
        TensorAssert.Equal(v.forward(x), v2.forward(x));
    }

    [Fact]
    public void IndicesOutsideTheLayerAreRefusedNamingTheKey()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, q, _) = TwoLayers(6);
        MiscAdapterKit.Attach(root).SaveAdapters(folder.Path);
        string weights = Path.Combine(folder.Path, PeftAdapterFormat.WeightsFileName);
        var rewritten = new List<KeyValuePair<string, Tensor>>();
        using (var file = Safetensors.Read(weights))
            foreach (var (key, t) in file.Tensors)
            {
                var copy = t.clone();
                if (key == "base_model.model.q.shira_indices") copy[0, 0] = tensor(8, int32); // q has 8 rows
                rewritten.Add(new(key, copy));
            }
        Safetensors.Write(weights, rewritten, new Dictionary<string, string> { ["format"] = "pt" });

        var (root2, q2, _) = TwoLayers(7);
        var before = q2.Values("default").detach().clone();
        var ex = Assert.Throws<InvalidDataException>(() => MiscAdapterKit.Attach(root2).LoadAdapters(folder.Path));
        Assert.Contains("base_model.model.q.shira_indices", ex.Message);
        Assert.Contains("outside [0, 8)", ex.Message);
        TensorAssert.Equal(before, q2.Values("default")); // nothing assigned
    }
}
