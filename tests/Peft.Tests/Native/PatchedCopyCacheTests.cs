using System;
using System.IO;
using System.Runtime.Versioning;
using System.Runtime.InteropServices;
using Peft.Runtime.Native;
using Xunit;

namespace Peft.Tests.Native;

/// <summary>
/// The patched copy of TorchSharp's glue library comes from a private per-user cache, and is checked by content before
/// it is returned for loading: a file another user planted is never what gets loaded (issue 12).
/// </summary>
[SupportedOSPlatform("linux")]
public sealed class PatchedCopyCacheTests : IDisposable
{
    private readonly CacheRoot _root = new();

    public void Dispose() => _root.Dispose();

    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    [Theory]
    [InlineData("/x/cache", "/home/u", "/x/cache")]
    [InlineData("", "/home/u", "/home/u/.cache")]
    [InlineData(null, "/home/u", "/home/u/.cache")]
    [InlineData("relative/cache", "/home/u", "/home/u/.cache")] // the XDG spec: a relative value is ignored
    [InlineData(null, "", null)]
    [InlineData(null, null, null)]
    [InlineData("relative", "also/relative", null)]
    public void TheCacheRootIsAnAbsoluteXdgCacheHomeElseHomeDotCache(string? xdg, string? home, string? expected) =>
        Assert.Equal(expected, PrivateCacheFolder.CacheRoot(xdg, home));

    [Fact]
    public void FoldersItCreatesAreOwnerOnlyAndTheCopyIsThePatchedImage()
    {
        if (PatchedLibrary.Glue is not { } glue) return;
        var copy = WeakVersionPatch.WritePatchedCopy(glue, PatchedLibrary.Version, _root.Path, home: null);

        Assert.False(copy.Temporary, copy.Cache);
        Assert.Equal(PatchedLibrary.CachedPath(_root.Path, glue), copy.Path);
        Assert.Equal(PatchedLibrary.Sha256(PatchedLibrary.Image(glue)), PatchedLibrary.FileSha256(copy.Path));
        for (string? dir = Path.GetDirectoryName(copy.Path); dir != _root.Path; dir = Path.GetDirectoryName(dir))
            Assert.True(PatchedLibrary.Mode(dir!) == OwnerOnly, $"{dir} has mode {PatchedLibrary.Mode(dir!)}");
        Assert.Equal(default, PatchedLibrary.Mode(copy.Path) & ~OwnerOnly); // the file too: nothing for group or others

        // The second run finds it and keeps it.
        DateTime written = File.GetLastWriteTimeUtc(copy.Path);
        var again = WeakVersionPatch.WritePatchedCopy(glue, PatchedLibrary.Version, _root.Path, home: null);
        Assert.Equal(copy.Path, again.Path);
        Assert.Equal(written, File.GetLastWriteTimeUtc(again.Path));
    }

    [Fact]
    public void WithoutXdgCacheHomeTheCacheIsUnderHome()
    {
        if (PatchedLibrary.Glue is not { } glue) return;
        var copy = WeakVersionPatch.WritePatchedCopy(glue, PatchedLibrary.Version, xdgCacheHome: "", home: _root.Path);
        Assert.Equal(PatchedLibrary.CachedPath(Path.Combine(_root.Path, ".cache"), glue), copy.Path);
        Assert.Equal(OwnerOnly, PatchedLibrary.Mode(Path.Combine(_root.Path, ".cache")));
    }

    /// <summary>
    /// A planted file as long as the patched library — zeros, or the unpatched original (a loadable ELF that differs
    /// only in the weak flag) — is replaced by the patched image before its path is returned; the old cache trusted length.
    /// </summary>
    [Theory]
    [InlineData("zeros")]
    [InlineData("original")]
    [InlineData("symlink to the original")]
    public void APlantedSameLengthFileIsRewrittenBeforeItIsReturned(string planted)
    {
        if (PatchedLibrary.Glue is not { } glue) return;
        byte[] image = PatchedLibrary.Image(glue);
        string target = PatchedLibrary.CachedPath(_root.Path, glue);
        Directory.CreateDirectory(Path.GetDirectoryName(target)!, OwnerOnly);
        switch (planted)
        {
            case "zeros": File.WriteAllBytes(target, new byte[image.Length]); break;
            case "original": File.Copy(glue, target); break;
            default: File.CreateSymbolicLink(target, glue); break;
        }
        Assert.Equal(image.Length, new FileInfo(glue).Length);
        Assert.NotEqual(PatchedLibrary.Sha256(image), PatchedLibrary.FileSha256(target));

        var copy = WeakVersionPatch.WritePatchedCopy(glue, PatchedLibrary.Version, _root.Path, home: null);

        Assert.Equal(target, copy.Path);
        Assert.False(copy.Temporary, copy.Cache);
        Assert.True(UnixFileStatus.Read(copy.Path)!.Value.IsRegularFile); // a file, no longer a link
        Assert.Equal(PatchedLibrary.Sha256(image), PatchedLibrary.FileSha256(copy.Path));
        Assert.Single(Directory.GetFileSystemEntries(Path.GetDirectoryName(target)!)); // no temp file left behind
    }

    /// <summary>A cache folder that is ours but writable by group or others is refused: the copy goes to a 0700 folder of the process's own.</summary>
    [Theory]
    [InlineData("peftdsl", "777")]
    [InlineData("peftdsl/native", "777")]
    [InlineData("peftdsl/native", "770")]
    [InlineData("peftdsl/native", "702")]
    public void AFolderWritableByOthersIsRefusedForAPrivateTemporaryOne(string folder, string mode)
    {
        if (PatchedLibrary.Glue is not { } glue) return;
        string dir = Path.Combine(_root.Path, folder);
        Directory.CreateDirectory(dir);
        File.SetUnixFileMode(dir, (UnixFileMode)Convert.ToInt32(mode, 8));

        AssertFallsBack(glue, WeakVersionPatch.WritePatchedCopy(glue, PatchedLibrary.Version, _root.Path, home: null), "writable by group or others");
        Assert.False(File.Exists(PatchedLibrary.CachedPath(_root.Path, glue)));
    }

    [Fact]
    public void ASymlinkedCacheFolderIsRefused()
    {
        if (PatchedLibrary.Glue is not { } glue) return;
        string elsewhere = Directory.CreateDirectory(Path.Combine(_root.Path, "elsewhere"), OwnerOnly).FullName;
        Directory.CreateSymbolicLink(Path.Combine(_root.Path, "peftdsl"), elsewhere);

        AssertFallsBack(glue, WeakVersionPatch.WritePatchedCopy(glue, PatchedLibrary.Version, _root.Path, home: null), "is a symlink");
        Assert.Empty(Directory.GetFileSystemEntries(elsewhere));
    }

    /// <summary>Whoever may write a folder above the cache can swap the cache itself: a world-writable parent without the sticky bit is refused.</summary>
    [Fact]
    public void ACacheRootUnderAFolderOthersMayWriteIsRefused()
    {
        if (PatchedLibrary.Glue is not { } glue) return;
        string open = Directory.CreateDirectory(Path.Combine(_root.Path, "open")).FullName;
        File.SetUnixFileMode(open, (UnixFileMode)Convert.ToInt32("777", 8));

        AssertFallsBack(glue, WeakVersionPatch.WritePatchedCopy(glue, PatchedLibrary.Version, Path.Combine(open, "cache"), home: null), "without the sticky bit");

        // With the sticky bit (as /tmp has) others cannot rename or remove what is ours in it.
        File.SetUnixFileMode(open, (UnixFileMode)Convert.ToInt32("1777", 8));
        Assert.False(WeakVersionPatch.WritePatchedCopy(glue, PatchedLibrary.Version, Path.Combine(open, "cache"), home: null).Temporary);
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int chown(string path, uint owner, uint group);

    /// <summary>A cache folder of another user is refused (only root can make one here, so only a root run checks this).</summary>
    [Fact]
    public void AFolderOfAnotherUserIsRefused()
    {
        if (PatchedLibrary.Glue is not { } glue || UnixFileStatus.EffectiveUserId != 0) return;
        string dir = Directory.CreateDirectory(Path.Combine(_root.Path, "peftdsl", "native"), OwnerOnly).FullName;
        Assert.Equal(0, chown(dir, 65534, 65534));

        AssertFallsBack(glue, WeakVersionPatch.WritePatchedCopy(glue, PatchedLibrary.Version, _root.Path, home: null), "belongs to user 65534");
    }

    [Fact]
    public void WithoutAnyCacheRootTheCopyGoesToAPrivateTemporaryFolder()
    {
        if (PatchedLibrary.Glue is not { } glue) return;
        AssertFallsBack(glue, WeakVersionPatch.WritePatchedCopy(glue, PatchedLibrary.Version, xdgCacheHome: null, home: null), "HOME");
    }

    /// <summary>The fallback relies on this: .NET makes the folder with mkdtemp, owner-only.</summary>
    [Fact]
    public void CreateTempSubdirectoryMakesAnOwnerOnlyFolder()
    {
        if (!OperatingSystem.IsLinux()) return;
        var dir = Directory.CreateTempSubdirectory("peft-mode-");
        try
        {
            Assert.Equal(OwnerOnly, PatchedLibrary.Mode(dir.FullName));
        }
        finally
        {
            dir.Delete();
        }
    }

    private void AssertFallsBack(string glue, PatchedCopy copy, string why)
    {
        string folder = Path.GetDirectoryName(copy.Path)!;
        try
        {
            Assert.True(copy.Temporary, copy.Cache);
            Assert.Contains(why, copy.Cache);
            Assert.False(copy.Path.StartsWith(_root.Path + "/", StringComparison.Ordinal), copy.Path);
            Assert.StartsWith("peftdsl-native-", Path.GetFileName(folder));
            Assert.Equal(OwnerOnly, PatchedLibrary.Mode(folder));
            Assert.Equal(UnixFileStatus.EffectiveUserId, UnixFileStatus.Read(folder)!.Value.Owner);
            Assert.Equal(PatchedLibrary.Sha256(PatchedLibrary.Image(glue)), PatchedLibrary.FileSha256(copy.Path));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
