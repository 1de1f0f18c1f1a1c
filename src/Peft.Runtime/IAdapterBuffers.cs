using System.Collections.Generic;
using static TorchSharp.torch;

namespace Peft.Runtime
{
    /// <summary>
    /// An adapter layer with frozen per-layer tensors that PEFT's file holds beside the adapter's parameters, such as
    /// SHiRA's <c>shira_indices</c>: saved under <c>base_model.model.&lt;path&gt;.&lt;name&gt;</c> (adapter name removed) and
    /// copied into in place on load, but never trained.
    /// </summary>
    public interface IAdapterBuffers
    {
        /// <summary>The adapter's frozen tensors, named as its parameters are (<c>shira_indices.&lt;adapter&gt;</c>).</summary>
        IEnumerable<(string Name, Tensor Tensor)> AdapterBuffers(string adapter);

        /// <summary>
        /// Checks a tensor a file holds for buffer <paramref name="name"/> (its shape already matches) before anything
        /// is assigned: a message saying what is wrong with it, or null when it fits.
        /// </summary>
        string? CheckBuffer(string adapter, string name, Tensor fromFile);
    }

    /// <summary>
    /// An adapter layer that adds a regularisation term to the training loss (SaRA's nuclear norm): <c>AdapterTrainer</c>
    /// adds the term of one such layer per step, in turn.
    /// </summary>
    public interface IAdapterRegularizer
    {
        /// <summary>The term for the layer's active, trainable adapters, or null when it has none this step.</summary>
        Tensor? RegularizationLoss();
    }
}
