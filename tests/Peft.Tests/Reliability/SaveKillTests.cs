using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Peft.Tests.Reliability;

/// <summary>
/// A process killed while it saves adapters leaves a directory that loads and holds one whole saved version: never
/// one adapter folder of one save and another of the next, never a config without its weights.
/// </summary>
public sealed class SaveKillTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-kill-" + Guid.NewGuid().ToString("N"));
    private readonly ITestOutputHelper _output;

    public SaveKillTests(ITestOutputHelper output) => _output = output;

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void KilledAtRandomMomentsTheDirectoryHoldsOneWholeSavedVersion()
    {
        var random = new Random(20251123);
        const int Kills = 8;
        for (int kill = 0; kill < Kills; kill++)
        {
            int first = (kill + 1) * 1_000_000;
            using var child = SaveLoop.Start(_dir, first);
            child.WaitForSaves(1 + random.Next(3));
            Thread.Sleep(random.Next(0, 40));
            int lastReported = child.Kill();

            // The save in flight when the kill came may or may not have been committed; nothing else is acceptable.
            string left = Listing();
            int loaded = LoadedVersion();
            _output.WriteLine($"kill {kill}: last reported save {lastReported}, directory holds {loaded}; the kill left: {left}");
            Assert.True(loaded == lastReported || loaded == lastReported + 1,
                $"kill {kill}: the directory holds version {loaded}, but the last completed save was {lastReported}");
        }
    }

    /// <summary>
    /// Killed at each step of the commit: before the journal is written the previous save is whole on disk; from the
    /// journal on, the files on disk may be mixed, and loading finishes the commit and gives the new save.
    /// </summary>
    [Theory]
    [Trait("Category", "Slow")]
    [InlineData("staged", 1)]
    [InlineData("journaled", 2)]
    [InlineData("renamed 1", 2)]
    [InlineData("renamed 3", 2)]
    [InlineData("renamed 6", 2)]
    [InlineData("committed", 2)]
    public async Task KilledAtEachCommitStepTheNextLoadGivesOneWholeVersion(string point, int expected)
    {
        var info = new ProcessStartInfo(ChildProcess.DotnetHost()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { "exec", typeof(SaveKillTests).Assembly.Location, "child", "save-and-die", _dir, point })
            info.ArgumentList.Add(arg);
        using (var child = Process.Start(info)!)
        {
            var stdout = child.StandardOutput.ReadToEndAsync();
            var stderrTask = child.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            await child.WaitForExitAsync(timeout.Token);
            string stderr = await stderrTask;
            Assert.DoesNotContain("survived", await stdout);
            Assert.True(child.ExitCode != 0, $"the child exited normally: {stderr}");
            // It did die mid-save: staged files or the journal are still there.
            Assert.True(Listing().Contains("peft-staged-") || File.Exists(Path.Combine(_dir, ".peft-save-journal.json")), Listing());
        }

        bool journaled = expected == 2;
        Assert.Equal(journaled, File.Exists(Path.Combine(_dir, ".peft-save-journal.json")));
        Assert.Equal(expected, LoadedVersion());
        Assert.False(File.Exists(Path.Combine(_dir, ".peft-save-journal.json")), "loading completes the commit and removes the journal");

        // The next save clears what the killed one left.
        using (var scope = NewDisposeScope())
        {
            var model = new SaveTarget();
            model.Stamp(3);
            model.SaveAdapters(_dir);
        }
        Assert.Equal(
            new[] { "adapter_config.json", "adapter_model.safetensors", "bone/adapter_config.json", "bone/adapter_model.safetensors", "other/adapter_config.json", "other/adapter_model.safetensors" },
            Directory.GetFiles(_dir, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(_dir, f)).OrderBy(f => f, StringComparer.Ordinal));
        Assert.Equal(3, LoadedVersion());
    }

    /// <summary>Loads the directory into a fresh model and returns the one version every saved tensor holds.</summary>
    private int LoadedVersion()
    {
        using var scope = NewDisposeScope();
        var model = new SaveTarget();
        model.Stamp(-1);
        model.LoadAdapters(_dir);
        var versions = new SortedSet<float>();
        foreach (var (name, tensor) in model.SavedTensors())
        {
            float min = tensor.min().item<float>(), max = tensor.max().item<float>();
            Assert.True(min == max, $"{name} mixes versions {min} and {max}");
            versions.Add(min);
        }
        Assert.True(versions.Count == 1, $"the directory mixes saves: versions {string.Join(", ", versions)} ({Listing()})");
        return (int)versions.Single();
    }

    private string Listing() =>
        string.Join(", ", Directory.GetFiles(_dir, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(_dir, f)));

    /// <summary>A child process running <see cref="SaveChild"/>'s <c>save-loop</c>.</summary>
    private sealed class SaveLoop : IDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _stderr = new();
        private int _lastSaved = -1, _saves;

        private SaveLoop(Process process) => _process = process;

        public static SaveLoop Start(string dir, int firstVersion)
        {
            var info = new ProcessStartInfo(ChildProcess.DotnetHost())
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var arg in new[] { "exec", typeof(SaveKillTests).Assembly.Location, "child", "save-loop", dir, firstVersion.ToString() })
                info.ArgumentList.Add(arg);
            var loop = new SaveLoop(new Process { StartInfo = info });
            loop._process.OutputDataReceived += (_, e) =>
            {
                if (e.Data is { } line && line.StartsWith("saved ", StringComparison.Ordinal))
                {
                    Volatile.Write(ref loop._lastSaved, int.Parse(line.AsSpan(6)));
                    Interlocked.Increment(ref loop._saves);
                }
            };
            loop._process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is not null) lock (loop._stderr) loop._stderr.AppendLine(e.Data);
            };
            loop._process.Start();
            loop._process.BeginOutputReadLine();
            loop._process.BeginErrorReadLine();
            return loop;
        }

        public void WaitForSaves(int count)
        {
            var clock = Stopwatch.StartNew();
            while (Volatile.Read(ref _saves) < count)
            {
                if (_process.HasExited)
                {
                    _process.WaitForExit(); // drains the output
                    lock (_stderr) Assert.Fail($"the save child exited with {_process.ExitCode} before saving: {_stderr}");
                }
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120), "the save child did not save within 120 s");
                Thread.Sleep(1);
            }
        }

        /// <summary>Kills the child (SIGKILL) and returns the last version it reported saved.</summary>
        public int Kill()
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(); // and every line it wrote before dying
            return Volatile.Read(ref _lastSaved);
        }

        public void Dispose()
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.Dispose();
        }
    }
}
