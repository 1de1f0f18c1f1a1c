using System;
using System.Runtime.InteropServices;
using System.Threading;
using Peft.Runtime.Kernels;
using Peft.Runtime.Native;
using TorchSharp;
using Xunit;

namespace Peft.Tests;

/// <summary>Runs alone: other tests' allocations in the same malloc arena would blur the page-fault count.</summary>
[CollectionDefinition(nameof(AllocatorTuningTests), DisableParallelization = true)]
public sealed class AllocatorTuningCollection;

[Collection(nameof(AllocatorTuningTests))]
public class AllocatorTuningTests
{
    [Fact]
    public void GlibcGetsTheThresholds()
    {
        if (!IsGlibc()) return;
        TorchNative.EnsureLoaded();
        Assert.Equal("glibc malloc: mmap threshold 32 MiB, trim threshold 1024 MiB, one arena", AllocatorTuning.Report);
    }

    /// <summary>
    /// A step that frees activation-sized tensors and allocates them again must reuse mapped pages, on a thread started
    /// after the runtime loaded, as a training loop's would be. With glibc's defaults the thread gets an arena of its
    /// own whose emptied heaps are unmapped, and the next step faults every page in again (4,000–6,000 faults here).
    /// </summary>
    [Fact]
    public void ActivationSizedTensorsAreNotPagedInAgainEachStep()
    {
        if (!IsGlibc()) return;
        TorchNative.EnsureLoaded();
        long lastStepFaults = -1;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try { lastStepFaults = RunSteps(); }
            catch (Exception ex) { error = ex; }
        });
        thread.Start();
        thread.Join();
        Assert.Null(error);
        Assert.True(lastStepFaults < 512, $"the fourth step faulted {lastStepFaults} pages in");
    }

    /// <summary>Four steps that each allocate, fill and free three [2048, 1024] tensors; the last step's faults.</summary>
    private static unsafe long RunSteps()
    {
        long lastStepFaults = 0;
        for (int step = 0; step < 4; step++)
        {
            long before = ThreadMinorFaults();
            var buffers = new torch.Tensor[3];
            for (int i = 0; i < buffers.Length; i++)
            {
                buffers[i] = torch.empty(2048, 1024);
                Touch(TensorData.Floats(buffers[i]), buffers[i].numel()); // on this thread, so its faults count here
            }
            foreach (var b in buffers) b.Dispose();
            lastStepFaults = ThreadMinorFaults() - before;
        }
        return lastStepFaults;
    }

    private static unsafe void Touch(float* data, long count)
    {
        for (long i = 0; i < count; i += 1024) data[i] = 1f; // one write per 4 KiB page
    }

    private static bool IsGlibc() =>
        OperatingSystem.IsLinux() && NativeLibrary.TryLoad("libc.so.6", out IntPtr libc) && NativeLibrary.TryGetExport(libc, "gnu_get_libc_version", out _);

    // struct rusage: two timevals (32 bytes), then longs: maxrss, ixrss, idrss, isrss, minflt, ...
    [DllImport("libc", SetLastError = true)]
    private static extern unsafe int getrusage(int who, long* usage);

    private static unsafe long ThreadMinorFaults()
    {
        const int RUSAGE_THREAD = 1;
        long* usage = stackalloc long[18];
        if (getrusage(RUSAGE_THREAD, usage) != 0) throw new InvalidOperationException("getrusage(RUSAGE_THREAD) failed");
        return usage[8]; // 32 bytes of timevals = 4 longs, then maxrss, ixrss, idrss, isrss, minflt
    }
}
