using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Globalization;
using System.Linq;
using System.Reflection;
using System.Text;
using System.Threading;
using BenchmarkDotNet.Attributes;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Peft.Generators;

namespace Peft.Benchmarks;

/// <summary>
/// The source generator on a synthesized model with <see cref="Fields"/> annotated fields: a cold run (a new driver,
/// as a command-line build) and the incremental re-run after an edit to an unrelated file (what the IDE pays per
/// keystroke). The baseline is the compiler's own work on the same source without the generator: binding it and
/// collecting its diagnostics, the work any build of the model does anyway.
/// </summary>
/// <remarks>
/// Every invocation runs on a new <see cref="CSharpCompilation"/> (from the same parsed trees), because a compilation
/// caches the symbols and attribute data it has bound: a generator run on a compilation that already ran once would
/// skip most of the binding a real build pays. Parsing is done in setup, for all three benchmarks alike.
/// The compiler is a large body of code that the tiered JIT (with dynamic PGO: tier 0, instrumented, then tier 1,
/// each step after 30 calls) takes about a hundred runs to tier up here; the first runs take 5–10 times the steady
/// state. A compiler server or an IDE runs warm, so this suite warms up far longer than the configs' default of 3.
/// The operations take tens of milliseconds, so more measured iterations than the adapter suites fit the time.
/// </remarks>
[WarmupCount(120)]
[IterationCount(30)]
public class GeneratorBenchmarks
{
    /// <summary>Annotated fields in the model (a multiple of <see cref="SynthesizedModel.FieldsPerBlock"/>).</summary>
    [Params(50, 200)]
    public int Fields { get; set; }

    private static readonly CSharpParseOptions ParseOptions = new(LanguageVersion.Latest, DocumentationMode.Diagnose);

    // Single-threaded: the generator's steps run on one thread, so with the compiler's concurrent build (its default)
    // the ratio would compare parallelism on a shared machine rather than work.
    private static readonly CSharpCompilationOptions CompilationOptions =
        new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable, concurrentBuild: false)
            // As the SDK does: TorchSharp is built against an older System.Runtime than the .NET 10 reference assemblies.
            .WithSpecificDiagnosticOptions(new Dictionary<string, ReportDiagnostic>
            {
                ["CS1701"] = ReportDiagnostic.Suppress,
                ["CS1702"] = ReportDiagnostic.Suppress,
            });

    // Peft.Runtime is referenced so that the generated code binds against the real runtime and the module initializer
    // is emitted, as in a real application.
    private static readonly ImmutableArray<MetadataReference> References =
        Basic.Reference.Assemblies.Net100.References.All.Cast<MetadataReference>()
            .Concat(new[]
            {
                MetadataReference.CreateFromFile(typeof(TorchSharp.torch).Assembly.Location),
                MetadataReference.CreateFromFile(typeof(Peft.LoRAAttribute).Assembly.Location),
                MetadataReference.CreateFromFile(typeof(Peft.Runtime.IPeftModel).Assembly.Location),
            })
            .ToImmutableArray();

    private ImmutableArray<SyntaxTree> _modelTrees;

    // The unrelated file in two versions; each incremental invocation swaps the one in the compilation for the other.
    private SyntaxTree[] _unrelatedVersions = null!;
    private int _unrelatedVersion;

    private CSharpCompilation _current = null!;
    private GeneratorDriver _driver = null!;

    /// <summary>
    /// Parses the model, checks that the generator produces clean output for it and that an unrelated edit leaves
    /// every step cached (throws otherwise, so the smoke test catches a generator that stopped doing either), and
    /// primes the driver of the incremental benchmark with one run.
    /// </summary>
    [GlobalSetup]
    public void GlobalSetup()
    {
        var model = SynthesizedModel.Sources(Fields);
        var trees = model.Select(file => CSharpSyntaxTree.ParseText(file.Text, ParseOptions, file.Path, Encoding.UTF8)).ToList();
        _unrelatedVersions = new[]
        {
            CSharpSyntaxTree.ParseText(SynthesizedModel.Unrelated(0), ParseOptions, SynthesizedModel.UnrelatedPath, Encoding.UTF8),
            CSharpSyntaxTree.ParseText(SynthesizedModel.Unrelated(1), ParseOptions, SynthesizedModel.UnrelatedPath, Encoding.UTF8),
        };
        _modelTrees = trees.ToImmutableArray();

        GeneratorChecks.ModelIsValidWithoutGenerator(NewCompilation(), Fields);
        GeneratorChecks.ColdAndIncrementalRunsAreCorrect(NewCompilation(), CreateDriver(trackSteps: true), _unrelatedVersions, Fields);

        _unrelatedVersion = 0;
        _current = NewCompilation();
        _driver = CreateDriver(trackSteps: false).RunGenerators(_current);
    }

    /// <summary>The compiler alone: bind the model and collect its diagnostics (no generator).</summary>
    [Benchmark(Baseline = true, Description = "compile (bind + diagnostics), no generator")]
    public int CompileWithoutGenerator() => NewCompilation().GetDiagnostics().Length;

    /// <summary>A new driver runs the generator once: a command-line build.</summary>
    [Benchmark(Description = "generator, cold run")]
    public int GeneratorColdRun() =>
        CreateDriver(trackSteps: false).RunGenerators(NewCompilation()).GetRunResult().GeneratedTrees.Length;

    /// <summary>The primed driver re-runs after an edit to a file without PeftDsl attributes: the IDE's case.</summary>
    [Benchmark(Description = "generator, re-run after an unrelated edit")]
    public int GeneratorIncrementalRun()
    {
        // A real edit every time: the compilation gets the other version of the unrelated file, so the driver compares
        // against a state whose tree differs, and the new compilation has bound nothing yet.
        SyntaxTree previous = _unrelatedVersions[_unrelatedVersion];
        _unrelatedVersion ^= 1;
        _current = _current.ReplaceSyntaxTree(previous, _unrelatedVersions[_unrelatedVersion]);
        _driver = _driver.RunGenerators(_current);
        return _driver.GetRunResult().GeneratedTrees.Length;
    }

    private CSharpCompilation NewCompilation() =>
        CSharpCompilation.Create("PeftGeneratorBenchmark", _modelTrees.Add(_unrelatedVersions[0]), References, CompilationOptions);

    private static GeneratorDriver CreateDriver(bool trackSteps) =>
        CSharpGeneratorDriver.Create(
            new[] { new PeftGenerator().AsSourceGenerator() },
            parseOptions: ParseOptions,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: trackSteps));

    /// <summary>The checks <see cref="GlobalSetup"/> makes before anything is measured.</summary>
    private static class GeneratorChecks
    {
        /// <summary>
        /// Without the generator the model compiles, and PeftDsl's analyzers find nothing wrong with it: the
        /// benchmark measures a model a user could write, not the generator's handling of a broken one.
        /// </summary>
        public static void ModelIsValidWithoutGenerator(CSharpCompilation compilation, int fields)
        {
            Ensure(compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error), "the model does not compile", fields);

            var analyzers = typeof(PeftGenerator).Assembly.GetTypes()
                .Where(t => !t.IsAbstract && typeof(DiagnosticAnalyzer).IsAssignableFrom(t) && t.IsDefined(typeof(DiagnosticAnalyzerAttribute), false))
                .Select(t => (DiagnosticAnalyzer)Activator.CreateInstance(t)!)
                .ToImmutableArray();
            if (analyzers.IsEmpty) throw new InvalidOperationException("No PeftDsl analyzers found in the generator assembly.");
            var found = compilation.WithAnalyzers(analyzers).GetAnalyzerDiagnosticsAsync(CancellationToken.None).GetAwaiter().GetResult();
            Ensure(found, "PeftDsl's analyzers report the model", fields);
        }

        /// <summary>
        /// The cold run generates one file per annotated class plus the module initializer, and the output compiles
        /// without errors; after an unrelated edit every tracked step is cached or unchanged, every output cached,
        /// and the generated text is the same.
        /// </summary>
        public static void ColdAndIncrementalRunsAreCorrect(CSharpCompilation compilation, GeneratorDriver driver, SyntaxTree[] unrelatedVersions, int fields)
        {
            driver = driver.RunGeneratorsAndUpdateCompilation(compilation, out Compilation output, out ImmutableArray<Diagnostic> generatorDiagnostics);
            GeneratorRunResult cold = driver.GetRunResult().Results.Single();
            if (cold.Exception is not null) throw new InvalidOperationException("The generator threw.", cold.Exception);
            Ensure(generatorDiagnostics, "the generator reports diagnostics", fields);

            int expectedFiles = SynthesizedModel.AnnotatedClasses(fields) + 1;
            if (cold.GeneratedSources.Length != expectedFiles)
            {
                throw new InvalidOperationException(
                    $"The generator wrote {cold.GeneratedSources.Length} files for {fields} fields, expected {expectedFiles}: "
                    + string.Join(", ", cold.GeneratedSources.Select(s => s.HintName)));
            }

            Ensure(output.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error), "the generated code does not compile", fields);

            var edited = compilation.ReplaceSyntaxTree(unrelatedVersions[0], unrelatedVersions[1]);
            driver = driver.RunGenerators(edited);
            GeneratorRunResult incremental = driver.GetRunResult().Results.Single();

            // The generator's own steps (Roslyn tracks its internal ones too, and those see the edit by design).
            var missing = GeneratorStepNames.Where(name => !incremental.TrackedSteps.ContainsKey(name)).ToList();
            if (missing.Count > 0 || incremental.TrackedOutputSteps.Count == 0)
                throw new InvalidOperationException("The incremental run did not run the steps " + string.Join(", ", missing) + " or no output step.");
            var recomputed = GeneratorStepNames
                .SelectMany(name => incremental.TrackedSteps[name].SelectMany(run => run.Outputs.Select(o => (Step: name, o.Reason))))
                .Where(s => s.Reason is not (IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged))
                .Concat(incremental.TrackedOutputSteps
                    .SelectMany(step => step.Value.SelectMany(run => run.Outputs.Select(o => (Step: step.Key, o.Reason))))
                    .Where(s => s.Reason != IncrementalStepRunReason.Cached))
                .ToList();
            if (recomputed.Count > 0)
            {
                throw new InvalidOperationException(
                    "An unrelated edit recomputed generator steps: " + string.Join(", ", recomputed.Select(s => $"{s.Step}: {s.Reason}").Distinct()));
            }

            bool sameText = cold.GeneratedSources.Length == incremental.GeneratedSources.Length
                && cold.GeneratedSources.Zip(incremental.GeneratedSources)
                    .All(pair => pair.First.HintName == pair.Second.HintName && pair.First.SourceText.ContentEquals(pair.Second.SourceText));
            if (!sameText) throw new InvalidOperationException("The incremental run generated different files.");
        }

        /// <summary>
        /// The tracking names of the generator's pipeline steps, read from its <c>TrackingNames</c> constants (internal
        /// to the generator) so that a step added there is checked here too.
        /// </summary>
        private static readonly string[] GeneratorStepNames = ReadGeneratorStepNames();

        private static string[] ReadGeneratorStepNames()
        {
            var names = typeof(PeftGenerator).Assembly.GetType("Peft.Generators.TrackingNames", throwOnError: true)!
                .GetFields(BindingFlags.Public | BindingFlags.Static)
                .Where(f => f.IsLiteral && f.FieldType == typeof(string))
                .Select(f => (string)f.GetRawConstantValue()!)
                .ToArray();
            if (names.Length == 0) throw new InvalidOperationException("The generator declares no tracking names.");
            return names;
        }

        private static void Ensure(IEnumerable<Diagnostic> diagnostics, string problem, int fields)
        {
            var list = diagnostics.ToList();
            if (list.Count > 0)
            {
                throw new InvalidOperationException(
                    $"{problem} ({fields} fields):\n" + string.Join("\n", list.Take(20).Select(d => d.ToString())));
            }
        }
    }
}

/// <summary>
/// The benchmarked model: blocks of <see cref="FieldsPerBlock"/> annotated <c>Linear</c> fields with the DSL's
/// adapter methods mixed as a real model mixes them, a frozen field in each, a <c>[MergeWith]</c> on each block,
/// and a <c>[PeftModel]</c> root holding the blocks, one file per class, plus one file without PeftDsl attributes
/// that the incremental benchmark edits.
/// </summary>
public static class SynthesizedModel
{
    /// <summary>Annotated fields per block class.</summary>
    public const int FieldsPerBlock = 10;

    /// <summary>The path of the file without PeftDsl attributes.</summary>
    public const string UnrelatedPath = "Data/Batches.cs";

    private const string Usings = """
        using Peft;
        using TorchSharp;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        """;

    /// <summary>Block classes plus the root: the classes the generator writes a file for.</summary>
    public static int AnnotatedClasses(int fields) => Blocks(fields) + 1;

    /// <summary>One file per block class, then the root.</summary>
    public static IReadOnlyList<(string Path, string Text)> Sources(int fields)
    {
        int blocks = Blocks(fields);
        var files = new List<(string, string)>(blocks + 1);
        for (int i = 0; i < blocks; i++) files.Add(($"Model/Block{i}.cs", Block(i)));
        files.Add(("Model/Transformer.cs", Root(blocks)));
        return files;
    }

    /// <summary>The file without PeftDsl attributes, in the version <paramref name="version"/> (each differs from the last).</summary>
    public static string Unrelated(int version) => $$"""
        namespace Demo.Data
        {
            /// <summary>Batching helpers; nothing here concerns the generator.</summary>
            public static class Batches
            {
                /// <summary>The batch size.</summary>
                public const int Size = {{32 + version}};

                /// <summary>Batches in an epoch of <paramref name="examples"/> examples.</summary>
                public static int Count(int examples) => (examples + Size - 1) / Size;
            }
        }
        """;

    private static int Blocks(int fields)
    {
        if (fields <= 0 || fields % FieldsPerBlock != 0)
            throw new ArgumentOutOfRangeException(nameof(fields), fields, $"a positive multiple of {FieldsPerBlock}");
        return fields / FieldsPerBlock;
    }

    // Adapter names are distinct per method: PEFT's config holds one method (and one Bone variant) per adapter name.
    private static string Block(int index) => Usings + $$"""
        namespace Demo.Model
        {
            /// <summary>Transformer block {{index}}.</summary>
            [MergeWith("math", "code", Method = MergeMethod.Ties, Weights = new[] { 0.5, 0.5 }, Density = 0.5, Name = "math_code")]
            public sealed partial class Block{{index}} : Module<Tensor, Tensor>
            {
                private const int D = 512;

                [LoRA(8, Alpha = 16, Dropout = 0.05)]
                private Module<Tensor, Tensor> q = Linear(D, D);

                [LoRA(8, Alpha = 16, Dropout = 0.05)]
                private Module<Tensor, Tensor> k = Linear(D, D, hasBias: false);

                [DoRA(8, Alpha = 16, Name = "dora")]
                private Module<Tensor, Tensor> v = Linear(D, D);

                [Bone(64, Name = "bone")]
                private Module<Tensor, Tensor> o = Linear(D, D);

                [LoRA(8, Name = "math")]
                [LoRA(16, Alpha = 32, Name = "code")]
                private Module<Tensor, Tensor> up = Linear(D, 4 * D);

                [LoHa(8, Alpha = 16, Name = "loha")]
                private Module<Tensor, Tensor> gate = Linear(D, 4 * D);

                [LoKr(8, Alpha = 16, Name = "lokr")]
                private Module<Tensor, Tensor> down = Linear(4 * D, D);

                [IA3(FeedForward = true, Name = "ia3")]
                private Module<Tensor, Tensor> mlp = Linear(4 * D, D);

                [Bone(64, Variant = BoneVariant.Bat, Name = "bat")]
                private Module<Tensor, Tensor> mix = Linear(D, D);

                [Trainable]
                private Module<Tensor, Tensor> norm = Linear(D, D);

                private Module<Tensor, Tensor> frozen = Linear(D, D);

                /// <summary>Creates the block.</summary>
                public Block{{index}}() : base(nameof(Block{{index}})) => RegisterComponents();

                /// <inheritdoc/>
                public override Tensor forward(Tensor x)
                {
                    Tensor attention = o.forward(q.forward(x) + k.forward(x) + v.forward(x));
                    Tensor hidden = up.forward(attention) * gate.forward(attention);
                    return norm.forward(mix.forward(down.forward(hidden) + mlp.forward(hidden)) + frozen.forward(x));
                }
            }
        }
        """;

    private static string Root(int blocks)
    {
        var fields = new StringBuilder();
        var chain = new StringBuilder("x");
        for (int i = 0; i < blocks; i++)
        {
            if (i > 0) fields.Append('\n');
            fields.Append(CultureInfo.InvariantCulture, $"        private Block{i} block{i} = new Block{i}();");
            chain.Insert(0, $"block{i}.forward(").Append(')');
        }

        return Usings + $$"""
            namespace Demo.Model
            {
                /// <summary>The model: {{blocks}} blocks. Its own fields carry no attribute, so the annotated fields are the blocks' alone.</summary>
                [PeftModel]
                public sealed partial class Transformer : Module<Tensor, Tensor>
                {
            {{fields}}

                    /// <summary>Creates the model.</summary>
                    public Transformer() : base(nameof(Transformer)) => RegisterComponents();

                    /// <inheritdoc/>
                    public override Tensor forward(Tensor x) => {{chain}};
                }
            }
            """;
    }
}
