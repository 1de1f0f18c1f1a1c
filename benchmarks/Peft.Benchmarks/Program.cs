using System;
using System.Linq;
using BenchmarkDotNet.Running;
using Peft.Benchmarks;

// dotnet run -c Release --project benchmarks/Peft.Benchmarks -- [--quick] [BenchmarkDotNet arguments, e.g. --filter '*LoRA*']
// dotnet run -c Release --project benchmarks/Peft.Benchmarks -- --paired [suite n d parameter rounds] [--input-no-grad],
// e.g. --paired dora 2048 1024 16 41
// dotnet run -c Release --project benchmarks/Peft.Benchmarks -- --paired generator [fields rounds], e.g. --paired generator 200 61
// dotnet run -c Release --project benchmarks/Peft.Benchmarks -- --paired llama [layers rounds], e.g. --paired llama 4 11
// dotnet run -c Release --project benchmarks/Peft.Benchmarks -- --paired coremerge [d r sources rounds method warmups], e.g. --paired coremerge 4096 16 4 2 Ties 0
// dotnet run -c Release --project benchmarks/Peft.Benchmarks -- --paired mixed [n d rank rounds], e.g. --paired mixed 512 1024 16 41
if (args.Length > 0 && args[0] == "--paired")
{
    var positional = args.Skip(1).Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToArray();
    int At(int i, int fallback) => positional.Length > i ? int.Parse(positional[i], System.Globalization.CultureInfo.InvariantCulture) : fallback;
    string suite = positional.Length > 0 ? positional[0] : "lora";
    if (suite == "generator") PairedRunner.RunGenerator(At(1, 200), At(2, 61));
    else if (suite == "llama") PairedRunner.RunLlama(At(1, 4), At(2, 11));
    else if (suite == "coremerge")
        PairedRunner.RunCoreSpace(At(1, 4096), At(2, 16), At(3, 4), positional.Length > 5 ? Enum.Parse<Peft.MergeMethod>(positional[5]) : Peft.MergeMethod.Ties, At(4, 5), At(6, 1));
    else if (suite == "mixed") PairedRunner.RunMixed(At(1, 512), At(2, 1024), At(3, 16), At(4, 31));
    else PairedRunner.Run(suite, At(1, 2048), At(2, 1024), At(3, 16), At(4, 31), inputNeedsGrad: !args.Contains("--input-no-grad"));
    return 0;
}
bool quick = args.Contains("--quick");
var rest = args.Where(a => a != "--quick").ToArray();
var summaries = BenchmarkSwitcher.FromAssembly(typeof(AdapterBenchmark).Assembly)
    .Run(rest, quick ? BenchmarkConfigs.Quick : BenchmarkConfigs.Full);
return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
