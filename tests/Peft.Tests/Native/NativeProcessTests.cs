using System;
using System.Diagnostics;
using System.IO;
using System.Runtime.Versioning;
using System.Linq;
using System.Threading.Tasks;
using Xunit;
using Xunit.Abstractions;

namespace Peft.Tests.Native;

/// <summary>
/// Fresh processes bootstrap libtorch through a cache folder given as <c>XDG_CACHE_HOME</c> (see <see cref="NativeChild"/>).
/// On Debian 12 the glue library needs the patched copy, so these go through the cache; where the plain load works
/// they still race the cache writes of <see cref="Peft.Runtime.Native.WeakVersionPatch"/>.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed class NativeProcessTests : IDisposable
{
    private readonly CacheRoot _root = new();
    private readonly ITestOutputHelper _output;

    public NativeProcessTests(ITestOutputHelper output) => _output = output;

    public void Dispose() => _root.Dispose();

    [Fact]
    public async Task TwoProcessesStartingTogetherOnAnEmptyCacheBothLoad()
    {
        if (PatchedLibrary.Glue is null) return;
        var children = new[] { Start(rounds: 20), Start(rounds: 20) };
        var results = await Task.WhenAll(children.Select(ChildProcess.Finish));

        foreach (var (code, stdout, stderr, _) in results)
        {
            _output.WriteLine(stdout + stderr);
            Assert.True(code == 0, $"a child exited with {code}: {stdout}{stderr}");
            AssertLoadedFromTheCacheOrAsIs(stdout);
        }
    }

    /// <summary>The unpatched original planted where the copy goes (same length, a loadable ELF) is replaced, not loaded.</summary>
    [Fact]
    public async Task APlantedLibraryInTheCacheIsNotWhatTheBootstrapLoads()
    {
        if (PatchedLibrary.Glue is not { } glue) return;
        string target = PatchedLibrary.CachedPath(_root.Path, glue);
        Directory.CreateDirectory(Path.GetDirectoryName(target)!, Peft.Runtime.Native.PrivateCacheFolder.OwnerOnly);
        File.Copy(glue, target);

        var (code, stdout, stderr, _) = await ChildProcess.Finish(Start(rounds: 1));

        _output.WriteLine(stdout + stderr);
        Assert.True(code == 0, $"the child exited with {code}: {stdout}{stderr}");
        AssertLoadedFromTheCacheOrAsIs(stdout);
        Assert.Equal(PatchedLibrary.Sha256(PatchedLibrary.Image(glue)), PatchedLibrary.FileSha256(target));
    }

    private void AssertLoadedFromTheCacheOrAsIs(string stdout)
    {
        string report = stdout.Split('\n').Single(line => line.StartsWith("report: ", StringComparison.Ordinal));
        Assert.True(report.Contains(" as is") || report.Contains($"from the private cache {_root.Path}/peftdsl/native/"), report);
    }

    private Process Start(int rounds)
    {
        var info = new ProcessStartInfo(ChildProcess.DotnetHost()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { "exec", typeof(NativeProcessTests).Assembly.Location, "child", "native-load", _root.Path, rounds.ToString() })
            info.ArgumentList.Add(arg);
        info.Environment["XDG_CACHE_HOME"] = _root.Path;
        return Process.Start(info)!;
    }
}
