using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// Hydra on a <c>Linear</c> layer: y = z + b with z = xWᵀ + s_p·(dropout(x)·A_pᵀ)·B_pᵀ + s_s·(dropout(xWᵀ)·A_sᵀ)·B_sᵀ,
    /// A_p [r_p, in], B_p [out, r_p], A_s [r_s, out], B_s [out, r_s], s_p = α / r_p, s_s = α / r_s. Parameter names in
    /// PEFT's style: <c>hydra_parallel_A.&lt;adapter&gt;.weight</c>, <c>hydra_parallel_B.&lt;adapter&gt;.weight</c>,
    /// <c>hydra_sequential_A.&lt;adapter&gt;.weight</c>, <c>hydra_sequential_B.&lt;adapter&gt;.weight</c>.
    /// </summary>
    /// <remarks>
    /// The sequential branch acts on xWᵀ without the bias, so merging gives W' = (I + s_s·B_s·A_s)·W + s_p·B_p·A_p and
    /// leaves the bias as it is. Several active adapters compose in their active order, each sequential branch seeing
    /// the output the adapters before it produced, which is exactly what merging them in that order gives.
    /// </remarks>
    public sealed class HydraLinear : AdapterLayerBase<HydraOptions>
    {
        private readonly AdapterModuleDict<Linear> hydra_parallel_A = new();
        private readonly AdapterModuleDict<Linear> hydra_parallel_B = new();
        private readonly AdapterModuleDict<Linear> hydra_sequential_A = new();
        private readonly AdapterModuleDict<Linear> hydra_sequential_B = new();

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter.</summary>
        public HydraLinear(string site, Linear baseLayer, string adapter, HydraOptions options) : base(site, baseLayer)
        {
            RegisterAdapterDict(nameof(hydra_parallel_A), hydra_parallel_A);
            RegisterAdapterDict(nameof(hydra_parallel_B), hydra_parallel_B);
            RegisterAdapterDict(nameof(hydra_sequential_A), hydra_sequential_A);
            RegisterAdapterDict(nameof(hydra_sequential_B), hydra_sequential_B);
            AddAdapter(adapter, options);
        }

        /// <inheritdoc />
        public override string PeftType => "HYDRA";

        /// <summary>A_p of an adapter ([r_p, in]).</summary>
        public Parameter ParallelA(string adapter) => hydra_parallel_A[adapter].weight!;

        /// <summary>B_p of an adapter ([out, r_p]).</summary>
        public Parameter ParallelB(string adapter) => hydra_parallel_B[adapter].weight!;

        /// <summary>A_s of an adapter ([r_s, out]).</summary>
        public Parameter SequentialA(string adapter) => hydra_sequential_A[adapter].weight!;

        /// <summary>B_s of an adapter ([out, r_s]).</summary>
        public Parameter SequentialB(string adapter) => hydra_sequential_B[adapter].weight!;

        /// <summary>Adds a named adapter; its ranks are checked against the layer's shape first.</summary>
        public void AddAdapter(string adapter, HydraOptions options)
        {
            Hydra.Validate(Site, options, InFeatures, OutFeatures);
            RegisterAdapter(adapter, options);
            var weight = BaseWeight;
            Linear Factor(long inF, long outF, bool zero)
            {
                var m = nn.Linear(inF, outF, hasBias: false, device: weight.device, dtype: weight.dtype);
                using (no_grad())
                {
                    if (zero) nn.init.zeros_(m.weight!);
                    else nn.init.kaiming_uniform_(m.weight!, a: Math.Sqrt(5));
                }
                return m;
            }
            hydra_parallel_A.Add(adapter, Factor(InFeatures, options.ParallelRank, zero: false));
            hydra_parallel_B.Add(adapter, Factor(options.ParallelRank, OutFeatures, zero: true));
            hydra_sequential_A.Add(adapter, Factor(OutFeatures, options.SequentialRank, zero: false));
            hydra_sequential_B.Add(adapter, Factor(options.SequentialRank, OutFeatures, zero: true));
        }

        /// <inheritdoc />
        protected override Tensor ForwardActive(Tensor input)
        {
            var adapters = UnmergedActiveAdapters.ToList();
            if (adapters.Count == 0) return BaseLayer.forward(input);
            var z = nn.functional.linear(input, BaseWeight); // xWᵀ: what the sequential branch sees, bias left out
            foreach (var adapter in adapters)
            {
                var o = OptionsOf(adapter);
                var x = Drop(input, o.Dropout);
                var zs = Drop(z, o.Dropout);
                var parallel = nn.functional.linear(nn.functional.linear(x, ParallelA(adapter)), ParallelB(adapter));
                var sequential = nn.functional.linear(nn.functional.linear(zs, SequentialA(adapter)), SequentialB(adapter));
                z = z.add(parallel, alpha: o.ParallelScaling).add(sequential, alpha: o.SequentialScaling);
            }
            var bias = BaseBias;
            return bias is null ? z : z.add(bias);
        }

        private Tensor Drop(Tensor x, double p) => p > 0 && training ? nn.functional.dropout(x, p, training: true) : x;

        /// <summary>
        /// The change the adapter makes to the base layer's own weight W (any merged adapters undone on a copy first):
        /// s_s·B_s·A_s·W + s_p·B_p·A_p, [out, in].
        /// </summary>
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            var o = OptionsOf(adapter);
            using var scope = NewDisposeScope();
            var w = OriginalWeight();
            var sequential = matmul(SequentialB(adapter), matmul(SequentialA(adapter), w)).mul(o.SequentialScaling);
            var parallel = matmul(ParallelB(adapter), ParallelA(adapter)).mul(o.ParallelScaling);
            return sequential.add(parallel).MoveToOuterDisposeScope();
        }

        /// <summary>W ← (I + s_s·B_s·A_s)·W + s_p·B_p·A_p, computed in float64; the bias is not touched.</summary>
        protected override void MergeInto(Tensor weight, Tensor? bias, string adapter)
        {
            var o = OptionsOf(adapter);
            var (ap, bp, a, b) = Factors64(adapter);
            // Unmerging needs (I + s_s·B_s·A_s)⁻¹, which exists exactly when I + s_s·A_s·B_s ([r_s, r_s]) is invertible.
            var small = eye(o.SequentialRank, dtype: float64, device: a.device).add(matmul(a, b), alpha: o.SequentialScaling);
            double cond = linalg.cond(small).item<double>();
            if (!(cond < 1e12))
                throw new InvalidOperationException(
                    $"{Site}: refusing to merge adapter '{adapter}': I + s·B_s·A_s is singular (condition number {cond:G3}), so the merge could not be undone; the layer is unchanged");
            var w = weight.to(float64);
            var merged = w.add(matmul(b, matmul(a, w)), alpha: o.SequentialScaling).add(matmul(bp, ap), alpha: o.ParallelScaling);
            weight.copy_(merged.to(weight.dtype));
        }

        /// <summary>
        /// W = (I + s_s·B_s·A_s)⁻¹·(W' − s_p·B_p·A_p) in float64, through Woodbury's identity
        /// (I + s·B·A)⁻¹ = I − s·B·(I + s·A·B)⁻¹·A, which solves an r_s × r_s system only.
        /// </summary>
        protected override void UnmergeFrom(Tensor weight, Tensor? bias, string adapter)
        {
            var o = OptionsOf(adapter);
            var (ap, bp, a, b) = Factors64(adapter);
            var v = weight.to(float64).sub(matmul(bp, ap).mul(o.ParallelScaling));
            var small = eye(o.SequentialRank, dtype: float64, device: a.device).add(matmul(a, b), alpha: o.SequentialScaling);
            var restored = v.sub(matmul(b, linalg.solve(small, matmul(a, v))).mul(o.SequentialScaling));
            weight.copy_(restored.to(weight.dtype));
        }

        private (Tensor ParallelA, Tensor ParallelB, Tensor SequentialA, Tensor SequentialB) Factors64(string adapter) =>
            (ParallelA(adapter).detach().to(float64), ParallelB(adapter).detach().to(float64),
             SequentialA(adapter).detach().to(float64), SequentialB(adapter).detach().to(float64));

        /// <inheritdoc />
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            var current = Options(adapter);
            if (settings is not HydraOptions hydra)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is a Hydra adapter; the file describes a {settings.PeftType} adapter");
            if (hydra.ParallelRank != current.ParallelRank || hydra.SequentialRank != current.SequentialRank)
                throw new InvalidOperationException(
                    $"{Site}: adapter '{adapter}' has ranks (parallel {current.ParallelRank}, sequential {current.SequentialRank}); the file has (parallel {hydra.ParallelRank}, sequential {hydra.SequentialRank})");
            if (!(hydra.Dropout >= 0 && hydra.Dropout < 1))
                throw new InvalidOperationException(PeftMessages.Format(PeftMessages.DropoutOutOfRange, Site, hydra.Dropout));
            SetOptions(adapter, current with { Alpha = hydra.Alpha, Dropout = hydra.Dropout });
        }
    }

    /// <summary>The entry point generated code calls for <c>[Hydra]</c>.</summary>
    public static class Hydra
    {
        /// <summary>
        /// Wraps <paramref name="layer"/> in a <see cref="HydraLinear"/> with adapter <paramref name="adapter"/>, or adds
        /// the adapter to it if it already is one. Checks both ranks and the dropout against the layer's real shape,
        /// with the analyzers' wording.
        /// </summary>
        /// <param name="layer">The member's current value: a <c>Linear</c>, or a <see cref="HydraLinear"/> already.</param>
        /// <param name="site">Class and member, e.g. <c>Demo.Block.q</c>.</param>
        /// <param name="adapter">The adapter name.</param>
        /// <param name="options">The declared options.</param>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, HydraOptions options) =>
            AdapterWrap.Linear<HydraLinear>(layer, site, "Hydra", existing => existing.AddAdapter(adapter, options), linear => new HydraLinear(site, linear, adapter, options));

        internal static void Validate(string site, HydraOptions options, long inFeatures, long outFeatures)
        {
            AdapterChecks.RankAtLeastOne(site, "Hydra parallel", options.ParallelRank);
            AdapterChecks.RankAtLeastOne(site, "Hydra sequential", options.SequentialRank);
            long max = Math.Min(inFeatures, outFeatures);
            if (options.ParallelRank > max)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.RankTooLarge, site, "Hydra parallel", options.ParallelRank, inFeatures, outFeatures, max));
            if (options.SequentialRank > outFeatures)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.SequentialRankTooLarge, site, "Hydra", options.SequentialRank, outFeatures));
            AdapterChecks.Dropout(site, options.Dropout);
        }
    }

    /// <summary>
    /// The options of one Hydra adapter, as <c>[Hydra]</c> declares them (the same defaults), and its entry in PeftDsl's
    /// own <c>peft_type: "HYDRA"</c> config (PEFT has no Hydra), in LoRA's vocabulary: <c>r</c> (the parallel rank, per
    /// layer through <c>rank_pattern</c>), <c>sequential_r</c> (per layer through <c>sequential_rank_pattern</c>),
    /// <c>lora_alpha</c> (per layer through <c>alpha_pattern</c>) and <c>lora_dropout</c>.
    /// </summary>
    public sealed record HydraOptions : AdapterSettings
    {
        /// <summary>The rank of the parallel branch B_p·A_p (written as <c>r</c>).</summary>
        public int ParallelRank { get; init; } = 8;

        /// <summary>The rank of the sequential branch B_s·A_s (written as <c>sequential_r</c>).</summary>
        public int SequentialRank { get; init; } = 8;

        /// <summary>As LoRA's <c>lora_alpha</c>, per branch: the branches are scaled by Alpha / their rank.</summary>
        public double Alpha { get; init; } = 8;

        /// <summary>Dropout probability on each branch's input (written as <c>lora_dropout</c>).</summary>
        public double Dropout { get; init; }

        /// <summary>The factor applied to B_p·A_p: Alpha / ParallelRank.</summary>
        public double ParallelScaling => Alpha / ParallelRank;

        /// <summary>The factor applied to B_s·A_s: Alpha / SequentialRank.</summary>
        public double SequentialScaling => Alpha / SequentialRank;

        /// <inheritdoc />
        public override string PeftType => "HYDRA";

        /// <inheritdoc />
        public override IReadOnlyDictionary<string, double> PerLayerFields => new Dictionary<string, double>
        {
            ["r"] = ParallelRank,
            ["sequential_r"] = SequentialRank,
            ["lora_alpha"] = Alpha,
        };

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config)
        {
            config["lora_dropout"] = AdapterConfig.Float(Dropout);
        }

        /// <summary>Reads the fields of a HYDRA config that apply to the layer at <paramref name="modulePath"/> (the defaults above).</summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            int parallel = Rank(AdapterConfig.PerLayer(config, "r", modulePath, file, fallback: 8), "r", file);
            int sequential = Rank(AdapterConfig.PerLayer(config, "sequential_r", modulePath, file, fallback: 8), "sequential_r", file);
            double alpha = AdapterConfig.PerLayer(config, "lora_alpha", modulePath, file, fallback: 8);
            double dropout = AdapterConfig.Probability(config, "lora_dropout", file);
            return new HydraOptions { ParallelRank = parallel, SequentialRank = sequential, Alpha = alpha, Dropout = dropout };
        }

        private static int Rank(double value, string field, string file) =>
            value == System.Math.Floor(value) && value >= 1 && value <= int.MaxValue
                ? (int)value
                : throw new InvalidDataException($"{file}: '{field}' must be a whole number of at least 1, got {value}");
    }
}
