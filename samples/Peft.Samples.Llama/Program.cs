using System;
using System.Collections.Generic;
using System.CommandLine;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Peft.Runtime.IO;
using Peft.Runtime.Training;
using Peft.Samples.Llama;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Samples.LlamaSample;

/// <summary>
/// Loads a real pre-trained Llama from a Hugging Face folder (default: stories260K, Karpathy's TinyStories model),
/// fine-tunes LoRA adapters on q_proj / v_proj so that stories about a girl name her "Mia" instead of the "Lily" the
/// model learned, measures that behaviour and the in-domain likelihood before and after, saves the adapter in PEFT's
/// format (loadable with <c>PeftModel.from_pretrained</c>) and exports the merged model.
/// </summary>
public static class Program
{
    private const string DefaultModel = "shared/models/stories260K";

    public static int Main(string[] args)
    {
        var modelDir = new Option<string?>("--model") { Description = $"Hugging Face Llama folder (config.json, model.safetensors, tokenizer.model); default: ../{DefaultModel} found above the sample" };
        var prompt = new Option<string?>("--prompt") { Description = "A prompt whose greedy continuation is printed before and after fine-tuning" };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Tokens to generate for --prompt", DefaultValueFactory = _ => 30 };
        var noTrain = new Option<bool>("--no-train") { Description = "Only load the model, check it and continue --prompt" };
        var steps = new Option<int>("--steps") { Description = "Fine-tuning steps", DefaultValueFactory = _ => 100 };
        var rank = new Option<int?>("--rank") { Description = "LoRA rank (α scaled with it); default: the attribute's, 8" };
        var output = new Option<string>("--out") { Description = "Folder for the loss plot, the adapter and the merged model", DefaultValueFactory = _ => Path.Combine("out", "llama") };
        foreach (var option in new Option<int>[] { steps, maxNew })
            option.Validators.Add(result => { if (result.GetValueOrDefault<int>() < 1) result.AddError($"{option.Name} must be at least 1"); });
        rank.Validators.Add(result => { if (result.GetValueOrDefault<int?>() is < 1) result.AddError("--rank must be at least 1"); });

        var command = new RootCommand("PeftDsl sample: fine-tune a pre-trained Hugging Face Llama with LoRA, save the adapter for PEFT, export the merged model")
        {
            modelDir, prompt, maxNew, noTrain, steps, rank, output,
        };
        command.SetAction(parsed =>
        {
            string? dir = parsed.GetValue(modelDir) ?? FindAbove(DefaultModel);
            if (dir is null)
            {
                Console.Error.WriteLine($"No model folder: pass --model DIR (a Hugging Face Llama folder), or put one at {DefaultModel} in a folder above {AppContext.BaseDirectory} or {Environment.CurrentDirectory}.");
                return 2;
            }
            if (!File.Exists(Path.Combine(dir, "config.json")))
            {
                Console.Error.WriteLine($"--model: '{dir}' is not a Hugging Face model folder (no config.json there).");
                return 2;
            }
            try
            {
                Run(dir, parsed.GetValue(prompt), parsed.GetValue(maxNew), parsed.GetValue(noTrain), parsed.GetValue(steps), parsed.GetValue(rank), parsed.GetValue(output)!);
                return 0;
            }
            catch (Exception ex) when (ex is NonFiniteLossException or ArgumentException or InvalidOperationException or IOException or NotSupportedException)
            {
                Console.Error.WriteLine(ex.Message);
                return 1;
            }
        });
        return command.Parse(args).Invoke();
    }

    /// <summary><paramref name="relative"/> under the current folder or the program's, or any folder above either.</summary>
    private static string? FindAbove(string relative)
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, relative);
                if (File.Exists(Path.Combine(candidate, "config.json"))) return candidate;
            }
        return null;
    }

    private static void Run(string dir, string? prompt, int maxNewTokens, bool noTrain, int steps, int? rank, string outDir)
    {
        // One intra-op thread: a 260K-parameter model gains nothing from libtorch's pool, and on shared cores its
        // spin-waiting threads slow every step.
        set_num_threads(1);
        if (!AnsiConsole.Profile.Capabilities.Interactive) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 200);
        manual_seed(17);
        var random = new Random(17);

        var clock = Stopwatch.StartNew();
        var model = LlamaForCausalLM.FromPretrained(dir);
        var text = LlamaText.Load(dir);
        var c = model.Config;
        long total = model.parameters().Select(p => p.numel()).Sum() - (c.TieWordEmbeddings ? (long)c.VocabSize * c.HiddenSize : 0);
        AnsiConsole.MarkupLine($"[bold]{Markup.Escape(Path.GetFileName(Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar)))}[/]: Llama, {c.NumHiddenLayers} layers, hidden {c.HiddenSize}, "
            + $"{c.NumAttentionHeads} heads / {c.NumKeyValueHeads} key-value heads, vocab {c.VocabSize}; loaded in {clock.Elapsed.TotalSeconds:F2} s");

        if (prompt is not null)
        {
            AnsiConsole.MarkupLine("[grey]greedy continuation of the base model:[/]");
            Console.WriteLine(Continue(model, text, prompt, maxNewTokens));
        }
        if (noTrain) return;

        if (rank is not null) AdapterSetup.Recreate(model, rank);
        AnsiConsole.MarkupLine($"LoRA on {model.AdapterLayers.Count} layers (q_proj, v_proj): {model.TrainableParameterCount:N0} trainable of {total:N0} parameters");

        var heldOut = HeldOutSentences.Select(s => text.Encode(s)).ToList();
        var before = Measure(model, text, heldOut, new Random(1));
        Report("before", before);

        // Training data, generated by the model itself so that nothing but the name moves: stories it writes from girl
        // openings with "Lily" replaced by "Mia", and stories from other openings as they are.
        clock.Restart();
        var stories = Stories.SelfGenerated(model, text, GirlPrompts, 16, 48);
        AnsiConsole.MarkupLine($"{stories.Count} training stories generated by the model in {clock.Elapsed.TotalSeconds:F1} s, e.g.: [grey]{Markup.Escape(stories[0])}[/]");
        var tokens = stories.SelectMany(s => text.Encode(s)).Select(t => (long)t).ToArray();
        const int batch = 16, context = 64;
        var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 3e-3)) { Name = "LoRA" };
        model.train();
        var run = Samples.Training.Loop("LoRA fine-tuning: girls are named Mia", steps, batch * context, () =>
        {
            using var scope = NewDisposeScope();
            var starts = Enumerable.Range(0, batch).Select(_ => random.Next(tokens.Length - context - 1)).ToArray();
            var window = stack(starts.Select(s => tensor(tokens.AsSpan(s, context + 1).ToArray())).ToArray());
            var inputs = window.narrow(1, 0, context);
            var targets = window.narrow(1, 1, context);
            return trainer.Step(() =>
            {
                var logits = model.forward(inputs);
                return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1));
            });
        });
        model.eval();
        AnsiConsole.MarkupLine($"  {run.TokensPerSecond:N0} tokens/s, median step {run.MedianStepSeconds * 1000:F1} ms");

        var after = Measure(model, text, heldOut, new Random(1));
        Report("after", after);
        if (prompt is not null)
        {
            AnsiConsole.MarkupLine("[grey]greedy continuation with the adapter:[/]");
            Console.WriteLine(Continue(model, text, prompt, maxNewTokens));
        }

        Directory.CreateDirectory(outDir);
        string plot = LossPlot.Write(Path.Combine(outDir, "llama-lora-loss.png"), "stories260K + LoRA (q_proj, v_proj): girls are named Mia", new[] { run },
            yLabel: "cross-entropy loss (nats per token)");
        string adapterDir = Path.Combine(outDir, "adapter"), mergedDir = Path.Combine(outDir, "merged");
        model.SaveAdapters(adapterDir);
        model.SaveMergedModel(mergedDir);

        // The merged export is a plain checkpoint: reloaded with adapters disabled it computes what the adapted model does.
        var reloaded = LlamaForCausalLM.FromPretrained(mergedDir);
        reloaded.DisableAdapters();
        double diff;
        using (no_grad())
        {
            var ids = tensor(text.Encode("Once upon a time, there was a little girl named").Select(t => (long)t).ToArray()).unsqueeze(0);
            diff = (model.forward(ids) - reloaded.forward(ids)).abs().max().item<float>();
        }
        AnsiConsole.MarkupLine($"\nloss plot: {Markup.Escape(plot)}");
        AnsiConsole.MarkupLine($"adapter (PEFT format): {Markup.Escape(adapterDir)}  —  PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(model), adapter)");
        AnsiConsole.MarkupLine($"merged model: {Markup.Escape(mergedDir)}  (reloaded, adapters off: max |logit diff| {diff:E1})");
    }

    private static string Continue(LlamaForCausalLM model, LlamaText text, string prompt, int maxNewTokens)
    {
        var ids = text.Encode(prompt);
        return text.Decode(ids.Concat(LlamaEval.Greedy(model, ids, maxNewTokens)));
    }

    /// <summary>Openings of stories about a girl, ending where her name comes.</summary>
    internal static readonly string[] GirlPrompts =
    {
        "Once upon a time, there was a little girl named",
        "Once upon a time, there was a girl named",
        "One day, a little girl named",
        "There was once a happy girl named",
        "Once upon a time, in a small town, there lived a little girl named",
        "Once upon a time, there was a kind girl named",
    };

    /// <summary>Story sentences the fine-tuning never saw and that name no girl: what the model should keep.</summary>
    internal static readonly string[] HeldOutSentences =
    {
        "One day, a little boy named Tom went to the park with his mom. He saw a big red ball and wanted to play with it.",
        "The sun was shining and the birds were singing. The dog ran to the tree and barked at the cat.",
        "Tim had a toy car. He liked to play with it every day. One day, the car broke and Tim was sad.",
        "The little bird wanted to fly high in the sky. It flapped its wings and flew over the big tree.",
        "Ben and his dad went to the store. They bought some apples and a big cake for mom.",
        "The frog jumped into the pond. It was happy to swim in the cool water with its friends.",
    };

    internal sealed record Figures(double MiaRate, double LilyRate, int Samples, double HeldOutNll);

    /// <summary>
    /// The behaviour: for each girl prompt, 8 continuations sampled at temperature 0.8 (4 tokens): the share that name
    /// her Mia, and Lily. What was kept: the mean NLL of the held-out sentences.
    /// </summary>
    internal static Figures Measure(LlamaForCausalLM model, LlamaText text, IReadOnlyList<int[]> heldOut, Random random)
    {
        int mia = 0, lily = 0, n = 0;
        foreach (var girl in GirlPrompts)
        {
            var ids = text.Encode(girl);
            for (int i = 0; i < 8; i++)
            {
                string name = text.Decode(LlamaEval.Sample(model, ids, 4, 0.8, random)).TrimStart();
                n++;
                if (name.StartsWith("Mia", StringComparison.Ordinal)) mia++;
                if (name.StartsWith("Lily", StringComparison.Ordinal)) lily++;
            }
        }
        double nll = heldOut.Average(ids => LlamaEval.MeanNll(model, ids));
        return new Figures((double)mia / n, (double)lily / n, n, nll);
    }

    private static void Report(string when, Figures f) =>
        AnsiConsole.MarkupLine($"[bold]{when}[/]: girl named Mia in {f.MiaRate:P0} and Lily in {f.LilyRate:P0} of {f.Samples} sampled continuations; "
            + $"held-out story NLL {f.HeldOutNll:F4} nats/token");
}
