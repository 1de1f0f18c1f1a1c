using System;
using System.Collections.Generic;
using System.Runtime.Intrinsics;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.Kernels;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Kernels;

/// <summary>
/// No layer falls back to the composed TorchSharp ops without saying so: <see cref="FusedKernels.FallbackCount"/>
/// stays put on every fused path and counts (with the reason, through <see cref="FusedKernels.Fallback"/>) every
/// fallback. Test classes run one after another (AssemblyInfo), so the process-wide count is this test's own.
/// </summary>
public class FusedFallbackTests
{
    private static List<FusedFallback> Observe(Action run)
    {
        var seen = new List<FusedFallback>();
        void Handler(FusedFallback f) => seen.Add(f);
        long before = FusedKernels.FallbackCount;
        FusedKernels.Fallback += Handler;
        try { run(); }
        finally { FusedKernels.Fallback -= Handler; }
        Assert.Equal(seen.Count, FusedKernels.FallbackCount - before);
        return seen;
    }

    private static LoRALinear LoRA(ScalarType dtype = ScalarType.Float32, bool dora = false)
    {
        manual_seed(5);
        LoRAOptions options = dora ? new DoRAOptions { Rank = 4, Alpha = 8 } : new LoRAOptions { Rank = 4, Alpha = 8, Dropout = 0.1 };
        var layer = new LoRALinear("T.q", nn.Linear(32, 24, dtype: dtype), "a", options);
        layer.AddAdapter("b", new LoRAOptions { Rank = 2, Alpha = 2 });
        return layer;
    }

    [Fact]
    public void The_fused_paths_record_no_fallback()
    {
        if (!Vector256.IsHardwareAccelerated) return; // everything composes there, by design
        using var scope = NewDisposeScope();
        var seen = Observe(() =>
        {
            var x = randn(16, 32, requires_grad: true);
            var lora = LoRA();
            lora.forward(x.mul(1)).sum().backward();
            lora.SetActiveAdapters(new[] { "a", "b" });
            lora.forward(x).sum().backward();
            var dora = LoRA(dora: true);
            dora.forward(x).sum().backward();
            using (no_grad())
            {
                lora.eval();
                lora.RowAdapters = new[] { "a", "b", PeftModelCore.BaseAdapterName, "b" };
                lora.forward(randn(4, 32));
                lora.RowAdapters = null;
            }
            var bone = new BoneLinear("T.v", nn.Linear(32, 32), "a", new BoneOptions { Block = 8 });
            bone.forward(x).sum().backward();
            var bat = new BoneLinear("T.o", nn.Linear(32, 32), "a", new BoneOptions { Block = 8, Variant = BoneVariant.Bat });
            bat.forward(x).sum().backward();
        });
        Assert.Empty(seen);
    }

    [Fact]
    public void A_tensor_the_kernels_cannot_read_is_counted_with_the_reason()
    {
        using var scope = NewDisposeScope();
        var seen = Observe(() =>
        {
            LoRA().forward(randn(32, 16).t()); // a non-contiguous input
            LoRA(ScalarType.Float64).forward(randn(16, 32, dtype: ScalarType.Float64));
        });
        Assert.Equal(2, seen.Count);
        Assert.All(seen, f => Assert.Equal(nameof(LoRAFunction), f.Function));
        if (Vector256.IsHardwareAccelerated)
        {
            Assert.Contains("input is not contiguous", seen[0].Reason);
            Assert.Contains("Float64", seen[1].Reason);
        }
        Assert.Equal(seen[1], FusedKernels.LastFallback);
    }

    [Fact]
    public void Orders_the_fused_functions_do_not_cover_are_counted()
    {
        if (!Vector256.IsHardwareAccelerated) return;
        using var scope = NewDisposeScope();
        var x = randn(8, 32);
        var dora = LoRA(dora: true);
        dora.SetActiveAdapters(new[] { "b", "a" }); // DoRA after LoRA
        var bone = new BoneLinear("T.v", nn.Linear(32, 32), "a", new BoneOptions { Block = 8 });
        bone.AddAdapter("bat", new BoneOptions { Block = 8, Variant = BoneVariant.Bat });
        bone.SetActiveAdapters(new[] { "a", "bat" }); // Bat after Bone
        var seen = Observe(() =>
        {
            dora.forward(x);
            bone.forward(x);
        });
        Assert.Equal(2, seen.Count);
        Assert.Contains("T.q", seen[0].Reason);
        Assert.Contains("DoRA adapter after another adapter", seen[0].Reason);
        Assert.Equal(nameof(BoneFunction), seen[1].Function);
        Assert.Contains("Bat adapter after another adapter", seen[1].Reason);
    }

    [Fact]
    public void A_mixed_batch_that_needs_gradients_says_it_composes()
    {
        if (!Vector256.IsHardwareAccelerated) return;
        using var scope = NewDisposeScope();
        var lora = LoRA();
        lora.eval();
        var seen = Observe(() =>
        {
            lora.RowAdapters = new[] { "a", "b", "a" };
            lora.forward(randn(3, 32)).sum().backward(); // A and B require grad
            lora.RowAdapters = null;
        });
        Assert.Single(seen);
        Assert.Equal("LoRA mixed batch", seen[0].Function);
        Assert.Contains("gradient", seen[0].Reason);
    }
}
