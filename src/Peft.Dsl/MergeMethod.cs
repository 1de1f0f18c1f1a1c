namespace Peft
{
    /// <summary>How <see cref="MergeWithAttribute"/> combines adapters. Every method works on the adapters' delta weights ΔWᵢ.</summary>
    public enum MergeMethod
    {
        /// <summary>
        /// Task arithmetic: exactly Σ wᵢ ΔWᵢ, kept low-rank by concatenating the scaled factors (ranks add up). PEFT's
        /// <c>linear</c> instead sums the A's and the B's separately, which adds cross terms (PEFT issue 3004); PeftDsl
        /// does not copy that defect.
        /// </summary>
        Linear = 0,

        /// <summary>The same exact Σ wᵢ ΔWᵢ by concatenation, under PEFT's name for it (<c>cat</c>).</summary>
        Cat = 1,

        /// <summary>Σ wᵢ ΔWᵢ re-factorised to <see cref="MergeWithAttribute.Rank"/> by truncated SVD.</summary>
        Svd = 2,

        /// <summary>
        /// TIES-Merging (Yadav et al., 2023): trim each ΔWᵢ to its top-<see cref="MergeWithAttribute.Density"/> magnitudes,
        /// elect each entry's sign by summed mass, average the weighted entries that agree; re-factorised by SVD.
        /// </summary>
        Ties = 3,

        /// <summary>DARE (Yu et al., 2024): drop entries with probability 1 − density, rescale by 1 / density, then sum.</summary>
        DareLinear = 4,

        /// <summary>DARE, then TIES sign election and agreeing mean.</summary>
        DareTies = 5,

        /// <summary>Keep the top-density magnitudes of each ΔWᵢ, then the weighted sum.</summary>
        MagnitudePrune = 6,

        /// <summary>
        /// Model Stock (Jang et al., 2024): with N deltas and cos θ their mean pairwise cosine (clamped to [0, 1]),
        /// t = N·cos θ / (1 + (N − 1)·cos θ) and the result is t·mean(ΔWᵢ), the base (ΔW = 0) interpolated toward the
        /// average of the fine-tuned weights; computed per layer, weights unused; re-factorised by SVD.
        /// </summary>
        ModelStock = 7,
    }
}
