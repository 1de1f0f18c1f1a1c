using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Peft.Generators.Parse;
using Xunit;

namespace Peft.Generators.Tests
{
    /// <summary>
    /// Malformed and half-typed code: the generator never throws, whatever it writes parses, and nothing it writes
    /// adds a compile error or warning of its own. Inputs marked "no file" must get no class file at all.
    /// </summary>
    public class RobustnessTests
    {
        private const string M = "Module<Tensor, Tensor>";

        public static readonly Dictionary<string, (string Source, bool ExpectsClassFile)> Cases = new()
        {
            ["missing ctor argument"] = ($"partial class A : {M} {{ [LoRA] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["wrong argument type"] = ($"partial class A : {M} {{ [LoRA(\"eight\")] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["double rank"] = ($"partial class A : {M} {{ [LoRA(4.5)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["half-typed named argument"] = ($"partial class A : {M} {{ [LoRA(4, Alpha = )] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["unterminated attribute"] = ($"partial class A : {M} {{ [LoRA( {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", false),
            ["unterminated attribute at end of file"] = ($"partial class A : {M} {{ [LoRA(4, Alpha = 1", false),
            ["attribute on a method"] = ($"partial class A : {M} {{ [LoRA(4)] void M() {{ }} public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", false),
            ["attribute on a parameter and a local function"] = ($"partial class A : {M} {{ void M([LoRA(4)] int p) {{ [LoRA(4)] void L() {{ }} }} public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", false),
            ["attribute on a struct"] = ($"[LoRA(4)] partial struct S {{ [LoRA(4)] {M} q; }}", false),
            ["attribute on a record"] = ($"[PeftModel] partial record R([property: LoRA(4)] {M} Q);", false),
            ["attribute on an interface"] = ($"[PeftModel] partial interface I {{ [LoRA(4)] {M} Q {{ get; set; }} }}", false),
            ["attribute on an enum member"] = ("enum E { [LoRA(4)] One }", false),
            ["non-partial class"] = ($"class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", false),
            ["non-partial containing type"] = ($"class Outer {{ public partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }} }}", false),
            ["partial in one part only"] = ($"partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }} class A {{ }}", false),
            ["readonly field"] = ($"partial class A : {M} {{ [LoRA(4)] readonly {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["field typed Linear"] = ($"partial class A : {M} {{ [LoRA(4)] TorchSharp.Modules.Linear q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["field typed Module<Tensor, Tensor, Tensor>"] = ($"partial class A : {M} {{ [LoRA(4)] Module<Tensor, Tensor, Tensor>? q; public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["static field"] = ($"partial class A : {M} {{ [LoRA(4)] static {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["const field"] = ($"partial class A : {M} {{ [LoRA(4)] const int q = 3; public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["property without setter"] = ($"partial class A : {M} {{ [LoRA(4)] {M} Q {{ get; }} = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["init-only property"] = ($"partial class A : {M} {{ [LoRA(4)] {M} Q {{ get; init; }} = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["write-only property"] = ($"partial class A : {M} {{ {M}? q; [LoRA(4)] {M} Q {{ set => q = value; }} public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["indexer"] = ($"partial class A : {M} {{ [LoRA(4)] {M} this[int i] {{ get => null!; set {{ }} }} public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", false),
            ["duplicate adapter names"] = ($"partial class A : {M} {{ [LoRA(4)][LoRA(8)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["duplicate PeftModel"] = ($"[PeftModel][PeftModel] partial class A : {M} {{ public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["duplicate Trainable"] = ($"partial class A : {M} {{ [Trainable, Trainable] {M} head = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["null adapter name"] = ($"partial class A : {M} {{ [LoRA(4, Name = null)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["duplicate named argument"] = ($"partial class A : {M} {{ [LoRA(4, Alpha = 8, Alpha = 9)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["Targets on a member and unknown targets on the class"] = ($"[LoRA(2, Targets = new[] {{ \"nope\", null }})] partial class A : {M} {{ [LoRA(4, Targets = new[] {{ \"q\" }})] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["class-level adapter without Targets"] = ($"[LoRA(2)] partial class A : {M} {{ {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["PeftModel only"] = ($"[PeftModel] public partial class A : {M} {{ public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["Trainable on an int"] = ($"partial class A : {M} {{ [Trainable] int count; public A() : base(\"a\") {{ count = 1; }} public override Tensor forward(Tensor x) => x; }}", true),
            ["class not a module"] = ($"partial class A {{ [LoRA(4)] {M} q = Linear(4, 4); }}", false),
            ["misspelt base type"] = ($"partial class A : Modul<Tensor, Tensor> {{ [LoRA(4)] {M} q = Linear(4, 4); }}", false),
            ["own RegisterComponents"] = ($"partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} protected override void RegisterComponents() {{ }} public override Tensor forward(Tensor x) => x; }}", false),
            ["own PeftInfo"] = ($"partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public static int PeftInfo; public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", false),
            ["own MergeAdapters on a PeftModel"] = ($"[PeftModel] partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public void MergeAdapters() {{ }} public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", false),
            ["sealed RegisterComponents in base"] = ($"abstract class B : {M} {{ protected B() : base(\"b\") {{ }} protected sealed override void RegisterComponents() {{ }} }} partial class A : B {{ [LoRA(4)] {M} q = Linear(4, 4); public override Tensor forward(Tensor x) => x; }}", false),
            ["syntax error in initializer"] = ($"partial class A : {M} {{ [LoRA(4)] {M} q = Linear(512, ; public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["file-local class"] = ($"file partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", false),
            ["static class"] = ($"static partial class A {{ [LoRA(4)] static {M} q = Linear(4, 4); }}", false),
            ["keyword-named members and class"] = ($"public partial class @class : {M} {{ [LoRA(4)] {M} @void = Linear(4, 4); [Trainable] public {M} @event = Linear(4, 4); public @class() : base(\"c\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["enum value with no member and odd doubles"] = ($"partial class A : {M} {{ [LoRA(int.MaxValue, Init = (LoRAInit)42, Alpha = double.NaN, Dropout = 1e-300)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["string with escapes in name"] = ($"[PeftModel] partial class A : {M} {{ [LoRA(4, Name = \"a\\\"b\\\\c\\n\")] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["empty ComponentName"] = ($"partial class A : {M} {{ [LoRA(4)][TorchSharp.Utils.ComponentName(Name = \"\")] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["nested in generic, in struct and record"] = ($"partial struct S<T> {{ partial record R {{ public partial class A<U> : {M} where U : class {{ [LoRA(4)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }} }} }}", true),
            ["nested in a covariant interface"] = ($"partial interface IHost<out T> {{ public partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }} }}", true),
            ["derived from an annotated class"] = ($"[PeftModel] public partial class B : {M} {{ [LoRA(4)] protected {M} q = Linear(4, 4); public B() : base(\"b\") {{ }} public override Tensor forward(Tensor x) => x; }} [PeftModel] public partial class A : B {{ [LoRA(2)] {M} k = Linear(4, 4); [Trainable] {M} head = Linear(4, 2); }}", true),
            ["nested class derived from its annotated container"] = ($"public partial class B : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public B() : base(\"b\") {{ }} public override Tensor forward(Tensor x) => x; public partial class A : B {{ [LoRA(2)] {M} k = Linear(4, 4); }} }}", true),
            ["components that refer to each other"] = ($"public partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); B? b; public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }} public partial class B : {M} {{ [Trainable] A? a; TorchSharp.Modules.ModuleList<A>? list; A[]? array; public B() : base(\"b\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["private component in another class"] = ($"public partial class Outer {{ private partial class Hidden : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public Hidden() : base(\"h\") {{ }} public override Tensor forward(Tensor x) => x; }} }} public partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["attributes from another namespace with the same name"] = ($"namespace Fake {{ class LoRAAttribute : System.Attribute {{ public LoRAAttribute(int r) {{ }} }} [Fake.LoRA(4)] partial class A : {M} {{ public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }} }}", false),
            ["field list with several variables"] = ($"partial class A : {M} {{ [LoRA(4)] {M} q = Linear(4, 4), k = Linear(4, 8), v; public A() : base(\"a\") {{ v = Linear(2, 2); }} public override Tensor forward(Tensor x) => x; }}", true),
            ["conflicting constructor shapes"] = ($"partial class A : {M} {{ [LoRA(4)] {M} q; public A() : base(\"a\") {{ q = Linear(4, 4); }} public A(int n) : base(\"a\") {{ q = Linear(n, 4); }} public override Tensor forward(Tensor x) => x; }}", true),
            ["abstract property"] = ($"abstract partial class A : {M} {{ [LoRA(4)] public abstract {M} Q {{ get; set; }} protected A() : base(\"a\") {{ }} }}", true),
            ["attribute class missing entirely"] = ($"partial class A : {M} {{ [NoSuchAdapter(4)] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", false),
            ["MergeWith malformed in every way"] = ($"[PeftModel] [MergeWith] [MergeWith(null)] [MergeWith(\"a\", null)] [MergeWith(\"a\", \"a\", Name = \"x1\")] [MergeWith(\"a\", Name = null)] [MergeWith(\"a\", Name = \"\")] [MergeWith(\"a\", Weights = null, Name = \"x2\")] [MergeWith(\"a\", Weights = new double[0], Name = \"x3\")] [MergeWith(\"a\", Weights = new[] {{ double.NaN }}, Name = \"x4\")] [MergeWith(\"a\", Density = 0, Name = \"x5\")] [MergeWith(\"a\", Density = double.NaN, Name = \"x6\")] [MergeWith(\"a\", Rank = -1, Name = \"x7\")] [MergeWith(\"a\", Method = (MergeMethod)42, Name = \"x8\")] [MergeWith(\"a\", Name = \"__base__\")] [MergeWith(\"a\", Name = \"a\")] [MergeWith(\"a\", Name = \"line\\nbreak </summary> & <c>\")] [MergeWith(\"a\", Name = \"_-_\")] [MergeWith(\"a\", Name = \"and_unload\")] [MergeWith(\"a\", Name = \"x8\")] [MergeWith(\"a\", Name = \"X8\")] partial class A : {M} {{ [LoRA(4, Name = \"a\")] [MergeWith(\"b\", Name = \"field\")] [MergeWith] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["MergeWith whose method the class declares or that names the class"] = ($"[PeftModel] [MergeWith(\"a\", Name = \"mine\")] [MergeWith(\"a\", Name = \"d\")] partial class MergeD : {M} {{ [LoRA(4, Name = \"a\")] {M} q = Linear(4, 4); public void MergeMine() {{ }} public MergeD() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", true),
            ["MergeWith on a class without adapters and on a plain field"] = ($"[MergeWith(\"a\", Name = \"x\")] partial class A : {M} {{ [MergeWith(\"a\")] {M} q = Linear(4, 4); public A() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }}", false),
            ["MergeWith on a derived class hiding its base's merge"] = ($"public partial class B : {M} {{ [LoRA(4, Name = \"a\")] [MergeWith(\"a\", Name = \"x\")] protected {M} q = Linear(4, 4); public B() : base(\"b\") {{ }} public override Tensor forward(Tensor x) => x; }} public partial class A : B {{ [LoRA(2, Name = \"a\")] [MergeWith(\"a\", Name = \"x\")] {M} k = Linear(4, 4); }}", true),
            ["empty file"] = ("", false),
            ["only garbage"] = ("[[[LoRA(4)]]] partial class : : {", false),
        };

        public static IEnumerable<object[]> CaseNames => Cases.Keys.Select(k => new object[] { k });

        [Fact]
        public void There_are_at_least_thirty_cases() => Assert.True(Cases.Count >= 30);

        [Fact]
        public void An_exception_in_the_parser_is_reported_as_PEFT999_not_swallowed()
        {
            // The hook runs inside the parser's try block, as a bug of the parser's own would.
            ClassParser.TestHook.Value = name => throw new InvalidOperationException("boom in " + name);
            try
            {
                var (result, output) = Harness.Run(Harness.Compile(Sources.Block, Sources.Attention)); // asserts the generator did not throw

                Diagnostic error = Assert.Single(result.Diagnostics, d => d.Id == "PEFT999" && d.GetMessage(CultureInfo.InvariantCulture).Contains("Demo.Block"));
                Assert.Equal(DiagnosticSeverity.Error, error.Severity);
                string message = error.GetMessage(CultureInfo.InvariantCulture);
                Assert.Contains("System.InvalidOperationException: boom in Block", message);
                Assert.Contains("(at Peft.Generators.Tests.RobustnessTests", message); // the first stack frame
                Assert.Contains("please file an issue", message);
                FileLinePositionSpan span = error.Location.GetLineSpan();
                Assert.Equal("Input0.cs", span.Path);
                Assert.Contains("Block", Sources.Block.Split('\n')[span.StartLinePosition.Line]);

                // Every class failed, so each has its error and no file; the build fails instead of missing the wiring.
                Assert.Equal(2, result.Diagnostics.Count(d => d.Id == "PEFT999"));
                Assert.DoesNotContain(result.GeneratedSources, s => s.HintName != "PeftDsl.ModuleInitializer.g.cs");
            }
            finally
            {
                ClassParser.TestHook.Value = null;
            }

            // Without the hook the same sources generate normally.
            var (clean, _) = Harness.Run(Harness.Compile(Sources.Block, Sources.Attention));
            Assert.DoesNotContain(clean.Diagnostics, d => d.Id == "PEFT999");
            Assert.Contains(clean.GeneratedSources, s => s.HintName == "Demo.Block.Peft.g.cs");
        }

        [Fact]
        public void Cancellation_in_the_parser_still_propagates()
        {
            ClassParser.TestHook.Value = _ => throw new OperationCanceledException();
            try
            {
                GeneratorDriver driver = Harness.CreateDriver().RunGenerators(Harness.Compile(Sources.Block));
                GeneratorRunResult result = Assert.Single(driver.GetRunResult().Results);
                // Not swallowed into PEFT999: the driver sees the cancellation (and records it as the generator's exception).
                Assert.DoesNotContain(result.Diagnostics, d => d.Id == "PEFT999");
            }
            catch (OperationCanceledException)
            {
                // Equally fine: the driver let it through.
            }
            finally
            {
                ClassParser.TestHook.Value = null;
            }
        }

        [Theory]
        [MemberData(nameof(CaseNames))]
        public void Generator_never_throws_and_writes_only_code_that_compiles(string name)
        {
            var (source, expectsClassFile) = Cases[name];
            var (result, output) = Harness.Run(Harness.Compile(Harness.Usings + source));

            var classFiles = result.GeneratedSources.Where(s => s.HintName != "PeftDsl.ModuleInitializer.g.cs").ToList();
            Assert.Equal(expectsClassFile, classFiles.Count > 0);

            foreach (GeneratedSourceResult generated in result.GeneratedSources)
            {
                var parsed = CSharpSyntaxTree.ParseText(generated.SourceText, Harness.ParseOptions);
                Assert.DoesNotContain(parsed.GetDiagnostics(), d => d.Severity == DiagnosticSeverity.Error);
            }

            if (System.Environment.GetEnvironmentVariable("PEFT_DUMP") is { } dump)
            {
                string folder = System.IO.Path.Combine(dump, string.Concat(name.Select(c => char.IsLetterOrDigit(c) ? c : '_')));
                System.IO.Directory.CreateDirectory(folder);
                foreach (var f in classFiles) System.IO.File.WriteAllText(System.IO.Path.Combine(folder, f.HintName), f.SourceText.ToString());
                System.IO.File.WriteAllLines(System.IO.Path.Combine(folder, "diagnostics.txt"), output.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning).Select(d => d.ToString()));
            }

            var errors = Harness.ProblemsInGenerated(output, result);
            Assert.True(errors.Count == 0, string.Join("\n", errors) + "\n\n" + string.Join("\n\n", classFiles.Select(f => f.SourceText.ToString())));
        }
    }
}
