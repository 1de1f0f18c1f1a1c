using System;
using Peft;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Samples.TinyLm;

/// <summary>Causal self-attention whose query and value projections get LoRA adapters.</summary>
[LoRA(8, Alpha = 16, Dropout = 0.05, Targets = new[] { nameof(q), nameof(v) })]
public sealed partial class Attention : Module<Tensor, Tensor>
{
    private readonly int _heads;
    private Module<Tensor, Tensor> q, k, v, o;

    public Attention(int dim, int heads) : base(nameof(Attention))
    {
        _heads = heads;
        q = Linear(dim, dim);
        k = Linear(dim, dim);
        v = Linear(dim, dim);
        o = Linear(dim, dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1], d = x.shape[2], h = _heads;
        Tensor Split(Tensor y) => y.view(b, t, h, d / h).transpose(1, 2);
        var attended = functional.scaled_dot_product_attention(Split(q.forward(x)), Split(k.forward(x)), Split(v.forward(x)), is_casual: true);
        return o.forward(attended.transpose(1, 2).reshape(b, t, d));
    }
}

/// <summary>A pre-norm transformer block. Its feed-forward layers stay frozen.</summary>
public sealed class Block : Module<Tensor, Tensor>
{
    private readonly LayerNorm norm1, norm2;
    private readonly Attention attention;
    private readonly Module<Tensor, Tensor> up, down;

    public Block(int dim, int heads) : base(nameof(Block))
    {
        norm1 = LayerNorm(dim);
        norm2 = LayerNorm(dim);
        attention = new Attention(dim, heads);
        up = Linear(dim, 4 * dim);
        down = Linear(4 * dim, dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        x = x + attention.forward(norm1.forward(x));
        return x + down.forward(functional.gelu(up.forward(norm2.forward(x))));
    }
}

/// <summary>
/// A character-level language model. <c>[PeftModel]</c> freezes everything but the LoRA adapters in
/// <see cref="Attention"/> and the <c>[Trainable]</c> output head, and gives the model-level API.
/// </summary>
[PeftModel(TaskType = "CAUSAL_LM")]
public sealed partial class TinyTransformer : Module<Tensor, Tensor>
{
    private readonly Embedding tokens, positions;
    private readonly ModuleList<Block> blocks;
    private readonly LayerNorm norm;

    [Trainable]
    private Module<Tensor, Tensor> head;

    public TinyTransformer(int vocab, int context, int dim = 64, int layers = 2, int heads = 4) : base(nameof(TinyTransformer))
    {
        Context = context;
        tokens = Embedding(vocab, dim);
        positions = Embedding(context, dim);
        blocks = new ModuleList<Block>();
        for (int i = 0; i < layers; i++) blocks.Add(new Block(dim, heads));
        norm = LayerNorm(dim);
        head = Linear(dim, vocab);
        RegisterComponents();
    }

    public int Context { get; }

    public override Tensor forward(Tensor ids)
    {
        var x = tokens.forward(ids) + positions.forward(arange(ids.shape[1], device: ids.device));
        foreach (var block in blocks) x = block.forward(x);
        return head.forward(norm.forward(x));
    }
}
