using Peft;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Tests.EndToEnd;

/// <summary>DESIGN's example, as a consumer writes it: two LoRA fields, a trainable head, a frozen layer.</summary>
[PeftModel]
public sealed partial class Block : Module<Tensor, Tensor>
{
    [LoRA(4, Alpha = 8)]
    private Module<Tensor, Tensor> q = Linear(32, 32);

    [LoRA(4, Alpha = 8)]
    private Module<Tensor, Tensor> v = Linear(32, 32);

    [Trainable]
    private Module<Tensor, Tensor> head = Linear(32, 10);

    private Module<Tensor, Tensor> o = Linear(32, 32);

    public Block() : base(nameof(Block)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(o.forward(q.forward(x) + v.forward(x)));

    internal Module<Tensor, Tensor> Q => q;
    internal Module<Tensor, Tensor> V => v;
    internal Module<Tensor, Tensor> O => o;
    internal Module<Tensor, Tensor> Head => head;
}

/// <summary>Adapters deep inside plain submodules, found by the root at registration.</summary>
public sealed partial class Layer : Module<Tensor, Tensor>
{
    [LoRA(2, Alpha = 4, UseRsLora = true)]
    private Module<Tensor, Tensor> proj = Linear(16, 16);

    private readonly Module<Tensor, Tensor> act = ReLU();

    public Layer() : base(nameof(Layer)) => RegisterComponents();

    public override Tensor forward(Tensor x) => act.forward(proj.forward(x));
}

[PeftModel]
public sealed partial class Stack : Module<Tensor, Tensor>
{
    private readonly ModuleList<Layer> layers = new(new Layer(), new Layer(), new Layer());

    [Trainable]
    private Module<Tensor, Tensor> score = Linear(16, 3);

    public Stack() : base(nameof(Stack)) => RegisterComponents();

    public override Tensor forward(Tensor x)
    {
        foreach (var layer in layers) x = layer.forward(x);
        return score.forward(x);
    }
}
