using System;
using System.Runtime.InteropServices;
using Peft.Runtime.Native;
using Xunit;

namespace Peft.Tests.Native;

public class OpenMpTuningTests
{
    [DllImport("libc", EntryPoint = "getenv")]
    private static extern IntPtr GetEnv(string name);

    /// <summary>libgomp reads its spin count from the C environment, which .NET's own Environment does not change.</summary>
    [Fact]
    public void TheSpinCountIsInTheCEnvironmentBeforeLibgompLoads()
    {
        if (!OperatingSystem.IsLinux()) return;
        TorchNative.EnsureLoaded();
        // .NET's Environment keeps the environment the process started with; the C one is what libgomp reads.
        string? inherited = Environment.GetEnvironmentVariable("GOMP_SPINCOUNT");
        if (Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is { Length: > 0 } || inherited is { Length: > 0 } and not "10000")
        {
            Assert.StartsWith("left alone", OpenMpTuning.Report);
            return;
        }
        // Set here, or inherited from a process that ran this (a test host's parent): short either way.
        Assert.Contains("GOMP_SPINCOUNT=10000", OpenMpTuning.Report);
        Assert.True(OpenMpTuning.ShortSpin);
        Assert.Equal("10000", Marshal.PtrToStringUTF8(GetEnv("GOMP_SPINCOUNT")));
    }
}
