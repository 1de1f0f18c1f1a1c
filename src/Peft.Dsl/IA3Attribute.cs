using System;

namespace Peft
{
    /// <summary>
    /// (IA)³, Infused Adapter by Inhibiting and Amplifying Inner Activations (Liu et al., 2022, "Few-Shot
    /// Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning"). The layer learns one scaling
    /// vector l, starting at 1: by default it scales the outputs, y = (xWᵀ + b) ⊙ l with l of length out; with
    /// <see cref="FeedForward"/> it scales the inputs, y = (x ⊙ l)Wᵀ + b with l of length in.
    /// </summary>
    /// <remarks>
    /// Merging multiplies the rows of W and the bias by l (or, for <see cref="FeedForward"/>, the columns of W);
    /// unmerging divides them again and is refused when l holds a zero. Put it on a field or property typed
    /// <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>Linear</c>, or on the class with <see cref="Targets"/>.
    /// Saved as Hugging Face PEFT's <c>peft_type: "IA3"</c>, feed-forward layers listed in <c>feedforward_modules</c>.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class IA3Attribute : Attribute
    {
        /// <summary>
        /// Scale the layer's inputs instead of its outputs, as (IA)³ does for the second layer of a feed-forward block
        /// (PEFT's <c>feedforward_modules</c>). Default false.
        /// </summary>
        public bool FeedForward { get; set; }

        /// <summary>The adapter's name (PEFT's adapter name). Default <c>"default"</c>.</summary>
        public string Name { get; set; } = "default";

        /// <summary>
        /// Only on a class: the fields (use <c>nameof</c>) the adapter applies to, PEFT's <c>target_modules</c>
        /// checked by the compiler.
        /// </summary>
        public string[]? Targets { get; set; }
    }
}
