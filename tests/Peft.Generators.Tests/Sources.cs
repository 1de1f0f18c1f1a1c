namespace Peft.Generators.Tests
{
    /// <summary>Inputs of the expected-source tests.</summary>
    internal static class Sources
    {
        public const string Block = Harness.Usings + """
            namespace Demo
            {
                [PeftModel]
                public sealed partial class Block : Module<Tensor, Tensor>
                {
                    [LoRA(4, Alpha = 8)]
                    private Module<Tensor, Tensor> q = Linear(512, 512);

                    [LoRA(4, Alpha = 8, Dropout = 0.05)]
                    private Module<Tensor, Tensor> v = Linear(512, 512);

                    [Trainable]
                    private Module<Tensor, Tensor> head = Linear(512, 10);

                    private Module<Tensor, Tensor> o = Linear(512, 512);

                    private Attention attention = new Attention();

                    public Block() : base(nameof(Block)) => RegisterComponents();

                    public override Tensor forward(Tensor x) => head.forward(o.forward(q.forward(x) + v.forward(x)) + attention.forward(x));
                }
            }
            """;

        public const string Attention = Harness.Usings + """
            namespace Demo
            {
                public partial class Attention : Module<Tensor, Tensor>
                {
                    private const int D = 64;

                    [LoRA(rank: 8, Init = LoRAInit.Gaussian, UseRsLora = true)]
                    private Module<Tensor, Tensor> k;

                    public Attention() : base(nameof(Attention))
                    {
                        this.k = nn.Linear(D, D * 2, hasBias: false);
                        RegisterComponents();
                    }

                    public override Tensor forward(Tensor x) => k.forward(x);
                }
            }
            """;

        public const string Nested = Harness.Usings + """
            namespace Demo.Deep
            {
                public partial struct Holder
                {
                    internal sealed partial class Outer
                    {
                        public partial class Inner : Module<Tensor, Tensor>
                        {
                            [LoRA(2)]
                            public Module<Tensor, Tensor> proj = Linear(16, 8);

                            public Inner() : base(nameof(Inner)) => RegisterComponents();

                            public override Tensor forward(Tensor x) => proj.forward(x);
                        }
                    }
                }
            }
            """;

        public const string Generic = Harness.Usings + """
            namespace Demo
            {
                public partial class Adapted<TInner> : Module<Tensor, Tensor>
                    where TInner : Module<Tensor, Tensor>
                {
                    [LoRA(4, Alpha = 16)]
                    public Module<Tensor, Tensor>? Proj { get; set; } = Linear(32, 32);

                    [Trainable]
                    private TInner inner;

                    public Adapted(TInner inner) : base("adapted")
                    {
                        this.inner = inner;
                        RegisterComponents();
                    }

                    public override Tensor forward(Tensor x) => inner.forward(Proj!.forward(x));
                }
            }
            """;

        public const string ClassTargets = Harness.Usings + """
            namespace Demo
            {
                [LoRA(8, Targets = new[] { nameof(q), nameof(v), "missing" }, Alpha = 16)]
                [Bone(64, Targets = new[] { nameof(o) }, Variant = BoneVariant.Bat)]
                public partial class SelfAttention : Module<Tensor, Tensor>
                {
                    private Module<Tensor, Tensor> q = Linear(256, 256);
                    private Module<Tensor, Tensor> k = Linear(256, 256);

                    [TorchSharp.Utils.ComponentName(Name = "value")]
                    private Module<Tensor, Tensor> v = Linear(256, 128);

                    private Module<Tensor, Tensor> o = Linear(128, 256);

                    public SelfAttention() : base(nameof(SelfAttention)) => RegisterComponents();

                    public override Tensor forward(Tensor x) => o.forward(v.forward(q.forward(x) + k.forward(x)));
                }
            }
            """;

        public const string NamedAdapters = Harness.Usings + """
            namespace Demo
            {
                [PeftModel]
                public partial class MultiTask : Module<Tensor, Tensor>
                {
                    [LoRA(4, Name = "math")]
                    [LoRA(8, Alpha = 16, Name = "code")]
                    private Module<Tensor, Tensor> q = Linear(128, 128);

                    public MultiTask() : base(nameof(MultiTask)) => RegisterComponents();

                    public override Tensor forward(Tensor x) => q.forward(x);
                }
            }
            """;

        public const string UnknownShape = Harness.Usings + """
            namespace Demo
            {
                public partial class Wrapper : Module<Tensor, Tensor>
                {
                    private static long Width = 64;

                    [LoRA(2, Dropout = 1e-3)]
                    private Module<Tensor, Tensor> layer;

                    [LoRA(2)]
                    private Module<Tensor, Tensor> scaled = Linear(Width, 64);

                    public Wrapper(Module<Tensor, Tensor> layer) : base(nameof(Wrapper))
                    {
                        this.layer = layer;
                        RegisterComponents();
                    }

                    public override Tensor forward(Tensor x) => scaled.forward(layer.forward(x));
                }
            }
            """;

        public const string Merges = Harness.Usings + """
            namespace Demo
            {
                [PeftModel]
                [MergeWith("math", "code", Method = MergeMethod.Ties, Weights = new[] { 0.5, 0.5 }, Density = 0.5, Name = "math_code")]
                [MergeWith("math", "code", Weights = new[] { 1.0 }, Name = "wrong_weights")]
                [MergeWith("math", "code", Name = "adapters")]
                public partial class Merged : Module<Tensor, Tensor>
                {
                    [LoRA(4, Name = "math")]
                    [LoRA(8, Alpha = 16, Name = "code")]
                    [MergeWith("math", "code", Method = MergeMethod.Svd, Rank = 6, Name = "q-svd")]
                    private Module<Tensor, Tensor> q = Linear(128, 128);

                    private Experts experts = new Experts();

                    public Merged() : base(nameof(Merged)) => RegisterComponents();

                    public override Tensor forward(Tensor x) => experts.forward(q.forward(x));
                }

                [MergeWith("math", "code", Method = MergeMethod.DareTies, Density = 0.7, Seed = 3, Name = "mixed")]
                [MergeWith("math", "nope", Name = "skipped")]
                public partial class Experts : Module<Tensor, Tensor>
                {
                    [LoRA(4, Name = "math")]
                    [LoRA(4, Name = "code")]
                    private Module<Tensor, Tensor> up = Linear(128, 64);

                    [LoRA(4, Name = "math")]
                    [MergeWith("math", Method = MergeMethod.Linear, Weights = new[] { 2.0 }, Name = "double")]
                    private Module<Tensor, Tensor> down = Linear(64, 128);

                    public Experts() : base(nameof(Experts)) => RegisterComponents();

                    public override Tensor forward(Tensor x) => down.forward(up.forward(x));
                }
            }
            """;

        public const string NoAnnotations = """
            namespace Plain
            {
                public static class Program
                {
                    public static int Main() => 0;
                }
            }
            """;
    }
}
