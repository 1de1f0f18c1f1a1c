using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using Peft.Tests.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

public class RandLoRATests
{
    /// <summary>A float64 layer with random λ and γ (PEFT starts λ at zero, which hides every term).</summary>
    private static RandLoRALinear Make(long inF, long outF, int rank, double alpha = 8, int seed = 0)
    {
        manual_seed(1);
        var layer = new RandLoRALinear("T.q", nn.Linear(inF, outF, dtype: float64), "default",
            new RandLoRAOptions { Rank = rank, Alpha = alpha, ProjectionSeed = seed });
        Randomize(layer, "default", 2);
        return layer;
    }

    private static void Randomize(RandLoRALinear layer, string adapter, int seed)
    {
        manual_seed(seed);
        using (no_grad())
        {
            layer.Lambda(adapter).normal_();
            layer.Gamma(adapter).normal_();
        }
    }

    /// <summary>
    /// PEFT's ΔW entry by entry: with M the index on the larger side and m on the smaller, and k running over r·n,
    /// term k pairs row k of Ã (rank ⌊k/n⌋, basis k mod n) with column k of B̃ (basis ⌊k/r⌋, rank k mod r):
    /// ΔW[M, m] (transposed when in &gt; out) = s · Σ_k B[M, ⌊k/r⌋, k mod r] · λ[⌊k/n⌋, k mod n] · A[⌊k/n⌋, 0, m] · γ[k mod n, m].
    /// </summary>
    private static double[,] NaiveDelta(RandLoRALinear layer, string adapter)
    {
        var o = layer.Options(adapter);
        var a = layer.BasisA(adapter).to(float64).data<double>().ToArray();
        var b = layer.BasisB(adapter).to(float64).data<double>().ToArray();
        var lambda = layer.Lambda(adapter).detach().to(float64).data<double>().ToArray();
        var gamma = layer.Gamma(adapter).detach().to(float64).data<double>().ToArray();
        long dMin = layer.BasisA(adapter).shape[2], nbAll = layer.BasisB(adapter).shape[1];
        int r = o.Rank;
        long n = layer.NumBases(adapter), min = layer.MinDim, max = layer.MaxDim;
        double s = o.Alpha / r;
        var delta = new double[layer.OutFeatures, layer.InFeatures];
        for (long bigI = 0; bigI < max; bigI++)
            for (long m = 0; m < min; m++)
            {
                double sum = 0;
                for (long k = 0; k < r * n; k++)
                {
                    long i = k / n, j = k % n, jb = k / r, ib = k % r;
                    sum += b[(bigI * nbAll + jb) * r + ib] * lambda[i * n + j] * a[i * dMin + m] * gamma[j * min + m];
                }
                if (layer.InFeatures <= layer.OutFeatures) delta[bigI, m] = s * sum;
                else delta[m, bigI] = s * sum;
            }
        return delta;
    }

    private static Tensor W(RandLoRALinear layer) => layer.BaseLayer.get_parameter("weight")!;

    private static Tensor? Bias(RandLoRALinear layer) => layer.BaseLayer.get_parameter("bias")?.detach();

    private static Tensor ToTensor(double[,] values) => tensor(values.Cast<double>().ToArray(), new long[] { values.GetLength(0), values.GetLength(1) }, float64);

    public static IEnumerable<object[]> Shapes() => new[]
    {
        new object[] { 6L, 10L, 4 },  // in ≤ out, n = 2 with a partial last basis
        new object[] { 10L, 6L, 4 },  // in > out: PEFT's transposed order
        new object[] { 8L, 8L, 2 },   // square, n = 4
        new object[] { 5L, 7L, 9 },   // rank above min(in, out): one basis
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void DeltaWeightMatchesPeftsIndexOrderEntryByEntry(long inF, long outF, int rank)
    {
        using var scope = NewDisposeScope();
        var layer = Make(inF, outF, rank);
        TensorAssert.Close(ToTensor(NaiveDelta(layer, "default")), layer.DeltaWeight("default"), 1e-12, 1e-12);
    }

    /// <summary>Each shape with each forward: the factored product and ΔW formed once (chosen by size otherwise).</summary>
    public static IEnumerable<object[]> ShapesAndPaths() => Shapes().SelectMany(s => new[] { s.Append(false).ToArray(), s.Append(true).ToArray() });

    [Theory]
    [MemberData(nameof(ShapesAndPaths))]
    public void ForwardIsBasePlusTheNaiveDelta(long inF, long outF, int rank, bool formDelta)
    {
        using var scope = NewDisposeScope();
        var layer = Make(inF, outF, rank);
        layer.FormDelta = formDelta;
        var x = randn(5, inF, dtype: float64);
        var expected = nn.functional.linear(x, W(layer).detach().add(ToTensor(NaiveDelta(layer, "default"))), Bias(layer));
        TensorAssert.Close(expected, layer.forward(x), 1e-12, 1e-12);
    }

    [Theory]
    [MemberData(nameof(ShapesAndPaths))]
    public void GradientsOfLambdaAndGammaMatchTheNaiveSums(long inF, long outF, int rank, bool formDelta)
    {
        using var scope = NewDisposeScope();
        var layer = Make(inF, outF, rank, alpha: 6);
        layer.FormDelta = formDelta;
        var x = randn(5, inF, dtype: float64);
        var w = randn(5, outF, dtype: float64);
        layer.forward(x).mul(w).sum().backward();

        // ∂L/∂ΔW[o, c] = Σ_t w[t, o]·x[t, c]; then the chain rule through the sum above, term by term.
        var dW = matmul(w.t(), x).data<double>().ToArray();
        var o = layer.Options("default");
        var a = layer.BasisA("default").data<double>().ToArray();
        var b = layer.BasisB("default").data<double>().ToArray();
        var lambda = layer.Lambda("default").detach().data<double>().ToArray();
        var gamma = layer.Gamma("default").detach().data<double>().ToArray();
        long dMin = layer.BasisA("default").shape[2], nbAll = layer.BasisB("default").shape[1];
        int r = o.Rank;
        long n = layer.NumBases("default"), min = layer.MinDim, max = layer.MaxDim;
        double s = o.Alpha / r;
        var gLambda = new double[r * n];
        var gGamma = new double[n * min];
        for (long bigI = 0; bigI < max; bigI++)
            for (long m = 0; m < min; m++)
            {
                double g = inF <= outF ? dW[bigI * inF + m] : dW[m * inF + bigI];
                for (long k = 0; k < r * n; k++)
                {
                    long i = k / n, j = k % n;
                    double bv = b[(bigI * nbAll + k / r) * r + k % r];
                    gLambda[i * n + j] += s * g * bv * a[i * dMin + m] * gamma[j * min + m];
                    gGamma[j * min + m] += s * g * bv * lambda[i * n + j] * a[i * dMin + m];
                }
            }
        TensorAssert.Close(tensor(gLambda, new[] { (long)r, n }, float64), layer.Lambda("default").grad!, 1e-10, 1e-12);
        TensorAssert.Close(tensor(gGamma, new[] { n, min }, float64), layer.Gamma("default").grad!, 1e-10, 1e-12);
        // The bases are frozen buffers; the base layer is frozen too.
        Assert.False(layer.BasisA("default").requires_grad);
        Assert.False(layer.BasisB("default").requires_grad);
        Assert.Null(W(layer).grad);
    }

    [Fact]
    public void FormsTheDeltaOnceTheTokensOutweighTheLayer()
    {
        // d = 1024, r = 16 (k = 1024): the factored product costs 3·N·k·2d, forming ΔW 2·d²·k + N·d²: formed from N > 409.
        Assert.False(RandLoRALinear.FormsDelta(409, 1024, 1024, 1024));
        Assert.True(RandLoRALinear.FormsDelta(410, 1024, 1024, 1024));
        Assert.True(RandLoRALinear.FormsDelta(2048, 1024, 1024, 1024));
        Assert.False(RandLoRALinear.FormsDelta(1, 6, 10, 8));
        // Both paths agree, with dropout (which cannot fold into W) taking the factored one in training.
        using var scope = NewDisposeScope();
        var layer = Make(10, 6, 4);
        var x = randn(4, 10, dtype: float64);
        layer.FormDelta = true;
        var formed = layer.forward(x);
        layer.FormDelta = false;
        TensorAssert.Close(formed, layer.forward(x), 1e-12, 1e-12);
    }

    [Fact]
    public void StartsAtTheBaseLayerWithPeftsInitialValues()
    {
        using var scope = NewDisposeScope();
        var layer = new RandLoRALinear("T.q", nn.Linear(6, 10), "default", new RandLoRAOptions { Rank = 4 });
        Assert.Equal(new long[] { 4, 2 }, layer.Lambda("default").shape);
        Assert.Equal(new long[] { 2, 6 }, layer.Gamma("default").shape);
        Assert.Equal(0, layer.Lambda("default").abs().sum().item<float>());
        TensorAssert.Equal(full(2, 6, 1f / 6), layer.Gamma("default")); // 1 / max(n, min)
        Assert.Equal(640 / 4.0, layer.Options("default").Alpha / layer.Options("default").Rank);
        var x = randn(3, 6);
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));
    }

    // PyTorch 1.13 (Debian's python3-torch, ../shared/peft-python) running PEFT's _kaiming_init on a bf16 tensor and
    // the draw order of RandLoraModel._init_randlora_A_randlora_B (A, then n B-draws, each over its std):
    //   seed 0, r 4, min 6, max 10: A[:6] = 0.5703125 -1.046875 -0.142578125 0.828125 -0.7890625 1.59375, ΣA = -0.3388671875,
    //     B[:6] = -0.56640625 -0.66796875 0.5234375 -1.4609375 0.78125 -1.421875, ΣB = -5.21923828125
    //   seed 7, r 3, min 8, max 20: A[:6] = 0.7265625 1.046875 -1.59375 1.828125 -0.9453125 1.28125, ΣA = 1.75213623046875,
    //     B[:6] = 0.578125 -1.6796875 -0.6953125 1.1953125 1.2734375 -1.4296875, ΣB = 3.71478271484375
    [Theory]
    [InlineData(0, 4, 6, 10, new[] { 0.5703125, -1.046875, -0.142578125, 0.828125, -0.7890625, 1.59375 }, -0.3388671875,
        new[] { -0.56640625, -0.66796875, 0.5234375, -1.4609375, 0.78125, -1.421875 }, -5.21923828125)]
    [InlineData(7, 3, 8, 20, new[] { 0.7265625, 1.046875, -1.59375, 1.828125, -0.9453125, 1.28125 }, 1.75213623046875,
        new[] { 0.578125, -1.6796875, -0.6953125, 1.1953125, 1.2734375, -1.4296875 }, 3.71478271484375)]
    public void BasesEqualPyTorchsDraws(int seed, int rank, long min, long max, double[] aHead, double aSum, double[] bHead, double bSum)
    {
        using var scope = NewDisposeScope();
        var (a, b) = RandLoRABases.Draw(seed, rank, min, max);
        Assert.Equal(new[] { (long)rank, 1, min }, a.shape);
        Assert.Equal(new[] { max, RandLoRABases.Count(min, rank), (long)rank }, b.shape);
        Assert.Equal(aHead, a.flatten().narrow(0, 0, 6).to(float64).data<double>().ToArray());
        Assert.Equal(bHead, b.flatten().narrow(0, 0, 6).to(float64).data<double>().ToArray());
        Assert.Equal(aSum, a.sum().item<float>(), 5);
        Assert.Equal(bSum, b.sum().item<float>(), 4);
    }

    /// <summary>q: Linear(6, 10) (in ≤ out) and v: Linear(12, 4) (in &gt; out), so the shared bases are sized min 10, max 12.</summary>
    private static (nn.Module Root, RandLoRALinear Q, RandLoRALinear V) TwoLayers(int seed = 0, int rank = 4, int valueSeed = 3)
    {
        manual_seed(3);
        var q = (RandLoRALinear)RandLoRA.Wrap(nn.Linear(6, 10), "T.q", "default", new RandLoRAOptions { Rank = rank, Alpha = 8, ProjectionSeed = seed });
        var v = (RandLoRALinear)RandLoRA.Wrap(nn.Linear(12, 4), "T.v", "default", new RandLoRAOptions { Rank = rank, Alpha = 8, ProjectionSeed = seed });
        Randomize(q, "default", valueSeed);
        Randomize(v, "default", valueSeed + 1);
        return (nn.Sequential(("q", q), ("v", v)), q, v);
    }

    [Fact]
    public void AttachingSharesOnePairSizedByTheLargestLayers()
    {
        using var scope = NewDisposeScope();
        var (root, q, v) = TwoLayers(seed: 9, rank: 4);
        Assert.Equal(new long[] { 4, 1, 6 }, q.BasisA("default").shape); // own sizes before the model is known
        MiscAdapterKit.Attach(root);
        Assert.Same(q.BasisA("default"), v.BasisA("default"));
        Assert.Same(q.BasisB("default"), v.BasisB("default"));
        var (a, b) = RandLoRABases.Draw(9, 4, 10, 12);
        TensorAssert.Equal(a, q.BasisA("default"));
        TensorAssert.Equal(b, q.BasisB("default"));
        Assert.Equal(new long[] { 12, 3, 4 }, b.shape);
        Assert.DoesNotContain(root.named_parameters(), p => p.name.Contains("randlora_A") || p.name.Contains("randlora_B"));
        // Each layer still matches the formula on its slices of the shared bases.
        using (no_grad())
        {
            TensorAssert.Close(ToTensor(NaiveDelta(q, "default")).to(float32), q.DeltaWeight("default"), 1e-5, 1e-6);
            TensorAssert.Close(ToTensor(NaiveDelta(v, "default")).to(float32), v.DeltaWeight("default"), 1e-5, 1e-6);
        }
        var before = q.BasisA("default");
        MiscAdapterKit.Attach(root);
        Assert.Same(before, v.BasisA("default"));
    }

    [Fact]
    public void MergeMatchesUnmergedForwardAndUnmergeRestores()
    {
        using var scope = NewDisposeScope();
        foreach (var (inF, outF) in new[] { (6L, 10L), (10L, 6L) })
        {
            var layer = Make(inF, outF, 4);
            layer.eval();
            var x = randn(7, inF, dtype: float64);
            var weight = W(layer).detach().clone();
            var before = layer.forward(x);
            layer.Merge(new[] { "default" });
            TensorAssert.Close(weight.add(ToTensor(NaiveDelta(layer, "default"))), W(layer), 1e-12, 1e-12);
            TensorAssert.Close(before, layer.forward(x), 1e-12, 1e-12);
            layer.Unmerge();
            TensorAssert.Close(weight, W(layer), 1e-13, 1e-14);
            TensorAssert.Close(before, layer.forward(x), 1e-12, 1e-12);
        }
    }

    [Fact]
    public void NamedAdaptersAddTheirOwnDeltas()
    {
        using var scope = NewDisposeScope();
        var layer = Make(6, 10, 4);
        layer.AddAdapter("other", new RandLoRAOptions { Rank = 3, Alpha = 5, ProjectionSeed = 2 });
        Randomize(layer, "other", 11);
        Assert.Equal(new long[] { 3, 2 }, layer.Lambda("other").shape);
        layer.SetActiveAdapters(new[] { "default", "other" });
        var x = randn(4, 6, dtype: float64);
        var w = W(layer).detach().add(ToTensor(NaiveDelta(layer, "default"))).add(ToTensor(NaiveDelta(layer, "other")));
        TensorAssert.Close(nn.functional.linear(x, w, Bias(layer)), layer.forward(x), 1e-12, 1e-12);
        layer.SetActiveAdapters(new[] { "other" });
        w = W(layer).detach().add(ToTensor(NaiveDelta(layer, "other")));
        TensorAssert.Close(nn.functional.linear(x, w, Bias(layer)), layer.forward(x), 1e-12, 1e-12);
    }

    [Fact]
    public void DropoutActsOnTheAdapterInputInTrainingOnly()
    {
        using var scope = NewDisposeScope();
        var layer = new RandLoRALinear("T.q", nn.Linear(6, 10), "default", new RandLoRAOptions { Rank = 4, Alpha = 8, Dropout = 0.5 });
        Randomize(layer, "default", 4);
        var x = randn(64, 6);
        layer.eval();
        var evalOut = layer.forward(x);
        TensorAssert.Close(nn.functional.linear(x, W(layer).detach().add(layer.DeltaWeight("default").detach()), Bias(layer)), evalOut, 1e-5, 1e-5);
        layer.train();
        Assert.False(TensorAssert.Same(evalOut, layer.forward(x)));
    }

    [Theory]
    [InlineData(0, 0.0, "RandLoRA rank must be at least 1, got 0")]
    [InlineData(2, 1.0, "dropout 1 is outside [0, 1)")]
    [InlineData(2, double.NaN, "dropout NaN is outside [0, 1)")]
    public void InvalidOptionsFailAtRegistrationNamingTheSite(int rank, double dropout, string message)
    {
        var ex = Assert.Throws<ArgumentException>(() => new RandLoRALinear("T.q", nn.Linear(4, 4), "default", new RandLoRAOptions { Rank = rank, Dropout = dropout }));
        Assert.Equal("T.q: " + message, ex.Message);
    }

    [Fact]
    public void TrainingReducesTheLoss()
    {
        using var scope = NewDisposeScope();
        manual_seed(0);
        var layer = new RandLoRALinear("T.q", nn.Linear(16, 16), "default", new RandLoRAOptions { Rank = 4, Alpha = 8 });
        var target = nn.Linear(16, 16);
        var (first, last) = MiscAdapterKit.Train(layer, x => target.forward(x).detach(), steps: 200, lr: 1e-2);
        Assert.True(last < 0.7 * first, $"loss {first} → {last}");
    }

    [Fact]
    public void SavesPeftsKeysWithBothCopiesOfTheBasesAndLoadsThemBack()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, q, v) = TwoLayers(seed: 3, rank: 4, valueSeed: 5);
        MiscAdapterKit.Attach(root).SaveAdapters(folder.Path);

        var keys = MiscAdapterKit.Keys(folder.Path);
        Assert.Equal(new[]
        {
            "base_model.model.q.randlora_A", "base_model.model.q.randlora_B", "base_model.model.q.randlora_gamma", "base_model.model.q.randlora_lambda",
            "base_model.model.v.randlora_A", "base_model.model.v.randlora_B", "base_model.model.v.randlora_gamma", "base_model.model.v.randlora_lambda",
            "base_model.randlora_A", "base_model.randlora_B",
        }, keys.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray());
        Assert.Equal(new long[] { 4, 2 }, keys["base_model.model.q.randlora_lambda"]);  // n = ⌈6/4⌉
        Assert.Equal(new long[] { 2, 6 }, keys["base_model.model.q.randlora_gamma"]);
        Assert.Equal(new long[] { 4, 1 }, keys["base_model.model.v.randlora_lambda"]);  // n = ⌈4/4⌉
        Assert.Equal(new long[] { 1, 4 }, keys["base_model.model.v.randlora_gamma"]);
        Assert.Equal(new long[] { 4, 1, 10 }, keys["base_model.randlora_A"]);
        Assert.Equal(new long[] { 12, 3, 4 }, keys["base_model.randlora_B"]);
        Assert.Equal(new long[] { 12, 3, 4 }, keys["base_model.model.v.randlora_B"]);

        var config = MiscAdapterKit.Config(folder.Path);
        Assert.Equal("RANDLORA", config["peft_type"]!.GetValue<string>());
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.Equal(8.0, config["randlora_alpha"]!.GetValue<double>());
        Assert.Equal(3, config["projection_prng_key"]!.GetValue<int>());
        Assert.True(config["save_projection"]!.GetValue<bool>());
        Assert.False(config["sparse"]!.GetValue<bool>());
        Assert.Equal(new[] { "q", "v" }, MiscAdapterKit.Strings(config["target_modules"]));

        // Read either copy: the full file, then only the per-layer copies, then only the model's.
        foreach (var drop in new[] { "", "base_model.randlora_", "base_model.model." })
        {
            using var variant = new TempFolder();
            foreach (var f in Directory.GetFiles(folder.Path)) File.Copy(f, Path.Combine(variant.Path, Path.GetFileName(f)));
            if (drop != "") Rewrite(variant.Path, k => !(k.StartsWith(drop, StringComparison.Ordinal) && (k.Contains(".randlora_A") || k.Contains(".randlora_B") || drop.EndsWith("_", StringComparison.Ordinal))));
            var (root2, q2, v2) = TwoLayers(seed: 99, rank: 4, valueSeed: 77);
            MiscAdapterKit.CopyBase(root, root2);
            MiscAdapterKit.Attach(root2).LoadAdapters(variant.Path);
            TensorAssert.Equal(q.BasisA("default"), q2.BasisA("default"));
            TensorAssert.Equal(v.BasisB("default"), v2.BasisB("default"));
            Assert.Same(q2.BasisA("default"), v2.BasisA("default"));
            Assert.Equal(3, q2.Options("default").ProjectionSeed);
            var xq = randn(3, 6);
            var xv = randn(3, 12);
            TensorAssert.Equal(q.forward(xq), q2.forward(xq));
            TensorAssert.Equal(v.forward(xv), v2.forward(xv));
        }
    }

    private static void Rewrite(string folder, Func<string, bool> keep)
    {
        string weights = Path.Combine(folder, PeftAdapterFormat.WeightsFileName);
        var kept = new List<KeyValuePair<string, Tensor>>();
        using (var file = Safetensors.Read(weights))
            foreach (var (key, tensor) in file.Tensors)
                if (keep(key)) kept.Add(new(key, tensor.clone()));
        Safetensors.Write(weights, kept, new Dictionary<string, string> { ["format"] = "pt" });
    }

    [Fact]
    public void AFileWithoutBasesLoadsWhenTheSeedMatchesAndIsRefusedOtherwise()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, q, _) = TwoLayers(seed: 3, rank: 4);
        foreach (var layer in new[] { q })
            Assert.True(layer.FileHoldsSharedTensors(layer.Settings("default")));
        MiscAdapterKit.Attach(root).SaveAdapters(folder.Path);
        Rewrite(folder.Path, k => !k.Contains("randlora_A") && !k.Contains("randlora_B"));
        var config = MiscAdapterKit.Config(folder.Path);
        config["save_projection"] = false;
        File.WriteAllText(Path.Combine(folder.Path, AdapterConfig.FileName), config.ToJsonString());

        var (sameRoot, sameQ, _) = TwoLayers(seed: 3, rank: 4, valueSeed: 8);
        MiscAdapterKit.Attach(sameRoot).LoadAdapters(folder.Path);
        TensorAssert.Equal(q.DeltaWeight("default"), sameQ.DeltaWeight("default"));

        var (otherRoot, otherQ, _) = TwoLayers(seed: 4, rank: 4, valueSeed: 8);
        var lambdaBefore = otherQ.Lambda("default").detach().clone();
        var ex = Assert.Throws<InvalidDataException>(() => MiscAdapterKit.Attach(otherRoot).LoadAdapters(folder.Path));
        Assert.Contains("projection_prng_key 3", ex.Message);
        TensorAssert.Equal(lambdaBefore, otherQ.Lambda("default"));

        config["sparse"] = true;
        File.WriteAllText(Path.Combine(folder.Path, AdapterConfig.FileName), config.ToJsonString());
        var (sparseRoot, _, _) = TwoLayers(seed: 3, rank: 4);
        ex = Assert.Throws<InvalidDataException>(() => MiscAdapterKit.Attach(sparseRoot).LoadAdapters(folder.Path));
        Assert.Contains("sparse", ex.Message);
    }
}
