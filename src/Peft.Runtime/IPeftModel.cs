using System;
using System.Collections.Generic;
using TorchSharp;

namespace Peft.Runtime
{
    /// <summary>The model-level API that the generator gives every <c>[PeftModel]</c> class.</summary>
    public interface IPeftModel
    {
        /// <summary>Every adapter layer of the model by its module path (<c>blocks.0.q</c>), in tree order.</summary>
        IReadOnlyList<(string Path, IAdapterLayer Layer)> AdapterLayers { get; }

        /// <summary>Folds the active adapters into the base weights (refusing NaN / Inf, naming the layer).</summary>
        void MergeAdapters();

        /// <summary>Undoes <see cref="MergeAdapters"/>.</summary>
        void UnmergeAdapters();

        /// <summary>Merges the active adapters and puts the plain base layers back in the model.</summary>
        void MergeAndUnload();

        /// <summary>
        /// Writes every adapter in Hugging Face PEFT's format: <c>adapter_config.json</c> and
        /// <c>adapter_model.safetensors</c>, the adapter <c>default</c> in <paramref name="directory"/> itself and
        /// any other in a subfolder of its name.
        /// </summary>
        void SaveAdapters(string directory);

        /// <summary>
        /// Reads adapters written by <see cref="SaveAdapters"/> or by Hugging Face PEFT. Every key and shape is
        /// checked before anything is assigned: on a mismatch the model is left unchanged.
        /// </summary>
        void LoadAdapters(string directory);

        /// <summary>
        /// Writes one adapter in Hugging Face PEFT's format straight into <paramref name="directory"/> (whatever its name),
        /// with the <c>[Trainable]</c> modules.
        /// </summary>
        void SaveAdapter(string directory, string adapter);

        /// <summary>
        /// Reads one adapter's files from <paramref name="directory"/> (as <see cref="SaveAdapter"/> or PEFT wrote them)
        /// into the model's existing adapter <paramref name="adapter"/>; checked first, so a mismatch changes nothing.
        /// </summary>
        void LoadAdapter(string directory, string adapter);

        /// <summary>Removes an adapter and its parameters from every layer (refused while it is merged).</summary>
        void DeleteAdapter(string adapter);

        /// <summary>
        /// A mixed batch: until the returned scope is disposed, row i of every batch (the first dimension of each adapter
        /// layer's input) goes through adapter <paramref name="adapterPerRow"/>[i] alone, <c>"__base__"</c> for the base
        /// model; each adapter's rows run as one sub-batch, and every row's output equals running it alone with its adapter
        /// active. Refused while adapters are merged.
        /// </summary>
        IDisposable MixedBatch(params string[] adapterPerRow);

        /// <summary>Selects the adapters applied in <c>forward</c> on every layer that has them.</summary>
        void SetActiveAdapters(params string[] names);

        /// <summary>Applies the active adapters again after <see cref="DisableAdapters"/>.</summary>
        void EnableAdapters();

        /// <summary>Makes <c>forward</c> return the base model's output.</summary>
        void DisableAdapters();

        /// <summary>
        /// Freezes every parameter but the adapters' and the <c>[Trainable]</c> modules' (what <c>RegisterComponents()</c>
        /// did), for example after <see cref="UnfreezeBaseModel"/>.
        /// </summary>
        void FreezeBaseModel();

        /// <summary>Makes every parameter trainable: to pre-train or fully fine-tune the base model, usually with <see cref="DisableAdapters"/>.</summary>
        void UnfreezeBaseModel();

        /// <summary>The parameters that train: adapters and <c>[Trainable]</c> modules.</summary>
        IEnumerable<TorchSharp.Modules.Parameter> TrainableParameters();

        /// <summary>The number of trainable scalars.</summary>
        long TrainableParameterCount { get; }

        /// <summary>
        /// Loads the base model's weights from a Hugging Face checkpoint (<c>model.safetensors</c>, or shards listed by
        /// <c>model.safetensors.index.json</c>, or a folder holding either): <c>q.weight</c> fills <c>q.base_layer.weight</c>,
        /// F32 / F16 / BF16 are converted to each parameter's dtype, tied parameters take any of their names. Every key,
        /// shape and dtype is checked first; one exception lists every missing, unexpected and misshapen key and the
        /// model is left unchanged. Tensors are streamed from the files one at a time.
        /// </summary>
        void LoadBaseWeights(string fileOrDirectory, IO.BaseWeightOptions? options = null);

        /// <summary>
        /// Writes the adapted model as a plain checkpoint: each adapted layer's weight with its active adapters folded in,
        /// under the names and dtypes of the checkpoint <see cref="LoadBaseWeights"/> read, as <c>model.safetensors</c>
        /// (+ the source folder's <c>config.json</c>), atomically. The model itself is not changed.
        /// </summary>
        void SaveMergedModel(string directory);

        /// <summary>
        /// EVA's data-driven init of the adapters declared with <c>LoRAInit.Eva</c>: forward passes only (no gradients, adapters
        /// disabled, eval mode), an incremental PCA of each layer's inputs (layers with identical inputs share one) until the
        /// components converge, then the ranks redistributed by explained variance; A ← the top components, B ← 0.
        /// </summary>
        /// <param name="batches">Model inputs; cycled until every layer has converged.</param>
        /// <param name="options">EVA's settings; null for PEFT's defaults.</param>
        void InitializeEva(IEnumerable<TorchSharp.torch.Tensor> batches, EvaOptions? options = null);

        /// <summary>
        /// The per-step rank allocation of adaptive-rank adapters (AdaLoRA, IncreLoRA) for the 0-based training step
        /// <paramref name="step"/>: call it after <c>optimizer.step()</c> and before the gradients are zeroed
        /// (<c>AdapterTrainer</c> does). Only the active adapters are updated; without such adapters it does nothing.
        /// </summary>
        void UpdateAndAllocate(int step);
    }
}
