using System;
using System.Collections.Generic;
using System.Runtime.Intrinsics;
using Peft.Runtime.Kernels;

namespace Peft.Tests.Kernels;

/// <summary>
/// Runs a check once per vector width the kernels can take here: the 512-bit loops and, forced, the 256-bit ones on
/// AVX-512 hardware; the 256-bit ones alone elsewhere. Every width's loops are the same generic body, so one check
/// covers both instantiations.
/// </summary>
internal static class KernelWidths
{
    /// <summary>The widths <see cref="Each"/> runs on this machine: "512" and "256", or "256".</summary>
    internal static IReadOnlyList<string> Here => Vector512.IsHardwareAccelerated ? new[] { "512", "256" } : new[] { "256" };

    /// <summary>Runs <paramref name="check"/> at each width of <see cref="Here"/>, naming the width in a failure.</summary>
    internal static void Each(Action check)
    {
        bool wasNarrow = LoRAKernels.ForceNarrow;
        try
        {
            foreach (string width in Here)
            {
                LoRAKernels.ForceNarrow = width == "256";
                try
                {
                    check();
                }
                catch (Exception e)
                {
                    throw new InvalidOperationException($"at {width}-bit vectors: {e.Message}", e);
                }
            }
        }
        finally
        {
            LoRAKernels.ForceNarrow = wasNarrow;
        }
    }
}
