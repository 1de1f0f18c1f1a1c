using System;
using System.Linq;
using BenchmarkDotNet.Running;
using Peft.Benchmarks;

// dotnet run -c Release --project benchmarks/Peft.Benchmarks -- [--quick] [BenchmarkDotNet arguments, e.g. --filter '*LoRA*']
// dotnet run -c Release --project benchmarks/Peft.Benchmarks -- --paired [suite n d parameter rounds], e.g. --paired dora 2048 1024 16 41
// dotnet run -c Release --project benchmarks/Peft.Benchmarks -- --paired generator [fields rounds], e.g. --paired generator 200 61
if (args.Length > 0 && args[0] == "--paired")
{
    int At(int i, int fallback) => args.Length > i ? int.Parse(args[i], System.Globalization.CultureInfo.InvariantCulture) : fallback;
    string suite = args.Length > 1 ? args[1] : "lora";
    if (suite == "generator") PairedRunner.RunGenerator(At(2, 200), At(3, 61));
    else PairedRunner.Run(suite, At(2, 2048), At(3, 1024), At(4, 16), At(5, 31));
    return 0;
}
bool quick = args.Contains("--quick");
var rest = args.Where(a => a != "--quick").ToArray();
var summaries = BenchmarkSwitcher.FromAssembly(typeof(AdapterBenchmark).Assembly)
    .Run(rest, quick ? BenchmarkConfigs.Quick : BenchmarkConfigs.Full);
return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
