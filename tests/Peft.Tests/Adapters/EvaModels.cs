using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Tests.Adapters;

/// <summary>One EVA layer on an 8-wide input.</summary>
[PeftModel]
public sealed partial class EvaSingle : Module<Tensor, Tensor>
{
    [LoRA(4, Alpha = 8, Init = LoRAInit.Eva)] private Module<Tensor, Tensor> a = Linear(8, 8);

    public EvaSingle() : base(nameof(EvaSingle)) => RegisterComponents();

    public override Tensor forward(Tensor x) => a.forward(x);
}

/// <summary>Three EVA layers of rank 1 (budget 3), each on its own 8-wide slice of a 24-wide input.</summary>
[PeftModel]
public sealed partial class EvaThree : Module<Tensor, Tensor>
{
    [LoRA(1, Alpha = 8, Init = LoRAInit.Eva)] private Module<Tensor, Tensor> a = Linear(8, 8);
    [LoRA(1, Alpha = 8, Init = LoRAInit.Eva)] private Module<Tensor, Tensor> b = Linear(8, 8);
    [LoRA(1, Alpha = 8, Init = LoRAInit.Eva)] private Module<Tensor, Tensor> c = Linear(8, 8);

    public EvaThree() : base(nameof(EvaThree)) => RegisterComponents();

    public override Tensor forward(Tensor x) =>
        a.forward(x.narrow(-1, 0, 8)) + b.forward(x.narrow(-1, 8, 8)) + c.forward(x.narrow(-1, 16, 8));
}

/// <summary>Two EVA layers of rank 4 (budget 8) on the two halves of a 16-wide input.</summary>
[PeftModel]
public sealed partial class EvaTwo : Module<Tensor, Tensor>
{
    [LoRA(4, Alpha = 8, Init = LoRAInit.Eva)] private Module<Tensor, Tensor> a = Linear(8, 8);
    [LoRA(4, Alpha = 8, Init = LoRAInit.Eva)] private Module<Tensor, Tensor> b = Linear(8, 8);

    public EvaTwo() : base(nameof(EvaTwo)) => RegisterComponents();

    public override Tensor forward(Tensor x) => a.forward(x.narrow(-1, 0, 8)) + b.forward(x.narrow(-1, 8, 8));
}

/// <summary>An attention-like block: q, k, v read one input (one decomposition), o reads their mix.</summary>
[PeftModel]
public sealed partial class EvaAttention : Module<Tensor, Tensor>
{
    [LoRA(2, Alpha = 4, Init = LoRAInit.Eva)] private Module<Tensor, Tensor> q = Linear(8, 8);
    [LoRA(2, Alpha = 4, Init = LoRAInit.Eva)] private Module<Tensor, Tensor> k = Linear(8, 8);
    [LoRA(2, Alpha = 4, Init = LoRAInit.Eva)] private Module<Tensor, Tensor> v = Linear(8, 8);
    [LoRA(2, Alpha = 4, Init = LoRAInit.Eva)] private Module<Tensor, Tensor> o = Linear(8, 8);

    public EvaAttention() : base(nameof(EvaAttention)) => RegisterComponents();

    public override Tensor forward(Tensor x) => o.forward(functional.tanh(q.forward(x) * k.forward(x) + v.forward(x)));
}
