using System.Linq;
using Xunit;

namespace Peft.Generators.Tests
{
    /// <summary>Focused checks of single rules (the expected-source tests pin whole files).</summary>
    public class BehaviourTests
    {
        private const string M = "Module<Tensor, Tensor>";

        private static (Microsoft.CodeAnalysis.GeneratorRunResult Result, string[] Hints) Run(params string[] sources)
        {
            var (result, output) = Harness.Run(Harness.Compile(sources.Select(s => Harness.Usings + s)));
            Harness.AssertCompilesCleanly(output, result);
            return (result, result.GeneratedSources.Select(s => s.HintName).OrderBy(h => h).ToArray());
        }

        [Fact]
        public void Partial_class_split_across_files_gets_one_file_with_every_member()
        {
            var (result, hints) = Run(
                $"namespace P {{ [PeftModel] public partial class Split : {M} {{ [LoRA(4)] {M} q = Linear(8, 8); public Split() : base(\"s\") => RegisterComponents(); public override Tensor forward(Tensor x) => x; }} }}",
                $"namespace P {{ [LoRA(2, Targets = new[] {{ nameof(k) }})] public partial class Split {{ [Trainable] {M} head = Linear(8, 2); {M} k = Linear(8, 4); }} }}",
                $"namespace P {{ [LoRA(2, Targets = new[] {{ nameof(v) }})] public partial class Split {{ {M} v = Linear(8, 4); }} }}");
            Assert.Equal(new[] { "P.Split.Peft.g.cs", "PeftDsl.ModuleInitializer.g.cs" }, hints);
            string text = Harness.Generated(result, "P.Split.Peft.g.cs");
            Assert.Contains("LoRA.Wrap(this.q,", text);
            Assert.Contains("LoRA.Wrap(this.k,", text);
            Assert.Contains("LoRA.Wrap(this.v,", text);
            Assert.Contains("new string[] { \"head\" }", text);
        }

        [Fact]
        public void Trainable_only_and_PeftModel_only_classes_get_a_file_without_wiring()
        {
            var (result, hints) = Run(
                $"namespace P {{ public partial class Head : {M} {{ [Trainable] {M} head = Linear(8, 2); public Head() : base(\"h\") => RegisterComponents(); public override Tensor forward(Tensor x) => head.forward(x); }} }}",
                $"namespace P {{ [PeftModel] public partial class Root : {M} {{ Head head = new Head(); public Root() : base(\"r\") => RegisterComponents(); public override Tensor forward(Tensor x) => head.forward(x); }} }}");
            Assert.Equal(new[] { "P.Head.Peft.g.cs", "P.Root.Peft.g.cs", "PeftDsl.ModuleInitializer.g.cs" }, hints);
            string head = Harness.Generated(result, "P.Head.Peft.g.cs");
            Assert.DoesNotContain("__peftWired", head);
            Assert.Contains("new string[] { \"head\" }", head);
            string root = Harness.Generated(result, "P.Root.Peft.g.cs");
            Assert.Contains("__peftCore ??= global::Peft.Runtime.PeftModelCore.Attach(this, PeftInfo);", root);
            Assert.Contains("global::P.Head.PeftInfo,", root);
        }

        [Fact]
        public void Components_come_from_generic_arguments_and_arrays_once_each()
        {
            var (result, _) = Run(
                $"namespace P {{ public partial class Layer : {M} {{ [LoRA(4)] {M} q = Linear(8, 8); public Layer() : base(\"l\") => RegisterComponents(); public override Tensor forward(Tensor x) => q.forward(x); }} }}",
                $"namespace P {{ public partial class Box<T> : {M} {{ [LoRA(4)] {M} q = Linear(8, 8); public Box() : base(\"b\") => RegisterComponents(); public override Tensor forward(Tensor x) => q.forward(x); }} }}",
                $"namespace P {{ [PeftModel] public partial class Root : {M} {{ TorchSharp.Modules.ModuleList<Layer> layers = new(); Layer[] more = new Layer[0]; Box<float>? box; System.Collections.Generic.List<Box<Layer>> boxes = new(); public Root() : base(\"r\") => RegisterComponents(); public override Tensor forward(Tensor x) => box!.forward(x); }} }}");
            string root = Harness.Generated(result, "P.Root.Peft.g.cs");
            Assert.Contains("""
                            new global::Peft.Runtime.PeftModelInfo[]
                            {
                                global::P.Layer.PeftInfo,
                                global::P.Box<float>.PeftInfo,
                                global::P.Box<global::P.Layer>.PeftInfo,
                            });
                """, root);
        }

        [Fact]
        public void Classes_that_hold_each_other_leave_the_cycle_out()
        {
            var (result, _) = Run(
                $"namespace P {{ public partial class A : {M} {{ [LoRA(4)] {M} q = Linear(8, 8); B? b; C? c; public A() : base(\"a\") => RegisterComponents(); public override Tensor forward(Tensor x) => b!.forward(c!.forward(x)); }} }}",
                $"namespace P {{ public partial class B : {M} {{ [LoRA(4)] {M} q = Linear(8, 8); A? a; public B() : base(\"b\") => RegisterComponents(); public override Tensor forward(Tensor x) => a!.forward(x); }} }}",
                $"namespace P {{ public partial class C : {M} {{ [LoRA(4)] {M} q = Linear(8, 8); public C() : base(\"c\") => RegisterComponents(); public override Tensor forward(Tensor x) => q.forward(x); }} }}");
            string a = Harness.Generated(result, "P.A.Peft.g.cs");
            Assert.DoesNotContain("global::P.B.PeftInfo", a);
            Assert.Contains("global::P.C.PeftInfo,", a);
            Assert.DoesNotContain("global::P.A.PeftInfo", Harness.Generated(result, "P.B.Peft.g.cs"));
        }

        [Fact]
        public void Adapter_attributes_of_any_method_follow_the_naming_rule()
        {
            // Bone: ctor parameter block -> Block, an enum option by name.
            var (result, _) = Run(
                $"namespace P {{ public partial class L : {M} {{ [Bone(block: 16, Variant = BoneVariant.Bat, Name = \"b\")] [LoRA(2)] {M} q = Linear(64, 32); public L() : base(\"l\") => RegisterComponents(); public override Tensor forward(Tensor x) => q.forward(x); }} }}");
            string text = Harness.Generated(result, "P.L.Peft.g.cs");
            Assert.Contains("this.q = global::Peft.Runtime.Adapters.Bone.Wrap(this.q, \"P.L.q\", \"b\", new global::Peft.Runtime.Adapters.BoneOptions { Block = 16, Variant = global::Peft.BoneVariant.Bat });", text);
            Assert.Contains("this.q = global::Peft.Runtime.Adapters.LoRA.Wrap(this.q, \"P.L.q\", \"default\", new global::Peft.Runtime.Adapters.LoRAOptions { Rank = 2 });", text);
            Assert.Contains("new global::Peft.Runtime.AdapterSiteInfo(\"q\", \"Bone\", \"b\", \"block: 16, Variant = BoneVariant.Bat\", 64L, 32L),", text);
        }

        [Fact]
        public void Every_method_of_the_rule_table_is_a_known_attribute_of_Peft_Dsl()
        {
            var methods = Parse.KnownAttributes.All.Where(a => a.Kind == Parse.AttributeKind.Adapter).ToDictionary(a => a.Method, a => a.MetadataName);
            Assert.Equal(AdapterConfigFields.Methods.Select(m => m.Name), methods.Keys);
            foreach (AdapterConfigFields.Method method in AdapterConfigFields.Methods)
            {
                Assert.Equal("Peft." + method.Name + "Attribute", methods[method.Name]);
                Assert.NotNull(typeof(Peft.LoRAAttribute).Assembly.GetType(methods[method.Name]));
            }

            Assert.Contains(Parse.KnownAttributes.All, a => a.MetadataName == "Peft.PeftModelAttribute");
            Assert.Contains(Parse.KnownAttributes.All, a => a.MetadataName == "Peft.TrainableAttribute");
        }

        [Fact]
        public void Constructor_assignments_and_named_constants_give_shapes()
        {
            var (result, _) = Run(
                $"namespace P {{ public partial class S : {M} {{ const int D = 48; const long H = 4 * D; [LoRA(2)] {M} a; [LoRA(2)] {M} b; [LoRA(2)] {M} c = (nn.Linear(outputSize: 3, inputSize: D)); public S() : base(\"s\") {{ a = Linear(D, H); this.b = torch.nn.Linear(D, D, hasBias: false); RegisterComponents(); }} public override Tensor forward(Tensor x) => x; }} }}");
            string text = Harness.Generated(result, "P.S.Peft.g.cs");
            Assert.Contains("AdapterSiteInfo(\"a\", \"LoRA\", \"default\", \"rank: 2\", 48L, 192L)", text);
            Assert.Contains("AdapterSiteInfo(\"b\", \"LoRA\", \"default\", \"rank: 2\", 48L, 48L)", text);
            Assert.Contains("AdapterSiteInfo(\"c\", \"LoRA\", \"default\", \"rank: 2\", 48L, 3L)", text);
        }

        [Fact]
        public void Derived_annotated_class_hides_the_inherited_api_with_new()
        {
            var (result, _) = Run(
                $"namespace P {{ [PeftModel] public partial class B : {M} {{ [LoRA(4)] protected {M} q = Linear(8, 8); public B() : base(\"b\") {{ }} public override Tensor forward(Tensor x) => q.forward(x); }} [PeftModel] public partial class A : B {{ [LoRA(2)] {M} k = Linear(8, 8); public A() => RegisterComponents(); }} }}");
            string text = Harness.Generated(result, "P.A.Peft.g.cs");
            Assert.Contains("public static new global::Peft.Runtime.PeftModelInfo PeftInfo", text);
            Assert.Contains("public new void MergeAdapters()", text);
            Assert.Contains("private bool __peftWired;", text);
        }
    }
}
