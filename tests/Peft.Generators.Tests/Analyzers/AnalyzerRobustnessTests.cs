using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Xunit;

namespace Peft.Generators.Tests.Analyzers
{
    /// <summary>
    /// Malformed and half-typed sources, as an editor sees them keystroke by keystroke: the generator and the analyzers
    /// together never throw (no CS8784/CS8785, no AD0001, no exception handed to the analyzer host).
    /// </summary>
    public class AnalyzerRobustnessTests
    {
        private const string M = "Module<Tensor, Tensor>";
        private const string Tail = "public A() : base(\"a\") => RegisterComponents(); public override Tensor forward(Tensor x) => x;";

        /// <summary>Cases beyond the generator's own robustness cases: merges, targets, shapes and constructors gone wrong.</summary>
        public static readonly Dictionary<string, string> ExtraCases = new()
        {
            ["MergeWith without arguments"] = $"partial class A : {M} {{ [LoRA(4)][MergeWith] {M} q = Linear(4, 4); {Tail} }}",
            ["MergeWith null, odd method and NaN density"] = $"[MergeWith(null, Method = (MergeMethod)99, Density = double.NaN, Rank = int.MinValue)] partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); {Tail} }}",
            ["MergeWith with a null name in the list"] = $"[MergeWith(\"default\", null, Name = null, Weights = new double[] {{ }})] partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); {Tail} }}",
            ["MergeWith half-typed"] = $"[MergeWith(\"a\", Weights = new[] {{ 1.0, ])] partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); {Tail} }}",
            ["MergeWith with an array argument"] = $"[MergeWith(new[] {{ \"default\", \"x\" }}, Method = MergeMethod.Cat, Weights = new[] {{ double.PositiveInfinity }})] partial class A : {M} {{ [Bone(2)] {M} q = Linear(4, 4); {Tail} }}",
            ["MergeWith on a method"] = $"partial class A : {M} {{ [MergeWith(\"a\")] void M() {{ }} {Tail} }}",
            ["MergeWith over cyclic components"] = $"[MergeWith(\"x\")] partial class A : {M} {{ B? b; [LoRA(4)] {M} q = Linear(4, 4); {Tail} }} partial class B : {M} {{ A? a = new A(); [LoRA(4, Name = \"x\")] {M} q = Linear(4, 4); public B() : base(\"b\") => RegisterComponents(); public override Tensor forward(Tensor x) => x; }}",
            ["Targets null and null elements"] = $"[LoRA(4, Targets = null)][Bone(2, Targets = new string[] {{ null!, \"\" }})] partial class A : {M} {{ {M} q = Linear(4, 4); {Tail} }}",
            ["Targets half-typed"] = $"[LoRA(4, Targets = new[] {{ nameof(q), nameof( }})] partial class A : {M} {{ {M} q = Linear(4, 4); {Tail} }}",
            ["Targets naming a method and a nested type"] = $"[LoRA(4, Targets = new[] {{ nameof(forward), nameof(Inner) }})] partial class A : {M} {{ class Inner {{ }} {Tail} }}",
            ["Bone with an undefined variant"] = $"partial class A : {M} {{ [Bone(64, Variant = (BoneVariant)7)] {M} q = Linear(100, 128); {Tail} }}",
            ["Bone on huge, zero and negative shapes"] = $"partial class A : {M} {{ [Bone(int.MaxValue)] {M} a = Linear(long.MaxValue, 3); [Bone(3, Variant = BoneVariant.Bat)] {M} b = Linear(0, 0); [Bone(3)] {M} c = Linear(-5, 8); {Tail} }}",
            ["Hydra missing an argument"] = $"partial class A : {M} {{ [Hydra(1)] {M} q = Linear(4, 4); [Hydra(1, \"x\")] {M} k = Linear(4, 4); {Tail} }}",
            ["LoRA with rank from a non-constant"] = $"partial class A : {M} {{ static int r = 4; [LoRA(r)] {M} q = Linear(4, 4); {Tail} }}",
            ["dropout of the wrong type"] = $"partial class A : {M} {{ [LoRA(4, Dropout = \"high\")] {M} q = Linear(4, 4); {Tail} }}",
            ["constructor calls itself"] = $"partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public A() : this() {{ }} public override Tensor forward(Tensor x) => x; }}",
            ["constructors call each other"] = $"partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public A() : this(1) {{ }} public A(int n) : this() {{ }} public override Tensor forward(Tensor x) => x; }}",
            ["circular base classes"] = $"partial class A : B {{ [LoRA(4)] {M} q = Linear(4, 4); }} partial class B : A {{ }}",
            ["helper that recurses"] = $"partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ Init(); }} void Init() => Init(); public override Tensor forward(Tensor x) => x; }}",
            ["layer from a conditional and a null"] = $"partial class A : {M} {{ [LoRA(4)] {M} q = true ? Linear(4, 4) : Conv2d(1, 1, 1); [LoRA(4)] {M}? k = null; {Tail} }}",
            ["layer of an error type"] = $"partial class A : {M} {{ [LoRA(4)] {M} q = new Missing(); [LoRA(4)] {M} k = Lineer(4, 4); {Tail} }}",
            ["generic class with a type-parameter layer"] = $"partial class A<T> : {M} where T : {M}, new() {{ [LoRA(4)] {M} q = new T(); [MergeWith(\"default\")] {M} k = Linear(4, 4); public A() : base(\"a\") => RegisterComponents(); public override Tensor forward(Tensor x) => x; }}",
            ["record with adapter properties"] = $"partial record R([property: LoRA(0)] {M} Q, [property: Bone(3)] {M} V);",
            ["struct with adapters"] = $"partial struct S {{ [LoRA(0, Dropout = 2)] {M} q; [MergeWith(\"zz\")] {M} k; }}",
            ["nested classes"] = $"partial class Outer {{ partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; class B : {M} {{ [Bone(3)] {M} v = Linear(4, 4); public B() : base(\"b\") {{ }} public override Tensor forward(Tensor x) => x; }} }} }}",
            ["other method families half-typed"] = $"partial class A : {M} {{ [VeRA(0)] {M} a = Linear(4, 4); [LoHa(9, RankDropout = 1, ModuleDropout = -1)] {M} b = Linear(4, 4); [LoKr(] {M} c = Linear(4, 4); [IA3(Name = \"\")] {M} d = Linear(4, 4); [DoRA(4, Dropout = double.NaN)] {M} e = Linear(4, 4); {Tail} }}",
        };

        public static IEnumerable<object[]> CaseNames =>
            RobustnessTests.Cases.Keys.Select(k => new object[] { "generator: " + k })
                .Concat(ExtraCases.Keys.Select(k => new object[] { k }));

        [Fact]
        public void There_are_many_cases() => Assert.True(RobustnessTests.Cases.Count + ExtraCases.Count >= 80);

        [Theory]
        [MemberData(nameof(CaseNames))]
        public async Task Generator_and_analyzers_never_throw(string name)
        {
            string source = name.StartsWith("generator: ", System.StringComparison.Ordinal)
                ? RobustnessTests.Cases[name.Substring("generator: ".Length)].Source
                : ExtraCases[name];
            CSharpCompilation compilation = Harness.Compile(new[] { Harness.Usings + source });

            // The generator first, as the compiler runs it; then the analyzers over the result, generated files included.
            GeneratorDriver driver = Harness.CreateDriver().RunGeneratorsAndUpdateCompilation(compilation, out Compilation output, out ImmutableArray<Diagnostic> generatorDiagnostics);
            Assert.Null(driver.GetRunResult().Results.Single().Exception);
            Assert.DoesNotContain(generatorDiagnostics, d => d.Id is "CS8784" or "CS8785");

            var exceptions = new List<string>();
            var options = new CompilationWithAnalyzersOptions(
                new AnalyzerOptions(ImmutableArray<AdditionalText>.Empty),
                onAnalyzerException: (exception, analyzer, _) => { lock (exceptions) exceptions.Add(analyzer + ": " + exception); },
                concurrentAnalysis: true,
                logAnalyzerExecutionTime: false);
            ImmutableArray<Diagnostic> diagnostics = await output.WithAnalyzers(PeftAnalyzerTest.Analyzers, options).GetAllDiagnosticsAsync();
            Assert.True(exceptions.Count == 0, string.Join("\n", exceptions));
            Assert.DoesNotContain(diagnostics, d => d.Id == "AD0001");
        }
    }
}
