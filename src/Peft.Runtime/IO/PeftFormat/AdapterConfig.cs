using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Runtime.Adapters;

namespace Peft.Runtime.IO
{
    /// <summary>An old <c>peft_type</c> and what it reads as today.</summary>
    /// <param name="CurrentType">The type PEFT now writes for the same method.</param>
    /// <param name="RenamedParameters">Parameter container names that changed (old → new), e.g. <c>bone_block</c> → <c>miss_block</c>.</param>
    public sealed record LegacyPeftType(string CurrentType, IReadOnlyDictionary<string, string> RenamedParameters)
    {
        /// <summary>A file key (prefix removed) with each renamed path segment replaced by its current name.</summary>
        public string RenameKey(string key) =>
            string.Join('.', key.Split('.').Select(part => RenamedParameters.TryGetValue(part, out var now) ? now : part));
    }

    /// <summary>Reads and writes <c>adapter_config.json</c> the way Hugging Face PEFT does.</summary>
    public static class AdapterConfig
    {
        /// <summary>The config file's name.</summary>
        public const string FileName = "adapter_config.json";

        private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, IndentSize = 2 };

        /// <summary>
        /// Builds the config of one adapter from its settings on every layer: the most common value of each
        /// per-layer field is the global one (<c>r</c>, <c>lora_alpha</c>), the others go into
        /// <c>rank_pattern</c> / <c>alpha_pattern</c> keyed by module path.
        /// </summary>
        /// <param name="sites">The adapter's layers, by module path.</param>
        /// <param name="modulesToSave">PEFT's <c>modules_to_save</c>.</param>
        /// <param name="baseModel">PEFT's <c>base_model_name_or_path</c>.</param>
        /// <param name="taskType">PEFT's <c>task_type</c>.</param>
        /// <param name="adapter">The adapter's name, for the message refusing layers that differ in a shared field.</param>
        /// <param name="modulePaths">Every module path of the model, when known: then <c>target_modules</c> holds the layers'
        /// last names (<c>["q_proj", "v_proj"]</c>, as PEFT users write it) where those repeat across layers and select exactly
        /// these layers; otherwise, and without it, the full module paths.</param>
        public static JsonObject Build(IReadOnlyList<(string Path, AdapterSettings Settings)> sites, IReadOnlyList<string> modulesToSave, string? baseModel, string? taskType, string adapter = "default", IReadOnlyCollection<string>? modulePaths = null)
        {
            if (sites.Count == 0) throw new ArgumentException("an adapter config needs at least one layer", nameof(sites));
            var first = sites[0].Settings;
            var config = new SortedDictionary<string, JsonNode?>(StringComparer.Ordinal);
            var shared = new JsonObject();
            first.WriteSharedFields(shared);
            if (SharedFieldConflict(sites, adapter) is { } conflict) throw new InvalidOperationException(conflict);
            first.WriteLayerListFields(shared, sites);
            foreach (var (key, value) in shared) config[key] = value?.DeepClone();

            foreach (var field in first.PerLayerFields.Keys)
            {
                var values = sites.Select(s => (s.Path, Value: s.Settings.PerLayerFields[field])).ToList();
                double common = values.GroupBy(v => v.Value).OrderByDescending(g => g.Count()).ThenBy(g => g.Key).First().Key;
                config[field] = Number(common);
                var pattern = new JsonObject();
                foreach (var (path, value) in values.Where(v => v.Value != common)) pattern[path] = Number(value);
                string? patternName = PatternName(field);
                if (patternName is null && pattern.Count > 0)
                    throw new InvalidOperationException(
                        $"layers '{values[0].Path}' and '{pattern.First().Key}' of one {first.PeftType} adapter differ in '{field}', which its adapter_config.json holds once; give them different adapter names");
                if (patternName is not null) config[patternName] = pattern;
            }

            config["peft_type"] = first.PeftType;
            var targets = ShortTargets(sites.Select(s => s.Path).ToList(), modulePaths) ?? sites.Select(s => s.Path).ToList();
            config["target_modules"] = new JsonArray(targets.Select(t => (JsonNode?)JsonValue.Create(t)).ToArray());
            config["modules_to_save"] = modulesToSave.Count == 0 ? null : new JsonArray(modulesToSave.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray());
            config["base_model_name_or_path"] = baseModel;
            config["task_type"] = taskType;
            config["inference_mode"] = true;

            var result = new JsonObject();
            foreach (var (key, value) in config) result[key] = value;
            return result;
        }

        /// <summary>
        /// The layers' last names, sorted, when they are fewer than the layers (a name repeats: one per block) and PEFT's
        /// suffix match on them selects exactly <paramref name="paths"/> among <paramref name="modulePaths"/>; else null.
        /// </summary>
        private static List<string>? ShortTargets(IReadOnlyList<string> paths, IReadOnlyCollection<string>? modulePaths)
        {
            if (modulePaths is null || paths.Any(p => p.Length == 0)) return null;
            static string Last(string path) => path[(path.LastIndexOf('.') + 1)..];
            var leaves = paths.Select(Last).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
            if (leaves.Count >= paths.Count) return null;
            var sites = new HashSet<string>(paths, StringComparer.Ordinal);
            // PEFT matches a module when its path equals an entry or ends with "." + entry; modules inside a site (its
            // base layer, its adapters) are never wrapped again.
            foreach (var path in modulePaths)
            {
                if (path.Length == 0 || sites.Contains(path) || sites.Any(s => path.StartsWith(s + ".", StringComparison.Ordinal))) continue;
                if (leaves.Contains(Last(path))) return null;
            }
            return leaves;
        }

        /// <summary>
        /// PEFT's config holds one value of each shared field for all layers of an adapter (one <c>peft_type</c>, one
        /// <c>use_dora</c>, one <c>lora_dropout</c>, ...): the first field in which a layer differs from the first layer,
        /// worded as PEFT017 words it (<see cref="PeftMessages.SharedConfigMismatch"/>), or null when every layer agrees.
        /// Checked when a <c>[PeftModel]</c> is attached and again at save, so such an adapter is refused as soon as it
        /// is built rather than lost.
        /// </summary>
        /// <param name="sites">The layers of one adapter, by module path, first layer first.</param>
        /// <param name="adapter">The adapter's name, for the message.</param>
        public static string? SharedFieldConflict(IReadOnlyList<(string Path, AdapterSettings Settings)> sites, string adapter)
        {
            if (sites.Count < 2) return null;
            var (firstPath, firstSettings) = sites[0];
            var first = new JsonObject();
            firstSettings.WriteSharedFields(first);
            foreach (var (path, settings) in sites.Skip(1))
            {
                if (settings.PeftType != firstSettings.PeftType)
                    return Conflict(path, adapter, AdapterConfigFields.PeftTypeKey,
                        AdapterConfigFields.Json(settings.PeftType), AdapterConfigFields.Json(firstSettings.PeftType), firstPath);
                var fields = new JsonObject();
                settings.WriteSharedFields(fields);
                foreach (var (key, value) in fields)
                    if (!JsonNode.DeepEquals(value, first[key]))
                        return Conflict(path, adapter, key, value?.ToJsonString() ?? "null", first[key]?.ToJsonString() ?? "null", firstPath);
            }
            return null;
        }

        private static string Conflict(string path, string adapter, string key, string value, string firstValue, string firstPath) =>
            PeftMessages.Format(PeftMessages.SharedConfigMismatch, path, adapter, key, value, firstValue, firstPath);

        /// <summary>PEFT's pattern dictionary for a per-layer field, if it has one.</summary>
        public static string? PatternName(string field) => field switch
        {
            "r" => "rank_pattern",
            "lora_alpha" => "alpha_pattern",
            "sequential_r" => "sequential_rank_pattern",
            "alpha" => "alpha_pattern", // LoHa, LoKr
            _ => null,
        };

        /// <summary>An integer-valued number is written as an integer, as Python's json does for ints.</summary>
        private static JsonNode Number(double value) =>
            value == Math.Floor(value) && Math.Abs(value) < 1e15 ? JsonValue.Create((long)value) : JsonValue.Create(value);

        /// <summary>
        /// A float field (<c>lora_dropout</c>, <c>d_initial</c>, ...) written as Python's <c>json</c> writes a float:
        /// <c>0.0</c>, <c>0.05</c>, <c>1e-05</c>, <c>1e+16</c> (Python's shortest repr), so a config PeftDsl saves holds
        /// the same JSON values as PEFT's own.
        /// </summary>
        public static JsonNode Float(double value) => JsonNode.Parse(AdapterConfigFields.PythonFloat(value))!;

        /// <summary>A number field PEFT keeps as the user typed it (<c>lora_alpha</c>): an integral value as an integer (<c>8</c>), else a float.</summary>
        public static JsonNode IntegralAsInt(double value) =>
            value == Math.Floor(value) && Math.Abs(value) < 1e15 ? JsonValue.Create((long)value) : Float(value);

        /// <summary>Serialises with sorted keys and two-space indentation, as PEFT's <c>save_pretrained</c>.</summary>
        public static string Serialize(JsonObject config) => config.ToJsonString(Indented);

        /// <summary>Reads and checks a config; unknown fields are ignored, a missing <c>peft_type</c> is an error.</summary>
        public static JsonObject Read(string path)
        {
            if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no adapter config here", path);
            JsonNode? node;
            try
            {
                node = JsonNode.Parse(File.ReadAllText(path));
            }
            catch (JsonException ex)
            {
                throw new InvalidDataException($"{path}: not valid JSON ({ex.Message})", ex);
            }
            if (node is not JsonObject config)
                throw new InvalidDataException($"{path}: expected a JSON object");
            if (config["peft_type"] is null)
                throw new InvalidDataException($"{path}: the required field 'peft_type' is missing");
            if (config["peft_type"] is not JsonValue type || !type.TryGetValue<string>(out _))
                throw new InvalidDataException($"{path}: field 'peft_type' must be a string such as \"LORA\", got {config["peft_type"]!.ToJsonString()}");
            return config;
        }

        /// <summary>Reads one number field, with a clear error naming the file and field.</summary>
        public static double Number(JsonObject config, string field, string path, double? fallback = null)
        {
            var node = config[field];
            if (node is null)
                return fallback ?? throw new InvalidDataException($"{path}: the required field '{field}' is missing");
            if (node is JsonValue v && v.TryGetValue<double>(out var d)) return d;
            throw new InvalidDataException($"{path}: field '{field}' must be a number, got {node.ToJsonString()}");
        }

        /// <summary>
        /// Reads a dropout probability (0 where the field is absent), refusing a value outside [0, 1) with an error naming
        /// the file and field, so a bad file fails when it is read rather than at the first training step.
        /// </summary>
        public static double Probability(JsonObject config, string field, string path)
        {
            double p = Number(config, field, path, fallback: 0);
            if (!(p >= 0 && p < 1)) throw new InvalidDataException($"{path}: field '{field}' must be in [0, 1), got {config[field]!.ToJsonString()}");
            return p;
        }

        /// <summary>A per-layer value: the pattern entry whose key is the path or a dotted suffix of it, else the global one.</summary>
        public static double PerLayer(JsonObject config, string field, string modulePath, string file, double? fallback = null)
        {
            string? patternName = PatternName(field);
            if (patternName is not null && config[patternName] is JsonObject pattern)
            {
                foreach (var (key, value) in pattern)
                {
                    if (MatchesModule(modulePath, key))
                        return value is JsonValue v && v.TryGetValue<double>(out var d) ? d
                            : throw new InvalidDataException($"{file}: {patternName}['{key}'] must be a number");
                }
            }
            return Number(config, field, file, fallback);
        }

        /// <summary>
        /// PEFT's match of a config key (a <c>target_modules</c> entry, a pattern key) to a module: the key is the module's
        /// path or a dotted suffix of it.
        /// </summary>
        internal static bool MatchesModule(string modulePath, string key) =>
            modulePath == key || modulePath.EndsWith("." + key, StringComparison.Ordinal);

        /// <summary>Reads one layer's settings from a config of one PEFT type (its pattern entries resolved).</summary>
        public delegate AdapterSettings SettingsReader(JsonObject config, string modulePath, string file);

        /// <summary>
        /// Every PEFT type this library reads, by its <c>peft_type</c>: for each method of the rule table
        /// (<c>src/Shared/AdapterConfigFields.cs</c>) its options record's static <c>FromConfig</c>, found once by the naming
        /// rule the generator follows (<c>Peft.Runtime.Adapters.{Method}Options</c>; the first method of a type reads it:
        /// LoRA's for <c>"LORA"</c>), plus <see cref="ReaderAliases"/>. So a new method registers nothing here.
        /// </summary>
        private static readonly Lazy<IReadOnlyDictionary<string, SettingsReader>> ReadersByType = new(BuildReaders);

        private static IReadOnlyDictionary<string, SettingsReader> Readers => ReadersByType.Value;

        /// <summary>Types read by another type's reader: PEFT's legacy <c>"BONE"</c> (MiSS's fields, see <see cref="LegacyTypes"/>) and PeftDsl's own <c>"SARA"</c> (SHiRA's keys).</summary>
        private static readonly (string Alias, string Type)[] ReaderAliases = { ("BONE", "MISS"), ("SARA", "SHIRA") };

        private static IReadOnlyDictionary<string, SettingsReader> BuildReaders()
        {
            var readers = new Dictionary<string, SettingsReader>(StringComparer.Ordinal);
            foreach (var method in AdapterConfigFields.Methods)
            {
                if (readers.ContainsKey(method.PeftType)) continue;
                string name = "Peft.Runtime.Adapters." + method.Name + "Options";
                var type = typeof(AdapterConfig).Assembly.GetType(name)
                    ?? throw new InvalidOperationException($"The rule table names method {method.Name}, but the runtime has no {name}");
                var fromConfig = type.GetMethod("FromConfig", System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static, new[] { typeof(JsonObject), typeof(string), typeof(string) })
                    ?? throw new InvalidOperationException($"{name} has no public static FromConfig(JsonObject, string, string): each method's options record reads its own config");
                readers[method.PeftType] = fromConfig.CreateDelegate<SettingsReader>();
            }
            foreach (var (alias, type) in ReaderAliases) readers[alias] = readers[type];
            return readers;
        }

        /// <summary>
        /// <c>peft_type</c>s read by the layer of another type: a <c>"SARA"</c> file (a threshold-selected SaRA adapter) by
        /// the SaRA layer, whose files are otherwise PEFT's <c>"SHIRA"</c>.
        /// </summary>
        private static readonly IReadOnlyDictionary<string, string> LayerTypes = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["SARA"] = "SHIRA",
        };

        /// <summary>
        /// <c>peft_type</c>s that older PEFT wrote for a method PEFT now calls otherwise, read as the current type:
        /// PEFT 0.19 renamed Bone to MiSS (<c>"BONE"</c>, parameter <c>bone_block</c> → <c>"MISS"</c>, <c>miss_block</c>).
        /// </summary>
        public static IReadOnlyDictionary<string, LegacyPeftType> LegacyTypes { get; } = new Dictionary<string, LegacyPeftType>(StringComparer.Ordinal)
        {
            ["BONE"] = new LegacyPeftType("MISS", new Dictionary<string, string> { ["bone_block"] = "miss_block" }),
        };

        /// <summary>The type a file of <c>peft_type</c> <paramref name="fileType"/> is read as (itself, unless it is a legacy name).</summary>
        public static string CurrentType(string fileType) =>
            LegacyTypes.TryGetValue(fileType, out var legacy) ? legacy.CurrentType : LayerTypes.TryGetValue(fileType, out var layer) ? layer : fileType;

        /// <summary>The settings a config gives one layer.</summary>
        public static AdapterSettings SettingsFor(JsonObject config, string modulePath, string file)
        {
            string type = config["peft_type"]!.GetValue<string>();
            return Readers.TryGetValue(type, out var read)
                ? read(config, modulePath, file)
                : throw new InvalidDataException($"{file}: peft_type '{type}' is not supported by this version of PeftDsl (supported: {string.Join(", ", Readers.Keys)})");
        }
    }
}
