namespace Peft
{
    /// <summary>Where <see cref="MergeWithAttribute"/> combines the adapters' deltas.</summary>
    public enum MergeSpace
    {
        /// <summary>On the full [out, in] delta weights ΔWᵢ (the default; a non-exact method's result is re-factorised by truncated SVD).</summary>
        Full = 0,

        /// <summary>
        /// In the Core Space of the sources' stacked LoRA factors (Panariello et al., 2025): per layer, U_ref = the left
        /// singular vectors of [B₁ … B_T] and V_ref = the right singular vectors of [A₁; …; A_T], R = Σ rᵢ; each source
        /// becomes the small core Mᵢ = U_refᵀ·ΔWᵢ·V_refᵀ (exact: U_ref·Mᵢ·V_ref = ΔWᵢ), the method combines the Mᵢ, and the
        /// result is the LoRA A = V_ref, B = U_ref·M — exact and of rank ≤ R by construction, with no SVD of an [out, in]
        /// matrix. Needs plain LoRA sources; every method but <see cref="MergeMethod.Widen"/> and
        /// <see cref="MergeMethod.LoraLego"/> runs there.
        /// </summary>
        Core = 1,
    }
}
