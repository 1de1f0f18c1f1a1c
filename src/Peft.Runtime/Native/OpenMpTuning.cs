using System;
using System.Runtime.InteropServices;

namespace Peft.Runtime.Native
{
    /// <summary>
    /// Shortens how long libgomp's idle workers spin before they sleep, so that the fused kernels' own workers get
    /// the cores between libtorch's GEMMs.
    /// </summary>
    /// <remarks>
    /// After each parallel region libgomp's workers spin for about 300,000 pause loops (milliseconds here) waiting for
    /// the next one. The fused adapters run hand-written passes between GEMMs, so a .NET worker started there shares
    /// its core with a spinning thread; on two cores that made a second kernel worker slower than none, and the pass
    /// ran on the calling thread alone while the other core spun. With <c>GOMP_SPINCOUNT=10000</c> (a fraction of a
    /// millisecond) set before libtorch loads libgomp, the passes run on every intra-op thread: LoRA at n = 2048,
    /// d = 1024, r = 16 (then with hand-written thin products) went from 1.145–1.160 to 1.110–1.120 of its frozen
    /// base, and the frozen layer's own GEMMs did not change (53–54 ms either way). Nothing changes if the environment
    /// already sets <c>GOMP_SPINCOUNT</c> or <c>OMP_WAIT_POLICY</c>, if libgomp is loaded already (it would not read the
    /// setting, and the kernels then keep to one thread for small passes), or if the app sets the switch
    /// <see cref="KeepSwitch"/>.
    /// </remarks>
    public static class OpenMpTuning
    {
        /// <summary>The <see cref="AppContext"/> switch that leaves OpenMP's settings alone.</summary>
        public const string KeepSwitch = "Peft.Runtime.KeepOpenMpSettings";

        /// <summary>The spin count set: pause loops before an idle worker sleeps.</summary>
        public const int SpinCount = 10000;

        /// <summary>What <see cref="Apply"/> did, in words.</summary>
        public static string Report { get; private set; } = "not applied";

        /// <summary>Whether libgomp's workers were told to sleep soon, so kernel workers can share the cores.</summary>
        internal static bool ShortSpin { get; private set; }

        // Whether a spin setting found in the environment lets idle workers sleep at least as soon as ours would.
        private static bool IsShort(string name, string value) =>
            name == "OMP_WAIT_POLICY"
                ? value.Equals("PASSIVE", StringComparison.OrdinalIgnoreCase)
                : long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long count) && count <= SpinCount;

        // Whether the process has mapped libgomp already (something made a tensor before the module initializer ran).
        private static bool LibgompIsLoaded()
        {
            try
            {
                foreach (string line in System.IO.File.ReadLines("/proc/self/maps"))
                    if (line.Contains("libgomp", StringComparison.Ordinal)) return true;
                return false;
            }
            catch (Exception ex) when (ex is System.IO.IOException or UnauthorizedAccessException)
            {
                return false;
            }
        }

        [DllImport("libc", EntryPoint = "setenv", SetLastError = true)]
        private static extern int SetEnv(string name, string value, int overwrite);

        /// <summary>
        /// Sets <c>GOMP_SPINCOUNT</c> in the process environment, which libgomp reads once when it loads; called by
        /// <see cref="TorchNative.EnsureLoaded"/> before it loads libtorch.
        /// </summary>
        internal static void Apply()
        {
            if (AppContext.TryGetSwitch(KeepSwitch, out bool keep) && keep)
            {
                Report = $"left alone: the app sets {KeepSwitch}";
                return;
            }
            foreach (string name in new[] { "GOMP_SPINCOUNT", "OMP_WAIT_POLICY" })
            {
                if (Environment.GetEnvironmentVariable(name) is { Length: > 0 } value)
                {
                    // Set by the user, or inherited from a parent process that ran this (BenchmarkDotNet's children).
                    ShortSpin = IsShort(name, value);
                    Report = $"left alone: the environment sets {name}={value}";
                    return;
                }
            }
            if (LibgompIsLoaded())
            {
                Report = "left alone: libgomp was loaded before PeftDsl's runtime and has read its settings";
                return;
            }
            // .NET's Environment.SetEnvironmentVariable changes a managed copy only; libgomp reads the C environment.
            if (SetEnv("GOMP_SPINCOUNT", SpinCount.ToString(System.Globalization.CultureInfo.InvariantCulture), 0) != 0)
            {
                Report = $"setenv failed (errno {Marshal.GetLastPInvokeError()}); libgomp's default spin stays";
                return;
            }
            ShortSpin = true;
            Report = $"GOMP_SPINCOUNT={SpinCount}";
        }
    }
}
