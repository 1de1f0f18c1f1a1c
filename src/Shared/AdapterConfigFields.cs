// Compiled into both the analyzers (netstandard2.0) and the runtime: the one table of PeftDsl's methods. For each, what
// PEFT's adapter_config.json holds once per adapter (PEFT017 compares attributes by it at compile time; the runtime's
// settings records write exactly these keys: tests/Peft.Tests/IO/PeftFormat/AdapterConfigFieldsTests.cs holds the two together),
// and the rules the parser and analyzers apply to its attribute: which constructor arguments are sizes and what bounds
// them (PEFT004 / PEFT005 / PEFT006), which layers it wraps (PEFT016), which runtime layer it shares (PEFT008's mixed
// methods) and whether a layer of it can hold a merged LoRA (PEFT011). Adding a method adds one entry to Methods.
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

            /// <summary>A double written as an integer when integral (AdaLoRA's <c>lora_alpha</c>: PEFT keeps the <c>8</c> its users type).</summary>
            public bool IntegralAsInteger { get; init; }
        }

        /// <summary>
        /// The rules of a method whose ranks change during training, checked on its attribute's named arguments
        /// (defaults from <see cref="Method.Defaults"/>, else the shared field that the property sets).
        /// </summary>
        internal enum RankSchedule
        {
            /// <summary>Fixed ranks.</summary>
            None,

            /// <summary>
            /// AdaLoRA: <c>TotalSteps</c> given and ≥ 1 (PEFT018), <c>Tinit &lt; TotalSteps − Tfinal</c> (PEFT019),
            /// <c>InitRank ≥ targetRank</c> (PEFT020), <c>Beta1</c>, <c>Beta2</c> in (0, 1) (PEFT021), <c>DeltaT ≥ 1</c> (PEFT023).
            /// </summary>
            Pruned,

            /// <summary>
            /// IncreLoRA: <c>InitRank ≤ targetRank ≤ MaxRank</c> (PEFT022), <c>Beta1</c>, <c>Beta2</c> in (0, 1) (PEFT021),
            /// <c>Interval</c>, <c>TopH</c>, <c>RankIncrement</c> ≥ 1 (PEFT023).
            /// </summary>
            Grown,
        }

        /// <summary>What bounds a size argument of an attribute's constructor, as the method's runtime layer checks it.</summary>
        internal enum Bound
        {
            /// <summary>A rank of at least 1, with no upper bound the layer's shape sets (VeRA, LoKr).</summary>
            Rank,

            /// <summary>A rank from 1 to min(in, out) (PEFT004, PEFT005).</summary>
            RankWithinInAndOut,

            /// <summary>A rank from 1 to the layer's out-features (Hydra's sequential rank; PEFT004, PEFT005).</summary>
            RankWithinOut,

            /// <summary>A block of at least 1 that divides the in-features, and with <c>Variant = Bat</c> the out-features too (PEFT004, PEFT006).</summary>
            BlockDividingIn,

            /// <summary>A rank from 1 to in·out/(in + out), so that rank·(in + out) entries fit in the layer (SaRA; PEFT004, PEFT028).</summary>
            RankWithinSparseBudget,
        }

        /// <summary>A size argument: the constructor parameter and what bounds it.</summary>
        internal sealed class Size
        {
            public Size(string parameter, Bound bound)
            {
                Parameter = parameter;
                Bound = bound;
            }

            /// <summary>The constructor parameter, e.g. <c>rank</c>, <c>parallelRank</c>, <c>block</c>.</summary>
            public string Parameter { get; }

            public Bound Bound { get; }
        }

        /// <summary>The layer type every method wraps today, by metadata name (<see cref="PeftMessages.UnsupportedLayer"/> names it).</summary>
        public const string LinearLayer = "TorchSharp.Modules.Linear";

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

            /// <summary>The attribute's size arguments (ranks, blocks) and their bounds; none for a method without one (IA3).</summary>
            public Size[] Sizes { get; init; } = new Size[0];

            /// <summary>The layer types (metadata names) its adapter layer wraps; another constructed layer is PEFT016.</summary>
            public string[] Layers { get; init; } = { LinearLayer };

            /// <summary>The method whose runtime layer it shares, if another's (DoRA is a LoRA layer with a magnitude); one layer holds one such family only.</summary>
            public string? SharesLayerWith { get; init; }

            /// <summary>The runtime layer family: <see cref="SharesLayerWith"/>, else the method itself.</summary>
            public string LayerFamily => SharesLayerWith ?? Name;

            /// <summary>Whether a layer of this method can hold the LoRA adapter every <c>[MergeWith]</c> creates (PEFT011).</summary>
            public bool HoldsMergedLoRA { get; init; }

            /// <summary>Attribute properties (doubles or ints) that must be at least 0 (PEFT029), e.g. SaRA's <c>Threshold</c>.</summary>
            public string[] NonNegative { get; init; } = new string[0];

            /// <summary>How its ranks change during training, and so which of PEFT018–PEFT023 apply.</summary>
            public RankSchedule Schedule { get; init; }

            /// <summary>Defaults of named attribute properties that no shared field sets (the analyzers' view of the attribute).</summary>
            public (string Property, double Value)[] Defaults { get; init; } = new (string, double)[0];

            /// <summary>Attribute properties that count optimizer steps (LaMDA's freezing schedule): each at least 0 (PEFT024).</summary>
            public string[] StepCounts { get; init; } = new string[0];
        }

        /// <summary>The key every config holds once: the method itself.</summary>
        public const string PeftTypeKey = "peft_type";

        // EVA is written as true: the file holds initialised factors on an unchanged base, which every PEFT reads as a
        // plain LoRA (older PEFT crashes on the "eva" init's eva_config); "eva" is read too.
        private static readonly string[] LoRAInitJson = { "true", "\"gaussian\"", "\"pissa\"", "\"olora\"", "true" };

        private static Field[] LoRAShared(string useDora) => new[]
        {
            new Field("lora_dropout", "Dropout", "0.0"),
            new Field("use_rslora", "UseRsLora", "false"),
            new Field("use_dora", null, useDora),
            new Field("fan_in_fan_out", null, "false"),
            new Field("bias", null, "\"none\""),
            new Field("init_lora_weights", "Init", "true", LoRAInitJson),
        };

        /// <summary>
        /// The shared fields of a method saved as exactly a plain LoRA (LaMDA, LoLDU): LoRA's keys, of which only the
        /// dropout is the attribute's; the others always hold plain LoRA's defaults.
        /// </summary>
        private static Field[] PlainLoRAShared() => new[]
        {
            new Field("lora_dropout", "Dropout", "0.0"),
            new Field("use_rslora", null, "false"),
            new Field("use_dora", null, "false"),
            new Field("fan_in_fan_out", null, "false"),
            new Field("bias", null, "\"none\""),
            new Field("init_lora_weights", null, "true"),
        };

        private static Size[] RankWithinInAndOut => new[] { new Size("rank", Bound.RankWithinInAndOut) };

        /// <summary>Every method, by its attribute's name: the one per-method entry the generator, the analyzers and the runtime read.</summary>
        public static readonly Method[] Methods =
        {
            new Method("LoRA", "LORA", new[] { "r", "lora_alpha" }, LoRAShared("false"))
                { Sizes = RankWithinInAndOut, HoldsMergedLoRA = true },
            new Method("DoRA", "LORA", new[] { "r", "lora_alpha" }, LoRAShared("true"))
                { Sizes = RankWithinInAndOut, HoldsMergedLoRA = true, SharesLayerWith = "LoRA" },
            // PEFT's MiSS has no rank_pattern: the block is held once per adapter.
            new Method("Bone", "MISS", new string[0],
                new Field("r", "Block", "64"),
                new Field("init_weights", "Variant", "true", "true", "\"bat\""),
                new Field("miss_dropout", "Dropout", "0.0"))
                { Sizes = new[] { new Size("block", Bound.BlockDividingIn) } },
            new Method("Hydra", "HYDRA", new[] { "r", "sequential_r", "lora_alpha" },
                new Field("lora_dropout", "Dropout", "0.0"))
                { Sizes = new[] { new Size("parallelRank", Bound.RankWithinInAndOut), new Size("sequentialRank", Bound.RankWithinOut) } },
            // VeRA's layers share one pair of projections: one rank and one seed per adapter.
            new Method("VeRA", "VERA", new string[0],
                new Field("r", "Rank", "256"),
                new Field("projection_prng_key", "ProjectionSeed", "0"),
                new Field("save_projection", "SaveProjection", "true"),
                new Field("vera_dropout", "Dropout", "0.0"),
                new Field("d_initial", null, "0.1"),
                new Field("fan_in_fan_out", null, "false"),
                new Field("bias", null, "\"none\""))
                { Sizes = new[] { new Size("rank", Bound.Rank) } },
            new Method("LoHa", "LOHA", new[] { "r", "alpha" },
                new Field("rank_dropout", "RankDropout", "0.0"),
                new Field("module_dropout", "ModuleDropout", "0.0"))
                { Sizes = RankWithinInAndOut },
            new Method("LoKr", "LOKR", new[] { "r", "alpha" },
                new Field("decompose_factor", "DecomposeFactor", "-1"),
                new Field("decompose_both", "DecomposeBoth", "false"),
                new Field("rank_dropout", "RankDropout", "0.0"),
                new Field("module_dropout", "ModuleDropout", "0.0"),
                new Field("rank_dropout_scale", "RankDropoutScale", "false"))
                { Sizes = new[] { new Size("rank", Bound.Rank) } },
            // feedforward_modules lists layers, so it may differ per layer.
            new Method("IA3", "IA3", new string[0],
                new Field("init_ia3_weights", null, "true"),
                new Field("fan_in_fan_out", null, "false")),
            // Saved as PEFT's SHiRA: no rank_pattern there, so r is held once. A Threshold-selected adapter writes
            // peft_type "SARA" and its threshold instead of mask_type (the runtime compares them across layers).
            new Method("SaRA", "SHIRA", new string[0],
                new Field("r", "Rank", "32"),
                new Field("mask_type", null, "\"random\""),
                new Field("init_weights", null, "true"),
                new Field("fan_in_fan_out", null, "false"))
                { Sizes = new[] { new Size("rank", Bound.RankWithinSparseBudget) }, NonNegative = new[] { "Threshold", "ReselectAfter", "NuclearNormWeight" } },
            // PEFT's AdaLoraConfig: all held once (AdaLoRA ignores alpha_pattern); rank_pattern lists layers (the masks).
            new Method("AdaLoRA", "ADALORA", new string[0],
                new Field("r", null, "8"),
                new Field("lora_alpha", "Alpha", "8") { IntegralAsInteger = true },
                new Field("lora_dropout", "Dropout", "0.0"),
                new Field("use_rslora", null, "false"),
                new Field("use_dora", null, "false"),
                new Field("fan_in_fan_out", null, "false"),
                new Field("bias", null, "\"none\""),
                new Field("init_lora_weights", null, "true"),
                new Field("init_r", "InitRank", "12"),
                new Field("target_r", "TargetRank", "8"),
                new Field("tinit", "Tinit", "0"),
                new Field("tfinal", "Tfinal", "0"),
                new Field("deltaT", "DeltaT", "1"),
                new Field("beta1", "Beta1", "0.85"),
                new Field("beta2", "Beta2", "0.85"),
                new Field("orth_reg_weight", "OrthRegWeight", "0.5"),
                new Field("total_step", "TotalSteps", "0"))
                { Sizes = new[] { new Size("targetRank", Bound.Rank) }, Schedule = RankSchedule.Pruned },
            // Saved as a plain LoRA: each layer's grown rank and alpha go to rank_pattern / alpha_pattern.
            new Method("IncreLoRA", "LORA", new[] { "r", "lora_alpha" }, LoRAShared("false"))
            {
                Sizes = new[] { new Size("targetRank", Bound.Rank) },
                Schedule = RankSchedule.Grown,
                Defaults = new[]
                {
                    ("InitRank", 1d), ("MaxRank", 16d), ("RankIncrement", 1d), ("TopH", 4d), ("Interval", 50d), ("Beta1", 0.85), ("Beta2", 0.85),
                },
            },
            // Saved as exactly a LoRA (A' = S·A); its freezing schedule is training-only, so not in the config.
            new Method("LaMDA", "LORA", new[] { "r", "lora_alpha" }, PlainLoRAShared())
                { Sizes = RankWithinInAndOut, StepCounts = new[] { "FreezeBStart", "FreezeBSteps" } },
            // Saved as exactly a LoRA on the original W (lora_A = U_r, lora_B = P·L_r·diag(z − z₀), lora_alpha = r).
            new Method("LoLDU", "LORA", new[] { "r", "lora_alpha" }, PlainLoRAShared())
                { Sizes = RankWithinInAndOut },
            // RandLoRA's layers share one pair of random bases: one rank, seed and scaling per adapter (no patterns in PEFT).
            new Method("RandLoRA", "RANDLORA", new string[0],
                new Field("r", "Rank", "32"),
                new Field("randlora_alpha", "Alpha", "640.0"),
                new Field("randlora_dropout", "Dropout", "0.0"),
                new Field("projection_prng_key", "ProjectionSeed", "0"),
                new Field("save_projection", "SaveProjection", "true"),
                new Field("sparse", null, "false"),
                new Field("very_sparse", null, "false"),
                new Field("init_weights", null, "true"),
                new Field("fan_in_fan_out", null, "false"),
                new Field("bias", null, "\"none\""))
                { Sizes = new[] { new Size("rank", Bound.Rank) } },
        };

        /// <summary>The size argument <paramref name="parameter"/> of <paramref name="method"/>, or null when it is none.</summary>
        public static Size? SizeOf(Method method, string parameter)
        {
            foreach (Size size in method.Sizes)
            {
                if (size.Parameter == parameter) return size;
            }

            return null;
        }

        /// <summary>The method of an attribute (<c>LoRA</c>, <c>Bone</c>, ...), or null.</summary>
        public static Method? Find(string method)
        {
            foreach (Method m in Methods)
            {
                if (m.Name == method) return m;
            }

            return null;
        }

        /// <summary>
        /// A value as <c>adapter_config.json</c> writes it: System.Text.Json's text for a bool, integer or string, and a
        /// double as Python's <c>json</c> writes a float (<c>0.0</c>, <c>0.05</c>, <c>1e-05</c>), as the runtime's
        /// <c>AdapterConfig.Float</c> does for float fields.
        /// </summary>
        public static string Json(object? value) => value switch
        {
            null => "null",
            bool b => b ? "true" : "false",
            string s => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"",
            double d => PythonFloat(d),
            float f => f.ToString("R", CultureInfo.InvariantCulture),
            System.IFormattable n => n.ToString(null, CultureInfo.InvariantCulture),
            _ => value.ToString() ?? "null",
        };

        /// <summary>
        /// Python's <c>repr(float)</c>, which its <c>json</c> writes: the shortest round-trip digits, fixed notation for
        /// 1e-4 ≤ |x| &lt; 1e16 (with <c>.0</c> when integral, e.g. <c>0.0</c>), else <c>1e-05</c> / <c>1.5e+16</c>; NaN and
        /// infinities as Python writes them. So a config PeftDsl saves holds the same JSON values as PEFT's own.
        /// </summary>
        public static string PythonFloat(double value)
        {
            if (double.IsNaN(value)) return "NaN";
            if (double.IsInfinity(value)) return value > 0 ? "Infinity" : "-Infinity";
            string sign = value < 0 || (value == 0 && 1 / value < 0) ? "-" : "";
            if (value == 0) return sign + "0.0";

            // .NET's "R" gives the shortest round-trip digits; read them as 0.digits × 10^point.
            string r = System.Math.Abs(value).ToString("R", CultureInfo.InvariantCulture);
            int e = r.IndexOf('E');
            string mantissa = e < 0 ? r : r.Substring(0, e);
            int exponent = e < 0 ? 0 : int.Parse(r.Substring(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            int dot = mantissa.IndexOf('.');
            string intPart = dot < 0 ? mantissa : mantissa.Substring(0, dot);
            string all = intPart + (dot < 0 ? "" : mantissa.Substring(dot + 1));
            int lead = 0;
            while (lead < all.Length && all[lead] == '0') lead++;
            string digits = all.Substring(lead).TrimEnd('0');
            int point = intPart.Length - lead + exponent;
            int exp10 = point - 1;

            if (exp10 >= -4 && exp10 < 16)
            {
                if (point <= 0) return sign + "0." + new string('0', -point) + digits;
                string padded = digits.PadRight(point, '0');
                string fraction = padded.Substring(point);
                return sign + padded.Substring(0, point) + "." + (fraction.Length == 0 ? "0" : fraction);
            }

            string scaled = digits.Length > 1 ? digits[0] + "." + digits.Substring(1) : digits;
            return sign + scaled + "e" + (exp10 < 0 ? "-" : "+") + System.Math.Abs(exp10).ToString("00", CultureInfo.InvariantCulture);
        }
    }
}
