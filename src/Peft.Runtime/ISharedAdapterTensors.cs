using System.Collections.Generic;
using static TorchSharp.torch;

namespace Peft.Runtime
{
    /// <summary>
    /// An adapter layer that uses tensors held once for the whole model rather than per layer (VeRA's frozen
    /// projections). PEFT keeps such tensors on its tuner model, so the file key is <c>base_model.&lt;name&gt;</c>
    /// with the adapter name removed (<c>base_model.vera_A</c>), written once however many layers use them.
    /// </summary>
    public interface ISharedAdapterTensors
    {
        /// <summary>
        /// The shared tensors of <paramref name="adapter"/>, named as PEFT names them under its tuner model with the
        /// adapter name included (<c>vera_A.default</c>). Every layer of the adapter returns the same tensors; loading
        /// copies into them in place.
        /// </summary>
        IEnumerable<(string Name, Tensor Tensor)> SharedTensors(string adapter);

        /// <summary>Whether a file whose config gives <paramref name="fileSettings"/> holds the shared tensors (VeRA: <c>save_projection</c>).</summary>
        bool FileHoldsSharedTensors(AdapterSettings fileSettings);

        /// <summary>
        /// Whether PEFT's file also holds a copy of each shared tensor under every layer's path
        /// (<c>base_model.model.&lt;path&gt;.randlora_A</c>, RandLoRA, whose layers hold the shared dictionary as a child
        /// module). Saving writes both; loading reads the model-level key, or else any layer's copy.
        /// </summary>
        bool SharedTensorsAlsoPerLayer => false;
    }
}
