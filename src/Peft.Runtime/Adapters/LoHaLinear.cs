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
    /// LoHa on a <c>Linear</c> layer: y = xWᵀ + b + x·ΔWᵀ with ΔW = (W1a·W1b) ⊙ (W2a·W2b) · α/r, W1a, W2a [out, r],
    /// W1b, W2b [r, in], held under PEFT's parameter-dict names <c>hada_w1_a.&lt;adapter&gt;</c>, <c>hada_w1_b</c>,
    /// <c>hada_w2_a</c>, <c>hada_w2_b</c>.
    /// </summary>
    public sealed class LoHaLinear : AdapterLayerBase<LoHaOptions>
    {
        private readonly AdapterParameterDict hada_w1_a = new();
        private readonly AdapterParameterDict hada_w1_b = new();
        private readonly AdapterParameterDict hada_w2_a = new();
        private readonly AdapterParameterDict hada_w2_b = new();

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter.</summary>
        public LoHaLinear(string site, Linear baseLayer, string adapter, LoHaOptions options) : base(site, baseLayer)
        {
            RegisterAdapterDict(nameof(hada_w1_a), hada_w1_a);
            RegisterAdapterDict(nameof(hada_w1_b), hada_w1_b);
            RegisterAdapterDict(nameof(hada_w2_a), hada_w2_a);
            RegisterAdapterDict(nameof(hada_w2_b), hada_w2_b);
            AddAdapter(adapter, options);
        }

        /// <inheritdoc />
        public override string PeftType => "LOHA";

        /// <summary>W1a of an adapter ([out, r]).</summary>
        public Parameter W1A(string adapter) => hada_w1_a[adapter];

        /// <summary>W1b of an adapter ([r, in]).</summary>
        public Parameter W1B(string adapter) => hada_w1_b[adapter];

        /// <summary>W2a of an adapter ([out, r]).</summary>
        public Parameter W2A(string adapter) => hada_w2_a[adapter];

        /// <summary>W2b of an adapter ([r, in]); starts at zero.</summary>
        public Parameter W2B(string adapter) => hada_w2_b[adapter];

        /// <summary>Adds a named adapter; it is checked against the layer's shape first.</summary>
        public void AddAdapter(string adapter, LoHaOptions options)
        {
            LoHa.Validate(Site, options, InFeatures, OutFeatures);
            RegisterAdapter(adapter, options);
            var weight = BaseWeight;
            Parameter Make(long rows, long columns) => new(empty(rows, columns, dtype: weight.dtype, device: weight.device));
            var w1a = Make(OutFeatures, options.Rank);
            var w1b = Make(options.Rank, InFeatures);
            var w2a = Make(OutFeatures, options.Rank);
            var w2b = Make(options.Rank, InFeatures);
            using (no_grad())
            {
                // PEFT's reset_adapter_parameters: Kaiming-uniform (a = √5) for three factors, W2b zero.
                nn.init.kaiming_uniform_(w1a, a: Math.Sqrt(5));
                nn.init.kaiming_uniform_(w1b, a: Math.Sqrt(5));
                nn.init.kaiming_uniform_(w2a, a: Math.Sqrt(5));
                nn.init.zeros_(w2b);
            }
            hada_w1_a.Add(adapter, w1a);
            hada_w1_b.Add(adapter, w1b);
            hada_w2_a.Add(adapter, w2a);
            hada_w2_b.Add(adapter, w2b);
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
                if (training && options.RankDropout > 0) delta = LycorisDropout.DropRows(delta, options.RankDropout, rescale: true);
                result = result.add(nn.functional.linear(input, delta));
            }
            return result;
        }

        /// <inheritdoc />
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            var product = matmul(W1A(adapter), W1B(adapter)).mul(matmul(W2A(adapter), W2B(adapter)));
            return product.mul(OptionsOf(adapter).Scaling);
        }

        /// <inheritdoc />
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            var current = Options(adapter);
            if (settings is not LoHaOptions loha)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is a LoHa adapter; the file describes a {settings.PeftType} adapter");
            if (loha.Rank != current.Rank)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' has rank {current.Rank}; the file has rank {loha.Rank}");
            SetOptions(adapter, current with { Alpha = loha.Alpha, RankDropout = loha.RankDropout, ModuleDropout = loha.ModuleDropout });
        }
    }

    /// <summary>The entry point generated code calls for <c>[LoHa]</c>.</summary>
    public static class LoHa
    {
        /// <summary>
        /// Wraps <paramref name="layer"/> in a <see cref="LoHaLinear"/> with adapter <paramref name="adapter"/>, or adds
        /// the adapter to it if it already is one. Checks the options against the layer's real shape, with the
        /// analyzers' wording.
        /// </summary>
        /// <param name="layer">The member's current value: a <c>Linear</c>, or a <see cref="LoHaLinear"/> already.</param>
        /// <param name="site">Class and member, e.g. <c>Demo.Block.q</c>.</param>
        /// <param name="adapter">The adapter name.</param>
        /// <param name="options">The declared options.</param>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, LoHaOptions options) =>
            AdapterWrap.Linear<LoHaLinear>(layer, site, "LoHa", existing => existing.AddAdapter(adapter, options), linear => new LoHaLinear(site, linear, adapter, options));

        internal static void Validate(string site, LoHaOptions options, long inFeatures, long outFeatures)
        {
            AdapterChecks.RankWithinLayer(site, "LoHa", options.Rank, inFeatures, outFeatures);
            if (!(options.RankDropout >= 0 && options.RankDropout < 1))
                throw new ArgumentException(PeftMessages.Format(PeftMessages.ProbabilityOutOfRange, site, "LoHa", "rank dropout", options.RankDropout));
            if (!(options.ModuleDropout >= 0 && options.ModuleDropout < 1))
                throw new ArgumentException(PeftMessages.Format(PeftMessages.ProbabilityOutOfRange, site, "LoHa", "module dropout", options.ModuleDropout));
        }
    }

    /// <summary>
    /// The options of one LoHa adapter, as <c>[LoHa]</c> declares them (the same defaults), and its entry in PEFT's
    /// <c>LoHaConfig</c>; <c>r</c> and <c>alpha</c> may differ per layer (<c>rank_pattern</c>, <c>alpha_pattern</c>).
    /// </summary>
    public sealed record LoHaOptions : AdapterSettings
    {
        /// <summary>The rank r of each of the two products (PEFT's <c>r</c>).</summary>
        public int Rank { get; init; } = 8;

        /// <summary>PEFT's <c>alpha</c>; the update is scaled by Alpha / r.</summary>
        public double Alpha { get; init; } = 8;

        /// <summary>Probability of dropping each output row of the update in training (PEFT's <c>rank_dropout</c>).</summary>
        public double RankDropout { get; init; }

        /// <summary>Probability of skipping the whole update for a batch in training (PEFT's <c>module_dropout</c>).</summary>
        public double ModuleDropout { get; init; }

        /// <summary>The factor applied to the Hadamard product.</summary>
        public double Scaling => Alpha / Rank;

        /// <inheritdoc />
        public override string PeftType => "LOHA";

        /// <inheritdoc />
        public override IReadOnlyDictionary<string, double> PerLayerFields => new Dictionary<string, double>
        {
            ["r"] = Rank,
            ["alpha"] = Alpha,
        };

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config)
        {
            config["rank_dropout"] = AdapterConfig.Float(RankDropout);
            config["module_dropout"] = AdapterConfig.Float(ModuleDropout);
        }

        /// <summary>Reads the fields of a LoHa config that apply to the layer at <paramref name="modulePath"/> (PEFT's defaults: r = 8, alpha = 8).</summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            int rank = checked((int)AdapterConfig.PerLayer(config, "r", modulePath, file, fallback: 8));
            double alpha = AdapterConfig.PerLayer(config, "alpha", modulePath, file, fallback: 8);
            double rankDropout = AdapterConfig.Probability(config, "rank_dropout", file);
            double moduleDropout = AdapterConfig.Probability(config, "module_dropout", file);
            return new LoHaOptions { Rank = rank, Alpha = alpha, RankDropout = rankDropout, ModuleDropout = moduleDropout };
        }
    }
}
