using System.Collections.Generic;
using static TorchSharp.torch;

namespace Peft.Runtime
{
    /// <summary>
    /// An adapter layer whose file tensors are not its parameters as they are: AdaLoRA saves only the ranks each layer
    /// kept (PEFT slices its tensors by <c>rank_pattern</c>), IncreLoRA saves its grown ranks as a plain LoRA. The save
    /// writes <see cref="ForFile"/>; the load reads the tensors <see cref="FileShapes"/> lists (each checked for shape
    /// first, so a mismatch changes nothing) and copies what <see cref="FromFile"/> builds from them.
    /// </summary>
    public interface IFileTensorLayout
    {
        /// <summary>
        /// What a save writes for <paramref name="adapter"/>: tensors named as in memory (<c>lora_A.default</c>,
        /// <c>lora_A.default.weight</c>; the adapter name is removed for the file key) and the settings its config holds.
        /// </summary>
        (IReadOnlyList<(string Name, Tensor Tensor)> Tensors, AdapterSettings Settings) ForFile(string adapter);

        /// <summary>The tensors a file whose config gives <paramref name="fileSettings"/> holds for this layer, named as <see cref="ForFile"/> names them, with their shapes.</summary>
        IReadOnlyList<(string Name, long[] Shape)> FileShapes(string adapter, AdapterSettings fileSettings);

        /// <summary>
        /// The parameter values that the file tensors (by the names <see cref="FileShapes"/> gave, shapes already checked)
        /// give: (parameter, value) pairs copied after <see cref="IAdapterLayer.ApplySettings"/>.
        /// </summary>
        IReadOnlyList<(Tensor Target, Tensor Source)> FromFile(string adapter, AdapterSettings fileSettings, IReadOnlyDictionary<string, Tensor> fileTensors);
    }

    /// <summary>
    /// An adapter layer whose ranks are allocated during training (AdaLoRA, IncreLoRA): after each optimizer step
    /// the model calls its method's <see cref="IRankAllocator"/> once per adapter with every layer of that adapter.
    /// </summary>
    public interface IRankAllocatingLayer : IAdapterLayer
    {
        /// <summary>The method's allocator (one instance per method; layers of one method return the same).</summary>
        IRankAllocator Allocator { get; }
    }

    /// <summary>A method's budget allocation over all layers of one adapter.</summary>
    public interface IRankAllocator
    {
        /// <summary>
        /// The per-step update after <c>optimizer.step()</c> (before the gradients are zeroed): importance scores from the
        /// gradients, then masking or growing ranks as the method's schedule says for the 0-based <paramref name="step"/>.
        /// </summary>
        void UpdateAndAllocate(IReadOnlyList<(string Path, IAdapterLayer Layer)> sites, string adapter, int step);

        /// <summary>The method's regulariser for the loss (already weighted), over the adapter's layers; null when it has none.</summary>
        Tensor? Regularization(IReadOnlyList<(string Path, IAdapterLayer Layer)> sites, string adapter);
    }
}
