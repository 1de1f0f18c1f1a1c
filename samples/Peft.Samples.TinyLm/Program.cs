using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Peft.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Samples.TinyLm;

/// <summary>
/// Pre-trains a tiny character-level transformer on a toy grammar with counting runs, then fine-tunes only LoRA
/// adapters (and the output head) on a new sentence form ("after seven comes eight."), scoring its completions; merges them and saves them in Hugging Face PEFT's format.
/// Usage: dotnet run --project samples/Peft.Samples.TinyLm -c Release [-- --pretrain-steps N --finetune-steps N --out DIR]
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        int pretrainSteps = IntOption(args, "--pretrain-steps", 300);
        int finetuneSteps = IntOption(args, "--finetune-steps", 400);
        string outDir = StringOption(args, "--out", Path.Combine("out", "tinylm-lora"));
        const int context = 32, batch = 32;

        manual_seed(7);
        set_num_threads(Math.Max(1, Environment.ProcessorCount));
        var random = new Random(7);
        var numbers = ToyCorpora.SuccessorNumbers;
        string grammar = ToyCorpora.Grammar(6000, seed: 2);
        string successors = ToyCorpora.SuccessorText(numbers, 3000, seed: 3);
        var tokenizer = new CharTokenizer(new[] { grammar, successors });

        var model = new TinyTransformer(tokenizer.VocabularySize, context);
        Console.WriteLine($"TinyTransformer: {model.TotalParameters():N0} parameters, LoRA on {model.AdapterLayers.Count} layers: {string.Join(", ", model.AdapterLayers.Select(l => l.Path))}");

        // 1. Pre-train the base model: adapters off, every base weight trainable.
        model.DisableAdapters();
        model.UnfreezeBaseModel();
        Train(model, model.parameters(), tokenizer.Encode(grammar), pretrainSteps, 3e-3, "pre-train on the toy grammar", tokenizer, context, batch, random);

        // 2. Fine-tune: the base frozen again, only adapters and the [Trainable] head learn.
        model.FreezeBaseModel();
        model.EnableAdapters();
        long trainable = model.TrainableParameterCount, total = model.TotalParameters();
        Console.WriteLine($"\nTrainable: {trainable:N0} of {total:N0} parameters ({100.0 * trainable / total:F1} %): LoRA A/B + head");
        Console.WriteLine($"Completions of \"after N comes\" before fine-tuning: {Accuracy(model, tokenizer, numbers):P0} correct");
        Show(model, tokenizer, numbers.Take(3));
        Train(model, model.TrainableParameters(), tokenizer.Encode(successors), finetuneSteps, 3e-3, "LoRA fine-tune on \"after seven comes eight.\"", tokenizer, context, batch, random);
        Console.WriteLine($"Completions of \"after N comes\" after fine-tuning: {Accuracy(model, tokenizer, numbers):P0} correct");
        Show(model, tokenizer, numbers.Take(3));

        // 3. Merge: the merged model computes the same function.
        model.eval();
        using var probe = tensor(tokenizer.Encode(ToyCorpora.Sentence(numbers[0]))).unsqueeze(0);
        using var unmerged = model.forward(probe).detach();
        model.MergeAdapters();
        using var merged = model.forward(probe).detach();
        Console.WriteLine($"\nMerged vs unmerged logits: max |diff| = {(merged - unmerged).abs().max().item<float>():E2}");
        model.UnmergeAdapters();

        // 4. Save in PEFT's format: PeftModel.from_pretrained(base, dir) reads these files.
        model.SaveAdapters(outDir);
        Console.WriteLine($"Saved adapter to {Path.GetFullPath(outDir)}:");
        foreach (var file in Directory.GetFiles(outDir).OrderBy(f => f)) Console.WriteLine($"  {Path.GetFileName(file)} ({new FileInfo(file).Length:N0} bytes)");
        return 0;
    }

    private static void Train(TinyTransformer model, System.Collections.Generic.IEnumerable<TorchSharp.Modules.Parameter> parameters, long[] data, int steps, double lr,
        string title, CharTokenizer tokenizer, int context, int batch, Random random)
    {
        Console.WriteLine($"\n{title}: {steps} steps");
        model.train();
        var optimizer = optim.AdamW(parameters, lr);
        var clock = Stopwatch.StartNew();
        double smoothed = double.NaN;
        for (int step = 1; step <= steps; step++)
        {
            using var scope = NewDisposeScope();
            var (inputs, targets) = tokenizer.Batch(data, batch, context, random);
            var logits = model.forward(inputs);
            var loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), targets.reshape(-1));
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            double value = loss.item<float>();
            if (!double.IsFinite(value)) throw new InvalidOperationException($"{title}: the loss became {value} at step {step}; stopping before the weights are corrupted");
            smoothed = double.IsNaN(smoothed) ? value : 0.9 * smoothed + 0.1 * value;
            if (step == 1 || step % 50 == 0 || step == steps)
                Console.WriteLine($"  step {step,4}  loss {smoothed:F3}  ({batch * context * step / clock.Elapsed.TotalSeconds:N0} tokens/s)");
        }
        model.eval();
    }

    private static string Complete(TinyTransformer model, CharTokenizer tokenizer, string prompt, int maxChars = 12)
    {
        using var _ = no_grad();
        var ids = tokenizer.Encode(prompt).ToList();
        for (int i = 0; i < maxChars; i++)
        {
            using var scope = NewDisposeScope();
            var window = ids.Skip(Math.Max(0, ids.Count - model.Context)).ToArray();
            long next = model.forward(tensor(window).unsqueeze(0))[0, -1].argmax().item<long>();
            ids.Add(next);
            if (tokenizer.Decode(new[] { next }) == ".") break;
        }
        return tokenizer.Decode(ids.Skip(prompt.Length));
    }

    private static double Accuracy(TinyTransformer model, CharTokenizer tokenizer, System.Collections.Generic.IReadOnlyList<int> numbers) =>
        numbers.Count(n => Complete(model, tokenizer, ToyCorpora.Prompt(n)) == ToyCorpora.Answer(n)) / (double)numbers.Count;

    private static void Show(TinyTransformer model, CharTokenizer tokenizer, System.Collections.Generic.IEnumerable<int> numbers)
    {
        foreach (var n in numbers) Console.WriteLine($"  \"{ToyCorpora.Prompt(n)}\" → \"{Complete(model, tokenizer, ToyCorpora.Prompt(n))}\"");
    }

    private static int IntOption(string[] args, string name, int fallback) =>
        Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length && int.TryParse(args[i + 1], out var v) ? v : fallback;

    private static string StringOption(string[] args, string name, string fallback) =>
        Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;

    private static long TotalParameters(this TinyTransformer model) => model.parameters().Sum(p => p.numel());
}
