using System;
using System.Runtime.InteropServices;

namespace Peft.Runtime.Native
{
    /// <summary>
    /// Keeps glibc's malloc from handing activation-sized blocks back to the kernel between training steps.
    /// </summary>
    /// <remarks>
    /// libtorch allocates every CPU tensor with <c>posix_memalign</c>. glibc serves blocks above a threshold with
    /// <c>mmap</c> and returns the top of the heap to the kernel once more than twice that threshold is free, so a step
    /// whose tensors are freed at its end gets fresh pages on the next step: one page fault per 4 KiB touched. On the
    /// shared development VM such a fault cost about 10 µs, and a LoRA step at n = 2048, d = 1024 that met one or
    /// three fresh [2048, 1024] buffers took 80–130 ms instead of 58 (the frozen layer: 50–55). This fixes the two
    /// thresholds where glibc's own dynamic adjustment would end up (blocks up to 32 MiB from the heap, glibc's
    /// maximum) and lets up to 1 GiB of freed heap stay mapped for the next step, as PyTorch's CPU tuning guides
    /// do with <c>MALLOC_*</c> variables or jemalloc. A thread other than the main one allocates from an arena of
    /// 64 MiB heaps, and glibc unmaps such a heap as soon as it is all free, whatever the trim threshold, unless the
    /// heap below lacks room for the top pad: a 64 MiB top pad keeps them, where a training loop on a worker thread
    /// otherwise faulted 8–16 MiB in per layer and step (the pad is address space; pages are only resident once
    /// used). Nothing changes if the process already tunes malloc (<c>MALLOC_*</c> variables, <c>glibc.malloc</c>
    /// tunables), if the C library is not glibc, or if the app sets the switch <see cref="KeepSwitch"/> (for example
    /// <c>&lt;RuntimeHostConfigurationOption Include="Peft.Runtime.KeepMallocSettings" Value="true" /&gt;</c>).
    /// </remarks>
    public static class AllocatorTuning
    {
        /// <summary>The <see cref="AppContext"/> switch that leaves malloc's settings alone.</summary>
        public const string KeepSwitch = "Peft.Runtime.KeepMallocSettings";

        /// <summary>Blocks this size and larger are mapped, smaller ones come from the heap: glibc's upper limit.</summary>
        public const int MmapThreshold = 32 << 20;

        /// <summary>Free memory at the top of the heap kept mapped for the next step.</summary>
        public const int TrimThreshold = 1 << 30;

        /// <summary>Extra room a heap grows by, and keeps when trimmed: one heap of a thread's arena.</summary>
        public const int TopPad = 64 << 20;

        // mallopt's parameter numbers (malloc.h).
        private const int M_TRIM_THRESHOLD = -1;
        private const int M_MMAP_THRESHOLD = -3;
        private const int M_TOP_PAD = -2;

        private static readonly string[] UserSettings = { "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX" };

        /// <summary>What <see cref="Apply"/> did, in words.</summary>
        public static string Report { get; private set; } = "not applied";

        /// <summary>Sets the thresholds once, unless something above says not to. Called by <see cref="TorchNative.EnsureLoaded"/>.</summary>
        internal static unsafe void Apply()
        {
            if (AppContext.TryGetSwitch(KeepSwitch, out bool keep) && keep)
            {
                Report = $"left alone: the app sets {KeepSwitch}";
                return;
            }
            foreach (string name in UserSettings)
            {
                if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable(name)))
                {
                    Report = $"left alone: the environment sets {name}";
                    return;
                }
            }
            if (Environment.GetEnvironmentVariable("GLIBC_TUNABLES") is { } tunables && tunables.Contains("glibc.malloc.", StringComparison.Ordinal))
            {
                Report = "left alone: GLIBC_TUNABLES sets glibc.malloc tunables";
                return;
            }
            // gnu_get_libc_version tells glibc from musl, whose mallopt does nothing.
            if (!NativeLibrary.TryLoad("libc.so.6", out IntPtr libc)
                || !NativeLibrary.TryGetExport(libc, "gnu_get_libc_version", out _)
                || !NativeLibrary.TryGetExport(libc, "mallopt", out IntPtr mallopt))
            {
                Report = "left alone: the C library is not glibc";
                return;
            }
            var set = (delegate* unmanaged<int, int, int>)mallopt;
            bool ok = set(M_MMAP_THRESHOLD, MmapThreshold) == 1 & set(M_TRIM_THRESHOLD, TrimThreshold) == 1 & set(M_TOP_PAD, TopPad) == 1;
            Report = ok
                ? $"glibc malloc: mmap threshold {MmapThreshold >> 20} MiB, trim threshold {TrimThreshold >> 20} MiB, top pad {TopPad >> 20} MiB"
                : "glibc refused the thresholds; its defaults stay";
        }
    }
}
