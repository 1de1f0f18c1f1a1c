using System;
using System.Collections.Concurrent;
using System.IO;

namespace Peft.Tests.SharedData;

/// <summary>
/// Finds outside data (PEFT-written adapters, pre-trained models) in the <c>shared/</c> folder that sits beside the
/// clone. It is never committed here, so a fresh clone has none: tests that need it skip, naming the folder.
/// </summary>
internal static class SharedFolder
{
    /// <summary>Points at a <c>shared/</c> folder elsewhere; otherwise it is looked for above the test binaries.</summary>
    public const string EnvironmentVariable = "PEFT_SHARED_DIR";

    private static readonly ConcurrentDictionary<string, string?> Found = new(StringComparer.Ordinal);

    /// <summary>The full path of <paramref name="relative"/> (e.g. <c>fixtures/peft</c>) inside shared/, or null.</summary>
    public static string? Find(string relative) => Found.GetOrAdd(relative, Locate);

    /// <summary>The full path of <paramref name="relative"/>; throws (naming the folder) where it is absent.</summary>
    public static string Require(string relative) =>
        Find(relative) ?? throw new DirectoryNotFoundException(MissingReason(relative));

    /// <summary>Why a test that needs <paramref name="relative"/> skips on this machine.</summary>
    public static string MissingReason(string relative) =>
        $"needs the outside data shared/{relative} beside the clone (never committed; set {EnvironmentVariable} " +
        $"to a shared/ folder elsewhere); none found above {AppContext.BaseDirectory}";

    private static string? Locate(string relative)
    {
        string? configured = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrEmpty(configured))
        {
            string candidate = Path.GetFullPath(Path.Combine(configured, relative));
            return Directory.Exists(candidate) ? candidate : null;
        }

        // Walk up from the test binaries: the clone holds shared/ itself, or has it beside (…/main and …/shared).
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            foreach (string candidate in new[]
                     {
                         Path.Combine(dir.FullName, "shared", relative),
                         Path.Combine(dir.FullName, "..", "shared", relative),
                     })
            {
                if (Directory.Exists(candidate)) return Path.GetFullPath(candidate);
            }
        }
        return null;
    }
}
