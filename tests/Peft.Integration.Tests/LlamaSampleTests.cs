using System;
using System.IO;
using System.Linq;
using Xunit;
using Xunit.Abstractions;

namespace Peft.Integration.Tests;

/// <summary>A fact that needs the stories260K model in <c>shared/</c> beside the clone, and skips, naming it, where it is absent.</summary>
public sealed class Stories260KFactAttribute : FactAttribute
{
    public Stories260KFactAttribute()
    {
        if (LlamaSampleTests.ModelFolder() is null) Skip = "shared/models/stories260K is not beside the clone";
    }
}

/// <summary>The Llama sample, briefly: loads the real model, continues a prompt, fine-tunes, saves the adapter and the merged model.</summary>
public sealed class LlamaSampleTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly DotnetCli _cli;
    private readonly string _out = Path.Combine(Path.GetTempPath(), "peft-llama-" + Guid.NewGuid().ToString("N")[..12]);

    public LlamaSampleTests(ITestOutputHelper output)
    {
        _output = output;
        _cli = new DotnetCli(output);
    }

    public void Dispose()
    {
        try { Directory.Delete(_out, recursive: true); }
        catch (DirectoryNotFoundException) { }
        catch (IOException) { /* a leftover temp folder must not fail a test */ }
    }

    internal static string? ModelFolder()
    {
        for (var dir = new DirectoryInfo(DotnetCli.RepositoryRoot()); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "shared", "models", "stories260K");
            if (File.Exists(Path.Combine(candidate, "model.safetensors"))) return candidate;
        }
        return null;
    }

    [Stories260KFact]
    [Trait("Category", "Slow")]
    public void LlamaSampleFineTunesSavesThePeftAdapterAndTheMergedModel()
    {
        string project = Path.Combine(DotnetCli.RepositoryRoot(), "samples", "Peft.Samples.Llama", "Peft.Samples.Llama.csproj");
        var (exit, output) = _cli.RunAllowingFailure(Path.GetTempPath(), 300, new[]
        {
            "run", "--project", project, "-c", DotnetCli.Configuration, "--",
            "--model", ModelFolder()!, "--prompt", "Once upon a time", "--steps", "5", "--rank", "4", "--out", _out,
        });
        _output.WriteLine(output);
        Assert.Equal(0, exit);
        Assert.Contains("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day,", output);
        Assert.Contains("LoRA fine-tuning: girls are named Mia: 5 steps", output);
        Assert.Contains("before: girl named Mia in", output);
        Assert.Contains("after: girl named Mia in", output);
        Assert.True(new FileInfo(Path.Combine(_out, "llama-lora-loss.png")).Length > 5_000);
        string config = File.ReadAllText(Path.Combine(_out, "adapter", "adapter_config.json"));
        Assert.Contains("\"r\": 4", config);
        Assert.Contains("\"task_type\": \"CAUSAL_LM\"", config);
        Assert.True(File.Exists(Path.Combine(_out, "merged", "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(_out, "merged", "config.json")));
    }

    [Fact]
    public void WithoutAModelTheSampleSaysWhatToPass()
    {
        string project = Path.Combine(DotnetCli.RepositoryRoot(), "samples", "Peft.Samples.Llama", "Peft.Samples.Llama.csproj");
        var (exit, output) = _cli.RunAllowingFailure(Path.GetTempPath(), 300, new[]
        {
            "run", "--project", project, "-c", DotnetCli.Configuration, "--", "--model", Path.Combine(_out, "nowhere"), "--no-train",
        });
        _output.WriteLine(output);
        Assert.NotEqual(0, exit);
        Assert.Contains("nowhere", output);
    }
}
