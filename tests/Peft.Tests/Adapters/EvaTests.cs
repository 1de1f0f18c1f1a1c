using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using Peft.Runtime.Training;
using Peft.Tests.EndToEnd;
using Peft.Tests.IO;
using Peft.Tests.SharedData;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

/// <summary>
/// EVA's init (<c>LoRAInit.Eva</c>, <c>model.InitializeEva</c>) against its formulas written out naively in float64:
/// the components are the top eigenvectors of the centred inputs' scatter matrix with PEFT's sign rule, the ranks are
/// PEFT's redistribution, and the file is a plain LoRA with <c>rank_pattern</c> / <c>alpha_pattern</c>.
/// </summary>
public sealed class EvaTests
{
    /// <summary>Rows z·diag(√λ)·Qᵀ + μ: covariance Q·diag(λ)·Qᵀ, mean μ.</summary>
    private static Tensor Draw(Generator g, long rows, Tensor q, double[] lambda, double meanScale = 3)
    {
        var z = randn(new long[] { rows, lambda.Length }, dtype: float64, generator: g);
        var mu = randn(new long[] { lambda.Length }, dtype: float64, generator: g).mul(meanScale);
        return z.mul(tensor(lambda, dtype: float64).sqrt()).matmul(q.t()).add(mu);
    }

    private static Tensor Orthogonal(Generator g, int d) => linalg.qr(randn(new long[] { d, d }, dtype: float64, generator: g)).Q;

    /// <summary>The top-k eigenvectors of the centred scatter matrix as rows, largest |entry| of each made positive (PEFT's svd_flip).</summary>
    private static Tensor NaiveComponents(Tensor x, int k)
    {
        var centred = x.sub(x.mean(new long[] { 0 }));
        var (values, vectors) = linalg.eigh(centred.t().matmul(centred));
        var top = vectors.flip(1).narrow(1, 0, k).t();
        return FlipSigns(top);
    }

    private static Tensor FlipSigns(Tensor rows) => rows.mul(rows.gather(1, rows.abs().argmax(1, keepdim: true)).sign());

    private static LoRALinear Layer(IPeftModel model, string path) => (LoRALinear)model.AdapterLayers.Single(l => l.Path == path).Layer;

    [Fact]
    public void KnownCovariance_ARowsAreTheTopEigenvectorsWithPeftsSignRule()
    {
        var g = new Generator().manual_seed(1);
        var q = Orthogonal(g, 8);
        var lambda = new[] { 16.0, 8, 4, 2, 1, 0.5, 0.25, 0.125 };
        var x = Draw(g, 4000, q, lambda);
        var model = new EvaSingle();
        Assert.True(Layer(model, "a").AwaitsEva("default"));

        model.InitializeEva(new[] { x.to(float32) });

        var a = Layer(model, "a").LoraA("default").detach().to(float64);
        Assert.Equal(new long[] { 4, 8 }, a.shape); // one layer keeps the budget: rank 4
        // Exactly the sample's eigenvectors (float32 inputs, float64 arithmetic) ...
        TensorAssert.Close(NaiveComponents(x.to(float32).to(float64), 4), a, rtol: 1e-4, atol: 1e-5);
        // ... and close to the drawn covariance's own (the mean of 3·N(0, 1) per feature is taken out).
        var truth = FlipSigns(q.narrow(1, 0, 4).t().contiguous());
        Assert.True(a.mul(truth).sum(1).min().item<double>() > 0.99, "A's rows are not the covariance's top eigenvectors");
        Assert.True(Layer(model, "a").LoraB("default").detach().abs().max().item<float>() == 0f, "B must start at zero");
        Assert.False(Layer(model, "a").AwaitsEva("default"));
    }

    [Fact]
    public void IncrementalPca_OverSeveralBatches_EqualsThePcaOfAllRows()
    {
        // With as many components as features, the incremental fit loses nothing: it must equal one PCA of every row,
        // which checks the mean-centring and the mean-correction row.
        var g = new Generator().manual_seed(2);
        var q = Orthogonal(g, 6);
        var lambda = new[] { 9.0, 5, 3, 2, 1, 0.5 };
        var batches = Enumerable.Range(0, 3).Select(i => Draw(g, 200 + 50 * i, q, lambda, meanScale: 1 + i)).ToList();
        var pca = new IncrementalPca(6);
        foreach (var b in batches) pca.PartialFit(b);
        var all = cat(batches, 0);
        TensorAssert.Close(NaiveComponents(all, 6), pca.ComponentsOrNull!, rtol: 1e-8, atol: 1e-9);
        var centred = all.sub(all.mean(new long[] { 0 }));
        var eig = linalg.eigvalsh(centred.t().matmul(centred)).flip(0);
        var ratios = eig.div(eig.sum());
        TensorAssert.Close(ratios, tensor(pca.Ratios, dtype: float64), rtol: 1e-9, atol: 1e-12);
    }

    [Fact]
    public void Whiten_DividesEachRowByTheSquareRootOfItsSingularValue()
    {
        var g = new Generator().manual_seed(3);
        var x = Draw(g, 1000, Orthogonal(g, 8), new[] { 16.0, 8, 4, 2, 1, 0.5, 0.25, 0.125 }).to(float32);
        var plain = new EvaSingle();
        plain.InitializeEva(new[] { x });
        var whitened = new EvaSingle();
        whitened.InitializeEva(new[] { x }, new EvaOptions { Whiten = true });
        var centred = x.to(float64).sub(x.to(float64).mean(new long[] { 0 }));
        // The one batch is fitted twice before the components repeat (cos = 1): the incremental PCA's σ then stands for
        // both passes, √2 times the batch's own (PEFT whitens by the same running σ).
        var sigma = linalg.svdvals(centred).narrow(0, 0, 4).mul(Math.Sqrt(2));
        var expected = Layer(plain, "a").LoraA("default").detach().to(float64).div(sigma.sqrt().unsqueeze(1));
        TensorAssert.Close(expected, Layer(whitened, "a").LoraA("default").detach().to(float64), rtol: 1e-4, atol: 1e-6);
    }

    [Fact]
    public void LayerFedRankOneInputs_LosesItsBudgetToTheOther()
    {
        var g = new Generator().manual_seed(4);
        var u = randn(new long[] { 8 }, dtype: float64, generator: g);
        var q = Orthogonal(g, 8);
        var lambda = new[] { 16.0, 8, 4, 2, 1, 0.5, 0.25, 0.125 };
        var batches = Enumerable.Range(0, 3).Select(_ =>
        {
            var t = randn(new long[] { 2000, 1 }, dtype: float64, generator: g);
            return cat(new[] { t.mul(u), Draw(g, 2000, q, lambda) }, 1).to(float32);
        }).ToList();
        var progress = new List<EvaProgress>();
        var model = new EvaTwo();
        model.InitializeEva(batches, new EvaOptions { Progress = new Collect(progress) });

        // Budget 8 (4 + 4), at most round(4·2) = 8 each: a's one direction explains all of its variance and takes one
        // rank; b's spread-out variance takes the other seven.
        Assert.Equal(1, Layer(model, "a").Options("default").Rank);
        Assert.Equal(7, Layer(model, "b").Options("default").Rank);
        Assert.Equal(8.0 * 1 / 4, Layer(model, "a").Options("default").Alpha);
        Assert.Equal(8.0 * 7 / 4, Layer(model, "b").Options("default").Alpha);
        Assert.Equal(2.0, Layer(model, "a").Options("default").Scaling); // α/r unchanged
        Assert.Equal(2.0, Layer(model, "b").Options("default").Scaling);
        var a = Layer(model, "a").LoraA("default").detach().to(float64);
        var expected = FlipSigns(u.div(u.norm()).unsqueeze(0));
        TensorAssert.Close(expected, a, rtol: 1e-5, atol: 1e-5);

        Assert.NotEmpty(progress);
        Assert.Equal(2, progress[^1].Converged);
        Assert.Equal(2, progress[^1].Layers);
        Assert.Equal(new[] { 1, 7 }, new[] { progress[^1].Ranks["a"], progress[^1].Ranks["b"] });
        Assert.Equal(Enumerable.Range(2, progress.Count), progress.Select(p => p.Batches));

        // With PEFT_INTEROP_OUT set (DIR/eva/ranks): the adapter (rank_pattern a: 1, b: 7; alpha_pattern) with B moved off zero, the base
        // and x, y, for tools/peft-interop/eva_check.py, which loads it in PEFT onto the same two-layer model.
        if (Environment.GetEnvironmentVariable(PeftWrittenTests.InteropOutVariable) is { Length: > 0 } root)
        {
            string caseDir = Path.Combine(root, "eva", "ranks"); // beside the eva case, where peft_interop.py check does not look
            PeftWrittenTests.Randomise(model, seed: 11);
            var x = batches[2].narrow(0, 0, 4);
            Tensor y;
            using (no_grad()) y = model.forward(x);
            model.SaveAdapters(Path.Combine(caseDir, "adapter"));
            Safetensors.Write(Path.Combine(caseDir, "base.safetensors"), model.named_parameters()
                .Where(p => p.name.Contains("base_layer")).Select(p => new KeyValuePair<string, Tensor>(p.name.Replace("base_layer.", ""), p.parameter.detach())).ToList());
            Safetensors.Write(Path.Combine(caseDir, "reference.safetensors"),
                new[] { new KeyValuePair<string, Tensor>("x", x), new KeyValuePair<string, Tensor>("y", y) });
        }
    }

    private sealed class Collect : IProgress<EvaProgress>
    {
        private readonly List<EvaProgress> _into;

        public Collect(List<EvaProgress> into) => _into = into;

        public void Report(EvaProgress value) => _into.Add(value);
    }

    /// <summary>Three layers of rank 1: rank-1, rank-2 and isotropic inputs. The isotropic one ends with rank 0.</summary>
    private static (EvaThree Model, List<Tensor> Batches) RankZeroCase()
    {
        var g = new Generator().manual_seed(5);
        var u = randn(new long[] { 8 }, dtype: float64, generator: g);
        var basis = Orthogonal(g, 8).narrow(1, 0, 2);
        var batches = Enumerable.Range(0, 2).Select(_ =>
        {
            var rank1 = randn(new long[] { 1500, 1 }, dtype: float64, generator: g).mul(u);
            var rank2 = randn(new long[] { 1500, 2 }, dtype: float64, generator: g).mul(tensor(new[] { 3.0, 2.0 }, dtype: float64)).matmul(basis.t());
            var iso = randn(new long[] { 1500, 8 }, dtype: float64, generator: g);
            return cat(new[] { rank1, rank2, iso }, 1).to(float32);
        }).ToList();
        var model = new EvaThree();
        model.InitializeEva(batches);
        return (model, batches);
    }

    [Fact]
    public void LayerRedistributedToRankZero_HasNoAdapterAfterwards()
    {
        var (model, _) = RankZeroCase();
        Assert.Equal(1, Layer(model, "a").Options("default").Rank);
        Assert.Equal(2, Layer(model, "b").Options("default").Rank);
        Assert.Empty(Layer(model, "c").AdapterNames);
        Assert.Equal(8 * 1 + 8 * 1 + 8 * 2 + 8 * 2, model.TrainableParameterCount);
    }

    [Fact]
    public void RedistributionFormula_EqualsANaiveReimplementation()
    {
        var rng = new Random(6);
        for (int trial = 0; trial < 50; trial++)
        {
            // Four decompositions, one shared by a fifth layer (equal inputs); distinct ratios, largest first.
            var names = new[] { "l0", "l1", "l2", "l3" };
            var max = new Dictionary<string, int> { ["l0"] = rng.Next(1, 9), ["l1"] = rng.Next(1, 9), ["l2"] = rng.Next(1, 9), ["l3"] = rng.Next(1, 9) };
            max["l4"] = max["l1"] = Math.Max(max["l1"], rng.Next(1, 9));
            var ratios = names.ToDictionary(n => n, n => Enumerable.Range(0, max[n]).Select(_ => rng.NextDouble()).OrderByDescending(v => v).ToArray());
            var order = names.Select(n => (n, n)).Append(("l4", "l1")).ToList();
            int budget = rng.Next(1, max.Values.Sum() + 1);

            var ranks = Eva.DistributeRanks(order, ratios, max, budget);

            // Naive: the budget-th largest of all entries (a layer sharing a decomposition lists its entries again)
            // is the threshold; a layer's rank is how many of its entries reach it.
            var all = order.SelectMany(o => ratios[o.Item2].Take(max[o.Item1]).Select(v => (o.Item1, v))).ToList();
            var dupes = all.GroupBy(e => e.v).Where(gr => gr.Count() > 1).Select(gr => gr.Key).ToHashSet();
            double threshold = all.Select(e => e.v).OrderByDescending(v => v).ElementAt(budget - 1);
            if (dupes.Contains(threshold)) continue; // a tie at the cut: PEFT's order decides, tested below
            var naive = order.ToDictionary(o => o.Item1, o => all.Count(e => e.Item1 == o.Item1 && e.v >= threshold));
            Assert.Equal(budget, ranks.Values.Sum());
            foreach (var (layer, _) in order) Assert.Equal(naive[layer], ranks[layer]);
        }

        // A tie at the cut between a decomposition's holder and the layer sharing it: the holder gets the larger count.
        var tie = Eva.DistributeRanks(
            new[] { ("h", "h"), ("s", "h") }, new Dictionary<string, double[]> { ["h"] = new[] { 0.7, 0.3 } },
            new Dictionary<string, int> { ["h"] = 2, ["s"] = 2 }, budget: 3);
        Assert.Equal(2, tie["h"]);
        Assert.Equal(1, tie["s"]);
        Assert.Equal(2, Eva.MaxRank(1, 2.5)); // Python's round: half to even
        Assert.Equal(4, Eva.MaxRank(3, 1.5));
    }

    [Fact]
    public void LayersWithIdenticalInputs_ShareOneDecomposition()
    {
        var g = new Generator().manual_seed(7);
        var q = Orthogonal(g, 8);
        var lambda = new[] { 16.0, 8, 4, 2, 1, 0.5, 0.25, 0.125 };
        var batches = Enumerable.Range(0, 3).Select(_ => Draw(g, 1000, q, lambda).to(float32)).ToList();
        var model = new EvaAttention();
        model.InitializeEva(batches);
        var qa = Layer(model, "q").LoraA("default");
        Assert.Equal(qa.shape[0], Layer(model, "k").LoraA("default").shape[0]);
        Assert.Equal(qa.shape[0], Layer(model, "v").LoraA("default").shape[0]);
        TensorAssert.Equal(qa, Layer(model, "k").LoraA("default"));
        TensorAssert.Equal(qa, Layer(model, "v").LoraA("default"));
        Assert.Equal(8, model.AdapterLayers.Sum(l => l.Layer.AdapterNames.Count == 0 ? 0 : ((LoRALinear)l.Layer).Options("default").Rank));
    }

    [Fact]
    public void Training_RefusesAnEvaLayerNeverInitialised_NamingIt()
    {
        var model = new EvaTwo();
        var trainer = new AdapterTrainer(model, optim.SGD(model.TrainableParameters(), 0.1));
        var x = randn(4, 16);
        var ex = Assert.Throws<InvalidOperationException>(() => trainer.Step(() => model.forward(x).square().mean()));
        Assert.Contains("layer 'a'", ex.Message);
        Assert.Contains("LoRAInit.Eva", ex.Message);
        Assert.Contains("InitializeEva", ex.Message);
        var save = Assert.Throws<InvalidOperationException>(() => model.SaveAdapters(Path.Combine(Path.GetTempPath(), "eva-never-" + Guid.NewGuid().ToString("N"))));
        Assert.Contains("never initialised", save.Message);
    }

    [Fact]
    public void InitialisedModel_Trains()
    {
        var (model, batches) = RankZeroCase();
        var trainer = new AdapterTrainer(model, optim.SGD(model.TrainableParameters(), 1e-3));
        var x = batches[0].narrow(0, 0, 16);
        double first = trainer.Step(() => model.forward(x).square().mean());
        double second = trainer.Step(() => model.forward(x).square().mean());
        Assert.True(second < first, $"loss {first} then {second}");
    }

    [Fact]
    public void BadOptionsAndNoEvaAdapter_AreRefusedClearly()
    {
        var model = new EvaSingle();
        var x = randn(100, 8);
        Assert.Contains("Rho", Assert.Throws<ArgumentException>(() => model.InitializeEva(new[] { x }, new EvaOptions { Rho = 0.5 })).Message);
        Assert.Contains("Tau", Assert.Throws<ArgumentException>(() => model.InitializeEva(new[] { x }, new EvaOptions { Tau = 0 })).Message);
        Assert.Contains("at least one batch", Assert.Throws<ArgumentException>(() => model.InitializeEva(Array.Empty<Tensor>())).Message);
        model.InitializeEva(new[] { x });
        Assert.Contains("no adapter waits", Assert.Throws<InvalidOperationException>(() => model.InitializeEva(new[] { x })).Message);
    }

    [Fact]
    public void NeverConverging_StopsAtMaxBatchesNamingTheLayer()
    {
        var g = new Generator().manual_seed(8);
        var model = new EvaSingle();
        // Isotropic noise, new every batch: components never settle.
        var batches = Enumerable.Range(0, 50).Select(_ => randn(new long[] { 40, 8 }, generator: g)).ToList();
        var ex = Assert.Throws<InvalidOperationException>(() => model.InitializeEva(batches, new EvaOptions { MaxBatches = 5, Tau = 0.9999 }));
        Assert.Contains("'a'", ex.Message);
        Assert.True(Layer(model, "a").AwaitsEva("default"));
        Assert.False(Layer(model, "a").AdaptersDisabled); // state restored
    }

    [Fact]
    public void SavedFile_IsAPlainLoRAWithPatterns_AndReloadsOntoADeclaredModel()
    {
        var (model, batches) = RankZeroCase();
        PeftWrittenTests.Randomise(model, seed: 9);
        var x = batches[1].narrow(0, 0, 32);
        Tensor y;
        using (no_grad()) y = model.forward(x);
        using var folder = new TempFolder();
        string dir = folder.Path;
        model.SaveAdapters(dir);
        var config = AdapterConfig.Read(Path.Combine(dir, AdapterConfig.FileName));
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
        Assert.Equal(1, config["r"]!.GetValue<int>());
        Assert.Equal(2, config["rank_pattern"]!["b"]!.GetValue<int>());
        Assert.Equal(16.0, config["alpha_pattern"]!["b"]!.GetValue<double>());
        Assert.True(config["init_lora_weights"]!.GetValue<bool>());
        Assert.Equal(new[] { "a", "b" }, config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).Order());
        using (var file = Safetensors.Read(Path.Combine(dir, PeftAdapterFormat.WeightsFileName)))
            Assert.DoesNotContain(file.Tensors.Keys, k => k.Contains(".c."));

        var again = new EvaThree();
        MiscAdapterKit.CopyBase(model, again);
        again.LoadAdapters(dir);
        Assert.Empty(Layer(again, "c").AdapterNames);
        Assert.False(Layer(again, "a").AwaitsEva("default"));
        using (no_grad()) TensorAssert.Equal(y, again.forward(x));
        again.MergeAdapters();
        using (no_grad()) TensorAssert.Close(y, again.forward(x), rtol: 1e-5, atol: 1e-5);
    }

    /// <summary>PEFT's own EVA adapter (<c>init_lora_weights: "eva"</c> and <c>eva_config</c>) gives PEFT's outputs.</summary>
    [SharedDataFact(PeftWrittenTests.Folder)]
    public void PeftsEvaFile_LoadsAndGivesPeftsOutputs()
    {
        string dir = PeftWrittenTests.CaseFolder("eva");
        var model = new WrittenEva();
        PeftWrittenTests.LoadBase(model, Path.Combine(dir, "base.safetensors"));
        model.LoadAdapters(dir);
        model.eval();
        using var reference = Safetensors.Read(Path.Combine(dir, "reference.safetensors"));
        var x = reference.Tensors["x"];
        using var _ = no_grad();
        TensorAssert.Close(reference.Tensors["y"], model.forward(x), rtol: 1e-5, atol: 1e-5);
        model.MergeAdapters();
        TensorAssert.Close(reference.Tensors["y"], model.forward(x), rtol: 1e-5, atol: 1e-5);
    }

    /// <summary>
    /// EVA run here on the PEFT-written model's base (q, v, f share one input), B moved off zero, saved; it reloads. With
    /// <c>PEFT_INTEROP_OUT</c> set, the case is also written for <c>peft_interop.py check</c>, plus the batches
    /// (<c>eva/batches.safetensors</c>) for PEFT's own EVA on the same data.
    /// </summary>
    [SharedDataFact(PeftWrittenTests.Folder)]
    public void OurEvaOnPeftsModel_SavesAndReloads()
    {
        string dir = PeftWrittenTests.CaseFolder("eva");
        string? interopRoot = Environment.GetEnvironmentVariable(PeftWrittenTests.InteropOutVariable);
        using var temp = new TempFolder();
        string caseDir = string.IsNullOrEmpty(interopRoot) ? temp.Path : Path.Combine(interopRoot, "eva");
        var g = new Generator().manual_seed(10);
        var q = Orthogonal(g, 16);
        var lambda = Enumerable.Range(0, 16).Select(i => Math.Pow(0.6, i) * 10).ToArray();
        // One batch, cycled: both PEFT and PeftDsl then fit it twice and stop (cos = 1), so their components are the
        // same batch's eigenvectors and comparable to rounding (several batches would make each side's stopping
        // point, and so its estimate, depend on its own rounding).
        var batches = new List<Tensor> { Draw(g, 2048, q, lambda).to(float32) };
        var model = new WrittenEva();
        PeftWrittenTests.LoadBase(model, Path.Combine(dir, "base.safetensors"));
        model.InitializeEva(batches);
        var a = Layer(model, "q").LoraA("default");
        TensorAssert.Equal(a, Layer(model, "v").LoraA("default"));
        using (no_grad())
            foreach (var path in new[] { "q", "v", "f" })
                Layer(model, path).LoraB("default").normal_(0, 0.1, generator: g);
        model.eval();
        var x = batches[0].narrow(0, 0, 3);
        Tensor y;
        using (no_grad()) y = model.forward(x);

        model.SaveAdapters(Path.Combine(caseDir, "adapter"));
        PeftWrittenTests.WriteBaseAndReference(dir, caseDir, x, y);
        Safetensors.Write(Path.Combine(caseDir, "batches.safetensors"),
            batches.Select((b, i) => new KeyValuePair<string, Tensor>($"batch{i}", b)).ToList());

        var again = new WrittenEva();
        PeftWrittenTests.LoadBase(again, Path.Combine(dir, "base.safetensors"));
        again.LoadAdapters(Path.Combine(caseDir, "adapter"));
        again.eval();
        using (no_grad()) TensorAssert.Equal(y, again.forward(x));
    }
}
