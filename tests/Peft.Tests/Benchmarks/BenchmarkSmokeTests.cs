using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Reflection;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;
using Peft.Benchmarks;
using Xunit;

namespace Peft.Tests.Benchmarks;

/// <summary>
/// Keeps the BenchmarkDotNet suites from rotting without running them for real: every suite class is accepted by
/// BenchmarkDotNet with one baseline per parameter set, and every benchmark method runs once, at the smallest
/// value of each of its parameters, through its own setup and cleanup. A suite added later is covered by itself.
/// </summary>
public class BenchmarkSmokeTests
{
    public static IEnumerable<object[]> Suites() =>
        typeof(AdapterBenchmark).Assembly.GetTypes()
            .Where(t => t is { IsClass: true, IsAbstract: false, IsPublic: true } && t.GetMethods().Any(m => m.GetCustomAttribute<BenchmarkAttribute>() is not null))
            .OrderBy(t => t.Name)
            .Select(t => new object[] { t.Name });

    private static Type Suite(string name) => typeof(AdapterBenchmark).Assembly.GetTypes().Single(t => t.Name == name);

    [Fact]
    public void TheSuitesAreThere()
    {
        var names = Suites().Select(s => (string)s[0]).ToArray();
        Assert.Contains(nameof(LoRABenchmarks), names);
        Assert.Contains(nameof(MergeBenchmarks), names);
        Assert.Contains(nameof(DropoutMaskBenchmarks), names);
        Assert.Contains(nameof(DoRABenchmarks), names);
        Assert.Contains(nameof(BoneBenchmarks), names);
        Assert.Contains(nameof(GeneratorBenchmarks), names);
    }

    [Theory]
    [MemberData(nameof(Suites))]
    public void BenchmarkDotNetAcceptsTheSuiteWithABaselinePerParameterSet(string name)
    {
        var run = BenchmarkConverter.TypeToBenchmarks(Suite(name), BenchmarkConfigs.Quick);
        Assert.NotEmpty(run.BenchmarksCases);
        foreach (var group in run.BenchmarksCases.GroupBy(c => c.Parameters.DisplayInfo))
            Assert.Equal(1, group.Count(c => c.Descriptor.Baseline));
    }

    [Theory]
    [MemberData(nameof(Suites))]
    public void EveryBenchmarkRunsOnceAtTheSmallestParameters(string name)
    {
        var type = Suite(name);
        var instance = Activator.CreateInstance(type)!;
        foreach (var property in type.GetProperties())
        {
            if (property.GetCustomAttribute<ParamsAttribute>() is { } values)
                property.SetValue(instance, values.Values.Min());
            else if (property.GetCustomAttribute<ParamsSourceAttribute>() is { } source)
                property.SetValue(instance, ((System.Collections.IEnumerable)type.GetProperty(source.Name, BindingFlags.Public | BindingFlags.Static | BindingFlags.FlattenHierarchy)!.GetValue(null)!).Cast<object>().Min());
        }
        var watch = Stopwatch.StartNew();
        Invoke<GlobalSetupAttribute>(instance);
        var benchmarks = type.GetMethods().Where(m => m.GetCustomAttribute<BenchmarkAttribute>() is not null).ToArray();
        Assert.NotEmpty(benchmarks);
        foreach (var method in benchmarks) method.Invoke(instance, null);
        Invoke<GlobalCleanupAttribute>(instance);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"{name} took {watch.Elapsed} at its smallest parameters");
    }

    private static void Invoke<TAttribute>(object instance) where TAttribute : Attribute
    {
        foreach (var method in instance.GetType().GetMethods().Where(m => m.GetCustomAttribute<TAttribute>() is not null))
            method.Invoke(instance, null);
    }
}
