using System;
using System.IO;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Tests.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

public class LoLDUTests
{
    private static LoLDULinear Make(long inF = 12, long outF = 10, int rank = 3, ScalarType dtype = ScalarType.Float32, bool moveZ = true, double dropout = 0)
    {
        manual_seed(1);
        var layer = new LoLDULinear("T.q", nn.Linear(inF, outF, dtype: dtype), "default", new LoLDUOptions { Rank = rank, Dropout = dropout });
        if (moveZ)
            using (no_grad()) layer.Z("default").add_(randn_like(layer.Z("default")) * 0.5);
        return layer;
    }

    [Theory]
    [InlineData(8, 8)]
    [InlineData(12, 7)]  // out < in
    [InlineData(6, 11)]  // out > in
    public void TheFullRankLUPartIsTheWeightAndUHasAUnitDiagonal(long inF, long outF)
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        var linear = nn.Linear(inF, outF, dtype: float64);
        int full = (int)Math.Min(inF, outF);
        var (lower, upper, pivots) = LoLDU.Decompose("T.q", linear.weight!, full);
        // Σ_k (P·L)[o, k] · d_k · U[k, i], written out.
        var w = linear.weight!.detach();
        var rebuilt = zeros(outF, inF, dtype: float64);
        for (int k = 0; k < full; k++) rebuilt += lower[.., k].unsqueeze(1) * upper[k].unsqueeze(0) * pivots[k];
        TensorAssert.Close(w, rebuilt, 1e-12, 1e-12);
        TensorAssert.Close(ones(full, dtype: float64), upper.diagonal(), 1e-12, 1e-12);
        // P·L is a row permutation of a unit lower-triangular matrix: partial pivoting keeps every entry within ±1.
        Assert.True(lower.abs().max().item<double>() <= 1 + 1e-12);
    }

    [Fact]
    public void StartsExactlyAtTheBaseAndTrainsRNumbers()
    {
        using var scope = NewDisposeScope();
        var layer = Make(moveZ: false);
        var x = randn(5, 12);
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));
        var core = MiscAdapterKit.Attach(nn.Sequential(("q", layer)));
        Assert.Equal(3, core.TrainableParameterCount);
        Assert.DoesNotContain(layer.state_dict().Keys, k => k.Contains("loldu_factors", StringComparison.Ordinal)); // frozen buffers are not state
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.4)]
    public void ForwardAndGradientEqualTheFormulaInFloat64(double p)
    {
        using var scope = NewDisposeScope();
        var layer = Make(9, 7, 4, float64, dropout: p);
        layer.train();
        manual_seed(11);
        var x = randn(6, 9, dtype: float64);
        var upstream = randn(6, 7, dtype: float64);
        var w = layer.BaseLayer.get_parameter("weight")!.detach();
        var b = layer.BaseLayer.get_parameter("bias")!.detach();
        var lower = layer.PermutedLower("default");
        var upper = layer.Upper("default");
        var z0 = layer.InitialZ("default");
        var z = layer.Z("default").detach().clone().requires_grad_();

        manual_seed(12);
        var actual = layer.forward(x);
        var gz = torch.autograd.grad(new[] { actual }, new[] { (Tensor)layer.Z("default") }, new[] { upstream })[0];
        manual_seed(12);
        var xd = p > 0 ? nn.functional.dropout(x, p, training: true) : x; // the same draw as the layer's
        // y[n, o] = Σ_i x[n, i] W[o, i] + b[o] + Σ_k (P·L)[o, k] (z_k − z₀_k) Σ_i U[k, i] x̃[n, i]
        var expected = (x.unsqueeze(1) * w.unsqueeze(0)).sum(2) + b
            + ((xd.unsqueeze(1) * upper.unsqueeze(0)).sum(2) * (z - z0)).unsqueeze(1).mul(lower.unsqueeze(0)).sum(2);
        var ez = torch.autograd.grad(new[] { expected }, new[] { z }, new[] { upstream })[0];
        TensorAssert.Close(expected, actual, 1e-12, 1e-12);
        TensorAssert.Close(ez, gz, 1e-12, 1e-12);
    }

    [Fact]
    public void TrainsTowardsAReweightedLUPart()
    {
        var layer = Make(16, 8, 6, moveZ: false);
        var delta = layer.PermutedLower("default").mul(tensor(new float[] { 0.5f, -0.3f, 0.2f, 0.4f, -0.2f, 0.1f })).matmul(layer.Upper("default"));
        var (first, last) = MiscAdapterKit.Train(layer, x => layer.BaseLayer.forward(x) + x.matmul(delta.t()), steps: 300, lr: 3e-2);
        Assert.True(last < first * 0.05, $"loss {first} → {last}");
    }

    [Fact]
    public void MergeAndUnmergeAreExact()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.eval();
        var x = randn(5, 12);
        var before = layer.forward(x);
        var original = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        layer.Merge(new[] { "default" });
        TensorAssert.Close(before, layer.forward(x), 1e-5, 1e-5);
        layer.Unmerge();
        TensorAssert.Close(original, layer.BaseLayer.get_parameter("weight")!, 1e-6, 1e-7);
    }

    [Fact]
    public void NamedAdaptersAreIndependentAndTheBaseStaysW()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.AddAdapter("other", new LoLDUOptions { Rank = 2 });
        using (no_grad()) layer.Z("other").mul_(1.5);
        layer.eval();
        var x = randn(4, 12);
        var baseOut = layer.BaseLayer.forward(x);
        layer.SetActiveAdapters(new[] { "default", "other" });
        TensorAssert.Close(baseOut + x.matmul((layer.DeltaWeight("default") + layer.DeltaWeight("other")).t()), layer.forward(x), 1e-5, 1e-5);
        layer.AdaptersDisabled = true;
        TensorAssert.Equal(baseOut, layer.forward(x));
    }

    [Fact]
    public void ConstructionRefusesARankTooLargeOrAZeroPivot()
    {
        var ex = Assert.Throws<ArgumentException>(() => LoLDU.Wrap(nn.Linear(4, 6), "T.q", "default", new LoLDUOptions { Rank = 5 }));
        Assert.Equal(PeftMessages.Format(PeftMessages.RankTooLarge, "T.q", "LoLDU", 5, 4, 6, 4), ex.Message);
        var linear = nn.Linear(4, 6);
        using (no_grad()) linear.weight!.narrow(1, 0, 1).zero_(); // first column 0: the first pivot is 0
        ex = Assert.Throws<ArgumentException>(() => LoLDU.Wrap(linear, "T.k", "default", new LoLDUOptions { Rank = 2 }));
        Assert.Contains("T.k", ex.Message);
        Assert.Contains("pivot 0 is 0", ex.Message);
    }

    private static (nn.Module Root, LoLDULinear Q, LoLDULinear V) Build(int zSeed)
    {
        manual_seed(3);
        var q = (LoLDULinear)LoLDU.Wrap(nn.Linear(16, 8), "T.q", "default", new LoLDUOptions { Rank = 4, Dropout = 0.1 });
        var v = (LoLDULinear)LoLDU.Wrap(nn.Linear(12, 20), "T.v", "default", new LoLDUOptions { Rank = 2, Dropout = 0.1 });
        var root = nn.Sequential(("q", q), ("v", v));
        MiscAdapterKit.Randomize(root, zSeed);
        return (root, q, v);
    }

    [Fact]
    public void SavesExactlyALoRAOnTheOriginalWeightAndLoadsItBack()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var (root, q, v) = Build(5);
        MiscAdapterKit.Attach(root).SaveAdapters(folder.Path);
        var config = MiscAdapterKit.AssertPlainLoRAOfQV(folder.Path, q, v, root);
        Assert.Equal(2, config["lora_alpha"]!.GetValue<int>());   // scaling 1
        Assert.Equal(4, config["alpha_pattern"]!["q"]!.GetValue<int>());

        var xq = randn(3, 16);
        var xv = randn(3, 12);
        q.eval(); v.eval();
        var (root2, q2, v2) = Build(77);
        MiscAdapterKit.CopyBase(root, root2);
        MiscAdapterKit.Attach(root2).LoadAdapters(folder.Path);
        q2.eval(); v2.eval();
        TensorAssert.Close(q.Z("default"), q2.Z("default"), 1e-5, 1e-6);
        TensorAssert.Close(q.forward(xq), q2.forward(xq), 1e-5, 1e-6);
        TensorAssert.Close(v.forward(xv), v2.forward(xv), 1e-5, 1e-6);

        // The same update as a plain LoRA (loaded from the file), with another alpha and B rescaled, loads too.
        manual_seed(3);
        var lq = (LoRALinear)LoRA.Wrap(nn.Linear(16, 8), "T.q", "default", new LoRAOptions { Rank = 4 });
        var lv = (LoRALinear)LoRA.Wrap(nn.Linear(12, 20), "T.v", "default", new LoRAOptions { Rank = 2 });
        var root3 = nn.Sequential(("q", lq), ("v", lv));
        MiscAdapterKit.CopyBase(root, root3);
        MiscAdapterKit.Attach(root3).LoadAdapters(folder.Path);
        using (no_grad()) lq.LoraB("default").mul_(0.25);
        lq.ApplySettings("default", lq.Options("default") with { Alpha = 16 }); // s = 16 / 4 = 4× the file's 1
        using var rescaled = new TempFolder();
        MiscAdapterKit.Attach(root3).SaveAdapters(rescaled.Path);
        Assert.Equal(16, MiscAdapterKit.Config(rescaled.Path)["alpha_pattern"]!["q"]!.GetValue<int>());
        MiscAdapterKit.Attach(root2).LoadAdapters(rescaled.Path);
        TensorAssert.Close(q.Z("default"), q2.Z("default"), 1e-4, 1e-5);

        // A LoRA that is no LoLDU update of this weight is refused, naming the layer; nothing changes.
        MiscAdapterKit.Randomize(root3, 9);
        using var other = new TempFolder();
        MiscAdapterKit.Attach(root3).SaveAdapters(other.Path);
        var zBefore = q2.Z("default").detach().clone();
        var ex = Assert.Throws<InvalidDataException>(() => MiscAdapterKit.Attach(root2).LoadAdapters(other.Path));
        Assert.Contains("layer 'q'", ex.Message);
        Assert.Contains("[LoRA]", ex.Message);
        TensorAssert.Equal(zBefore, q2.Z("default"));
    }
}
