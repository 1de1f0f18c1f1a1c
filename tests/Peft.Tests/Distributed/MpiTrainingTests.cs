using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Threading.Tasks;
using Peft.Runtime.Training;
using Peft.Tests.EndToEnd;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Peft.Tests.Distributed;

/// <summary>A fact that runs <c>mpirun</c> and skips, saying why, where OpenMPI's <c>mpirun</c> is not on PATH.</summary>
public sealed class MpiFactAttribute : FactAttribute
{
    public MpiFactAttribute()
    {
        if (Mpi.Launcher() is null)
            Skip = "needs OpenMPI's mpirun on PATH (apt-get install openmpi-bin; .ci/run installs it when it runs as root)";
    }
}

/// <summary>Starts <c>mpirun -np N</c> on this test assembly's child modes (<see cref="MpiChild"/>).</summary>
internal static class Mpi
{
    internal static string? Launcher() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, "mpirun")).FirstOrDefault(File.Exists);

    internal sealed record Result(int ExitCode, string Stdout, string Stderr, DateTimeOffset Exited);

    internal static async Task<Result> Run(int ranks, params string[] childArgs)
    {
        var info = new ProcessStartInfo(Launcher()!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // --timeout: a stuck rank ends the job instead of the test run; --oversubscribe: more ranks than free cores;
        // --bind-to none: ranks share cores with whatever else runs here.
        var launch = new[] { "-np", ranks.ToString(), "--timeout", "60", "--oversubscribe", "--bind-to", "none" }.ToList();
        if (Environment.UserName == "root") launch.Add("--allow-run-as-root");
        launch.AddRange(new[] { ChildProcess.DotnetHost(), "exec", typeof(Mpi).Assembly.Location, "child" });
        launch.AddRange(childArgs);
        foreach (var arg in launch) info.ArgumentList.Add(arg);
        info.Environment["TERM"] = "dumb";
        var (code, stdout, stderr, exited) = await ChildProcess.Finish(Process.Start(info)!);
        return new Result(code, stdout, stderr, exited);
    }
}

/// <summary>
/// Data-parallel adapter training over OpenMPI, end to end: two ranks on different shards hold the same adapter as
/// one process on the concatenated batches, only trainable gradients cross the wire, and one rank's failure ends the
/// job quickly with the previous adapter whole on disk.
/// </summary>
[Trait("Category", "Slow")]
public sealed class MpiTrainingTests : IDisposable
{
    private const int Steps = 6;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-mpi-" + Guid.NewGuid().ToString("N"));
    private readonly ITestOutputHelper _output;

    public MpiTrainingTests(ITestOutputHelper output) => _output = output;

    public void Dispose()
    {
        foreach (var dir in new[] { _dir, _dir + "-expected" })
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    [MpiFact]
    public async Task TwoRanksOnDifferentShardsEqualOneProcessOnTheConcatenatedBatches()
    {
        var result = await Mpi.Run(2, "mpi-train", _dir, Steps.ToString());
        _output.WriteLine(result.Stdout + result.Stderr);
        Assert.True(result.ExitCode == 0, $"mpirun exited with {result.ExitCode}: {result.Stderr}");
        Assert.Contains("rank 0 of 2", result.Stdout);
        Assert.Contains("rank 1 of 2", result.Stdout);

        float[] rank0 = Read(Path.Combine(_dir, "rank0.bin")), rank1 = Read(Path.Combine(_dir, "rank1.bin"));
        Assert.Equal(rank0, rank1); // bit for bit: both applied the same averaged gradient to the same broadcast start

        float[] reference = OneProcessOnConcatenatedBatches(out long trainable);
        Assert.Equal(reference.Length, rank0.Length);
        double maxDiff = reference.Zip(rank0, (a, b) => Math.Abs(a - b)).Max();
        _output.WriteLine($"max |one process - two ranks| = {maxDiff:E2} over {reference.Length} trainable values");
        Assert.True(maxDiff <= 1e-5, $"two ranks differ from one process on the concatenated batches by {maxDiff:E2}");

        // Only trainable parameters cross the wire: one broadcast of them (plus the 3-number layout check), then per step
        // one all-reduce of their gradients plus 2 status slots per rank (each rank's loss and bad-gradient flag).
        foreach (int rank in new[] { 0, 1 })
        {
            var counters = JsonSerializer.Deserialize<MpiChild.Counters>(File.ReadAllText(Path.Combine(_dir, $"rank{rank}.json")))!;
            Assert.Equal(trainable, counters.TrainableParameters);
            long gradientBytes = trainable * 4 * Steps, statusBytes = 2L * counters.Size * 4 * Steps;
            _output.WriteLine($"rank {rank}: all-reduced {counters.BytesAllReduced:N0} bytes in {counters.AllReduceCount} calls " +
                $"(trainable {trainable:N0} × 4 × {Steps} steps = {gradientBytes:N0}, + {statusBytes} status), broadcast {counters.BytesBroadcast:N0}");
            Assert.Equal(Steps, counters.AllReduceCount);
            Assert.Equal(gradientBytes + statusBytes, counters.BytesAllReduced);
            Assert.Equal(trainable * 4 + 3 * 8, counters.BytesBroadcast);
        }
    }

    [MpiFact]
    public async Task ARankThatThrowsEndsTheJobAndTheSavedAdapterStaysWhole() => await FailAndCheck("throw");

    [MpiFact]
    public async Task ARankKilledInTrainingEndsTheJobAndTheSavedAdapterStaysWhole() => await FailAndCheck("kill");

    [MpiFact]
    public async Task RankZeroKilledWhileSavingLeavesThePreviousAdapterWhole() => await FailAndCheck("kill-in-save");

    private async Task FailAndCheck(string mode)
    {
        var result = await Mpi.Run(2, "mpi-fail", _dir, mode);
        _output.WriteLine($"exit {result.ExitCode}\n{result.Stdout}\n{result.Stderr}");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("saved 1", result.Stdout);
        Assert.DoesNotContain("survived", result.Stdout);
        string failing = result.Stdout.Split('\n').Single(l => l.StartsWith("failing at ", StringComparison.Ordinal));
        var failedAt = DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(failing["failing at ".Length..].Trim()));
        double seconds = (result.Exited - failedAt).TotalSeconds;
        _output.WriteLine($"mpirun exited {seconds:F1} s after the failure");
        Assert.True(seconds < 10, $"mpirun took {seconds:F1} s to end the job after one rank failed");

        // The directory loads (a journal left by the kill is rolled back or forward) and holds version 1 exactly.
        using var scope = NewDisposeScope();
        var saved = new Block();
        saved.LoadAdapters(_dir);
        var expected = new Block();
        expected.LoadAdapters(_dir + "-expected");
        Assert.Equal(MpiChild.TrainableValues(expected), MpiChild.TrainableValues(saved));
        Assert.DoesNotContain(Directory.GetFiles(_dir), f => f.Contains(".peft-save-journal", StringComparison.Ordinal));
    }

    private static float[] OneProcessOnConcatenatedBatches(out long trainable)
    {
        using var scope = NewDisposeScope();
        manual_seed(31);
        var model = new Block();
        trainable = model.TrainableParameterCount;
        var trainer = new AdapterTrainer(model, optim.SGD(model.TrainableParameters(), MpiChild.LearningRate)) { Name = "one process" };
        for (int s = 0; s < Steps; s++)
        {
            using var step = NewDisposeScope();
            var (x0, y0) = MpiChild.Batch(2 * s);
            var (x1, y1) = MpiChild.Batch(2 * s + 1);
            var x = cat(new[] { x0, x1 }); var y = cat(new[] { y0, y1 });
            trainer.Step(() => nn.functional.cross_entropy(model.forward(x), y));
        }
        return MpiChild.TrainableValues(model);
    }

    private static float[] Read(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        var values = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
        return values;
    }
}
