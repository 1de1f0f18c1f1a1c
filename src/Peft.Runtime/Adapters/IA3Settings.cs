using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Peft.Runtime.Adapters
{
    /// <summary>An (IA)³ adapter's entry in PEFT's <c>IA3Config</c>: whether this layer is one of its <c>feedforward_modules</c>.</summary>
    /// <param name="FeedForward">Whether the layer scales its inputs (listed in <c>feedforward_modules</c>) rather than its outputs.</param>
    public sealed record IA3Settings(bool FeedForward) : AdapterSettings
    {
        /// <inheritdoc />
        public override string PeftType => "IA3";

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config)
        {
            config["init_ia3_weights"] = true;
            config["fan_in_fan_out"] = false;
        }

        /// <inheritdoc />
        public override void WriteLayerListFields(JsonObject config, IReadOnlyList<(string Path, AdapterSettings Settings)> sites) =>
            config["feedforward_modules"] = new JsonArray(sites
                .Where(s => s.Settings is IA3Settings { FeedForward: true })
                .Select(s => (JsonNode?)JsonValue.Create(s.Path)).ToArray());

        /// <summary>
        /// Reads whether the layer at <paramref name="modulePath"/> is a feed-forward one, as PEFT decides it: a list
        /// matches when the path ends with one of its entries, a string when it matches the whole path as a regular
        /// expression; no <c>feedforward_modules</c> means none.
        /// </summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            switch (config["feedforward_modules"])
            {
                case null:
                    return new IA3Settings(false);
                case JsonArray list:
                    var entries = list.Select(n => n is JsonValue v && v.TryGetValue<string>(out var s) ? s
                        : throw new InvalidDataException($"{file}: feedforward_modules must list module names, got {n?.ToJsonString() ?? "null"}"));
                    return new IA3Settings(entries.Any(e => modulePath.EndsWith(e, StringComparison.Ordinal)));
                case JsonValue value when value.TryGetValue<string>(out var pattern):
                    return new IA3Settings(Regex.IsMatch(modulePath, "^(?:" + pattern + ")$", RegexOptions.CultureInvariant));
                default:
                    throw new InvalidDataException($"{file}: feedforward_modules must be a list of module names or a regular expression");
            }
        }
    }
}
