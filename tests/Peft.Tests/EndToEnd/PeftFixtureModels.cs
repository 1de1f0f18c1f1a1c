using Peft;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Tests.EndToEnd;

// The module paths of Hugging Face's DistilBertForSequenceClassification, enough of it to host the fixture's
// adapter: distilbert.transformer.layer.<i>.attention.{q_lin,v_lin} and the classifier head.

public sealed partial class DistilBertAttention : Module<Tensor, Tensor>
{
    [LoRA(8, Alpha = 16)]
    private Module<Tensor, Tensor> q_lin = Linear(768, 768);

    [LoRA(8, Alpha = 16)]
    private Module<Tensor, Tensor> v_lin = Linear(768, 768);

    public DistilBertAttention() : base("MultiHeadSelfAttention") => RegisterComponents();

    public override Tensor forward(Tensor x) => q_lin.forward(x) + v_lin.forward(x);
}

public sealed class DistilBertLayer : Module<Tensor, Tensor>
{
    private readonly DistilBertAttention attention = new();

    public DistilBertLayer() : base("TransformerBlock") => RegisterComponents();

    public override Tensor forward(Tensor x) => attention.forward(x);
}

public sealed class DistilBertTransformer : Module<Tensor, Tensor>
{
    private readonly ModuleList<DistilBertLayer> layer = new();

    public DistilBertTransformer() : base("Transformer")
    {
        for (int i = 0; i < 6; i++) layer.Add(new DistilBertLayer());
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        foreach (var l in layer) x = l.forward(x);
        return x;
    }
}

public sealed class DistilBertModel : Module<Tensor, Tensor>
{
    private readonly DistilBertTransformer transformer = new();

    public DistilBertModel() : base("DistilBertModel") => RegisterComponents();

    public override Tensor forward(Tensor x) => transformer.forward(x);
}

[PeftModel(BaseModelName = "distilbert-base-uncased", TaskType = "SEQ_CLS")]
public sealed partial class DistilBertForSequenceClassification : Module<Tensor, Tensor>
{
    private readonly DistilBertModel distilbert = new();

    // PEFT matched modules_to_save ["classifier"] by suffix, so the file holds pre_classifier too.
    [Trainable]
    private Module<Tensor, Tensor> pre_classifier = Linear(768, 768);

    [Trainable]
    private Module<Tensor, Tensor> classifier = Linear(768, 2);

    public DistilBertForSequenceClassification() : base(nameof(DistilBertForSequenceClassification)) => RegisterComponents();

    public override Tensor forward(Tensor x) => classifier.forward(pre_classifier.forward(distilbert.forward(x)));
}

// GPT-2's c_attn is a Conv1D whose weight is stored [in, out] (hence fan_in_fan_out: true in the fixture);
// LoRA's A [r, in] and B [out, r] are the same either way, so a Linear(768, 2304) hosts the adapter.

public sealed partial class Gpt2Attention : Module<Tensor, Tensor>
{
    [LoRA(8, Alpha = 8)]
    private Module<Tensor, Tensor> c_attn = Linear(768, 2304);

    public Gpt2Attention() : base("GPT2Attention") => RegisterComponents();

    public override Tensor forward(Tensor x) => c_attn.forward(x);
}

public sealed class Gpt2Block : Module<Tensor, Tensor>
{
    private readonly Gpt2Attention attn = new();

    public Gpt2Block() : base("GPT2Block") => RegisterComponents();

    public override Tensor forward(Tensor x) => attn.forward(x)[.., ..768];
}

public sealed class Gpt2Model : Module<Tensor, Tensor>
{
    private readonly ModuleList<Gpt2Block> h = new();

    public Gpt2Model() : base("GPT2Model")
    {
        for (int i = 0; i < 12; i++) h.Add(new Gpt2Block());
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        foreach (var block in h) x = block.forward(x);
        return x;
    }
}

[PeftModel(BaseModelName = "gpt2", TaskType = "SEQ_CLS")]
public sealed partial class Gpt2ForSequenceClassification : Module<Tensor, Tensor>
{
    private readonly Gpt2Model transformer = new();

    [Trainable]
    private Module<Tensor, Tensor> score = Linear(768, 6, hasBias: false);

    public Gpt2ForSequenceClassification() : base(nameof(Gpt2ForSequenceClassification)) => RegisterComponents();

    public override Tensor forward(Tensor x) => score.forward(transformer.forward(x));
}
