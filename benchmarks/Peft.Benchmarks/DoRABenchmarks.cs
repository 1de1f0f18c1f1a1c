using BenchmarkDotNet.Attributes;
using Peft.Runtime.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// DoRA through <see cref="LoRALinear"/> (the fused <c>DoRAFunction</c> that generated code runs), without dropout (as
/// <c>[DoRA(r, Alpha = 2r)]</c> declares by default) and with dropout 0.05, and the same layers composed from TorchSharp
/// ops the way PEFT writes them (dense ΔW for the norm; without dropout the base output reused, as PEFT does, so
/// y = base + (g − 1) ⊙ (base − b) + g ⊙ s·B·A·x; with dropout a second base product on drop(x)), against the frozen base.
/// </summary>
public class DoRABenchmarks : AdapterBenchmark
{
    /// <summary>The rank.</summary>
    [ParamsSource(nameof(Ranks))]
    public int R { get; set; }

    /// <summary>r ∈ {8, 16, 64}; only 16 with <c>PEFT_BENCH_HEADLINE=1</c>.</summary>
    public static int[] Ranks => BenchmarkSizes.Pick(new[] { 8, 16, 64 }, 16);

    /// <summary>The dropout of the dropout variants.</summary>
    public const double Dropout = 0.05;

    private LoRALinear _layer = null!, _lora = null!, _dropping = null!;
    private Composed _composed = null!, _composedDropping = null!;
    private Tensor _a = null!, _b = null!, _m = null!;

    /// <inheritdoc />
    protected override void SetUpAdapter()
    {
        _layer = new LoRALinear("bench.q", BaseLayer, "default", new DoRAOptions { Rank = R, Alpha = 2 * R });
        using (no_grad()) _layer.LoraB("default").normal_(0, 0.02); // as after some training: B = 0 would be a special case
        _layer.train();
        _a = _layer.LoraA("default");
        _b = _layer.LoraB("default");
        _m = _layer.Magnitude("default");
        _composed = new Composed(BaseLayer, _a, _b, _m, 2.0, 0);
        _composedDropping = new Composed(BaseLayer, _a, _b, _m, 2.0, Dropout);
        _dropping = new LoRALinear("bench.v", BaseLayer, "default", new DoRAOptions { Rank = R, Alpha = 2 * R, Dropout = Dropout });
        using (no_grad())
        {
            _dropping.LoraA("default").copy_(_a);
            _dropping.LoraB("default").copy_(_b);
        }
        _dropping.train();
        _lora = new LoRALinear("bench.k", BaseLayer, "default", new LoRAOptions { Rank = R, Alpha = 2 * R });
        using (no_grad()) _lora.LoraB("default").copy_(_b);
        _lora.train();
    }

    /// <summary>The fused DoRA layer.</summary>
    [Benchmark(Description = "DoRA fused")]
    public void DoRA() => Step(_layer, _a, _b, _m);

    /// <summary>Plain LoRA of the same rank without dropout: what DoRA's magnitude costs on top of it.</summary>
    [Benchmark(Description = "LoRA fused, no dropout")]
    public void LoRAWithoutDropout() => Step(_lora, _lora.LoraA("default"), _lora.LoraB("default"));

    /// <summary>The same layer from plain TorchSharp ops, as PEFT computes it.</summary>
    [Benchmark(Description = "DoRA composed")]
    public void DoRAComposed() => Step(_composed, _a, _b, _m);

    /// <summary>The fused DoRA layer with dropout: PEFT's formula needs a second base product, on drop(x).</summary>
    [Benchmark(Description = "DoRA fused, dropout")]
    public void DoRADropout() => Step(_dropping, _dropping.LoraA("default"), _dropping.LoraB("default"), _dropping.Magnitude("default"));

    /// <summary>DoRA with dropout from plain TorchSharp ops (libtorch dropout), as PEFT computes it.</summary>
    [Benchmark(Description = "DoRA composed, dropout")]
    public void DoRAComposedDropout() => Step(_composedDropping, _a, _b, _m);

    private sealed class Composed : nn.Module<Tensor, Tensor>
    {
        private readonly TorchSharp.Modules.Linear _base;
        private readonly Tensor _a, _b, _m;
        private readonly double _scaling, _dropout;

        public Composed(TorchSharp.Modules.Linear baseLayer, Tensor a, Tensor b, Tensor m, double scaling, double dropout) : base("composed")
        {
            _base = baseLayer;
            _a = a;
            _b = b;
            _m = m;
            _scaling = scaling;
            _dropout = dropout;
        }

        public override Tensor forward(Tensor x)
        {
            var weight = _base.weight!;
            Tensor norm;
            using (no_grad()) norm = linalg.vector_norm(weight.add(_b.matmul(_a), alpha: _scaling), 2, new long[] { 1 });
            var g = _m.div(norm);
            var baseOut = _base.forward(x);
            var dropped = _dropout > 0 ? nn.functional.dropout(x, _dropout, training: true) : x;
            var projected = _dropout > 0 ? nn.functional.linear(dropped, weight) : baseOut.sub(_base.bias!);
            var update = nn.functional.linear(nn.functional.linear(dropped, _a), _b);
            return baseOut.add(g.sub(1).mul(projected)).add(g.mul(update), alpha: _scaling);
        }
    }

    /// <inheritdoc />
    protected override void CleanUpAdapter()
    {
        _composed.Dispose();
        _composedDropping.Dispose();
        _dropping.Dispose();
        _lora.Dispose();
        _layer.Dispose();
    }
}
