using System;
using System.IO;

namespace Peft.Tests;

/// <summary>Finds the real PEFT-written adapters in <c>shared/fixtures/peft</c>, which sits beside the clone.</summary>
internal static class PeftFixtures
{
    private static readonly Lazy<string> Root = new(Locate);

    /// <summary>The <c>fixtures/peft</c> folder.</summary>
    public static string Directory => Root.Value;

    /// <summary>The folder of one adapter, e.g. <c>distilbert-imdb-lora</c>.</summary>
    public static string Adapter(string name) => Path.Combine(Directory, name);

    private static string Locate()
    {
        // Walk up from the test binaries: the clone holds shared/ itself, or has it beside (…/main and …/shared).
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            foreach (string candidate in new[]
                     {
                         Path.Combine(dir.FullName, "shared", "fixtures", "peft"),
                         Path.Combine(dir.FullName, "..", "shared", "fixtures", "peft"),
                     })
            {
                if (System.IO.Directory.Exists(candidate)) return Path.GetFullPath(candidate);
            }
        }
        throw new DirectoryNotFoundException(
            $"No shared/fixtures/peft above {AppContext.BaseDirectory}; the tests expect the shared folder beside the clone.");
    }
}
