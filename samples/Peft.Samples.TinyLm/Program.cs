using System;
using System.Collections.Generic;
using System.CommandLine;
using System.IO;
using System.Linq;
using Peft.Runtime.Distributed;
using Peft.Runtime.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Samples.TinyLm;

/// <summary>
/// Pre-trains a tiny character-level transformer on a toy grammar with counting runs, then fine-tunes only adapters
/// (LoRA by default; DoRA or Bone with --method) and the output head on a sentence form it never saw ("after seven
/// comes eight."), showing completions before and after, loss plots, a merge check, and the adapter saved in Hugging
/// Face PEFT's format.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var method = new Option<AdapterMethod>("--method") { Description = "Adapter method to fine-tune with: LoRA, DoRA, Bone, SaRA, RandLoRA, Eva or AdaLoRA", DefaultValueFactory = _ => AdapterMethod.LoRA };
        var steps = new Option<int>("--steps") { Description = "Fine-tuning steps", DefaultValueFactory = _ => 400 };
        var pretrainSteps = new Option<int>("--pretrain-steps") { Description = "Pre-training steps of the base model", DefaultValueFactory = _ => 300 };
        var rank = new Option<int?>("--rank") { Description = "Adapter rank (LoRA, DoRA) or block size (Bone); default: the attribute's, 8" };
        var dataParallel = new Option<bool>("--data-parallel") { Description = "Train data-parallel over the ranks of an OpenMPI job: mpirun -np 2 dotnet run --project samples/Peft.Samples.TinyLm -c Release -- --data-parallel" };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads per process", DefaultValueFactory = _ => 1 };
        var batch = new Option<int>("--batch") { Description = "Sequences per batch (per rank when data-parallel)", DefaultValueFactory = _ => 32 };
        var output = new Option<string>("--out") { Description = "Folder for the loss plots and the saved adapter", DefaultValueFactory = _ => Path.Combine("out", "tinylm") };
        foreach (var option in new Option[] { steps, pretrainSteps, threads, batch })
            option.Validators.Add(result => { if (result.GetValueOrDefault<int>() < 1) result.AddError($"{option.Name} must be at least 1"); });
        rank.Validators.Add(result => { if (result.GetValueOrDefault<int?>() is < 1) result.AddError("--rank must be at least 1"); });

        var command = new RootCommand("PeftDsl sample: pre-train a tiny transformer, then fine-tune adapters on a new sentence form")
        {
            method, steps, pretrainSteps, rank, output, dataParallel, threads, batch,
        };
        command.SetAction(parsed =>
        {
            try
            {
                var communicator = parsed.GetValue(dataParallel) ? Communicator.FromEnvironment() : null;
                Run(parsed.GetValue(method), parsed.GetValue(steps), parsed.GetValue(pretrainSteps), parsed.GetValue(rank), parsed.GetValue(output)!,
                    communicator, parsed.GetValue(threads), parsed.GetValue(batch));
                return 0;
            }
            catch (Exception ex) when (ex is NonFiniteLossException or ArgumentException or InvalidOperationException)
            {
                // The runtime's messages name the layer, the value and the fix; show them, not a stack trace.
                Console.Error.WriteLine(ex.Message);
                return 1;
            }
        });
        return command.Parse(args).Invoke();
    }

    private static void Run(AdapterMethod method, int finetuneSteps, int pretrainSteps, int? rank, string outDir,
        ICommunicator? communicator, int threads, int batch)
    {
        const int context = 32;
        // Data-parallel: every rank says who it is; rank 0 alone draws the tables, bars and plots and saves.
        bool lead = communicator is null || communicator.Rank == 0;
        if (communicator is not null)
        {
            Console.Out.WriteLine($"rank {communicator.Rank} of {communicator.Size}" + (communicator.Size == 1 ? " (not under mpirun: training alone)" : ""));
            Console.Out.Flush();
            if (!lead) AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(TextWriter.Null) });
        }
        // The same seed on every rank: the frozen base starts equal everywhere (the trainer broadcasts only what trains).
        manual_seed(7);
        // One intra-op thread by default: for a model this small libtorch's thread pool gains little on an idle machine
        // and, on a busy one (CI, shared cores), its spin-waiting threads make each step many times slower.
        set_num_threads(threads);
        var random = new Random(7);
        var numbers = ToyCorpora.SuccessorNumbers;
        string grammar = ToyCorpora.Grammar(6000, seed: 2);
        string successors = ToyCorpora.SuccessorText(numbers, 3000, seed: 3);
        var tokenizer = new CharTokenizer(new[] { grammar, successors });
        Directory.CreateDirectory(outDir);

        AnsiConsole.Write(new Rule("[bold]PeftDsl · TinyLm[/]").LeftJustified());
        var model = new TinyTransformer(tokenizer.VocabularySize, context, method);
        AnsiConsole.MarkupLine($"TinyTransformer: {model.TotalParameterCount:N0} parameters; {method} on {model.AdapterLayers.Count} layers: " +
            Markup.Escape(string.Join(", ", model.AdapterLayers.Select(l => l.Path))));
        var (table, problems) = ParameterTable(tokenizer.VocabularySize, context, method, rank);
        AnsiConsole.Write(table);
        foreach (var (other, problem) in problems.Where(p => p.Key != method))
            AnsiConsole.MarkupLine($"[red]{other}: {Markup.Escape(problem)}[/]");
        if (problems.TryGetValue(method, out var refused)) throw new ArgumentException(refused); // before the pre-training, not after

        // 1. Pre-train the base model: adapters off, every base weight trainable.
        model.DisableAdapters();
        model.UnfreezeBaseModel();
        // Data-parallel, every parameter trains here, so every parameter's gradient crosses the wire (the whole model).
        var pretrain = Training.Run(model, model.parameters(), tokenizer.Encode(grammar), tokenizer, "pre-train on the toy grammar", pretrainSteps, 3e-3, random, batch, communicator);
        string pretrainPlot = lead ? LossPlot.Write(Path.Combine(outDir, "pretrain-loss.png"), "Pre-training the base model", new[] { pretrain }) : "";
        AnsiConsole.MarkupLine($"  loss {pretrain.Losses[0]:F2} → {pretrain.FinalLoss():F2}; plot: [link]{Markup.Escape(pretrainPlot)}[/]");
        ShowAllReduce(pretrain);

        // 2. Fine-tune: fresh adapters on the pre-trained base, the base frozen again; only adapters and the head learn.
        AdapterSetup.Recreate(model, rank, finetuneSteps);
        model.EnableAdapters();
        if (method == AdapterMethod.Eva)
        {
            // EVA's A comes from the layers' inputs on the fine-tuning text: forward passes only, until convergence.
            double seconds = AdapterSetup.InitializeEva(model, tokenizer, tokenizer.Encode(successors), random);
            AnsiConsole.MarkupLine($"EVA init: {seconds:F2} s on batches of 32 × {context} tokens");
        }
        long trainable = model.TrainableParameterCount;
        AnsiConsole.MarkupLine($"\nTrainable now: [bold]{trainable:N0}[/] of {model.TotalParameterCount:N0} parameters ({100.0 * trainable / model.TotalParameterCount:F1} %): " +
            $"{model.AdapterParameterCount:N0} in {method} adapters + the head");
        var shown = new[] { 0, 6, 11, 16 };
        var before = shown.ToDictionary(n => n, n => Generation.Complete(model, tokenizer, ToyCorpora.Prompt(n)));
        double accuracyBefore = Generation.SuccessorAccuracy(model, tokenizer, numbers);

        var finetune = Training.Run(model, model.TrainableParameters(), tokenizer.Encode(successors), tokenizer,
            $"{method} fine-tune on \"after seven comes eight.\"", finetuneSteps, 3e-3, random, batch, communicator);
        string finetunePlot = lead ? LossPlot.Write(Path.Combine(outDir, $"finetune-{method.ToString().ToLowerInvariant()}-loss.png"), $"{method} fine-tuning", new[] { finetune }) : "";
        AnsiConsole.MarkupLine($"  loss {finetune.Losses[0]:F2} → {finetune.FinalLoss():F2}; plot: [link]{Markup.Escape(finetunePlot)}[/]");
        ShowAllReduce(finetune);
        double accuracyAfter = Generation.SuccessorAccuracy(model, tokenizer, numbers);

        var completions = new Table().Title($"Completions of \"after N comes\" ({numbers.Count} prompts)")
            .AddColumns("prompt", "before fine-tuning", "after fine-tuning", "expected");
        foreach (var n in shown)
        {
            string after = Generation.Complete(model, tokenizer, ToyCorpora.Prompt(n));
            completions.AddRow(Markup.Escape(ToyCorpora.Prompt(n)), Markup.Escape(before[n]),
                after == ToyCorpora.Answer(n) ? $"[green]{Markup.Escape(after)}[/]" : $"[red]{Markup.Escape(after)}[/]", Markup.Escape(ToyCorpora.Answer(n)));
        }
        completions.AddRow("[bold]all prompts correct[/]", $"[bold]{accuracyBefore:P0}[/]", $"[bold]{accuracyAfter:P0}[/]", "");
        AnsiConsole.Write(completions);

        // 3. Merge: the merged model computes the same function.
        using (var probe = tensor(tokenizer.Encode(ToyCorpora.Sentence(numbers[0]))).unsqueeze(0))
        {
            using var unmerged = model.forward(probe).detach();
            model.MergeAdapters();
            using var merged = model.forward(probe).detach();
            AnsiConsole.MarkupLine($"Merged vs unmerged logits: max |diff| = {(merged - unmerged).abs().max().item<float>():E2}");
            model.UnmergeAdapters();
        }

        // 4. Save in PEFT's format: PeftModel.from_pretrained(base, dir) reads these files.
        string adapterDir = Path.Combine(outDir, $"adapter-{method.ToString().ToLowerInvariant()}");
        communicator?.Barrier();
        if (lead) model.SaveAdapters(adapterDir); // data-parallel: rank 0 writes, the others wait below
        communicator?.Barrier();
        if (!lead) return;
        AnsiConsole.MarkupLine($"Saved the adapter to {Markup.Escape(Path.GetFullPath(adapterDir))}:");
        foreach (var file in Directory.GetFiles(adapterDir).OrderBy(f => f, StringComparer.Ordinal))
            AnsiConsole.MarkupLine($"  {Markup.Escape(Path.GetFileName(file))} ({new FileInfo(file).Length:N0} bytes)");
    }

    /// <summary>Data-parallel: the time rank 0 spent in all-reductions against the step time, and the bytes per step.</summary>
    private static void ShowAllReduce(TrainingRun run)
    {
        if (run.AllReduce is not { } reduce || run.StepSeconds.Count == 0) return;
        double perStep = reduce.Seconds / run.StepSeconds.Count, mean = run.StepSeconds.Average();
        AnsiConsole.MarkupLine($"  all-reduce: {perStep * 1e3:F2} ms per step of {mean * 1e3:F1} ms mean ({run.MedianStepSeconds * 1e3:F1} ms median), " +
            $"{100 * perStep / mean:F1} %");
        AnsiConsole.MarkupLine($"  {reduce.Bytes / Math.Max(1, reduce.Calls):N0} bytes per step; {run.TokensPerSecond:N0} tok/s over all ranks");
    }

    /// <summary>What each method would train on this model, at the same rank: built, counted, discarded.</summary>
    private static (Table Table, Dictionary<AdapterMethod, string> Problems) ParameterTable(int vocab, int context, AdapterMethod chosen, int? rank)
    {
        var problems = new Dictionary<AdapterMethod, string>();
        var table = new Table().Title("Trainable parameters per method (adapters on q and v of 2 blocks, plus the head)")
            .AddColumns("method", "declared as", "adapter", "+ head", "trainable", "of the model");
        table.Columns[1].NoWrap();
        foreach (var method in Enum.GetValues<AdapterMethod>())
        {
            using var scope = NewDisposeScope();
            var model = new TinyTransformer(vocab, context, method);
            try
            {
                if (rank is not null) AdapterSetup.Recreate(model, rank);
            }
            catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
            {
                table.AddRow(method.ToString(), "", "[red]does not fit[/]", "", "", "");
                problems[method] = ex.Message;
                continue;
            }
            long adapters = model.AdapterParameterCount, all = model.TrainableParameterCount;
            string declared = method switch
            {
                AdapterMethod.LoRA => $"[[LoRA({rank ?? 8}, Alpha = {16.0 * (rank ?? 8) / 8})]]",
                AdapterMethod.DoRA => $"[[DoRA({rank ?? 8}, Alpha = {16.0 * (rank ?? 8) / 8})]]",
                AdapterMethod.SaRA => $"[[SaRA({rank ?? 8})]]",
                AdapterMethod.Eva => $"[[LoRA({rank ?? 8}, Alpha = {16.0 * (rank ?? 8) / 8}, Init = LoRAInit.Eva)]]",
                AdapterMethod.AdaLoRA => $"[[AdaLoRA({Math.Max(1, (rank ?? 8) / 2)}, InitRank = {rank ?? 8}, Alpha = {16.0 * (rank ?? 8) / 8})]]",
                AdapterMethod.RandLoRA => $"[[RandLoRA({rank ?? 8}, Alpha = {16.0 * (rank ?? 8) / 8})]]",
                _ => $"[[Bone({rank ?? 8})]]",
            };
            string name = method == chosen ? $"[bold green]{method} ←[/]" : method.ToString();
            table.AddRow(name, declared, $"{adapters:N0}", $"{all - adapters:N0}", $"{all:N0}", $"{100.0 * all / model.TotalParameterCount:F1} %");
        }
        return (table, problems);
    }
}
