using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Peft.Tests.Native;

// Runtime-only tests have no annotated class of their own in some builds, so they bootstrap libtorch themselves,
// exactly as the generated module initializer does in user code. The call is idempotent.
internal static class NativeBootstrap
{
    [ModuleInitializer]
    internal static void Initialize()
    {
        // MKL may round a GEMM differently depending on its buffers' alignment unless its conditional numerical
        // reproducibility is on (on an AVX2 host two identical trainings in one process then differ in the last bit):
        // tests that compare two runs bit for bit need it. Read by MKL at its first call; the environment's own wins.
        SetEnv("MKL_CBWR", "AUTO,STRICT", 0);
        Peft.Runtime.Native.TorchNative.EnsureLoaded();
    }

    // .NET's Environment.SetEnvironmentVariable changes a managed copy only; MKL reads the C environment.
    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);
}
