using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;

namespace Peft.Generators.Model
{
    /// <summary>A parameter of a generated model-level method.</summary>
    internal sealed class ApiParameter
    {
        public ApiParameter(string type, string name, string summary, bool isParams = false, string? defaultValue = null)
        {
            Type = type;
            Name = name;
            Summary = summary;
            IsParams = isParams;
            DefaultValue = defaultValue;
        }

        /// <summary>The type as <see cref="SymbolDisplayFormat.FullyQualifiedFormat"/> shows it (<c>string</c>, <c>string[]</c>).</summary>
        public string Type { get; }

        public string Name { get; }

        /// <summary>The <c>&lt;param&gt;</c> text.</summary>
        public string Summary { get; }

        /// <summary>Declared <c>params</c>.</summary>
        public bool IsParams { get; }

        /// <summary>An optional parameter's default as written (<c>null</c>), or null for a required one.</summary>
        public string? DefaultValue { get; }
    }

    /// <summary>
    /// A member the emitter writes into an annotated class: the one list of them. The parser uses it to leave alone
    /// classes that already declare one and to mark with <c>new</c> those that hide an inherited member; the emitter
    /// writes the model-level API (<see cref="ModelApi"/>) from it, and a test holds that API equal to the runtime's
    /// <c>IPeftModel</c>, which <c>PeftModelCore</c> implements and every generated member forwards to.
    /// </summary>
    internal sealed class GeneratedMember
    {
        /// <summary>The private property the model-level API forwards through.</summary>
        public const string Core = "__peftCoreOrThrow";

        private GeneratedMember(
            string name, Accessibility accessibility, bool peftModelOnly, ApiParameter[]? parameters = null, bool isOverride = false,
            string? returnType = null, string? summary = null)
        {
            Name = name;
            Accessibility = accessibility;
            PeftModelOnly = peftModelOnly;
            ApiParameters = parameters is null ? (ImmutableArray<ApiParameter>?)null : ImmutableArray.Create(parameters);
            Parameters = parameters is null ? (ImmutableArray<string>?)null : ImmutableArray.CreateRange(parameters.Select(static p => p.Type.TrimEnd('?')));
            IsOverride = isOverride;
            ReturnType = returnType;
            Summary = summary;
        }

        public string Name { get; }

        public Accessibility Accessibility { get; }

        /// <summary>Only <c>[PeftModel]</c> classes get it.</summary>
        public bool PeftModelOnly { get; }

        /// <summary>For methods, the parameter types as <see cref="SymbolDisplayFormat.FullyQualifiedFormat"/> shows them; null otherwise.</summary>
        public ImmutableArray<string>? Parameters { get; }

        /// <summary>For methods, the parameters; null for properties and fields.</summary>
        public ImmutableArray<ApiParameter>? ApiParameters { get; }

        public bool IsOverride { get; }

        /// <summary>For the model-level API, the return or property type as written in generated code; null for the rest.</summary>
        public string? ReturnType { get; }

        /// <summary>For the model-level API, the <c>&lt;summary&gt;</c> text.</summary>
        public string? Summary { get; }

        /// <summary>Whether it belongs to the model-level API (<c>IPeftModel</c>), which forwards to <see cref="Core"/>.</summary>
        public bool IsModelApi => ReturnType is not null;

        /// <summary>The declaration after the modifiers, forwarding to <see cref="Core"/>: <c>void SaveAdapters(string directory) => __peftCoreOrThrow.SaveAdapters(directory);</c>.</summary>
        public string Declaration => ApiParameters is { } parameters
            ? ReturnType + " " + Name + "(" + string.Join(", ", parameters.Select(static p => (p.IsParams ? "params " : string.Empty) + p.Type + " " + p.Name
                + (p.DefaultValue is null ? string.Empty : " = " + p.DefaultValue)))
                + ") => " + Core + "." + Name + "(" + string.Join(", ", parameters.Select(static p => p.Name)) + ");"
            : ReturnType + " " + Name + " => " + Core + "." + Name + ";";

        private static GeneratedMember Api(string returnType, string name, string summary, params ApiParameter[] parameters) =>
            new GeneratedMember(name, Accessibility.Public, peftModelOnly: true, parameters, returnType: returnType, summary: summary);

        private static GeneratedMember ApiProperty(string type, string name, string summary) =>
            new GeneratedMember(name, Accessibility.Public, peftModelOnly: true, returnType: type, summary: summary);

        private static ApiParameter Directory(string summary) => new ApiParameter("string", "directory", summary);

        public static readonly ImmutableArray<GeneratedMember> All = ImmutableArray.Create(
            new GeneratedMember("RegisterComponents", Accessibility.Protected, false, new ApiParameter[0], isOverride: true),
            new GeneratedMember("__peftWired", Accessibility.Private, false),
            new GeneratedMember("__peftCore", Accessibility.Private, true),
            new GeneratedMember("__peftTrainableMembers", Accessibility.Private, false),
            new GeneratedMember(Core, Accessibility.Private, true),
            new GeneratedMember("PeftInfo", Accessibility.Public, false),
            // The model-level API, in the order it is written.
            ApiProperty("global::System.Collections.Generic.IReadOnlyList<(string Path, global::Peft.Runtime.IAdapterLayer Layer)>", "AdapterLayers",
                "Every adapter layer of the model by its module path (<c>blocks.0.q</c>), in tree order."),
            Api("void", "MergeAdapters", "Folds the active adapters into the base weights (refusing NaN / Inf, naming the layer)."),
            Api("void", "UnmergeAdapters", "Undoes <c>MergeAdapters()</c>."),
            Api("void", "MergeAndUnload", "Merges the active adapters and puts the plain base layers back in the model."),
            Api("void", "SaveAdapters", "Writes every adapter in Hugging Face PEFT's format (<c>adapter_config.json</c> and <c>adapter_model.safetensors</c>).",
                Directory("The folder that receives the adapter <c>default</c>; any other adapter goes in a subfolder of its name.")),
            Api("void", "LoadAdapters", "Reads adapters written by <c>SaveAdapters</c> or by Hugging Face PEFT; on any mismatch the model is left unchanged.",
                Directory("The folder to read.")),
            Api("void", "SaveAdapter", "Writes one adapter in Hugging Face PEFT's format straight into <paramref name=\"directory\"/>, with the <c>[Trainable]</c> modules.",
                Directory("The folder that receives the adapter's files, whatever its name."),
                new ApiParameter("string", "adapter", "The adapter to write.")),
            Api("void", "LoadAdapter", "Reads one adapter's files from <paramref name=\"directory\"/> into the model's adapter <paramref name=\"adapter\"/>; on any mismatch the model is left unchanged.",
                Directory("The folder holding the adapter's files."),
                new ApiParameter("string", "adapter", "The model's adapter that receives them.")),
            Api("void", "DeleteAdapter", "Removes an adapter and its parameters from every layer (refused while it is merged).",
                new ApiParameter("string", "adapter", "The adapter to remove.")),
            Api("void", "SetActiveAdapters", "Selects the adapters applied in <c>forward</c> on every layer that has them.",
                new ApiParameter("string[]", "names", "The adapter names, in the order they apply.", isParams: true)),
            Api("void", "EnableAdapters", "Applies the active adapters again after <c>DisableAdapters()</c>."),
            Api("void", "DisableAdapters", "Makes <c>forward</c> return the base model's output."),
            Api("global::System.IDisposable", "MixedBatch",
                "Until the returned scope is disposed, row i of each batch goes through adapter <paramref name=\"adapterPerRow\"/>[i] alone (<c>\"__base__\"</c> for the base model), one sub-batch per adapter.",
                new ApiParameter("string[]", "adapterPerRow", "One adapter name per row of the batch (the first dimension of each adapter layer's input).", isParams: true)),
            Api("void", "FreezeBaseModel", "Freezes every parameter but the adapters' and the <c>[Trainable]</c> modules' (what <c>RegisterComponents()</c> did)."),
            Api("void", "UnfreezeBaseModel", "Makes every parameter trainable: to pre-train or fully fine-tune the base model, usually with <c>DisableAdapters()</c>."),
            Api("global::System.Collections.Generic.IEnumerable<global::TorchSharp.Modules.Parameter>", "TrainableParameters",
                "The parameters that train: adapters and <c>[Trainable]</c> modules."),
            ApiProperty("long", "TrainableParameterCount", "The number of trainable scalars."),
            Api("void", "LoadBaseWeights",
                "Loads the base model's weights from a Hugging Face checkpoint (a <c>.safetensors</c> file, a sharded index, or a folder holding either), checking every key first.",
                new ApiParameter("string", "fileOrDirectory", "The checkpoint: <c>model.safetensors</c>, <c>model.safetensors.index.json</c>, or their folder."),
                new ApiParameter("global::Peft.Runtime.IO.BaseWeightOptions?", "options", "Prefix, renames and aliases for the checkpoint's keys; null for the defaults.", defaultValue: "null")),
            Api("void", "SaveMergedModel",
                "Writes the adapted model (active adapters folded in) as a plain checkpoint under the loaded checkpoint's names, with its <c>config.json</c>.",
                Directory("The folder that receives <c>model.safetensors</c>.")),
            Api("void", "InitializeEva",
                "EVA's data-driven init of the adapters declared with <c>LoRAInit.Eva</c>: forward passes only, an incremental PCA of each layer's inputs, A from the top components, B = 0, ranks redistributed by explained variance.",
                new ApiParameter("global::System.Collections.Generic.IEnumerable<global::TorchSharp.torch.Tensor>", "batches", "Model inputs; cycled until every layer has converged."),
                new ApiParameter("global::Peft.Runtime.EvaOptions?", "options", "EVA's settings; null for PEFT's defaults.", defaultValue: "null")),
            Api("void", "UpdateAndAllocate",
                "The per-step rank allocation of adaptive-rank adapters (AdaLoRA, IncreLoRA): call it after <c>optimizer.step()</c>, before the gradients are zeroed (<c>AdapterTrainer</c> does).",
                new ApiParameter("int", "step", "The 0-based training step.")));

        /// <summary>The model-level API: what <c>IPeftModel</c> declares, in the order it is written.</summary>
        public static readonly ImmutableArray<GeneratedMember> ModelApi = All.Where(static m => m.IsModelApi).ToImmutableArray();
    }
}
