using System.Runtime.CompilerServices;

namespace Peft.Tests.Native;

// Runtime-only tests have no annotated class of their own in some builds, so they bootstrap libtorch themselves,
// exactly as the generated module initializer does in user code. The call is idempotent.
internal static class NativeBootstrap
{
    [ModuleInitializer]
    internal static void Initialize() => Peft.Runtime.Native.TorchNative.EnsureLoaded();
}
