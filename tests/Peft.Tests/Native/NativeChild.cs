using System;
using System.IO;
using System.Runtime.Versioning;
using System.Runtime.InteropServices;
using Peft.Runtime.Native;
using TorchSharp;

namespace Peft.Tests.Native;

/// <summary>What a child process of <see cref="NativeProcessTests"/> does.</summary>
[SupportedOSPlatform("linux")]
internal static class NativeChild
{
    /// <summary>
    /// <c>native-load ROOT ROUNDS</c>, run with <c>XDG_CACHE_HOME=ROOT</c>: the module initializer has already loaded
    /// the native libraries through that cache. Prints <c>report: </c> and <see cref="TorchNative.LoadReport"/>; then,
    /// ROUNDS times, has the patched copy written under <c>ROOT/race-i</c> (a sibling does the same at the same time)
    /// and checks its SHA-256; then makes a tensor. Exits 0 when all of it worked.
    /// </summary>
    public static int Run(string[] args)
    {
        string root = args[1];
        int rounds = int.Parse(args[2]);
        Console.Out.WriteLine($"report: {TorchNative.LoadReport}");
        if (PatchedLibrary.Glue is not { } glue)
        {
            Console.Error.WriteLine("no libLibTorchSharp.so next to the tests");
            return 3;
        }
        string expected = PatchedLibrary.Sha256(PatchedLibrary.Image(glue));

        // Through the bootstrap: where it loaded the copy, that copy is the patched image.
        if (TorchNative.LoadReport.StartsWith("loaded " + root + "/", StringComparison.Ordinal))
        {
            string loaded = PatchedLibrary.CachedPath(root, glue);
            if (PatchedLibrary.FileSha256(loaded) != expected)
            {
                Console.Error.WriteLine($"{loaded} is not the patched image");
                return 4;
            }
            NativeLibrary.Free(NativeLibrary.Load(loaded)); // the same object: only a reference count moves
        }

        for (int i = 0; i < rounds; i++)
        {
            var copy = WeakVersionPatch.WritePatchedCopy(glue, PatchedLibrary.Version, Path.Combine(root, $"race-{i}"), home: null);
            if (copy.Temporary || PatchedLibrary.FileSha256(copy.Path) != expected)
            {
                Console.Error.WriteLine($"round {i}: {copy.Path} from the {copy.Cache} is not the patched image in the private cache");
                return 5;
            }
        }

        using var t = torch.ones(2, 3);
        if (t.sum().item<float>() != 6f) return 6;
        Console.Out.WriteLine("ok");
        return 0;
    }
}
