using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Tests.EndToEnd;

/// <summary>
/// The consumer: two named LoRA adapters on every layer, a class-level TIES merge of them, a linear merge,
/// a field-level SVD merge, and a component class with its own DARE merge.
/// </summary>
[PeftModel]
[MergeWith("a", "b", Method = MergeMethod.Ties, Weights = new[] { 0.5, 0.5 }, Density = 0.5, Name = "ab")]
[MergeWith("a", "b", Weights = new[] { 0.7, 0.3 }, Name = "a_plus_b")]
public sealed partial class TwoTask : Module<Tensor, Tensor>
{
    [LoRA(4, Name = "a")]
    [LoRA(4, Alpha = 8, UseRsLora = true, Name = "b")]
    private Module<Tensor, Tensor> q = Linear(8, 8);

    [LoRA(2, Alpha = 4, Name = "a")]
    [LoRA(6, UseRsLora = true, Name = "b")]
    [MergeWith("a", "b", Method = MergeMethod.Svd, Rank = 3, Name = "v_svd")]
    private Module<Tensor, Tensor> v = Linear(8, 8);

    private readonly TwoTaskHead head = new();

    public TwoTask() : base(nameof(TwoTask)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(functional.relu(v.forward(functional.relu(q.forward(x)))));

    internal Module<Tensor, Tensor> Q => q;
    internal Module<Tensor, Tensor> V => v;
    internal TwoTaskHead Head => head;
}

/// <summary>Not a root: its own [MergeWith] acts on its own layers.</summary>
[MergeWith("a", "b", Method = MergeMethod.DareLinear, Density = 0.5, Seed = 11, Name = "dare")]
public sealed partial class TwoTaskHead : Module<Tensor, Tensor>
{
    [LoRA(4, Name = "a")]
    [LoRA(4, UseRsLora = true, Name = "b")]
    private Module<Tensor, Tensor> proj = Linear(8, 8);

    public TwoTaskHead() : base(nameof(TwoTaskHead)) => RegisterComponents();

    public override Tensor forward(Tensor x) => proj.forward(x);

    internal Module<Tensor, Tensor> Proj => proj;
}

/// <summary>Bone adapters cannot take a LoRA result: their merge folds into the base instead.</summary>
// PEFT011 says so at compile time; this model exists to show the runtime's own refusal, for shapes it cannot see.
#pragma warning disable PEFT011
[PeftModel]
[MergeWith("a", "b", Name = "ab")]
public sealed partial class BoneTwoTask : Module<Tensor, Tensor>
{
    // Bone "a" and Bat "b" on both layers: one adapter holds one variant (PEFT017).
    [Bone(2, Name = "a")]
    [Bone(2, Variant = BoneVariant.Bat, Name = "b")]
    private Module<Tensor, Tensor> q = Linear(8, 8);

    [Bone(2, Name = "a")]
    [Bone(2, Variant = BoneVariant.Bat, Name = "b")]
    private Module<Tensor, Tensor> v = Linear(8, 8);

    public BoneTwoTask() : base(nameof(BoneTwoTask)) => RegisterComponents();

    public override Tensor forward(Tensor x) => v.forward(functional.relu(q.forward(x)));
}
