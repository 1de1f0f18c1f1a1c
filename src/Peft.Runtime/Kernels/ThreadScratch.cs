using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// Float32 buffers per thread for a fused function's temporaries, one per <see cref="Slot"/>, grown on demand and
    /// kept between calls.
    /// </summary>
    /// <remarks>
    /// Allocated afresh, a tensor of 32 MiB or more (glibc's largest heap block, e.g. [2048, 4096] floats) is mapped
    /// and page-faulted in anew on every call, which costs many times the pass that fills it (benchmarks/README.md has
    /// the figures); smaller per-call buffers (a mixed batch's packed factors) still cost page faults once glibc hands
    /// them back. A caller uses a slot's buffer only until it returns; slots let it hold one while a kernel it calls
    /// on the same thread uses another.
    /// </remarks>
    internal static class ThreadScratch
    {
        /// <summary>What a buffer holds.</summary>
        internal enum Slot
        {
            /// <summary>Bone's adapted weight, Bat's G = dYᵀ·x, DoRA's scaled gradient dZ: one per call each.</summary>
            General,

            /// <summary>LoRA's dropped input x ⊙ keep, which its GEMMs read while DoRA's dZ is alive.</summary>
            MaskedInput,

            /// <summary>Factors packed for a hand-written kernel, held while the kernel runs.</summary>
            PackedOperands,

            /// <summary>A hand-written kernel's own rows (a zero row, a block's intermediate products).</summary>
            KernelRows,
        }

        [ThreadStatic] private static Tensor?[]? _buffers;

        /// <summary>A [rows, cols] float32 view of this thread's general buffer; its contents are undefined.</summary>
        internal static Tensor Floats(long rows, long cols) => View(Slot.General, rows, cols);

        /// <summary>The same from the buffer for an adapter's dropped input x ⊙ keep.</summary>
        internal static Tensor MaskedInput(long rows, long cols) => View(Slot.MaskedInput, rows, cols);

        /// <summary><paramref name="count"/> floats of this thread's buffer <paramref name="slot"/>, contents undefined.</summary>
        internal static unsafe float* Pointer(Slot slot, long count) => TensorData.Floats(Buffer(slot, count));

        private static Tensor View(Slot slot, long rows, long cols) => Buffer(slot, rows * cols).narrow(0, 0, rows * cols).view(rows, cols);

        private static Tensor Buffer(Slot slot, long count)
        {
            var buffers = _buffers ??= new Tensor?[Enum.GetValues<Slot>().Length];
            long need = Math.Max(1, count);
            ref var buffer = ref buffers[(int)slot];
            if (buffer is null || buffer.numel() < need)
            {
                buffer?.Dispose();
                buffer = torch.empty(need, dtype: ScalarType.Float32).DetachFromDisposeScope();
            }
            return buffer;
        }
    }
}
