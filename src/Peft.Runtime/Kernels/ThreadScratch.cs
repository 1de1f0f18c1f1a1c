using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// One float32 buffer per thread for a fused function's large temporaries, grown on demand and kept between calls.
    /// </summary>
    /// <remarks>
    /// Bone's adapted weight, Bat's G = dYᵀ·x and DoRA's scaled gradient dZ live for one call each, in
    /// <see cref="Floats"/>; LoRA's dropped input, which its GEMMs read while DoRA's dZ is alive, in
    /// <see cref="MaskedInput"/>. Allocated afresh,
    /// a tensor of 32 MiB or more (glibc's largest heap block, e.g. [2048, 4096] floats) is mapped and page-faulted in
    /// anew on every call, which costs many times the pass that fills it (benchmarks/README.md has the figures). A
    /// caller uses the view only until it returns and never holds two at once.
    /// </remarks>
    internal static class ThreadScratch
    {
        [ThreadStatic] private static Tensor? _buffer;
        [ThreadStatic] private static Tensor? _maskedInput;

        /// <summary>A [rows, cols] float32 view of this thread's buffer; its contents are undefined.</summary>
        internal static Tensor Floats(long rows, long cols) => View(ref _buffer, rows, cols);

        /// <summary>The same from a second buffer, for an adapter's dropped input x ⊙ keep.</summary>
        internal static Tensor MaskedInput(long rows, long cols) => View(ref _maskedInput, rows, cols);

        private static Tensor View(ref Tensor? buffer, long rows, long cols)
        {
            long need = Math.Max(1, rows * cols);
            if (buffer is null || buffer.numel() < need)
            {
                buffer?.Dispose();
                buffer = torch.empty(need, dtype: ScalarType.Float32).DetachFromDisposeScope();
            }
            return buffer.narrow(0, 0, rows * cols).view(rows, cols);
        }
    }
}
