using System;
using System.Runtime.Intrinsics;
using System.Threading;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Kernels
{
    /// <summary>What a forward that fell back from the fused kernels to composed TorchSharp ops reports.</summary>
    /// <param name="Function">The fused path that did not run: <c>LoRAFunction</c>, <c>DoRAFunction</c>, <c>BoneFunction</c>, <c>LoRA mixed batch</c>, ...</param>
    /// <param name="Reason">Why, e.g. <c>input is Float64, not float32</c>.</param>
    public sealed record FusedFallback(string Function, string Reason);

    /// <summary>
    /// Observes the fused kernels falling back to the composed (slower, same-result) TorchSharp ops: a process-wide
    /// count and an event with the reason, raised on the thread that ran the forward. A benchmark or a training loop
    /// that expects the fused path can check <see cref="FallbackCount"/> stays put, or log <see cref="Fallback"/>.
    /// </summary>
    public static class FusedKernels
    {
        private static long _count;

        /// <summary>Forwards that took the composed ops instead of a fused kernel, since the process started.</summary>
        public static long FallbackCount => Interlocked.Read(ref _count);

        /// <summary>The last fallback's function and reason, or null if there was none.</summary>
        public static FusedFallback? LastFallback { get; private set; }

        /// <summary>Raised on every fallback, on the thread running the forward. Keep handlers cheap.</summary>
        public static event Action<FusedFallback>? Fallback;

        internal static void Record(string function, string reason)
        {
            Interlocked.Increment(ref _count);
            var fallback = new FusedFallback(function, reason);
            LastFallback = fallback;
            Fallback?.Invoke(fallback);
        }

        /// <summary>
        /// Why the raw loops cannot read these tensors (the first reason found), or null if they can: 256-bit vectors in
        /// hardware, and each named tensor dense float32 on the CPU; those marked Frozen must not require grad.
        /// </summary>
        internal static string? WhyNot(params (string Name, Tensor? Tensor, bool Frozen)[] tensors)
        {
            if (!Vector256.IsHardwareAccelerated) return "no 256-bit vectors in hardware";
            foreach (var (name, t, frozen) in tensors)
            {
                if (t is null) continue;
                if (t.dtype != ScalarType.Float32) return $"{name} is {t.dtype}, not Float32";
                if (t.device_type != DeviceType.CPU) return $"{name} is on {t.device_type}, not the CPU";
                if (!t.is_contiguous()) return $"{name} is not contiguous";
                if (frozen && t.requires_grad) return $"{name} requires grad (the fused path needs a frozen base)";
            }
            return null;
        }
    }
}
