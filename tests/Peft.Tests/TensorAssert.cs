using System;
using System.Linq;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests;

internal static class TensorAssert
{
    /// <summary>|actual − expected| ≤ atol + rtol·|expected| everywhere, with the worst entry in the message.</summary>
    public static void Close(Tensor expected, Tensor actual, double rtol = 1e-5, double atol = 1e-6)
    {
        Assert.Equal(expected.shape, actual.shape);
        using var scope = NewDisposeScope();
        var e = expected.detach().to(float64);
        var a = actual.detach().to(float64);
        var excess = (a - e).abs() - (e.abs() * rtol + atol);
        double worst = excess.max().item<double>();
        Assert.True(worst <= 0, $"tensors differ: max |a−e| = {(a - e).abs().max().item<double>():G6} exceeds tolerance (rtol {rtol}, atol {atol})");
    }

    public static void Equal(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(Same(expected, actual), "tensors are not identical");
    }

    /// <summary>Same shape and every entry equal (NaN matching NaN).</summary>
    public static bool Same(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        if (!a.shape.SequenceEqual(b.shape)) return false;
        var x = a.detach();
        var y = b.detach().to(x.dtype);
        return (x.eq(y) | (x.isnan() & y.isnan())).all().item<bool>();
    }
}
