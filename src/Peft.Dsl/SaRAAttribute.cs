using System;

namespace Peft
{
    /// <summary>
    /// Sparse low-rank adaptation (Hu et al., 2024, "SaRA: High-Efficient Diffusion Model Fine-tuning with Progressive
    /// Sparse Low-Rank Adaptation"): only the smallest-magnitude weights of W train, as a sparse delta
    /// y = x(W + ΔW)ᵀ + b, ΔW nonzero at K fixed positions. By default the K = rank·(in + out) entries of smallest |W|
    /// (as many trainable numbers as a LoRA of that rank); with <see cref="Threshold"/> every entry with |W| &lt; τ, the
    /// paper's own selection.
    /// </summary>
    /// <remarks>
    /// Gradients and optimizer state exist for the K selected entries only (a [K] parameter with fixed indices). With
    /// <see cref="ReselectAfter"/> the selection is narrowed once after that many training steps (the paper's progressive
    /// re-selection: entries whose weight grew past the selection's cut are frozen), and with
    /// <see cref="NuclearNormWeight"/> the trainer adds the paper's low-rank regulariser λ·‖W ⊙ M‖_*. Saved in PEFT's
    /// SHiRA format (<c>shira_weight</c>, <c>shira_indices</c>, <c>peft_type: "SHIRA"</c>), which PEFT loads; a
    /// threshold-selected adapter, whose count is not rank·(in + out), is saved with the same keys under
    /// <c>peft_type: "SARA"</c>. Put it on a field or property typed <c>Module&lt;Tensor, Tensor&gt;</c> that holds a
    /// <c>Linear</c>, or on the class with <see cref="Targets"/>.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class SaRAAttribute : Attribute
    {
        /// <summary>Declares a SaRA adapter training rank·(in + out) weights of the layer.</summary>
        /// <param name="rank">
        /// PEFT's SHiRA <c>r</c>: the adapter trains rank·(in + out) entries, at least 1 and at most in·out/(in + out)
        /// so that they fit in the layer. With <see cref="Threshold"/> it is written to the file but selects nothing.
        /// </param>
        public SaRAAttribute(int rank) => Rank = rank;

        /// <summary>The rank r: the adapter trains r·(in + out) weights (PEFT's SHiRA <c>r</c>).</summary>
        public int Rank { get; }

        /// <summary>
        /// The paper's absolute threshold τ: with τ &gt; 0 every weight with |W| &lt; τ trains, however many that is
        /// (saved as <c>peft_type: "SARA"</c>). Default 0: the rank·(in + out) smallest weights.
        /// </summary>
        public double Threshold { get; set; }

        /// <summary>
        /// The step after which the selection is narrowed once (the paper's <c>progressive_iter</c>, 2500 in its
        /// example): entries whose |W + ΔW| grew past the selection's cut (τ, or the largest selected |W|) keep their
        /// value and stop training. Counted in training forward passes of the adapter. Default 0: never.
        /// </summary>
        public int ReselectAfter { get; set; }

        /// <summary>
        /// λ of the paper's low-rank regulariser λ·‖W ⊙ M‖_* (nuclear norm of the trainable part of W; 5e-4 in its
        /// example), which <c>AdapterTrainer</c> adds to the loss, one SaRA layer per step in turn. Default 0: none.
        /// </summary>
        public double NuclearNormWeight { get; set; }

        /// <summary>The adapter's name (PEFT's adapter name). Default <c>"default"</c>.</summary>
        public string Name { get; set; } = "default";

        /// <summary>
        /// Only on a class: the fields (use <c>nameof</c>) the adapter applies to, PEFT's <c>target_modules</c>
        /// checked by the compiler.
        /// </summary>
        public string[]? Targets { get; set; }
    }
}
