using System;
using System.Collections.Generic;
using System.Linq;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using Peft.Runtime.Merging;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime
{
    /// <summary>
    /// The state behind a <c>[PeftModel]</c> root: its adapter layers and trainable modules, found by walking the
    /// module tree once when <c>RegisterComponents()</c> runs. Generated code delegates the model API here.
    /// </summary>
    public sealed class PeftModelCore : IPeftModel
    {
        /// <summary>In a mixed batch, the row "adapter" that means none: the base model's output (PEFT's <c>"__base__"</c>).</summary>
        public const string BaseAdapterName = "__base__";

        private readonly nn.Module _root;
        private List<(string Path, IAdapterLayer Layer)> _layers = new();
        private List<string> _trainableModules = new();

        private PeftModelCore(nn.Module root, PeftModelInfo info)
        {
            _root = root;
            Info = info;
            Refresh(checkAdapterConfigs: true);
        }

        /// <summary>What the compiler saw of the root class.</summary>
        public PeftModelInfo Info { get; }

        /// <summary>The model's type name, used in messages.</summary>
        public string ModelName => Info.TypeName;

        /// <summary>Module paths of the <c>[Trainable]</c> modules (PEFT's <c>modules_to_save</c>).</summary>
        public IReadOnlyList<string> TrainableModules => _trainableModules;

        /// <summary>The root module.</summary>
        public nn.Module Root => _root;

        /// <summary>
        /// Called by generated code at the end of the root's <c>RegisterComponents()</c>: finds the adapter layers,
        /// and freezes every parameter that is neither an adapter's nor a <c>[Trainable]</c> module's.
        /// </summary>
        public static PeftModelCore Attach(nn.Module root, PeftModelInfo info)
        {
            var core = new PeftModelCore(root, info);
            core.FreezeBaseModel();
            return core;
        }

        /// <summary>Re-registers <paramref name="replacement"/> as sub-module <paramref name="name"/> of <paramref name="owner"/>.</summary>
        public static void ReplaceSubmodule(nn.Module owner, string name, nn.Module replacement)
        {
            owner.register_module(name, null!); // unregisters
            owner.register_module(name, replacement);
        }

        /// <summary>Walks the module tree again (after adapters were added, removed or unloaded).</summary>
        public void Refresh() => Refresh(checkAdapterConfigs: false);

        private void Refresh(bool checkAdapterConfigs)
        {
            var layers = new List<(string Path, IAdapterLayer Layer)>();
            var trainable = new List<string>();
            foreach (var (path, module) in NamedModulesWithRoot())
            {
                if (module is IAdapterLayer layer) layers.Add((path, layer));
                if (module is IPeftComponent component)
                    trainable.AddRange(component.TrainableMembers.Select(m => Join(path, m)));
            }
            if (checkAdapterConfigs) RequireOneConfigPerAdapter(layers);
            _layers = layers;
            _trainableModules = trainable;
            foreach (var (_, layer) in layers)
                if (layer is IModelAwareAdapter aware) aware.OnModelAttached(layers);
        }

        /// <summary>
        /// PEFT017 across classes: the layers of one adapter name, wherever in the tree they sit, must agree on what
        /// PEFT's <c>adapter_config.json</c> holds once per adapter (the method, <c>use_dora</c>, <c>lora_dropout</c>,
        /// ...), or the adapter could not be saved. Refused when the model is built, by the check the save runs
        /// (<see cref="AdapterConfig.SharedFieldConflict"/>), naming both layers by their module paths.
        /// </summary>
        private static void RequireOneConfigPerAdapter(IReadOnlyList<(string Path, IAdapterLayer Layer)> layers)
        {
            foreach (var adapter in layers.SelectMany(l => l.Layer.AdapterNames).Distinct(StringComparer.Ordinal).ToList())
            {
                var sites = layers.Where(l => l.Layer.AdapterNames.Contains(adapter))
                    .Select(l => (l.Path, l.Layer.Settings(adapter))).ToList();
                if (AdapterConfig.SharedFieldConflict(sites, adapter) is { } conflict) throw new InvalidOperationException(conflict);
            }
        }

        private IEnumerable<(string Path, nn.Module Module)> NamedModulesWithRoot()
        {
            yield return ("", _root);
            foreach (var (name, module) in _root.named_modules()) yield return (name, module);
        }

        internal static string Join(string prefix, string name) => prefix.Length == 0 ? name : prefix + "." + name;

        /// <inheritdoc />
        public void FreezeBaseModel()
        {
            var trainable = new HashSet<string>(TrainableParameterNames(), StringComparer.Ordinal);
            foreach (var (name, parameter) in _root.named_parameters())
                parameter.requires_grad = trainable.Contains(name);
        }

        /// <inheritdoc />
        public void UnfreezeBaseModel()
        {
            foreach (var parameter in _root.parameters()) parameter.requires_grad = true;
        }

        private IEnumerable<string> TrainableParameterNames()
        {
            foreach (var (path, layer) in _layers)
                foreach (var adapter in layer.AdapterNames)
                    foreach (var (name, _) in layer.AdapterParameters(adapter))
                        yield return Join(path, name);
            var prefixes = _trainableModules.Select(m => m + ".").ToList();
            foreach (var (name, _) in _root.named_parameters())
                if (prefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal)))
                    yield return name;
        }

        /// <inheritdoc />
        public IReadOnlyList<(string Path, IAdapterLayer Layer)> AdapterLayers => _layers;

        /// <summary>Every adapter name on any layer, in first-seen order.</summary>
        public IReadOnlyList<string> AdapterNames => _layers.SelectMany(l => l.Layer.AdapterNames).Distinct(StringComparer.Ordinal).ToList();

        /// <inheritdoc />
        public void MergeAdapters()
        {
            // Check every layer first, so a NaN in the last layer leaves the first ones untouched too.
            foreach (var (path, layer) in _layers)
                WithPath(path, () => (layer as AdapterLayerBase)?.ValidateMerge(layer.ActiveAdapters));
            foreach (var (path, layer) in _layers)
                WithPath(path, () => layer.Merge(layer.ActiveAdapters));
        }

        /// <inheritdoc />
        public void UnmergeAdapters()
        {
            foreach (var (_, layer) in _layers) layer.Unmerge();
        }

        /// <inheritdoc />
        public void MergeAndUnload()
        {
            MergeAdapters();
            foreach (var (_, module) in NamedModulesWithRoot().ToList())
                if (module is IPeftComponent component) component.UnloadAdapterLayers();
            Refresh();
        }

        /// <inheritdoc />
        public void SaveAdapters(string directory) => PeftAdapterFormat.Save(this, directory);

        /// <inheritdoc />
        public void LoadAdapters(string directory) => PeftAdapterFormat.Load(this, directory);

        /// <inheritdoc />
        public void SaveAdapter(string directory, string adapter)
        {
            RequireModelAdapter(adapter, nameof(adapter));
            PeftAdapterFormat.Save(this, directory, adapter);
        }

        /// <inheritdoc />
        public void LoadAdapter(string directory, string adapter)
        {
            RequireModelAdapter(adapter, nameof(adapter));
            PeftAdapterFormat.Load(this, directory, adapter);
        }

        /// <inheritdoc />
        public void DeleteAdapter(string adapter)
        {
            RequireModelAdapter(adapter, nameof(adapter));
            var holders = _layers.Where(l => l.Layer.AdapterNames.Contains(adapter)).ToList();
            foreach (var (path, layer) in holders)
                if (layer.MergedAdapters.Contains(adapter))
                    throw new InvalidOperationException($"{ModelName}: adapter '{adapter}' is merged into layer '{path}'; unmerge it before deleting it (the model is unchanged)");
            foreach (var (_, layer) in holders) layer.DeleteAdapter(adapter);
        }

        /// <summary>
        /// Creates the adapter <see cref="MergeSpec.Name"/> from the spec's sources on every layer that holds them all
        /// (only the layers whose path is in <paramref name="paths"/>, when any are given): what the generated
        /// <c>Merge{Name}()</c> calls. See <see cref="AdapterMerger"/>.
        /// </summary>
        public void MergeAdapter(MergeSpec spec, params string[] paths)
        {
            var sites = paths.Length == 0 ? _layers : _layers.Where(l => paths.Contains(l.Path)).ToList();
            AdapterMerger.AddMergedAdapter(sites, spec, ModelName);
        }

        /// <inheritdoc />
        public IDisposable MixedBatch(params string[] adapterPerRow)
        {
            if (adapterPerRow is null || adapterPerRow.Length == 0)
                throw new ArgumentException($"{ModelName}: a mixed batch needs one adapter name per row", nameof(adapterPerRow));
            var known = AdapterNames;
            foreach (var name in adapterPerRow.Distinct(StringComparer.Ordinal))
                if (name != BaseAdapterName && !known.Contains(name))
                    throw new ArgumentException(
                        $"{ModelName}: no adapter named '{name}' for a mixed batch (the model has: {string.Join(", ", known.Select(a => "'" + a + "'"))}; '{BaseAdapterName}' for none)",
                        nameof(adapterPerRow));
            foreach (var (path, layer) in _layers)
                if (layer.MergedAdapters.Count > 0)
                    throw new InvalidOperationException($"{ModelName}: layer '{path}' has adapters merged into its base weight; unmerge them before a mixed batch");

            var previous = _layers.Select(l => (l.Layer, l.Layer.RowAdapters)).ToList();
            // Grouped once for the whole scope: every layer reads the same groups and index tensors.
            var rows = new RowRouting(adapterPerRow);
            foreach (var (_, layer) in _layers) layer.RowAdapters = rows;
            return new Restore(() =>
            {
                foreach (var (layer, before) in previous) layer.RowAdapters = before;
                rows.Dispose();
            });
        }

        private sealed class Restore : IDisposable
        {
            private Action? _undo;

            public Restore(Action undo) => _undo = undo;

            public void Dispose()
            {
                _undo?.Invoke();
                _undo = null;
            }
        }

        private void RequireModelAdapter(string adapter, string parameter)
        {
            var known = AdapterNames;
            if (!known.Contains(adapter))
                throw new ArgumentException($"{ModelName}: no adapter named '{adapter}' (the model has: {string.Join(", ", known.Select(a => "'" + a + "'"))})", parameter);
        }

        /// <inheritdoc />
        public void SetActiveAdapters(params string[] names)
        {
            var known = AdapterNames;
            foreach (var name in names)
                if (!known.Contains(name))
                    throw new ArgumentException($"{ModelName}: no adapter named '{name}' (the model has: {string.Join(", ", known.Select(a => "'" + a + "'"))})", nameof(names));
            foreach (var (_, layer) in _layers)
                layer.SetActiveAdapters(names.Where(n => layer.AdapterNames.Contains(n)).ToList());
        }

        /// <inheritdoc />
        public void EnableAdapters()
        {
            foreach (var (_, layer) in _layers) layer.AdaptersDisabled = false;
        }

        /// <inheritdoc />
        public void DisableAdapters()
        {
            foreach (var (_, layer) in _layers) layer.AdaptersDisabled = true;
        }

        /// <summary>What the last <see cref="LoadBaseWeights"/> read, for <see cref="SaveMergedModel"/>'s names; null before.</summary>
        internal BaseWeights.Source? BaseWeightsSource { get; set; }

        /// <inheritdoc />
        public void LoadBaseWeights(string fileOrDirectory, BaseWeightOptions? options = null) => BaseWeights.Load(this, fileOrDirectory, options);

        /// <inheritdoc />
        public void SaveMergedModel(string directory) => BaseWeights.SaveMerged(this, directory);

        /// <inheritdoc />
        public IEnumerable<Parameter> TrainableParameters() => _root.parameters().Where(p => p.requires_grad);

        /// <inheritdoc />
        public long TrainableParameterCount => TrainableParameters().Sum(p => p.numel());

        /// <inheritdoc />
        public void InitializeEva(IEnumerable<Tensor> batches, EvaOptions? options = null) =>
            Eva.Initialize(this, batches, options ?? new EvaOptions());

        /// <inheritdoc />
        public void UpdateAndAllocate(int step) => RankAllocation.UpdateAndAllocate(_layers, step);

        /// <summary>Total scalars in the model, frozen ones included.</summary>
        public long TotalParameterCount => _root.parameters().Sum(p => p.numel());

        private static void WithPath(string path, Action action)
        {
            try
            {
                action();
            }
            catch (InvalidOperationException ex)
            {
                throw new InvalidOperationException($"layer '{path}': {ex.Message}", ex);
            }
        }
    }
}
