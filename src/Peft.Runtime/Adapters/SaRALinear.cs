using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// SaRA on a <c>Linear</c> layer: y = x(W + ΔW)ᵀ + b, with ΔW nonzero only at K fixed entries of W — PEFT's
    /// trainable <c>shira_weight.&lt;adapter&gt;</c> [K] (the values, starting at 0) at <c>shira_indices</c> [2, K] (int32,
    /// row; column), chosen when the adapter is created as the K = r·(in + out) entries of smallest |W| or, with a
    /// threshold τ, every entry with |W| &lt; τ.
    /// </summary>
    /// <remarks>
    /// The forward adds the values into W at their indices (an <c>index_add</c>, differentiable in the values alone), so
    /// gradients and optimizer state exist for the K entries only. A progressive re-selection (<see cref="Reselect"/>,
    /// by itself after <see cref="SaRAOptions.ReselectAfter"/> training forwards) freezes the entries whose weight grew
    /// past the selection's cut: they keep their value (restored whenever the optimizer moved them) and get no gradient.
    /// The indices are not trained and travel with the file (<see cref="IAdapterBuffers"/>).
    /// </remarks>
    public sealed class SaRALinear : AdapterLayerBase<SaRAOptions>, IAdapterBuffers, IAdapterRegularizer
    {
        private readonly AdapterParameterDict shira_weight;
        private readonly Dictionary<string, Tensor> _indices = new(StringComparer.Ordinal); // int32 [2, K], as PEFT keeps them (a plain dict)
        private readonly Dictionary<string, (Tensor Train, Tensor Frozen)> _reselected = new(StringComparer.Ordinal);
        private readonly Dictionary<string, int> _trainingForwards = new(StringComparer.Ordinal);

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter.</summary>
        public SaRALinear(string site, Linear baseLayer, string adapter, SaRAOptions options) : base(site, baseLayer)
        {
            shira_weight = new AdapterParameterDict(RestoreFrozen);
            RegisterAdapterDict(nameof(shira_weight), shira_weight);
            AddAdapter(adapter, options);
        }

        /// <inheritdoc />
        public override string PeftType => "SHIRA";

        /// <summary>The trainable values of an adapter ([K]); they start at zero.</summary>
        public Parameter Values(string adapter) => shira_weight[adapter];

        /// <summary>The entries of W an adapter trains, int32 [2, K]: row indices, then column indices, in row-major order when selected here.</summary>
        public Tensor Indices(string adapter)
        {
            RequireAdapter(adapter);
            return _indices[adapter];
        }

        /// <summary>Which of an adapter's K entries still train (bool [K]), or null before a re-selection (all do).</summary>
        public Tensor? Training(string adapter)
        {
            RequireAdapter(adapter);
            return _reselected.TryGetValue(adapter, out var state) ? state.Train : null;
        }

        /// <summary>Adds a named adapter, selecting its entries on the base weight as it is without merged adapters.</summary>
        public void AddAdapter(string adapter, SaRAOptions options)
        {
            SaRA.Validate(Site, options, InFeatures, OutFeatures);
            var weight = BaseWeight;
            Tensor indices;
            using (var scope = NewDisposeScope())
                indices = Select(OriginalWeight(), options).DetachFromDisposeScope();
            RegisterAdapter(adapter, options);
            _indices[adapter] = indices;
            shira_weight.Add(adapter, new Parameter(zeros(indices.shape[1], dtype: weight.dtype, device: weight.device)));
            _trainingForwards[adapter] = 0;
        }

        /// <summary>
        /// The entries an adapter of <paramref name="options"/> trains on <paramref name="weight"/>: the r·(in + out) of
        /// smallest |W|, or all with |W| &lt; τ; int32 [2, K] in row-major order (PEFT's <c>torch.where(mask)</c> order).
        /// </summary>
        private Tensor Select(Tensor weight, SaRAOptions options)
        {
            using var _ = no_grad();
            var magnitude = weight.detach().abs().flatten();
            Tensor flat;
            if (options.Threshold > 0)
            {
                flat = (magnitude < options.Threshold).nonzero().squeeze(1);
                if (flat.shape[0] == 0)
                    throw new ArgumentException(string.Format(CultureInfo.InvariantCulture,
                        "{0}: SaRA threshold {1} selects no weight of the layer (its smallest |W| is {2}); raise Threshold",
                        Site, options.Threshold, magnitude.min().item<float>()));
            }
            else
            {
                long k = options.Rank * (InFeatures + OutFeatures);
                flat = magnitude.topk(checked((int)k), dim: 0, largest: false, sorted: false).indexes.sort().Values;
            }
            return stack(new[] { flat.div(InFeatures, rounding_mode: RoundingMode.floor), flat.remainder(InFeatures) }).to(int32).cpu();
        }

        /// <summary>Row-major positions of an adapter's entries in the flattened weight (int64, on the weight's device).</summary>
        private Tensor FlatIndex(string adapter)
        {
            var indices = _indices[adapter].to(int64, BaseWeight.device);
            return indices[0].mul(InFeatures).add_(indices[1]);
        }

        /// <summary>The base weight without merged adapters at an adapter's entries ([K], in <paramref name="dtype"/>).</summary>
        private Tensor OriginalEntries(string adapter, ScalarType dtype) =>
            OriginalWeight().flatten().index_select(0, FlatIndex(adapter)).to(dtype);

        /// <summary>The values that act: frozen entries (after a re-selection) pass no gradient.</summary>
        private Tensor ActingValues(string adapter)
        {
            RestoreFrozen(adapter);
            var values = shira_weight[adapter];
            return _reselected.TryGetValue(adapter, out var state) ? where(state.Train.to(values.device), values, values.detach()) : values;
        }

        /// <summary>ΔW of an adapter: its values added into a zero [out, in] at its entries (repeated entries add up, as PEFT's sparse tensor does).</summary>
        private Tensor Dense(string adapter, Tensor values) =>
            zeros(OutFeatures * InFeatures, dtype: values.dtype, device: values.device).index_add(0, FlatIndex(adapter), values, 1).view(OutFeatures, InFeatures);

        /// <summary>Puts the frozen entries of an adapter back to their values at the re-selection, wherever the optimizer moved them.</summary>
        private void RestoreFrozen(string adapter)
        {
            if (!_reselected.TryGetValue(adapter, out var state)) return;
            using var _ = no_grad();
            var values = shira_weight[adapter];
            values.copy_(where(state.Train.to(values.device), values, state.Frozen.to(values.dtype, values.device)));
        }

        /// <inheritdoc />
        protected override Tensor ForwardActive(Tensor input)
        {
            var adapters = UnmergedActiveAdapters.ToList();
            if (adapters.Count == 0) return BaseLayer.forward(input);
            Tensor weight = BaseWeight;
            foreach (var adapter in adapters)
            {
                if (training && is_grad_enabled()) CountTrainingForward(adapter);
                weight = weight.add(Dense(adapter, ActingValues(adapter)).to(weight.dtype));
            }
            return nn.functional.linear(input, weight, BaseBias);
        }

        /// <summary>The paper's schedule: the re-selection runs before the step after <see cref="SaRAOptions.ReselectAfter"/>.</summary>
        private void CountTrainingForward(string adapter)
        {
            int count = ++_trainingForwards[adapter];
            int after = OptionsOf(adapter).ReselectAfter;
            if (after > 0 && count == after + 1) Reselect(adapter);
        }

        /// <summary>
        /// The paper's progressive re-selection: of the entries that still train, those whose current weight |W + ΔW|
        /// grew past the selection's cut (τ with a threshold: |W + ΔW| ≥ τ; else the largest |W| selected, strictly
        /// exceeded) keep their value and stop training. Runs by itself after <see cref="SaRAOptions.ReselectAfter"/>
        /// training forwards; call it from a hand-written schedule otherwise.
        /// </summary>
        /// <returns>How many of the adapter's entries train from now on.</returns>
        public long Reselect(string adapter)
        {
            RequireAdapter(adapter);
            if (MergedAdapters.Contains(adapter))
                throw new InvalidOperationException($"{Site}: SaRA adapter '{adapter}' is merged; unmerge it before re-selecting its entries");
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            RestoreFrozen(adapter);
            var options = OptionsOf(adapter);
            var values = shira_weight[adapter];
            var original = OriginalEntries(adapter, values.dtype);
            var current = original.add(values).abs();
            var keep = options.Threshold > 0 ? current.lt(options.Threshold) : current.le(original.abs().max());
            var train = _reselected.TryGetValue(adapter, out var state) ? state.Train.to(keep.device).logical_and(keep) : keep;
            var trainNow = train.DetachFromDisposeScope();
            ForgetReselection(adapter);
            _reselected[adapter] = (trainNow, values.detach().clone().DetachFromDisposeScope());
            return trainNow.sum().item<long>();
        }

        /// <summary>Drops an adapter's re-selection state: every entry trains again.</summary>
        private void ForgetReselection(string adapter)
        {
            if (!_reselected.Remove(adapter, out var state)) return;
            state.Train.Dispose();
            state.Frozen.Dispose();
        }

        /// <inheritdoc />
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            return Dense(adapter, ActingValues(adapter));
        }

        /// <summary>
        /// The paper's low-rank regulariser for the active, unmerged adapters with a <see cref="SaRAOptions.NuclearNormWeight"/>:
        /// λ·‖W ⊙ M‖_*, the nuclear norm of the part of W the adapter trains (its selected entries, W + ΔW there, zero
        /// elsewhere), differentiable in the values. Null when no adapter asks for it.
        /// </summary>
        public Tensor? RegularizationLoss()
        {
            Tensor? total = null;
            foreach (var adapter in UnmergedActiveAdapters)
            {
                double lambda = OptionsOf(adapter).NuclearNormWeight;
                if (lambda <= 0) continue;
                var values = ActingValues(adapter);
                var original = OriginalEntries(adapter, values.dtype);
                var term = linalg.svdvals(Dense(adapter, original.add(values))).sum().mul(lambda);
                total = total is null ? term : total.add(term);
            }
            return total;
        }

        /// <inheritdoc />
        public IEnumerable<(string Name, Tensor Tensor)> AdapterBuffers(string adapter)
        {
            RequireAdapter(adapter);
            yield return ($"shira_indices.{adapter}", _indices[adapter]);
        }

        /// <inheritdoc />
        public string? CheckBuffer(string adapter, string name, Tensor fromFile)
        {
            using var scope = NewDisposeScope();
            var values = fromFile.to(float64);
            if (!values.eq(values.round()).all().item<bool>()) return "the indices are not whole numbers";
            var rows = values[0];
            var columns = values[1];
            if (rows.numel() == 0) return null;
            if (rows.min().item<double>() < 0 || rows.max().item<double>() >= OutFeatures)
                return $"a row index lies outside [0, {OutFeatures}) (the layer's out-features)";
            if (columns.min().item<double>() < 0 || columns.max().item<double>() >= InFeatures)
                return $"a column index lies outside [0, {InFeatures}) (the layer's in-features)";
            return null;
        }

        /// <inheritdoc />
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            ValidateSettings(adapter, settings);
            var file = (SaRAOptions)settings;
            SetOptions(adapter, Options(adapter) with { Rank = file.Rank, Threshold = file.Threshold });
            // The file's indices replace ours: a re-selection made on the old ones no longer applies.
            ForgetReselection(adapter);
        }

        /// <summary>A SHiRA or SaRA config; for two rank-selected adapters, the same rank (it fixes the count r·(in + out)).</summary>
        public override void ValidateSettings(string adapter, AdapterSettings settings)
        {
            var current = Options(adapter);
            if (settings is not SaRAOptions file)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is a SaRA adapter; the file describes a {settings.PeftType} adapter");
            if (file.Threshold == 0 && current.Threshold == 0 && file.Rank != current.Rank)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' has rank {current.Rank}; the file has rank {file.Rank}");
        }

        /// <inheritdoc />
        protected override void RemoveAdapterParameters(string adapter)
        {
            base.RemoveAdapterParameters(adapter);
            if (_indices.Remove(adapter, out var indices)) indices.Dispose();
            ForgetReselection(adapter);
            _trainingForwards.Remove(adapter);
        }
    }

    /// <summary>The entry point generated code calls for <c>[SaRA]</c>.</summary>
    public static class SaRA
    {
        /// <summary>
        /// Wraps <paramref name="layer"/> in a <see cref="SaRALinear"/> with adapter <paramref name="adapter"/>, or adds
        /// the adapter to it if it already is one. Checks the options against the layer, with the analyzers' wording.
        /// </summary>
        /// <param name="layer">The member's current value: a <c>Linear</c>, or a <see cref="SaRALinear"/> already.</param>
        /// <param name="site">Class and member, e.g. <c>Demo.Block.q</c>.</param>
        /// <param name="adapter">The adapter name.</param>
        /// <param name="options">The declared options.</param>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, SaRAOptions options) =>
            AdapterWrap.Linear<SaRALinear>(layer, site, "SaRA", existing => existing.AddAdapter(adapter, options), linear => new SaRALinear(site, linear, adapter, options));

        internal static void Validate(string site, SaRAOptions options, long inFeatures, long outFeatures)
        {
            AdapterChecks.RankAtLeastOne(site, "SaRA", options.Rank);
            if (!(options.Threshold >= 0))
                throw new ArgumentException(PeftMessages.Format(PeftMessages.NegativeOption, site, "SaRA", "threshold", options.Threshold));
            if (options.ReselectAfter < 0)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.NegativeOption, site, "SaRA", "reselect after", options.ReselectAfter));
            if (!(options.NuclearNormWeight >= 0))
                throw new ArgumentException(PeftMessages.Format(PeftMessages.NegativeOption, site, "SaRA", "nuclear norm weight", options.NuclearNormWeight));
            long count = options.Rank * (inFeatures + outFeatures);
            if (options.Threshold == 0 && count > inFeatures * outFeatures)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.SparseRankTooLarge, site, "SaRA", options.Rank, inFeatures, outFeatures,
                    count, inFeatures * outFeatures, inFeatures * outFeatures / (inFeatures + outFeatures)));
        }
    }

    /// <summary>
    /// The options of one SaRA adapter, as <c>[SaRA]</c> declares them (the same defaults), and its entry in PEFT's
    /// <c>ShiraConfig</c> (<c>r</c> held once per adapter: SHiRA has no rank pattern). A threshold-selected adapter is
    /// PeftDsl's own <c>peft_type: "SARA"</c> with a <c>threshold</c> field. <see cref="ReselectAfter"/> and
    /// <see cref="NuclearNormWeight"/> shape training only and are not saved.
    /// </summary>
    public sealed record SaRAOptions : AdapterSettings
    {
        /// <summary>The rank r: r·(in + out) entries train (PEFT's SHiRA <c>r</c>, default 32 there).</summary>
        public int Rank { get; init; } = 32;

        /// <summary>The paper's absolute threshold: with τ &gt; 0 every entry with |W| &lt; τ trains. 0: the r·(in + out) smallest.</summary>
        public double Threshold { get; init; }

        /// <summary>The training forwards after which the selection is narrowed once (0: never).</summary>
        public int ReselectAfter { get; init; }

        /// <summary>λ of the nuclear-norm regulariser that <c>AdapterTrainer</c> adds (0: none).</summary>
        public double NuclearNormWeight { get; init; }

        /// <inheritdoc />
        public override string PeftType => Threshold > 0 ? "SARA" : "SHIRA";

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config)
        {
            config["r"] = Rank;
            if (Threshold > 0) config["threshold"] = AdapterConfig.Float(Threshold);
            else config["mask_type"] = "random"; // PEFT draws a random mask on load, then replaces it by the file's indices
            config["init_weights"] = true;
            config["fan_in_fan_out"] = false;
        }

        /// <summary>Reads a SHiRA config (PEFT's default r = 32) or PeftDsl's SARA config (with its <c>threshold</c>).</summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            int rank = checked((int)AdapterConfig.Number(config, "r", file, fallback: 32));
            bool sara = config["peft_type"]!.GetValue<string>() == "SARA";
            double threshold = sara ? AdapterConfig.Number(config, "threshold", file) : 0;
            if (sara && !(threshold > 0))
                throw new System.IO.InvalidDataException($"{file}: field 'threshold' of a SARA config must be above 0, got {AdapterConfigFields.PythonFloat(threshold)}");
            return new SaRAOptions { Rank = rank, Threshold = threshold };
        }
    }
}
