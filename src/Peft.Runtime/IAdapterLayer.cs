using System.Collections.Generic;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime
{
    /// <summary>
    /// A layer that wraps a frozen base layer and holds one or more named adapters of one method.
    /// The model-level API (<see cref="IPeftModel"/>) finds these by walking the module tree.
    /// </summary>
    public interface IAdapterLayer
    {
        /// <summary>The method's Hugging Face PEFT type as written in <c>adapter_config.json</c> (<c>"LORA"</c>, <c>"MISS"</c>, ...).</summary>
        string PeftType { get; }

        /// <summary>The wrapped, frozen layer (PEFT's <c>base_layer</c>).</summary>
        nn.Module<Tensor, Tensor> BaseLayer { get; }

        /// <summary>The names of the adapters this layer holds, in the order they were added.</summary>
        IReadOnlyList<string> AdapterNames { get; }

        /// <summary>The adapters applied in <c>forward</c>, in order.</summary>
        IReadOnlyList<string> ActiveAdapters { get; }

        /// <summary>Selects the adapters applied in <c>forward</c>; every name must exist on this layer.</summary>
        void SetActiveAdapters(IReadOnlyList<string> names);

        /// <summary>
        /// For a mixed batch: the adapter for each row of the input (its first dimension), <c>"__base__"</c> or a name
        /// this layer lacks for the base output; null (the default) applies the active adapters to every row. While
        /// set, <c>forward</c> runs each adapter's rows as one sub-batch with that adapter alone, so every row's output
        /// equals running the row alone with its adapter active. A <see cref="Adapters.RowRouting"/> (what
        /// <c>MixedBatch</c> sets on every layer) is kept as given and shared, so the rows are grouped once per batch;
        /// any other list is grouped when it is set.
        /// </summary>
        IReadOnlyList<string>? RowAdapters { get; set; }

        /// <summary>When true, <c>forward</c> returns the base layer's output (adapters and merges aside).</summary>
        bool AdaptersDisabled { get; set; }

        /// <summary>The adapters currently folded into the base weight, in merge order.</summary>
        IReadOnlyList<string> MergedAdapters { get; }

        /// <summary>The change the adapter makes to the base weight, shaped like it ([out, in] for a linear layer).</summary>
        Tensor DeltaWeight(string adapter);

        /// <summary>
        /// Folds the given adapters into the base weight. The result is computed on a copy and refused, naming the
        /// adapter and the layer, if it holds NaN or ±Inf; the base weight is then left untouched.
        /// </summary>
        void Merge(IReadOnlyList<string> adapters);

        /// <summary>Undoes every merge, most recent first, restoring the base weight within float tolerance.</summary>
        void Unmerge();

        /// <summary>The adapter's own parameters, with their in-memory names relative to this layer (<c>lora_A.default.weight</c>).</summary>
        IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> AdapterParameters(string adapter);

        /// <summary>The adapter's hyper-parameters, as written into <c>adapter_config.json</c>.</summary>
        AdapterSettings Settings(string adapter);

        /// <summary>
        /// Replaces the adapter's hyper-parameters by those read from a file (scaling and dropout; shapes never
        /// change): the tensors loaded next were trained with them.
        /// </summary>
        void ApplySettings(string adapter, AdapterSettings settings);

        /// <summary>Removes an adapter and its parameters. A merged adapter must be unmerged first.</summary>
        void DeleteAdapter(string adapter);
    }
}
