using System;
using System.IO;
using System.Linq;
using Peft.Runtime.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Reliability;

/// <summary>The journaled save when a step throws (an I/O error) instead of the process dying, and damaged journals.</summary>
public sealed class SaveJournalTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-journal-" + Guid.NewGuid().ToString("N"));
    private readonly DisposeScope _scope = NewDisposeScope();

    public void Dispose()
    {
        SaveJournal.CommitPoint = null;
        _scope.Dispose();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private string Journal => Path.Combine(_dir, SaveJournal.FileName);

    private string[] Files() =>
        Directory.GetFiles(_dir, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(_dir, f)).OrderBy(f => f, StringComparer.Ordinal).ToArray();

    private static readonly string[] SavedFiles =
    {
        "adapter_config.json", "adapter_model.safetensors", "bone/adapter_config.json", "bone/adapter_model.safetensors",
        "other/adapter_config.json", "other/adapter_model.safetensors",
    };

    private float LoadedVersion()
    {
        var model = new SaveTarget();
        model.LoadAdapters(_dir);
        var values = model.SavedTensors().Select(t => t.Tensor.min().item<float>()).Distinct().ToList();
        Assert.Single(values);
        return values[0];
    }

    private static SaveTarget Stamped(int version)
    {
        var model = new SaveTarget();
        model.Stamp(version);
        return model;
    }

    [Fact]
    public void AFailureWhileStagingLeavesThePreviousSaveAndNoStagedFiles()
    {
        Stamped(1).SaveAdapters(_dir);
        SaveJournal.CommitPoint = point => { if (point == "staged") throw new IOException("disk full (simulated)"); };
        var ex = Assert.Throws<IOException>(() => Stamped(2).SaveAdapters(_dir));
        Assert.Equal("disk full (simulated)", ex.Message);
        SaveJournal.CommitPoint = null;
        Assert.Equal(SavedFiles, Files());
        Assert.Equal(1, LoadedVersion());
    }

    [Fact]
    public void AFailureAfterTheCommitPointIsFinishedByTheNextLoad()
    {
        Stamped(1).SaveAdapters(_dir);
        SaveJournal.CommitPoint = point => { if (point == "renamed 2") throw new IOException("interrupted (simulated)"); };
        Assert.Throws<IOException>(() => Stamped(2).SaveAdapters(_dir));
        SaveJournal.CommitPoint = null;
        Assert.True(File.Exists(Journal));
        Assert.Equal(2, LoadedVersion());
        Assert.Equal(SavedFiles, Files());
    }

    [Fact]
    public void AFailureAfterTheCommitPointIsFinishedByTheNextSave()
    {
        Stamped(1).SaveAdapters(_dir);
        SaveJournal.CommitPoint = point => { if (point == "journaled") throw new IOException("interrupted (simulated)"); };
        Assert.Throws<IOException>(() => Stamped(2).SaveAdapters(_dir));
        SaveJournal.CommitPoint = null;
        Stamped(3).SaveAdapters(_dir);
        Assert.Equal(SavedFiles, Files());
        Assert.Equal(3, LoadedVersion());
    }

    [Theory]
    [InlineData("{\"version\": 1, \"renames\": [")]
    [InlineData("{\"version\": 7, \"renames\": []}")]
    [InlineData("{\"version\": 1, \"renames\": [{\"from\": \"../elsewhere\", \"to\": \"adapter_model.safetensors\"}]}")]
    [InlineData("{\"version\": 1, \"renames\": [{\"from\": \"/etc/passwd\", \"to\": \"adapter_model.safetensors\"}]}")]
    public void ADamagedJournalIsNamedAndNothingIsRenamed(string journal)
    {
        Stamped(1).SaveAdapters(_dir);
        File.WriteAllText(Journal, journal);
        var ex = Assert.Throws<InvalidDataException>(() => new SaveTarget().LoadAdapters(_dir));
        Assert.StartsWith($"{Journal}: not a save journal", ex.Message);
        Assert.Contains("delete it to keep the adapter files as they are", ex.Message);
        File.Delete(Journal);
        Assert.Equal(1, LoadedVersion());
    }
}
