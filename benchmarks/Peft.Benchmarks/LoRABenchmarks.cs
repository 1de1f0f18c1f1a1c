using BenchmarkDotNet.Attributes;
using Peft.Runtime.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// LoRA with dropout 0.05 through <see cref="LoRALinear"/> (the fused kernel that generated code runs), and the same
/// layer composed naively from TorchSharp ops (libtorch dropout, two thin matmuls, scale, add), against the frozen base.
/// </summary>
public class LoRABenchmarks : AdapterBenchmark
{
    /// <summary>The LoRA rank.</summary>
    [ParamsSource(nameof(Ranks))]
    public int R { get; set; }

    /// <summary>r ∈ {8, 16, 64}; only 16 with <c>PEFT_BENCH_HEADLINE=1</c>.</summary>
    public static int[] Ranks => BenchmarkSizes.Pick(new[] { 8, 16, 64 }, 16);

    /// <summary>LoRA dropout.</summary>
    public const double Dropout = 0.05;

    private LoRALinear _layer = null!;
    private Composed _composed = null!;
    private Tensor _a = null!, _b = null!;

    /// <inheritdoc />
    protected override void SetUpAdapter()
    {
        _layer = new LoRALinear("bench.q", BaseLayer, "default", new LoRAOptions { Rank = R, Alpha = 2 * R, Dropout = Dropout });
        using (no_grad()) _layer.LoraB("default").normal_(0, 0.02); // as after some training: B = 0 would be a special case
        _layer.train();
        _a = _layer.LoraA("default");
        _b = _layer.LoraB("default");
        _composed = new Composed(BaseLayer, _a, _b, 2.0);
    }

    /// <summary>The fused LoRA layer.</summary>
    [Benchmark(Description = "LoRA fused")]
    public void LoRA() => Step(_layer, _a, _b);

    /// <summary>The same layer from plain TorchSharp ops: what LoRALinear did before the kernel.</summary>
    [Benchmark(Description = "LoRA composed")]
    public void LoRAComposed() => Step(_composed, _a, _b);

    private sealed class Composed : nn.Module<Tensor, Tensor>
    {
        private readonly nn.Module<Tensor, Tensor> _base;
        private readonly Tensor _a, _b;
        private readonly double _scaling;

        public Composed(nn.Module<Tensor, Tensor> baseLayer, Tensor a, Tensor b, double scaling) : base("composed")
        {
            _base = baseLayer;
            _a = a;
            _b = b;
            _scaling = scaling;
        }

        public override Tensor forward(Tensor x)
        {
            var dropped = nn.functional.dropout(x, Dropout, training: true);
            var update = nn.functional.linear(nn.functional.linear(dropped, _a), _b);
            return _base.forward(x).add(update, alpha: _scaling);
        }
    }

    /// <inheritdoc />
    protected override void CleanUpAdapter()
    {
        _composed.Dispose();
        _layer.Dispose();
    }
}
