using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// One float32 buffer per thread for a fused function's large temporaries, grown on demand and kept between calls.
    /// </summary>
    /// <remarks>
    /// Bone's adapted weight, Bat's G = dYᵀ·x and DoRA's scaled gradient dZ live for one call each. Allocated afresh,
    /// a tensor of 32 MiB or more (glibc's largest heap block, e.g. [2048, 4096] floats) is mapped and page-faulted in
    /// anew on every call, which costs many times the pass that fills it (benchmarks/README.md has the figures). A
    /// caller uses the view only until it returns and never holds two at once.
    /// </remarks>
    internal static class ThreadScratch
    {
        [ThreadStatic] private static Tensor? _buffer;

        /// <summary>A [rows, cols] float32 view of this thread's buffer; its contents are undefined.</summary>
        internal static Tensor Floats(long rows, long cols)
        {
            long need = Math.Max(1, rows * cols);
            if (_buffer is null || _buffer.numel() < need)
            {
                _buffer?.Dispose();
                _buffer = torch.empty(need, dtype: ScalarType.Float32).DetachFromDisposeScope();
            }
            return _buffer.narrow(0, 0, rows * cols).view(rows, cols);
        }
    }
}
