using System;
using System.Linq;
using BenchmarkDotNet.Attributes;
using Peft.Samples;
using Peft.Samples.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// The Llama sample's model at GPT-2-small width with random weights (d = 768, 12 heads, SwiGLU 2048, vocab 32000,
/// sequence 256, batch 4): one LoRA training step (r = 16, α = 32, q_proj and v_proj of every layer; forward,
/// backward, AdamW) against the frozen model's forward + backward (adapters disabled); both carry the gradient down to
/// the first layer's input norm. <see cref="Layers"/> is 12 for GPT-2 small; fewer layers
/// keep a run short on 2 cores and weigh the output layer more.
/// </summary>
public class LlamaBenchmarks
{
    public const int Batch = 4, Sequence = 256, Rank = 16;

    [Params(1, 4, 12)]
    public int Layers { get; set; }

    private LlamaForCausalLM _model = null!;
    private Parameter _firstNorm = null!;
    private Tensor _ids = null!, _targets = null!;
    private optim.Optimizer _optimizer = null!;
    private Parameter[] _lora = null!;

    [GlobalSetup]
    public void GlobalSetup()
    {
        NativeBootstrap.Initialize();
        manual_seed(0);
        var config = new LlamaConfig(HiddenSize: 768, IntermediateSize: 2048, NumHiddenLayers: Layers, NumAttentionHeads: 12,
            NumKeyValueHeads: 12, HeadDim: 64, VocabSize: 32000, MaxPositionEmbeddings: Sequence);
        _model = new LlamaForCausalLM(config);
        AdapterSetup.Recreate(_model, Rank);
        using (no_grad())
            foreach (var p in _model.TrainableParameters()) p.normal_(0, 0.02); // B non-zero, as after some training
        _lora = _model.TrainableParameters().ToArray();
        // Both variants carry the gradient down to the first layer's input norm, so that the LoRA step does the frozen
        // step's work plus its own (without it, LoRA would skip layer 0's input gradients and look cheaper than the base).
        _firstNorm = _model.named_parameters().Single(p => p.name == "model.layers.0.input_layernorm.weight").parameter;
        _firstNorm.requires_grad = true;
        _optimizer = optim.AdamW(_lora, 1e-4);
        _ids = randint(config.VocabSize, new long[] { Batch, Sequence });
        _targets = randint(config.VocabSize, new long[] { Batch * Sequence });
    }

    [GlobalCleanup]
    public void GlobalCleanup()
    {
        _model.Dispose();
        _ids.Dispose();
        _targets.Dispose();
    }

    /// <summary>Tokens in one step's batch.</summary>
    public static int TokensPerStep => Batch * Sequence;

    [Benchmark(Baseline = true, Description = "frozen forward + backward")]
    public void Frozen()
    {
        _model.DisableAdapters();
        foreach (var p in _lora) p.requires_grad = false;
        using (var scope = NewDisposeScope())
        {
            var logits = _model.forward(_ids);
            nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), _targets).backward();
        }
        _firstNorm.grad = null;
        foreach (var p in _lora) p.requires_grad = true;
        _model.EnableAdapters();
    }

    [Benchmark(Description = "LoRA r = 16 step (q, v; AdamW)")]
    public void LoRAStep()
    {
        using var scope = NewDisposeScope();
        _optimizer.zero_grad();
        var logits = _model.forward(_ids);
        nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), _targets).backward();
        _optimizer.step();
        _firstNorm.grad = null;
    }
}
