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
        if (SampleTests.ModelFolder() is null) Skip = "shared/models/stories260K is not beside the clone";
    }
}

/// <summary>
/// The samples run as their README says (with fewer steps): progress, completions, loss plots that are real PNG
/// files, adapters saved; and a bad option fails with the runtime's message instead of a stack trace.
/// </summary>
public sealed class SampleTests : IDisposable
{
    private static readonly byte[] PngSignature = { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A };

    private readonly ITestOutputHelper _output;
    private readonly DotnetCli _cli;
    private readonly string _out = Path.Combine(Path.GetTempPath(), "peft-samples-" + Guid.NewGuid().ToString("N")[..12]);

    public SampleTests(ITestOutputHelper output)
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

    private (int ExitCode, string Output) RunSample(string sample, params string[] args)
    {
        string project = Path.Combine(DotnetCli.RepositoryRoot(), "samples", sample, sample + ".csproj");
        // Built already when the whole solution was (same configuration); otherwise this builds it.
        var result = _cli.RunAllowingFailure(Path.GetTempPath(), 300, new[] { "run", "--project", project, "-c", DotnetCli.Configuration, "--" }.Concat(args).ToArray());
        _output.WriteLine(result.Output);
        return result;
    }

    private void AssertPng(string path)
    {
        Assert.True(File.Exists(path), $"{path} was not written");
        byte[] head = File.ReadAllBytes(path).Take(PngSignature.Length).ToArray();
        Assert.Equal(PngSignature, head);
        Assert.True(new FileInfo(path).Length > 5_000, $"{path} is too small to hold a plot");
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void TinyLmFineTunesShowsCompletionsWritesPlotsAndSavesTheAdapter()
    {
        var (exit, output) = RunSample("Peft.Samples.TinyLm", "--method", "DoRA", "--pretrain-steps", "30", "--steps", "30", "--rank", "4", "--out", _out);
        Assert.Equal(0, exit);
        Assert.Contains("pre-train on the toy grammar: 30 steps", output);
        Assert.Contains("DoRA fine-tune on \"after seven comes eight.\": 30 steps", output);
        Assert.Contains("[DoRA(4, Alpha = 8)]", output);       // the parameter table at the chosen rank
        Assert.Contains("before fine-tuning", output);
        Assert.Contains("Merged vs unmerged logits", output);
        AssertPng(Path.Combine(_out, "pretrain-loss.png"));
        AssertPng(Path.Combine(_out, "finetune-dora-loss.png"));
        string config = File.ReadAllText(Path.Combine(_out, "adapter-dora", "adapter_config.json"));
        Assert.Contains("\"use_dora\": true", config);
        Assert.Contains("\"r\": 4", config);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void CompareTrainsEachMethodAndPrintsTheTable()
    {
        var (exit, output) = RunSample("Peft.Samples.Compare", "--pretrain-steps", "20", "--steps", "20", "--out", _out);
        Assert.Equal(0, exit);
        foreach (var method in new[] { "LoRA", "DoRA", "Bone" })
        {
            Assert.Contains($"{method} fine-tune: 20 steps", output);
            Assert.True(File.Exists(Path.Combine(_out, method.ToLowerInvariant(), "adapter_config.json")), $"no {method} adapter saved");
        }
        Assert.Contains("ms/step", output);
        AssertPng(Path.Combine(_out, "compare-loss.png"));
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void ABlockThatDoesNotDivideTheLayerFailsWithTheRuntimesMessage()
    {
        var (exit, output) = RunSample("Peft.Samples.TinyLm", "--method", "Bone", "--rank", "6", "--out", _out);
        Assert.Equal(1, exit);
        Assert.Contains("Bone block 6 does not divide", output);
        Assert.Contains("the nearest block that does is 4", output);
        Assert.DoesNotContain("pre-train on the toy grammar", output); // refused before any training
        Assert.DoesNotContain("   at ", output);                       // no stack trace
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

    /// <summary>The Llama sample, briefly: loads the real model, continues a prompt, fine-tunes, saves the adapter and the merged model.</summary>
    [Stories260KFact]
    [Trait("Category", "Slow")]
    public void LlamaSampleFineTunesSavesThePeftAdapterAndTheMergedModel()
    {
        var (exit, output) = RunSample("Peft.Samples.Llama",
            "--model", ModelFolder()!, "--prompt", "Once upon a time", "--steps", "5", "--rank", "4", "--out", _out);
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
    public void WithoutAModelTheLlamaSampleSaysWhatToPass()
    {
        var (exit, output) = RunSample("Peft.Samples.Llama", "--model", Path.Combine(_out, "nowhere"), "--no-train");
        Assert.NotEqual(0, exit);
        Assert.Contains("nowhere", output);
    }
}
