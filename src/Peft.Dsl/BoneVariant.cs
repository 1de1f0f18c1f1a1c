namespace Peft
{
    /// <summary>Which form of Bone (PEFT's MiSS) an adapter takes.</summary>
    public enum BoneVariant
    {
        /// <summary>
        /// PEFT's default MiSS (<c>init_weights = true</c>): one zero-initialised block D of shape [block, out] shared
        /// by every block of input columns, y = xWᵀ + b + (Σₖ x[…, k·block:(k+1)·block])·D, i.e.
        /// ΔW[o, i] = D[i mod block, o]. Needs the block to divide the layer's in-features.
        /// </summary>
        Bone = 0,

        /// <summary>
        /// Block affine transformation (PEFT's <c>init_weights = "bat"</c>): D of shape [out / block, block, block],
        /// zero-initialised; every block × block tile W_IJ of the weight (I the output block, J the input block)
        /// becomes W_IJ + W_IJ·D_I + D_I, so the tiles of one output block share D_I. Needs the block to divide both
        /// in-features and out-features.
        /// </summary>
        Bat = 1,
    }
}
