using System;
using System.Collections.Generic;
using System.Text.Json.Nodes;
using Peft.Runtime.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// LoKr on a <c>Linear</c> layer: y = xWᵀ + b + x·ΔWᵀ with ΔW = kron(W1, W2) · α/r, out = a·b and in = c·d split by
    /// PEFT's <c>factorization</c>, W1 [a, c] (<c>lokr_w1</c>, or <c>lokr_w1_a</c> [a, r] · <c>lokr_w1_b</c> [r, c] with
    /// decompose_both) and W2 [b, d] (<c>lokr_w2</c>, or <c>lokr_w2_a</c> [b, r] · <c>lokr_w2_b</c> [r, d] when
    /// r &lt; max(b, d) / 2), each a parameter dict keyed by adapter name as in PEFT.
    /// </summary>
    public sealed class LoKrLinear : AdapterLayerBase<LoKrOptions>
    {
        private readonly AdapterParameterDict lokr_w1 = new();
        private readonly AdapterParameterDict lokr_w1_a = new();
        private readonly AdapterParameterDict lokr_w1_b = new();
        private readonly AdapterParameterDict lokr_w2 = new();
        private readonly AdapterParameterDict lokr_w2_a = new();
        private readonly AdapterParameterDict lokr_w2_b = new();

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter.</summary>
        public LoKrLinear(string site, Linear baseLayer, string adapter, LoKrOptions options) : base(site, baseLayer)
        {
            RegisterAdapterDict(nameof(lokr_w1), lokr_w1);
            RegisterAdapterDict(nameof(lokr_w1_a), lokr_w1_a);
            RegisterAdapterDict(nameof(lokr_w1_b), lokr_w1_b);
            RegisterAdapterDict(nameof(lokr_w2), lokr_w2);
            RegisterAdapterDict(nameof(lokr_w2_a), lokr_w2_a);
            RegisterAdapterDict(nameof(lokr_w2_b), lokr_w2_b);
            AddAdapter(adapter, options);
        }

        /// <inheritdoc />
        public override string PeftType => "LOKR";

        /// <summary>How an adapter's factors are shaped: out = a·b, in = c·d, and which of W1, W2 are low-rank.</summary>
        public LoKr.Layout Layout(string adapter) => LoKr.LayoutFor(Options(adapter), InFeatures, OutFeatures);

        /// <summary>The left Kronecker factor W1 [a, c] of an adapter (the product W1a·W1b when it is low-rank).</summary>
        public Tensor W1(string adapter) =>
            lokr_w1.Contains(adapter) ? lokr_w1[adapter] : matmul(lokr_w1_a[adapter], lokr_w1_b[adapter]);

        /// <summary>The right Kronecker factor W2 [b, d] of an adapter (the product W2a·W2b when it is low-rank).</summary>
        public Tensor W2(string adapter) =>
            lokr_w2.Contains(adapter) ? lokr_w2[adapter] : matmul(lokr_w2_a[adapter], lokr_w2_b[adapter]);

        /// <summary>Adds a named adapter; it is checked against the layer's shape first.</summary>
        public void AddAdapter(string adapter, LoKrOptions options)
        {
            LoKr.Validate(Site, options, InFeatures, OutFeatures);
            var layout = LoKr.LayoutFor(options, InFeatures, OutFeatures);
            RegisterAdapter(adapter, options);
            var weight = BaseWeight;
            Parameter Make(long rows, long columns) => new(empty(rows, columns, dtype: weight.dtype, device: weight.device));
            using (no_grad())
            {
                // PEFT's reset_adapter_parameters: W1 (or W1a) zero, everything else Kaiming-uniform with a = √5.
                if (layout.LowRankW1)
                {
                    var a = Make(layout.OutA, options.Rank);
                    var b = Make(options.Rank, layout.InC);
                    nn.init.zeros_(a);
                    nn.init.kaiming_uniform_(b, a: Math.Sqrt(5));
                    lokr_w1_a.Add(adapter, a);
                    lokr_w1_b.Add(adapter, b);
                }
                else
                {
                    var w1 = Make(layout.OutA, layout.InC);
                    nn.init.zeros_(w1);
                    lokr_w1.Add(adapter, w1);
                }
                if (layout.LowRankW2)
                {
                    var a = Make(layout.OutB, options.Rank);
                    var b = Make(options.Rank, layout.InD);
                    nn.init.kaiming_uniform_(a, a: Math.Sqrt(5));
                    nn.init.kaiming_uniform_(b, a: Math.Sqrt(5));
                    lokr_w2_a.Add(adapter, a);
                    lokr_w2_b.Add(adapter, b);
                }
                else
                {
                    var w2 = Make(layout.OutB, layout.InD);
                    nn.init.kaiming_uniform_(w2, a: Math.Sqrt(5));
                    lokr_w2.Add(adapter, w2);
                }
            }
        }

        /// <inheritdoc />
        protected override Tensor ForwardActive(Tensor input)
        {
            var result = BaseLayer.forward(input);
            foreach (var adapter in UnmergedActiveAdapters)
            {
                var options = OptionsOf(adapter);
                if (LycorisDropout.SkipModule(training, options.ModuleDropout)) continue;
                var delta = DeltaWeight(adapter);
                if (training && options.RankDropout > 0) delta = LycorisDropout.DropRows(delta, options.RankDropout, rescale: options.RankDropoutScale);
                result = result.add(nn.functional.linear(input, delta));
            }
            return result;
        }

        /// <inheritdoc />
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            return kron(W1(adapter), W2(adapter).contiguous()).mul(OptionsOf(adapter).Scaling);
        }

        /// <inheritdoc />
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            var current = Options(adapter);
            if (settings is not LoKrOptions lokr)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is a LoKr adapter; the file describes a {settings.PeftType} adapter");
            var proposed = current with
            {
                Rank = lokr.Rank, Alpha = lokr.Alpha, DecomposeFactor = lokr.DecomposeFactor, DecomposeBoth = lokr.DecomposeBoth,
                RankDropout = lokr.RankDropout, ModuleDropout = lokr.ModuleDropout, RankDropoutScale = lokr.RankDropoutScale,
            };
            // The rank and the factorisation may differ as long as they give the same parameter shapes; the scaling
            // then follows the file's rank, as PEFT computes it.
            if (proposed.Rank < 1 || proposed.DecomposeFactor == 0 || proposed.DecomposeFactor < -1)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}': the file's LoKr settings are invalid (r {lokr.Rank}, decompose_factor {lokr.DecomposeFactor})");
            var mine = LoKr.LayoutFor(current, InFeatures, OutFeatures);
            var theirs = LoKr.LayoutFor(proposed, InFeatures, OutFeatures);
            if (mine != theirs)
                throw new InvalidOperationException(
                    $"{Site}: adapter '{adapter}' is shaped {mine}; the file's settings (r {lokr.Rank}, decompose_factor {lokr.DecomposeFactor}, decompose_both {lokr.DecomposeBoth.ToString().ToLowerInvariant()}) give {theirs}");
            SetOptions(adapter, proposed);
        }
    }

    /// <summary>The entry point generated code calls for <c>[LoKr]</c>, and PEFT's factorisation rules.</summary>
    public static class LoKr
    {
        /// <summary>
        /// How a LoKr adapter is shaped on a layer: out = <see cref="OutA"/>·<see cref="OutB"/>, in =
        /// <see cref="InC"/>·<see cref="InD"/>, W1 [OutA, InC], W2 [OutB, InD], and which factor is a rank-r product.
        /// </summary>
        /// <param name="OutA">The first factor of the out-size (rows of W1).</param>
        /// <param name="OutB">The second factor of the out-size (rows of W2).</param>
        /// <param name="InC">The first factor of the in-size (columns of W1).</param>
        /// <param name="InD">The second factor of the in-size (columns of W2).</param>
        /// <param name="Rank">The rank of the low-rank factors.</param>
        /// <param name="LowRankW1">W1 is <c>lokr_w1_a</c>·<c>lokr_w1_b</c> rather than <c>lokr_w1</c>.</param>
        /// <param name="LowRankW2">W2 is <c>lokr_w2_a</c>·<c>lokr_w2_b</c> rather than <c>lokr_w2</c>.</param>
        public sealed record Layout(long OutA, long OutB, long InC, long InD, int Rank, bool LowRankW1, bool LowRankW2)
        {
            /// <inheritdoc />
            public override string ToString() =>
                $"W1 [{OutA}, {InC}]{(LowRankW1 ? $" of rank {Rank}" : "")} ⊗ W2 [{OutB}, {InD}]{(LowRankW2 ? $" of rank {Rank}" : "")}";

            /// <summary>Equal when the parameters they give have the same shapes (the rank counts only where a factor is low-rank).</summary>
            public bool Equals(Layout? other) =>
                other is not null && OutA == other.OutA && OutB == other.OutB && InC == other.InC && InD == other.InD
                && LowRankW1 == other.LowRankW1 && LowRankW2 == other.LowRankW2
                && (!(LowRankW1 || LowRankW2) || Rank == other.Rank);

            /// <inheritdoc />
            public override int GetHashCode() => HashCode.Combine(OutA, OutB, InC, InD, LowRankW1, LowRankW2);
        }

        /// <summary>
        /// PEFT's (LyCORIS's) <c>factorization(dimension, factor)</c>: two numbers whose product is
        /// <paramref name="dimension"/>. A positive <paramref name="factor"/> that divides it gives (factor,
        /// dimension / factor) as is; otherwise the pair closest to the square root whose smaller member is at most the
        /// factor (any, for -1), the smaller first.
        /// </summary>
        public static (long M, long N) Factorization(long dimension, int factor = -1)
        {
            if (factor > 0 && dimension % factor == 0) return (factor, dimension / factor);
            long limit = factor == -1 ? dimension : factor;
            long m = 1, n = dimension;
            long length = m + n;
            while (m < n)
            {
                long newM = m + 1;
                while (dimension % newM != 0) newM++;
                long newN = dimension / newM;
                if (newM + newN > length || newM > limit) break;
                (m, n) = (newM, newN);
            }
            return m > n ? (n, m) : (m, n);
        }

        /// <summary>The shapes PEFT gives a LoKr adapter with <paramref name="options"/> on a Linear(in, out).</summary>
        public static Layout LayoutFor(LoKrOptions options, long inFeatures, long outFeatures)
        {
            var (inM, inN) = Factorization(inFeatures, options.DecomposeFactor);
            var (outL, outK) = Factorization(outFeatures, options.DecomposeFactor);
            // PEFT: shape = ((out_l, out_k), (in_m, in_n)); W1 is [out_l, in_m] and W2 [out_k, in_n].
            bool lowRankW1 = options.DecomposeBoth && options.Rank < Math.Max(outL, inM) / 2.0;
            bool lowRankW2 = options.Rank < Math.Max(outK, inN) / 2.0;
            return new Layout(outL, outK, inM, inN, options.Rank, lowRankW1, lowRankW2);
        }

        /// <summary>
        /// Wraps <paramref name="layer"/> in a <see cref="LoKrLinear"/> with adapter <paramref name="adapter"/>, or adds
        /// the adapter to it if it already is one. Checks the options against the layer's real shape, with the
        /// analyzers' wording.
        /// </summary>
        /// <param name="layer">The member's current value: a <c>Linear</c>, or a <see cref="LoKrLinear"/> already.</param>
        /// <param name="site">Class and member, e.g. <c>Demo.Block.q</c>.</param>
        /// <param name="adapter">The adapter name.</param>
        /// <param name="options">The declared options.</param>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, LoKrOptions options) =>
            AdapterWrap.Linear<LoKrLinear>(layer, site, "LoKr", existing => existing.AddAdapter(adapter, options), linear => new LoKrLinear(site, linear, adapter, options));

        internal static void Validate(string site, LoKrOptions options, long inFeatures, long outFeatures)
        {
            AdapterChecks.RankAtLeastOne(site, "LoKr", options.Rank);
            if (options.DecomposeFactor == 0 || options.DecomposeFactor < -1)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.LoKrDecomposeFactor, site, options.DecomposeFactor, inFeatures, outFeatures));
            if (!(options.RankDropout >= 0 && options.RankDropout < 1))
                throw new ArgumentException(PeftMessages.Format(PeftMessages.ProbabilityOutOfRange, site, "LoKr", "rank dropout", options.RankDropout));
            if (!(options.ModuleDropout >= 0 && options.ModuleDropout < 1))
                throw new ArgumentException(PeftMessages.Format(PeftMessages.ProbabilityOutOfRange, site, "LoKr", "module dropout", options.ModuleDropout));
        }
    }

    /// <summary>
    /// The options of one LoKr adapter, as <c>[LoKr]</c> declares them (the same defaults), and its entry in PEFT's
    /// <c>LoKrConfig</c>; <c>r</c> and <c>alpha</c> may differ per layer (<c>rank_pattern</c>, <c>alpha_pattern</c>).
    /// </summary>
    public sealed record LoKrOptions : AdapterSettings
    {
        /// <summary>The rank r (PEFT's <c>r</c>).</summary>
        public int Rank { get; init; } = 8;

        /// <summary>PEFT's <c>alpha</c>; the update is scaled by Alpha / r.</summary>
        public double Alpha { get; init; } = 8;

        /// <summary>PEFT's <c>decompose_factor</c>: -1 for factors near the square root, or a positive preferred factor.</summary>
        public int DecomposeFactor { get; init; } = -1;

        /// <summary>PEFT's <c>decompose_both</c>: W1 low-rank too when the rank is small enough.</summary>
        public bool DecomposeBoth { get; init; }

        /// <summary>Probability of dropping each output row of the update in training (PEFT's <c>rank_dropout</c>).</summary>
        public double RankDropout { get; init; }

        /// <summary>Whether the rows <see cref="RankDropout"/> keeps are divided by the fraction kept (PEFT's <c>rank_dropout_scale</c>).</summary>
        public bool RankDropoutScale { get; init; }

        /// <summary>Probability of skipping the whole update for a batch in training (PEFT's <c>module_dropout</c>).</summary>
        public double ModuleDropout { get; init; }

        /// <summary>The factor applied to the Kronecker product.</summary>
        public double Scaling => Alpha / Rank;

        /// <inheritdoc />
        public override string PeftType => "LOKR";

        /// <inheritdoc />
        public override IReadOnlyDictionary<string, double> PerLayerFields => new Dictionary<string, double>
        {
            ["r"] = Rank,
            ["alpha"] = Alpha,
        };

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config)
        {
            config["decompose_factor"] = DecomposeFactor;
            config["decompose_both"] = DecomposeBoth;
            config["rank_dropout"] = AdapterConfig.Float(RankDropout);
            config["module_dropout"] = AdapterConfig.Float(ModuleDropout);
            config["rank_dropout_scale"] = RankDropoutScale;
        }

        /// <summary>
        /// Reads the fields of a LoKr config that apply to the layer at <paramref name="modulePath"/> (PEFT's defaults:
        /// r = 8, alpha = 8, decompose_factor = -1, rank_dropout_scale = false). <c>init_weights</c> acts only at
        /// creation and is not read.
        /// </summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            int rank = checked((int)AdapterConfig.PerLayer(config, "r", modulePath, file, fallback: 8));
            double alpha = AdapterConfig.PerLayer(config, "alpha", modulePath, file, fallback: 8);
            int factor = checked((int)AdapterConfig.Number(config, "decompose_factor", file, fallback: -1));
            bool both = config["decompose_both"]?.GetValue<bool>() ?? false;
            double rankDropout = AdapterConfig.Probability(config, "rank_dropout", file);
            double moduleDropout = AdapterConfig.Probability(config, "module_dropout", file);
            bool scale = config["rank_dropout_scale"] switch
            {
                null => false,
                JsonValue v when v.TryGetValue<bool>(out var b) => b,
                var other => throw new System.IO.InvalidDataException($"{file}: field 'rank_dropout_scale' must be true or false, got {other.ToJsonString()}"),
            };
            return new LoKrOptions
            {
                Rank = rank, Alpha = alpha, DecomposeFactor = factor, DecomposeBoth = both, RankDropout = rankDropout, ModuleDropout = moduleDropout,
                RankDropoutScale = scale,
            };
        }
    }
}
