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
            config["lora_dropout"] = AdapterConfig.Float(Dropout);
            config["use_rslora"] = UseRsLora;
            config["use_dora"] = UseDora;
            config["fan_in_fan_out"] = false;
            config["bias"] = "none";
            // PEFT writes true for its default init and a string for the others ("gaussian", "pissa", "olora").
            config["init_lora_weights"] = Init == LoRAInit.Default ? JsonValue.Create(true) : JsonValue.Create(LoRAInitialization.ConfigValue(Init));
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
            return new LoRASettings(rank, alpha, dropout, useRsLora, useDora, ReadInit(config, file));
        }

        /// <summary>
        /// PEFT's <c>init_lora_weights</c>: <c>true</c> / <c>false</c> and inits that leave the base weight alone
        /// (<c>"eva"</c>, <c>"orthogonal"</c>, ...) read as <see cref="LoRAInit.Default"/> (after loading, only the
        /// factors matter); <c>"pissa"</c> and <c>"pissa_niter_N"</c> as PiSSA, <c>"olora"</c> as OLoRA. Inits that
        /// change the base weight in a way this library does not reproduce (<c>"corda"</c>, <c>"loftq"</c>,
        /// <c>"lora_ga"</c>) are refused: their factors fit only that changed base weight.
        /// </summary>
        private static LoRAInit ReadInit(JsonObject config, string file)
        {
            if (config["init_lora_weights"] is not JsonValue v || !v.TryGetValue<string>(out var text)) return LoRAInit.Default;
            string init = text.ToLowerInvariant();
            if (init == "gaussian") return LoRAInit.Gaussian;
            if (init.StartsWith("pissa", System.StringComparison.Ordinal)) return LoRAInit.PiSSA;
            if (init == "olora") return LoRAInit.OLoRA;
            if (init.StartsWith("corda", System.StringComparison.Ordinal) || init == "loftq" || init == "lora_ga")
                throw new System.IO.InvalidDataException(
                    $"{file}: init_lora_weights '{text}' changes the base weights in a way PeftDsl does not reproduce; " +
                    "convert the adapter to a plain LoRA in PEFT (save_pretrained with path_initial_model_for_weight_conversion)");
            return LoRAInit.Default;
        }
    }
}
