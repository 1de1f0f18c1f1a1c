using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using Peft.Tests.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

public class VeRATests
{
    private static VeRALinear Make(long inF = 12, long outF = 10, VeRAOptions? options = null, bool randomLambdas = true)
    {
        manual_seed(1);
        var layer = new VeRALinear("T.q", nn.Linear(inF, outF), "default", options ?? new VeRAOptions { Rank = 6 });
        if (randomLambdas) RandomLambdas(layer, "default");
        return layer;
    }

    private static void RandomLambdas(VeRALinear layer, string adapter)
    {
        using (no_grad())
        {
            layer.LambdaB(adapter).normal_();
            layer.LambdaD(adapter).normal_();
        }
    }

    /// <summary>Two VeRA layers of different shapes, q: Linear(16, 8) and v: Linear(12, 20), so in_max = 16, out_max = 20.</summary>
    private static (nn.Module Root, VeRALinear Q, VeRALinear V) TwoLayers(int seed = 0, int rank = 4, int lambdaSeed = 3)
    {
        manual_seed(3);
        var q = (VeRALinear)VeRA.Wrap(nn.Linear(16, 8), "T.q", "default", new VeRAOptions { Rank = rank, ProjectionSeed = seed });
        var v = (VeRALinear)VeRA.Wrap(nn.Linear(12, 20), "T.v", "default", new VeRAOptions { Rank = rank, ProjectionSeed = seed });
        manual_seed(lambdaSeed);
        RandomLambdas(q, "default");
        RandomLambdas(v, "default");
        var root = nn.Sequential(("q", q), ("v", v));
        return (root, q, v);
    }

    // ΔW[o, i] = λ_b[o] · Σ_k B[o, k] · λ_d[k] · A[k, i], written out entry by entry over the sliced projections.
    private static Tensor NaiveDelta(VeRALinear layer, string adapter)
    {
        var a = layer.ProjectionA(adapter).to(float64);
        var b = layer.ProjectionB(adapter).to(float64);
        var lb = layer.LambdaB(adapter).detach().to(float64);
        var ld = layer.LambdaD(adapter).detach().to(float64);
        long r = a.shape[0];
        var delta = zeros(layer.OutFeatures, layer.InFeatures, dtype: float64);
        for (long o = 0; o < layer.OutFeatures; o++)
            for (long i = 0; i < layer.InFeatures; i++)
            {
                double sum = 0;
                for (long k = 0; k < r; k++)
                    sum += b[o, k].item<double>() * ld[k].item<double>() * a[k, i].item<double>();
                delta[o, i] = lb[o].item<double>() * sum;
            }
        return delta;
    }

    [Fact]
    public void ForwardIsBasePlusScaledSharedProjections()
    {
        using var scope = NewDisposeScope();
        var (root, q, v) = TwoLayers();
        MiscAdapterKit.Attach(root);
        foreach (var layer in new[] { q, v })
        {
            var x = randn(5, layer.InFeatures);
            var w = layer.BaseLayer.get_parameter("weight")!;
            var bias = layer.BaseLayer.get_parameter("bias")!;
            var a = layer.ProjectionA("default").narrow(1, 0, layer.InFeatures);
            var b = layer.ProjectionB("default").narrow(0, 0, layer.OutFeatures);
            // y = x Wᵀ + b + λ_b ⊙ ((λ_d ⊙ (x Aᵀ)) Bᵀ)
            var expected = x.matmul(w.t()) + bias + (x.matmul(a.t()) * layer.LambdaD("default")).matmul(b.t()) * layer.LambdaB("default");
            TensorAssert.Close(expected, layer.forward(x), atol: 1e-5);
            TensorAssert.Close(x.matmul(w.t()) + bias + x.matmul(NaiveDelta(layer, "default").to(float32).t()), layer.forward(x), atol: 1e-5);
        }
    }

    [Fact]
    public void DeltaWeightMatchesTheFormulaEntryByEntry()
    {
        using var scope = NewDisposeScope();
        var (root, q, v) = TwoLayers();
        MiscAdapterKit.Attach(root);
        TensorAssert.Close(NaiveDelta(q, "default"), q.DeltaWeight("default"), atol: 1e-6);
        TensorAssert.Close(NaiveDelta(v, "default"), v.DeltaWeight("default"), atol: 1e-6);
        Assert.Equal(new long[] { 8, 16 }, q.DeltaWeight("default").shape);
        Assert.Equal(new long[] { 20, 12 }, v.DeltaWeight("default").shape);
    }

    [Fact]
    public void StartsAtTheBaseLayerWithPeftsLambdas()
    {
        using var scope = NewDisposeScope();
        var layer = Make(randomLambdas: false);
        Assert.Equal(0, layer.LambdaB("default").abs().sum().item<float>());
        TensorAssert.Equal(full(6, 0.1f), layer.LambdaD("default"));
        var x = randn(4, 12);
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));
    }

    [Fact]
    public void ProjectionsAreUniformWithinPeftsBound()
    {
        using var scope = NewDisposeScope();
        var (a, b) = VeRAProjections.Draw(seed: 5, rank: 32, inFeatures: 600, outFeatures: 500);
        Assert.Equal(new long[] { 32, 600 }, a.shape);
        Assert.Equal(new long[] { 500, 32 }, b.shape);
        double boundA = Math.Sqrt(3) * Math.Sqrt(2) / Math.Sqrt(600), boundB = Math.Sqrt(3) * Math.Sqrt(2) / Math.Sqrt(32);
        Assert.InRange(a.abs().max().item<float>(), boundA * 0.99, boundA);
        Assert.InRange(b.abs().max().item<float>(), boundB * 0.99, boundB);
        // Uniform on ±bound has standard deviation bound / √3 = √2 / √fan_in.
        Assert.InRange(a.std().item<float>(), boundA / Math.Sqrt(3) * 0.97, boundA / Math.Sqrt(3) * 1.03);
    }

    /// <summary>
    /// libtorch's CPU generator as PyTorch documents and implements it: MT19937 seeded with the low 32 bits of the
    /// seed; a float32 <c>uniform_(from, to)</c> takes one 32-bit draw per element, keeps its low 24 bits, scales by
    /// 2⁻²⁴ and maps x to x·(to − from) + from in float32.
    /// </summary>
    private sealed class Mt19937
    {
        private readonly uint[] _state = new uint[624];
        private int _index;

        public Mt19937(ulong seed)
        {
            _state[0] = (uint)(seed & 0xffffffff);
            for (uint i = 1; i < 624; i++) _state[i] = 1812433253u * (_state[i - 1] ^ (_state[i - 1] >> 30)) + i;
            _index = 624;
        }

        public uint Next()
        {
            if (_index >= 624)
            {
                for (int i = 0; i < 624; i++)
                {
                    uint y = (_state[i] & 0x80000000u) | (_state[(i + 1) % 624] & 0x7fffffffu);
                    _state[i] = _state[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1) != 0 ? 0x9908b0dfu : 0u);
                }
                _index = 0;
            }
            uint z = _state[_index++];
            z ^= z >> 11;
            z ^= (z << 7) & 0x9d2c5680u;
            z ^= (z << 15) & 0xefc60000u;
            z ^= z >> 18;
            return z;
        }

        public float Unit() => (Next() & 0xffffff) * (1.0f / 16777216f);
    }

    [Fact]
    public void TheReferenceGeneratorPrintsWhatPyTorchPrints()
    {
        // torch.manual_seed(42); torch.rand(3, 4) prints, in PyTorch 2.x (a widely reproduced notebook output):
        float[] printed = { 0.8823f, 0.9150f, 0.3829f, 0.9593f, 0.3904f, 0.6009f, 0.2566f, 0.7936f, 0.9408f, 0.1332f, 0.9346f, 0.5936f };
        var reference = new Mt19937(42);
        foreach (var p in printed) Assert.InRange(reference.Unit(), p - 5e-5f, p + 5e-5f);
    }

    [Fact]
    public void TorchSharpsGeneratorMakesTheSameDrawsAsPyTorch()
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator(42);
        var drawn = empty(1000, dtype: float32).uniform_(0, 1, generator).data<float>().ToArray();
        var reference = new Mt19937(42);
        for (int i = 0; i < drawn.Length; i++) Assert.Equal(reference.Unit(), drawn[i]);
        // PEFT's own path, torch.Generator(device="cpu").manual_seed(key), reseeds a generator made with another seed.
        using var reseeded = new Generator(7).manual_seed(42);
        TensorAssert.Equal(tensor(drawn), empty(1000, dtype: float32).uniform_(0, 1, reseeded));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(12345)]
    [InlineData(-1)]
    public void ProjectionsEqualPeftsDrawsBitForBit(int seed)
    {
        using var scope = NewDisposeScope();
        const int rank = 8;
        var (a, b) = VeRAProjections.Draw(seed, rank, inFeatures: 40, outFeatures: 24);
        var reference = new Mt19937(unchecked((ulong)(long)seed)); // Python's two's complement for a negative key
        // libtorch's kernel computes x·(to − from) + from in float32, as one fused multiply-add where it was built with
        // FMA contraction: every draw must match one of the two roundings, and all of them the same one.
        int notPlain = 0, notFused = 0;
        void Check(Tensor t, long fanIn)
        {
            double bound = Math.Sqrt(3.0) * (Math.Sqrt(2) / Math.Sqrt(fanIn)); // PEFT's _kaiming_init, in double
            float from = (float)-bound, to = (float)bound;
            foreach (var value in t.data<float>().ToArray())
            {
                float x = reference.Unit();
                float plain = x * (to - from) + from;
                float fused = MathF.FusedMultiplyAdd(x, to - from, from);
                Assert.True(value == plain || value == fused, $"draw {value:R} is neither {plain:R} nor {fused:R}");
                if (value != plain) notPlain++;
                if (value != fused) notFused++;
            }
        }
        Check(a, 40);   // A first: [r, in_max], fan_in = in_max
        Check(b, rank); // then B: [out_max, r], fan_in = r
        Assert.True(notPlain == 0 || notFused == 0, $"{notPlain} draws differ from the plain rounding and {notFused} from the fused one");
    }

    [Fact]
    public void AttachingSharesOneMaxSizePairAcrossLayers()
    {
        using var scope = NewDisposeScope();
        var (root, q, v) = TwoLayers(seed: 9, rank: 4);
        Assert.Equal(new long[] { 4, 16 }, q.ProjectionA("default").shape); // own sizes before the model is known
        Assert.Equal(new long[] { 4, 12 }, v.ProjectionA("default").shape);
        MiscAdapterKit.Attach(root);
        Assert.Same(q.ProjectionA("default"), v.ProjectionA("default"));
        Assert.Same(q.ProjectionB("default"), v.ProjectionB("default"));
        var (a, b) = VeRAProjections.Draw(9, 4, inFeatures: 16, outFeatures: 20);
        TensorAssert.Equal(a, q.ProjectionA("default"));
        TensorAssert.Equal(b, q.ProjectionB("default"));
        Assert.False(q.ProjectionA("default").requires_grad);
        // Buffers, not parameters: nothing trains them and each is registered once.
        Assert.DoesNotContain(root.named_parameters(), p => p.name.Contains("vera_A") || p.name.Contains("vera_B"));
        Assert.Contains(root.named_buffers(), p => p.name.EndsWith("vera_A.default"));
        // Attaching again (a refresh) keeps the same tensors.
        var before = q.ProjectionA("default");
        MiscAdapterKit.Attach(root);
        Assert.Same(before, v.ProjectionA("default"));
    }

    [Fact]
    public void LayersOfOneAdapterMustAgreeOnRankAndSeed()
    {
        using var scope = NewDisposeScope();
        var q = VeRA.Wrap(nn.Linear(16, 8), "T.q", "default", new VeRAOptions { Rank = 4, ProjectionSeed = 1 });
        var v = VeRA.Wrap(nn.Linear(12, 20), "T.v", "default", new VeRAOptions { Rank = 4, ProjectionSeed = 2 });
        var ex = Assert.Throws<InvalidOperationException>(() => MiscAdapterKit.Attach(nn.Sequential(("q", q), ("v", v))));
        // Refused when the model is built, as PEFT017 words it (before the projections are shared).
        Assert.Equal(PeftMessages.Format(PeftMessages.SharedConfigMismatch, "v", "default", "projection_prng_key", 2, 1, "q"), ex.Message);
    }

    [Fact]
    public void MergeMatchesUnmergedForwardAndUnmergeRestores()
    {
        using var scope = NewDisposeScope();
        var (root, q, _) = TwoLayers();
        MiscAdapterKit.Attach(root);
        q.eval();
        var x = randn(7, 16);
        var before = q.forward(x);
        var w0 = q.BaseLayer.get_parameter("weight")!.detach().clone();
        q.Merge(new[] { "default" });
        TensorAssert.Close(before, q.forward(x), rtol: 1e-5, atol: 1e-5);
        TensorAssert.Close(w0 + q.DeltaWeight("default"), q.BaseLayer.get_parameter("weight")!);
        q.Unmerge();
        TensorAssert.Close(w0, q.BaseLayer.get_parameter("weight")!, atol: 1e-6);
        TensorAssert.Close(before, q.forward(x), rtol: 1e-5, atol: 1e-5);
    }

    [Fact]
    public void GradientsReachOnlyTheLambdas()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.forward(randn(6, 12)).square().sum().backward();
        Assert.Null(layer.BaseLayer.get_parameter("weight")!.grad);
        Assert.Null(layer.BaseLayer.get_parameter("bias")!.grad);
        Assert.NotNull(layer.LambdaB("default").grad);
        Assert.NotNull(layer.LambdaD("default").grad);
        Assert.Equal(new[] { "vera_lambda_b.default", "vera_lambda_d.default" },
            layer.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToArray());
        Assert.Equal(new[] { "base_layer.weight", "base_layer.bias", "vera_lambda_b.default", "vera_lambda_d.default" },
            layer.named_parameters().Select(p => p.name).ToArray());
    }

    [Fact]
    public void DropoutActsOnTheAdapterInputInTrainingOnly()
    {
        using var scope = NewDisposeScope();
        var layer = Make(options: new VeRAOptions { Rank = 6, Dropout = 0.5 });
        var x = randn(64, 12);
        layer.eval();
        var exact = layer.forward(x);
        TensorAssert.Close(layer.BaseLayer.forward(x) + x.matmul(layer.DeltaWeight("default").t()), exact, atol: 1e-5);
        layer.train();
        Assert.False(exact.allclose(layer.forward(x)));
        layer.AdaptersDisabled = true;
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));
    }

    [Theory]
    [InlineData(0, 0.0, "VeRA rank must be at least 1, got 0")]
    [InlineData(4, 1.0, "dropout 1 is outside [0, 1)")]
    [InlineData(4, -0.1, "dropout -0.1 is outside [0, 1)")]
    public void InvalidOptionsFailAtRegistrationNamingTheSite(int rank, double dropout, string message)
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            VeRA.Wrap(nn.Linear(12, 10), "Demo.Block.q", "default", new VeRAOptions { Rank = rank, Dropout = dropout }));
        Assert.StartsWith("Demo.Block.q: ", ex.Message);
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void RankMayExceedTheLayerAndWrapRejectsWhatItCannotAdapt()
    {
        using var scope = NewDisposeScope();
        var big = (VeRALinear)VeRA.Wrap(nn.Linear(12, 10), "Demo.Block.q", "default", new VeRAOptions { Rank = 64 });
        Assert.Equal(new long[] { 64, 12 }, big.ProjectionA("default").shape);
        var ex = Assert.Throws<InvalidOperationException>(() => VeRA.Wrap(nn.ReLU(), "Demo.Block.act", "default", new VeRAOptions()));
        Assert.Contains("Demo.Block.act", ex.Message);
        Assert.Contains("ReLU", ex.Message);
        Assert.Throws<InvalidOperationException>(() => VeRA.Wrap(null, "Demo.Block.q", "default", new VeRAOptions()));
        Assert.Same(big, VeRA.Wrap(big, "Demo.Block.q", "b", new VeRAOptions { Rank = 4 }));
        Assert.Equal(new[] { "default", "b" }, big.AdapterNames);
    }

    [Fact]
    public void TrainingReducesTheLoss()
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var layer = new VeRALinear("T.q", nn.Linear(16, 16), "default", new VeRAOptions { Rank = 16 });
        var w = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        var bias = layer.BaseLayer.get_parameter("bias")!.detach().clone();
        // A change VeRA can express: other scaling vectors over the same frozen projections.
        var shift = (randn(16, 1) * layer.ProjectionB("default")).matmul(randn(16, 1) * layer.ProjectionA("default"));
        var (first, last) = MiscAdapterKit.Train(layer, x => x.matmul((w + shift).t()) + bias, steps: 300, lr: 5e-2);
        Assert.True(last < first * 0.05, $"loss {first} -> {last}");
        TensorAssert.Close(w, layer.BaseLayer.get_parameter("weight")!, atol: 0); // the base never moves
    }

    [Fact]
    public void SavesPeftsKeysAndConfigAndLoadsThemBack()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, q, v) = TwoLayers(seed: 3, rank: 4, lambdaSeed: 5);
        var core = MiscAdapterKit.Attach(root);
        core.SaveAdapters(folder.Path);

        var keys = MiscAdapterKit.Keys(folder.Path);
        Assert.Equal(new[]
        {
            "base_model.model.q.vera_lambda_b", "base_model.model.q.vera_lambda_d",
            "base_model.model.v.vera_lambda_b", "base_model.model.v.vera_lambda_d",
            "base_model.vera_A", "base_model.vera_B",
        }, keys.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray());
        Assert.Equal(new long[] { 8 }, keys["base_model.model.q.vera_lambda_b"]);
        Assert.Equal(new long[] { 4 }, keys["base_model.model.q.vera_lambda_d"]);
        Assert.Equal(new long[] { 20 }, keys["base_model.model.v.vera_lambda_b"]);
        Assert.Equal(new long[] { 4, 16 }, keys["base_model.vera_A"]);
        Assert.Equal(new long[] { 20, 4 }, keys["base_model.vera_B"]);

        var config = MiscAdapterKit.Config(folder.Path);
        Assert.Equal("VERA", config["peft_type"]!.GetValue<string>());
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.Equal(3, config["projection_prng_key"]!.GetValue<int>());
        Assert.True(config["save_projection"]!.GetValue<bool>());
        Assert.Equal(0.0, config["vera_dropout"]!.GetValue<double>());
        Assert.Equal(0.1, config["d_initial"]!.GetValue<double>());
        Assert.Equal(new[] { "q", "v" }, MiscAdapterKit.Strings(config["target_modules"]));
        Assert.Null(config["modules_to_save"]);
        Assert.False(config.ContainsKey("rank_pattern")); // VeraConfig has none

        // A second model, drawn with another seed and other lambdas: loading replaces all of it.
        var (root2, q2, v2) = TwoLayers(seed: 99, rank: 4, lambdaSeed: 77);
        MiscAdapterKit.CopyBase(root, root2);
        var core2 = MiscAdapterKit.Attach(root2);
        Assert.False(TensorAssert.Same(q.ProjectionA("default"), q2.ProjectionA("default")));
        core2.LoadAdapters(folder.Path);
        TensorAssert.Equal(q.ProjectionA("default"), q2.ProjectionA("default"));
        TensorAssert.Equal(v.ProjectionB("default"), v2.ProjectionB("default"));
        Assert.Same(q2.ProjectionA("default"), v2.ProjectionA("default")); // still one shared tensor
        Assert.Equal(3, q2.Options("default").ProjectionSeed);
        var xq = randn(3, 16);
        var xv = randn(3, 12);
        TensorAssert.Equal(q.forward(xq), q2.forward(xq));
        TensorAssert.Equal(v.forward(xv), v2.forward(xv));
    }

    [Fact]
    public void AFileWithoutProjectionsLoadsWhenTheSeedMatchesAndIsRefusedOtherwise()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, q, _) = TwoLayers(seed: 3, rank: 4);
        MiscAdapterKit.Attach(root).SaveAdapters(folder.Path);
        // Rewrite it the way PEFT writes save_projection: false: no projections in the file.
        string weights = Path.Combine(folder.Path, PeftAdapterFormat.WeightsFileName);
        var kept = new List<KeyValuePair<string, Tensor>>();
        using (var file = Safetensors.Read(weights))
            foreach (var (key, tensor) in file.Tensors)
                if (!key.StartsWith("base_model.vera_", StringComparison.Ordinal)) kept.Add(new(key, tensor.clone()));
        Safetensors.Write(weights, kept, new Dictionary<string, string> { ["format"] = "pt" });
        var config = MiscAdapterKit.Config(folder.Path);
        config["save_projection"] = false;
        File.WriteAllText(Path.Combine(folder.Path, AdapterConfig.FileName), config.ToJsonString());

        var (sameRoot, sameQ, _) = TwoLayers(seed: 3, rank: 4, lambdaSeed: 8);
        MiscAdapterKit.Attach(sameRoot).LoadAdapters(folder.Path);
        TensorAssert.Equal(q.DeltaWeight("default"), sameQ.DeltaWeight("default")); // redrawn from the same seed: identical

        var (otherRoot, otherQ, _) = TwoLayers(seed: 4, rank: 4, lambdaSeed: 8);
        var lambdaBefore = otherQ.LambdaB("default").detach().clone();
        var ex = Assert.Throws<System.IO.InvalidDataException>(() => MiscAdapterKit.Attach(otherRoot).LoadAdapters(folder.Path));
        Assert.Contains("projection_prng_key 3", ex.Message);
        Assert.Contains("ProjectionSeed = 3", ex.Message);
        TensorAssert.Equal(lambdaBefore, otherQ.LambdaB("default")); // nothing assigned
        Assert.Equal(4, otherQ.Options("default").ProjectionSeed);
    }

    [Fact]
    public void ConvertingTheModelKeepsTheProjectionsShared()
    {
        using var scope = NewDisposeScope();
        var (root, q, v) = TwoLayers();
        MiscAdapterKit.Attach(root);
        var expected = q.DeltaWeight("default").detach().to(float64);
        root.to(float64);
        Assert.Equal(float64, q.ProjectionA("default").dtype);
        Assert.Same(q.ProjectionA("default"), v.ProjectionA("default"));
        Assert.Equal(float64, q.LambdaB("default").dtype);
        TensorAssert.Close(expected, q.DeltaWeight("default"), atol: 1e-7);
        var x = randn(2, 16, dtype: float64);
        Assert.Equal(float64, q.forward(x).dtype);
    }

    [Fact]
    public void AnAdapterAddedAfterAttachingIsSharedAtTheNextRefresh()
    {
        using var scope = NewDisposeScope();
        var (root, q, v) = TwoLayers(seed: 1, rank: 4);
        var core = MiscAdapterKit.Attach(root);
        var sharedDefault = q.ProjectionA("default");
        q.AddAdapter("other", new VeRAOptions { Rank = 2, ProjectionSeed = 6 });
        v.AddAdapter("other", new VeRAOptions { Rank = 2, ProjectionSeed = 6 });
        Assert.Equal(new long[] { 2, 12 }, v.ProjectionA("other").shape); // own size until the refresh
        core.Refresh();
        Assert.Same(sharedDefault, q.ProjectionA("default")); // kept
        Assert.Same(q.ProjectionA("other"), v.ProjectionA("other"));
        TensorAssert.Equal(VeRAProjections.Draw(6, 2, 16, 20).A, v.ProjectionA("other"));
        v.DeleteAdapter("other");
        Assert.Same(sharedDefault, v.ProjectionA("default"));
        core.Refresh();
        Assert.Same(q.ProjectionA("default"), v.ProjectionA("default"));
        Assert.Equal(new long[] { 2, 16 }, q.ProjectionA("other").shape); // only q holds it now: in_max is q's in
    }
}
