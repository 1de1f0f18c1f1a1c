using Peft.Runtime.Native;
using TorchSharp;
using Xunit;

namespace Peft.Tests.Native;

public class NativeLoadingTests
{
    [Fact]
    public void TensorsWorkAfterBootstrap()
    {
        TorchNative.EnsureLoaded();
        TorchNative.EnsureLoaded(); // idempotent
        using var t = torch.ones(2, 3);
        Assert.Equal(6f, t.sum().item<float>());
        Assert.DoesNotContain("not loaded", TorchNative.LoadReport);
    }
}
