using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.Json;
using Peft.Runtime.Distributed;
using Peft.Runtime.Training;
using Peft.Tests.EndToEnd;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Tests.Distributed;

/// <summary>What each rank of an <c>mpirun -np 2 dotnet Peft.Tests.dll child mpi-...</c> job does for <see cref="MpiTrainingTests"/>.</summary>
internal static class MpiChild
{
    internal const int BatchRows = 8;
    internal const double LearningRate = 0.1;

    /// <summary>
    /// <c>mpi-train OUT STEPS</c>: trains <see cref="Block"/> data-parallel for STEPS steps (rank r on batches r, r + N, ...),
    /// each rank's trainable parameters from a different start (the trainer's broadcast must fix that), then writes its trainable
    /// parameters to OUT/rank{r}.bin and its communicator's counters to OUT/rank{r}.json.
    /// <c>mpi-fail DIR MODE</c>: trains 3 steps, saves the adapter (version 1) into DIR and copies it to DIR-expected,
    /// then fails: <c>throw</c> (rank 1's loss function throws at step 5), <c>kill</c> (rank 1 is SIGKILLed at step 5) or
    /// <c>kill-in-save</c> (rank 0 is SIGKILLed halfway through saving version 2). Prints <c>failing at UNIX-MS</c> first.
    /// </summary>
    public static int Run(string[] args)
    {
        var communicator = Communicator.FromEnvironment();
        Console.Out.WriteLine($"rank {communicator.Rank} of {communicator.Size}");
        // The frozen base must be the same on every rank (same seed); the trainable parameters are made to differ, so
        // the trainer's broadcast from rank 0 is what makes the ranks agree.
        manual_seed(31);
        set_num_threads(1);
        var model = new Block();
        if (communicator.Rank != 0)
            using (no_grad())
                foreach (var p in model.TrainableParameters()) p.add_(randn_like(p));
        var trainer = new AdapterTrainer(model, optim.SGD(model.TrainableParameters(), LearningRate)) { Name = "mpi test", Communicator = communicator };
        double Step(int step, Func<Tensor, Tensor>? poison = null)
        {
            using var scope = NewDisposeScope();
            var (x, y) = Batch(DataSharding.BatchIndex(step, communicator.Rank, communicator.Size));
            return trainer.Step(() => (poison ?? (t => t))(nn.functional.cross_entropy(model.forward(x), y)));
        }

        switch (args[0])
        {
            case "mpi-bench":
            {
                // mpi-bench FLOATS...: the all-reduce time of a bucket of each size, after a barrier (transfer, not waiting).
                var mpi = (OpenMpiCommunicator)communicator;
                foreach (string arg in args[1..])
                {
                    long floats = long.Parse(arg, CultureInfo.InvariantCulture);
                    using var bucket = ones(floats);
                    for (int i = 0; i < 5; i++) mpi.AllReduceMean(bucket);
                    var times = new System.Collections.Generic.List<double>();
                    for (int i = 0; i < 50; i++)
                    {
                        mpi.Barrier();
                        long start = Stopwatch.GetTimestamp();
                        mpi.AllReduceMean(bucket);
                        times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                    }
                    times.Sort();
                    if (communicator.Rank == 0)
                        Console.Out.WriteLine($"all-reduce {floats * 4:N0} bytes: median {times[times.Count / 2]:F3} ms, min {times[0]:F3} ms");
                }
                return 0;
            }
            case "mpi-train":
            {
                string output = args[1];
                int steps = int.Parse(args[2], CultureInfo.InvariantCulture);
                for (int s = 0; s < steps; s++) Step(s);
                Directory.CreateDirectory(output);
                WriteParameters(Path.Combine(output, $"rank{communicator.Rank}.bin"), model);
                var mpi = (OpenMpiCommunicator)communicator;
                File.WriteAllText(Path.Combine(output, $"rank{communicator.Rank}.json"), JsonSerializer.Serialize(new Counters(
                    mpi.BytesAllReduced, mpi.BytesBroadcast, mpi.AllReduceCount, model.TrainableParameterCount, communicator.Size)));
                return 0;
            }
            case "mpi-fail":
            {
                string dir = args[1], mode = args[2];
                for (int s = 0; s < 3; s++) Step(s);
                trainer.SaveAdapters(dir);
                if (communicator.Rank == 0)
                {
                    CopyDirectory(dir, dir + "-expected");
                    Console.Out.WriteLine("saved 1");
                }
                Step(3);
                switch (mode)
                {
                    case "throw":
                        try
                        {
                            Step(4, loss =>
                            {
                                if (communicator.Rank != 1) return loss;
                                Failing();
                                throw new InvalidOperationException("rank 1 fails on purpose");
                            });
                        }
                        catch (InvalidOperationException ex)
                        {
                            Console.Error.WriteLine($"rank {communicator.Rank}: {ex.Message}");
                            return 3;
                        }
                        break;
                    case "kill":
                        Step(4, loss =>
                        {
                            if (communicator.Rank == 1) { Failing(); Process.GetCurrentProcess().Kill(); System.Threading.Thread.Sleep(-1); }
                            return loss;
                        });
                        break;
                    case "kill-in-save":
                        if (communicator.Rank == 0)
                            Peft.Runtime.IO.SaveJournal.CommitPoint = reached =>
                            {
                                if (reached != "staged") return;
                                Failing();
                                Process.GetCurrentProcess().Kill();
                                System.Threading.Thread.Sleep(-1);
                            };
                        trainer.SaveAdapters(dir);
                        break;
                    default:
                        Console.Error.WriteLine($"unknown mode '{mode}'");
                        return 2;
                }
                Console.Out.WriteLine($"rank {communicator.Rank} survived");
                return 0;
            }
            default:
                Console.Error.WriteLine($"unknown child command '{args[0]}'");
                return 2;
        }
    }

    internal sealed record Counters(long BytesAllReduced, long BytesBroadcast, int AllReduceCount, long TrainableParameters, int Size);

    /// <summary>Global batch <paramref name="index"/>: the same numbers in every process, from its index alone.</summary>
    internal static (Tensor X, Tensor Y) Batch(long index)
    {
        var random = new Random(1000 + (int)index);
        var x = Enumerable.Range(0, BatchRows * 32).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var y = Enumerable.Range(0, BatchRows).Select(_ => (long)random.Next(10)).ToArray();
        return (tensor(x).view(BatchRows, 32), tensor(y));
    }

    internal static float[] TrainableValues(Block model) =>
        model.named_parameters().Where(p => p.parameter.requires_grad)
            .SelectMany(p => p.parameter.detach().reshape(-1).data<float>().ToArray()).ToArray();

    private static void WriteParameters(string path, Block model)
    {
        using var writer = new BinaryWriter(File.Create(path));
        foreach (float value in TrainableValues(model)) writer.Write(value);
    }

    private static void Failing()
    {
        Console.Out.WriteLine($"failing at {DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}");
        Console.Out.Flush();
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (string file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite: true);
        }
    }
}
