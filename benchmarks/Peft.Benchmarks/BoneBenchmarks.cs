using System.Linq;
using BenchmarkDotNet.Attributes;
using Peft.Runtime.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Benchmarks;

/// <summary>
/// Bone (PEFT's MiSS) and its Bat variant through <see cref="BoneLinear"/> (the fused <c>BoneFunction</c> that generated
/// code runs), and Bone and Bat composed naively from TorchSharp ops (what <c>BoneLinear</c> did before the function),
/// against the frozen base.
/// </summary>
public class BoneBenchmarks : AdapterBenchmark
{
    /// <summary>The block size r.</summary>
    [ParamsSource(nameof(Blocks))]
    public int Block { get; set; }

    /// <summary>r ∈ {16, 64, 256}; only 64 (PEFT's default) with <c>PEFT_BENCH_HEADLINE=1</c>.</summary>
    public static int[] Blocks => BenchmarkSizes.Pick(new[] { 16, 64, 256 }, 64);

    private BoneLinear _bone = null!, _bat = null!;
    private ComposedBone _boneComposed = null!;
    private ComposedBat _batComposed = null!;
    private Tensor _boneBlock = null!, _batBlock = null!;

    /// <inheritdoc />
    protected override void SetUpAdapter()
    {
        _bone = new BoneLinear("bench.q", BaseLayer, "default", new BoneOptions { Block = Block, Variant = BoneVariant.Bone });
        _bat = new BoneLinear("bench.q", BaseLayer, "default", new BoneOptions { Block = Block, Variant = BoneVariant.Bat });
        _boneBlock = _bone.Block("default");
        _batBlock = _bat.Block("default");
        // As after some training: D = 0 would be a special case.
        using (no_grad())
        {
            _boneBlock.normal_(0, 0.02);
            _batBlock.normal_(0, 0.02);
        }
        _bone.train();
        _bat.train();
        _boneComposed = new ComposedBone(BaseLayer, _boneBlock);
        _batComposed = new ComposedBat(BaseLayer, _batBlock);
    }

    /// <summary>The fused Bone layer.</summary>
    [Benchmark(Description = "Bone fused")]
    public void Bone() => Step(_bone, _boneBlock);

    /// <summary>The fused Bat layer.</summary>
    [Benchmark(Description = "Bat fused")]
    public void Bat() => Step(_bat, _batBlock);

    /// <summary>Bat fused with G = dYᵀ·x formed whole before its tiles are read (one slab: the arithmetic before issue 20).</summary>
    [Benchmark(Description = "Bat fused, G whole")]
    public void BatWholeG()
    {
        long was = Peft.Runtime.Kernels.BoneFunction.BatSlabBytes;
        Peft.Runtime.Kernels.BoneFunction.BatSlabBytes = long.MaxValue / 4;
        try { Step(_bat, _batBlock); }
        finally { Peft.Runtime.Kernels.BoneFunction.BatSlabBytes = was; }
    }

    /// <summary>Bone from plain TorchSharp ops: the base layer plus the folded input times D.</summary>
    [Benchmark(Description = "Bone composed")]
    public void BoneComposed() => Step(_boneComposed, _boneBlock);

    /// <summary>Bat from plain TorchSharp ops: the adapted weight through permuted tiles, as PEFT builds it.</summary>
    [Benchmark(Description = "Bat composed")]
    public void BatComposed() => Step(_batComposed, _batBlock);

    private sealed class ComposedBone : nn.Module<Tensor, Tensor>
    {
        private readonly nn.Module<Tensor, Tensor> _base;
        private readonly Tensor _d;

        public ComposedBone(nn.Module<Tensor, Tensor> baseLayer, Tensor d) : base("bone_composed")
        {
            _base = baseLayer;
            _d = d;
        }

        public override Tensor forward(Tensor x)
        {
            long r = _d.shape[0];
            var folded = x.reshape(x.shape[..^1].Append(x.shape[^1] / r).Append(r).ToArray()).sum(-2);
            return _base.forward(x).add(folded.matmul(_d));
        }
    }

    private sealed class ComposedBat : nn.Module<Tensor, Tensor>
    {
        private readonly nn.Module<Tensor, Tensor> _base;
        private readonly Tensor _d;

        public ComposedBat(nn.Module<Tensor, Tensor> baseLayer, Tensor d) : base("bat_composed")
        {
            _base = baseLayer;
            _d = d;
        }

        public override Tensor forward(Tensor x)
        {
            var w = _base.get_parameter("weight")!.detach();
            long r = _d.shape[^1], outBlocks = w.shape[0] / r, inBlocks = w.shape[1] / r;
            var tiles = w.reshape(outBlocks, r, inBlocks, r).permute(0, 2, 1, 3); // [I, J, r, r]
            var dI = _d.unsqueeze(1);
            var delta = tiles.matmul(dI).add(dI).permute(0, 2, 1, 3).reshape(w.shape[0], w.shape[1]);
            return nn.functional.linear(x, w.add(delta), _base.get_parameter("bias"));
        }
    }

    /// <inheritdoc />
    protected override void CleanUpAdapter()
    {
        _boneComposed.Dispose();
        _batComposed.Dispose();
        _bone.Dispose();
        _bat.Dispose();
    }
}
