using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// What every adapter layer shares: the frozen <c>base_layer</c> and its sizes, the adapter names, which are
    /// active, which are merged, a safe merge (computed on a copy, refused on NaN / Inf), and a registry of the
    /// layer's per-adapter parameter containers (PEFT's <c>adapter_layer_names</c>), through which adapters' parameters
    /// are listed and removed. A method declares its containers, and supplies its forward and how it changes the base
    /// weight; <see cref="AdapterLayerBase{TOptions}"/> adds the per-adapter options.
    /// </summary>
    public abstract class AdapterLayerBase : nn.Module<Tensor, Tensor>, IAdapterLayer
    {
        private readonly List<(string Name, IAdapterDict Dict)> _adapterDicts = new();
        private readonly List<string> _adapters = new();
        private readonly List<string> _merged = new();
        private List<string> _active = new();
        private RowRouting? _rowAdapters;
        private bool _ownsRouting; // a routing this layer built from a plain list (not a MixedBatch scope's shared one)

        /// <summary>Wraps <paramref name="baseLayer"/>, registered as <c>base_layer</c> and frozen.</summary>
        /// <param name="site">Where the layer was declared, e.g. <c>Demo.Block.q</c>: named in every error.</param>
        /// <param name="baseLayer">The layer to adapt.</param>
        protected AdapterLayerBase(string site, nn.Module<Tensor, Tensor> baseLayer) : base(site)
        {
            Site = site;
            BaseLayer = baseLayer;
            register_module("base_layer", baseLayer);
            foreach (var p in baseLayer.parameters()) p.requires_grad = false;
            (InFeatures, OutFeatures) = LinearShape(baseLayer, site);
        }

        /// <summary>The base layer's input size (a Linear's in_features: its weight's second dimension).</summary>
        public long InFeatures { get; }

        /// <summary>The base layer's output size (a Linear's out_features: its weight's first dimension).</summary>
        public long OutFeatures { get; }

        /// <summary>
        /// Registers one of the layer's per-adapter containers under PEFT's name (<c>lora_A</c>, <c>hada_w1_a</c>, ...),
        /// once, in the constructor. <see cref="AdapterParameters"/> lists an adapter's parameters in registration order,
        /// and deleting an adapter removes its entry from each.
        /// </summary>
        protected void RegisterAdapterDict<TDict>(string name, TDict dict) where TDict : nn.Module, IAdapterDict
        {
            register_module(name, dict);
            _adapterDicts.Add((name, dict));
        }

        /// <summary>Where the layer was declared (class and member), named in errors.</summary>
        public string Site { get; }

        /// <inheritdoc />
        public abstract string PeftType { get; }

        /// <inheritdoc />
        public nn.Module<Tensor, Tensor> BaseLayer { get; }

        /// <inheritdoc />
        public IReadOnlyList<string> AdapterNames => _adapters;

        /// <inheritdoc />
        public IReadOnlyList<string> ActiveAdapters => _active;

        /// <inheritdoc />
        public IReadOnlyList<string> MergedAdapters => _merged;

        /// <inheritdoc />
        public bool AdaptersDisabled { get; set; }

        /// <summary>The base layer's weight.</summary>
        protected Parameter BaseWeight => BaseLayer.get_parameter("weight") ?? throw new InvalidOperationException($"{Site}: the base layer has no 'weight' parameter");

        /// <summary>The base layer's bias, if it has one.</summary>
        protected Parameter? BaseBias => BaseLayer.get_parameter("bias");

        /// <summary>The active adapters that are not merged: those <c>forward</c> must apply itself.</summary>
        protected IEnumerable<string> UnmergedActiveAdapters => AdaptersDisabled ? Enumerable.Empty<string>() : _active.Where(a => !_merged.Contains(a));

        /// <inheritdoc />
        public IReadOnlyList<string>? RowAdapters
        {
            get => _rowAdapters;
            set
            {
                if (ReferenceEquals(value, _rowAdapters)) return;
                if (_ownsRouting) _rowAdapters?.Dispose();
                _ownsRouting = value is not null and not RowRouting;
                _rowAdapters = value is null ? null : value as RowRouting ?? new RowRouting(value);
            }
        }

        /// <summary>
        /// The layer's output: <see cref="ForwardActive"/> with the active adapters, or, while <see cref="RowAdapters"/>
        /// is set, each row of the batch (the input's first dimension) through its own adapter, one sub-batch per adapter.
        /// </summary>
        public sealed override Tensor forward(Tensor input)
        {
            InputObserver?.Invoke(input);
            var rows = _rowAdapters;
            if (rows is not null) return ForwardRouted(input, rows);
            if (AdaptersDisabled && _merged.Count > 0) Unmerge(); // disabled: the base output, so merged adapters come out first
            return ForwardActive(input);
        }

        /// <summary>Sees every input of <see cref="forward"/> before the layer computes (EVA's per-layer statistics); null when unused.</summary>
        internal Action<Tensor>? InputObserver { get; set; }

        /// <summary>
        /// The method's forward with the active adapters (<see cref="UnmergedActiveAdapters"/>), or the base output while
        /// adapters are disabled (nothing is merged then). A mixed batch calls it once per sub-batch, with one adapter active or none.
        /// </summary>
        protected abstract Tensor ForwardActive(Tensor input);

        private Tensor ForwardRouted(Tensor input, RowRouting rows)
        {
            if (input.dim() == 0 || input.shape[0] != rows.Count)
                throw new ArgumentException(
                    $"{Site}: the mixed batch names an adapter for {rows.Count} rows, but the layer's input has shape [{string.Join(", ", input.shape)}]: rows must be its first dimension");
            if (_merged.Count > 0)
                throw new InvalidOperationException(
                    $"{Site}: adapters {string.Join(", ", _merged.Select(a => "'" + a + "'"))} are merged into the base weight; unmerge them before a mixed batch");

            var active = _active;
            bool disabled = AdaptersDisabled;
            _rowAdapters = null;
            try
            {
                var groups = rows.Groups;
                // One group, or no group naming an adapter of this layer (the base output for all rows): no routing.
                if (groups.Count == 1) return ForwardWith(input, _adapters.Contains(groups[0].Adapter) ? groups[0].Adapter : null);
                if (!groups.Any(g => _adapters.Contains(g.Adapter))) return ForwardWith(input, null);
                if (GroupedMixedBatches && ForwardGrouped(input, rows) is { } grouped) return grouped;

                // The generic path: each group as one sub-batch with its adapter alone (or none: an adapter this layer
                // lacks gives the base output, as SetActiveAdapters does for names a layer does not hold).
                var outputs = new List<Tensor>(groups.Count);
                for (int g = 0; g < groups.Count; g++)
                {
                    var group = groups[g];
                    var part = group.Contiguous ? input.narrow(0, group.Start, group.Rows.Length) : input.index_select(0, rows.Index(g, input.device));
                    outputs.Add(ForwardWith(part, _adapters.Contains(group.Adapter) ? group.Adapter : null));
                }
                return cat(outputs, 0).index_select(0, rows.Inverse(input.device));
            }
            finally
            {
                _active = active;
                AdaptersDisabled = disabled;
                _rowAdapters = rows;
            }
        }

        /// <summary>
        /// A method's own mixed-batch forward, or null to take the generic one (one sub-batch per adapter). LoRA runs
        /// the base layer once on every row and adds each adapter's thin products into its rows in place. Called with
        /// at least two groups, at least one of which names an adapter of this layer; nothing is merged.
        /// </summary>
        protected virtual Tensor? ForwardGrouped(Tensor input, RowRouting rows) => null;

        /// <summary>False makes every method take the generic sub-batch path (benchmarks compare the two in one run).</summary>
        internal static bool GroupedMixedBatches { get; set; } = true;

        /// <summary>Whether this layer holds adapter <paramref name="adapter"/>.</summary>
        protected bool HasAdapter(string adapter) => _adapters.Contains(adapter);

        private Tensor ForwardWith(Tensor input, string? adapter)
        {
            AdaptersDisabled = adapter is null;
            _active = adapter is null ? new List<string>() : new List<string> { adapter };
            return ForwardActive(input);
        }

        /// <inheritdoc />
        public void SetActiveAdapters(IReadOnlyList<string> names)
        {
            foreach (var name in names) RequireAdapter(name);
            _active = names.Distinct(StringComparer.Ordinal).ToList();
        }

        /// <summary>Records a newly created adapter and makes it active, as PEFT does for the first adapter.</summary>
        protected void RegisterAdapterName(string adapter)
        {
            if (_adapters.Contains(adapter))
                throw new ArgumentException($"{Site}: an adapter named '{adapter}' already exists on this layer", nameof(adapter));
            if (adapter == PeftModelCore.BaseAdapterName)
                throw new ArgumentException($"{Site}: '{adapter}' names the base model in mixed batches and cannot name an adapter", nameof(adapter));
            _adapters.Add(adapter);
            if (_active.Count == 0) _active.Add(adapter);
        }

        /// <summary>Throws unless the adapter exists on this layer.</summary>
        protected void RequireAdapter(string adapter)
        {
            if (!_adapters.Contains(adapter))
                throw new ArgumentException($"{Site}: no adapter named '{adapter}' (this layer has: {string.Join(", ", _adapters.Select(a => "'" + a + "'"))})", nameof(adapter));
        }

        /// <inheritdoc />
        public abstract Tensor DeltaWeight(string adapter);

        /// <summary>
        /// The adapter's parameters in every registered container, e.g. <c>lora_A.&lt;adapter&gt;.weight</c>,
        /// <c>hada_w1_a.&lt;adapter&gt;</c>: those the model trains (<c>FreezeBaseModel</c> leaves exactly these
        /// trainable). A method whose parameters freeze on a schedule (LaMDA's B) leaves out those no longer trained.
        /// </summary>
        public virtual IEnumerable<(string Name, Parameter Parameter)> AdapterParameters(string adapter)
        {
            RequireAdapter(adapter);
            foreach (var (name, dict) in _adapterDicts)
            {
                if (!dict.Contains(adapter)) continue;
                foreach (var (key, parameter) in dict.Parameters(adapter))
                    yield return ($"{name}.{key}", parameter);
            }
        }

        /// <inheritdoc />
        public abstract AdapterSettings Settings(string adapter);

        /// <inheritdoc />
        public abstract void ApplySettings(string adapter, AdapterSettings settings);

        /// <summary>
        /// Throws, naming this layer, if settings read from a file do not fit the adapter; changes nothing. Loading
        /// calls it before any key is read, so a wrong kind of adapter is reported as such. This check: the same PEFT
        /// type; a method with more to check (rank, variant) overrides it and calls it from its ApplySettings.
        /// </summary>
        public virtual void ValidateSettings(string adapter, AdapterSettings settings)
        {
            RequireAdapter(adapter);
            if (settings.PeftType != PeftType)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is a {PeftType} adapter; the file describes a {settings.PeftType} adapter");
        }

        /// <summary>Applies the adapter's change to copies of the base weight and bias, in place.</summary>
        protected virtual void MergeInto(Tensor weight, Tensor? bias, string adapter) => weight.add_(DeltaWeight(adapter).to(weight.dtype));

        /// <summary>Undoes <see cref="MergeInto"/> on copies of the merged weight and bias, in place.</summary>
        protected virtual void UnmergeFrom(Tensor weight, Tensor? bias, string adapter) => weight.sub_(DeltaWeight(adapter).to(weight.dtype));

        /// <summary>
        /// The base weight with every merge undone, on a copy when anything is merged: what a method whose change depends
        /// on the weight (Bat, Hydra) acts on.
        /// </summary>
        protected Tensor OriginalWeight()
        {
            if (MergedAdapters.Count == 0) return BaseWeight.detach();
            using var _ = no_grad();
            var weight = BaseWeight.detach().clone();
            for (int i = MergedAdapters.Count - 1; i >= 0; i--) UnmergeFrom(weight, null, MergedAdapters[i]);
            return weight;
        }

        /// <summary>
        /// Computes the merged weight and bias without changing the layer; throws, naming the adapter and this layer,
        /// if they would hold NaN or ±Inf. The model-level merge checks every layer this way before changing any.
        /// </summary>
        public void ValidateMerge(IReadOnlyList<string> adapters)
        {
            using var scope = NewDisposeScope();
            _ = ComputeMerged(adapters.Where(a => !_merged.Contains(a)).ToList()); // what Merge would compute
        }

        /// <summary>
        /// The weight and bias <c>forward</c> computes with now, as new tensors, the layer unchanged: the base (with any
        /// merged adapters) plus the active unmerged adapters, none while adapters are disabled. What a merged export
        /// writes. Throws as <see cref="Merge"/> would on NaN / Inf.
        /// </summary>
        internal (Tensor Weight, Tensor? Bias) EffectiveWeights() => ComputeMerged(UnmergedActiveAdapters.ToList());

        /// <inheritdoc />
        public void Merge(IReadOnlyList<string> adapters)
        {
            var toMerge = adapters.Where(a => !_merged.Contains(a)).ToList();
            if (toMerge.Count == 0) return;
            using var scope = NewDisposeScope();
            var (weight, bias) = ComputeMerged(toMerge);
            using (no_grad())
            {
                BaseWeight.copy_(weight);
                BaseBias?.copy_(bias!);
            }
            _merged.AddRange(toMerge);
        }

        /// <inheritdoc />
        public void Unmerge()
        {
            if (_merged.Count == 0) return;
            using var scope = NewDisposeScope();
            using (no_grad())
            {
                var weight = BaseWeight.detach().clone();
                var bias = BaseBias?.detach().clone();
                for (int i = _merged.Count - 1; i >= 0; i--) UnmergeFrom(weight, bias, _merged[i]);
                BaseWeight.copy_(weight);
                BaseBias?.copy_(bias!);
            }
            _merged.Clear();
        }

        private (Tensor Weight, Tensor? Bias) ComputeMerged(IReadOnlyList<string> adapters)
        {
            using var _ = no_grad();
            var weight = BaseWeight.detach().clone();
            var bias = BaseBias?.detach().clone();
            foreach (var adapter in adapters)
            {
                RequireAdapter(adapter);
                MergeInto(weight, bias, adapter);
                if (!isfinite(weight).all().item<bool>() || (bias is not null && !isfinite(bias).all().item<bool>()))
                    throw new InvalidOperationException(
                        $"{Site}: refusing to merge adapter '{adapter}': the merged weight would hold NaN or Inf; the layer is unchanged");
            }
            return (weight, bias);
        }

        /// <inheritdoc />
        public void DeleteAdapter(string adapter)
        {
            RequireAdapter(adapter);
            if (_merged.Contains(adapter))
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is merged; unmerge it before deleting it");
            RemoveAdapterParameters(adapter);
            _adapters.Remove(adapter);
            _active = _active.Where(a => a != adapter).ToList();
        }

        /// <summary>
        /// Unregisters and disposes the adapter's entries in every registered container; a method that keeps more per
        /// adapter overrides it and calls it.
        /// </summary>
        protected virtual void RemoveAdapterParameters(string adapter)
        {
            foreach (var (_, dict) in _adapterDicts) dict.Remove(adapter);
        }

        /// <inheritdoc />
        protected override void RegisterComponents() { } // every component is registered explicitly, by PEFT's name

        /// <summary>The base layer's (in, out) sizes, for a Linear base.</summary>
        private static (long In, long Out) LinearShape(nn.Module<Tensor, Tensor> layer, string site)
        {
            var weight = layer.get_parameter("weight") ?? throw new InvalidOperationException($"{site}: the layer has no 'weight' parameter");
            return (weight.shape[1], weight.shape[0]);
        }
    }

    /// <summary>
    /// An adapter layer whose adapters each carry options of type <typeparamref name="TOptions"/>, the method's options
    /// record, which is also what PEFT's <c>adapter_config.json</c> holds for it (<see cref="Settings"/>).
    /// </summary>
    public abstract class AdapterLayerBase<TOptions> : AdapterLayerBase where TOptions : AdapterSettings
    {
        private readonly Dictionary<string, TOptions> _options = new(StringComparer.Ordinal);

        /// <summary>Wraps <paramref name="baseLayer"/>, registered as <c>base_layer</c> and frozen.</summary>
        protected AdapterLayerBase(string site, nn.Module<Tensor, Tensor> baseLayer) : base(site, baseLayer) { }

        /// <summary>The options of adapter <paramref name="adapter"/>.</summary>
        public TOptions Options(string adapter)
        {
            RequireAdapter(adapter);
            return _options[adapter];
        }

        /// <summary>The options of an adapter known to exist (forward and merge look them up without the check).</summary>
        protected TOptions OptionsOf(string adapter) => _options[adapter];

        /// <summary>Records a newly created adapter with its options (see <see cref="AdapterLayerBase.RegisterAdapterName"/>).</summary>
        protected void RegisterAdapter(string adapter, TOptions options)
        {
            RegisterAdapterName(adapter);
            _options[adapter] = options;
        }

        /// <summary>Replaces an existing adapter's options, e.g. with the alpha and dropout a loaded file gives.</summary>
        protected void SetOptions(string adapter, TOptions options)
        {
            RequireAdapter(adapter);
            _options[adapter] = options;
        }

        /// <inheritdoc />
        public override AdapterSettings Settings(string adapter) => Options(adapter);

        /// <inheritdoc />
        protected override void RemoveAdapterParameters(string adapter)
        {
            base.RemoveAdapterParameters(adapter);
            _options.Remove(adapter);
        }
    }
}
