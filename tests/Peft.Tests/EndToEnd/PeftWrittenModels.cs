using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Tests.EndToEnd;

// The model of tools/peft-interop/peft_interop.py, as PEFT wrote ../shared/fixtures/peft-written with it:
// q = Linear(16, 24), v = Linear(16, 16), f = Linear(16, 16), head = Linear(56, 5); y = head(cat(q(x), v(x), f(x))).
// One class per case, each declaring what that case's adapter_config.json holds.

[PeftModel]
public sealed partial class WrittenLoRA : Module<Tensor, Tensor>
{
    [LoRA(4, Alpha = 8)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [LoRA(4, Alpha = 8)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [LoRA(4, Alpha = 8)] private Module<Tensor, Tensor> f = Linear(16, 16);
    [Trainable] private Module<Tensor, Tensor> head = Linear(56, 5); // modules_to_save: ["head"]

    public WrittenLoRA() : base(nameof(WrittenLoRA)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

[PeftModel]
public sealed partial class WrittenRsLoRA : Module<Tensor, Tensor>
{
    [LoRA(4, Alpha = 8, UseRsLora = true)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [LoRA(4, Alpha = 8, UseRsLora = true)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [LoRA(4, Alpha = 8, UseRsLora = true)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public WrittenRsLoRA() : base(nameof(WrittenRsLoRA)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

[PeftModel]
public sealed partial class WrittenDoRA : Module<Tensor, Tensor>
{
    [DoRA(4, Alpha = 8)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [DoRA(4, Alpha = 8)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [DoRA(4, Alpha = 8)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public WrittenDoRA() : base(nameof(WrittenDoRA)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

[PeftModel]
public sealed partial class WrittenMiss : Module<Tensor, Tensor>
{
    [Bone(4)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [Bone(4)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [Bone(4)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public WrittenMiss() : base(nameof(WrittenMiss)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

[PeftModel]
public sealed partial class WrittenMissBat : Module<Tensor, Tensor>
{
    [Bone(4, Variant = BoneVariant.Bat)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [Bone(4, Variant = BoneVariant.Bat)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [Bone(4, Variant = BoneVariant.Bat)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public WrittenMissBat() : base(nameof(WrittenMissBat)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

[PeftModel]
public sealed partial class WrittenVeRA : Module<Tensor, Tensor>
{
    [VeRA(4)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [VeRA(4)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [VeRA(4)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public WrittenVeRA() : base(nameof(WrittenVeRA)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

[PeftModel]
public sealed partial class WrittenLoHa : Module<Tensor, Tensor>
{
    [LoHa(4, Alpha = 8)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [LoHa(4, Alpha = 8)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [LoHa(4, Alpha = 8)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public WrittenLoHa() : base(nameof(WrittenLoHa)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

[PeftModel]
public sealed partial class WrittenLoKr : Module<Tensor, Tensor>
{
    [LoKr(4, Alpha = 8)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [LoKr(4, Alpha = 8)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [LoKr(4, Alpha = 8)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public WrittenLoKr() : base(nameof(WrittenLoKr)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

[PeftModel]
public sealed partial class WrittenIA3 : Module<Tensor, Tensor>
{
    [IA3] private Module<Tensor, Tensor> q = Linear(16, 24);
    [IA3] private Module<Tensor, Tensor> v = Linear(16, 16);
    [IA3(FeedForward = true)] private Module<Tensor, Tensor> f = Linear(16, 16); // feedforward_modules: ["f"]
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public WrittenIA3() : base(nameof(WrittenIA3)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

// The options PEFT's configs carry beyond rank and alpha, declared on the same tiny model.

[PeftModel]
public sealed partial class MissWithDropout : Module<Tensor, Tensor>
{
    [Bone(4, Dropout = 0.25)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [Bone(4, Dropout = 0.25)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [Bone(4, Dropout = 0.25)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public MissWithDropout() : base(nameof(MissWithDropout)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

[PeftModel]
public sealed partial class LoKrScaledRankDropout : Module<Tensor, Tensor>
{
    [LoKr(4, Alpha = 8, RankDropout = 0.5, RankDropoutScale = true)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [LoKr(4, Alpha = 8, RankDropout = 0.5, RankDropoutScale = true)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [LoKr(4, Alpha = 8, RankDropout = 0.5, RankDropoutScale = true)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public LoKrScaledRankDropout() : base(nameof(LoKrScaledRankDropout)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

[PeftModel]
public sealed partial class VeRAWithoutProjections : Module<Tensor, Tensor>
{
    [VeRA(4, SaveProjection = false)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [VeRA(4, SaveProjection = false)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [VeRA(4, SaveProjection = false)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public VeRAWithoutProjections() : base(nameof(VeRAWithoutProjections)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

[PeftModel]
public sealed partial class WrittenEva : Module<Tensor, Tensor>
{
    [LoRA(4, Alpha = 8, Init = LoRAInit.Eva)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [LoRA(4, Alpha = 8, Init = LoRAInit.Eva)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [LoRA(4, Alpha = 8, Init = LoRAInit.Eva)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public WrittenEva() : base(nameof(WrittenEva)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

// LaMDA (and other methods saved as exactly a LoRA) on the same model: files PEFT reads as its "lora" case.
[PeftModel]
public sealed partial class WrittenLaMDA : Module<Tensor, Tensor>
{
    [LaMDA(4, Alpha = 8)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [LaMDA(4, Alpha = 8)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [LaMDA(4, Alpha = 8)] private Module<Tensor, Tensor> f = Linear(16, 16);
    [Trainable] private Module<Tensor, Tensor> head = Linear(56, 5);

    public WrittenLaMDA() : base(nameof(WrittenLaMDA)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

[PeftModel]
public sealed partial class WrittenLoLDU : Module<Tensor, Tensor>
{
    [LoLDU(4)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [LoLDU(4)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [LoLDU(4)] private Module<Tensor, Tensor> f = Linear(16, 16);
    [Trainable] private Module<Tensor, Tensor> head = Linear(56, 5);

    public WrittenLoLDU() : base(nameof(WrittenLoLDU)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}
