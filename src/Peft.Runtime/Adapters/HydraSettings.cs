using System.Collections.Generic;
using System.IO;
using System.Text.Json.Nodes;
using Peft.Runtime.IO;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// A Hydra adapter's entry in PeftDsl's own <c>peft_type: "HYDRA"</c> config (PEFT has no Hydra), in LoRA's
    /// vocabulary: <c>r</c> (the parallel rank, per layer through <c>rank_pattern</c>), <c>sequential_r</c> (per layer
    /// through <c>sequential_rank_pattern</c>), <c>lora_alpha</c> (per layer through <c>alpha_pattern</c>) and
    /// <c>lora_dropout</c>.
    /// </summary>
    public sealed record HydraSettings(int ParallelRank, int SequentialRank, double Alpha, double Dropout) : AdapterSettings
    {
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

        /// <summary>Reads the fields of a HYDRA config that apply to the layer at <paramref name="modulePath"/> (defaults as <see cref="HydraOptions"/>).</summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            int parallel = Rank(AdapterConfig.PerLayer(config, "r", modulePath, file, fallback: 8), "r", file);
            int sequential = Rank(AdapterConfig.PerLayer(config, "sequential_r", modulePath, file, fallback: 8), "sequential_r", file);
            double alpha = AdapterConfig.PerLayer(config, "lora_alpha", modulePath, file, fallback: 8);
            double dropout = AdapterConfig.Number(config, "lora_dropout", file, fallback: 0);
            return new HydraSettings(parallel, sequential, alpha, dropout);
        }

        private static int Rank(double value, string field, string file) =>
            value == System.Math.Floor(value) && value >= 1 && value <= int.MaxValue
                ? (int)value
                : throw new InvalidDataException($"{file}: '{field}' must be a whole number of at least 1, got {value}");
    }
}
