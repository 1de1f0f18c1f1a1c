using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.Kernels;
using Peft.Runtime.Training;
using Peft.Tests.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

public class LaMDATests
{
    private static LaMDALinear Make(long inF = 12, long outF = 10, LaMDAOptions? options = null, ScalarType dtype = ScalarType.Float32)
    {
        manual_seed(1);
        var linear = nn.Linear(inF, outF, dtype: dtype);
        var layer = new LaMDALinear("T.q", linear, "default", options ?? new LaMDAOptions { Rank = 3, Alpha = 6 });
        using (no_grad())
            foreach (var n in layer.AdapterNames)
            {
                layer.Core(n).normal_(0, 0.5);
                layer.LoraB(n).add_(randn_like(layer.LoraB(n)) * 0.3);
            }
        return layer;
    }

    // y[n, o] = Σ_i x[n, i] W[o, i] + b[o] + s · Σ_k B[o, k] Σ_j S[k, j] Σ_i A[j, i] x̃[n, i], x̃ = x ⊙ mask, written out in float64.
    private static Tensor Naive(Tensor x, Tensor w, Tensor? bias, Tensor a, Tensor s, Tensor b, double scaling, Tensor? mask)
    {
        var xd = mask is null ? x : x * mask;
        var h = (xd.unsqueeze(1) * a.unsqueeze(0)).sum(2);           // [n, r]: Σ_i A[j, i] x̃[n, i]
        var v = (h.unsqueeze(1) * s.unsqueeze(0)).sum(2);            // [n, r]: Σ_j S[k, j] h[n, j]
        var update = (v.unsqueeze(1) * b.unsqueeze(0)).sum(2);       // [n, out]: Σ_k B[o, k] v[n, k]
        var y = (x.unsqueeze(1) * w.unsqueeze(0)).sum(2) + update * scaling;
        return bias is null ? y : y + bias;
    }

    [Theory]
    [InlineData(0.0, 0)]
    [InlineData(0.0, 2)]
    [InlineData(0.3, 0)]
    [InlineData(0.3, 1)]
    public void ForwardAndGradientsEqualTheFormulaInFloat64(double p, int frozen)
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        long n = 7, inF = 9, outF = 6; int r = 3; double s = 8.0 / 3;
        var x = randn(n, inF, dtype: float64).requires_grad_();
        var w = randn(outF, inF, dtype: float64);
        var bias = randn(outF, dtype: float64);
        var a = randn(r, inF, dtype: float64);
        var core = randn(r, r, dtype: float64).requires_grad_();
        var b = randn(outF, r, dtype: float64).requires_grad_();
        const ulong seed = 0xABCDEF;
        var mask = p > 0 ? LoRAFunction.MaskTensor(seed, p, new[] { n, inF }).to(float64) : null;
        var upstream = randn(n, outF, dtype: float64);

        var expected = Naive(x, w, bias, a, core, b, s, mask);
        var eg = torch.autograd.grad(new[] { expected }, new[] { x, core, b }, new[] { upstream });
        var baseOut = nn.functional.linear(x, w, bias);
        var actual = LaMDAFunction.Apply(baseOut, x, a, core, b, s, p, frozen, seed);
        var ag = torch.autograd.grad(new[] { actual }, new[] { x, core, b }, new[] { upstream });

        TensorAssert.Close(expected, actual, 1e-12, 1e-12);
        TensorAssert.Close(eg[0], ag[0], 1e-12, 1e-12);
        TensorAssert.Close(eg[1], ag[1], 1e-12, 1e-12);
        // B's frozen columns get no gradient; the others the formula's.
        var expectedB = eg[2].clone();
        if (frozen > 0) expectedB.narrow(1, 0, frozen).zero_();
        TensorAssert.Close(expectedB, ag[2], 1e-12, 1e-12);
        if (frozen > 0) Assert.Equal(0.0, ag[2].narrow(1, 0, frozen).abs().sum().item<double>());
    }

    [Fact]
    public void StartsAtTheBaseFromSingularVectors()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        var linear = nn.Linear(12, 10);
        var layer = new LaMDALinear("T.q", linear, "default", new LaMDAOptions { Rank = 4 });
        var x = randn(5, 12);
        TensorAssert.Equal(linear.forward(x), layer.forward(x));
        var (u, sv, vh) = linalg.svd(linear.weight!.detach(), fullMatrices: false);
        // Singular vectors up to sign: |⟨a_k, v_k⟩| = 1, |⟨b_k, u_k⟩| = 1.
        var a = layer.LoraA("default").detach();
        var b = layer.LoraB("default").detach();
        TensorAssert.Close(ones(4), (a * vh.narrow(0, 0, 4)).sum(dim: 1).abs(), 1e-4, 1e-4);
        TensorAssert.Close(ones(4), (b * u.narrow(1, 0, 4)).sum(dim: 0).abs(), 1e-4, 1e-4);
        Assert.False(layer.LoraA("default").requires_grad);
        Assert.Equal(0.0, layer.Core("default").detach().abs().sum().item<float>());
    }

    [Fact]
    public void TheScheduleFreezesOneColumnPerStepsOverRank()
    {
        var o = new LaMDAOptions { Rank = 4, FreezeBStart = 10, FreezeBSteps = 100 };
        Assert.Equal(new[] { 0, 0, 0, 1, 1, 2, 3, 4, 4 }, new[] { 0, 10, 34, 35, 59, 60, 85, 110, 1000 }.Select(o.FrozenColumnsAt));
        Assert.Equal(4, new LaMDAOptions { Rank = 4, FreezeBSteps = 0 }.FrozenColumnsAt(0));
        // Rank above the step count: several columns per step.
        Assert.Equal(new[] { 0, 4, 8 }, new[] { 0, 1, 2 }.Select(new LaMDAOptions { Rank = 8, FreezeBSteps = 2 }.FrozenColumnsAt));
    }

    [Fact]
    public void TrainerFreezesColumnsExactlyEvenWithMomentumAndWeightDecay()
    {
        using var scope = NewDisposeScope();
        var layer = Make(options: new LaMDAOptions { Rank = 3, Alpha = 6, FreezeBSteps = 6 });
        var root = nn.Sequential(("q", layer));
        var core = MiscAdapterKit.Attach(root);
        long before = core.TrainableParameterCount;
        Assert.Equal(3 * 3 + 10 * 3, before);
        var optimizer = optim.AdamW(core.TrainableParameters(), 1e-2, weight_decay: 0.1);
        var trainer = new AdapterTrainer(root, optimizer);
        manual_seed(5);
        var x = randn(16, 12);
        var target = randn(16, 10);
        var history = new List<Tensor>();
        for (int step = 1; step <= 8; step++)
        {
            trainer.Step(() => nn.functional.mse_loss(root.forward(x), target));
            history.Add(layer.LoraB("default").detach().clone());
            Assert.Equal(Math.Min(3, step * 3 / 6), layer.FrozenColumns("default"));
        }
        // Column 0 froze after step 2, column 1 after 4, column 2 after 6: never changed afterwards, though AdamW's
        // momentum and decay act on all of B.
        for (int step = 3; step <= 8; step++) TensorAssert.Equal(history[1].narrow(1, 0, 1), history[step - 1].narrow(1, 0, 1));
        for (int step = 5; step <= 8; step++) TensorAssert.Equal(history[3].narrow(1, 1, 1), history[step - 1].narrow(1, 1, 1));
        TensorAssert.Equal(history[5], history[7]);
        Assert.False(TensorAssert.Same(history[1].narrow(1, 2, 1), history[3].narrow(1, 2, 1))); // column 2 trained meanwhile
        Assert.False(layer.LoraB("default").requires_grad);
        Assert.Equal(9, core.TrainableParameterCount);
        Assert.DoesNotContain(layer.AdapterParameters("default"), p => p.Name.StartsWith("lora_B", StringComparison.Ordinal));
    }

    [Fact]
    public void AHandWrittenLoopDrivesTheScheduleThroughAdapterSchedule()
    {
        using var scope = NewDisposeScope();
        var layer = Make(options: new LaMDAOptions { Rank = 3, FreezeBStart = 1, FreezeBSteps = 3 });
        var root = nn.Sequential(("q", layer));
        AdapterSchedule.AfterOptimizerStep(root, 1);
        Assert.Equal(0, layer.FrozenColumns("default"));
        AdapterSchedule.AfterOptimizerStep(root, 3);
        Assert.Equal(2, layer.FrozenColumns("default"));
        AdapterSchedule.AfterOptimizerStep(root, 2); // earlier steps never unfreeze
        Assert.Equal(2, layer.FrozenColumns("default"));
        Assert.Throws<ArgumentOutOfRangeException>(() => AdapterSchedule.AfterOptimizerStep(root, -1));
        var frozenFromStart = Make(options: new LaMDAOptions { Rank = 2, FreezeBSteps = 0 });
        Assert.Equal(2, frozenFromStart.FrozenColumns("default"));
        Assert.False(frozenFromStart.LoraB("default").requires_grad);
    }

    [Fact]
    public void TrainsTowardsATarget()
    {
        var layer = Make(16, 8, new LaMDAOptions { Rank = 4, Alpha = 8, FreezeBSteps = 100 });
        manual_seed(9);
        var dw = randn(8, 4).matmul(randn(4, 16)) * 0.2;
        var (first, last) = MiscAdapterKit.Train(layer, x => layer.BaseLayer.forward(x) + x.matmul(dw.t()), steps: 200);
        Assert.True(last < first * 0.5, $"loss {first} → {last}");
    }

    [Fact]
    public void MergeAndUnmergeAreExactAndDeltaIsTheFormula()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.eval();
        var x = randn(5, 12);
        var before = layer.forward(x);
        var original = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        var delta = layer.LoraB("default").detach().to(float64).matmul(layer.Core("default").detach().to(float64)).matmul(layer.LoraA("default").detach().to(float64)) * 2.0;
        TensorAssert.Close(delta, layer.DeltaWeight("default").to(float64), 1e-6, 1e-6);
        layer.Merge(new[] { "default" });
        TensorAssert.Close(before, layer.forward(x), 1e-5, 1e-5);
        layer.Unmerge();
        TensorAssert.Close(original, layer.BaseLayer.get_parameter("weight")!, 1e-6, 1e-7);
        TensorAssert.Close(before, layer.forward(x), 1e-5, 1e-6);
    }

    [Fact]
    public void NamedAdaptersSwitchAndStack()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.AddAdapter("other", new LaMDAOptions { Rank = 2, Alpha = 2 });
        using (no_grad()) layer.Core("other").normal_();
        layer.eval();
        var x = randn(4, 12);
        var baseOut = layer.BaseLayer.forward(x);
        Tensor Expect(params string[] names) => names.Aggregate(baseOut, (y, n) => y + x.matmul(layer.DeltaWeight(n).t()));
        TensorAssert.Close(Expect("default"), layer.forward(x), 1e-5, 1e-5);
        layer.SetActiveAdapters(new[] { "other" });
        TensorAssert.Close(Expect("other"), layer.forward(x), 1e-5, 1e-5);
        layer.SetActiveAdapters(new[] { "default", "other" });
        TensorAssert.Close(Expect("default", "other"), layer.forward(x), 1e-5, 1e-5);
        layer.DeleteAdapter("other");
        Assert.DoesNotContain(layer.named_parameters(), p => p.name.Contains(".other.", StringComparison.Ordinal));
    }

    [Fact]
    public void ConstructionChecksTheShapeAndTheSchedule()
    {
        var ex = Assert.Throws<ArgumentException>(() => LaMDA.Wrap(nn.Linear(4, 6), "T.q", "default", new LaMDAOptions { Rank = 5 }));
        Assert.Equal(PeftMessages.Format(PeftMessages.RankTooLarge, "T.q", "LaMDA", 5, 4, 6, 4), ex.Message);
        ex = Assert.Throws<ArgumentException>(() => LaMDA.Wrap(nn.Linear(4, 6), "T.q", "default", new LaMDAOptions { Rank = 2, FreezeBSteps = -3 }));
        Assert.Equal(PeftMessages.Format(PeftMessages.ScheduleStepsNegative, "T.q", "LaMDA", "FreezeBSteps", -3), ex.Message);
    }

    private static (nn.Module Root, LaMDALinear Q, LaMDALinear V) Build(int adapterSeed)
    {
        manual_seed(3);
        var q = (LaMDALinear)LaMDA.Wrap(nn.Linear(16, 8), "T.q", "default", new LaMDAOptions { Rank = 4, Alpha = 8, Dropout = 0.1 });
        var v = (LaMDALinear)LaMDA.Wrap(nn.Linear(12, 20), "T.v", "default", new LaMDAOptions { Rank = 2, Alpha = 3, Dropout = 0.1 });
        var root = nn.Sequential(("q", q), ("v", v));
        MiscAdapterKit.Randomize(root, adapterSeed);
        return (root, q, v);
    }

    [Fact]
    public void SavesExactlyALoRAAndLoadsItBack()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, q, v) = Build(5);
        MiscAdapterKit.Attach(root).SaveAdapters(folder.Path);

        var config = MiscAdapterKit.AssertPlainLoRAOfQV(folder.Path, q, v, root);
        Assert.Equal(8, config["alpha_pattern"]!["q"]!.GetValue<int>());
        Assert.Equal(0.1, config["lora_dropout"]!.GetValue<double>());
        Assert.False(config["use_dora"]!.GetValue<bool>());
        Assert.True(config["init_lora_weights"]!.GetValue<bool>());

        var xq = randn(3, 16);
        var xv = randn(3, 12);
        q.eval(); v.eval();

        // Into LaMDA layers: A = the file's S·A, S = I, the same outputs.
        var (root2, q2, v2) = Build(77);
        MiscAdapterKit.CopyBase(root, root2);
        MiscAdapterKit.Attach(root2).LoadAdapters(folder.Path);
        q2.eval(); v2.eval();
        TensorAssert.Close(q.forward(xq), q2.forward(xq), 1e-5, 1e-6);
        TensorAssert.Close(v.forward(xv), v2.forward(xv), 1e-5, 1e-6);
        TensorAssert.Equal(eye(4), q2.Core("default"));

        // A LoRA's file into LaMDA layers (the other way).
        manual_seed(3);
        var lq = (LoRALinear)LoRA.Wrap(nn.Linear(16, 8), "T.q", "default", new LoRAOptions { Rank = 4, Alpha = 8, Dropout = 0.1 });
        var lv = (LoRALinear)LoRA.Wrap(nn.Linear(12, 20), "T.v", "default", new LoRAOptions { Rank = 2, Alpha = 3, Dropout = 0.1 });
        var root3 = nn.Sequential(("q", lq), ("v", lv));
        MiscAdapterKit.CopyBase(root, root3);
        MiscAdapterKit.Randomize(root3, 8);
        lq.eval(); lv.eval();
        using var loraFolder = new TempFolder();
        MiscAdapterKit.Attach(root3).SaveAdapters(loraFolder.Path);
        MiscAdapterKit.Attach(root2).LoadAdapters(loraFolder.Path);
        TensorAssert.Close(lq.forward(xq), q2.forward(xq), 1e-5, 1e-6);
        TensorAssert.Close(lv.forward(xv), v2.forward(xv), 1e-5, 1e-6);
    }

    [Fact]
    public void ARsLoRAOrDoRAFileIsRefusedNamingTheLayer()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        manual_seed(3);
        var lq = (LoRALinear)LoRA.Wrap(nn.Linear(16, 8), "T.q", "default", new LoRAOptions { Rank = 4, UseRsLora = true });
        MiscAdapterKit.Attach(nn.Sequential(("q", lq))).SaveAdapters(folder.Path);
        var (root, q, _) = Build(1);
        var before = q.LoraA("default").detach().clone();
        var ex = Assert.Throws<InvalidDataException>(() => MiscAdapterKit.Attach(nn.Sequential(("q", q))).LoadAdapters(folder.Path));
        Assert.Contains("layer 'q'", ex.Message);
        Assert.Contains("rsLoRA", ex.Message);
        TensorAssert.Equal(before, q.LoraA("default"));
    }
}
