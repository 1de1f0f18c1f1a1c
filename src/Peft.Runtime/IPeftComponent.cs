using System.Collections.Generic;

namespace Peft.Runtime
{
    /// <summary>
    /// Implemented by generated code on every class with PeftDsl attributes, so the root of a model can find
    /// what the compiler wired inside submodules it cannot see at compile time.
    /// </summary>
    public interface IPeftComponent
    {
        /// <summary>The component names of this class's <c>[Trainable]</c> members.</summary>
        IReadOnlyList<string> TrainableMembers { get; }

        /// <summary>Puts each adapter member's base layer back in place of its adapter layer (after a merge).</summary>
        void UnloadAdapterLayers();
    }
}
