using System.IO;
using System.Text.Json.Nodes;
using Peft.Runtime.IO;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// A Bone adapter's entry in PEFT's <c>MissConfig</c>: <c>r</c> (the block) and <c>init_weights</c> (<c>true</c> for
    /// <see cref="BoneVariant.Bone"/>, <c>"bat"</c> for <see cref="BoneVariant.Bat"/>). PEFT's MiSS has no per-layer
    /// pattern, so both are shared by every layer of the adapter.
    /// </summary>
    public sealed record BoneSettings(int Block, BoneVariant Variant, double Dropout = 0) : AdapterSettings
    {
        /// <inheritdoc />
        public override string PeftType => "MISS";

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config)
        {
            config["r"] = Block;
            config["init_weights"] = Variant == BoneVariant.Bat ? JsonValue.Create("bat") : JsonValue.Create(true);
            config["miss_dropout"] = AdapterConfig.Float(Dropout);
        }

        /// <summary>
        /// Reads a MiSS config (or a legacy BONE one, which has the same fields). PEFT's defaults: <c>r</c> = 64,
        /// <c>init_weights</c> = true. <c>false</c> (PEFT's random start) reads as <see cref="BoneVariant.Bone"/>, whose
        /// shape and forward it shares; <c>"mini"</c> is refused.
        /// </summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            double r = AdapterConfig.Number(config, "r", file, fallback: 64);
            if (r != System.Math.Floor(r) || r < 1 || r > int.MaxValue)
                throw new InvalidDataException($"{file}: field 'r' must be a whole number of at least 1, got {config["r"]!.ToJsonString()}");
            var variant = config["init_weights"] switch
            {
                null => BoneVariant.Bone,
                JsonValue v when v.TryGetValue<bool>(out _) => BoneVariant.Bone,
                JsonValue v when v.TryGetValue<string>(out var s) && s == "bat" => BoneVariant.Bat,
                JsonValue v when v.TryGetValue<string>(out var s) && s == "mini" =>
                    throw new InvalidDataException($"{file}: init_weights \"mini\" (MiSS with mini_r) is not supported by PeftDsl; supported: true, false, \"bat\""),
                var other => throw new InvalidDataException($"{file}: field 'init_weights' must be true, false or \"bat\", got {other.ToJsonString()}"),
            };
            double dropout = AdapterConfig.Number(config, "miss_dropout", file, fallback: 0); // legacy BONE files have none
            if (!(dropout >= 0 && dropout < 1))
                throw new InvalidDataException($"{file}: field 'miss_dropout' must be in [0, 1), got {dropout}");
            return new BoneSettings((int)r, variant, dropout);
        }
    }
}
