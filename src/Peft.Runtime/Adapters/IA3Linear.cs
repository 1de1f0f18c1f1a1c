using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// (IA)³ on a <c>Linear</c> layer: a learned vector l scales the outputs, y = (xWᵀ + b) ⊙ l with l held as
    /// [out, 1], or, for a feed-forward adapter, the inputs, y = (x ⊙ l)Wᵀ + b with l held as [1, in]; PEFT's
    /// parameter-dict name and shapes, <c>ia3_l.&lt;adapter&gt;</c>. Several active adapters multiply.
    /// </summary>
    public sealed class IA3Linear : AdapterLayerBase<IA3Options>
    {
        private readonly AdapterParameterDict ia3_l = new();

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter.</summary>
        public IA3Linear(string site, Linear baseLayer, string adapter, IA3Options options) : base(site, baseLayer)
        {
            RegisterAdapterDict(nameof(ia3_l), ia3_l);
            AddAdapter(adapter, options);
        }

        /// <inheritdoc />
        public override string PeftType => "IA3";

        /// <summary>The scaling vector of an adapter: [out, 1] for output scaling, [1, in] for feed-forward (input) scaling.</summary>
        public Parameter Scale(string adapter) => ia3_l[adapter];

        /// <summary>Adds a named adapter; its vector starts at 1 (PEFT's <c>init_ia3_weights: true</c>).</summary>
        public void AddAdapter(string adapter, IA3Options options)
        {
            RegisterAdapter(adapter, options);
            var weight = BaseWeight;
            var shape = options.FeedForward ? new[] { 1L, InFeatures } : new[] { OutFeatures, 1L };
            ia3_l.Add(adapter, new Parameter(ones(shape, dtype: weight.dtype, device: weight.device)));
        }

        /// <inheritdoc />
        protected override Tensor ForwardActive(Tensor input)
        {
            Tensor? inputScale = null, outputScale = null;
            foreach (var adapter in UnmergedActiveAdapters)
            {
                var l = ia3_l[adapter].flatten();
                if (OptionsOf(adapter).FeedForward) inputScale = inputScale is null ? l : inputScale.mul(l);
                else outputScale = outputScale is null ? l : outputScale.mul(l);
            }
            var result = BaseLayer.forward(inputScale is null ? input : input.mul(inputScale));
            return outputScale is null ? result : result.mul(outputScale);
        }

        /// <summary>
        /// The change merging the adapter would make to the current base weight, W ⊙ (l − 1) by rows (or by columns for
        /// a feed-forward adapter). (IA)³ is multiplicative, so this depends on W; for output scaling the bias changes
        /// too, by b ⊙ (l − 1).
        /// </summary>
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            return BaseWeight.detach().mul(ia3_l[adapter].sub(1));
        }

        /// <summary>Scales the rows of W and the bias by l (output scaling) or the columns of W (feed-forward).</summary>
        protected override void MergeInto(Tensor weight, Tensor? bias, string adapter)
        {
            var l = ia3_l[adapter].detach().to(weight.dtype);
            weight.mul_(l); // [out, 1] scales rows, [1, in] columns
            if (!OptionsOf(adapter).FeedForward) bias?.mul_(l.reshape(-1));
        }

        /// <summary>Divides again; refused, leaving the layer as it is, where l holds a zero (that row or column is lost).</summary>
        protected override void UnmergeFrom(Tensor weight, Tensor? bias, string adapter)
        {
            var l = ia3_l[adapter].detach().to(weight.dtype);
            long zeros = l.eq(0).sum().item<long>();
            if (zeros > 0)
                throw new InvalidOperationException(
                    $"{Site}: cannot unmerge (IA)³ adapter '{adapter}': its vector ia3_l holds {zeros} zero entr{(zeros == 1 ? "y" : "ies")}, so the merged weight lost those {(OptionsOf(adapter).FeedForward ? "columns" : "rows")}; the layer stays merged");
            weight.div_(l);
            if (!OptionsOf(adapter).FeedForward) bias?.div_(l.reshape(-1));
            if (!isfinite(weight).all().item<bool>() || (bias is not null && !isfinite(bias).all().item<bool>()))
                throw new InvalidOperationException(
                    $"{Site}: cannot unmerge (IA)³ adapter '{adapter}': dividing by its vector ia3_l overflows; the layer stays merged");
        }

        /// <inheritdoc />
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            var current = Options(adapter);
            if (settings is not IA3Options ia3)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is an (IA)³ adapter; the file describes a {settings.PeftType} adapter");
            if (ia3.FeedForward != current.FeedForward)
                throw new InvalidOperationException(
                    $"{Site}: adapter '{adapter}' scales the layer's {(current.FeedForward ? "inputs (FeedForward)" : "outputs")}, but the file {(ia3.FeedForward ? "lists" : "does not list")} this layer in feedforward_modules");
        }
    }

    /// <summary>The entry point generated code calls for <c>[IA3]</c>.</summary>
    public static class IA3
    {
        /// <summary>
        /// Wraps <paramref name="layer"/> in an <see cref="IA3Linear"/> with adapter <paramref name="adapter"/>, or adds the
        /// adapter to it if it already is one.
        /// </summary>
        /// <param name="layer">The member's current value: a <c>Linear</c>, or an <see cref="IA3Linear"/> already.</param>
        /// <param name="site">Class and member, e.g. <c>Demo.Block.q</c>.</param>
        /// <param name="adapter">The adapter name.</param>
        /// <param name="options">The declared options.</param>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, IA3Options options) =>
            AdapterWrap.Linear<IA3Linear>(layer, site, "IA3", existing => existing.AddAdapter(adapter, options), linear => new IA3Linear(site, linear, adapter, options));
    }

    /// <summary>
    /// The options of one (IA)³ adapter, as <c>[IA3]</c> declares them (the same defaults), and its entry in PEFT's
    /// <c>IA3Config</c>: whether this layer is one of its <c>feedforward_modules</c>.
    /// </summary>
    public sealed record IA3Options : AdapterSettings
    {
        /// <summary>Scale the inputs (l of length in) instead of the outputs (l of length out); PEFT's <c>feedforward_modules</c>.</summary>
        public bool FeedForward { get; init; }

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
                .Where(s => s.Settings is IA3Options { FeedForward: true })
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
                    return new IA3Options { FeedForward = false };
                case JsonArray list:
                    var entries = list.Select(n => n is JsonValue v && v.TryGetValue<string>(out var s) ? s
                        : throw new InvalidDataException($"{file}: feedforward_modules must list module names, got {n?.ToJsonString() ?? "null"}"));
                    return new IA3Options { FeedForward = entries.Any(e => modulePath.EndsWith(e, StringComparison.Ordinal)) };
                case JsonValue value when value.TryGetValue<string>(out var pattern):
                    return new IA3Options { FeedForward = Regex.IsMatch(modulePath, "^(?:" + pattern + ")$", RegexOptions.CultureInvariant) };
                default:
                    throw new InvalidDataException($"{file}: feedforward_modules must be a list of module names or a regular expression");
            }
        }
    }
}
