using System;
using System.Linq;
using BenchmarkDotNet.Running;
using Peft.Benchmarks;

// dotnet run -c Release --project benchmarks/Peft.Benchmarks -- [--quick] [BenchmarkDotNet arguments, e.g. --filter '*LoRA*']
// dotnet run -c Release --project benchmarks/Peft.Benchmarks -- --paired [n d r rounds]
if (args.Length > 0 && args[0] == "--paired")
{
    int At(int i, int fallback) => args.Length > i ? int.Parse(args[i]) : fallback;
    PairedRunner.Run(At(1, 2048), At(2, 1024), At(3, 16), At(4, 31));
    return 0;
}
bool quick = args.Contains("--quick");
var rest = args.Where(a => a != "--quick").ToArray();
var summaries = BenchmarkSwitcher.FromAssembly(typeof(AdapterBenchmark).Assembly)
    .Run(rest, quick ? BenchmarkConfigs.Quick : BenchmarkConfigs.Full);
return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
