using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Samples.Merging;

/// <summary>
/// Pre-trains a small network on addition mod 10, fine-tunes one LoRA adapter on subtraction and another on
/// multiplication (each seeing only its own task), then combines them with the generated <c>MergeSum()</c> (linear,
/// weights 1 and 1: task arithmetic), <c>MergeTies()</c> (TIES, density 0.5) and the literature's merges (TIES, TSV,
/// Iso-C and Iso-CTS in Core Space; WIDEN; LoRA-LEGO at rank 8) and reports the loss and accuracy of
/// every adapter on both tasks; finally runs one mixed batch whose rows each go through their own task's adapter.
/// Usage: dotnet run --project samples/Peft.Samples.Merging -c Release [-- --pretrain-steps N --finetune-steps N --out DIR]
/// </summary>
public static class Program
{
    private enum Task { Add = 0, Sub = 1, Mul = 2 }

    public static int Main(string[] args)
    {
        int pretrainSteps = IntOption(args, "--pretrain-steps", 400);
        int finetuneSteps = IntOption(args, "--finetune-steps", 300);
        string outDir = StringOption(args, "--out", Path.Combine("out", "merging"));
        var clock = Stopwatch.StartNew();
        manual_seed(1);
        set_num_threads(Math.Max(1, Environment.ProcessorCount));

        var model = new DigitNet();
        Console.WriteLine($"DigitNet: LoRA adapters 'sub' and 'mul' on {model.AdapterLayers.Count} layers ({string.Join(", ", model.AdapterLayers.Select(l => l.Path))})");

        // 1. The base model learns addition mod 10, adapters off.
        model.DisableAdapters();
        model.UnfreezeBaseModel();
        Train(model, model.parameters(), Task.Add, pretrainSteps, 1e-2);
        model.FreezeBaseModel();
        model.EnableAdapters();

        // 2. One adapter per task, each trained on its own task only.
        foreach (var (adapter, task) in new[] { ("sub", Task.Sub), ("mul", Task.Mul) })
        {
            model.SetActiveAdapters(adapter);
            var parameters = model.AdapterLayers.SelectMany(l => l.Layer.AdapterParameters(adapter)).Select(p => p.Parameter).ToList();
            Train(model, parameters, task, finetuneSteps, 1e-2);
        }

        // 3. The declared combinations, generated from [MergeWith].
        model.MergeSum();
        model.MergeTies();
        model.MergeTiesCore();
        model.MergeTsvCore();
        model.MergeIsocCore();
        model.MergeIsoctsCore();
        model.MergeWiden();
        model.MergeLego();

        Console.WriteLine();
        Console.WriteLine("adapter            | sub: loss  acc  | mul: loss  acc");
        Console.WriteLine("-------------------+-----------------+----------------");
        Report(model, "(base model)", null);
        Report(model, "sub", "sub");
        Report(model, "mul", "mul");
        Report(model, "sum  (linear 1, 1)", "sum");
        Report(model, "ties (density 0.5)", "ties");
        Report(model, "ties, core space", "ties_core");
        Report(model, "tsv, core space", "tsv_core");
        Report(model, "iso-c, core space", "isoc_core");
        Report(model, "iso-cts, core", "isocts_core");
        Report(model, "widen", "widen");
        Report(model, "lora-lego (k 8)", "lego");

        // 4. One mixed batch: each row through its own task's adapter (and the addition rows through the base).
        var (subX, subY) = Data(Task.Sub);
        var (mulX, mulY) = Data(Task.Mul);
        var (addX, addY) = Data(Task.Add);
        var x = cat(new[] { subX, mulX, addX }, 0);
        var y = cat(new[] { subY, mulY, addY }, 0);
        var rows = Enumerable.Repeat("sub", 100).Concat(Enumerable.Repeat("mul", 100)).Concat(Enumerable.Repeat(Peft.Runtime.PeftModelCore.BaseAdapterName, 100)).ToArray();
        double mixedAccuracy;
        using (no_grad())
        using (model.MixedBatch(rows))
            mixedAccuracy = model.forward(x).argmax(1).eq(y).to(float32).mean().item<float>();
        Console.WriteLine();
        Console.WriteLine($"mixed batch of 300 rows (sub rows → 'sub', mul rows → 'mul', add rows → base): accuracy {mixedAccuracy:P0}");

        model.SaveAdapter(Path.Combine(outDir, "ties"), "ties");
        model.SaveAdapters(outDir);
        Console.WriteLine($"adapters saved in PEFT's format under {Path.GetFullPath(outDir)} (one subfolder each; the TIES merge also in ties/)");
        Console.WriteLine($"done in {clock.Elapsed.TotalSeconds:F1} s");
        return 0;
    }

    /// <summary>All 100 digit pairs of a task: inputs [100, 23] and targets [100].</summary>
    private static (Tensor X, Tensor Y) Data(Task task)
    {
        var x = zeros(100, DigitNet.Inputs);
        var y = new long[100];
        for (int a = 0; a < 10; a++)
            for (int b = 0; b < 10; b++)
            {
                int i = a * 10 + b;
                x[i, a] = 1;
                x[i, 10 + b] = 1;
                x[i, 20 + (int)task] = 1;
                y[i] = task switch
                {
                    Task.Add => (a + b) % 10,
                    Task.Sub => (a - b + 10) % 10,
                    _ => a * b % 10,
                };
            }
        return (x, tensor(y));
    }

    private static void Train(DigitNet model, System.Collections.Generic.IEnumerable<TorchSharp.Modules.Parameter> parameters, Task task, int steps, double lr)
    {
        var (x, y) = Data(task);
        var optimizer = optim.Adam(parameters, lr);
        model.train();
        for (int step = 0; step < steps; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            nn.functional.cross_entropy(model.forward(x), y).backward();
            optimizer.step();
        }
        model.eval();
        var (loss, accuracy) = Evaluate(model, task);
        Console.WriteLine($"trained {steps} steps on {task.ToString().ToLowerInvariant()}: loss {loss:F3}, accuracy {accuracy:P0}");
    }

    private static (double Loss, double Accuracy) Evaluate(DigitNet model, Task task)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (x, y) = Data(task);
        var logits = model.forward(x);
        return (nn.functional.cross_entropy(logits, y).item<float>(), logits.argmax(1).eq(y).to(float32).mean().item<float>());
    }

    private static void Report(DigitNet model, string label, string? adapter)
    {
        if (adapter is null) model.DisableAdapters();
        else model.SetActiveAdapters(adapter);
        var (subLoss, subAcc) = Evaluate(model, Task.Sub);
        var (mulLoss, mulAcc) = Evaluate(model, Task.Mul);
        model.EnableAdapters();
        Console.WriteLine($"{label,-18} | {subLoss,8:F3} {subAcc,5:P0} | {mulLoss,8:F3} {mulAcc,5:P0}");
    }

    private static int IntOption(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length && int.TryParse(args[i + 1], out int value) ? value : fallback;
    }

    private static string StringOption(string[] args, string name, string fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
    }
}
