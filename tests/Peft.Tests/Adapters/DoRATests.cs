using System;
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

public class DoRATests
{
    private static LoRALinear Make(long inF = 12, long outF = 10, DoRAOptions? options = null, bool train = true)
    {
        manual_seed(1);
        var layer = new LoRALinear("T.q", nn.Linear(inF, outF), "default", options ?? new DoRAOptions { Rank = 4, Alpha = 8 });
        if (train) Perturb(layer, "default");
        return layer;
    }

    /// <summary>Moves B and m away from their init, as training would.</summary>
    private static void Perturb(LoRALinear layer, string adapter)
    {
        using var _ = no_grad();
        layer.LoraB(adapter).normal_(0, 0.3);
        layer.Magnitude(adapter).mul_(rand_like(layer.Magnitude(adapter)) + 0.5);
    }

    private static Tensor W(LoRALinear layer) => layer.BaseLayer.get_parameter("weight")!;
    private static Tensor Bias(LoRALinear layer) => layer.BaseLayer.get_parameter("bias")!;

    /// <summary>n = ‖W + s·B·A‖ per row, g = m / n, written out naively (no guard: only for rows with n &gt; 0).</summary>
    private static Tensor NaiveFactor(Tensor w, Tensor a, Tensor b, Tensor m, double s)
    {
        var merged = w.detach() + matmul(b.detach(), a.detach()) * s;
        var n = merged.square().sum(1).sqrt();
        return m / n;
    }

    [Fact]
    public void ForwardIsMagnitudeTimesDirectionPlusUnscaledBias()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var x = randn(5, 12);
        var (w, b, a, bb, m) = (W(layer), Bias(layer), layer.LoraA("default"), layer.LoraB("default"), layer.Magnitude("default"));
        var g = NaiveFactor(w, a, bb, m, 2.0);
        // y = g ⊙ (x Wᵀ + s · x Aᵀ Bᵀ) + b, s = 8 / 4.
        var expected = g * (x.matmul(w.t()) + x.matmul(a.t()).matmul(bb.t()) * 2.0) + b;
        TensorAssert.Close(expected, layer.forward(x), rtol: 1e-5, atol: 1e-5);
        Assert.True(layer.IsDora("default"));
    }

    [Fact]
    public void MagnitudeStartsAtTheRowNormsOfTheBaseWeightAndTheLayerAtTheBase()
    {
        using var scope = NewDisposeScope();
        var layer = Make(inF: 64, outF: 32, options: new DoRAOptions { Rank = 8 }, train: false);
        var w = W(layer);
        TensorAssert.Close(w.square().sum(1).sqrt(), layer.Magnitude("default"));
        Assert.Equal(new long[] { 32 }, layer.Magnitude("default").shape);
        var x = randn(3, 64);
        TensorAssert.Close(layer.BaseLayer.forward(x), layer.forward(x), rtol: 1e-6, atol: 1e-6);
        // B = 0 and A is Kaiming-uniform, as for LoRA.
        Assert.Equal(0, layer.LoraB("default").abs().sum().item<float>());
        Assert.True(layer.LoraA("default").abs().max().item<float>() > 0);
    }

    [Fact]
    public void MagnitudeStartsAtTheRowNormsOfWPlusTheInitialUpdate()
    {
        // With PiSSA the initial update is not zero: m = ‖W_res + s·B₀A₀‖ = ‖W‖ per row.
        using var scope = NewDisposeScope();
        manual_seed(3);
        var linear = nn.Linear(16, 12);
        var w0 = linear.weight!.detach().clone();
        var layer = new LoRALinear("T.q", linear, "default", new DoRAOptions { Rank = 4, Init = LoRAInit.PiSSA });
        TensorAssert.Close(w0.square().sum(1).sqrt(), layer.Magnitude("default"), rtol: 1e-5, atol: 1e-5);
        var x = randn(4, 16);
        TensorAssert.Close(nn.functional.linear(x, w0, Bias(layer)), layer.forward(x), rtol: 1e-5, atol: 1e-5);
    }

    [Fact]
    public void DropoutInTrainingFollowsPeftsFormulaAndLeavesTheBasePath()
    {
        // y = x Wᵀ + b + (g − 1) ⊙ drop(x) Wᵀ + g ⊙ s · drop(x) Aᵀ Bᵀ = x Wᵀ + b + drop(x) K with
        // K = Wᵀ diag(g − 1) + s Aᵀ Bᵀ diag(g). Solving for drop(x) must give a dropout of x: every entry 0 or x / (1 − p).
        // (No reliance on the global RNG, which other tests running in parallel also draw from.)
        using var scope = NewDisposeScope();
        var layer = Make(inF: 12, outF: 12, options: new DoRAOptions { Rank = 4, Alpha = 8, Dropout = 0.5 });
        var x = randn(64, 12);
        var (w, b, a, bb, m) = (W(layer), Bias(layer), layer.LoraA("default"), layer.LoraB("default"), layer.Magnitude("default"));
        var g = NaiveFactor(w, a, bb, m, 2.0);
        layer.train();
        var y = layer.forward(x).detach().to(float64);
        var x64 = x.to(float64);
        var k = (w.t() * (g - 1) + a.t().matmul(bb.t()) * g * 2.0).detach().to(float64);
        var dropped = linalg.solve(k.t(), (y - x64.matmul(w.t().to(float64)) - b.to(float64)).t()).t();
        var isZero = dropped.abs().le(1e-3);
        var isKept = (dropped - x64 * 2.0).abs().le(1e-3 * (1 + x64.abs()));
        Assert.True((isZero | isKept).all().item<bool>(), "the recovered adapter input is not a dropout of x");
        double kept = isKept.to(float64).mean().item<double>();
        Assert.InRange(kept, 0.35, 0.65);

        layer.eval();
        var exact = g * (x.matmul(w.t()) + x.matmul(a.t()).matmul(bb.t()) * 2.0) + b;
        TensorAssert.Close(exact, layer.forward(x), rtol: 1e-5, atol: 1e-5);
    }

    [Fact]
    public void DeltaWeightIsTheChangeToTheBaseWeight()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var (w, a, bb, m) = (W(layer), layer.LoraA("default"), layer.LoraB("default"), layer.Magnitude("default"));
        var g = NaiveFactor(w, a, bb, m, 2.0);
        var expected = g.unsqueeze(1) * (w + matmul(bb, a) * 2.0) - w;
        var delta = layer.DeltaWeight("default");
        Assert.Equal(new long[] { 10, 12 }, delta.shape);
        TensorAssert.Close(expected, delta, rtol: 1e-5, atol: 1e-6);
        var x = randn(6, 12);
        TensorAssert.Close(nn.functional.linear(x, w + delta, Bias(layer)), layer.forward(x), rtol: 1e-5, atol: 1e-5);
    }

    [Fact]
    public void MergeMatchesUnmergedForwardKeepsTheBiasAndUnmergeRestores()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.eval();
        var x = randn(7, 12);
        var before = layer.forward(x);
        var w0 = W(layer).detach().clone();
        var b0 = Bias(layer).detach().clone();
        var g = NaiveFactor(w0, layer.LoraA("default"), layer.LoraB("default"), layer.Magnitude("default"), 2.0);
        var expectedMerged = g.unsqueeze(1) * (w0 + matmul(layer.LoraB("default"), layer.LoraA("default")) * 2.0);
        layer.Merge(new[] { "default" });
        Assert.Throws<InvalidOperationException>(() => layer.DeltaWeight("default")); // it depends on the unmerged W
        TensorAssert.Close(expectedMerged, W(layer), rtol: 1e-5, atol: 1e-6);
        TensorAssert.Equal(b0, Bias(layer));
        TensorAssert.Close(before, layer.forward(x), rtol: 1e-5, atol: 1e-5);
        layer.Unmerge();
        TensorAssert.Close(w0, W(layer), rtol: 1e-5, atol: 1e-6);
        TensorAssert.Close(before, layer.forward(x), rtol: 1e-5, atol: 1e-5);
    }

    [Fact]
    public void UnmergeUsesTheNormFromMergeTime()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var w0 = W(layer).detach().clone();
        layer.Merge(new[] { "default" });
        // Recomputing n from the merged weight would give a different, wrong, unmerge.
        var wrongN = (W(layer) + matmul(layer.LoraB("default"), layer.LoraA("default")) * 2.0).square().sum(1).sqrt();
        var trueN = (w0 + matmul(layer.LoraB("default"), layer.LoraA("default")) * 2.0).square().sum(1).sqrt();
        Assert.False(wrongN.allclose(trueN, rtol: 1e-3));
        layer.Unmerge();
        TensorAssert.Close(w0, W(layer), rtol: 1e-5, atol: 1e-6);
    }

    [Fact]
    public void AZeroRowOfTheWeightGivesNoNaNAndPassesThatRowUnscaled()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var linear = nn.Linear(12, 10);
        using (no_grad()) linear.weight![3].zero_();
        var layer = new LoRALinear("T.q", linear, "default", new DoRAOptions { Rank = 4 });
        Assert.Equal(0, layer.Magnitude("default")[3].item<float>()); // PEFT's m / n would be 0 / 0 here
        var x = randn(5, 12);
        var y = layer.forward(x);
        Assert.True(isfinite(y).all().item<bool>());
        TensorAssert.Close(linear.forward(x), y, rtol: 1e-6, atol: 1e-6);

        // Train B on the other rows only: row 3 of W + s·B·A stays zero, so g = 1 there (the documented guard).
        using (no_grad())
        {
            layer.LoraB("default").normal_();
            layer.LoraB("default")[3].zero_();
            layer.Magnitude("default").add_(0.25);
        }
        y = layer.forward(x);
        var (w, b, a, bb, m) = (W(layer), Bias(layer), layer.LoraA("default"), layer.LoraB("default"), layer.Magnitude("default"));
        var merged = w + matmul(bb, a) * 2.0;
        var n = merged.square().sum(1).sqrt();
        var g = where(n.eq(0), ones_like(n), m / where(n.eq(0), ones_like(n), n));
        Assert.Equal(1f, g[3].item<float>());
        TensorAssert.Close(g * x.matmul(merged.t()) + b, y, rtol: 1e-5, atol: 1e-5);
        Assert.True(isfinite(y).all().item<bool>());
        y.square().sum().backward();
        Assert.True(isfinite(m.grad!).all().item<bool>());
        Assert.Equal(0f, m.grad![3].item<float>());
        Assert.True(isfinite(a.grad!).all().item<bool>() && isfinite(bb.grad!).all().item<bool>());

        var w0 = w.detach().clone();
        layer.Merge(new[] { "default" });
        Assert.True(isfinite(W(layer)).all().item<bool>());
        layer.Unmerge();
        TensorAssert.Close(w0, W(layer), rtol: 1e-5, atol: 1e-6);
    }

    [Fact]
    public void AZeroMagnitudeRowSurvivesMergeAndUnmerge()
    {
        // g = 0 erases a row of the merged weight; unmerge still restores it, where PEFT's W' / g gives NaN.
        using var scope = NewDisposeScope();
        var layer = Make();
        using (no_grad()) layer.Magnitude("default")[2] = 0f;
        var w0 = W(layer).detach().clone();
        layer.Merge(new[] { "default" });
        Assert.Equal(0, W(layer)[2].abs().sum().item<float>());
        layer.Unmerge();
        TensorAssert.Close(w0, W(layer), rtol: 1e-5, atol: 1e-6);
    }

    [Fact]
    public void GradientsReachAandBandTheMagnitudeButNotThroughTheNorm()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var x = randn(6, 12);
        layer.forward(x).square().sum().backward();
        Assert.Null(W(layer).grad);
        Assert.Null(Bias(layer).grad);
        Assert.Equal(
            new[] { "base_layer.weight", "base_layer.bias", "lora_A.default.weight", "lora_B.default.weight", "lora_magnitude_vector.default.weight" },
            layer.named_parameters().Select(p => p.name).ToArray());
        Assert.Equal(
            new[] { "lora_A.default.weight", "lora_B.default.weight", "lora_magnitude_vector.default.weight" },
            layer.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToArray());

        // The same loss written out naively, with n a constant (DoRA §4.3): the gradients must agree.
        var a = layer.LoraA("default").detach().clone().requires_grad_();
        var bb = layer.LoraB("default").detach().clone().requires_grad_();
        var m = layer.Magnitude("default").detach().clone().requires_grad_();
        var w = W(layer).detach();
        var n = (w + matmul(bb, a) * 2.0).detach().square().sum(1).sqrt();
        var y = (m / n) * (x.matmul(w.t()) + x.matmul(a.t()).matmul(bb.t()) * 2.0) + Bias(layer).detach();
        y.square().sum().backward();
        TensorAssert.Close(a.grad!, layer.LoraA("default").grad!, rtol: 1e-4, atol: 1e-4);
        TensorAssert.Close(bb.grad!, layer.LoraB("default").grad!, rtol: 1e-4, atol: 1e-4);
        TensorAssert.Close(m.grad!, layer.Magnitude("default").grad!, rtol: 1e-4, atol: 1e-4);
    }

    [Fact]
    public void LoRAAndDoRAAdaptersShareOneLayer()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        var layer = (LoRALinear)LoRA.Wrap(nn.Linear(12, 10), "T.q", "a", new LoRAOptions { Rank = 2, Alpha = 4 });
        Assert.Same(layer, DoRA.Wrap(layer, "T.q", "b", new DoRAOptions { Rank = 4, Alpha = 8 }));
        Assert.Same(layer, LoRA.Wrap(layer, "T.q", "c", new LoRAOptions { Rank = 2 }));
        Assert.False(layer.IsDora("a"));
        Assert.True(layer.IsDora("b"));
        Assert.Throws<InvalidOperationException>(() => layer.Magnitude("a"));
        using (no_grad()) layer.LoraB("a").normal_();
        Perturb(layer, "b");
        Assert.Equal(2, layer.AdapterParameters("a").Count());
        Assert.Equal(new[] { "lora_A.b.weight", "lora_B.b.weight", "lora_magnitude_vector.b.weight" }, layer.AdapterParameters("b").Select(p => p.Name).ToArray());

        var x = randn(5, 12);
        var w = W(layer);
        var bias = Bias(layer);
        layer.SetActiveAdapters(new[] { "b" });
        var gb = NaiveFactor(w, layer.LoraA("b"), layer.LoraB("b"), layer.Magnitude("b"), 2.0);
        TensorAssert.Close(gb * (x.matmul(w.t()) + x.matmul(layer.LoraA("b").t()).matmul(layer.LoraB("b").t()) * 2.0) + bias, layer.forward(x), rtol: 1e-5, atol: 1e-5);

        // Both active, LoRA first: DoRA rescales the weight the LoRA adapter produced, W̃ = W + s_a·B_a·A_a.
        layer.SetActiveAdapters(new[] { "a", "b" });
        var wa = w + matmul(layer.LoraB("a"), layer.LoraA("a")) * 2.0;
        var g = NaiveFactor(wa, layer.LoraA("b"), layer.LoraB("b"), layer.Magnitude("b"), 2.0);
        var expected = g * (x.matmul(wa.t()) + x.matmul(layer.LoraA("b").t()).matmul(layer.LoraB("b").t()) * 2.0) + bias;
        var before = layer.forward(x);
        TensorAssert.Close(expected, before, rtol: 1e-5, atol: 1e-5);
        var w0 = w.detach().clone();
        layer.Merge(layer.ActiveAdapters);
        TensorAssert.Close(before, layer.forward(x), rtol: 1e-5, atol: 1e-5);
        layer.Unmerge();
        TensorAssert.Close(w0, W(layer), rtol: 1e-5, atol: 1e-6);

        // DoRA first, then LoRA: the merged layer still computes what the unmerged one does.
        layer.SetActiveAdapters(new[] { "b", "a" });
        before = layer.forward(x);
        layer.Merge(layer.ActiveAdapters);
        TensorAssert.Close(before, layer.forward(x), rtol: 1e-5, atol: 1e-5);
        layer.Unmerge();
        TensorAssert.Close(w0, W(layer), rtol: 1e-5, atol: 1e-6);

        layer.DeleteAdapter("b");
        Assert.DoesNotContain(layer.named_parameters(), p => p.name.Contains(".b."));
    }

    [Theory]
    [InlineData(0, 0.0, "DoRA rank must be at least 1, got 0")]
    [InlineData(11, 0.0, "DoRA rank 11 is larger than min(in 12, out 10) = 10")]
    [InlineData(4, 1.0, "dropout 1 is outside [0, 1)")]
    public void InvalidOptionsFailAtRegistrationNamingTheSite(int rank, double dropout, string message)
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            DoRA.Wrap(nn.Linear(12, 10), "Demo.Block.q", "default", new DoRAOptions { Rank = rank, Dropout = dropout }));
        Assert.StartsWith("Demo.Block.q: ", ex.Message);
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void WrapRejectsWhatItCannotAdapt()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => DoRA.Wrap(nn.ReLU(), "Demo.Block.act", "default", new DoRAOptions { Rank = 2 }));
        Assert.StartsWith("Demo.Block.act: DoRA adapts a Linear layer", ex.Message);
        Assert.Contains("ReLU", ex.Message);
        Assert.Throws<InvalidOperationException>(() => DoRA.Wrap(null, "Demo.Block.q", "default", new DoRAOptions()));
        var layer = DoRA.Wrap(nn.Linear(12, 10), "Demo.Block.q", "default", new DoRAOptions { Rank = 2 });
        var dup = Assert.Throws<ArgumentException>(() => DoRA.Wrap(layer, "Demo.Block.q", "default", new DoRAOptions { Rank = 2 }));
        Assert.Contains("already exists", dup.Message);
        Assert.Single(((LoRALinear)layer).AdapterNames);
    }

    [Fact]
    public void OptionsDefaultsMatchTheAttribute()
    {
        var attribute = new DoRAAttribute(8);
        var options = new DoRAOptions();
        Assert.Equal(attribute.Rank, options.Rank);
        Assert.Equal(attribute.Alpha, options.Alpha);
        Assert.Equal(attribute.Dropout, options.Dropout);
        Assert.Equal(attribute.UseRsLora, options.UseRsLora);
        Assert.Equal(attribute.Init, options.Init);
        Assert.Equal("default", attribute.Name);
        Assert.Equal(8.0 / Math.Sqrt(4), new DoRAOptions { Rank = 4, UseRsLora = true }.Scaling);
    }

    [Fact]
    public void TrainingReducesTheLoss()
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        var layer = new LoRALinear("T.q", nn.Linear(16, 16), "default", new DoRAOptions { Rank = 4, Alpha = 8 });
        var w = W(layer);
        // The target rescales the rows of W and adds a rank-2 change: what DoRA can represent.
        var target = (w.detach() + randn(16, 2).matmul(randn(2, 16)) * 0.1) * (rand(16, 1) + 0.5);
        var x = randn(128, 16);
        var y = nn.functional.linear(x, target, Bias(layer).detach());
        var parameters = layer.parameters().Where(p => p.requires_grad).ToList();
        Assert.Equal(3, parameters.Count);
        var optimizer = optim.Adam(parameters, lr: 0.01);
        double first = 0, last = 0;
        for (int step = 0; step < 300; step++)
        {
            using var stepScope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = nn.functional.mse_loss(layer.forward(x), y);
            loss.backward();
            optimizer.step();
            if (step == 0) first = loss.item<float>();
            last = loss.item<float>();
        }
        Assert.True(last < first * 0.05, $"loss {first} → {last}");
    }

    private static (nn.Module<Tensor, Tensor> Root, PeftModelCore Core, LoRALinear Q) Model(int seed, Tensor baseWeight, Tensor baseBias, DoRAOptions? q = null)
    {
        var linear = nn.Linear(16, 16);
        using (no_grad())
        {
            linear.weight!.copy_(baseWeight);
            linear.bias!.copy_(baseBias);
        }
        manual_seed(seed);
        var wrapped = DoRA.Wrap(linear, "T.q", "default", q ?? new DoRAOptions { Rank = 4, Alpha = 16 });
        var root = nn.Sequential(("q", wrapped));
        var core = PeftModelCore.Attach(root, new PeftModelInfo("T", Array.Empty<AdapterSiteInfo>(), Array.Empty<string>(), Array.Empty<PeftModelInfo>()));
        return (root, core, (LoRALinear)wrapped);
    }

    [Fact]
    public void SavesAndLoadsInPeftsFormat()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        manual_seed(11);
        var w = randn(16, 16) * 0.3;
        var b = randn(16);
        var (root, core, q) = Model(1, w, b, new DoRAOptions { Rank = 4, Alpha = 16, Dropout = 0.1, UseRsLora = true });
        Perturb(q, "default");
        core.SaveAdapters(folder.Path);

        var header = Safetensors.ReadHeader(Path.Combine(folder.Path, PeftAdapterFormat.WeightsFileName));
        var shapes = header.Entries.ToDictionary(t => t.Name, t => t.Shape);
        Assert.Equal(
            new[] { "base_model.model.q.lora_A.weight", "base_model.model.q.lora_B.weight", "base_model.model.q.lora_magnitude_vector" },
            shapes.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray());
        Assert.Equal(new long[] { 4, 16 }, shapes["base_model.model.q.lora_A.weight"]);
        Assert.Equal(new long[] { 16, 4 }, shapes["base_model.model.q.lora_B.weight"]);
        Assert.Equal(new long[] { 16 }, shapes["base_model.model.q.lora_magnitude_vector"]);

        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(folder.Path, AdapterConfig.FileName)))!;
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
        Assert.True(config["use_dora"]!.GetValue<bool>());
        Assert.True(config["use_rslora"]!.GetValue<bool>());
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.Equal(16, config["lora_alpha"]!.GetValue<int>());
        Assert.Equal(0.1, config["lora_dropout"]!.GetValue<double>());
        Assert.True(config["init_lora_weights"]!.GetValue<bool>());
        Assert.Equal("q", config["target_modules"]![0]!.GetValue<string>());

        var (root2, core2, q2) = Model(99, w, b, new DoRAOptions { Rank = 4, Alpha = 16, Dropout = 0.1, UseRsLora = true });
        Perturb(q2, "default");
        var x = randn(5, 16);
        root.eval();
        root2.eval();
        Assert.False(root.forward(x).allclose(root2.forward(x)));
        core2.LoadAdapters(folder.Path);
        TensorAssert.Equal(q.Magnitude("default"), q2.Magnitude("default"));
        TensorAssert.Equal(root.forward(x), root2.forward(x));
    }

    [Fact]
    public void ALoRAFileOnADoRAAdapterAndTheReverseFailWithoutChangingTheModel()
    {
        using var scope = NewDisposeScope();
        using var loraDir = new TempFolder();
        using var doraDir = new TempFolder();
        var w = randn(16, 16);
        var b = randn(16);

        var lora = nn.Linear(16, 16);
        using (no_grad()) { lora.weight!.copy_(w); lora.bias!.copy_(b); }
        var loraRoot = nn.Sequential(("q", LoRA.Wrap(lora, "T.q", "default", new LoRAOptions { Rank = 4 })));
        var loraCore = PeftModelCore.Attach(loraRoot, new PeftModelInfo("T", Array.Empty<AdapterSiteInfo>(), Array.Empty<string>(), Array.Empty<PeftModelInfo>()));
        loraCore.SaveAdapters(loraDir.Path);

        var (doraRoot, doraCore, q) = Model(3, w, b, new DoRAOptions { Rank = 4 });
        Perturb(q, "default");
        doraCore.SaveAdapters(doraDir.Path);

        var before = q.parameters().Select(p => p.detach().clone()).ToList();
        var ex = Assert.Throws<InvalidDataException>(() => doraCore.LoadAdapters(loraDir.Path));
        Assert.Contains("T.q: adapter 'default' is a DoRA adapter; the file describes a LoRA adapter (use_dora: false)", ex.Message);
        foreach (var (p, b0) in q.parameters().Zip(before)) TensorAssert.Equal(b0, p);

        var lq = (LoRALinear)loraRoot[0];
        var loraBefore = lq.parameters().Select(p => p.detach().clone()).ToList();
        ex = Assert.Throws<InvalidDataException>(() => loraCore.LoadAdapters(doraDir.Path));
        Assert.Contains("T.q: adapter 'default' is a LoRA adapter; the file describes a DoRA adapter (use_dora: true)", ex.Message);
        foreach (var (p, b0) in lq.parameters().Zip(loraBefore)) TensorAssert.Equal(b0, p);
    }

    [Fact]
    public void OneAdapterNameCannotBeLoRAOnOneLayerAndDoRAOnAnother()
    {
        // PEFT's config has one use_dora per adapter: such a model is refused when built (PEFT017), not at save.
        var root = nn.Sequential(
            ("q", LoRA.Wrap(nn.Linear(8, 8), "T.q", "default", new LoRAOptions { Rank = 2 })),
            ("v", DoRA.Wrap(nn.Linear(8, 8), "T.v", "default", new DoRAOptions { Rank = 2 })));
        var ex = Assert.Throws<InvalidOperationException>(() =>
            PeftModelCore.Attach(root, new PeftModelInfo("T", Array.Empty<AdapterSiteInfo>(), Array.Empty<string>(), Array.Empty<PeftModelInfo>())));
        Assert.Equal("v: adapter 'default' has use_dora = true here but false at q; PEFT's adapter_config.json holds one use_dora for every layer of an adapter, so give one of these layers another adapter Name", ex.Message);
    }

    [Fact]
    public void SettingsRoundTripUseDora()
    {
        var layer = Make(options: new DoRAOptions { Rank = 4, Alpha = 8, Dropout = 0.2 }, train: false);
        var settings = Assert.IsType<DoRAOptions>(layer.Settings("default"));
        Assert.True(settings.UseDora);
        layer.ApplySettings("default", settings with { Alpha = 32, UseRsLora = true });
        Assert.Equal(32 / 2.0, layer.Options("default").Scaling);
        Assert.True(layer.IsDora("default"));
        var ex = Assert.Throws<InvalidOperationException>(() => layer.ApplySettings("default", new LoRAOptions { Rank = 4, Alpha = 8, Dropout = 0.2 }));
        Assert.StartsWith("T.q: ", ex.Message);
        Assert.Throws<InvalidOperationException>(() => layer.ApplySettings("default", settings with { Rank = 2 }));
    }

    [Fact]
    public void TheMagnitudeKeyDropsWeightAsPeftDoes()
    {
        Assert.Equal("lora_magnitude_vector", AdapterKeys.StripAdapterName("lora_magnitude_vector.default.weight", "default"));
        Assert.Equal("lora_magnitude_vector", AdapterKeys.StripAdapterName("lora_magnitude_vector.other.weight", "other"));
        Assert.Equal("lora_A.weight", AdapterKeys.StripAdapterName("lora_A.default.weight", "default"));
    }
}
