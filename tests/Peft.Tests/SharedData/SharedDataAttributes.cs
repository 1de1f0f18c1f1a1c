using Xunit;

namespace Peft.Tests.SharedData;

/// <summary>A fact that needs <c>shared/{folder}</c> beside the clone and skips, naming it, where it is absent.</summary>
public sealed class SharedDataFactAttribute : FactAttribute
{
    public SharedDataFactAttribute(string folder)
    {
        Folder = folder;
        if (SharedFolder.Find(folder) is null) Skip = SharedFolder.MissingReason(folder);
    }

    /// <summary>The folder inside shared/, e.g. <c>fixtures/peft</c>.</summary>
    public string Folder { get; }
}

/// <summary>A theory that needs <c>shared/{folder}</c> beside the clone and skips, naming it, where it is absent.</summary>
public sealed class SharedDataTheoryAttribute : TheoryAttribute
{
    public SharedDataTheoryAttribute(string folder)
    {
        Folder = folder;
        if (SharedFolder.Find(folder) is null) Skip = SharedFolder.MissingReason(folder);
    }

    /// <summary>The folder inside shared/, e.g. <c>fixtures/peft</c>.</summary>
    public string Folder { get; }
}
