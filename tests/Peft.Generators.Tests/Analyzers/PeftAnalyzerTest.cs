using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Testing;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Testing;
using Peft.Generators.Diagnostics;

namespace Peft.Generators.Tests.Analyzers
{
    /// <summary>
    /// Microsoft.CodeAnalysis.Testing with all four PeftDsl analyzers and the given code fixes, over .NET 10 reference
    /// assemblies, TorchSharp, Peft.Dsl and Peft.Runtime, with nullable on (as the SDK's templates have it).
    /// </summary>
    internal sealed class PeftAnalyzerTest : CSharpCodeFixTest<ClassShapeAnalyzer, EmptyCodeFixProvider, DefaultVerifier>
    {
        public static ImmutableArray<DiagnosticAnalyzer> Analyzers { get; } = ImmutableArray.Create<DiagnosticAnalyzer>(
            new ClassShapeAnalyzer(), new AdapterMemberAnalyzer(), new TargetsAnalyzer(), new MergeWithAnalyzer());

        private readonly CodeFixProvider[] _fixes;

        public PeftAnalyzerTest(params CodeFixProvider[] fixes)
        {
            _fixes = fixes;
            // No reference-assembly package is downloaded: Basic.Reference.Assemblies.Net100 supplies .NET 10.
            ReferenceAssemblies = new ReferenceAssemblies("net10.0");
            TestState.AdditionalReferences.AddRange(Harness.References);
            SolutionTransforms.Add((solution, projectId) =>
            {
                Project project = solution.GetProject(projectId)!;
                var options = ((CSharpCompilationOptions)project.CompilationOptions!)
                    .WithNullableContextOptions(NullableContextOptions.Enable)
                    .WithSpecificDiagnosticOptions(new Dictionary<string, ReportDiagnostic> { ["CS1701"] = ReportDiagnostic.Suppress, ["CS1702"] = ReportDiagnostic.Suppress });
                return solution.WithProjectCompilationOptions(projectId, options)
                    .WithProjectParseOptions(projectId, new CSharpParseOptions(LanguageVersion.Latest));
            });
        }

        protected override IEnumerable<DiagnosticAnalyzer> GetDiagnosticAnalyzers() => Analyzers;

        protected override IEnumerable<CodeFixProvider> GetCodeFixProviders() => _fixes;

        /// <summary>Runs the analyzers on <paramref name="source"/> (the usual usings prepended) and expects exactly the marked diagnostics.</summary>
        public static Task Expect(string source, params DiagnosticResult[] expected)
        {
            var test = new PeftAnalyzerTest { TestCode = Harness.Usings + source };
            test.ExpectedDiagnostics.AddRange(expected);
            return test.RunAsync();
        }

        /// <summary>Applies <paramref name="fix"/> to <paramref name="source"/> and expects <paramref name="fixedSource"/>.</summary>
        public static Task ExpectFix(CodeFixProvider fix, string source, string fixedSource, int? codeActionIndex = null, params DiagnosticResult[] expected)
        {
            var test = new PeftAnalyzerTest(fix) { TestCode = Harness.Usings + source, FixedCode = Harness.Usings + fixedSource, CodeActionIndex = codeActionIndex };
            test.ExpectedDiagnostics.AddRange(expected);
            return test.RunAsync();
        }

        /// <summary>A diagnostic of <paramref name="id"/> at markup location <paramref name="index"/> (<c>{|#0:...|}</c>).</summary>
        public static DiagnosticResult At(string id, int index, DiagnosticSeverity severity = DiagnosticSeverity.Error) =>
            new DiagnosticResult(id, severity).WithLocation(index);

        /// <summary>All PEFT diagnostics the analyzers report on the sources (no framework), for message checks.</summary>
        public static Task<ImmutableArray<Diagnostic>> Run(params string[] sources) =>
            Analyze(Harness.Compile(sources.Select(s => Harness.Usings + s)));

        /// <summary>The same on the compilation as the compiler analyzes it: after the generator has added its files.</summary>
        public static Task<ImmutableArray<Diagnostic>> RunAfterGenerator(params string[] sources)
        {
            var (_, output) = Harness.Run(Harness.Compile(sources.Select(s => Harness.Usings + s)));
            return Analyze(output);
        }

        private static async Task<ImmutableArray<Diagnostic>> Analyze(Compilation compilation)
        {
            var exceptions = new List<string>();
            var options = new CompilationWithAnalyzersOptions(
                new AnalyzerOptions(ImmutableArray<AdditionalText>.Empty),
                onAnalyzerException: (exception, analyzer, _) => { lock (exceptions) exceptions.Add(analyzer + ": " + exception); },
                concurrentAnalysis: false,
                logAnalyzerExecutionTime: false);
            ImmutableArray<Diagnostic> diagnostics = await compilation.WithAnalyzers(Analyzers, options).GetAllDiagnosticsAsync();
            Xunit.Assert.True(exceptions.Count == 0, string.Join("\n", exceptions));
            Xunit.Assert.DoesNotContain(diagnostics, d => d.Id == "AD0001");
            return diagnostics.Where(d => d.Id.StartsWith("PEFT", System.StringComparison.Ordinal)).ToImmutableArray();
        }
    }
}
