using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using Peft.Runtime.Distributed;
using Peft.Runtime.Training;
using Spectre.Console;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Samples;

/// <summary>One training run's record.</summary>
/// <param name="Title">What was trained.</param>
/// <param name="Losses">The loss of every step.</param>
/// <param name="StepSeconds">The wall time of every step (batch, forward, backward, optimizer).</param>
/// <param name="TokensPerSecond">Training throughput over the whole run (of every rank together, when data-parallel).</param>
public sealed record TrainingRun(string Title, IReadOnlyList<double> Losses, IReadOnlyList<double> StepSeconds, double TokensPerSecond)
{
    /// <summary>Data-parallel only: the wall time this rank spent in all-reductions, and the bytes it all-reduced, over the run.</summary>
    public (double Seconds, long Bytes, int Calls)? AllReduce { get; init; }

    /// <summary>The median step time: on a shared machine, robust to the odd step another process slowed down.</summary>
    public double MedianStepSeconds
    {
        get
        {
            var sorted = StepSeconds.Order().ToList();
            return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
        }
    }

    /// <summary>The mean loss of the last <paramref name="steps"/> steps: less noisy than the last step's.</summary>
    public double FinalLoss(int steps = 25) => Losses.Skip(Math.Max(0, Losses.Count - steps)).Average();
}

/// <summary>Next-character training on a text, with a progress bar (loss, tokens/s, ETA) and a NaN guard.</summary>
public static class Training
{
    public static TrainingRun Run(TinyTransformer model, IEnumerable<Parameter> parameters, long[] data, CharTokenizer tokenizer,
        string title, int steps, double learningRate, Random random, int batch = 32, ICommunicator? communicator = null)
    {
        model.train();
        var trainer = new AdapterTrainer(model, optim.AdamW(parameters, learningRate)) { Name = title, Communicator = communicator };
        var mpi = communicator as OpenMpiCommunicator;
        var (reduceStart, bytesStart, callsStart) = mpi is null ? (TimeSpan.Zero, 0L, 0) : (mpi.AllReduceTime, mpi.BytesAllReduced, mpi.AllReduceCount);
        int context = model.Context;
        var run = Loop(title, steps, batch * (communicator?.Size ?? 1) * context, () =>
        {
            using var scope = NewDisposeScope();
            var (inputs, targets) = communicator is null
                ? tokenizer.Batch(data, batch, context, random)
                : DataSharding.NextShard(() => tokenizer.Batch(data, batch, context, random), communicator);
            return trainer.Step(() =>
            {
                var logits = model.forward(inputs);
                return nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), targets.reshape(-1));
            });
        });
        model.eval();
        return mpi is null ? run : run with
        {
            AllReduce = ((mpi.AllReduceTime - reduceStart).TotalSeconds, mpi.BytesAllReduced - bytesStart, mpi.AllReduceCount - callsStart),
        };
    }

    /// <summary>
    /// Runs <paramref name="step"/> (one optimizer step, returning its loss) <paramref name="steps"/> times under a
    /// progress bar (loss, tokens/s, elapsed, ETA); with redirected output, a line every 50 steps instead.
    /// </summary>
    public static TrainingRun Loop(string title, int steps, int tokensPerStep, Func<double> step)
    {
        var losses = new List<double>(steps);
        var stepSeconds = new List<double>(steps);
        var clock = Stopwatch.StartNew();
        double smoothed = double.NaN;

        double Step()
        {
            long start = Stopwatch.GetTimestamp();
            double loss = step();
            losses.Add(loss);
            stepSeconds.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
            smoothed = double.IsNaN(smoothed) ? loss : 0.95 * smoothed + 0.05 * loss;
            return loss;
        }

        double TokensPerSecond() => (double)tokensPerStep * losses.Count / clock.Elapsed.TotalSeconds;

        AnsiConsole.MarkupLine($"\n[bold]{Markup.Escape(title)}[/]: {steps} steps");
        if (AnsiConsole.Profile.Capabilities.Interactive)
        {
            AnsiConsole.Progress()
                .AutoClear(false)
                .Columns(new ProgressBarColumn { Width = 30 }, new PercentageColumn(), new StateColumn("loss", "F3", "yellow"),
                    new StateColumn("tok/s", "N0", "grey"), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(context =>
                {
                    var task = context.AddTask(Markup.Escape(title), maxValue: steps);
                    for (int i = 1; i <= steps; i++)
                    {
                        Step();
                        task.State.Update<double>("loss", _ => smoothed);
                        task.State.Update<double>("tok/s", _ => TokensPerSecond());
                        task.Increment(1);
                    }
                });
        }
        else
        {
            // Redirected output (a log, CI): no live bars, a line every 50 steps instead, with the same numbers.
            for (int i = 1; i <= steps; i++)
            {
                Step();
                if (i == 1 || i % 50 == 0 || i == steps)
                {
                    double eta = clock.Elapsed.TotalSeconds / i * (steps - i);
                    AnsiConsole.MarkupLine($"  step {i,4}/{steps}  loss {smoothed:F3}  {TokensPerSecond():N0} tok/s  ETA {eta:F0} s");
                }
            }
        }
        return new TrainingRun(title, losses, stepSeconds, TokensPerSecond());
    }
}

/// <summary>A progress column that shows one number the training loop keeps in the task's state (loss, tokens/s).</summary>
internal sealed class StateColumn : ProgressColumn
{
    private readonly string _key, _format, _color;

    public StateColumn(string key, string format, string color) => (_key, _format, _color) = (key, format, color);

    public override Spectre.Console.Rendering.IRenderable Render(Spectre.Console.Rendering.RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
        new Markup($"[{_color}]{_key} {task.State.Get<double>(_key).ToString(_format, System.Globalization.CultureInfo.InvariantCulture)}[/]");
}
