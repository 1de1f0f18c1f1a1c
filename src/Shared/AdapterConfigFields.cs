// Compiled into both the analyzers (netstandard2.0) and the runtime: what PEFT's adapter_config.json holds once per
// adapter, method by method. PEFT017 reads it to compare attributes at compile time; the runtime's settings records
// write exactly these keys (tests/Peft.Tests/IO/AdapterConfigFieldsTests.cs holds the two together).
using System.Globalization;

namespace Peft
{
    /// <summary>The config fields of one PeftDsl method, as its <c>adapter_config.json</c> holds them.</summary>
    internal static class AdapterConfigFields
    {
        /// <summary>A field the config holds once for every layer of an adapter.</summary>
        internal sealed class Field
        {
            public Field(string key, string? property, string defaultJson, params string[] enumJson)
            {
                Key = key;
                Property = property;
                DefaultJson = defaultJson;
                EnumJson = enumJson;
            }

            /// <summary>The config key, e.g. <c>lora_dropout</c>.</summary>
            public string Key { get; }

            /// <summary>The attribute property (or constructor parameter, PascalCase) that sets it; null where no attribute does.</summary>
            public string? Property { get; }

            /// <summary>The value written when the attribute leaves it out, as JSON text.</summary>
            public string DefaultJson { get; }

            /// <summary>For an enum property, the JSON text written for each value by its number; empty otherwise.</summary>
            public string[] EnumJson { get; }
        }

        /// <summary>One method: its PEFT type, the fields held once per adapter, and those PEFT lets differ per layer (through a pattern).</summary>
        internal sealed class Method
        {
            public Method(string name, string peftType, string[] perLayer, params Field[] shared)
            {
                Name = name;
                PeftType = peftType;
                PerLayer = perLayer;
                Shared = shared;
            }

            /// <summary>The attribute's method, e.g. <c>DoRA</c>.</summary>
            public string Name { get; }

            /// <summary>PEFT's <c>peft_type</c>, e.g. <c>LORA</c> (DoRA is a LoRA with <c>use_dora</c>).</summary>
            public string PeftType { get; }

            /// <summary>Keys that may differ per layer (<c>r</c> → <c>rank_pattern</c>, ...).</summary>
            public string[] PerLayer { get; }

            /// <summary>Keys held once per adapter, beside <c>peft_type</c>.</summary>
            public Field[] Shared { get; }
        }

        /// <summary>The key every config holds once: the method itself.</summary>
        public const string PeftTypeKey = "peft_type";

        private static readonly string[] LoRAInitJson = { "true", "\"gaussian\"", "\"pissa\"", "\"olora\"" };

        private static Field[] LoRAShared(string useDora) => new[]
        {
            new Field("lora_dropout", "Dropout", "0"),
            new Field("use_rslora", "UseRsLora", "false"),
            new Field("use_dora", null, useDora),
            new Field("fan_in_fan_out", null, "false"),
            new Field("bias", null, "\"none\""),
            new Field("init_lora_weights", "Init", "true", LoRAInitJson),
        };

        /// <summary>Every method, by its attribute's name.</summary>
        public static readonly Method[] Methods =
        {
            new Method("LoRA", "LORA", new[] { "r", "lora_alpha" }, LoRAShared("false")),
            new Method("DoRA", "LORA", new[] { "r", "lora_alpha" }, LoRAShared("true")),
            // PEFT's MiSS has no rank_pattern: the block is held once per adapter.
            new Method("Bone", "MISS", new string[0],
                new Field("r", "Block", "64"),
                new Field("init_weights", "Variant", "true", "true", "\"bat\"")),
            new Method("Hydra", "HYDRA", new[] { "r", "sequential_r", "lora_alpha" },
                new Field("lora_dropout", "Dropout", "0")),
            // VeRA's layers share one pair of projections: one rank and one seed per adapter.
            new Method("VeRA", "VERA", new string[0],
                new Field("r", "Rank", "256"),
                new Field("projection_prng_key", "ProjectionSeed", "0"),
                new Field("save_projection", null, "true"),
                new Field("vera_dropout", "Dropout", "0"),
                new Field("d_initial", null, "0.1"),
                new Field("fan_in_fan_out", null, "false"),
                new Field("bias", null, "\"none\"")),
            new Method("LoHa", "LOHA", new[] { "r", "alpha" },
                new Field("rank_dropout", "RankDropout", "0"),
                new Field("module_dropout", "ModuleDropout", "0")),
            new Method("LoKr", "LOKR", new[] { "r", "alpha" },
                new Field("decompose_factor", "DecomposeFactor", "-1"),
                new Field("decompose_both", "DecomposeBoth", "false"),
                new Field("rank_dropout", "RankDropout", "0"),
                new Field("module_dropout", "ModuleDropout", "0")),
            // feedforward_modules lists layers, so it may differ per layer.
            new Method("IA3", "IA3", new string[0],
                new Field("init_ia3_weights", null, "true"),
                new Field("fan_in_fan_out", null, "false")),
        };

        /// <summary>The method of an attribute (<c>LoRA</c>, <c>Bone</c>, ...), or null.</summary>
        public static Method? Find(string method)
        {
            foreach (Method m in Methods)
            {
                if (m.Name == method) return m;
            }

            return null;
        }

        /// <summary>A value as <c>adapter_config.json</c> writes it (System.Text.Json's text for a bool, number or string).</summary>
        public static string Json(object? value) => value switch
        {
            null => "null",
            bool b => b ? "true" : "false",
            string s => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"",
            double d => d.ToString("R", CultureInfo.InvariantCulture),
            float f => f.ToString("R", CultureInfo.InvariantCulture),
            System.IFormattable n => n.ToString(null, CultureInfo.InvariantCulture),
            _ => value.ToString() ?? "null",
        };
    }
}
