using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Peft.CodeFixes;
using Xunit;
using static Peft.Generators.Tests.Analyzers.PeftAnalyzerTest;

namespace Peft.Generators.Tests.Analyzers
{
    /// <summary>Each code fix: the source before, the source after (which the analyzers then accept).</summary>
    public class CodeFixTests
    {
        [Fact]
        public Task PEFT001_add_partial() => ExpectFix(new AddPartialCodeFix(),
            """
            namespace Demo
            {
                [PeftModel]
                public sealed class {|#0:Block|} : Module<Tensor, Tensor>
                {
                    [LoRA(8)]
                    private Module<Tensor, Tensor> q = Linear(16, 16);

                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }
            }
            """,
            """
            namespace Demo
            {
                [PeftModel]
                public sealed partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(8)]
                    private Module<Tensor, Tensor> q = Linear(16, 16);

                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }
            }
            """,
            expected: At("PEFT001", 0));

        [Fact]
        public Task PEFT001_add_partial_without_other_modifiers() => ExpectFix(new AddPartialCodeFix(),
            """
            namespace Demo
            {
                // The model.
                class {|#0:Block|} : Module<Tensor, Tensor>
                {
                    [LoRA(8)] Module<Tensor, Tensor> q = Linear(16, 16);
                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }
            }
            """,
            """
            namespace Demo
            {
                // The model.
                partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(8)] Module<Tensor, Tensor> q = Linear(16, 16);
                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }
            }
            """,
            expected: At("PEFT001", 0));

        [Fact]
        public Task PEFT002_change_type_to_Module_of_Tensor() => ExpectFix(new ChangeMemberTypeCodeFix(),
            """
            using TorchSharp.Modules;

            namespace Demo
            {
                public partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(8)]
                    private {|#0:Linear|} q = Linear(16, 16);

                    [LoRA(4)]
                    public {|#1:Linear?|} K { get; set; }

                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }
            }
            """,
            """
            using TorchSharp.Modules;

            namespace Demo
            {
                public partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(8)]
                    private Module<Tensor, Tensor> q = Linear(16, 16);

                    [LoRA(4)]
                    public Module<Tensor, Tensor>? K { get; set; }

                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }
            }
            """,
            expected: new[] { At("PEFT002", 0), At("PEFT002", 1) });

        [Fact]
        public Task PEFT003_remove_readonly() => ExpectFix(new RemoveReadonlyCodeFix(),
            """
            namespace Demo
            {
                public partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(8)]
                    private {|#0:readonly|} Module<Tensor, Tensor> q = Linear(16, 16);

                    [LoRA(8)]
                    {|#1:readonly|} Module<Tensor, Tensor> v;

                    public Block() : base(nameof(Block))
                    {
                        v = Linear(16, 16);
                        RegisterComponents();
                    }

                    public override Tensor forward(Tensor x) => q.forward(x) + v.forward(x);
                }
            }
            """,
            """
            namespace Demo
            {
                public partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(8)]
                    private Module<Tensor, Tensor> q = Linear(16, 16);

                    [LoRA(8)]
                    Module<Tensor, Tensor> v;

                    public Block() : base(nameof(Block))
                    {
                        v = Linear(16, 16);
                        RegisterComponents();
                    }

                    public override Tensor forward(Tensor x) => q.forward(x) + v.forward(x);
                }
            }
            """,
            expected: new[] { At("PEFT003", 0), At("PEFT003", 1) });

        private const string BoneBefore = """
            namespace Demo
            {
                public partial class Block : Module<Tensor, Tensor>
                {
                    [Bone({|#0:64|})]
                    private Module<Tensor, Tensor> v = Linear(100, 128);

                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => v.forward(x);
                }
            }
            """;

        [Fact]
        public Task PEFT006_nearest_dividing_block() => ExpectFix(new BoneBlockCodeFix(), BoneBefore, BoneBefore.Replace("{|#0:64|}", "50"),
            codeActionIndex: 0, expected: At("PEFT006", 0));

        [Fact]
        public Task PEFT006_next_dividing_block_above() => ExpectFix(new BoneBlockCodeFix(), BoneBefore, BoneBefore.Replace("{|#0:64|}", "100"),
            codeActionIndex: 1, expected: At("PEFT006", 0));

        [Fact]
        public Task PEFT006_class_level_block_divides_every_target() => ExpectFix(new BoneBlockCodeFix(),
            """
            namespace Demo
            {
                [Bone({|#0:{|#1:7|}|}, Variant = BoneVariant.Bat, Targets = new[] { nameof(q), nameof(v) })]
                public partial class Block : Module<Tensor, Tensor>
                {
                    private Module<Tensor, Tensor> q = Linear(16, 24);
                    private Module<Tensor, Tensor> v = Linear(24, 40);

                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => v.forward(q.forward(x));
                }
            }
            """,
            """
            namespace Demo
            {
                [Bone(8, Variant = BoneVariant.Bat, Targets = new[] { nameof(q), nameof(v) })]
                public partial class Block : Module<Tensor, Tensor>
                {
                    private Module<Tensor, Tensor> q = Linear(16, 24);
                    private Module<Tensor, Tensor> v = Linear(24, 40);

                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => v.forward(q.forward(x));
                }
            }
            """,
            codeActionIndex: 0,
            expected: new[] { At("PEFT006", 0), At("PEFT006", 1) });

        [Fact]
        public Task PEFT015_call_RegisterComponents_at_the_end() => ExpectFix(new CallRegisterComponentsCodeFix(),
            """
            namespace Demo
            {
                public partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(8)]
                    private Module<Tensor, Tensor> q;

                    public {|#0:Block|}() : base(nameof(Block))
                    {
                        q = Linear(16, 16);
                    }

                    public {|#1:Block|}(int d) : base(nameof(Block)) => q = Linear(d, d);

                    public override Tensor forward(Tensor x) => q.forward(x);
                }
            }
            """,
            """
            namespace Demo
            {
                public partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(8)]
                    private Module<Tensor, Tensor> q;

                    public Block() : base(nameof(Block))
                    {
                        q = Linear(16, 16);
                        RegisterComponents();
                    }

                    public Block(int d) : base(nameof(Block))
                    {
                        q = Linear(d, d);
                        RegisterComponents();
                    }

                    public override Tensor forward(Tensor x) => q.forward(x);
                }
            }
            """,
            expected: new[] { At("PEFT015", 0, DiagnosticSeverity.Warning), At("PEFT015", 1, DiagnosticSeverity.Warning) });

        [Fact]
        public Task PEFT017_name_the_later_adapter_after_its_field() => ExpectFix(new NameAdapterCodeFix(),
            """
            namespace Demo
            {
                public partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(8)]
                    private Module<Tensor, Tensor> q = Linear(16, 16);

                    [{|#0:Bone(4)|}]
                    private Module<Tensor, Tensor> mlp = Linear(16, 16);

                    [{|#1:IA3|}]
                    private Module<Tensor, Tensor> k = Linear(16, 16);

                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => mlp.forward(q.forward(x));
                }
            }
            """,
            """
            namespace Demo
            {
                public partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(8)]
                    private Module<Tensor, Tensor> q = Linear(16, 16);

                    [Bone(4, Name = "mlp")]
                    private Module<Tensor, Tensor> mlp = Linear(16, 16);

                    [IA3(Name = "k")]
                    private Module<Tensor, Tensor> k = Linear(16, 16);

                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => mlp.forward(q.forward(x));
                }
            }
            """,
            expected: new[] { At("PEFT017", 0), At("PEFT017", 1) });

        [Fact]
        public Task PEFT017_replace_a_name_the_adapter_has() => ExpectFix(new NameAdapterCodeFix(),
            """
            namespace Demo
            {
                public partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(8, Name = "task")] private Module<Tensor, Tensor> q = Linear(16, 16);
                    [{|#0:DoRA(8, Name = "task", Alpha = 16)|}] private Module<Tensor, Tensor> v = Linear(16, 16);
                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => v.forward(q.forward(x));
                }
            }
            """,
            """
            namespace Demo
            {
                public partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(8, Name = "task")] private Module<Tensor, Tensor> q = Linear(16, 16);
                    [DoRA(8, Name = "v", Alpha = 16)] private Module<Tensor, Tensor> v = Linear(16, 16);
                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => v.forward(q.forward(x));
                }
            }
            """,
            expected: At("PEFT017", 0));

        [Fact]
        public Task PEFT034_merge_in_core_space() => ExpectFix(new CoreSpaceCodeFix(),
            """
            namespace Demo
            {
                public partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(4, Name = "a")]
                    [LoRA(4, Name = "b")]
                    [MergeWith("a", "b", Method = {|#0:MergeMethod.IsoC|}, Name = "iso")]
                    private Module<Tensor, Tensor> q = Linear(16, 16);
                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }
            }
            """,
            """
            namespace Demo
            {
                public partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(4, Name = "a")]
                    [LoRA(4, Name = "b")]
                    [MergeWith("a", "b", Method = MergeMethod.IsoC, Name = "iso", Space = MergeSpace.Core)]
                    private Module<Tensor, Tensor> q = Linear(16, 16);
                    public Block() : base(nameof(Block)) => RegisterComponents();
                    public override Tensor forward(Tensor x) => q.forward(x);
                }
            }
            """,
            expected: At("PEFT034", 0, DiagnosticSeverity.Warning));
    }
}
