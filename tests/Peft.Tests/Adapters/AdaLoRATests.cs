using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
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
using static TorchSharp.torch.nn;

namespace Peft.Tests.Adapters;

[PeftModel]
public sealed partial class AdaLoRANet : Module<Tensor, Tensor>
{
    [AdaLoRA(2, InitRank = 6, Tinit = 4, Tfinal = 6, DeltaT = 2, TotalSteps = 40)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [AdaLoRA(2, InitRank = 6, Tinit = 4, Tfinal = 6, DeltaT = 2, TotalSteps = 40)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [AdaLoRA(2, InitRank = 6, Tinit = 4, Tfinal = 6, DeltaT = 2, TotalSteps = 40)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public AdaLoRANet() : base(nameof(AdaLoRANet)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

/// <summary>The adapter PEFT wrote (fixtures/peft-written/adalora): init_r 6 → target_r 2, tinit 10, tfinal 10, deltaT 5, total_step 60.</summary>
[PeftModel]
public sealed partial class WrittenAdaLoRA : Module<Tensor, Tensor>
{
    [AdaLoRA(2, InitRank = 6, Tinit = 10, Tfinal = 10, DeltaT = 5, TotalSteps = 60)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [AdaLoRA(2, InitRank = 6, Tinit = 10, Tfinal = 10, DeltaT = 5, TotalSteps = 60)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [AdaLoRA(2, InitRank = 6, Tinit = 10, Tfinal = 10, DeltaT = 5, TotalSteps = 60)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public WrittenAdaLoRA() : base(nameof(WrittenAdaLoRA)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

public class AdaLoRATests
{
    private static readonly AdaLoRAOptions Options = new() { TargetRank = 2, InitRank = 5, Alpha = 6, TotalSteps = 30, Tinit = 3, Tfinal = 5, DeltaT = 2 };

    private static AdaLoRALinear Make(AdaLoRAOptions? options = null, long inF = 12, long outF = 10)
    {
        manual_seed(3);
        var layer = new AdaLoRALinear("T.q", Linear(inF, outF), "default", options ?? Options);
        using (no_grad()) layer.LoraE("default").normal_(); // off its zero start, so the update is not zero
        return layer;
    }

    // ΔW = Σ_k Q[o, k]·Λ[k]·P[k, i] · α / (r₀ + 1e-5).
    private static Tensor NaiveDelta(AdaLoRALinear layer, string adapter)
    {
        var o = layer.Options(adapter);
        return NaiveTripletDelta(layer.LoraA(adapter), layer.LoraE(adapter), layer.LoraB(adapter), o.InitRank, o.Alpha / (o.InitRank + 1e-5));
    }

    /// <summary>ΔW[o, i] = Σ_{k &lt; rank} Q[o, k]·Λ[k]·P[k, i] · scale, entry by entry in float64 (IncreLoRA's tests use it too).</summary>
    internal static Tensor NaiveTripletDelta(Tensor P, Tensor lambda, Tensor Q, long rank, double scale)
    {
        var p = P.detach().to(float64);
        var e = lambda.detach().to(float64);
        var q = Q.detach().to(float64);
        long outFeatures = q.shape[0], inFeatures = p.shape[1];
        var delta = zeros(outFeatures, inFeatures, dtype: float64);
        for (long r = 0; r < outFeatures; r++)
            for (long c = 0; c < inFeatures; c++)
            {
                double sum = 0;
                for (long k = 0; k < rank; k++) sum += q[r, k].item<double>() * e[k, 0].item<double>() * p[k, c].item<double>();
                delta[r, c] = sum * scale;
            }
        return delta;
    }

    [Fact]
    public void StartsAtTheBaseWithLambdaZeroAndGaussianFactors()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var layer = new AdaLoRALinear("T.q", Linear(64, 48), "default", Options);
        Assert.Equal(0, layer.LoraE("default").abs().sum().item<float>());
        Assert.Equal(new long[] { 5, 64 }, layer.LoraA("default").shape);
        Assert.Equal(new long[] { 5, 1 }, layer.LoraE("default").shape);
        Assert.Equal(new long[] { 48, 5 }, layer.LoraB("default").shape);
        Assert.InRange(layer.LoraA("default").std().item<float>(), 0.017, 0.023);
        var x = randn(3, 64);
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));
    }

    [Fact]
    public void ForwardAndDeltaFollowTheTripletFormulaWithTheFrozenRanknum()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        TensorAssert.Close(NaiveDelta(layer, "default"), layer.DeltaWeight("default").to(float64), atol: 1e-6);
        var x = randn(4, 12);
        var w = layer.BaseLayer.get_parameter("weight")!.detach().to(float64);
        var b = layer.BaseLayer.get_parameter("bias")!.detach().to(float64);
        var expected = x.to(float64).matmul(w.add(NaiveDelta(layer, "default")).t()).add(b);
        TensorAssert.Close(expected, layer.forward(x).to(float64), atol: 1e-5);
    }

    [Fact]
    public void GradientsReachPLambdaAndQAsTheUnfusedFormulaGives()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var x = randn(4, 12);
        layer.forward(x).square().sum().backward();
        var fused = new[] { layer.LoraA("default").grad!.clone(), layer.LoraE("default").grad!.clone(), layer.LoraB("default").grad!.clone() };
        var p = layer.LoraA("default").detach().clone().requires_grad_();
        var e = layer.LoraE("default").detach().clone().requires_grad_();
        var q = layer.LoraB("default").detach().clone().requires_grad_();
        var w = layer.BaseLayer.get_parameter("weight")!.detach();
        var bias = layer.BaseLayer.get_parameter("bias")!.detach();
        var y = x.matmul(w.t()).add(bias).add(x.matmul(p.mul(e).t()).matmul(q.t()).mul(layer.Options("default").Scaling));
        y.square().sum().backward();
        TensorAssert.Close(p.grad!, fused[0], atol: 1e-5);
        TensorAssert.Close(e.grad!, fused[1], atol: 1e-5);
        TensorAssert.Close(q.grad!, fused[2], atol: 1e-5);
    }

    [Fact]
    public void MergeAndUnmergeAreExact()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var x = randn(4, 12);
        var before = layer.forward(x);
        var w0 = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        layer.Merge(new[] { "default" });
        TensorAssert.Close(before, layer.forward(x), atol: 1e-5);
        layer.Unmerge();
        TensorAssert.Close(w0, layer.BaseLayer.get_parameter("weight")!.detach(), atol: 1e-6);
        TensorAssert.Close(before, layer.forward(x), atol: 1e-6);
    }

    // ---- budget schedule -------------------------------------------------------------------------------------------

    /// <summary>⌊(b₀ − b_T)·(1 − (t − t_i)/(T − t_f − t_i))³ + b_T⌋, written out.</summary>
    private static int Formula(int b0, int bT, int t, int ti, int tf, int total) =>
        (int)Math.Floor((b0 - bT) * Math.Pow(1 - (double)(t - ti) / (total - tf - ti), 3) + bT);

    [Fact]
    public void BudgetAtTinitMidwayAndEndIsTheCubicSchedule()
    {
        var o = new AdaLoRAOptions { TargetRank = 2, InitRank = 12, TotalSteps = 100, Tinit = 10, Tfinal = 20, DeltaT = 5 };
        const int layers = 3, b0 = 36, bT = 6;
        Assert.Equal((b0, false), AdaLoRA.Budget(o, layers, 0));
        Assert.Equal((b0, false), AdaLoRA.Budget(o, layers, 10)); // at Tinit: still the full budget, no mask
        var mid = AdaLoRA.Budget(o, layers, 45); // halfway through [10, 80]
        Assert.Equal(Formula(b0, bT, 45, 10, 20, 100), mid.Budget);
        Assert.Equal(6 + 30 / 8, mid.Budget); // (1 − 1/2)³ = 1/8 of the 30 ranks to lose: ⌊6 + 3.75⌋
        Assert.True(mid.Mask); // 45 % 5 == 0
        Assert.False(AdaLoRA.Budget(o, layers, 46).Mask);
        Assert.Equal(Formula(b0, bT, 11, 10, 20, 100), AdaLoRA.Budget(o, layers, 11).Budget);
        Assert.Equal((bT, true), AdaLoRA.Budget(o, layers, 80)); // TotalSteps − Tfinal: the target
        Assert.Equal((bT, true), AdaLoRA.Budget(o, layers, 81));
        for (int t = 11; t < 80; t++) Assert.Equal(Formula(b0, bT, t, 10, 20, 100), AdaLoRA.Budget(o, layers, t).Budget);
    }

    // ---- importance and masking ------------------------------------------------------------------------------------

    [Fact]
    public void ImportanceOfAParameterWithZeroGradientDecaysAsTheEmaSays()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var x = randn(4, 12);
        layer.forward(x).square().sum().backward();
        var p = layer.LoraA("default");
        var i1 = p.detach().mul(p.grad!).abs().to(float64);
        var sites = new List<(string, IAdapterLayer)> { ("q", layer) };
        AdaLoRA.Allocator.UpdateAndAllocate(sites, "default", 0); // step 0 ≤ Tinit: EMAs only
        var (ipt, unc) = layer.ImportanceOf("default");
        TensorAssert.Close(i1.mul(0.15), ipt[0].to(float64), atol: 1e-9);
        TensorAssert.Close(i1.mul(0.85).mul(0.15), unc[0].to(float64), atol: 1e-9); // |I − Ī| = 0.85·I

        // Zero gradient: I = 0, Ī ← 0.85·Ī, Ū ← 0.85·Ū + 0.15·|0 − Ī_new|.
        var (ipt1, unc1) = (ipt[0].to(float64).clone(), unc[0].to(float64).clone());
        foreach (var (_, param) in layer.AdapterParameters("default")) param.grad!.zero_();
        AdaLoRA.Allocator.UpdateAndAllocate(sites, "default", 1);
        var expectedI = ipt1.mul(0.85);
        TensorAssert.Close(expectedI, ipt[0].to(float64), atol: 1e-9);
        TensorAssert.Close(unc1.mul(0.85).add(expectedI.mul(0.15)), unc[0].to(float64), atol: 1e-9);
    }

    [Fact]
    public void TripletScoreIsLambdaScorePlusMeansOverPAndQ()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.forward(randn(4, 12)).square().sum().backward();
        AdaLoRA.Allocator.UpdateAndAllocate(new List<(string, IAdapterLayer)> { ("q", layer) }, "default", 0);
        var (ipt, unc) = layer.ImportanceOf("default");
        var sp = ipt[0].mul(unc[0]).to(float64);
        var se = ipt[1].mul(unc[1]).to(float64);
        var sq = ipt[2].mul(unc[2]).to(float64);
        var scores = layer.TripletScores("default").to(float64);
        for (int i = 0; i < 5; i++)
        {
            double expected = se[i, 0].item<double>() + sp[i].mean().item<double>() + sq[.., i].mean().item<double>();
            Assert.Equal(expected, scores[i].item<double>(), 1e-12);
        }
    }

    [Fact]
    public void MaskedTripletsContributeNothing()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.forward(randn(4, 12)).square().sum().backward();
        var sites = new List<(string, IAdapterLayer)> { ("q", layer) };
        AdaLoRA.Allocator.UpdateAndAllocate(sites, "default", 0);
        // The final step masks to the target: 2 of 5 ranks stay.
        AdaLoRA.Allocator.UpdateAndAllocate(sites, "default", Options.TotalSteps - Options.Tfinal);
        var kept = layer.KeptRanks("default");
        Assert.Equal(2, kept.Count(k => k));
        var x = randn(4, 12);
        var y = layer.forward(x).detach().clone();
        using (no_grad())
            for (int i = 0; i < kept.Length; i++)
            {
                if (kept[i]) continue;
                Assert.Equal(0, layer.LoraE("default")[i, 0].item<float>());
                layer.LoraA("default")[i].normal_();       // a masked triplet's P and Q can be anything
                layer.LoraB("default")[.., i].normal_();
            }
        TensorAssert.Equal(y, layer.forward(x));
        // After the final mask it is re-applied every step, even if Λ moved.
        using (no_grad()) layer.LoraE("default").fill_(1);
        AdaLoRA.Allocator.UpdateAndAllocate(sites, "default", Options.TotalSteps - Options.Tfinal + 1);
        for (int i = 0; i < kept.Length; i++)
            Assert.Equal(kept[i] ? 1f : 0f, layer.LoraE("default")[i, 0].item<float>());
    }

    [Fact]
    public void OrthogonalRegularizerIsTheMeanOfUnsquaredFrobeniusNormsTimesItsWeight()
    {
        using var scope = NewDisposeScope();
        var a = Make();
        var b = Make(inF: 8, outF: 6);
        var sites = new List<(string, IAdapterLayer)> { ("q", a), ("v", b) };
        double sum = 0;
        foreach (var layer in new[] { a, b })
        {
            var p = layer.LoraA("default").detach().to(float64);
            var q = layer.LoraB("default").detach().to(float64);
            sum += Frobenius(p.matmul(p.t()).sub(eye(5, dtype: float64)));
            sum += Frobenius(q.t().matmul(q).sub(eye(5, dtype: float64)));
        }
        var reg = AdaLoRA.Allocator.Regularization(sites, "default")!;
        Assert.Equal(0.5 * sum / 4, reg.item<float>(), 1e-5);

        static double Frobenius(Tensor m)
        {
            double s = 0;
            foreach (var v in m.data<double>()) s += v * v;
            return Math.Sqrt(s);
        }
    }

    // ---- training, files -------------------------------------------------------------------------------------------

    private static (AdaLoRANet Model, Tensor X, Tensor Y) Trained(int steps)
    {
        manual_seed(11);
        var model = new AdaLoRANet();
        var x = randn(32, 16);
        var y = sin(x[.., ..5].mul(2));
        var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-2));
        for (int i = 0; i < steps; i++) trainer.Step(() => functional.mse_loss(model.forward(x), y));
        return (model, x, y);
    }

    [Fact]
    public void TrainingReachesTheTargetBudgetExactlyAndSavesSlicedTensors()
    {
        using var scope = NewDisposeScope();
        var (model, x, _) = Trained(40);
        var layers = model.AdapterLayers.Select(l => (l.Path, Layer: (AdaLoRALinear)l.Layer)).ToList();
        Assert.Equal(2 * 3, layers.Sum(l => l.Layer.KeptRanks("default").Count(k => k)));
        foreach (var (_, layer) in layers)
        {
            var kept = layer.KeptRanks("default");
            for (int i = 0; i < kept.Length; i++)
                if (!kept[i]) Assert.Equal(0, layer.LoraE("default")[i, 0].item<float>());
        }

        using var folder = new TempFolder();
        model.eval();
        Tensor y;
        using (no_grad()) y = model.forward(x);
        model.SaveAdapters(folder.Path);
        using (var file = Safetensors.Read(Path.Combine(folder.Path, PeftAdapterFormat.WeightsFileName)))
        {
            Assert.DoesNotContain(file.Tensors.Keys, k => k.Contains("ranknum") || k.EndsWith(".weight", StringComparison.Ordinal));
            foreach (var (path, layer) in layers)
            {
                int k = layer.KeptRanks("default").Count(b => b);
                Assert.Equal(new long[] { k, 16 }, file.Tensors[$"base_model.model.{path}.lora_A"].shape);
                Assert.Equal(new long[] { k, 1 }, file.Tensors[$"base_model.model.{path}.lora_E"].shape);
                Assert.Equal(new long[] { layer.OutFeatures, k }, file.Tensors[$"base_model.model.{path}.lora_B"].shape);
            }
        }
        var config = AdapterConfig.Read(Path.Combine(folder.Path, AdapterConfig.FileName));
        Assert.Equal("ADALORA", config["peft_type"]!.GetValue<string>());
        foreach (var (path, layer) in layers)
            Assert.Equal(layer.KeptRanks("default"), config["rank_pattern"]![path + ".lora_E"]!.AsArray().Select(n => n!.GetValue<bool>()));

        manual_seed(99);
        var again = new AdaLoRANet();
        CopyBase(model, again);
        again.LoadAdapters(folder.Path);
        again.eval();
        using (no_grad())
        {
            TensorAssert.Equal(y, again.forward(x));
            again.MergeAdapters();
            TensorAssert.Close(y, again.forward(x), atol: 1e-5);
            again.UnmergeAdapters();
            TensorAssert.Close(y, again.forward(x), atol: 1e-6);
        }
        foreach (var ((_, a), (_, b)) in layers.Zip(again.AdapterLayers))
            Assert.Equal(a.KeptRanks("default"), ((AdaLoRALinear)b).KeptRanks("default"));
    }

    /// <summary>Copies every tensor of <paramref name="from"/> but the adapters' (<c>lora_*</c>) into <paramref name="to"/>: the base layers and the head.</summary>
    internal static void CopyBase(Module<Tensor, Tensor> from, Module<Tensor, Tensor> to)
    {
        var source = from.state_dict();
        using var _ = no_grad();
        foreach (var (name, tensor) in to.state_dict())
            if (!name.Contains("lora_")) tensor.copy_(source[name]);
    }

    [Fact]
    public void ExportAsPlainLoRAGivesTheSameDeltaWithRankAndAlphaPatterns()
    {
        using var scope = NewDisposeScope();
        var (model, _, _) = Trained(40);
        using var folder = new TempFolder();
        PeftAdapterFormat.Save(GetCore(model), folder.Path, asPlainLoRA: true);
        var config = AdapterConfig.Read(Path.Combine(folder.Path, AdapterConfig.FileName));
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
        using var file = Safetensors.Read(Path.Combine(folder.Path, PeftAdapterFormat.WeightsFileName));
        foreach (var (path, l) in model.AdapterLayers)
        {
            var layer = (AdaLoRALinear)l;
            int k = layer.KeptRanks("default").Count(b => b);
            if (k == 0)
            {
                Assert.DoesNotContain($"base_model.model.{path}.lora_A.weight", file.Tensors.Keys);
                continue;
            }
            double r = AdapterConfig.PerLayer(config, "r", path, "cfg");
            double alpha = AdapterConfig.PerLayer(config, "lora_alpha", path, "cfg");
            Assert.Equal(k, r);
            var delta = file.Tensors[$"base_model.model.{path}.lora_B.weight"].to(float64)
                .matmul(file.Tensors[$"base_model.model.{path}.lora_A.weight"].to(float64)).mul(alpha / r);
            TensorAssert.Close(NaiveDelta(layer, "default"), delta, atol: 1e-6);
        }
    }

    private static PeftModelCore GetCore(IPeftModel model) =>
        (PeftModelCore)model.GetType().GetField("__peftCore", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(model)!;

    [Fact]
    public void AHandWrittenLoopCallsUpdateAndAllocateAndAddsTheRegularizer()
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var model = new AdaLoRANet();
        var x = randn(32, 16);
        var y = sin(x[.., ..5].mul(2));
        var optimizer = optim.AdamW(model.TrainableParameters(), 1e-2);
        for (int step = 0; step < 40; step++)
        {
            optimizer.zero_grad();
            var loss = functional.mse_loss(model.forward(x), y).add(model.OrthogonalRegularization()!);
            loss.backward();
            optimizer.step();
            model.UpdateAndAllocate(step);
        }
        Assert.Equal(6, model.AdapterLayers.Sum(l => ((AdaLoRALinear)l.Layer).KeptRanks("default").Count(k => k)));
    }

    [Fact]
    public void BadOptionsFailAtConstructionNamingTheLayer()
    {
        using var scope = NewDisposeScope();
        var ex = Assert.Throws<ArgumentException>(() => new AdaLoRALinear("T.q", Linear(8, 8), "default", new AdaLoRAOptions { TargetRank = 2 }));
        Assert.Equal(PeftMessages.Format(PeftMessages.TotalStepsMissing, "T.q", 0), ex.Message);
        ex = Assert.Throws<ArgumentException>(() => new AdaLoRALinear("T.q", Linear(8, 8), "default", new AdaLoRAOptions { TargetRank = 2, TotalSteps = 10, Tinit = 6, Tfinal = 4 }));
        Assert.Contains("T.q: AdaLoRA Tinit 6", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => new AdaLoRALinear("T.q", Linear(8, 8), "default", new AdaLoRAOptions { TargetRank = 4, InitRank = 3, TotalSteps = 10 }));
        Assert.Contains("InitRank 3 is less than the target rank 4", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => new AdaLoRALinear("T.q", Linear(8, 8), "default", new AdaLoRAOptions { TargetRank = 2, TotalSteps = 10, Beta2 = 1 }));
        Assert.Equal("T.q: AdaLoRA Beta2 1 is outside (0, 1)", ex.Message);
    }

    // ---- PEFT's own file ---------------------------------------------------------------------------------------------

    [SharedDataFact(PeftWrittenTests.Folder)]
    public void PeftsFileLoadsAndGivesPeftsOutputIncludingALayerThatKeptNoRank()
    {
        using var scope = NewDisposeScope();
        string dir = PeftWrittenTests.CaseFolder("adalora");
        var model = new WrittenAdaLoRA();
        PeftWrittenTests.LoadBase(model, Path.Combine(dir, "base.safetensors"));
        model.LoadAdapters(dir);
        model.eval();
        using var reference = Safetensors.Read(Path.Combine(dir, "reference.safetensors"));
        var x = reference.Tensors["x"];
        using var _ = no_grad();
        TensorAssert.Close(reference.Tensors["y"], model.forward(x), 1e-5, 1e-5);
        var v = (AdaLoRALinear)model.AdapterLayers.Single(l => l.Path == "v").Layer;
        Assert.All(v.KeptRanks("default"), k => Assert.False(k));
        Assert.Equal(0, v.DeltaWeight("default").abs().sum().item<float>());
        model.MergeAdapters();
        TensorAssert.Close(reference.Tensors["y"], model.forward(x), 1e-5, 1e-5);
        model.UnmergeAdapters();
        TensorAssert.Close(reference.Tensors["y"], model.forward(x), 1e-5, 1e-5);
    }

    [SharedDataFact(PeftWrittenTests.Folder)]
    public void SavingPeftsFileAgainGivesPeftsTensorsAndConfig()
    {
        using var scope = NewDisposeScope();
        string dir = PeftWrittenTests.CaseFolder("adalora");
        var model = new WrittenAdaLoRA();
        PeftWrittenTests.LoadBase(model, Path.Combine(dir, "base.safetensors"));
        model.LoadAdapters(dir);
        using var folder = new TempFolder();
        model.SaveAdapters(folder.Path);
        using var original = Safetensors.Read(Path.Combine(dir, PeftAdapterFormat.WeightsFileName));
        using var written = Safetensors.Read(Path.Combine(folder.Path, PeftAdapterFormat.WeightsFileName));
        Assert.Equal(original.Tensors.Keys.Order(), written.Tensors.Keys.Order());
        foreach (var (key, tensor) in original.Tensors) TensorAssert.Equal(tensor, written.Tensors[key]);
        var peft = AdapterConfig.Read(Path.Combine(dir, AdapterConfig.FileName));
        var ours = AdapterConfig.Read(Path.Combine(folder.Path, AdapterConfig.FileName));
        var skip = new HashSet<string> { "base_model_name_or_path", "task_type", "target_modules" };
        foreach (var (key, value) in ours)
        {
            if (skip.Contains(key)) continue;
            Assert.True(peft.ContainsKey(key), $"PEFT's config has no '{key}'");
            Assert.True(JsonNode.DeepEquals(peft[key], value), $"{key}: ours {value?.ToJsonString()}, PEFT's {peft[key]?.ToJsonString()}");
        }
        Assert.Equal(peft["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).Order(), ours["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).Order());
    }

    /// <summary>With PEFT_INTEROP_OUT set, writes a trained PeftDsl AdaLoRA adapter where peft_interop.py's check reads it.</summary>
    [SharedDataFact(PeftWrittenTests.Folder)]
    public void PeftDslWrittenAdapterForPeft()
    {
        using var scope = NewDisposeScope();
        string dir = PeftWrittenTests.CaseFolder("adalora");
        string? root = Environment.GetEnvironmentVariable(PeftWrittenTests.InteropOutVariable);
        using var temp = new TempFolder();
        string caseDir = string.IsNullOrEmpty(root) ? temp.Path : Path.Combine(root, "adalora");
        manual_seed(5);
        var model = new WrittenAdaLoRA();
        PeftWrittenTests.LoadBase(model, Path.Combine(dir, "base.safetensors"));
        using var reference = Safetensors.Read(Path.Combine(dir, "reference.safetensors"));
        var x = reference.Tensors["x"];
        var target = sin(x[.., ..5].mul(2));
        var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-2));
        for (int i = 0; i < 60; i++) trainer.Step(() => functional.mse_loss(model.forward(x), target));
        model.eval();
        Tensor y;
        using (no_grad()) y = model.forward(x);
        model.SaveAdapters(Path.Combine(caseDir, "adapter"));
        PeftWrittenTests.WriteBaseAndReference(dir, caseDir, x, y);
        // The same adapter exported as a plain LoRA, for tools that read only LoRA (PEFT's check loads it as LORA).
        string plainDir = string.IsNullOrEmpty(root) ? Path.Combine(temp.Path, "plain") : Path.Combine(root, "adalora-as-lora");
        PeftAdapterFormat.Save(GetCore(model), Path.Combine(plainDir, "adapter"), asPlainLoRA: true);
        PeftWrittenTests.WriteBaseAndReference(dir, plainDir, x, y);
        Assert.Equal("LORA", AdapterConfig.Read(Path.Combine(plainDir, "adapter", AdapterConfig.FileName))["peft_type"]!.GetValue<string>());

        var again = new WrittenAdaLoRA();
        PeftWrittenTests.LoadBase(again, Path.Combine(dir, "base.safetensors"));
        again.LoadAdapters(Path.Combine(caseDir, "adapter"));
        again.eval();
        using (no_grad()) TensorAssert.Equal(y, again.forward(x));
    }
}
