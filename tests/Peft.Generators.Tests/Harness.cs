using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Peft.Generators;
using Xunit;

namespace Peft.Generators.Tests
{
    /// <summary>Compiles test sources against real references and runs the generator on them.</summary>
    internal static class Harness
    {
        public const string Usings = """
            using Peft;
            using TorchSharp;
            using static TorchSharp.torch;
            using static TorchSharp.torch.nn;

            """;

        public static readonly CSharpParseOptions ParseOptions =
            new CSharpParseOptions(LanguageVersion.Latest, DocumentationMode.Diagnose);

        /// <summary>.NET 10 reference assemblies, TorchSharp, Peft.Dsl and Peft.Runtime.</summary>
        public static readonly ImmutableArray<MetadataReference> References =
            Basic.Reference.Assemblies.Net100.References.All.Cast<MetadataReference>()
                .Concat(new[]
                {
                    MetadataReference.CreateFromFile(typeof(TorchSharp.torch).Assembly.Location),
                    MetadataReference.CreateFromFile(typeof(Peft.LoRAAttribute).Assembly.Location),
                    MetadataReference.CreateFromFile(typeof(Peft.Runtime.IPeftModel).Assembly.Location),
                })
                .ToImmutableArray();

        /// <summary>The same without Peft.Runtime (no module initializer then).</summary>
        public static readonly ImmutableArray<MetadataReference> ReferencesWithoutRuntime =
            References.RemoveAt(References.Length - 1);

        public static CSharpCompilation Compile(IEnumerable<string> sources, ImmutableArray<MetadataReference>? references = null)
        {
            var trees = sources.Select((source, i) => CSharpSyntaxTree.ParseText(source, ParseOptions, path: $"Input{i}.cs")).ToList();
            return CSharpCompilation.Create(
                "PeftGeneratorTest",
                trees,
                references ?? References,
                new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable)
                    // As the SDK does: TorchSharp is built against System.Runtime 8.0.
                    .WithSpecificDiagnosticOptions(new Dictionary<string, ReportDiagnostic> { ["CS1701"] = ReportDiagnostic.Suppress, ["CS1702"] = ReportDiagnostic.Suppress }));
        }

        public static CSharpCompilation Compile(params string[] sources) => Compile((IEnumerable<string>)sources);

        public static GeneratorDriver CreateDriver() =>
            CSharpGeneratorDriver.Create(
                new[] { new PeftGenerator().AsSourceGenerator() },
                parseOptions: ParseOptions,
                driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));

        public static (GeneratorRunResult Result, Compilation Output) Run(Compilation compilation)
        {
            GeneratorDriver driver = CreateDriver().RunGeneratorsAndUpdateCompilation(compilation, out Compilation output, out ImmutableArray<Diagnostic> diagnostics);
            GeneratorRunResult result = Assert.Single(driver.GetRunResult().Results);
            Assert.Null(result.Exception);
            Assert.DoesNotContain(diagnostics, d => d.Id is "CS8784" or "CS8785");
            return (result, output);
        }

        public static string Generated(GeneratorRunResult result, string hintName)
        {
            GeneratedSourceResult source = Assert.Single(result.GeneratedSources, s => s.HintName == hintName);
            return source.SourceText.ToString();
        }

        /// <summary>No errors anywhere, and no warning at all inside generated files (documentation and nullable included).</summary>
        /// <remarks>
        /// Generated files open with <c>#pragma warning disable</c>, as users get them; the check reads them without it,
        /// so a warning the generator causes still fails the test.
        /// </remarks>
        public static void AssertCompilesCleanly(Compilation output, GeneratorRunResult result)
        {
            var (unsuppressed, generatedTrees) = WithoutWarningPragma(output, result);
            var problems = unsuppressed.GetDiagnostics()
                .Where(d => d.Severity == DiagnosticSeverity.Error
                    || (d.Severity == DiagnosticSeverity.Warning && d.Location.SourceTree is { } tree && generatedTrees.Contains(tree)))
                .ToList();
            Assert.True(problems.Count == 0, "The generated code does not compile cleanly:\n" + string.Join("\n", problems.Select(d => d.ToString())));
        }

        /// <summary>Errors and warnings located in generated files.</summary>
        public static List<Diagnostic> ProblemsInGenerated(Compilation output, GeneratorRunResult result)
        {
            var (unsuppressed, generatedTrees) = WithoutWarningPragma(output, result);
            return unsuppressed.GetDiagnostics()
                .Where(d => d.Severity >= DiagnosticSeverity.Warning && d.Location.SourceTree is { } tree && generatedTrees.Contains(tree))
                .ToList();
        }

        /// <summary>The generated files with their <c>#pragma warning disable</c> line taken out, and those files' trees.</summary>
        private static (Compilation Compilation, HashSet<SyntaxTree> Generated) WithoutWarningPragma(Compilation output, GeneratorRunResult result)
        {
            var generated = new HashSet<SyntaxTree>();
            foreach (GeneratedSourceResult source in result.GeneratedSources)
            {
                SyntaxTree tree = source.SyntaxTree;
                string text = source.SourceText.ToString();
                Assert.Contains("\n#pragma warning disable\n", text);
                SyntaxTree plain = CSharpSyntaxTree.ParseText(text.Replace("\n#pragma warning disable\n", "\n"), (CSharpParseOptions)tree.Options, tree.FilePath);
                output = output.ReplaceSyntaxTree(tree, plain);
                generated.Add(plain);
            }

            return (output, generated);
        }

        public static string Lf(string text) => text.Replace("\r\n", "\n");
    }
}
