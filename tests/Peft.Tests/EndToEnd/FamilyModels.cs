using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Tests.EndToEnd;

/// <summary>Every adapter method declared by its attribute on one consumer model, as a user writes it.</summary>
[PeftModel]
public sealed partial class Family : Module<Tensor, Tensor>
{
    [DoRA(4, Alpha = 8, Name = "dora")] // PEFT's config holds use_dora once per adapter
    private Module<Tensor, Tensor> dora = Linear(16, 16);

    [LoRA(4, Alpha = 8, Init = LoRAInit.PiSSA, Name = "pissa")]
    private Module<Tensor, Tensor> pissa = Linear(16, 16);

    [Bone(4)]
    private Module<Tensor, Tensor> bone = Linear(16, 16);

    [Bone(4, Variant = BoneVariant.Bat, Name = "bat")] // PEFT's MiSS config holds one variant per adapter
    private Module<Tensor, Tensor> bat = Linear(16, 16);

    // One adapter holds one method (PEFT017): each other method under its own name.
    [Hydra(2, 3, Alpha = 4, Name = "hydra")]
    private Module<Tensor, Tensor> hydra = Linear(16, 16);

    [VeRA(4, Name = "vera")]
    private Module<Tensor, Tensor> vera = Linear(16, 16);

    [LoHa(2, Alpha = 4, Name = "loha")]
    private Module<Tensor, Tensor> loha = Linear(16, 16);

    [LoKr(2, Alpha = 4, Name = "lokr")]
    private Module<Tensor, Tensor> lokr = Linear(16, 16);

    [IA3(Name = "ia3")]
    private Module<Tensor, Tensor> ia3 = Linear(16, 16);

    [IA3(FeedForward = true, Name = "ia3")] // feedforward_modules lists layers: one (IA)³ adapter holds both
    private Module<Tensor, Tensor> ia3ff = Linear(16, 16);

    public Family() : base(nameof(Family)) => RegisterComponents();

    public override Tensor forward(Tensor x)
    {
        foreach (var layer in new[] { dora, pissa, bone, bat, hydra, vera, loha, lokr, ia3, ia3ff })
            x = functional.tanh(layer.forward(x));
        return x;
    }
}
