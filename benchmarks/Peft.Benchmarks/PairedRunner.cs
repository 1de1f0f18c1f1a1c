using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;

namespace Peft.Benchmarks;

/// <summary>
/// Interleaved measurement for a busy machine: each round times the frozen base and each adapter variant back to back
/// (order alternating from round to round), so a burst of load from other processes hits both sides of a ratio.
/// Reports the median over rounds of the per-round ratio, with its quartiles, next to the median times.
/// </summary>
public static class PairedRunner
{
    /// <summary>Runs <see cref="LoRABenchmarks"/> at one size for <paramref name="rounds"/> rounds and prints the result.</summary>
    public static void Run(int n, int d, int r, int rounds)
    {
        var bench = new LoRABenchmarks { N = n, D = d, R = r };
        bench.GlobalSetup();
        var variants = new (string Name, Action Step)[]
        {
            ("frozen base", bench.FrozenBase),
            ("LoRA fused", bench.LoRA),
            ("LoRA fused, thin half on 2 threads", () =>
            {
                Peft.Runtime.Kernels.LoRAFunction.KernelThreadsOverride = 2;
                try { bench.LoRA(); }
                finally { Peft.Runtime.Kernels.LoRAFunction.KernelThreadsOverride = null; }
            }),
            ("LoRA composed", bench.LoRAComposed),
        };
        foreach (var v in variants) for (int i = 0; i < 3; i++) v.Step();
        var times = variants.Select(_ => new List<double>()).ToArray();
        for (int round = 0; round < rounds; round++)
        {
            var order = Enumerable.Range(0, variants.Length);
            if (round % 2 == 1) order = order.Reverse();
            foreach (int k in order)
            {
                var watch = Stopwatch.StartNew();
                variants[k].Step();
                times[k].Add(watch.Elapsed.TotalMilliseconds);
            }
        }
        bench.GlobalCleanup();

        var c = CultureInfo.InvariantCulture;
        Console.WriteLine(string.Format(c, "n = {0}, d = {1}, r = {2}, dropout {3}, {4} interleaved rounds, {5} libtorch threads, {6} logical CPUs",
            n, d, r, LoRABenchmarks.Dropout, rounds, TorchSharp.torch.get_num_threads(), Environment.ProcessorCount));
        Console.WriteLine("| variant | median ms | min ms | median of per-round ratios | ratio quartiles |");
        Console.WriteLine("| --- | ---: | ---: | ---: | --- |");
        for (int k = 0; k < variants.Length; k++)
        {
            var ratios = times[k].Zip(times[0], (t, b) => t / b).ToArray();
            Console.WriteLine(string.Format(c, "| {0} | {1:F2} | {2:F2} | {3:F3} | {4:F3} – {5:F3} |",
                variants[k].Name, Quantile(times[k], 0.5), times[k].Min(), Quantile(ratios, 0.5), Quantile(ratios, 0.25), Quantile(ratios, 0.75)));
        }
    }

    private static double Quantile(IEnumerable<double> values, double q)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos), hi = (int)Math.Ceiling(pos);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }
}
