using System;
using System.Linq;
using Peft.Runtime.Adapters;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

public class LoRALinearTests
{
    private static LoRALinear Make(long inF = 12, long outF = 10, LoRAOptions? options = null, bool randomB = true)
    {
        manual_seed(1);
        var layer = new LoRALinear("T.q", nn.Linear(inF, outF), "default", options ?? new LoRAOptions { Rank = 4, Alpha = 8 });
        if (randomB)
            using (no_grad()) layer.LoraB("default").normal_();
        return layer;
    }

    [Fact]
    public void ForwardIsBasePlusScaledLowRankProduct()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        var x = randn(5, 12);
        var w = layer.BaseLayer.get_parameter("weight")!;
        var b = layer.BaseLayer.get_parameter("bias")!;
        var a = layer.LoraA("default");
        var bb = layer.LoraB("default");
        // y = x Wᵀ + b + (alpha / r) · x Aᵀ Bᵀ, written out naively.
        var expected = x.matmul(w.t()) + b + x.matmul(a.t()).matmul(bb.t()) * (8.0 / 4.0);
        TensorAssert.Close(expected, layer.forward(x));
    }

    [Fact]
    public void RsLoraScalesByAlphaOverSqrtRank()
    {
        var layer = Make(options: new LoRAOptions { Rank = 4, Alpha = 8, UseRsLora = true });
        Assert.Equal(8.0 / 2.0, layer.Options("default").Scaling);
        using var scope = NewDisposeScope();
        var expected = matmul(layer.LoraB("default"), layer.LoraA("default")) * 4.0;
        TensorAssert.Close(expected, layer.DeltaWeight("default"));
    }

    [Fact]
    public void DefaultInitStartsAtTheBaseLayerWithKaimingA()
    {
        using var scope = NewDisposeScope();
        var layer = Make(inF: 256, outF: 64, options: new LoRAOptions { Rank = 16 }, randomB: false);
        var x = randn(3, 256);
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));
        Assert.Equal(0, layer.LoraB("default").abs().sum().item<float>());
        // Kaiming-uniform with a = √5 on fan_in = 256: bound = √(6 / ((1 + 5) · 256)) = 1/16.
        double bound = layer.LoraA("default").abs().max().item<float>();
        Assert.InRange(bound, 0.055, 1.0 / 16 + 1e-6);
    }

    [Fact]
    public void GaussianInitHasStdOneOverRank()
    {
        using var scope = NewDisposeScope();
        var layer = Make(inF: 512, outF: 512, options: new LoRAOptions { Rank = 8, Init = LoRAInit.Gaussian }, randomB: false);
        double std = layer.LoraA("default").std().item<float>();
        Assert.InRange(std, 0.125 * 0.95, 0.125 * 1.05);
    }

    [Fact]
    public void GradientsReachOnlyTheAdapter()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.forward(randn(6, 12)).square().sum().backward();
        Assert.Null(layer.BaseLayer.get_parameter("weight")!.grad);
        Assert.Null(layer.BaseLayer.get_parameter("bias")!.grad);
        Assert.NotNull(layer.LoraA("default").grad);
        Assert.NotNull(layer.LoraB("default").grad);
        Assert.Equal(new[] { "lora_A.default.weight", "lora_B.default.weight" },
            layer.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToArray());
        Assert.Equal(new[] { "base_layer.weight", "base_layer.bias", "lora_A.default.weight", "lora_B.default.weight" },
            layer.named_parameters().Select(p => p.name).ToArray());
    }

    [Fact]
    public void DropoutAppliesToTheAdapterInputOnlyAndOnlyInTraining()
    {
        using var scope = NewDisposeScope();
        var layer = Make(options: new LoRAOptions { Rank = 4, Alpha = 8, Dropout = 0.5 });
        var x = randn(64, 12);
        layer.eval();
        var exact = layer.forward(x);
        layer.train();
        var dropped = layer.forward(x);
        Assert.False(exact.allclose(dropped));
        // With the adapter off, dropout has nothing to act on: the base path is never dropped.
        layer.AdaptersDisabled = true;
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));
    }

    [Fact]
    public void MergeMatchesUnmergedForwardAndUnmergeRestores()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.eval();
        var x = randn(7, 12);
        var before = layer.forward(x);
        var w0 = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        layer.Merge(new[] { "default" });
        Assert.Equal(new[] { "default" }, layer.MergedAdapters);
        TensorAssert.Close(before, layer.forward(x), rtol: 1e-5, atol: 1e-5);
        TensorAssert.Close(w0 + layer.DeltaWeight("default"), layer.BaseLayer.get_parameter("weight")!);
        layer.Unmerge();
        TensorAssert.Close(w0, layer.BaseLayer.get_parameter("weight")!, atol: 1e-6);
        TensorAssert.Close(before, layer.forward(x), atol: 1e-5);
    }

    [Fact]
    public void MergeRefusesNonFiniteResultAndLeavesTheWeight()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        using (no_grad()) layer.LoraB("default")[0, 0] = float.PositiveInfinity;
        var w0 = layer.BaseLayer.get_parameter("weight")!.detach().clone();
        var ex = Assert.Throws<InvalidOperationException>(() => layer.Merge(new[] { "default" }));
        Assert.Contains("T.q", ex.Message);
        Assert.Contains("'default'", ex.Message);
        TensorAssert.Equal(w0, layer.BaseLayer.get_parameter("weight")!);
        Assert.Empty(layer.MergedAdapters);
    }

    [Fact]
    public void NamedAdaptersAreSeparateAndSelectable()
    {
        using var scope = NewDisposeScope();
        var layer = Make();
        layer.AddAdapter("other", new LoRAOptions { Rank = 2, Alpha = 2 });
        using (no_grad()) layer.LoraB("other").normal_();
        Assert.Equal(new[] { "default", "other" }, layer.AdapterNames);
        Assert.Equal(new[] { "default" }, layer.ActiveAdapters);
        var x = randn(3, 12);
        var baseOut = layer.BaseLayer.forward(x);
        layer.SetActiveAdapters(new[] { "other" });
        TensorAssert.Close(baseOut + x.matmul(layer.DeltaWeight("other").t()), layer.forward(x), atol: 1e-5);
        layer.SetActiveAdapters(new[] { "default", "other" });
        TensorAssert.Close(baseOut + x.matmul((layer.DeltaWeight("default") + layer.DeltaWeight("other")).t()), layer.forward(x), atol: 1e-5);
        layer.DeleteAdapter("other");
        Assert.DoesNotContain(layer.named_parameters(), p => p.name.Contains("other"));
        Assert.Throws<ArgumentException>(() => layer.SetActiveAdapters(new[] { "other" }));
        Assert.Throws<ArgumentException>(() => layer.AddAdapter("default", new LoRAOptions { Rank = 2 }));
    }

    [Theory]
    [InlineData(0, 0.0, "rank must be at least 1, got 0")]
    [InlineData(11, 0.0, "rank 11 is larger than min(in 12, out 10) = 10")]
    [InlineData(4, 1.0, "dropout 1 is outside [0, 1)")]
    [InlineData(4, -0.1, "dropout -0.1 is outside [0, 1)")]
    public void InvalidOptionsFailAtRegistrationNamingTheSite(int rank, double dropout, string message)
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            LoRA.Wrap(nn.Linear(12, 10), "Demo.Block.q", "default", new LoRAOptions { Rank = rank, Dropout = dropout }));
        Assert.StartsWith("Demo.Block.q: ", ex.Message);
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void WrapRejectsWhatItCannotAdapt()
    {
        var ex = Assert.Throws<InvalidOperationException>(() =>
            LoRA.Wrap(nn.ReLU(), "Demo.Block.act", "default", new LoRAOptions { Rank = 2 }));
        Assert.Contains("Demo.Block.act", ex.Message);
        Assert.Contains("ReLU", ex.Message);
        Assert.Throws<InvalidOperationException>(() => LoRA.Wrap(null, "Demo.Block.q", "default", new LoRAOptions()));
        var wrapped = LoRA.Wrap(nn.Linear(12, 10), "Demo.Block.q", "default", new LoRAOptions { Rank = 2 });
        Assert.Same(wrapped, LoRA.Wrap(wrapped, "Demo.Block.q", "b", new LoRAOptions { Rank = 2 }));
        Assert.Equal(new[] { "default", "b" }, ((LoRALinear)wrapped).AdapterNames);
    }
}
