using Peft.Runtime.Kernels;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Kernels;

/// <summary>What LaMDA's function keeps for backward, against LoRA's at the same rank (benchmarks/README.md, "LaMDA's activation memory").</summary>
public class LaMDAFunctionTests
{
    [Theory]
    [InlineData(64, 256, 128, 8)]
    [InlineData(2048, 4096, 4096, 16)] // a 7B model's attention projection at 2048 tokens
    public void BackwardKeepsOnlyTheThinProjectionNotTheInput(long n, long inF, long outF, int r)
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        var x = randn(n, inF).requires_grad_();
        var w = randn(outF, inF) * 0.01;
        var a = randn(r, inF) * 0.01;
        var core = randn(r, r).requires_grad_();
        var b = randn(outF, r).requires_grad_();
        var y = LaMDAFunction.AddTo(nn.functional.linear(x, w), x, a, core, b, 2.0, 0.1, 0);
        var lamda = LaMDAFunction.LastSave!;
        Assert.Equal(0, lamda.InputBytes);
        Assert.Equal(n * r * 4, lamda.ActivationBytes); // h = drop(x)·Aᵀ only: no x, no mask
        Assert.True(lamda.OutputCacheReleased);
        y.sum().backward();
        Assert.NotNull(core.grad);
        Assert.NotNull(x.grad);

        // LoRA at the same rank keeps x itself for dA ([n, in]) beside its u ([n, r]) and the dropout mask as bits,
        // [n, in / 64] words.
        var la = (randn(r, inF) * 0.01).requires_grad_();
        _ = LoRAFunction.Linear(x, w, null, la, b, 2.0, 0.1);
        var lora = LoRAFunction.LastSave!;
        long bits = inF / 32; // in floats' worth per row
        Assert.Equal(n * inF * 4, lora.InputBytes);
        Assert.Equal(n * (r + bits) * 4, lora.ActivationBytes);
        Assert.Equal((double)(inF + r + bits) / r, (double)(lora.InputBytes + lora.ActivationBytes) / (lamda.InputBytes + lamda.ActivationBytes));
    }

    [Fact]
    public void WithoutGradientNothingIsSavedAndTheResultIsTheSame()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        var x = randn(5, 6);
        var prev = randn(5, 4);
        var a = randn(2, 6);
        var core = randn(2, 2);
        var b = randn(4, 2);
        Tensor expected;
        using (no_grad()) expected = LaMDAFunction.Apply(prev, x, a, core, b, 1.5, 0, 0, 0);
        TensorAssert.Close(prev + x.matmul(a.t()).matmul(core.t()).matmul(b.t()) * 1.5, expected, 1e-5, 1e-6);
    }

    [Fact]
    public void BadShapesAreRefusedInForward()
    {
        Assert.Throws<System.ArgumentException>(() => LaMDAFunction.AddTo(randn(3, 4), randn(3, 6), randn(2, 5), randn(2, 2), randn(4, 2), 1, 0, 0));
        Assert.Throws<System.ArgumentOutOfRangeException>(() => LaMDAFunction.AddTo(randn(3, 4), randn(3, 6), randn(2, 6), randn(2, 2), randn(4, 2), 1, 0, 3));
    }
}
