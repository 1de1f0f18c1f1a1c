using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.IO
{
    /// <summary>
    /// Hugging Face PEFT's adapter directory: <c>adapter_config.json</c> + <c>adapter_model.safetensors</c>, the
    /// adapter <c>default</c> in the directory itself and any other in a subfolder of its name.
    /// </summary>
    public static class PeftAdapterFormat
    {
        /// <summary>The weights file's name.</summary>
        public const string WeightsFileName = "adapter_model.safetensors";

        private static readonly IReadOnlyDictionary<string, string> FileMetadata = new Dictionary<string, string> { ["format"] = "pt" };

        /// <summary>One adapter as written to one directory: a name and one PEFT type.</summary>
        private sealed record Unit(string Adapter, string PeftType, string Folder, List<(string Path, IAdapterLayer Layer)> Sites);

        /// <summary>
        /// Groups the model's adapters into PEFT adapters. PEFT's format holds one method per adapter, so where one
        /// adapter name spans methods (LoRA on <c>q</c>, Bone on <c>v</c>, both <c>default</c>), the first method keeps
        /// the name and each other is written as <c>&lt;name&gt;_&lt;type&gt;</c> — what PEFT's mixed model loads. A model
        /// built so is refused when attached (PEFT017); this case arises only from adapters added to layers afterwards.
        /// </summary>
        /// <param name="core">The model.</param>
        /// <param name="directory">The folder written or read.</param>
        /// <param name="only">One adapter whose files sit in <paramref name="directory"/> itself whatever its name (a
        /// method it spans beyond the first in a subfolder <c>&lt;name&gt;_&lt;type&gt;</c>), or null for all adapters.</param>
        private static List<Unit> Units(PeftModelCore core, string directory, string? only = null)
        {
            var units = new List<Unit>();
            foreach (var adapter in core.AdapterNames)
            {
                if (only is not null && adapter != only) continue;
                var sites = core.AdapterLayers.Where(l => l.Layer.AdapterNames.Contains(adapter)).ToList();
                var types = sites.Select(s => s.Layer.PeftType).Distinct().ToList();
                foreach (var type in types)
                {
                    string name = type == types[0] ? adapter : adapter + "_" + type.ToLowerInvariant();
                    string folder = name == (only ?? "default") ? directory : Path.Combine(directory, name);
                    units.Add(new Unit(adapter, type, folder, sites.Where(s => s.Layer.PeftType == type).ToList()));
                }
            }
            return units;
        }

        /// <summary>
        /// Writes every adapter of the model, or only <paramref name="only"/> (then into <paramref name="directory"/>
        /// itself), all or nothing: every file is first written beside its final name, then one journaled commit
        /// renames them all (see <see cref="SaveJournal"/>). A process killed at any moment leaves the previous save or
        /// this one, whole; the next load or save finishes a commit that was under way.
        /// </summary>
        /// <param name="core">The model.</param>
        /// <param name="directory">The adapter directory.</param>
        /// <param name="only">One adapter to write, into <paramref name="directory"/> itself; null for all.</param>
        /// <param name="relativeToOriginalBase">
        /// Adapters whose init replaced the base weight by a residual (PiSSA, OLoRA) are by default saved relative to
        /// that residual, as PEFT does; with true they are saved as plain LoRA adapters on the original base weight
        /// (rank and alpha doubled), PEFT's <c>path_initial_model_for_weight_conversion</c>. See
        /// <see cref="Adapters.LoRALinear.AsPlainLoRA"/>.
        /// </param>
        /// <param name="asPlainLoRA">
        /// AdaLoRA adapters are by default saved as PEFT's AdaLoRA (<c>peft_type: "ADALORA"</c>); with true they are
        /// written as plain LoRA adapters with <c>rank_pattern</c> / <c>alpha_pattern</c>, for tools that read only LoRA
        /// (layers that kept no rank are left out). See <see cref="Adapters.AdaLoRALinear.AsPlainLoRA"/>.
        /// </param>
        public static void Save(PeftModelCore core, string directory, string? only = null, bool relativeToOriginalBase = false, bool asPlainLoRA = false)
        {
            var units = Units(core, directory, only);
            if (units.Count == 0) throw new InvalidOperationException($"{core.ModelName}: the model has no adapter to save");

            using var scope = NewDisposeScope();
            // Everything that can fail on the model's side fails here, before any file is touched.
            var modulePaths = core.Root.named_modules().Select(m => m.name).ToList(); // for every adapter's target_modules
            var contents = units.Select(unit => UnitContents(core, unit, relativeToOriginalBase, asPlainLoRA, modulePaths)).ToList();

            Directory.CreateDirectory(directory);
            SaveJournal.Recover(directory);
            foreach (var unit in units) SaveJournal.DeleteLeftovers(unit.Folder);

            string id = Guid.NewGuid().ToString("N");
            var renames = new List<(string Staged, string Final)>();
            try
            {
                foreach (var (unit, tensors, config) in contents)
                {
                    Directory.CreateDirectory(unit.Folder);
                    string weightsPath = Path.Combine(unit.Folder, WeightsFileName);
                    string configPath = Path.Combine(unit.Folder, AdapterConfig.FileName);
                    renames.Add((SaveJournal.StagedPath(weightsPath, id), weightsPath));
                    Safetensors.Write(renames[^1].Staged, tensors, FileMetadata); // atomic and flushed
                    renames.Add((SaveJournal.StagedPath(configPath, id), configPath));
                    AtomicFile.Write(renames[^1].Staged, stream => stream.Write(Encoding.UTF8.GetBytes(config)));
                }
                SaveJournal.Reached("staged");
            }
            catch
            {
                // Before the commit point: the previous save is untouched; take back what this one staged.
                foreach (var (staged, _) in renames) TryDelete(staged);
                throw;
            }
            SaveJournal.Commit(directory, renames);
        }

        /// <summary>One adapter folder's tensors and serialised config.</summary>
        private static (Unit Unit, List<KeyValuePair<string, Tensor>> Tensors, string Config) UnitContents(PeftModelCore core, Unit unit, bool relativeToOriginalBase, bool asPlainLoRA, IReadOnlyCollection<string> modulePaths)
        {
            var tensors = new List<KeyValuePair<string, Tensor>>();
            var settings = new List<(string Path, AdapterSettings Settings)>();
            foreach (var (path, layer) in unit.Sites)
            {
                if (layer is Adapters.LoRALinear eva && eva.AwaitsEva(unit.Adapter))
                    throw new InvalidOperationException(
                        $"{core.ModelName}: cannot save adapter '{unit.Adapter}': layer '{path}' was declared with LoRAInit.Eva and never initialised; call InitializeEva(batches) first");
                IReadOnlyList<(string Name, Tensor Tensor)> layerTensors;
                AdapterSettings layerSettings;
                if (asPlainLoRA && layer is Adapters.AdaLoRALinear ada)
                {
                    if (ada.AsPlainLoRA(unit.Adapter) is not { } plain) continue; // no rank kept: no LoRA for this layer
                    (layerTensors, layerSettings) = plain;
                }
                else if (relativeToOriginalBase && layer is Adapters.LoRALinear lora)
                    (layerTensors, layerSettings) = lora.AsPlainLoRA(unit.Adapter);
                else if (layer is IFileTensorLayout layout)
                    (layerTensors, layerSettings) = layout.ForFile(unit.Adapter);
                else
                    (layerTensors, layerSettings) = (layer.AdapterParameters(unit.Adapter).Select(p => (p.Name, (Tensor)p.Parameter.detach())).ToList(), layer.Settings(unit.Adapter));
                foreach (var (name, tensor) in layerTensors)
                    tensors.Add(new(AdapterKeys.FileKey(path, AdapterKeys.StripAdapterName(name, unit.Adapter)), tensor));
                if (layer is IAdapterBuffers buffers)
                    foreach (var (name, tensor) in buffers.AdapterBuffers(unit.Adapter))
                        tensors.Add(new(AdapterKeys.FileKey(path, AdapterKeys.StripAdapterName(name, unit.Adapter)), tensor.detach()));
                if (layer is ISharedAdapterTensors { SharedTensorsAlsoPerLayer: true } perLayer && perLayer.FileHoldsSharedTensors(layer.Settings(unit.Adapter)))
                    foreach (var (name, tensor) in perLayer.SharedTensors(unit.Adapter))
                        tensors.Add(new(AdapterKeys.FileKey(path, AdapterKeys.StripAdapterName(name, unit.Adapter)), tensor.detach()));
                settings.Add((path, layerSettings));
            }
            foreach (var (key, tensor) in SharedTensors(unit))
                tensors.Add(new(key, tensor.detach()));
            foreach (var (name, tensor) in TrainableModuleTensors(core))
                tensors.Add(new(AdapterKeys.FileKey("", name), tensor.detach()));

            try
            {
                return (unit, tensors, AdapterConfig.Serialize(AdapterConfig.Build(settings, core.TrainableModules, core.Info.BaseModelName, core.Info.TaskType, unit.Adapter, modulePaths)));
            }
            catch (InvalidOperationException ex)
            {
                throw new InvalidOperationException($"{core.ModelName}: cannot save adapter '{unit.Adapter}': {ex.Message}", ex);
            }
        }

        private static void TryDelete(string path)
        {
            try
            {
                File.Delete(path);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The save's own exception matters more; the next save removes leftovers.
            }
        }

        /// <summary>The tensors the unit's layers share (VeRA's projections), each once, keyed <c>base_model.&lt;name&gt;</c>.</summary>
        private static IEnumerable<(string Key, Tensor Tensor)> SharedTensors(Unit unit)
        {
            var seen = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var (path, layer) in unit.Sites)
            {
                if (layer is not ISharedAdapterTensors shared) continue;
                if (!shared.FileHoldsSharedTensors(layer.Settings(unit.Adapter))) continue; // VeRA with save_projection: false
                foreach (var (name, tensor) in shared.SharedTensors(unit.Adapter))
                {
                    string key = AdapterKeys.SharedKey(name, unit.Adapter);
                    if (seen.TryGetValue(key, out var first))
                    {
                        if (!ReferenceEquals(first, tensor) && first.Handle != tensor.Handle)
                            throw new InvalidOperationException(
                                $"layer '{path}': adapter '{unit.Adapter}' holds its own '{name}' instead of the model's shared one; attach the model (PeftModelCore.Attach) before saving");
                        continue;
                    }
                    seen.Add(key, tensor);
                    yield return (key, tensor);
                }
            }
        }

        private static IEnumerable<(string Name, Tensor Tensor)> TrainableModuleTensors(PeftModelCore core)
        {
            var prefixes = core.TrainableModules.Select(m => m + ".").ToList();
            foreach (var (name, tensor) in core.Root.state_dict())
                if (prefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal)))
                    yield return (name, tensor);
        }

        /// <summary>
        /// Loads every adapter of the model that has a folder under <paramref name="directory"/>, or only
        /// <paramref name="only"/> from <paramref name="directory"/> itself. Every key, shape and setting is checked
        /// before anything is assigned, so a mismatch leaves the model unchanged.
        /// </summary>
        public static void Load(PeftModelCore core, string directory, string? only = null)
        {
            if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: no such adapter directory");
            SaveJournal.Recover(directory); // a save killed after its commit point is finished first
            var units = Units(core, directory, only).Where(u => File.Exists(Path.Combine(u.Folder, AdapterConfig.FileName))).ToList();
            if (units.Count == 0)
                throw new FileNotFoundException(
                    $"{directory}: no {AdapterConfig.FileName} for any adapter of {core.ModelName} (adapters: {string.Join(", ", core.AdapterNames)})");

            var plans = new List<LoadPlan>();
            try
            {
                foreach (var unit in units) plans.Add(Plan(core, unit)); // all validation, nothing assigned
                Apply(plans);
                // Only a load that happened warns: the file's values replaced the declared ones.
                foreach (var plan in plans)
                    foreach (var (source, message) in plan.Warnings) PeftWarnings.Raise(source, message);
            }
            finally
            {
                foreach (var plan in plans) plan.File.Dispose();
            }
        }

        private static void Apply(List<LoadPlan> plans)
        {
            var previous = new List<(IAdapterLayer Layer, string Adapter, AdapterSettings Settings)>();
            try
            {
                foreach (var plan in plans)
                    foreach (var (layer, adapter, settings) in plan.Settings)
                    {
                        previous.Add((layer, adapter, layer.Settings(adapter)));
                        layer.ApplySettings(adapter, settings);
                    }
            }
            catch
            {
                foreach (var (layer, adapter, settings) in previous) layer.ApplySettings(adapter, settings);
                throw;
            }

            using (no_grad())
                foreach (var plan in plans)
                    foreach (var (target, source) in plan.Copies)
                    {
                        var t = target(); // looked up now: an EVA adapter took the file's rank in ApplySettings
                        t.copy_(source.to(t.dtype, t.device));
                    }
            foreach (var plan in plans)
                foreach (var (layer, adapter) in plan.Removals) layer.DeleteAdapter(adapter);
        }

        /// <param name="File">The weights file, open until the load ends.</param>
        /// <param name="Settings">The file's settings per layer.</param>
        /// <param name="Copies">Each target (looked up after the settings are applied) and the file's tensor for it.</param>
        /// <param name="Warnings">What the file changed.</param>
        /// <param name="Removals">EVA adapters the file does not hold: EVA gave those layers rank 0.</param>
        private sealed record LoadPlan(
            SafetensorsFile File,
            List<(IAdapterLayer Layer, string Adapter, AdapterSettings Settings)> Settings,
            List<(Func<Tensor> Target, Tensor Source)> Copies,
            List<(string Source, string Message)> Warnings,
            List<(IAdapterLayer Layer, string Adapter)> Removals);

        /// <summary>
        /// Config fields that say only how a fresh adapter starts or how the next save writes it, not how the loaded one
        /// computes: a file that differs in them is loaded without a word.
        /// </summary>
        private static readonly HashSet<string> StartOnlyFields = new(StringComparer.Ordinal)
        {
            "init_lora_weights", "init_weights", "init_ia3_weights", "d_initial", "save_projection",
        };

        /// <summary>
        /// PEFT's rule for a file whose hyper-parameters differ from the declared ones: the file wins. Every field the
        /// config holds for this layer (per-layer ones such as <c>lora_alpha</c> or an <c>alpha_pattern</c> entry, and
        /// shared ones such as <c>lora_dropout</c>) that differs from the declaration, and that the layer accepted, is
        /// named with both values. (Fields that fix tensor shapes were refused before this point.)
        /// </summary>
        private static IEnumerable<string> FileWins(string configPath, string path, string adapter, AdapterSettings declared, AdapterSettings file)
        {
            foreach (var (field, value) in file.PerLayerFields)
                if (declared.PerLayerFields.TryGetValue(field, out var mine) && mine != value)
                    yield return Wins(field, Show(mine), Show(value));
            var ours = new JsonObject();
            var theirs = new JsonObject();
            declared.WriteSharedFields(ours);
            file.WriteSharedFields(theirs);
            foreach (var (field, value) in theirs)
                if (!StartOnlyFields.Contains(field) && ours.ContainsKey(field) && !JsonNode.DeepEquals(ours[field], value))
                    yield return Wins(field, ours[field]?.ToJsonString() ?? "null", value?.ToJsonString() ?? "null");

            string Wins(string field, string mine, string theirs) =>
                $"{configPath}: layer '{path}', adapter '{adapter}': the file's {field} = {theirs} replaces the adapter's {mine} (the file wins, as in PEFT)";
            static string Show(double v) => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        }

        private static LoadPlan Plan(PeftModelCore core, Unit unit)
        {
            string configPath = Path.Combine(unit.Folder, AdapterConfig.FileName);
            string weightsPath = Path.Combine(unit.Folder, WeightsFileName);
            var config = AdapterConfig.Read(configPath);
            string fileType = config["peft_type"]!.GetValue<string>();
            if (AdapterConfig.CurrentType(fileType) != unit.PeftType)
                throw new InvalidDataException($"{configPath}: peft_type is '{fileType}', but adapter '{unit.Adapter}' of {core.ModelName} is {unit.PeftType}");

            var file = Safetensors.Read(weightsPath);
            try
            {
                return Plan(core, unit, file, config, configPath, weightsPath);
            }
            catch
            {
                file.Dispose();
                throw;
            }
        }

        private static LoadPlan Plan(PeftModelCore core, Unit unit, SafetensorsFile file, JsonObject config, string configPath, string weightsPath)
        {
            var byKey = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            AdapterConfig.LegacyTypes.TryGetValue(config["peft_type"]!.GetValue<string>(), out var legacy);
            foreach (var (key, tensor) in file.Tensors)
                if (!byKey.TryAdd(legacy?.RenameKey(AdapterKeys.WithoutPrefix(key)) ?? AdapterKeys.WithoutPrefix(key), tensor))
                    throw new InvalidDataException($"{weightsPath}: key '{key}' appears twice (with and without the '{AdapterKeys.Prefix}' prefix)");
            var used = new HashSet<string>(StringComparer.Ordinal);

            var settings = new List<(IAdapterLayer, string, AdapterSettings)>();
            var copies = new List<(Func<Tensor>, Tensor)>();
            var warnings = new List<(string, string)>();
            var removals = new List<(IAdapterLayer, string)>();
            foreach (var (path, layer) in unit.Sites)
            {
                if (IsEvaLayerAbsent(layer, unit.Adapter, path, config, byKey))
                {
                    if (layer.MergedAdapters.Contains(unit.Adapter))
                        throw new InvalidDataException($"{configPath}: layer '{path}' has no adapter '{unit.Adapter}' in the file (EVA gave it rank 0), but it is merged there; unmerge first");
                    removals.Add((layer, unit.Adapter));
                    continue;
                }
                string LayerKey(string name) => PeftModelCore.Join(path, AdapterKeys.StripAdapterName(name, unit.Adapter));
                // The layer checks these against itself now (a LoRA file on a DoRA adapter is named as such, not as a
                // missing key) and again when they are applied (all or none, in Load).
                var layerSettings = AdapterConfig.SettingsFor(config, path, configPath);
                try
                {
                    (layer as Adapters.AdapterLayerBase)?.ValidateSettings(unit.Adapter, layerSettings);
                }
                catch (InvalidOperationException ex)
                {
                    throw new InvalidDataException($"{configPath}: layer '{path}': {ex.Message}", ex);
                }
                settings.Add((layer, unit.Adapter, layerSettings));
                foreach (var message in FileWins(configPath, path, unit.Adapter, layer.Settings(unit.Adapter), layerSettings))
                    warnings.Add((configPath, message));
                if (layer is IFileTensorLayout layout)
                {
                    // The file's tensors differ from the parameters (AdaLoRA's kept ranks): read by the layer's own shapes.
                    var fileTensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
                    foreach (var (name, shape) in layout.FileShapes(unit.Adapter, layerSettings))
                        fileTensors[name] = Take(byKey, used, LayerKey(name), shape, weightsPath);
                    IReadOnlyList<(Tensor Target, Tensor Source)> fromFile;
                    try
                    {
                        fromFile = layout.FromFile(unit.Adapter, layerSettings, fileTensors);
                    }
                    catch (InvalidOperationException ex)
                    {
                        throw new InvalidDataException($"{weightsPath}: layer '{path}': {ex.Message}", ex);
                    }
                    foreach (var (target, source) in fromFile) copies.Add((() => target, source));
                }
                else
                    foreach (var (name, parameter) in layer.AdapterParameters(unit.Adapter))
                    {
                        string key = LayerKey(name);
                        var shape = layer is Adapters.LoRALinear lora ? lora.FileShape(unit.Adapter, name, layerSettings) : parameter.shape;
                        string adapter = unit.Adapter;
                        copies.Add((() => layer.AdapterParameters(adapter).First(p => p.Name == name).Parameter, Take(byKey, used, key, shape, weightsPath)));
                    }
                if (layer is IAdapterBuffers layerBuffers)
                    foreach (var (name, buffer) in layerBuffers.AdapterBuffers(unit.Adapter))
                    {
                        string key = LayerKey(name);
                        var source = Take(byKey, used, key, buffer.shape, weightsPath);
                        if (layerBuffers.CheckBuffer(unit.Adapter, name, source) is { } problem)
                            throw new InvalidDataException($"{weightsPath}: key '{AdapterKeys.Prefix}{key}': {problem}");
                        copies.Add((() => buffer, source));
                    }
                if (layer is ISharedAdapterTensors shared)
                {
                    bool inFile = shared.FileHoldsSharedTensors(layerSettings);
                    foreach (var (name, tensor) in shared.SharedTensors(unit.Adapter))
                    {
                        string key = AdapterKeys.SharedKey(name, unit.Adapter); // not under base_model.model.
                        if (shared.SharedTensorsAlsoPerLayer)
                        {
                            // PEFT writes the model's copy and one per layer (RandLoRA): read the model's, else this
                            // layer's; every copy present must fit.
                            string layerKey = LayerKey(name);
                            if (inFile && !used.Contains(key) && !byKey.ContainsKey(key) && byKey.ContainsKey(layerKey))
                            {
                                copies.Add((() => tensor, Take(byKey, used, layerKey, tensor.shape, weightsPath)));
                                used.Add(key);
                            }
                            else if (byKey.ContainsKey(layerKey))
                            {
                                if (inFile) Take(byKey, used, layerKey, tensor.shape, weightsPath);
                                else used.Add(layerKey);
                            }
                        }
                        if (used.Contains(key)) continue; // shared: loaded once
                        if (inFile) copies.Add((() => tensor, Take(byKey, used, key, tensor.shape, weightsPath, shownKey: key)));
                        else if (byKey.ContainsKey(key)) used.Add(key); // PEFT ignores them too when the config says they are not saved
                    }
                }
            }

            var trainable = core.TrainableModules.Select(m => m + ".").ToList();
            foreach (var (name, tensor) in core.Root.state_dict())
                if (trainable.Any(p => name.StartsWith(p, StringComparison.Ordinal)) && byKey.ContainsKey(name))
                    copies.Add((() => tensor, Take(byKey, used, name, tensor.shape, weightsPath)));

            var unknown = byKey.Keys.Where(k => !used.Contains(k)).ToList();
            if (unknown.Count > 0)
                throw new InvalidDataException(
                    $"{weightsPath}: key '{(unknown[0].StartsWith(AdapterKeys.ModelPrefix, StringComparison.Ordinal) ? "" : AdapterKeys.Prefix)}{unknown[0]}' matches no parameter of adapter '{unit.Adapter}' nor a [Trainable] module of {core.ModelName}" +
                    (unknown.Count > 1 ? $" ({unknown.Count - 1} more such keys)" : ""));
            return new LoadPlan(file, settings, copies, warnings, removals);
        }

        /// <summary>
        /// Whether the file leaves out an adapter declared with <c>LoRAInit.Eva</c> on this layer: its <c>target_modules</c>
        /// list does not name the layer and no key of the layer's is present, which is how EVA's rank 0 is saved (PEFT
        /// drops the layer from <c>target_modules</c>). The layer then loses the adapter, as it did where EVA ran.
        /// </summary>
        private static bool IsEvaLayerAbsent(IAdapterLayer layer, string adapter, string path, JsonObject config, Dictionary<string, Tensor> byKey)
        {
            if (layer is not Adapters.LoRALinear lora || lora.Options(adapter).Init != LoRAInit.Eva) return false;
            if (config["target_modules"] is not JsonArray targets) return false;
            if (targets.Any(t => t?.GetValue<string>() is { } name && AdapterConfig.MatchesModule(path, name))) return false;
            string prefix = path + ".";
            return !byKey.Keys.Any(k => k.StartsWith(prefix, StringComparison.Ordinal));
        }

        private static Tensor Take(Dictionary<string, Tensor> byKey, HashSet<string> used, string key, long[] shape, string file, string? shownKey = null)
        {
            shownKey ??= AdapterKeys.Prefix + key;
            if (!byKey.TryGetValue(key, out var source))
                throw new InvalidDataException($"{file}: key '{shownKey}' is missing (the model expects shape {Shape(shape)})");
            if (!source.shape.SequenceEqual(shape))
                throw new InvalidDataException($"{file}: key '{shownKey}' has shape {Shape(source)}, but the model's parameter has shape {Shape(shape)}");
            used.Add(key);
            return source;
        }

        internal static string Shape(Tensor t) => Shape(t.shape);

        private static string Shape(long[] shape) => "[" + string.Join(", ", shape) + "]";
    }
}
