using System;
using System.Runtime.InteropServices;
using Peft.Runtime.Native;
using Xunit;

namespace Peft.Tests;

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
        Assert.Equal("GOMP_SPINCOUNT=10000", OpenMpTuning.Report);
        Assert.Equal("10000", Marshal.PtrToStringUTF8(GetEnv("GOMP_SPINCOUNT")));
    }
}
