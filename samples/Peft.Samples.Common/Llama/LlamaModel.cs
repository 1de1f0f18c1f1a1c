using System;
using System.Linq;
using Peft;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Samples.Llama;

// A readable Llama whose module tree mirrors transformers' LlamaForCausalLM, so every parameter path equals the
// checkpoint's key (model.layers.0.self_attn.q_proj.weight) and PEFT's module path (model.layers.0.self_attn.q_proj).

/// <summary>Root-mean-square layer norm (<c>LlamaRMSNorm</c>): x / sqrt(mean(x²) + eps) · weight, computed in float32.</summary>
public sealed class LlamaRMSNorm : Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double _eps;

    public LlamaRMSNorm(int size, double eps) : base(nameof(LlamaRMSNorm))
    {
        weight = new Parameter(ones(size));
        _eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var dtype = x.dtype;
        var h = x.to(ScalarType.Float32);
        h = h * rsqrt(h.pow(2).mean(new long[] { -1 }, keepdim: true) + _eps);
        return (weight * h.to(dtype)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Rotary position embeddings in Hugging Face's rotate_half layout: the first and second half of each head's
/// dimensions are the two coordinates of each rotated pair. The cos / sin tables are plain tensors (like
/// transformers' non-persistent <c>inv_freq</c>), not parameters or saved buffers.
/// </summary>
public sealed class LlamaRotary : IDisposable
{
    private readonly Tensor _cos, _sin;

    public LlamaRotary(int headDim, int maxPositions, double theta)
    {
        using var scope = NewDisposeScope();
        var invFreq = 1.0 / pow(theta, arange(0, headDim, 2, dtype: ScalarType.Float64) / headDim);
        var freqs = outer(arange(maxPositions, dtype: ScalarType.Float64), invFreq);
        var emb = cat(new[] { freqs, freqs }, -1);
        _cos = emb.cos().to(ScalarType.Float32).DetachFromDisposeScope();
        _sin = emb.sin().to(ScalarType.Float32).DetachFromDisposeScope();
    }

    /// <summary>Rotates <paramref name="x"/> [batch, heads, seq, head_dim] at positions 0 .. seq-1.</summary>
    public Tensor Apply(Tensor x)
    {
        long t = x.shape[2];
        if (t > _cos.shape[0]) throw new ArgumentException($"sequence of {t} tokens is longer than the model's {_cos.shape[0]} positions");
        using var scope = NewDisposeScope();
        var cos = _cos.narrow(0, 0, t).to(x.dtype, x.device);
        var sin = _sin.narrow(0, 0, t).to(x.dtype, x.device);
        long half = x.shape[3] / 2;
        var rotated = cat(new[] { -x.narrow(-1, half, half), x.narrow(-1, 0, half) }, -1); // rotate_half
        return (x * cos + rotated * sin).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _cos.Dispose();
        _sin.Dispose();
    }
}

/// <summary>Grouped-query causal self-attention (<c>LlamaAttention</c>), LoRA on the query and value projections.</summary>
[LoRA(8, Alpha = 16, Targets = new[] { nameof(q_proj), nameof(v_proj) })]
public sealed partial class LlamaAttention : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> q_proj;
    private Module<Tensor, Tensor> k_proj;
    private Module<Tensor, Tensor> v_proj;
    private Module<Tensor, Tensor> o_proj;
    private readonly int _heads, _kvHeads, _headDim;
    private readonly LlamaRotary _rotary;

    public LlamaAttention(LlamaConfig c, LlamaRotary rotary) : base(nameof(LlamaAttention))
    {
        _heads = c.NumAttentionHeads;
        _kvHeads = c.NumKeyValueHeads;
        _headDim = c.HeadDim;
        _rotary = rotary;
        q_proj = Linear(c.HiddenSize, _heads * _headDim, hasBias: false);
        k_proj = Linear(c.HiddenSize, _kvHeads * _headDim, hasBias: false);
        v_proj = Linear(c.HiddenSize, _kvHeads * _headDim, hasBias: false);
        o_proj = Linear(_heads * _headDim, c.HiddenSize, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var q = _rotary.Apply(q_proj.forward(x).view(b, t, _heads, _headDim).transpose(1, 2));
        var k = _rotary.Apply(k_proj.forward(x).view(b, t, _kvHeads, _headDim).transpose(1, 2));
        var v = v_proj.forward(x).view(b, t, _kvHeads, _headDim).transpose(1, 2);
        int group = _heads / _kvHeads;
        if (group > 1) // repeat_kv: key/value head j serves query heads j*group .. j*group+group-1
        {
            k = k.unsqueeze(2).expand(b, _kvHeads, group, t, _headDim).reshape(b, _heads, t, _headDim);
            v = v.unsqueeze(2).expand(b, _kvHeads, group, t, _headDim).reshape(b, _heads, t, _headDim);
        }
        var attention = functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        return o_proj.forward(attention.transpose(1, 2).reshape(b, t, _heads * _headDim)).MoveToOuterDisposeScope();
    }
}

/// <summary>The SwiGLU feed-forward block (<c>LlamaMLP</c>): down(silu(gate(x)) · up(x)).</summary>
public sealed class LlamaMLP : Module<Tensor, Tensor>
{
    private readonly Linear gate_proj, up_proj, down_proj;

    public LlamaMLP(LlamaConfig c) : base(nameof(LlamaMLP))
    {
        gate_proj = Linear(c.HiddenSize, c.IntermediateSize, hasBias: false);
        up_proj = Linear(c.HiddenSize, c.IntermediateSize, hasBias: false);
        down_proj = Linear(c.IntermediateSize, c.HiddenSize, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return down_proj.forward(functional.silu(gate_proj.forward(x)) * up_proj.forward(x)).MoveToOuterDisposeScope();
    }
}

/// <summary>One pre-norm decoder layer (<c>LlamaDecoderLayer</c>).</summary>
public sealed class LlamaDecoderLayer : Module<Tensor, Tensor>
{
    private readonly LlamaRMSNorm input_layernorm, post_attention_layernorm;
    private readonly LlamaAttention self_attn;
    private readonly LlamaMLP mlp;

    public LlamaDecoderLayer(LlamaConfig c, LlamaRotary rotary) : base(nameof(LlamaDecoderLayer))
    {
        self_attn = new LlamaAttention(c, rotary);
        mlp = new LlamaMLP(c);
        input_layernorm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps);
        post_attention_layernorm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x + self_attn.forward(input_layernorm.forward(x));
        return (h + mlp.forward(post_attention_layernorm.forward(h))).MoveToOuterDisposeScope();
    }
}

/// <summary>The decoder stack (<c>LlamaModel</c>): embeddings, layers, final norm.</summary>
public sealed class LlamaModel : Module<Tensor, Tensor>
{
    private readonly Embedding embed_tokens;
    private readonly ModuleList<LlamaDecoderLayer> layers;
    private readonly LlamaRMSNorm norm;

    public LlamaModel(LlamaConfig c, LlamaRotary rotary) : base(nameof(LlamaModel))
    {
        embed_tokens = Embedding(c.VocabSize, c.HiddenSize);
        layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new LlamaDecoderLayer(c, rotary)).ToArray());
        norm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps);
        RegisterComponents();
    }

    /// <summary>The token embeddings, which the tied output layer shares.</summary>
    public Parameter EmbeddingWeight => embed_tokens.weight!;

    /// <summary>Hidden states [batch, seq, hidden] for token ids [batch, seq].</summary>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var x = embed_tokens.forward(ids);
        foreach (var layer in layers) x = layer.forward(x);
        return norm.forward(x).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// <c>LlamaForCausalLM</c>: the decoder and an output layer tied to the embeddings (when the config says so). A
/// <c>[PeftModel]</c>: everything is frozen but the LoRA adapters on every layer's <c>q_proj</c> and <c>v_proj</c>, and
/// the generated API loads Hugging Face checkpoints, saves PEFT adapters and exports the merged model.
/// </summary>
[PeftModel(BaseModelName = "stories260K", TaskType = "CAUSAL_LM")]
public sealed partial class LlamaForCausalLM : Module<Tensor, Tensor>
{
    private readonly LlamaModel model;
    private readonly Linear lm_head;
    private readonly LlamaRotary _rotary;

    public LlamaForCausalLM(LlamaConfig config) : base(nameof(LlamaForCausalLM))
    {
        Config = config;
        _rotary = new LlamaRotary(config.HeadDim, config.MaxPositionEmbeddings, config.RopeTheta);
        model = new LlamaModel(config, _rotary);
        lm_head = Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
        if (config.TieWordEmbeddings) lm_head.weight = model.EmbeddingWeight;
    }

    public LlamaConfig Config { get; }

    /// <summary>Builds the model from a Hugging Face folder (<c>config.json</c> + safetensors) and loads its weights.</summary>
    public static LlamaForCausalLM FromPretrained(string folder)
    {
        var model = new LlamaForCausalLM(LlamaConfig.Read(System.IO.Path.Combine(folder, "config.json")));
        model.LoadBaseWeights(folder);
        return model;
    }

    /// <summary>Logits [batch, seq, vocab] for token ids [batch, seq].</summary>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        return lm_head.forward(model.forward(ids)).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _rotary.Dispose();
        base.Dispose(disposing);
    }
}
