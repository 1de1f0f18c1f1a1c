using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;
using Xunit;
using Xunit.Abstractions;

namespace Peft.Generators.Tests.Analyzers
{
    /// <summary>
    /// What a user sees in CI: <c>dotnet build</c> of a consumer project outside this repository (in the temp folder),
    /// one mistake per class, referencing the DSL, the runtime and the generator as an analyzer. The build must fail
    /// with exactly the expected IDs, each once, as errors, and nothing else: no other error, no warning but the one
    /// PEFT015 it provokes, and no CS8785 (generator crashed) or AD0001 (analyzer crashed) anywhere in the log.
    /// </summary>
    public class DotnetBuildTests
    {
        private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(4);

        private readonly ITestOutputHelper _output;

        public DotnetBuildTests(ITestOutputHelper output) => _output = output;

        private const string Mistakes = """
            using Peft;
            using TorchSharp;
            using static TorchSharp.torch;
            using static TorchSharp.torch.nn;

            namespace Consumer
            {
                // PEFT001
                public class NotPartial : Module<Tensor, Tensor>
                {
                    [LoRA(8)] private Module<Tensor, Tensor> q = Linear(64, 64);
                    public NotPartial() : base(nameof(NotPartial)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }

                // PEFT002
                public partial class FieldTypedLinear : Module<Tensor, Tensor>
                {
                    [LoRA(8)] private TorchSharp.Modules.Linear q = Linear(64, 64);
                    public FieldTypedLinear() : base(nameof(FieldTypedLinear)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }

                // PEFT004
                public partial class RankZero : Module<Tensor, Tensor>
                {
                    [LoRA(0)] private Module<Tensor, Tensor> q = Linear(64, 64);
                    public RankZero() : base(nameof(RankZero)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }

                // PEFT005
                public partial class RankTooLarge : Module<Tensor, Tensor>
                {
                    [LoRA(128)] private Module<Tensor, Tensor> q = Linear(64, 96);
                    public RankTooLarge() : base(nameof(RankTooLarge)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }

                // PEFT006
                public partial class BoneBlock : Module<Tensor, Tensor>
                {
                    [Bone(64)] private Module<Tensor, Tensor> v = Linear(100, 128);
                    public BoneBlock() : base(nameof(BoneBlock)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => v.forward(x);
                }

                // PEFT007
                public partial class DropoutTooHigh : Module<Tensor, Tensor>
                {
                    [LoRA(8, Dropout = 1.5)] private Module<Tensor, Tensor> q = Linear(64, 64);
                    public DropoutTooHigh() : base(nameof(DropoutTooHigh)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }

                // PEFT009
                public partial class MergeUnknown : Module<Tensor, Tensor>
                {
                    [LoRA(8, Name = "math")]
                    [MergeWith("math", "code", Name = "both")]
                    private Module<Tensor, Tensor> q = Linear(64, 64);
                    public MergeUnknown() : base(nameof(MergeUnknown)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }

                // PEFT013
                [LoRA(8, Targets = new[] { "qq" })]
                public partial class TargetMissing : Module<Tensor, Tensor>
                {
                    private Module<Tensor, Tensor> q = Linear(64, 64);
                    public TargetMissing() : base(nameof(TargetMissing)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }

                // PEFT017
                public partial class TwoDropouts : Module<Tensor, Tensor>
                {
                    [LoRA(8)] private Module<Tensor, Tensor> q = Linear(64, 64);
                    [LoRA(8, Dropout = 0.1)] private Module<Tensor, Tensor> v = Linear(64, 64);
                    public TwoDropouts() : base(nameof(TwoDropouts)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => v.forward(q.forward(x));
                }

                // PEFT015 (a warning: the build does not fail on it alone)
                public partial class NeverRegisters : Module<Tensor, Tensor>
                {
                    [LoRA(8)] private Module<Tensor, Tensor> q = Linear(64, 64);
                    public NeverRegisters() : base(nameof(NeverRegisters)) { }
                    public override Tensor forward(Tensor x) => q.forward(x);
                }

                // No mistake: adds nothing to the log.
                [PeftModel]
                public sealed partial class Good : Module<Tensor, Tensor>
                {
                    [LoRA(8, Alpha = 16, Dropout = 0.05)] private Module<Tensor, Tensor> q = Linear(64, 64);
                    [Bone(32, Name = "mlp")] private Module<Tensor, Tensor> v = Linear(64, 64);
                    [Trainable] private Module<Tensor, Tensor> head = Linear(64, 10);
                    public Good() : base(nameof(Good)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => head.forward(q.forward(x) + v.forward(x));
                }
            }
            """;

        [Fact]
        [Trait("Category", "Slow")]
        public void Consumer_with_one_mistake_per_class_fails_with_exactly_those_IDs()
        {
            string repository = RepositoryRoot();
            string folder = Path.Combine(Path.GetTempPath(), "peftdsl-consumer-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(folder);
            try
            {
                string src = Path.Combine(repository, "src");
                File.WriteAllText(Path.Combine(folder, "Consumer.csproj"), $"""
                    <Project Sdk="Microsoft.NET.Sdk">
                      <PropertyGroup>
                        <TargetFramework>net10.0</TargetFramework>
                        <Nullable>enable</Nullable>
                        <ImplicitUsings>disable</ImplicitUsings>
                        <ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally>
                        <NoWarn>$(NoWarn);NU1603</NoWarn>
                      </PropertyGroup>
                      <ItemGroup>
                        <PackageReference Include="TorchSharp-cpu" Version="0.107.0" />
                        <ProjectReference Include="{Path.Combine(src, "Peft.Dsl", "Peft.Dsl.csproj")}" />
                        <ProjectReference Include="{Path.Combine(src, "Peft.Runtime", "Peft.Runtime.csproj")}" />
                        <ProjectReference Include="{Path.Combine(src, "Peft.Generators", "Peft.Generators.csproj")}" OutputItemType="Analyzer" ReferenceOutputAssembly="false" />
                      </ItemGroup>
                    </Project>
                    """);
                File.WriteAllText(Path.Combine(folder, "Mistakes.cs"), Mistakes);

                var watch = Stopwatch.StartNew();
                var (exitCode, log) = DotnetBuild(folder);
                _output.WriteLine($"dotnet build took {watch.Elapsed.TotalSeconds:F0} s, exit code {exitCode}");
                _output.WriteLine(log);

                Assert.NotEqual(0, exitCode);
                Assert.DoesNotContain("CS8785", log);
                Assert.DoesNotContain("CS8784", log);
                Assert.DoesNotContain("AD0001", log);

                // Each diagnostic appears in the log once in place and once in the summary: count distinct locations.
                var found = Regex.Matches(log, @"^(?<where>\S+\(\d+,\d+\)): (?<severity>error|warning) (?<id>[A-Z]+\d+):", RegexOptions.Multiline)
                    .Select(m => (Where: m.Groups["where"].Value, Severity: m.Groups["severity"].Value, Id: m.Groups["id"].Value))
                    .Distinct()
                    .ToList();
                Assert.Equal(new[] { "PEFT015" }, found.Where(d => d.Severity == "warning").Select(d => d.Id).ToArray());
                Assert.Equal(
                    new[] { "PEFT001", "PEFT002", "PEFT004", "PEFT005", "PEFT006", "PEFT007", "PEFT009", "PEFT013", "PEFT017" },
                    found.Where(d => d.Severity == "error").Select(d => d.Id).OrderBy(id => id, StringComparer.Ordinal).ToArray());
            }
            finally
            {
                try { Directory.Delete(folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            }
        }

        private static (int ExitCode, string Log) DotnetBuild(string folder)
        {
            var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet")
            {
                WorkingDirectory = folder,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            // One core, no lingering build or compiler servers, plain console output.
            foreach (string argument in new[] { "build", "-nologo", "-m:1", "-nodeReuse:false", "-p:UseSharedCompilation=false", "-tl:off", "-clp:NoSummary" })
                start.ArgumentList.Add(argument);
            // The test host's MSBuild settings must not leak into the child build.
            foreach (string key in start.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)).ToList())
                start.Environment.Remove(key);
            start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
            start.Environment["DOTNET_NOLOGO"] = "1";

            var log = new StringBuilder();
            using var process = new Process { StartInfo = start };
            process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.AppendLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.AppendLine(e.Data); };
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            if (!process.WaitForExit((int)Timeout.TotalMilliseconds))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"dotnet build did not finish in {Timeout.TotalMinutes} minutes:\n{log}");
            }

            process.WaitForExit(); // drains the output
            lock (log) return (process.ExitCode, log.ToString());
        }

        private static string RepositoryRoot()
        {
            for (DirectoryInfo? directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
            {
                if (File.Exists(Path.Combine(directory.FullName, "PeftDsl.sln"))) return directory.FullName;
            }

            throw new InvalidOperationException("PeftDsl.sln not found above " + AppContext.BaseDirectory);
        }
    }
}
