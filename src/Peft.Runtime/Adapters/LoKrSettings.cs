using System.Collections.Generic;
using System.Text.Json.Nodes;
using Peft.Runtime.IO;

namespace Peft.Runtime.Adapters
{
    /// <summary>A LoKr adapter's entry in PEFT's <c>LoKrConfig</c>; <c>r</c> and <c>alpha</c> may differ per layer.</summary>
    /// <param name="Rank">PEFT's <c>r</c> (or this layer's <c>rank_pattern</c> entry).</param>
    /// <param name="Alpha">PEFT's <c>alpha</c> (or this layer's <c>alpha_pattern</c> entry).</param>
    /// <param name="DecomposeFactor">PEFT's <c>decompose_factor</c>.</param>
    /// <param name="DecomposeBoth">PEFT's <c>decompose_both</c>.</param>
    /// <param name="RankDropout">PEFT's <c>rank_dropout</c>.</param>
    /// <param name="ModuleDropout">PEFT's <c>module_dropout</c>.</param>
    /// <param name="RankDropoutScale">PEFT's <c>rank_dropout_scale</c>.</param>
    public sealed record LoKrSettings(int Rank, double Alpha, int DecomposeFactor, bool DecomposeBoth, double RankDropout, double ModuleDropout, bool RankDropoutScale = false) : AdapterSettings
    {
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
            double rankDropout = AdapterConfig.Number(config, "rank_dropout", file, fallback: 0);
            double moduleDropout = AdapterConfig.Number(config, "module_dropout", file, fallback: 0);
            bool scale = config["rank_dropout_scale"] switch
            {
                null => false,
                JsonValue v when v.TryGetValue<bool>(out var b) => b,
                var other => throw new System.IO.InvalidDataException($"{file}: field 'rank_dropout_scale' must be true or false, got {other.ToJsonString()}"),
            };
            return new LoKrSettings(rank, alpha, factor, both, rankDropout, moduleDropout, scale);
        }
    }
}
