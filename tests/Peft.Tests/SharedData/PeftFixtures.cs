using System.IO;

namespace Peft.Tests.SharedData;

/// <summary>The real PEFT-written adapters in <c>shared/fixtures/peft</c>; tests that use them carry
/// <c>[SharedDataFact(PeftFixtures.Folder)]</c> so they skip where the folder is absent.</summary>
internal static class PeftFixtures
{
    /// <summary>The folder inside shared/.</summary>
    public const string Folder = "fixtures/peft";

    /// <summary>The <c>fixtures/peft</c> folder.</summary>
    public static string Directory => SharedFolder.Require(Folder);

    /// <summary>The folder of one adapter, e.g. <c>distilbert-imdb-lora</c>.</summary>
    public static string Adapter(string name) => Path.Combine(Directory, name);
}
