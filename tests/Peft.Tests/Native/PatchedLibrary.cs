using System;
using System.IO;
using System.Runtime.Versioning;
using System.Security.Cryptography;
using Peft.Runtime.Native;

namespace Peft.Tests.Native;

/// <summary>TorchSharp's glue library next to the tests, and what its patched copy must hold.</summary>
[SupportedOSPlatform("linux")]
internal static class PatchedLibrary
{
    public const string Version = "GLIBCXX_3.4.32";

    /// <summary>The <c>libLibTorchSharp.so</c> the tests run with; null where there is none (not Linux).</summary>
    public static string? Glue =>
        TorchNative.FindNativeDirectory() is { } dir ? Path.Combine(dir, "libLibTorchSharp.so") : null;

    public static byte[] Image(string glue) => WeakVersionPatch.PatchedImage(glue, Version);

    public static string Sha256(byte[] bytes) => Convert.ToHexString(SHA256.HashData(bytes));

    public static string FileSha256(string path) => Sha256(File.ReadAllBytes(path));

    /// <summary>Where the private cache under <paramref name="root"/> keeps the copy of <paramref name="glue"/>.</summary>
    public static string CachedPath(string root, string glue) =>
        Path.Combine(root, "peftdsl", "native", Sha256(Image(glue))[..16], Path.GetFileName(glue));

    public static UnixFileMode Mode(string path) => File.GetUnixFileMode(path) & (UnixFileMode)0xFFF;
}

/// <summary>A fresh folder (0700, ours) to stand in for <c>$XDG_CACHE_HOME</c>; removed with what the test made in it.</summary>
[SupportedOSPlatform("linux")]
internal sealed class CacheRoot : IDisposable
{
    public CacheRoot() => Path = Directory.CreateTempSubdirectory("peft-xdg-").FullName;

    public string Path { get; }

    public void Dispose()
    {
        if (!Directory.Exists(Path)) return;
        // A test may have left a folder without write permission for us; give it back before deleting.
        foreach (string dir in Directory.EnumerateDirectories(Path, "*", SearchOption.AllDirectories))
            if ((File.GetAttributes(dir) & FileAttributes.ReparsePoint) == 0)
                File.SetUnixFileMode(dir, PrivateCacheFolder.OwnerOnly);
        Directory.Delete(Path, recursive: true);
    }
}
