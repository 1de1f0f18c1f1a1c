using System.Collections.Generic;
using System.Text.Json.Nodes;
using Peft.Runtime.IO;

namespace Peft.Runtime.Adapters
{
    /// <summary>A LoHa adapter's entry in PEFT's <c>LoHaConfig</c>; <c>r</c> and <c>alpha</c> may differ per layer.</summary>
    /// <param name="Rank">PEFT's <c>r</c> (or this layer's <c>rank_pattern</c> entry).</param>
    /// <param name="Alpha">PEFT's <c>alpha</c> (or this layer's <c>alpha_pattern</c> entry).</param>
    /// <param name="RankDropout">PEFT's <c>rank_dropout</c>.</param>
    /// <param name="ModuleDropout">PEFT's <c>module_dropout</c>.</param>
    public sealed record LoHaSettings(int Rank, double Alpha, double RankDropout, double ModuleDropout) : AdapterSettings
    {
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
            double rankDropout = AdapterConfig.Number(config, "rank_dropout", file, fallback: 0);
            double moduleDropout = AdapterConfig.Number(config, "module_dropout", file, fallback: 0);
            return new LoHaSettings(rank, alpha, rankDropout, moduleDropout);
        }
    }
}
