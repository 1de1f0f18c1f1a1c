using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Testing;
using Xunit;
using static Peft.Generators.Tests.Analyzers.PeftAnalyzerTest;

namespace Peft.Generators.Tests.Analyzers
{
    /// <summary>For each diagnostic, a case that raises it (with its message where the runtime shares it) and a near miss that does not.</summary>
    public class DiagnosticTests
    {
        private const string M = "Module<Tensor, Tensor>";
        private const string Tail = "public A() : base(\"a\") => RegisterComponents(); public override Tensor forward(Tensor x) => x;";

        /// <summary>A partial module class A in namespace Demo with the given members.</summary>
        private static string A(string members, string classAttributes = "") =>
            $"namespace Demo {{ {classAttributes} public partial class A : {M} {{ {members} {Tail} }} }}";

        private static string Format(string format, params object[] args) => PeftMessages.Format(format, args);

        // ---- PEFT001 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT001_class_not_partial() => Expect(
            $"namespace Demo {{ public class {{|#0:A|}} : {M} {{ [LoRA(4)] {M} q = Linear(8, 8); {Tail} }} }}",
            At("PEFT001", 0).WithMessage("Demo.A is not partial, so PeftDsl cannot write the adapter wiring of Demo.A; add the partial modifier to Demo.A"));

        [Fact]
        public Task PEFT001_containing_type_not_partial() => Expect(
            $"namespace Demo {{ public class {{|#0:Outer|}} {{ public partial class A : {M} {{ [LoRA(4)] {M} q = Linear(8, 8); {Tail} }} }} }}",
            At("PEFT001", 0).WithArguments("Demo.Outer", "Demo.Outer.A"));

        [Fact]
        public Task PEFT001_near_miss_partial_or_no_adapter() => Expect(
            A($"[LoRA(4)] {M} q = Linear(8, 8);")
            + $" namespace Demo {{ public class Plain : {M} {{ {M} q = Linear(8, 8); public Plain() : base(\"p\") => RegisterComponents(); public override Tensor forward(Tensor x) => x; }} }}");

        // ---- PEFT002 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT002_field_typed_Linear() => Expect(
            A($"[LoRA(4)] {{|#0:TorchSharp.Modules.Linear|}} q = Linear(8, 8);"),
            At("PEFT002", 0).WithMessage("Demo.A.q: [LoRA] is on a member of type Linear, which cannot hold the adapter layer; declare it as Module<Tensor, Tensor>"));

        [Fact]
        public Task PEFT002_static_field() => Expect(
            A($"[LoRA(4)] static {M} {{|#0:q|}} = Linear(8, 8);"),
            At("PEFT002", 0).WithArguments("Demo.A.q", "LoRA", "static"));

        [Fact]
        public Task PEFT002_near_miss_Module_field_and_Trainable_Linear() => Expect(
            A($"[LoRA(4)] {M}? q = Linear(8, 8); [Trainable] TorchSharp.Modules.Linear head = Linear(8, 2);"));

        // ---- PEFT003 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT003_readonly_field() => Expect(
            A($"[LoRA(4)] private {{|#0:readonly|}} {M} q = Linear(8, 8);"),
            At("PEFT003", 0).WithMessage("Demo.A.q: [LoRA] is on a readonly field, which RegisterComponents() cannot replace by the adapter layer; remove readonly"));

        [Fact]
        public Task PEFT003_init_only_property() => Expect(
            A($"[LoRA(4)] public {M} {{|#0:Q|}} {{ get; init; }} = Linear(8, 8);"),
            At("PEFT003", 0));

        [Fact]
        public Task PEFT003_near_miss_readonly_without_adapter_and_settable_property() => Expect(
            A($"private readonly {M} o = Linear(8, 8); [LoRA(4)] public {M} Q {{ get; set; }} = Linear(8, 8);"));

        // ---- PEFT004 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT004_rank_zero() => Expect(
            A($"[LoRA({{|#0:0|}})] {M} q = Linear(8, 8);"),
            At("PEFT004", 0).WithMessage(Format(PeftMessages.RankTooSmall, "Demo.A.q", "LoRA", 0)));

        [Fact]
        public Task PEFT004_bone_block_and_hydra_ranks() => Expect(
            A($"[Bone({{|#0:-2|}})] {M} v = Linear(8, 8); [Hydra({{|#1:0|}}, {{|#2:0|}}, Name = \"h\")] {M} k = Linear(8, 8);"),
            At("PEFT004", 0).WithMessage(Format(PeftMessages.BlockTooSmall, "Demo.A.v", "Bone", -2)),
            At("PEFT004", 1).WithMessage(Format(PeftMessages.RankTooSmall, "Demo.A.k", "Hydra parallel", 0)),
            At("PEFT004", 2).WithMessage(Format(PeftMessages.RankTooSmall, "Demo.A.k", "Hydra sequential", 0)));

        [Fact]
        public Task PEFT004_near_miss_rank_one() => Expect(
            A($"[LoRA(1)] {M} q = Linear(8, 8); [Bone(1, Name = \"v\")] {M} v = Linear(8, 8); [Hydra(1, 1, Name = \"k\")] {M} k = Linear(8, 8);"));

        // ---- PEFT028 / PEFT029 (SaRA) -----------------------------------------------------------------------------

        [Fact]
        public Task PEFT028_sara_rank_selects_more_weights_than_the_layer_holds() => Expect(
            A($"[SaRA({{|#0:6|}})] {M} q = Linear(12, 10); [SaRA(5, Name = \"ok\")] {M} v = Linear(12, 10);"),
            At("PEFT028", 0).WithMessage("Demo.A.q: SaRA rank 6 selects 6·(12 + 10) = 132 weights, more than the layer's 120; use a rank from 1 to 5"));

        [Fact]
        public Task PEFT029_negative_sara_options() => Expect(
            A($"[SaRA(2, Threshold = {{|#0:-0.5|}}, ReselectAfter = {{|#1:-1|}}, NuclearNormWeight = {{|#2:-0.001|}})] {M} q = Linear(12, 10);"),
            At("PEFT029", 0).WithMessage(Format(PeftMessages.NegativeOption, "Demo.A.q", "SaRA", "threshold", -0.5)),
            At("PEFT029", 1).WithMessage(Format(PeftMessages.NegativeOption, "Demo.A.q", "SaRA", "reselect after", -1)),
            At("PEFT029", 2).WithMessage(Format(PeftMessages.NegativeOption, "Demo.A.q", "SaRA", "nuclear norm weight", -0.001)));

        [Fact]
        public Task PEFT029_zero_is_off_not_an_error() => Expect(
            A($"[SaRA(2, Threshold = 0, ReselectAfter = 0, NuclearNormWeight = 0)] {M} q = Linear(12, 10);"));

        // ---- PEFT005 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT005_rank_above_min_of_known_shape() => Expect(
            A($"[LoRA({{|#0:128|}})] {M} q = Linear(64, 96);"),
            At("PEFT005", 0).WithMessage("Demo.A.q: LoRA rank 128 is larger than min(in 64, out 96) = 64; use a rank from 1 to 64"));

        [Fact]
        public Task PEFT005_constructor_shape_class_level_and_hydra() => Expect(
            $"namespace Demo {{ [LoRA({{|#0:16|}}, Targets = new[] {{ nameof(q) }})] public partial class A : {M} {{ const int D = 8; {M} q; [Hydra(2, {{|#1:9|}}, Name = \"h\")] {M} k = Linear(16, D); public A() : base(\"a\") {{ q = Linear(D, D * 4); RegisterComponents(); }} public override Tensor forward(Tensor x) => x; }} }}",
            At("PEFT005", 0).WithMessage(Format(PeftMessages.RankTooLarge, "Demo.A.q", "LoRA", 16, 8, 32, 8)),
            At("PEFT005", 1).WithMessage(Format(PeftMessages.SequentialRankTooLarge, "Demo.A.k", "Hydra", 9, 8)));

        [Fact]
        public Task PEFT005_near_miss_rank_at_min_or_unknown_shape() => Expect(
            $"namespace Demo {{ public partial class A : {M} {{ [LoRA(64)] {M} q = Linear(64, 96); [LoRA(128)] {M} k; public A(int n) : base(\"a\") {{ k = Linear(n, 96); RegisterComponents(); }} public override Tensor forward(Tensor x) => x; }} }}");

        [Fact]
        public Task PEFT004_PEFT005_PEFT007_other_methods() => Expect(
            A($"[VeRA({{|#0:0|}})] {M} a = Linear(8, 8); [LoHa({{|#1:9|}}, RankDropout = {{|#2:1|}}, Name = \"b\")] {M} b = Linear(8, 16); [LoKr({{|#3:-1|}}, ModuleDropout = {{|#4:-0.5|}}, Name = \"c\")] {M} c = Linear(8, 8); [DoRA({{|#5:9|}}, Name = \"d\")] {M} d = Linear(8, 8);"),
            At("PEFT004", 0).WithMessage(Format(PeftMessages.RankTooSmall, "Demo.A.a", "VeRA", 0)),
            At("PEFT005", 1).WithMessage(Format(PeftMessages.RankTooLarge, "Demo.A.b", "LoHa", 9, 8, 16, 8)),
            At("PEFT007", 2).WithMessage(Format(PeftMessages.ProbabilityOutOfRange, "Demo.A.b", "LoHa", "rank dropout", 1.0)),
            At("PEFT004", 3).WithMessage(Format(PeftMessages.RankTooSmall, "Demo.A.c", "LoKr", -1)),
            At("PEFT007", 4).WithMessage(Format(PeftMessages.ProbabilityOutOfRange, "Demo.A.c", "LoKr", "module dropout", -0.5)),
            At("PEFT005", 5).WithMessage(Format(PeftMessages.RankTooLarge, "Demo.A.d", "DoRA", 9, 8, 8, 8)));

        [Fact]
        public Task PEFT005_near_miss_VeRA_and_LoKr_have_no_min_bound() => Expect(
            A($"[VeRA(64)] {M} a = Linear(8, 8); [LoKr(64, Name = \"k\")] {M} c = Linear(8, 8); [IA3(FeedForward = true, Name = \"i\")] {M} d = Linear(8, 8);"));

        // ---- PEFT006 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT006_bone_block_does_not_divide_in_features() => Expect(
            A($"[Bone({{|#0:64|}})] {M} v = Linear(100, 128);"),
            At("PEFT006", 0).WithMessage("Demo.A.v: Bone block 64 does not divide the layer's in-features 100 (the layer is 100 → 128); the nearest block that does is 50"));

        [Fact]
        public Task PEFT006_bat_needs_both() => Expect(
            A($"[Bone(block: {{|#0:4|}}, Variant = BoneVariant.Bat)] {M} v = Linear(12, 10);"),
            At("PEFT006", 0).WithMessage(Format(PeftMessages.BatBlockDoesNotDivide, "Demo.A.v", 4, 12, 10, 2)));

        [Fact]
        public Task PEFT006_near_miss_divisor_and_bone_ignores_out_features() => Expect(
            A($"[Bone(50)] {M} v = Linear(100, 128); [Bone(4, Name = \"w\")] {M} w = Linear(12, 10); [Bone(2, Variant = BoneVariant.Bat, Name = \"b\")] {M} b = Linear(12, 10);"));

        // ---- PEFT007 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT007_dropout_outside_zero_one() => Expect(
            A($"[LoRA(4, Dropout = {{|#0:1.5|}})] {M} q = Linear(8, 8); [Hydra(2, 2, Dropout = {{|#1:-0.1|}}, Name = \"k\")] {M} k = Linear(8, 8);"),
            At("PEFT007", 0).WithMessage("Demo.A.q: dropout 1.5 is outside [0, 1)"),
            At("PEFT007", 1).WithMessage(Format(PeftMessages.DropoutOutOfRange, "Demo.A.k", -0.1)));

        [Fact]
        public Task PEFT007_near_miss_zero_and_just_below_one() => Expect(
            A($"[LoRA(4, Dropout = 0)] {M} q = Linear(8, 8); [LoRA(4, Dropout = 0.999, Name = \"k\")] {M} k = Linear(8, 8);"));

        // ---- PEFT008 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT008_two_default_adapters_on_a_field() => Expect(
            A($"[LoRA(4)][{{|#0:LoRA(8)|}}] {M} q = Linear(8, 8); [LoRA(4, Name = \"a\")][LoRA(2, Name = {{|#1:\"a\"|}})] {M} k = Linear(8, 8);"),
            At("PEFT008", 0).WithMessage("Demo.A.q: two adapters are named 'default' ([LoRA] and [LoRA]); give one of them another Name"),
            At("PEFT008", 1));

        [Fact]
        public Task PEFT008_class_level_and_member_level_share_a_name() => Expect(
            $"namespace Demo {{ [LoRA(2, Targets = new[] {{ nameof(q) }})] public partial class A : {M} {{ [{{|#0:LoRA(4)|}}][{{|#1:DoRA(4)|}}] {M} q = Linear(8, 8); {Tail} }} }}",
            At("PEFT008", 0).WithArguments("Demo.A.q", "default", "LoRA", "LoRA"),
            At("PEFT008", 1).WithArguments("Demo.A.q", "default", "LoRA", "DoRA"));

        [Fact]
        public Task PEFT008_empty_name() => Expect(
            A($"[LoRA(4, Name = {{|#0:\"\"|}})] {M} q = Linear(8, 8);"),
            At("PEFT008", 0).WithArguments("Demo.A.q", "LoRA"));

        [Fact]
        public Task PEFT008_near_miss_distinct_names() => Expect(
            A($"[LoRA(4)][LoRA(8, Name = \"b\")] {M} q = Linear(8, 8);"));

        // ---- PEFT009 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT009_field_merge_names_unknown_adapter() => Expect(
            A($"[LoRA(4, Name = \"math\")][LoRA(4, Name = \"code\")][MergeWith(\"math\", {{|#0:\"cdoe\"|}}, Name = \"both\")] {M} q = Linear(8, 8);"),
            At("PEFT009", 0).WithMessage("Demo.A.q: [MergeWith] names adapter 'cdoe', which is not declared there; the adapters declared there are: code, math"));

        [Fact]
        public Task PEFT009_near_miss_class_merge_sees_components() => Expect(
            $"namespace Demo {{ public partial class Layer : {M} {{ [LoRA(4, Name = \"math\")][LoRA(4, Name = \"code\")] {M} q = Linear(8, 8); public Layer() : base(\"l\") => RegisterComponents(); public override Tensor forward(Tensor x) => x; }} }}"
            + A("TorchSharp.Modules.ModuleList<Layer> layers = new();", "[PeftModel, MergeWith(\"math\", \"code\", Name = \"both\")]"));

        // ---- PEFT010 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT010_weights_count_and_value() => Expect(
            A($"[LoRA(4, Name = \"a\")][LoRA(4, Name = \"b\")][MergeWith(\"a\", \"b\", Weights = {{|#0:new[] {{ 1.0 }}|}})][MergeWith(\"a\", \"b\", Name = \"m2\", Weights = new[] {{ 1.0, {{|#1:double.NaN|}} }})] {M} q = Linear(8, 8);"),
            At("PEFT010", 0).WithMessage("Demo.A.q: [MergeWith] has 1 weights for 2 adapters; give one weight per adapter, in the same order"),
            At("PEFT010", 1).WithMessage("Demo.A.q: [MergeWith] weight NaN for 'b' is not a finite number; use a finite weight"));

        [Fact]
        public Task PEFT010_near_miss_one_finite_weight_each() => Expect(
            A($"[LoRA(4, Name = \"a\")][LoRA(4, Name = \"b\")][MergeWith(\"a\", \"b\", Weights = new[] {{ 0.7, -0.3 }})] {M} q = Linear(8, 8);"));

        // ---- PEFT011 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT011_cat_over_bone_and_modelstock_of_one() => Expect(
            A($"[LoRA(4, Name = \"a\")] {M} q = Linear(8, 8); [Bone(4, Name = \"b\")][Bone(4, Name = \"e\")] {M} v = Linear(8, 8);",
              "[MergeWith(\"b\", \"e\", Method = {|#0:MergeMethod.Cat|}), MergeWith(\"a\", Name = \"stock\", Method = {|#1:MergeMethod.ModelStock|})]"),
            At("PEFT011", 0).WithMessage("Demo.A: [MergeWith] method Cat creates a LoRA adapter, but 'b' is a Bone adapter at Demo.A.v, whose layer holds no LoRA adapter; merge LoRA or DoRA adapters, or fold Bone adapters into the base weights at run time with AdapterMerger.FoldIntoBase"),
            At("PEFT011", 1));

        [Fact]
        public Task PEFT011_svd_over_bone_cannot_become_a_lora_adapter_either() => Expect(
            A($"[Bone(4, Name = \"a\")][Bone(4, Name = \"b\")] {M} v = Linear(8, 8);",
              "[MergeWith(\"a\", \"b\", Method = {|#0:MergeMethod.Svd|}, Rank = 4)]"),
            At("PEFT011", 0).WithMessage("Demo.A: [MergeWith] method Svd creates a LoRA adapter, but 'a' is a Bone adapter at Demo.A.v, whose layer holds no LoRA adapter; merge LoRA or DoRA adapters, or fold Bone adapters into the base weights at run time with AdapterMerger.FoldIntoBase"));

        [Fact]
        public Task PEFT011_near_miss_svd_over_lora_and_dora_and_linear_over_lora() => Expect(
            A($"[LoRA(4, Name = \"a\")][LoRA(2, Name = \"c\")][DoRA(2, Name = \"d\")] {M} q = Linear(8, 8); [Bone(4, Name = \"b\")] {M} v = Linear(8, 8);",
              "[MergeWith(\"a\", \"d\", Method = MergeMethod.Svd, Rank = 4), MergeWith(\"a\", \"c\", Name = \"lin\"), MergeWith(\"a\", \"c\", Name = \"stock\", Method = MergeMethod.ModelStock)]"));

        [Fact]
        public Task PEFT009_no_layer_holds_all_the_sources() => Expect(
            A($"[LoRA(4, Name = \"a\")] {M} q = Linear(8, 8); [LoRA(4, Name = \"b\")] {M} v = Linear(8, 8);",
              "[{|#0:MergeWith(\"a\", \"b\", Method = MergeMethod.Svd, Rank = 4)|}]"),
            At("PEFT009", 0).WithMessage("Demo.A: [MergeWith] combines 'a', 'b', but no layer holds all of them ('a' at Demo.A.q; 'b' at Demo.A.v); a merge combines adapters of one layer, so name adapters declared on the same fields"));

        // ---- PEFT012 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT012_density_outside() => Expect(
            A($"[LoRA(4, Name = \"a\")][LoRA(4, Name = \"b\")][MergeWith(\"a\", \"b\", Method = MergeMethod.Ties, Density = {{|#0:0|}})][MergeWith(\"a\", \"b\", Name = \"m2\", Method = MergeMethod.DareLinear, Density = {{|#1:1.5|}})] {M} q = Linear(8, 8);"),
            At("PEFT012", 0).WithMessage("Demo.A.q: [MergeWith] density 0 is outside (0, 1]; use the fraction of entries to keep, e.g. 0.5"),
            At("PEFT012", 1));

        [Fact]
        public Task PEFT012_near_miss_density_one_and_small() => Expect(
            A($"[LoRA(4, Name = \"a\")][LoRA(4, Name = \"b\")][MergeWith(\"a\", \"b\", Method = MergeMethod.Ties, Density = 1)][MergeWith(\"a\", \"b\", Name = \"m2\", Method = MergeMethod.DareTies, Density = 0.01)] {M} q = Linear(8, 8);"));

        // ---- PEFT013 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT013_target_names_no_field() => Expect(
            A($"{M} q = Linear(8, 8);", "[LoRA(4, Targets = new[] { nameof(q), {|#0:\"qq\"|} })]"),
            At("PEFT013", 0).WithMessage("Demo.A: class-level [LoRA] targets 'qq', but Demo.A declares no field or property of that name; use nameof() of a field declared in Demo.A"));

        [Fact]
        public Task PEFT013_class_level_without_targets() => Expect(
            A($"{M} q = Linear(8, 8);", "[{|#0:LoRA(4)|}]"),
            At("PEFT013", 0));

        [Fact]
        public Task PEFT013_near_miss_nameof_of_declared_fields() => Expect(
            A($"{M} q = Linear(8, 8); {M} V {{ get; set; }} = Linear(8, 8);", "[LoRA(4, Targets = new[] { nameof(q), nameof(V) })]"));

        // ---- PEFT014 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT014_own_RegisterComponents() => Expect(
            $"namespace Demo {{ public partial class A : {M} {{ [LoRA(4)] {M} q = Linear(8, 8); public A() : base(\"a\") => RegisterComponents(); protected override void {{|#0:RegisterComponents|}}() {{ base.RegisterComponents(); }} public override Tensor forward(Tensor x) => x; }} }}",
            At("PEFT014", 0).WithMessage("Demo.A declares its own RegisterComponents(), which PeftDsl generates for classes with adapters, so none of its adapters is wired; remove it and do any setup in the constructor before calling RegisterComponents()"));

        [Fact]
        public Task PEFT014_near_miss_own_RegisterComponents_without_attributes() => Expect(
            $"namespace Demo {{ public class B : {M} {{ {M} q = Linear(8, 8); public B() : base(\"b\") => RegisterComponents(); protected override void RegisterComponents() {{ base.RegisterComponents(); }} public override Tensor forward(Tensor x) => x; }} }}");

        // ---- PEFT015 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT015_constructor_never_calls_RegisterComponents() => Expect(
            $"namespace Demo {{ public partial class A : {M} {{ [LoRA(4)] {M} q = Linear(8, 8); public {{|#0:A|}}() : base(\"a\") {{ }} public override Tensor forward(Tensor x) => x; }} }}",
            At("PEFT015", 0, DiagnosticSeverity.Warning).WithMessage("Demo.A: the constructor never calls RegisterComponents(), so no adapter is wired; call RegisterComponents() at the end of the constructor"));

        [Fact]
        public Task PEFT015_near_miss_helper_chained_and_base_constructors() => Expect(
            $"namespace Demo {{ public partial class A : {M} {{ [LoRA(4)] {M} q = Linear(8, 8); public A() : this(8) {{ Init(); }} private A(int n) : base(\"a\") {{ }} void Init() => this.RegisterComponents(); public override Tensor forward(Tensor x) => x; }}"
            + $" public abstract partial class B : {M} {{ [LoRA(4)] protected {M} k = Linear(8, 8); protected B() : base(\"b\") {{ }} }}"
            + $" public partial class C : A {{ [LoRA(2)] {M} v = Linear(8, 8); }} }}");

        [Fact]
        public async Task PEFT014_and_PEFT015_see_through_the_generated_files()
        {
            // The compiler analyzes the compilation with the generator's files in it: its own RegisterComponents() is
            // no PEFT014, and it does not hide a constructor that never calls RegisterComponents() (PEFT015).
            var diagnostics = await RunAfterGenerator(
                A($"[LoRA(4)] {M} q = Linear(8, 8);", "[PeftModel]"),
                $"namespace Demo {{ public partial class B : {M} {{ [LoRA(4)] {M} q = Linear(8, 8); public B() : base(\"b\") {{ }} public override Tensor forward(Tensor x) => x; }} }}");
            Diagnostic only = Assert.Single(diagnostics);
            Assert.Equal("PEFT015", only.Id);
            Assert.Contains("Demo.B", only.GetMessage());
        }

        // ---- PEFT016 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT016_adapter_on_a_Conv2d_and_an_Embedding() => Expect(
            A($"[Bone(4)] {M} c = {{|#0:Conv2d(3, 8, 3)|}}; [LoRA(4, Name = \"e\")] {M} e = {{|#1:Embedding(10, 4)|}};"),
            At("PEFT016", 0).WithMessage("Demo.A.c: Bone adapts a Linear layer, but the member holds Conv2d"),
            At("PEFT016", 1).WithMessage(Format(PeftMessages.UnsupportedLayer, "Demo.A.e", "LoRA", "Embedding")));

        [Fact]
        public Task PEFT016_two_methods_on_one_member() => Expect(
            A($"[LoRA(4)][{{|#0:Bone(4, Name = \"b\")|}}] {M} q = Linear(8, 8);"),
            At("PEFT016", 0).WithArguments("Demo.A.q", "LoRA", "Bone"));

        [Fact]
        public Task PEFT016_near_miss_linear_cast_and_lora_with_dora() => Expect(
            A($"[LoRA(4)][DoRA(4, Name = \"d\")] {M} q = ({M})Linear(8, 8); [LoRA(4)] {M} k = MakeLayer(); static {M} MakeLayer() => Linear(8, 8);"));

        // ---- PEFT017 -------------------------------------------------------------------------------------------

        [Fact]
        public Task PEFT017_two_methods_under_the_default_name() => Expect(
            A($"[LoRA(4)] {M} q = Linear(8, 8); [{{|#0:Bone(8)|}}] {M} mlp = Linear(8, 8);"),
            At("PEFT017", 0).WithMessage("Demo.A.mlp: adapter 'default' has peft_type = \"MISS\" here but \"LORA\" at Demo.A.q; PEFT's adapter_config.json holds one peft_type for every layer of an adapter, so give one of these layers another adapter Name"));

        [Fact]
        public Task PEFT017_different_dropout_under_one_name() => Expect(
            A($"[LoRA(4, Name = \"a\")] {M} q = Linear(8, 8); [LoRA(4, Name = \"a\")] {M} k = Linear(8, 8); [{{|#0:LoRA(4, Dropout = 0.1, Name = \"a\")|}}] {M} v = Linear(8, 8);"),
            At("PEFT017", 0).WithMessage(Format(PeftMessages.SharedConfigMismatch, "Demo.A.v", "a", "lora_dropout", "0.1", "0.0", "Demo.A.q")));

        [Fact]
        public Task PEFT017_LoRA_and_DoRA_differ_in_use_dora() => Expect(
            A($"[LoRA(4)] {M} q = Linear(8, 8); [{{|#0:DoRA(4)|}}] {M} v = Linear(8, 8);"),
            At("PEFT017", 0).WithArguments("Demo.A.v", "default", "use_dora", "true", "false", "Demo.A.q"));

        [Fact]
        public Task PEFT017_init_rslora_and_bone_variant() => Expect(
            A($"[LoRA(4, Init = LoRAInit.PiSSA)] {M} q = Linear(8, 8); [{{|#0:LoRA(4)|}}] {M} k = Linear(8, 8);"
              + $" [LoRA(4, Name = \"r\")] {M} a = Linear(8, 8); [{{|#1:LoRA(4, UseRsLora = true, Name = \"r\")|}}] {M} b = Linear(8, 8);"
              + $" [Bone(4, Name = \"b\")] {M} c = Linear(8, 8); [{{|#2:Bone(4, Variant = BoneVariant.Bat, Name = \"b\")|}}] {M} d = Linear(8, 8);"),
            At("PEFT017", 0).WithArguments("Demo.A.k", "default", "init_lora_weights", "true", "\"pissa\"", "Demo.A.q"),
            At("PEFT017", 1).WithArguments("Demo.A.b", "r", "use_rslora", "true", "false", "Demo.A.a"),
            At("PEFT017", 2).WithArguments("Demo.A.d", "b", "init_weights", "\"bat\"", "true", "Demo.A.c"));

        [Fact]
        public Task PEFT017_class_level_adapter_counts_on_its_targets() => Expect(
            $"namespace Demo {{ [LoRA(4, Targets = new[] {{ nameof(q) }})] public partial class A : {M} {{ {M} q = Linear(8, 8); [{{|#0:LoRA(4, Dropout = 0.2)|}}] {M} v = Linear(8, 8); {Tail} }} }}",
            At("PEFT017", 0).WithArguments("Demo.A.v", "default", "lora_dropout", "0.2", "0.0", "Demo.A.q"));

        [Fact]
        public Task PEFT017_near_miss_rank_and_alpha_differ_or_names_differ() => Expect(
            A($"[LoRA(4, Alpha = 8)] {M} q = Linear(8, 8); [LoRA(2, Alpha = 16, Dropout = 0)] {M} k = Linear(8, 8);"
              + $" [DoRA(4, Name = \"d\")] {M} v = Linear(8, 8); [Bone(4, Name = \"bone\")] {M} o = Linear(8, 8); [LoRA(4, Dropout = 0.1, Name = \"drop\")] {M} u = Linear(8, 8);"
              + $" [LoHa(2, Alpha = 4, Name = \"h\")] {M} h1 = Linear(8, 8); [LoHa(4, Alpha = 2, Name = \"h\")] {M} h2 = Linear(8, 8);"));

        // ---- Wave-2 merges: PEFT011 (factors), PEFT012 (common fraction), PEFT032, PEFT033, PEFT034 ----------------

        [Fact]
        public Task PEFT011_core_space_and_lora_lego_need_plain_lora() => Expect(
            A($"[LoRA(4, Name = \"a\")][DoRA(4, Name = \"d\")] {M} q = Linear(8, 8);",
              "[MergeWith(\"a\", \"d\", Method = {|#0:MergeMethod.Ties|}, Space = MergeSpace.Core), MergeWith(\"a\", \"d\", Name = \"lego\", Method = {|#1:MergeMethod.LoraLego|}, Rank = 4)]"),
            At("PEFT011", 0).WithMessage("Demo.A: [MergeWith] Space = MergeSpace.Core works on the sources' LoRA factors B·A, but 'd' is a DoRA adapter at Demo.A.q, whose delta is no such product; merge plain [LoRA] adapters, or use Space = MergeSpace.Full with another method"),
            At("PEFT011", 1).WithArguments("Demo.A", "method LoraLego", "d", "DoRA", "Demo.A.q"));

        [Fact]
        public Task PEFT012_common_fraction_outside() => Expect(
            A($"[LoRA(4, Name = \"a\")][LoRA(4, Name = \"b\")][MergeWith(\"a\", \"b\", Method = MergeMethod.IsoCts, Space = MergeSpace.Core, CommonFraction = {{|#0:1.5|}})][MergeWith(\"a\", \"b\", Name = \"m2\", Method = MergeMethod.IsoCts, Space = MergeSpace.Core, CommonFraction = {{|#1:0|}})] {M} q = Linear(8, 8);"),
            At("PEFT012", 0).WithMessage("Demo.A.q: [MergeWith] common fraction 1.5 is outside (0, 1]; use the share of singular directions given to the common subspace, e.g. 0.8 (the paper's)"),
            At("PEFT012", 1));

        [Fact]
        public Task PEFT032_widen_and_lora_lego_cannot_run_in_core_space() => Expect(
            A($"[LoRA(4, Name = \"a\")][LoRA(4, Name = \"b\")][MergeWith(\"a\", \"b\", Method = MergeMethod.Widen, Space = {{|#0:MergeSpace.Core|}})][MergeWith(\"a\", \"b\", Name = \"m2\", Method = MergeMethod.LoraLego, Rank = 4, Space = {{|#1:MergeSpace.Core|}})] {M} q = Linear(8, 8);"),
            At("PEFT032", 0).WithMessage("Demo.A.q: [MergeWith] method Widen cannot run in core space: WIDEN scores the columns of the base weight, which the core matrices do not have; remove Space = MergeSpace.Core (LoRA sources stay low-rank in full space for this method)"),
            At("PEFT032", 1).WithArguments("Demo.A.q", "LoraLego", "LoRA-LEGO clusters the sources' own rank-1 units"));

        [Fact]
        public Task PEFT033_lora_lego_needs_rank() => Expect(
            A($"[LoRA(4, Name = \"a\")][LoRA(4, Name = \"b\")][MergeWith(\"a\", \"b\", Method = {{|#0:MergeMethod.LoraLego|}})][MergeWith(\"a\", \"b\", Name = \"m2\", Method = {{|#1:MergeMethod.LoraLego|}}, Rank = 0)] {M} q = Linear(8, 8);"),
            At("PEFT033", 0).WithMessage("Demo.A.q: [MergeWith] method LoraLego needs Rank, the number of clusters (the new adapter's rank); add Rank = k, e.g. the sources' own rank"),
            At("PEFT033", 1));

        [Fact]
        public Task PEFT034_iso_over_lora_in_full_space_warns() => Expect(
            A($"[LoRA(4, Name = \"a\")][LoRA(4, Name = \"b\")][MergeWith(\"a\", \"b\", Method = {{|#0:MergeMethod.IsoC|}})][MergeWith(\"a\", \"b\", Name = \"m2\", Method = {{|#1:MergeMethod.IsoCts|}}, Space = MergeSpace.Full)] {M} q = Linear(8, 8);"),
            At("PEFT034", 0, DiagnosticSeverity.Warning).WithMessage("Demo.A.q: [MergeWith] method IsoC in full space spreads the mean singular value over every direction, so the merge of these LoRA adapters is full-rank and its truncation to the new adapter's rank keeps little of it; add Space = MergeSpace.Core to stay exact and low-rank"),
            At("PEFT034", 1, DiagnosticSeverity.Warning));

        [Fact]
        public Task Wave2_merges_near_miss_every_method_where_it_fits() => Expect(
            A($"[LoRA(4, Name = \"a\")][LoRA(2, Name = \"b\")][DoRA(2, Name = \"d\")] {M} q = Linear(8, 8);",
              "[MergeWith(\"a\", \"b\", Method = MergeMethod.IsoC, Space = MergeSpace.Core), MergeWith(\"a\", \"b\", Name = \"cts\", Method = MergeMethod.IsoCts, Space = MergeSpace.Core, CommonFraction = 1),"
              + " MergeWith(\"a\", \"b\", Name = \"tsv\", Method = MergeMethod.Tsv), MergeWith(\"a\", \"b\", Name = \"ties\", Method = MergeMethod.Ties, Density = 0.5, Space = MergeSpace.Core),"
              + " MergeWith(\"a\", \"d\", Name = \"widen\", Method = MergeMethod.Widen), MergeWith(\"a\", \"d\", Name = \"iso\", Method = MergeMethod.IsoC),"
              + " MergeWith(\"a\", \"b\", Name = \"lego\", Method = MergeMethod.LoraLego, Rank = 3, Seed = 7)]"));

        // ---- PEFT018–PEFT023: adaptive ranks ----------------------------------------------------------------------

        [Fact]
        public Task PEFT018_total_steps_missing_or_below_one() => Expect(
            A($"[{{|#0:AdaLoRA(2)|}}] {M} q = Linear(8, 8); [AdaLoRA(2, TotalSteps = {{|#1:0|}}, Name = \"b\")] {M} k = Linear(8, 8);"),
            At("PEFT018", 0).WithMessage(Format(PeftMessages.TotalStepsMissing, "Demo.A.q", 0)),
            At("PEFT018", 1).WithMessage(Format(PeftMessages.TotalStepsMissing, "Demo.A.k", 0)));

        [Fact]
        public Task PEFT019_tinit_not_below_total_minus_tfinal() => Expect(
            A($"[AdaLoRA(2, Tinit = {{|#0:60|}}, Tfinal = 40, TotalSteps = 100)] {M} q = Linear(8, 8); [AdaLoRA(2, TotalSteps = {{|#1:5|}}, Tfinal = 5, Name = \"b\")] {M} k = Linear(8, 8);"),
            At("PEFT019", 0).WithMessage(Format(PeftMessages.ScheduleEmpty, "Demo.A.q", 60, 100, 40, 60)),
            At("PEFT019", 1).WithMessage(Format(PeftMessages.ScheduleEmpty, "Demo.A.k", 0, 5, 5, 0)));

        [Fact]
        public Task PEFT020_init_rank_below_target() => Expect(
            A($"[{{|#0:AdaLoRA(16, TotalSteps = 100)|}}] {M} q = Linear(32, 32); [AdaLoRA(4, InitRank = {{|#1:3|}}, TotalSteps = 100, Name = \"b\")] {M} k = Linear(8, 8);"),
            At("PEFT020", 0).WithMessage(Format(PeftMessages.InitRankBelowTarget, "Demo.A.q", "AdaLoRA", 12, 16)),
            At("PEFT020", 1).WithMessage(Format(PeftMessages.InitRankBelowTarget, "Demo.A.k", "AdaLoRA", 3, 4)));

        [Fact]
        public Task PEFT021_beta_outside_zero_one() => Expect(
            A($"[AdaLoRA(2, Beta1 = {{|#0:1.0|}}, Beta2 = {{|#1:0|}}, TotalSteps = 10)] {M} q = Linear(8, 8);"),
            At("PEFT021", 0).WithMessage(Format(PeftMessages.BetaOutOfRange, "Demo.A.q", "AdaLoRA", "Beta1", 1.0)),
            At("PEFT021", 1).WithMessage(Format(PeftMessages.BetaOutOfRange, "Demo.A.q", "AdaLoRA", "Beta2", 0)));

        [Fact]
        public Task PEFT023_delta_t_below_one() => Expect(
            A($"[AdaLoRA(2, DeltaT = {{|#0:0|}}, TotalSteps = 10)] {M} q = Linear(8, 8);"),
            At("PEFT023", 0).WithMessage(Format(PeftMessages.IntervalTooSmall, "Demo.A.q", "AdaLoRA", "DeltaT", 0)));

        [Fact]
        public Task PEFT018_to_PEFT023_near_miss_valid_schedules_and_an_integral_alpha_written_either_way() => Expect(
            A($"[AdaLoRA(2, TotalSteps = 1)] {M} q = Linear(8, 8); [AdaLoRA(2, Alpha = 8.0, TotalSteps = 1)] {M} v = Linear(8, 8); [AdaLoRA(12, Tinit = 10, Tfinal = 10, Beta1 = 0.5, Beta2 = 0.999, TotalSteps = 21, Name = \"b\")] {M} k = Linear(16, 16);"));

        [Fact]
        public Task PEFT017_adalora_layers_of_one_adapter_share_their_schedule() => Expect(
            A($"[AdaLoRA(2, TotalSteps = 100)] {M} q = Linear(8, 8); [{{|#0:AdaLoRA(2, TotalSteps = 50)|}}] {M} v = Linear(8, 8);"),
            At("PEFT017", 0).WithMessage(Format(PeftMessages.SharedConfigMismatch, "Demo.A.v", "default", "total_step", "50", "100", "Demo.A.q")));

        [Fact]
        public Task PEFT022_increlora_ranks_out_of_order() => Expect(
            A($"[{{|#0:IncreLoRA(32)|}}] {M} q = Linear(64, 64); [IncreLoRA(4, InitRank = {{|#1:6|}}, Name = \"b\")] {M} k = Linear(8, 8);"),
            At("PEFT022", 0).WithMessage(Format(PeftMessages.IncreLoRARanks, "Demo.A.q", 1, 32, 16)),
            At("PEFT022", 1).WithMessage(Format(PeftMessages.IncreLoRARanks, "Demo.A.k", 6, 4, 16)));

        [Fact]
        public Task PEFT021_PEFT023_increlora_betas_and_counts() => Expect(
            A($"[IncreLoRA(4, Beta2 = {{|#0:1.5|}}, TopH = {{|#1:0|}}, Interval = {{|#2:-1|}})] {M} q = Linear(8, 8);"),
            At("PEFT021", 0).WithMessage(Format(PeftMessages.BetaOutOfRange, "Demo.A.q", "IncreLoRA", "Beta2", 1.5)),
            At("PEFT023", 2).WithMessage(Format(PeftMessages.IntervalTooSmall, "Demo.A.q", "IncreLoRA", "Interval", -1)),
            At("PEFT023", 1).WithMessage(Format(PeftMessages.IntervalTooSmall, "Demo.A.q", "IncreLoRA", "TopH", 0)));

        [Fact]
        public Task PEFT022_near_miss_ranks_in_order() => Expect(
            A($"[IncreLoRA(16)] {M} q = Linear(64, 64); [IncreLoRA(32, MaxRank = 32, InitRank = 32, Name = \"b\")] {M} k = Linear(64, 64);"));

        // ---- PEFT024 (and LaMDA's sizes) ------------------------------------------------------------------------

        [Fact]
        public Task PEFT024_negative_lamda_schedule_and_PEFT005_lamda_rank() => Expect(
            A($"[LaMDA(4, FreezeBSteps = {{|#0:-1|}})] {M} q = Linear(8, 8); [LaMDA(2, FreezeBStart = {{|#1:-5|}}, Name = \"k\")] {M} k = Linear(8, 8); [LaMDA({{|#2:9|}}, Name = \"v\")] {M} v = Linear(8, 16);"),
            At("PEFT024", 0).WithMessage(Format(PeftMessages.ScheduleStepsNegative, "Demo.A.q", "LaMDA", "FreezeBSteps", -1)),
            At("PEFT024", 1).WithMessage(Format(PeftMessages.ScheduleStepsNegative, "Demo.A.k", "LaMDA", "FreezeBStart", -5)),
            At("PEFT005", 2).WithMessage(Format(PeftMessages.RankTooLarge, "Demo.A.v", "LaMDA", 9, 8, 16, 8)));

        [Fact]
        public Task PEFT004_PEFT005_PEFT007_loldu() => Expect(
            A($"[LoLDU({{|#0:0|}})] {M} q = Linear(8, 8); [LoLDU({{|#1:9|}}, Name = \"k\")] {M} k = Linear(8, 16); [LoLDU(8, Dropout = {{|#2:1|}}, Name = \"v\")] {M} v = Linear(8, 16);"),
            At("PEFT004", 0).WithMessage(Format(PeftMessages.RankTooSmall, "Demo.A.q", "LoLDU", 0)),
            At("PEFT005", 1).WithMessage(Format(PeftMessages.RankTooLarge, "Demo.A.k", "LoLDU", 9, 8, 16, 8)),
            At("PEFT007", 2).WithMessage(Format(PeftMessages.DropoutOutOfRange, "Demo.A.v", 1.0)));

        [Fact]
        public Task PEFT024_near_miss_zero_steps_and_lamda_beside_lora_under_one_name() => Expect(
            A($"[LaMDA(4, FreezeBSteps = 0, FreezeBStart = 0)] {M} q = Linear(8, 8); [LoRA(4)] {M} k = Linear(8, 8); [LoLDU(8)] {M} v = Linear(8, 16);"));
    }
}
