using System;
using System.Collections.Generic;
using System.CommandLine;
using System.IO;
using System.Linq;
using Peft.Runtime.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Samples.Compare;

/// <summary>
/// Fine-tunes one pre-trained tiny transformer with LoRA, DoRA, Bone, SaRA, AdaLoRA, EVA, LaMDA, LoLDU and RandLoRA on the same task, data order and step count,
/// and compares loss, accuracy, trainable parameters and step time; writes one plot with every loss curve.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var methods = new Option<AdapterMethod[]>("--method")
        {
            Description = "Methods to compare (repeat the option or list them): LoRA, DoRA, Bone, SaRA, Eva, AdaLoRA, LaMDA, LoLDU, RandLoRA",
            DefaultValueFactory = _ => Enum.GetValues<AdapterMethod>(),
            AllowMultipleArgumentsPerToken = true,
        };
        var steps = new Option<int>("--steps") { Description = "Fine-tuning steps per method", DefaultValueFactory = _ => 300 };
        var pretrainSteps = new Option<int>("--pretrain-steps") { Description = "Pre-training steps of the shared base model", DefaultValueFactory = _ => 300 };
        var rank = new Option<int?>("--rank") { Description = "Adapter rank (LoRA, DoRA, SaRA, LaMDA, LoLDU, RandLoRA; AdaLoRA's initial rank) and block size (Bone); default: the attributes', 8" };
        var output = new Option<string>("--out") { Description = "Folder for the loss plots and the saved adapters", DefaultValueFactory = _ => Path.Combine("out", "compare") };
        foreach (var option in new Option[] { steps, pretrainSteps })
            option.Validators.Add(result => { if (result.GetValueOrDefault<int>() < 1) result.AddError($"{option.Name} must be at least 1"); });
        rank.Validators.Add(result => { if (result.GetValueOrDefault<int?>() is < 1) result.AddError("--rank must be at least 1"); });

        var command = new RootCommand("PeftDsl sample: LoRA vs DoRA vs Bone vs SaRA vs EVA vs AdaLoRA vs LaMDA vs LoLDU vs RandLoRA on one pre-trained tiny transformer")
        {
            methods, steps, pretrainSteps, rank, output,
        };
        command.SetAction(parsed =>
        {
            try
            {
                Run(parsed.GetValue(methods)!.Distinct().ToArray(), parsed.GetValue(steps), parsed.GetValue(pretrainSteps), parsed.GetValue(rank), parsed.GetValue(output)!);
                return 0;
            }
            catch (Exception ex) when (ex is NonFiniteLossException or ArgumentException or InvalidOperationException)
            {
                Console.Error.WriteLine(ex.Message);
                return 1;
            }
        });
        return command.Parse(args).Invoke();
    }

    private sealed record Result(AdapterMethod Method, TrainingRun Run, long AdapterParameters, long Trainable, long Total, double Accuracy, double? InitSeconds);

    private static void Run(AdapterMethod[] methods, int finetuneSteps, int pretrainSteps, int? rank, string outDir)
    {
        const int context = 32;
        manual_seed(7);
        // One intra-op thread: for a model this small libtorch's thread pool gains little on an idle machine and, on a
        // busy one (CI, shared cores), its spin-waiting threads make each step many times slower.
        set_num_threads(1);
        var numbers = ToyCorpora.SuccessorNumbers;
        string grammar = ToyCorpora.Grammar(6000, seed: 2);
        string successors = ToyCorpora.SuccessorText(numbers, 3000, seed: 3);
        var tokenizer = new CharTokenizer(new[] { grammar, successors });
        Directory.CreateDirectory(outDir);
        AnsiConsole.Write(new Rule($"[bold]PeftDsl · {string.Join(" vs ", methods)}[/]").LeftJustified());

        // 1. One base model, pre-trained once (adapters off, every base weight trainable).
        var pretrained = new TinyTransformer(tokenizer.VocabularySize, context);
        pretrained.DisableAdapters();
        pretrained.UnfreezeBaseModel();
        var pretrain = Training.Run(pretrained, pretrained.parameters(), tokenizer.Encode(grammar), tokenizer, "pre-train the shared base", pretrainSteps, 3e-3, new Random(7));
        LossPlot.Write(Path.Combine(outDir, "pretrain-loss.png"), "Pre-training the shared base model", new[] { pretrain });

        // 2. Each method on a copy of that base: same seed, same batches, same steps and learning rate.
        var results = new List<Result>();
        foreach (var method in methods)
        {
            manual_seed(11);
            var model = new TinyTransformer(tokenizer.VocabularySize, context, method);
            AdapterSetup.CopyBaseWeights(pretrained, model);
            AdapterSetup.Recreate(model, rank, finetuneSteps); // on the pre-trained base: DoRA's magnitude starts from its row norms
            double? evaSeconds = null;
            if (method == AdapterMethod.Eva)
            {
                evaSeconds = AdapterSetup.InitializeEva(model, tokenizer, tokenizer.Encode(successors), new Random(13));
                AnsiConsole.MarkupLine($"[grey]EVA init: {evaSeconds:F2} s; ranks {string.Join(", ", model.AdapterLayers.Select(l => l.Layer.AdapterNames.Count == 0 ? 0 : ((Peft.Runtime.Adapters.LoRALinear)l.Layer).Options("default").Rank))}[/]");
            }
            var run = Training.Run(model, model.TrainableParameters(), tokenizer.Encode(successors), tokenizer,
                $"{method} fine-tune", finetuneSteps, 3e-3, new Random(11));
            results.Add(new Result(method, run, model.AdapterParameterCount, model.TrainableParameterCount, model.TotalParameterCount,
                Generation.SuccessorAccuracy(model, tokenizer, numbers), evaSeconds));
            model.SaveAdapters(Path.Combine(outDir, method.ToString().ToLowerInvariant()));
        }

        // 3. The comparison.
        string plot = LossPlot.Write(Path.Combine(outDir, "compare-loss.png"), $"Fine-tuning one base model: {string.Join(" vs ", methods)}",
            results.Select(r => r.Run).ToList());
        var reference = results[0];
        var table = new Table().Title($"{finetuneSteps} steps each on \"after N comes M.\", rank / block {rank ?? 8}")
            .AddColumns("method", "trainable", "in adapters", "final loss", "correct", "ms/step", $"vs {reference.Method}", "init s");
        foreach (var column in table.Columns.Skip(1)) column.RightAligned();
        double bestLoss = results.Min(r => r.Run.FinalLoss());
        foreach (var r in results)
        {
            string loss = $"{r.Run.FinalLoss():F3}";
            table.AddRow(
                r.Method.ToString(),
                $"{r.Trainable:N0}",
                $"{r.AdapterParameters:N0}",
                r.Run.FinalLoss() == bestLoss ? $"[green]{loss}[/]" : loss,
                $"{r.Accuracy:P0}",
                $"{1000 * r.Run.MedianStepSeconds:F1}",
                $"{r.Run.MedianStepSeconds / reference.Run.MedianStepSeconds:F2}×",
                r.InitSeconds is { } init ? $"{init:F2}" : "");
        }
        AnsiConsole.WriteLine();
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine("[grey]trainable: adapters + the output head. final loss: mean of the last 25 steps.[/]");
        AnsiConsole.MarkupLine($"[grey]correct: greedy completions of the {numbers.Count} \"after N comes\" prompts.[/]");
        AnsiConsole.MarkupLine("[grey]ms/step: median wall time of one step (batch, forward, backward, AdamW).[/]");
        AnsiConsole.MarkupLine("[grey]init s: EVA's data-driven init (forward passes until the components converge), before training.[/]");
        AnsiConsole.MarkupLine($"Loss curves: [link]{Markup.Escape(plot)}[/]; adapters saved under {Markup.Escape(Path.GetFullPath(outDir))}");
    }
}
