using System.Collections.Generic;
using System.Text.Json.Nodes;
using Peft.Runtime.IO;

namespace Peft.Runtime.Adapters
{
    /// <summary>A LoRA (or DoRA) adapter's entry in PEFT's <c>LoraConfig</c>.</summary>
    public sealed record LoRASettings(int Rank, double Alpha, double Dropout, bool UseRsLora, bool UseDora, LoRAInit Init) : AdapterSettings
    {
        /// <inheritdoc />
        public override string PeftType => "LORA";

        /// <inheritdoc />
        public override IReadOnlyDictionary<string, double> PerLayerFields => new Dictionary<string, double>
        {
            ["r"] = Rank,
            ["lora_alpha"] = Alpha,
        };

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config)
        {
            config["lora_dropout"] = Dropout;
            config["use_rslora"] = UseRsLora;
            config["use_dora"] = UseDora;
            config["fan_in_fan_out"] = false;
            config["bias"] = "none";
            config["init_lora_weights"] = Init == LoRAInit.Gaussian ? JsonValue.Create("gaussian") : JsonValue.Create(true);
        }

        /// <summary>Reads the fields of a LoRA config that apply to the layer at <paramref name="modulePath"/>.</summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            // PEFT's LoraConfig defaults: r = 8, lora_alpha = 8.
            int rank = checked((int)AdapterConfig.PerLayer(config, "r", modulePath, file, fallback: 8));
            double alpha = AdapterConfig.PerLayer(config, "lora_alpha", modulePath, file, fallback: 8);
            bool useRsLora = config["use_rslora"]?.GetValue<bool>() ?? false;
            bool useDora = config["use_dora"]?.GetValue<bool>() ?? false;
            double dropout = config["lora_dropout"]?.GetValue<double>() ?? 0;
            var init = config["init_lora_weights"] is JsonValue v && v.TryGetValue<string>(out var s) && s == "gaussian" ? LoRAInit.Gaussian : LoRAInit.Default;
            return new LoRASettings(rank, alpha, dropout, useRsLora, useDora, init);
        }
    }
}
