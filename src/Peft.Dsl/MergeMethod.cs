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

        /// <summary>
        /// TSV-Merge (Gargiulo et al., 2025): each wᵢΔWᵢ keeps its top ⌊n/T⌋ singular triplets (n = min(out, in), or R in
        /// <see cref="MergeSpace.Core"/>); the stacked left and right singular vectors are each replaced by their polar factor
        /// (nearest orthonormal matrix), the singular values kept: ΔW = U⊥·diag(S)·V⊥.
        /// </summary>
        Tsv = 8,

        /// <summary>
        /// Iso-C (Marczak et al., 2025): the sum Σ wᵢΔWᵢ = U·S·Vᵀ with every singular value replaced by their mean,
        /// σ̄·U·Vᵀ. In full space this makes a LoRA delta full-rank; in <see cref="MergeSpace.Core"/> it stays rank ≤ R.
        /// </summary>
        IsoC = 9,

        /// <summary>
        /// Iso-CTS (Marczak et al., 2025): the top <see cref="MergeWithAttribute.CommonFraction"/> of the sum's singular
        /// directions as a common subspace, each task's own top directions outside it for the rest, the stacks made
        /// orthonormal (polar factor) and every singular value set to the mean.
        /// </summary>
        IsoCts = 10,

        /// <summary>
        /// WIDEN (Yu et al., 2024): per input column j, the magnitude and direction change of each fine-tuned weight against
        /// the base weight, ranked within the model, softmaxed across models (above-average entries calibrated to 1); each
        /// ΔWᵢ is scaled column-wise by ½(magnitude score + direction score). LoRA sources stay exactly low-rank (A·diag(w)).
        /// </summary>
        Widen = 11,

        /// <summary>
        /// LoRA-LEGO (Zhao et al., 2025): the sources' rank-1 units (aᵢ, bᵢ), sign-canonicalised, clustered by k-means
        /// (k-means++ from <see cref="MergeWithAttribute.Seed"/>) into <see cref="MergeWithAttribute.Rank"/> clusters whose
        /// centroids, rescaled to their members' mean norm and the whole scaled to the sources' output variance, are the
        /// new LoRA of rank k.
        /// </summary>
        LoraLego = 12,
    }
}
