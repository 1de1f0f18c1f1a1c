using System;
using System.Collections.Generic;
using System.Linq;
using BenchmarkDotNet.Attributes;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// Unmerged inference (no gradient) through <see cref="Layers"/> × <c>Linear(D, D)</c>, each a <see cref="LoRALinear"/>
/// holding <see cref="Adapters"/> named LoRA adapters of rank <see cref="R"/>, on N rows: the frozen base layers (the
/// baseline), one adapter active on every row, a mixed batch (<see cref="PeftModelCore.MixedBatch"/>) with the rows
/// routed round-robin over all adapters, and PEFT's <c>_mixed_batch_forward</c> re-typed in TorchSharp ops on the same
/// layers and routing (per layer and call: the index lists built from the row names, the base once on all rows, then
/// per adapter <c>result[idx] += B(A(x[idx])) · s</c>).
/// </summary>
public class MixedBatchBenchmarks
{
    /// <summary>Rows of the input.</summary>
    [Params(512)]
    public int N { get; set; }

    /// <summary>In and out features of each square layer.</summary>
    [Params(1024)]
    public int D { get; set; }

    /// <summary>The LoRA rank of every adapter.</summary>
    [Params(16)]
    public int R { get; set; }

    /// <summary>Layers in the stack.</summary>
    public int Layers { get; set; } = 4;

    /// <summary>Named adapters on each layer.</summary>
    public int Adapters { get; set; } = 8;

    private Linear[] _base = null!;
    private LoRALinear[] _lora = null!;
    private PeftModelCore _model = null!;
    private Tensor _input = null!;
    private string[] _rows = null!;

    /// <summary>Builds the layers (B non-zero, as after training), the model core and the input.</summary>
    [GlobalSetup]
    public void GlobalSetup()
    {
        torch.manual_seed(0);
        _base = new Linear[Layers];
        _lora = new LoRALinear[Layers];
        for (int l = 0; l < Layers; l++)
        {
            _base[l] = nn.Linear(D, D);
            var layer = new LoRALinear($"bench.l{l}", _base[l], "a0", new LoRAOptions { Rank = R, Alpha = 2 * R });
            for (int a = 1; a < Adapters; a++) layer.AddAdapter($"a{a}", new LoRAOptions { Rank = R, Alpha = 2 * R });
            using (no_grad())
                foreach (var name in layer.AdapterNames) layer.LoraB(name).normal_(0, 0.02);
            layer.eval();
            _lora[l] = layer;
        }
        var root = new Stack("bench", _lora);
        _model = PeftModelCore.Attach(root, new PeftModelInfo("bench.Stack", Array.Empty<AdapterSiteInfo>(), Array.Empty<string>(), Array.Empty<PeftModelInfo>()));
        _model.SetActiveAdapters("a0");
        _input = torch.randn(N, D);
        _rows = Enumerable.Range(0, N).Select(i => $"a{i % Adapters}").ToArray();
    }

    /// <summary>The frozen base layers alone.</summary>
    [Benchmark(Baseline = true, Description = "frozen base")]
    public void FrozenBase() => Run(_base);

    /// <summary>One unmerged adapter active on every row.</summary>
    [Benchmark(Description = "one adapter")]
    public void OneAdapter() => Run(_lora);

    /// <summary>A mixed batch over all adapters, rows round-robin (the scope opened per call, as a server would per batch).</summary>
    [Benchmark(Description = "MixedBatch")]
    public void Mixed()
    {
        using var routing = _model.MixedBatch(_rows);
        Run(_lora);
    }

    /// <summary>The same mixed batch through the generic path: one sub-batch per adapter, gathered, run, put back in order (LoRA's path before issue 20).</summary>
    [Benchmark(Description = "MixedBatch, sub-batch per adapter")]
    public void MixedSubBatches()
    {
        AdapterLayerBase.GroupedMixedBatches = false;
        try { Mixed(); }
        finally { AdapterLayerBase.GroupedMixedBatches = true; }
    }

    /// <summary>PEFT's <c>_mixed_batch_forward</c> in TorchSharp ops, on the same layers and rows.</summary>
    [Benchmark(Description = "PEFT-style mixed batch (TorchSharp ops)")]
    public void PeftStyle()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = _input;
        foreach (var layer in _lora)
        {
            // As PEFT: unique names and index lists from the row names, per layer and call.
            var unique = new List<string>();
            foreach (var name in _rows) if (!unique.Contains(name)) unique.Add(name);
            var result = layer.BaseLayer.forward(x);
            foreach (var adapter in unique)
            {
                if (!layer.AdapterNames.Contains(adapter)) continue;
                var indices = new List<long>();
                for (int i = 0; i < _rows.Length; i++) if (_rows[i] == adapter) indices.Add(i);
                var index = torch.tensor(indices.ToArray());
                var sub = x.index_select(0, index);
                var update = nn.functional.linear(nn.functional.linear(sub, layer.LoraA(adapter)), layer.LoraB(adapter))
                    .mul(layer.Options(adapter).Scaling);
                result.index_put_(result.index_select(0, index).add(update), index); // result[idx] += update
            }
            x = result;
        }
    }

    private void Run(IEnumerable<nn.Module<Tensor, Tensor>> layers)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = _input;
        foreach (var layer in layers) x = layer.forward(x);
    }

    /// <summary>Frees the layers and the input.</summary>
    [GlobalCleanup]
    public void GlobalCleanup()
    {
        foreach (var layer in _lora) layer.Dispose();
        _input.Dispose();
    }

    private sealed class Stack : nn.Module<Tensor, Tensor>
    {
        private readonly ModuleList<nn.Module<Tensor, Tensor>> layers;

        public Stack(string name, IEnumerable<nn.Module<Tensor, Tensor>> items) : base(name)
        {
            layers = new ModuleList<nn.Module<Tensor, Tensor>>(items.ToArray());
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            var x = input;
            foreach (var layer in layers) x = layer.forward(x);
            return x;
        }
    }
}
