using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using Peft.Runtime.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.IO
{
    /// <summary>
    /// A <c>[PeftModel]</c>'s base weights to and from a Hugging Face checkpoint: one <c>model.safetensors</c> or shards
    /// listed by <c>model.safetensors.index.json</c>. Loading reads every header first, checks every key, shape and
    /// dtype and throws one <see cref="BaseWeightsMismatchException"/> listing every problem before any parameter
    /// changes; tensors are then streamed one at a time from the file into the parameters (never a whole file in
    /// memory). Saving writes what the adapted model computes with (adapters folded in) under the checkpoint's names.
    /// </summary>
    public static class BaseWeights
    {
        /// <summary>A single-file checkpoint's name in a Hugging Face model folder.</summary>
        public const string SingleFileName = "model.safetensors";

        /// <summary>A sharded checkpoint's index.</summary>
        public const string IndexFileName = "model.safetensors.index.json";

        /// <summary>The model config that <see cref="SaveMerged"/> copies from the source folder.</summary>
        public const string ConfigFileName = "config.json";

        private const string BaseLayerSegment = "base_layer";

        private static readonly IReadOnlyDictionary<string, string> FileMetadata = new Dictionary<string, string> { ["format"] = "pt" };

        /// <summary>What the last load read: kept so that a merged export uses the checkpoint's own names and dtypes.</summary>
        internal sealed record Source(string? Folder, IReadOnlyDictionary<string, (string Key, ScalarType DType)> KeyByName);

        /// <summary>One tensor of the model's base: its names (several when parameters are tied) and the tensor.</summary>
        private sealed record BaseTensor(List<string> StateNames, List<string> Names, Tensor Tensor);

        private sealed record CheckpointTensor(string Key, string File, SafetensorsHeader Header, SafetensorsEntry Entry);

        /// <summary>Loads base weights into <paramref name="core"/>'s model. See <see cref="BaseWeights"/>.</summary>
        /// <param name="core">The model.</param>
        /// <param name="fileOrDirectory">A <c>.safetensors</c> file, a <c>model.safetensors.index.json</c>, or a folder holding either.</param>
        /// <param name="options">Key matching; null for the defaults.</param>
        /// <exception cref="BaseWeightsMismatchException">Keys, shapes or dtypes do not fit; the model is unchanged.</exception>
        /// <exception cref="SafetensorsFormatException">A file is malformed; the model is unchanged.</exception>
        public static void Load(PeftModelCore core, string fileOrDirectory, BaseWeightOptions? options = null)
        {
            ArgumentNullException.ThrowIfNull(core);
            ArgumentException.ThrowIfNullOrEmpty(fileOrDirectory);
            options ??= new BaseWeightOptions();
            var (folder, checkpoint) = OpenCheckpoint(fileOrDirectory);
            var model = ModelTensors(core);

            var missing = new List<string>();
            var unexpected = new List<string>();
            var misshapen = new List<string>();

            // Checkpoint keys to model names.
            var byName = new Dictionary<string, CheckpointTensor>(StringComparer.Ordinal);
            foreach (var tensor in checkpoint)
            {
                string key = tensor.Key;
                if (options.Prefix is { Length: > 0 } prefix)
                {
                    if (!key.StartsWith(prefix, StringComparison.Ordinal))
                    {
                        unexpected.Add(tensor.Key + " (lacks the prefix '" + prefix + "')");
                        continue;
                    }
                    key = key[prefix.Length..];
                }
                string? name = options.Rename is null ? key : options.Rename(key);
                if (name is null) continue;
                name = WithoutBaseLayer(name);
                if (!byName.TryAdd(name, tensor))
                    misshapen.Add($"{tensor.Key}: fills '{name}' as '{byName[name].Key}' does");
            }

            var plan = new List<(BaseTensor Target, CheckpointTensor Source)>();
            var used = new HashSet<string>(StringComparer.Ordinal);
            var keyByName = new Dictionary<string, (string, ScalarType)>(StringComparer.Ordinal);
            foreach (var target in model)
            {
                CheckpointTensor? source = null;
                foreach (var name in target.Names)
                {
                    if (!byName.TryGetValue(name, out var own)) continue;
                    source ??= own;
                    used.Add(name);
                    keyByName[name] = (own.Key, ScalarTypeOf(own.Entry));
                    // Tied names both present: the first fills the tensor; the others must agree in shape.
                    if (!own.Entry.Shape.SequenceEqual(target.Tensor.shape))
                        misshapen.Add($"{own.Key}: checkpoint {Shape(own.Entry.Shape)}, model '{target.StateNames[target.Names.IndexOf(name)]}' {Shape(target.Tensor.shape)}");
                    else if (!DTypeFits(own.Entry, target.Tensor))
                        misshapen.Add($"{own.Key}: checkpoint dtype {own.Entry.DType} cannot fill model '{target.StateNames[target.Names.IndexOf(name)]}' of {target.Tensor.dtype}");
                }
                if (source is null && options.Aliases is not null)
                {
                    foreach (var name in target.Names)
                    {
                        if (options.Aliases.TryGetValue(name, out var alias) && byName.TryGetValue(WithoutBaseLayer(alias), out var aliased))
                        {
                            source = aliased;
                            used.Add(WithoutBaseLayer(alias));
                            if (!aliased.Entry.Shape.SequenceEqual(target.Tensor.shape))
                                misshapen.Add($"{aliased.Key} (for '{name}'): checkpoint {Shape(aliased.Entry.Shape)}, model {Shape(target.Tensor.shape)}");
                            break;
                        }
                    }
                }
                if (source is null)
                {
                    if (options.Strict) missing.Add(string.Join(" = ", target.Names));
                    continue;
                }
                plan.Add((target, source));
            }
            if (options.Strict)
                foreach (var (name, tensor) in byName)
                    if (!used.Contains(name))
                        unexpected.Add(tensor.Key == name ? name : $"{tensor.Key} (as '{name}')");

            if (missing.Count + unexpected.Count + misshapen.Count > 0)
                throw new BaseWeightsMismatchException(core.ModelName, fileOrDirectory, missing, unexpected, misshapen);

            // Every check passed: stream each tensor into its parameter, one open stream per file.
            var streams = new Dictionary<string, FileStream>(StringComparer.Ordinal);
            try
            {
                using var noGrad = no_grad();
                foreach (var (target, source) in plan)
                {
                    if (!streams.TryGetValue(source.File, out var stream))
                        streams[source.File] = stream = new FileStream(source.File, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.RandomAccess);
                    using var scope = NewDisposeScope();
                    Tensor read = SafetensorsReader.ReadTensor(stream, source.Header, source.Entry, source.File);
                    target.Tensor.copy_(read);
                }
            }
            finally
            {
                foreach (var stream in streams.Values) stream.Dispose();
            }
            core.BaseWeightsSource = new Source(folder, keyByName);
        }

        /// <summary>
        /// Writes the weights the adapted model computes with (each adapter layer's base weight plus its active, unmerged
        /// adapters; none where adapters are disabled) as <c>model.safetensors</c> in <paramref name="directory"/>, under
        /// the names and dtypes of the checkpoint last loaded (tied tensors once, as the checkpoint held them), with its
        /// <c>config.json</c> when its folder had one. Loading the result with adapters disabled gives the adapted
        /// model's outputs. Each file is replaced atomically; the model is not changed.
        /// </summary>
        public static void SaveMerged(PeftModelCore core, string directory)
        {
            ArgumentNullException.ThrowIfNull(core);
            ArgumentException.ThrowIfNullOrEmpty(directory);
            using var scope = NewDisposeScope();
            var effective = EffectiveTensors(core);
            var source = core.BaseWeightsSource;
            var tensors = new List<KeyValuePair<string, Tensor>>();
            foreach (var target in ModelTensors(core))
            {
                Tensor value = effective.TryGetValue(target.StateNames[0], out var merged) ? merged : target.Tensor.detach();
                if (source is null)
                {
                    tensors.Add(new(target.Names[0], value)); // tied tensors once, under their first name
                    continue;
                }
                foreach (var name in target.Names)
                    if (source.KeyByName.TryGetValue(name, out var key))
                        tensors.Add(new(key.Key, value.dtype == key.DType ? value : value.to(key.DType)));
            }
            if (tensors.Count == 0) throw new InvalidOperationException($"{core.ModelName}: the model has no base weights to save");

            Directory.CreateDirectory(directory);
            Safetensors.Write(Path.Combine(directory, SingleFileName), tensors, FileMetadata);
            if (source?.Folder is { } folder && File.Exists(Path.Combine(folder, ConfigFileName))
                && !SamePath(Path.Combine(folder, ConfigFileName), Path.Combine(directory, ConfigFileName)))
            {
                byte[] config = File.ReadAllBytes(Path.Combine(folder, ConfigFileName));
                AtomicFile.Write(Path.Combine(directory, ConfigFileName), stream => stream.Write(config));
            }
        }

        /// <summary>A model name as the checkpoint spells it: PEFT's <c>base_layer</c> segments removed.</summary>
        public static string WithoutBaseLayer(string name)
        {
            if (!name.Contains(BaseLayerSegment, StringComparison.Ordinal)) return name;
            return string.Join('.', name.Split('.').Where(s => s != BaseLayerSegment));
        }

        /// <summary>
        /// The model's base tensors: every state-dict entry that is not an adapter's (under an adapter layer, only its
        /// <c>base_layer</c>), grouped by the memory they share so that tied parameters are one tensor.
        /// </summary>
        private static List<BaseTensor> ModelTensors(PeftModelCore core)
        {
            var adapterPaths = core.AdapterLayers.Select(l => l.Path + ".").Where(p => p.Length > 1).ToList();
            bool rootIsAdapter = core.AdapterLayers.Any(l => l.Path.Length == 0);
            var groups = new List<BaseTensor>();
            var byMemory = new Dictionary<(IntPtr, string, ScalarType), BaseTensor>();
            foreach (var (stateName, tensor) in core.Root.state_dict())
            {
                if (rootIsAdapter && !stateName.StartsWith(BaseLayerSegment + ".", StringComparison.Ordinal)) continue;
                string? under = adapterPaths.FirstOrDefault(p => stateName.StartsWith(p, StringComparison.Ordinal));
                if (under is not null && !stateName.AsSpan(under.Length).StartsWith(BaseLayerSegment + ".", StringComparison.Ordinal)) continue;
                string name = WithoutBaseLayer(stateName);
                // Tied parameters share memory; an empty tensor has no address worth comparing.
                var identity = tensor.numel() == 0
                    ? ((IntPtr)(-1 - groups.Count), stateName, tensor.dtype)
                    : (Kernels.TensorData.Address(tensor), Shape(tensor.shape), tensor.dtype);
                if (byMemory.TryGetValue(identity, out var group))
                {
                    group.StateNames.Add(stateName);
                    group.Names.Add(name);
                    continue;
                }
                group = new BaseTensor(new List<string> { stateName }, new List<string> { name }, tensor);
                byMemory[identity] = group;
                groups.Add(group);
            }
            return groups;
        }

        /// <summary>The effective base weight and bias of every adapter layer, by state-dict name.</summary>
        private static Dictionary<string, Tensor> EffectiveTensors(PeftModelCore core)
        {
            var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var (path, layer) in core.AdapterLayers)
            {
                Tensor weight;
                Tensor? bias;
                if (layer is AdapterLayerBase known)
                {
                    (weight, bias) = known.EffectiveWeights();
                }
                else
                {
                    using var noGrad = no_grad();
                    weight = layer.BaseLayer.get_parameter("weight")!.detach().clone();
                    bias = layer.BaseLayer.get_parameter("bias")?.detach();
                    if (!layer.AdaptersDisabled)
                        foreach (var adapter in layer.ActiveAdapters.Where(a => !layer.MergedAdapters.Contains(a)))
                            weight.add_(layer.DeltaWeight(adapter).to(weight.dtype));
                }
                string prefix = PeftModelCore.Join(path, BaseLayerSegment) + ".";
                result[prefix + "weight"] = weight;
                if (bias is not null) result[prefix + "bias"] = bias;
            }
            return result;
        }

        /// <summary>The tensors of a checkpoint: a file, an index, or a folder holding either.</summary>
        private static (string? Folder, List<CheckpointTensor> Tensors) OpenCheckpoint(string fileOrDirectory)
        {
            string path = fileOrDirectory;
            if (Directory.Exists(path))
            {
                string index = Path.Combine(path, IndexFileName);
                string single = Path.Combine(path, SingleFileName);
                if (File.Exists(index)) path = index;
                else if (File.Exists(single)) path = single;
                else
                {
                    var files = Directory.GetFiles(path, "*.safetensors");
                    if (files.Length != 1)
                        throw new FileNotFoundException(
                            $"'{fileOrDirectory}' holds neither {SingleFileName} nor {IndexFileName}" + (files.Length > 1 ? $", and {files.Length} other .safetensors files" : ""), path);
                    path = files[0];
                }
            }
            else if (!File.Exists(path))
                throw new FileNotFoundException($"No checkpoint at '{fileOrDirectory}'", path);

            string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
            if (path.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase)) return (folder, ReadSharded(path, folder));

            var header = Safetensors.ReadHeader(path);
            return (folder, header.Entries.Select(e => new CheckpointTensor(e.Name, path, header, e)).ToList());
        }

        /// <summary>A sharded checkpoint: the index's <c>weight_map</c> (key to file in the index's folder), every shard's header checked.</summary>
        private static List<CheckpointTensor> ReadSharded(string indexPath, string folder)
        {
            var map = new List<(string Key, string File)>();
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
                if (doc.RootElement.ValueKind != JsonValueKind.Object
                    || !doc.RootElement.TryGetProperty("weight_map", out var weightMap) || weightMap.ValueKind != JsonValueKind.Object)
                    throw new InvalidDataException($"'{indexPath}' has no \"weight_map\" object");
                foreach (var entry in weightMap.EnumerateObject())
                {
                    if (entry.Value.ValueKind != JsonValueKind.String)
                        throw new InvalidDataException($"'{indexPath}': weight_map['{entry.Name}'] is not a file name");
                    string file = entry.Value.GetString()!;
                    // A shard is a plain file beside the index: no folders, no way out of it.
                    if (file.Length == 0 || file != Path.GetFileName(file) || file is "." or ".." || file.IndexOfAny(new[] { '/', '\\' }) >= 0)
                        throw new InvalidDataException($"'{indexPath}': weight_map['{entry.Name}'] names '{file}', which is not a file beside the index");
                    map.Add((entry.Name, file));
                }
            }
            catch (JsonException ex)
            {
                throw new InvalidDataException($"'{indexPath}' is not valid JSON: {ex.Message}", ex);
            }

            var headers = new Dictionary<string, SafetensorsHeader>(StringComparer.Ordinal);
            var tensors = new List<CheckpointTensor>();
            foreach (var (key, file) in map)
            {
                string shard = Path.Combine(folder, file);
                if (!headers.TryGetValue(file, out var header)) headers[file] = header = Safetensors.ReadHeader(shard);
                if (!header.TryGetEntry(key, out var entry))
                    throw new SafetensorsFormatException(shard, key, $"the index '{IndexFileName}' places tensor '{key}' in this shard, which lacks it");
                tensors.Add(new CheckpointTensor(key, shard, header, entry));
            }
            return tensors;
        }

        private static ScalarType ScalarTypeOf(SafetensorsEntry entry) =>
            SafetensorsDTypes.TryFromName(entry.DType, out var dtype) ? dtype.Value.ScalarType
                : throw new InvalidOperationException($"unknown dtype '{entry.DType}' in a validated header");

        /// <summary>Floating point fills floating point (F32, F16, BF16, F64 convert to the parameter's dtype); other dtypes only their own.</summary>
        private static bool DTypeFits(SafetensorsEntry entry, Tensor tensor)
        {
            ScalarType from = ScalarTypeOf(entry);
            return from == tensor.dtype || (torch.is_floating_point(tensor) && IsFloat(from));
        }

        private static bool IsFloat(ScalarType t) => t is ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float64;

        private static string Shape(long[] shape) => "[" + string.Join(", ", shape) + "]";

        private static bool SamePath(string a, string b) =>
            string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);
    }

    /// <summary>
    /// A checkpoint does not fit the model: every missing, unexpected and misshapen key at once. Thrown before any
    /// parameter changes.
    /// </summary>
    public sealed class BaseWeightsMismatchException : InvalidOperationException
    {
        /// <summary>Creates the exception with its message listing every problem.</summary>
        public BaseWeightsMismatchException(string model, string checkpoint, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> misshapen)
            : base(Format(model, checkpoint, missing, unexpected, misshapen))
        {
            Missing = missing;
            Unexpected = unexpected;
            Misshapen = misshapen;
        }

        /// <summary>Base tensors of the model the checkpoint lacks (tied names joined by <c> = </c>).</summary>
        public IReadOnlyList<string> Missing { get; }

        /// <summary>Checkpoint keys that fill no base tensor.</summary>
        public IReadOnlyList<string> Unexpected { get; }

        /// <summary>Checkpoint keys whose shape or dtype does not fit, with both shapes.</summary>
        public IReadOnlyList<string> Misshapen { get; }

        private static string Format(string model, string checkpoint, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> misshapen)
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"{missing.Count} missing: " + string.Join(", ", missing));
            if (unexpected.Count > 0) parts.Add($"{unexpected.Count} unexpected: " + string.Join(", ", unexpected));
            if (misshapen.Count > 0) parts.Add($"{misshapen.Count} misshapen: " + string.Join("; ", misshapen));
            return $"{model}: the checkpoint '{checkpoint}' does not fit the model (nothing was loaded). " + string.Join(". ", parts);
        }
    }
}
