using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Tests.EndToEnd;

// PEFT017 across classes: each class alone is fine, so no analyzer sees the conflict; the root refuses it when built.

/// <summary>An attention-like block: LoRA on its projection, adapter "default".</summary>
public sealed partial class AttnPart : Module<Tensor, Tensor>
{
    [LoRA(4, Alpha = 8)]
    private Module<Tensor, Tensor> q = Linear(16, 16);

    public AttnPart() : base(nameof(AttnPart)) => RegisterComponents();

    public override Tensor forward(Tensor x) => q.forward(x);
}

/// <summary>An MLP whose LoRA, also "default", drops out where the attention's does not: one config cannot hold both.</summary>
public sealed partial class DropoutMlpPart : Module<Tensor, Tensor>
{
    [LoRA(4, Alpha = 8, Dropout = 0.1)]
    private Module<Tensor, Tensor> fc = Linear(16, 16);

    public DropoutMlpPart() : base(nameof(DropoutMlpPart)) => RegisterComponents();

    public override Tensor forward(Tensor x) => fc.forward(x);
}

/// <summary>An MLP with Bone under the default name: a second method for the attention's adapter.</summary>
public sealed partial class BoneMlpPart : Module<Tensor, Tensor>
{
    [Bone(4)]
    private Module<Tensor, Tensor> fc = Linear(16, 16);

    public BoneMlpPart() : base(nameof(BoneMlpPart)) => RegisterComponents();

    public override Tensor forward(Tensor x) => fc.forward(x);
}

/// <summary>An MLP whose LoRA differs from the attention's only in rank and alpha, which PEFT keeps per layer.</summary>
public sealed partial class RankMlpPart : Module<Tensor, Tensor>
{
    [LoRA(8, Alpha = 16)]
    private Module<Tensor, Tensor> fc = Linear(16, 16);

    public RankMlpPart() : base(nameof(RankMlpPart)) => RegisterComponents();

    public override Tensor forward(Tensor x) => fc.forward(x);
}

/// <summary>Bone on the MLP under its own name: the way to train LoRA on attention and Bone on the MLP together.</summary>
public sealed partial class NamedBoneMlpPart : Module<Tensor, Tensor>
{
    [Bone(4, Name = "mlp")]
    private Module<Tensor, Tensor> fc = Linear(16, 16);

    public NamedBoneMlpPart() : base(nameof(NamedBoneMlpPart)) => RegisterComponents();

    public override Tensor forward(Tensor x) => fc.forward(x);
}

/// <summary>LoRA "default" in both parts, with two dropouts: refused when built.</summary>
[PeftModel]
public sealed partial class DropoutConflictModel : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> attn = new AttnPart();
    private readonly Module<Tensor, Tensor> mlp = new DropoutMlpPart();

    public DropoutConflictModel() : base(nameof(DropoutConflictModel)) => RegisterComponents();

    public override Tensor forward(Tensor x) => mlp.forward(functional.relu(attn.forward(x)));
}

/// <summary>LoRA and Bone both "default": refused when built.</summary>
[PeftModel]
public sealed partial class MethodConflictModel : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> attn = new AttnPart();
    private readonly Module<Tensor, Tensor> mlp = new BoneMlpPart();

    public MethodConflictModel() : base(nameof(MethodConflictModel)) => RegisterComponents();

    public override Tensor forward(Tensor x) => mlp.forward(functional.relu(attn.forward(x)));
}

/// <summary>LoRA "default" in both parts with two ranks and alphas: one adapter, rank_pattern / alpha_pattern.</summary>
[PeftModel]
public sealed partial class RankOnlyModel : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> attn = new AttnPart();
    private readonly Module<Tensor, Tensor> mlp = new RankMlpPart();

    public RankOnlyModel() : base(nameof(RankOnlyModel)) => RegisterComponents();

    public override Tensor forward(Tensor x) => mlp.forward(functional.relu(attn.forward(x)));
}

/// <summary>LoRA "default" on the attention, Bone "mlp" on the MLP: two adapters, trained together.</summary>
[PeftModel]
public sealed partial class NamedMethodsModel : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> attn = new AttnPart();
    private readonly Module<Tensor, Tensor> mlp = new NamedBoneMlpPart();

    public NamedMethodsModel() : base(nameof(NamedMethodsModel)) => RegisterComponents();

    public override Tensor forward(Tensor x) => mlp.forward(functional.relu(attn.forward(x)));
}
