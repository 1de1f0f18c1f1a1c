using System;
using System.Linq;
using Peft;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Samples;

/// <summary>The adapter methods the samples can fine-tune with.</summary>
public enum AdapterMethod
{
    /// <summary><c>[LoRA(8, Alpha = 16)]</c> on the attention's query and value projections.</summary>
    LoRA,

    /// <summary><c>[DoRA(8, Alpha = 16)]</c>: LoRA plus a learned magnitude per output row.</summary>
    DoRA,

    /// <summary><c>[Bone(8)]</c> (PEFT's MiSS): one block matrix per layer, shared across input blocks.</summary>
    Bone,

    /// <summary><c>[SaRA(8)]</c>: the 8·(in + out) smallest-magnitude weights of q and v train, as a sparse delta.</summary>
    SaRA,
    /// <summary><c>[LoRA(8, Alpha = 16, Init = LoRAInit.Eva)]</c>: LoRA whose A comes from the data (<c>InitializeEva</c>) and whose ranks are redistributed.</summary>
    Eva,
    /// <summary>
    /// <c>[AdaLoRA(4, InitRank = 8, Alpha = 16)]</c>: starts at rank 8 per layer and masks the least important ranks
    /// until 4 per layer are left on average (AdapterTrainer runs the allocation each step).
    /// </summary>
    AdaLoRA,

    /// <summary><c>[LaMDA(8, Alpha = 16, FreezeBSteps = 90)]</c>: a frozen projection, a trainable 8×8 core, B frozen column by column.</summary>
    LaMDA,

    /// <summary><c>[LoLDU(32)]</c>: the first 32 pivots of W's LU decomposition trained, 32 numbers per layer.</summary>
    LoLDU,

    /// <summary><c>[RandLoRA(8, Alpha = 16)]</c>: λ and γ of q and v train over frozen random bases shared by both (a full-rank update).</summary>
    RandLoRA,
}

/// <summary>Causal multi-head self-attention, whatever adapters its subclasses put on q and v.</summary>
public abstract class AttentionBase : Module<Tensor, Tensor>
{
    private readonly int _heads;

    protected AttentionBase(string name, int heads) : base(name) => _heads = heads;

    protected Tensor Attend(Module<Tensor, Tensor> q, Module<Tensor, Tensor> k, Module<Tensor, Tensor> v, Module<Tensor, Tensor> o, Tensor x)
    {
        long b = x.shape[0], t = x.shape[1], d = x.shape[2], h = _heads;
        Tensor Split(Tensor y) => y.view(b, t, h, d / h).transpose(1, 2);
        var attended = functional.scaled_dot_product_attention(Split(q.forward(x)), Split(k.forward(x)), Split(v.forward(x)), is_casual: true);
        return o.forward(attended.transpose(1, 2).reshape(b, t, d));
    }
}

/// <summary>Attention whose query and value projections get LoRA adapters: s·B·A added to each, s = 16 / 8.</summary>
[LoRA(8, Alpha = 16, Dropout = 0.05, Targets = new[] { nameof(q), nameof(v) })]
public sealed partial class LoRAAttention : AttentionBase
{
    private Module<Tensor, Tensor> q, k, v, o;

    public LoRAAttention(int dim, int heads) : base(nameof(LoRAAttention), heads)
    {
        (q, k, v, o) = (Linear(dim, dim), Linear(dim, dim), Linear(dim, dim), Linear(dim, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Attend(q, k, v, o, x);
}

/// <summary>Attention whose query and value projections get DoRA adapters (LoRA's update plus a learned magnitude).</summary>
[DoRA(8, Alpha = 16, Dropout = 0.05, Targets = new[] { nameof(q), nameof(v) })]
public sealed partial class DoRAAttention : AttentionBase
{
    private Module<Tensor, Tensor> q, k, v, o;

    public DoRAAttention(int dim, int heads) : base(nameof(DoRAAttention), heads)
    {
        (q, k, v, o) = (Linear(dim, dim), Linear(dim, dim), Linear(dim, dim), Linear(dim, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Attend(q, k, v, o, x);
}

/// <summary>
/// Attention whose query and value projections get EVA-initialised LoRA adapters: they read one input, so they share
/// one decomposition; <c>InitializeEva</c> must run before training.
/// </summary>
[LoRA(8, Alpha = 16, Dropout = 0.05, Init = LoRAInit.Eva, Targets = new[] { nameof(q), nameof(v) })]
public sealed partial class EvaAttention : AttentionBase
{
    private Module<Tensor, Tensor> q, k, v, o;

    public EvaAttention(int dim, int heads) : base(nameof(EvaAttention), heads)
    {
        (q, k, v, o) = (Linear(dim, dim), Linear(dim, dim), Linear(dim, dim), Linear(dim, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Attend(q, k, v, o, x);
}

/// <summary>Attention whose query and value projections get Bone adapters with blocks of 8 (8 must divide 64).</summary>
[Bone(8, Targets = new[] { nameof(q), nameof(v) })]
public sealed partial class BoneAttention : AttentionBase
{
    private Module<Tensor, Tensor> q, k, v, o;

    public BoneAttention(int dim, int heads) : base(nameof(BoneAttention), heads)
    {
        (q, k, v, o) = (Linear(dim, dim), Linear(dim, dim), Linear(dim, dim), Linear(dim, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Attend(q, k, v, o, x);
}

/// <summary>Attention whose query and value projections train their 8·(64 + 64) smallest weights (SaRA).</summary>
[SaRA(8, Targets = new[] { nameof(q), nameof(v) })]
public sealed partial class SaRAAttention : AttentionBase
{
    private Module<Tensor, Tensor> q, k, v, o;

    public SaRAAttention(int dim, int heads) : base(nameof(SaRAAttention), heads)
    {
        (q, k, v, o) = (Linear(dim, dim), Linear(dim, dim), Linear(dim, dim), Linear(dim, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Attend(q, k, v, o, x);
}

/// <summary>
/// Attention whose query and value projections get AdaLoRA adapters: rank 8 each at first, 4 per layer on average after
/// step 300 − 60 (the samples' default step count; <see cref="AdapterSetup.Recreate"/> fits the schedule to another).
/// </summary>
[AdaLoRA(4, InitRank = 8, Alpha = 16, Dropout = 0.05, Tinit = 30, Tfinal = 60, DeltaT = 10, TotalSteps = 300, Targets = new[] { nameof(q), nameof(v) })]
public sealed partial class AdaLoRAAttention : AttentionBase
{
    private Module<Tensor, Tensor> q, k, v, o;

    public AdaLoRAAttention(int dim, int heads) : base(nameof(AdaLoRAAttention), heads)
    {
        (q, k, v, o) = (Linear(dim, dim), Linear(dim, dim), Linear(dim, dim), Linear(dim, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Attend(q, k, v, o, x);
}

/// <summary>
/// Attention whose query and value projections get LaMDA adapters: A frozen, an 8×8 core trained, B frozen column by
/// column over the first 90 steps (the published code's 0.3 of a 300-step run).
/// </summary>
[LaMDA(8, Alpha = 16, Dropout = 0.05, FreezeBSteps = 90, Targets = new[] { nameof(q), nameof(v) })]
public sealed partial class LaMDAAttention : AttentionBase
{
    private Module<Tensor, Tensor> q, k, v, o;

    public LaMDAAttention(int dim, int heads) : base(nameof(LaMDAAttention), heads)
    {
        (q, k, v, o) = (Linear(dim, dim), Linear(dim, dim), Linear(dim, dim), Linear(dim, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Attend(q, k, v, o, x);
}

/// <summary>Attention whose query and value projections get LoLDU adapters: 32 of W's LU pivots trained per layer.</summary>
[LoLDU(32, Targets = new[] { nameof(q), nameof(v) })]
public sealed partial class LoLDUAttention : AttentionBase
{
    private Module<Tensor, Tensor> q, k, v, o;

    public LoLDUAttention(int dim, int heads) : base(nameof(LoLDUAttention), heads)
    {
        (q, k, v, o) = (Linear(dim, dim), Linear(dim, dim), Linear(dim, dim), Linear(dim, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Attend(q, k, v, o, x);
}

/// <summary>Attention whose query and value projections train RandLoRA's scalings over shared random bases.</summary>
[RandLoRA(8, Alpha = 16, Targets = new[] { nameof(q), nameof(v) })]
public sealed partial class RandLoRAAttention : AttentionBase
{
    private Module<Tensor, Tensor> q, k, v, o;

    public RandLoRAAttention(int dim, int heads) : base(nameof(RandLoRAAttention), heads)
    {
        (q, k, v, o) = (Linear(dim, dim), Linear(dim, dim), Linear(dim, dim), Linear(dim, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Attend(q, k, v, o, x);
}

/// <summary>A pre-norm transformer block. Its feed-forward layers stay frozen.</summary>
public sealed class Block : Module<Tensor, Tensor>
{
    private readonly LayerNorm norm1, norm2;
    private readonly Module<Tensor, Tensor> attention;
    private readonly Module<Tensor, Tensor> up, down;

    public Block(int dim, int heads, AdapterMethod method) : base(nameof(Block))
    {
        norm1 = LayerNorm(dim);
        norm2 = LayerNorm(dim);
        attention = method switch
        {
            AdapterMethod.LoRA => new LoRAAttention(dim, heads),
            AdapterMethod.DoRA => new DoRAAttention(dim, heads),
            AdapterMethod.Bone => new BoneAttention(dim, heads),
            AdapterMethod.SaRA => new SaRAAttention(dim, heads),
            AdapterMethod.Eva => new EvaAttention(dim, heads),
            AdapterMethod.AdaLoRA => new AdaLoRAAttention(dim, heads),
            AdapterMethod.LaMDA => new LaMDAAttention(dim, heads),
            AdapterMethod.LoLDU => new LoLDUAttention(dim, heads),
            AdapterMethod.RandLoRA => new RandLoRAAttention(dim, heads),
            _ => throw new ArgumentOutOfRangeException(nameof(method)),
        };
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
/// A character-level language model. <c>[PeftModel]</c> freezes everything but the adapters in the attention
/// layers and the <c>[Trainable]</c> output head, and gives the model-level API (save, load, merge, ...).
/// </summary>
[PeftModel(TaskType = "CAUSAL_LM")]
public sealed partial class TinyTransformer : Module<Tensor, Tensor>
{
    private readonly Embedding tokens, positions;
    private readonly ModuleList<Block> blocks;
    private readonly LayerNorm norm;

    [Trainable]
    private Module<Tensor, Tensor> head;

    public TinyTransformer(int vocab, int context, AdapterMethod method = AdapterMethod.LoRA, int dim = 64, int layers = 2, int heads = 4)
        : base(nameof(TinyTransformer))
    {
        Context = context;
        Method = method;
        tokens = Embedding(vocab, dim);
        positions = Embedding(context, dim);
        blocks = new ModuleList<Block>();
        for (int i = 0; i < layers; i++) blocks.Add(new Block(dim, heads, method));
        norm = LayerNorm(dim);
        head = Linear(dim, vocab);
        RegisterComponents();
    }

    public int Context { get; }

    public AdapterMethod Method { get; }

    public override Tensor forward(Tensor ids)
    {
        var x = tokens.forward(ids) + positions.forward(arange(ids.shape[1], device: ids.device));
        foreach (var block in blocks) x = block.forward(x);
        return head.forward(norm.forward(x));
    }

    /// <summary>Every scalar of the model, frozen ones included.</summary>
    public long TotalParameterCount => parameters().Sum(p => p.numel());

    /// <summary>The trainable scalars that belong to adapters (the rest of <c>TrainableParameterCount</c> is the head).</summary>
    public long AdapterParameterCount =>
        AdapterLayers.Sum(l => l.Layer.AdapterNames.Sum(a => l.Layer.AdapterParameters(a).Sum(p => p.Parameter.numel())));
}
