using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Reflection;
using BenchmarkDotNet.Attributes;

namespace Peft.Benchmarks;

/// <summary>
/// Interleaved measurement for a busy machine: each round times the frozen base and each adapter variant of one
/// <see cref="AdapterBenchmark"/> suite back to back (order alternating from round to round), so a burst of load from
/// other processes hits both sides of a ratio. Reports the median over rounds of the per-round ratio, with its
/// quartiles, next to the median times.
/// </summary>
public static class PairedRunner
{
    /// <summary>The suites <see cref="Run"/> accepts, by the name before "Benchmarks" in lower case (lora, dora, bone, ...).</summary>
    public static IReadOnlyDictionary<string, Type> Suites { get; } =
        typeof(AdapterBenchmark).Assembly.GetTypes()
            .Where(t => t.IsSubclassOf(typeof(AdapterBenchmark)) && !t.IsAbstract && t.Name.EndsWith("Benchmarks", StringComparison.Ordinal))
            .ToDictionary(t => t.Name[..^"Benchmarks".Length].ToLowerInvariant(), StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// Runs suite <paramref name="suite"/> at one size for <paramref name="rounds"/> rounds and prints the result.
    /// <paramref name="parameter"/> sets the suite's own parameter (LoRA's rank, Bone's block), if it has one.
    /// </summary>
    /// <param name="suite">The suite's short name.</param>
    /// <param name="n">Rows of the input.</param>
    /// <param name="d">In and out features.</param>
    /// <param name="parameter">The suite's own parameter.</param>
    /// <param name="rounds">Measured rounds.</param>
    /// <param name="inputNeedsGrad">False for a first layer, whose input needs no gradient.</param>
    public static void Run(string suite, int n, int d, int parameter, int rounds, bool inputNeedsGrad = true)
    {
        if (!Suites.TryGetValue(suite, out var type))
            throw new ArgumentException($"unknown suite '{suite}'; one of: {string.Join(", ", Suites.Keys.OrderBy(k => k))} (and generator)");
        var bench = (AdapterBenchmark)Activator.CreateInstance(type)!;
        bench.N = n;
        bench.D = d;
        bench.InputNeedsGrad = inputNeedsGrad;
        var own = type.GetProperties().SingleOrDefault(p => p.DeclaringType == type && p.GetCustomAttribute<ParamsSourceAttribute>() is not null);
        own?.SetValue(bench, parameter);
        bench.GlobalSetup();
        var variants = Variants(bench);
        string title = string.Format(CultureInfo.InvariantCulture, "{0}: n = {1}, d = {2}{3}, input {4}, {5} interleaved rounds, {6} libtorch threads, {7} logical CPUs",
            type.Name, n, d, own is null ? "" : $", {own.Name} = {parameter}", inputNeedsGrad ? "requires grad" : "needs no grad",
            rounds, TorchSharp.torch.get_num_threads(), Environment.ProcessorCount);
        Interleave(title, variants, warmups: 3, rounds);
        bench.GlobalCleanup();
    }

    /// <summary>
    /// <see cref="GeneratorBenchmarks"/> interleaved: the compile baseline, the cold run and the incremental re-run at
    /// <paramref name="fields"/> annotated fields. The compiler's code takes about a hundred runs to tier up, hence 40
    /// warm-ups of each variant (they share most of it).
    /// </summary>
    public static void RunGenerator(int fields, int rounds)
    {
        var bench = new GeneratorBenchmarks { Fields = fields };
        bench.GlobalSetup();
        string title = string.Format(CultureInfo.InvariantCulture, "{0}: {1} annotated fields, {2} interleaved rounds, {3} logical CPUs",
            nameof(GeneratorBenchmarks), fields, rounds, Environment.ProcessorCount);
        Interleave(title, Variants(bench), warmups: 40, rounds);
    }

    /// <summary>
    /// <see cref="LlamaBenchmarks"/> interleaved at <paramref name="layers"/> layers: the frozen model's forward + backward
    /// and the LoRA training step, with the tokens per second of each.
    /// </summary>
    public static void RunLlama(int layers, int rounds)
    {
        var bench = new LlamaBenchmarks { Layers = layers };
        bench.GlobalSetup();
        string title = string.Format(CultureInfo.InvariantCulture,
            "LlamaBenchmarks: d = 768, {0} layers, 12 heads, batch {1} x seq {2}, LoRA r = {3} on q/v, {4} interleaved rounds, {5} libtorch threads, {6} logical CPUs",
            layers, LlamaBenchmarks.Batch, LlamaBenchmarks.Sequence, LlamaBenchmarks.Rank, rounds, TorchSharp.torch.get_num_threads(), Environment.ProcessorCount);
        var medians = Interleave(title, Variants(bench), warmups: 2, rounds);
        foreach (var (name, ms) in medians)
            Console.WriteLine(string.Format(CultureInfo.InvariantCulture, "{0}: {1:N0} tokens/s", name, LlamaBenchmarks.TokensPerStep / (ms / 1000)));
        bench.GlobalCleanup();
    }

    /// <summary>
    /// <see cref="CoreSpaceMergeBenchmarks"/> interleaved: the full-space merge (baseline) and the Core Space merge of
    /// <paramref name="sources"/> rank-<paramref name="r"/> LoRA adapters on a d×d layer, by <paramref name="method"/>.
    /// </summary>
    /// <param name="warmups">Untimed runs of each variant first (0 at d = 4096, where one full-space run takes minutes on a CPU).</param>
    public static void RunCoreSpace(int d, int r, int sources, Peft.MergeMethod method, int rounds, int warmups = 1)
    {
        var bench = new CoreSpaceMergeBenchmarks { D = d, R = r, Sources = sources, Method = method };
        bench.GlobalSetup();
        string title = string.Format(CultureInfo.InvariantCulture, "{0}: {1}, d = {2}, r = {3}, {4} sources, {5} interleaved rounds, {6} libtorch threads, {7} logical CPUs",
            nameof(CoreSpaceMergeBenchmarks), method, d, r, sources, rounds, TorchSharp.torch.get_num_threads(), Environment.ProcessorCount);
        Interleave(title, Variants(bench), warmups, rounds);
        bench.GlobalCleanup();
    }

    /// <summary>
    /// <see cref="MixedBatchBenchmarks"/> interleaved: the frozen base stack, one unmerged adapter, the mixed batch and
    /// PEFT's approach in TorchSharp ops, at <paramref name="n"/> rows, d = <paramref name="d"/>, rank <paramref name="rank"/>.
    /// </summary>
    public static void RunMixed(int n, int d, int rank, int rounds)
    {
        var bench = new MixedBatchBenchmarks { N = n, D = d, R = rank };
        bench.GlobalSetup();
        string title = string.Format(CultureInfo.InvariantCulture,
            "{0}: inference (no grad), {1} × LoRALinear({2}, {2}) with {3} LoRA adapters of rank {4} each, {5} rows round-robin, {6} interleaved rounds, {7} libtorch threads, {8} logical CPUs",
            nameof(MixedBatchBenchmarks), bench.Layers, d, bench.Adapters, rank, n, rounds, TorchSharp.torch.get_num_threads(), Environment.ProcessorCount);
        Interleave(title, Variants(bench), warmups: 5, rounds);
        bench.GlobalCleanup();
    }

    /// <summary>The suite's [Benchmark] methods on <paramref name="bench"/>, the baseline first.</summary>
    private static (string Name, Action Step)[] Variants(object bench) =>
        bench.GetType().GetMethods()
            .Select(m => (Method: m, Attribute: m.GetCustomAttribute<BenchmarkAttribute>()))
            .Where(m => m.Attribute is not null)
            .OrderByDescending(m => m.Attribute!.Baseline)
            // Benchmarks that return a value (the generator's) go through Invoke: microseconds on tens of milliseconds.
            .Select(m => (Name: m.Attribute!.Description ?? m.Method.Name,
                Step: m.Method.ReturnType == typeof(void) ? (Action)m.Method.CreateDelegate(typeof(Action), bench) : () => m.Method.Invoke(bench, null)))
            .ToArray();

    /// <summary>Times the variants back to back for <paramref name="rounds"/> rounds and prints the table; variant 0 is the baseline.</summary>
    private static (string Name, double MedianMs)[] Interleave(string title, (string Name, Action Step)[] variants, int warmups, int rounds)
    {
        foreach (var v in variants) for (int i = 0; i < warmups; i++) v.Step();
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

        var c = CultureInfo.InvariantCulture;
        Console.WriteLine(title);
        Console.WriteLine("| variant | median ms | min ms | median of per-round ratios | ratio quartiles |");
        Console.WriteLine("| --- | ---: | ---: | ---: | --- |");
        for (int k = 0; k < variants.Length; k++)
        {
            var ratios = times[k].Zip(times[0], (t, b) => t / b).ToArray();
            Console.WriteLine(string.Format(c, "| {0} | {1:F2} | {2:F2} | {3:F3} | {4:F3} – {5:F3} |",
                variants[k].Name, Quantile(times[k], 0.5), times[k].Min(), Quantile(ratios, 0.5), Quantile(ratios, 0.25), Quantile(ratios, 0.75)));
        }
        return variants.Select((v, k) => (v.Name, Quantile(times[k], 0.5))).ToArray();
    }

    private static double Quantile(IEnumerable<double> values, double q)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos), hi = (int)Math.Ceiling(pos);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }
}
