using System;

namespace Peft
{
    /// <summary>
    /// LoLDU (Shi et al., 2024, "LoLDU: Low-Rank Adaptation via Lower-Diag-Upper Decomposition for Parameter-Efficient
    /// Fine-Tuning"): with W = P·L·diag(d)·U its LU decomposition (partial pivoting, U with a unit diagonal), the first
    /// rank pivots become trainable scalars z (starting at d[:rank]) and the layer computes
    /// y = xWᵀ + b + drop(x)·U_rᵀ·diag(z − z₀)·(P·L_r)ᵀ: W with its rank-r LU part re-weighted.
    /// </summary>
    /// <remarks>
    /// Trainable: rank numbers per layer. P·L_r ([out, rank]) and U_r ([rank, in]) are frozen; the permutation is
    /// applied once as a row gather of L_r, so forward never multiplies by an out×out matrix. Saved as exactly a LoRA on
    /// the original W (<c>lora_A</c> = U_r, <c>lora_B</c> = P·L_r·diag(z − z₀), <c>lora_alpha</c> = rank): Hugging Face
    /// PEFT's <c>peft_type: "LORA"</c>.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class LoLDUAttribute : Attribute
    {
        /// <summary>Declares a LoLDU adapter of the given rank.</summary>
        /// <param name="rank">How many pivots train (the saved LoRA's <c>r</c>): at least 1 and at most min(in, out).</param>
        public LoLDUAttribute(int rank) => Rank = rank;

        /// <summary>How many pivots train (the saved LoRA's <c>r</c>).</summary>
        public int Rank { get; }

        /// <summary>Dropout probability on the adapter's input only (the saved LoRA's <c>lora_dropout</c>), in [0, 1). Default 0.</summary>
        public double Dropout { get; set; }

        /// <summary>The adapter's name. Default <c>"default"</c>.</summary>
        public string Name { get; set; } = "default";

        /// <summary>Only on a class: the fields (use <c>nameof</c>) the adapter applies to.</summary>
        public string[]? Targets { get; set; }
    }
}
