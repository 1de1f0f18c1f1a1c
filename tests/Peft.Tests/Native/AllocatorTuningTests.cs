using System;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using Peft.Runtime.Native;
using TorchSharp;
using Xunit;

namespace Peft.Tests.Native;

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
        if (UserTunesMalloc())
        {
            Assert.StartsWith("left alone", AllocatorTuning.Report);
            return;
        }
        Assert.Equal("glibc malloc: mmap threshold 32 MiB, trim threshold 1024 MiB, top pad 64 MiB", AllocatorTuning.Report);
    }

    /// <summary>
    /// A step that frees activation-sized tensors and allocates them again must reuse mapped pages, on a thread started
    /// after the runtime loaded, as a training loop's would be. With glibc's defaults every step here faulted all
    /// three buffers in again (about 6,150 faults a step, in a process of its own); tuned, the heap settles within a
    /// few steps. Faults are counted for the whole process (libtorch fills the buffers on its own threads), which is
    /// why this collection runs alone.
    /// </summary>
    [Fact]
    public void ActivationSizedTensorsAreNotPagedInAgainEachStep()
    {
        if (!IsGlibc() || UserTunesMalloc()) return;
        TorchNative.EnsureLoaded();
        long[] faults = Array.Empty<long>();
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try { faults = RunSteps(steps: 12, buffers: 3); }
            catch (Exception ex) { error = ex; }
        });
        thread.Start();
        thread.Join();
        Assert.Null(error);
        Assert.True(faults.Skip(faults.Length - 3).All(f => f < 512), $"page faults per step: {string.Join(", ", faults)}");
    }

    /// <summary>Steps that each allocate, fill and free [2048, 1024] tensors (8 MiB each); the page faults of each step.</summary>
    private static long[] RunSteps(int steps, int buffers)
    {
        var faults = new long[steps];
        for (int step = 0; step < steps; step++)
        {
            long before = ProcessMinorFaults();
            var tensors = new torch.Tensor[buffers];
            for (int i = 0; i < buffers; i++) tensors[i] = torch.empty(2048, 1024).fill_(1f);
            foreach (var t in tensors) t.Dispose();
            faults[step] = ProcessMinorFaults() - before;
        }
        return faults;
    }

    // Where the environment tunes malloc itself the runtime leaves it alone (GlibcGetsTheThresholds then checks that).
    private static bool UserTunesMalloc() =>
        new[] { "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX" }
            .Any(name => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(name)))
        || Environment.GetEnvironmentVariable("GLIBC_TUNABLES")?.Contains("glibc.malloc.", StringComparison.Ordinal) == true;

    private static bool IsGlibc() =>
        OperatingSystem.IsLinux() && NativeLibrary.TryLoad("libc.so.6", out IntPtr libc) && NativeLibrary.TryGetExport(libc, "gnu_get_libc_version", out _);

    // Field 10 of /proc/self/stat (minflt); the command name before it may hold spaces but ends at the last ')'.
    private static long ProcessMinorFaults()
    {
        string stat = File.ReadAllText("/proc/self/stat");
        return long.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[7], System.Globalization.CultureInfo.InvariantCulture);
    }
}
