using System.Linq;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace Peft.Benchmarks;

/// <summary>The two ways the suites run: the full measurement, and a quick one for a smoke run.</summary>
public static class BenchmarkConfigs
{
    /// <summary>
    /// One process per benchmark, 3 warm-up and 15 measured iterations of one operation each (the operations take
    /// milliseconds to seconds, so no unrolling), median and the ratio of medians to the frozen base beside
    /// BenchmarkDotNet's own (mean) Ratio.
    /// </summary>
    public static IConfig Full => Common(Job.Default
        .WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(15)
        .WithInvocationCount(1).WithUnrollFactor(1)
        .WithId("Full"));

    /// <summary>In-process, 1 warm-up and 3 measured iterations: checks the suites run and gives a rough figure.</summary>
    public static IConfig Quick => Common(Job.Dry
        .WithToolchain(InProcessEmitToolchain.Instance)
        .WithWarmupCount(1).WithIterationCount(3)
        .WithInvocationCount(1).WithUnrollFactor(1)
        .WithId("Quick"));

    private static IConfig Common(Job job) => ManualConfig.CreateEmpty()
        .AddJob(job)
        .AddColumnProvider(DefaultColumnProviders.Instance)
        .AddColumn(StatisticColumn.Median, StatisticColumn.Min, new MedianRatioColumn())
        .AddLogger(BenchmarkDotNet.Loggers.ConsoleLogger.Default)
        .AddExporter(BenchmarkDotNet.Exporters.MarkdownExporter.GitHub)
        .WithOrderer(new BenchmarkDotNet.Order.DefaultOrderer(BenchmarkDotNet.Order.SummaryOrderPolicy.Declared))
        .WithOptions(ConfigOptions.JoinSummary);
}

/// <summary>Median of the benchmark over median of its baseline (same parameters, same run): the figure the README quotes.</summary>
public sealed class MedianRatioColumn : IColumn
{
    /// <inheritdoc />
    public string Id => nameof(MedianRatioColumn);
    /// <inheritdoc />
    public string ColumnName => "Median ratio";
    /// <inheritdoc />
    public bool AlwaysShow => true;
    /// <inheritdoc />
    public ColumnCategory Category => ColumnCategory.Baseline;
    /// <inheritdoc />
    public int PriorityInCategory => 10;
    /// <inheritdoc />
    public bool IsNumeric => true;
    /// <inheritdoc />
    public UnitType UnitType => UnitType.Dimensionless;
    /// <inheritdoc />
    public string Legend => "Median time / median time of the baseline (the frozen base layer; for the generator, compiling without it) with the same parameters";

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        var baseline = summary.GetBaseline(summary.GetLogicalGroupKey(benchmarkCase));
        if (baseline is null) return "-";
        var mine = summary[benchmarkCase]?.ResultStatistics;
        var theirs = summary[baseline]?.ResultStatistics;
        if (mine is null || theirs is null || theirs.Median <= 0) return "?";
        return (mine.Median / theirs.Median).ToString("0.000", System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);
    /// <inheritdoc />
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    /// <inheritdoc />
    public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(summary.IsBaseline);
}
