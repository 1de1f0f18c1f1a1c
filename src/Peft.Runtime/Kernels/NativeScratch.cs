using System;
using System.Runtime.InteropServices;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// Per-thread native float buffers for the hand-written kernels' packed operands and row scratch, grown on demand
    /// and kept, so a call allocates nothing: a mixed batch's per-call allocations (packed panels, per-item scratch)
    /// measured about 30 page faults per layer and call.
    /// </summary>
    /// <remarks>
    /// Two slots per thread, so a caller can hold its packed operands while the kernel it runs on the same thread uses
    /// its scratch. A buffer is valid until the next request for the same slot on the same thread; it lives as long as
    /// the thread (the largest request's size, 64-byte aligned).
    /// </remarks>
    internal static unsafe class NativeScratch
    {
        /// <summary>The caller's packed operands.</summary>
        internal const int Operands = 0;

        /// <summary>A kernel's per-call scratch rows.</summary>
        internal const int Rows = 1;

        [ThreadStatic] private static Buffer[]? _buffers;

        /// <summary><paramref name="count"/> floats of this thread's buffer <paramref name="slot"/>, contents undefined.</summary>
        internal static float* Floats(int slot, long count)
        {
            var buffers = _buffers ??= new[] { new Buffer(), new Buffer() };
            return buffers[slot].Take(Math.Max(1, count));
        }

        // Freed by the finalizer when the thread's buffers are collected (the thread ended).
        private sealed class Buffer
        {
            private float* _data;
            private long _count;

            internal float* Take(long count)
            {
                if (count > _count)
                {
                    if (_data != null) NativeMemory.AlignedFree(_data);
                    _data = null;
                    _count = 0;
                    _data = (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
                    _count = count;
                }
                return _data;
            }

            ~Buffer()
            {
                if (_data != null) NativeMemory.AlignedFree(_data);
            }
        }
    }
}
