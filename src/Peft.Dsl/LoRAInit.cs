namespace Peft
{
    /// <summary>How the low-rank factors of a LoRA (or DoRA) adapter start.</summary>
    public enum LoRAInit
    {
        /// <summary>
        /// PEFT's default (<c>init_lora_weights = true</c>): A is Kaiming-uniform with a = √5, B is zero,
        /// so the adapted layer starts exactly equal to the base layer.
        /// </summary>
        Default = 0,

        /// <summary>
        /// PEFT's <c>"gaussian"</c>: A ~ N(0, 1/r), B is zero. The layer still starts equal to the base layer.
        /// </summary>
        Gaussian = 1,

        /// <summary>
        /// PiSSA (Meng et al., 2024, "PiSSA: Principal Singular Values and Singular Vectors Adaptation of Large
        /// Language Models"), PEFT's <c>"pissa"</c>: with the SVD W = U·diag(S)·Vᵀ (in float32) and S_r = S[:r] / s,
        /// A = diag(√S_r)·Vᵀ[:r] and B = U[:, :r]·diag(√S_r), so the adapter starts as the rank-r principal part of W,
        /// and the base weight becomes the residual W − s·B·A. The layer starts equal to the original layer; the
        /// <b>base weight is changed</b>, so a file saved with it is relative to that residual (PEFT's default too) and
        /// loads only onto an adapter declared with PiSSA on the same base weights.
        /// </summary>
        PiSSA = 2,

        /// <summary>
        /// OLoRA (Büyükakyüz, 2024, "OLoRA: Orthonormal Low-Rank Adaptation of Large Language Models"), PEFT's
        /// <c>"olora"</c>: with the QR decomposition W = Q·R (in float32), A = R[:r] and B = Q[:, :r], and the base
        /// weight becomes the residual W − s·B·A. The layer starts equal to the original layer; the <b>base weight is
        /// changed</b>, so a file saved with it is relative to that residual and loads only onto an adapter declared
        /// with OLoRA, the same rank and scaling, on the same base weights.
        /// </summary>
        OLoRA = 3,

        /// <summary>
        /// EVA (Paischer et al., 2024, "One Initialization to Rule them All: Fine-tuning via Explained Variance
        /// Adaptation"), PEFT's <c>"eva"</c>: A is taken from data, B is zero. Until the model's
        /// <c>InitializeEva(batches, options)</c> runs, the adapter waits (A as in <see cref="Default"/>, and training
        /// refuses to start); that call runs forward passes only, takes each layer's top right-singular vectors of its
        /// mean-centred inputs (an incremental PCA) as the rows of A, and redistributes the ranks over the layers by
        /// explained variance (the sum of the declared ranks stays, a layer gets 0 … round(rank·ρ); a layer given rank 0
        /// loses the adapter). The base weight is left alone, so the file is a plain LoRA (<c>rank_pattern</c>,
        /// <c>alpha_pattern</c>).
        /// </summary>
        Eva = 4,
    }
}
