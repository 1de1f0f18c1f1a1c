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
using static TorchSharp.torch.nn;

namespace Peft.Tests.Adapters;

[PeftModel]
public sealed partial class IncreLoRANet : Module<Tensor, Tensor>
{
    [IncreLoRA(3, InitRank = 1, MaxRank = 6, TopH = 2, Warmup = 4, Interval = 3)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [IncreLoRA(3, InitRank = 1, MaxRank = 6, TopH = 2, Warmup = 4, Interval = 3)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [IncreLoRA(3, InitRank = 1, MaxRank = 6, TopH = 2, Warmup = 4, Interval = 3)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public IncreLoRANet() : base(nameof(IncreLoRANet)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

public class IncreLoRATests
{
    private static readonly IncreLoRAOptions Options = new() { TargetRank = 3, InitRank = 2, MaxRank = 5, Alpha = 6, TopH = 1, Warmup = 2, Interval = 2 };

    private static IncreLoRALinear Make(IncreLoRAOptions? options = null)
    {
        manual_seed(3);
        var layer = new IncreLoRALinear("T.q", Linear(12, 10), "default", options ?? Options);
        using (no_grad()) layer.LoraE("default").normal_();
        return layer;
    }

    // ΔW = Σ_{k<r} Q[o, k]·Λ[k]·P[k, i] · α / (ranknum + 1e-5), in float64.
    private static Tensor NaiveDelta(IncreLoRALinear layer, string adapter) =>
        AdaLoRATests.NaiveTripletDelta(layer.LoraA(adapter), layer.LoraE(adapter), layer.LoraB(adapter), layer.Rank(adapter),
            layer.Options(adapter).Alpha / (layer.Ranknum(adapter) + 1e-5));

    [Fact]
    public void ForwardUsesTheFirstRanksScaledByRanknumAndMergesExactly()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        Assert.Equal(2, layer.Rank("default"));
        Assert.Equal(new long[] { 5, 12 }, layer.LoraA("default").shape); // MaxRank preallocated
        TensorAssert.Close(NaiveDelta(layer, "default"), layer.DeltaWeight("default").to(float64), atol: 1e-6);
        var x = randn(4, 12);
        var y = layer.forward(x);
        var expected = x.to(float64).matmul(layer.BaseLayer.get_parameter("weight")!.detach().to(float64).add(NaiveDelta(layer, "default")).t())
            .add(layer.BaseLayer.get_parameter("bias")!.detach().to(float64));
        TensorAssert.Close(expected, y.to(float64), atol: 1e-5);
        layer.Merge(new[] { "default" });
        TensorAssert.Close(y, layer.forward(x), atol: 1e-5);
        layer.Unmerge();
        TensorAssert.Close(y, layer.forward(x), atol: 1e-6);
    }

    [Fact]
    public void RanksPastTheCurrentOneGetNoGradient()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.forward(randn(4, 12)).square().sum().backward();
        Assert.Equal(0, layer.LoraA("default").grad![2..].abs().sum().item<float>());
        Assert.Equal(0, layer.LoraE("default").grad![2..].abs().sum().item<float>());
        Assert.NotEqual(0, layer.LoraE("default").grad![..2].abs().sum().item<float>());
    }

    [Fact]
    public void GrowingUnmasksRanksWithZeroLambdaAndRescalesByTheNewRanknum()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        using (no_grad()) layer.LoraE("default")[2..].fill_(5); // whatever the unused rows hold
        var before = NaiveDelta(layer, "default");
        var sites = new List<(string, IAdapterLayer)> { ("q", layer) };
        layer.forward(randn(4, 12)).square().sum().backward();
        IncreLoRA.Allocator.UpdateAndAllocate(sites, "default", 2); // a growth step: the only layer gains 1
        Assert.Equal(3, layer.Rank("default"));
        Assert.Equal(3, layer.Ranknum("default"));
        Assert.Equal(0, layer.LoraE("default")[2, 0].item<float>());
        // Same ranks in use, scaled α/(3 + ε) instead of α/(2 + ε): the reference's rescaling of existing components.
        TensorAssert.Close(before.mul((2 + 1e-5) / (3 + 1e-5)), layer.DeltaWeight("default").to(float64), atol: 1e-6);
        // The budget (3 per layer) is reached: nothing grows any more.
        IncreLoRA.Allocator.UpdateAndAllocate(sites, "default", 4);
        Assert.Equal(3, layer.Rank("default"));
    }

    [Fact]
    public void ModuleImportanceIsTheMeanSensitivitySmoothedAsTheEmaSays()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.forward(randn(4, 12)).square().sum().backward();
        double sum = 0;
        long count = 0;
        foreach (var (p, dim) in new[] { (layer.LoraA("default"), 0L), (layer.LoraE("default"), 0L), (layer.LoraB("default"), 1L) })
        {
            var used = p.narrow(dim, 0, 2).to(float64);
            sum += used.mul(p.grad!.narrow(dim, 0, 2).to(float64)).abs().sum().item<double>();
            count += used.numel();
        }
        double i = sum / count;
        var sites = new List<(string, IAdapterLayer)> { ("q", layer) };
        IncreLoRA.Allocator.UpdateAndAllocate(sites, "default", 0);
        var (s1, u1) = layer.Importance("default");
        Assert.Equal(0.15 * i, s1, 1e-6 * i);
        Assert.Equal(0.15 * 0.85 * i, u1, 1e-6 * i);
        foreach (var (_, p) in layer.AdapterParameters("default")) p.grad!.zero_();
        IncreLoRA.Allocator.UpdateAndAllocate(sites, "default", 1); // zero gradient: Ī decays by β₁
        var (s2, u2) = layer.Importance("default");
        Assert.Equal(0.85 * s1, s2, 1e-12);
        Assert.Equal(0.85 * u1 + 0.15 * s2, u2, 1e-12);
    }

    [Fact]
    public void GrowthFollowsTheRuleTopHLayersByScoreUntilTheBudget()
    {
        var o = new IncreLoRAOptions { TargetRank = 3, InitRank = 1, MaxRank = 4, TopH = 2, RankIncrement = 2, Warmup = 10, Interval = 5 };
        Assert.False(IncreLoRA.GrowsAt(o, 9));
        Assert.True(IncreLoRA.GrowsAt(o, 10));
        Assert.False(IncreLoRA.GrowsAt(o, 12));
        Assert.True(IncreLoRA.GrowsAt(o, 15));
        // 3 layers, budget 9, ranks 1+1+1: the two best (layers 2 and 0) gain 2 each.
        Assert.Equal(new[] { 2, 0, 2 }, IncreLoRA.Growth(o, new[] { 1, 1, 1 }, new[] { 0.5, 0.1, 0.9 }));
        // ranks 3+1+3 = 7: 2 left; layer 0 (best) gains its 1 to MaxRank, then layer 1 gets the last 1.
        Assert.Equal(new[] { 1, 1, 0 }, IncreLoRA.Growth(o, new[] { 3, 1, 3 }, new[] { 0.9, 0.5, 0.1 }));
        // At MaxRank a layer is never picked; the budget full, nothing grows.
        Assert.Equal(new[] { 0, 1, 0 }, IncreLoRA.Growth(o, new[] { 4, 1, 3 }, new[] { 0.9, 0.5, 0.1 }));
        Assert.Equal(new[] { 0, 0, 0 }, IncreLoRA.Growth(o, new[] { 4, 2, 3 }, new[] { 0.9, 0.5, 0.1 }));
    }

    [Fact]
    public void TrainingReachesTheBudgetAndSavesAPlainLoRAThatReloads()
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var model = new IncreLoRANet();
        var x = randn(32, 16);
        var y = sin(x[.., ..5].mul(2));
        var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-2));
        for (int i = 0; i < 30; i++) trainer.Step(() => functional.mse_loss(model.forward(x), y));
        var layers = model.AdapterLayers.Select(l => (l.Path, Layer: (IncreLoRALinear)l.Layer)).ToList();
        Assert.Equal(3 * 3, layers.Sum(l => l.Layer.Rank("default")));
        Assert.All(layers, l => Assert.Equal(l.Layer.Rank("default"), l.Layer.Ranknum("default")));

        model.eval();
        Tensor expected;
        using (no_grad()) expected = model.forward(x);
        using var folder = new TempFolder();
        model.SaveAdapters(folder.Path);
        var config = AdapterConfig.Read(Path.Combine(folder.Path, AdapterConfig.FileName));
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
        using (var file = Safetensors.Read(Path.Combine(folder.Path, PeftAdapterFormat.WeightsFileName)))
            foreach (var (path, layer) in layers)
            {
                int r = layer.Rank("default");
                Assert.Equal(r, AdapterConfig.PerLayer(config, "r", path, "cfg"));
                Assert.Equal(8 * r / (r + 1e-5), AdapterConfig.PerLayer(config, "lora_alpha", path, "cfg"), 1e-9);
                Assert.Equal(new long[] { r, 16 }, file.Tensors[$"base_model.model.{path}.lora_A.weight"].shape);
            }

        manual_seed(5);
        var again = new IncreLoRANet();
        AdaLoRATests.CopyBase(model, again);
        again.LoadAdapters(folder.Path);
        again.eval();
        using (no_grad())
        {
            TensorAssert.Close(expected, again.forward(x), atol: 1e-6);
            again.MergeAdapters();
            TensorAssert.Close(expected, again.forward(x), atol: 1e-5);
        }
        foreach (var ((_, a), (_, b)) in layers.Zip(again.AdapterLayers))
            Assert.Equal(a.Rank("default"), ((IncreLoRALinear)b).Rank("default"));
    }

    [Fact]
    public void BadOptionsFailAtConstructionNamingTheLayer()
    {
        using var scope = NewDisposeScope();
        var ex = Assert.Throws<ArgumentException>(() => new IncreLoRALinear("T.q", Linear(8, 8), "default", new IncreLoRAOptions { TargetRank = 32 }));
        Assert.Equal(PeftMessages.Format(PeftMessages.IncreLoRARanks, "T.q", 1, 32, 16), ex.Message);
        ex = Assert.Throws<ArgumentException>(() => new IncreLoRALinear("T.q", Linear(8, 8), "default", new IncreLoRAOptions { TargetRank = 2, Interval = 0 }));
        Assert.Equal("T.q: IncreLoRA Interval must be at least 1, got 0", ex.Message);
    }

    [Fact]
    public void RegularizerIsTheMeanOverRankOneChunksInUseOfTheirNormGap()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var p = layer.LoraA("default").detach().to(float64);
        var q = layer.LoraB("default").detach().to(float64);
        double sum = 0;
        for (int k = 0; k < 2; k++)
            sum += Math.Abs(p[k].square().sum().item<double>() - 1) + Math.Abs(q[.., k].square().sum().item<double>() - 1);
        var reg = IncreLoRA.Allocator.Regularization(new List<(string, IAdapterLayer)> { ("q", layer) }, "default")!;
        Assert.Equal(0.1 * sum / 4, reg.item<float>(), 1e-6);
    }

    /// <summary>With PEFT_INTEROP_OUT set, writes a trained IncreLoRA adapter (a plain LoRA) where peft_interop.py's check reads it.</summary>
    [SharedDataFact(PeftWrittenTests.Folder)]
    public void PeftDslWrittenAdapterForPeft()
    {
        using var scope = NewDisposeScope();
        string dir = PeftWrittenTests.CaseFolder("adalora"); // the same tiny model (q, v, f, head)
        string? root = Environment.GetEnvironmentVariable(PeftWrittenTests.InteropOutVariable);
        using var temp = new TempFolder();
        string caseDir = string.IsNullOrEmpty(root) ? temp.Path : Path.Combine(root, "increlora");
        manual_seed(5);
        var model = new IncreLoRANet();
        PeftWrittenTests.LoadBase(model, Path.Combine(dir, "base.safetensors"));
        using var reference = Safetensors.Read(Path.Combine(dir, "reference.safetensors"));
        var x = reference.Tensors["x"];
        var target = sin(x[.., ..5].mul(2));
        var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-2));
        for (int i = 0; i < 30; i++) trainer.Step(() => functional.mse_loss(model.forward(x), target));
        model.eval();
        Tensor y;
        using (no_grad()) y = model.forward(x);
        model.SaveAdapters(Path.Combine(caseDir, "adapter"));
        PeftWrittenTests.WriteBaseAndReference(dir, caseDir, x, y);
        var again = new IncreLoRANet();
        PeftWrittenTests.LoadBase(again, Path.Combine(dir, "base.safetensors"));
        again.LoadAdapters(Path.Combine(caseDir, "adapter"));
        again.eval();
        using (no_grad()) TensorAssert.Close(y, again.forward(x), atol: 1e-6);
    }
}
