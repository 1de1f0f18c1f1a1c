using System;

namespace Peft
{
    /// <summary>
    /// Low-rank Kronecker product (Edalati et al., 2022, "KronA: Parameter Efficient Tuning with Kronecker Adapter";
    /// as packaged by LyCORIS). The out- and in-sizes are each split into two factors, out = a·b and in = c·d (PEFT's
    /// <c>factorization</c>, near the square root unless <see cref="DecomposeFactor"/> says otherwise), and
    /// ΔW = kron(W1, W2) · Alpha / rank with W1 of shape [a, c] and W2 of shape [b, d]; y = xWᵀ + b + x·ΔWᵀ.
    /// </summary>
    /// <remarks>
    /// W2 is itself low-rank, W2a [b, rank] · W2b [rank, d], when rank &lt; max(b, d) / 2, and a full matrix otherwise;
    /// W1 is full unless <see cref="DecomposeBoth"/> applies the same rule to it. W1 (or W1a) starts at zero and the
    /// rest Kaiming-uniform (a = √5), as in Hugging Face PEFT, so the layer starts equal to the base layer. Put it on a
    /// field or property typed <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>Linear</c>, or on the class with
    /// <see cref="Targets"/>. Saved as PEFT's <c>peft_type: "LOKR"</c>.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class LoKrAttribute : Attribute
    {
        /// <summary>Declares a LoKr adapter of the given rank.</summary>
        /// <param name="rank">The rank r (PEFT's <c>r</c>): at least 1. It decides whether W2 is low-rank and scales the update by Alpha / rank.</param>
        public LoKrAttribute(int rank) => Rank = rank;

        /// <summary>The rank r (PEFT's <c>r</c>).</summary>
        public int Rank { get; }

        /// <summary>PEFT's <c>alpha</c>: the update is scaled by Alpha / rank. Default 8, as in PEFT.</summary>
        public double Alpha { get; set; } = 8;

        /// <summary>
        /// PEFT's <c>decompose_factor</c>: -1 (default) splits each size into the two factors nearest its square root;
        /// a positive f that divides the size gives (f, size / f), otherwise the closest split whose smaller factor is at most f.
        /// </summary>
        public int DecomposeFactor { get; set; } = -1;

        /// <summary>PEFT's <c>decompose_both</c>: W1 too becomes low-rank (W1a·W1b) when rank &lt; max(a, c) / 2. Default false.</summary>
        public bool DecomposeBoth { get; set; }

        /// <summary>
        /// PEFT's <c>rank_dropout</c>, in [0, 1): in training, each output row of ΔW is dropped with this probability
        /// (not rescaled unless <see cref="RankDropoutScale"/>, PEFT's default <c>rank_dropout_scale: false</c>). Default 0.
        /// </summary>
        public double RankDropout { get; set; }

        /// <summary>PEFT's <c>rank_dropout_scale</c>: divide the rows that <see cref="RankDropout"/> keeps by the fraction kept. Default false.</summary>
        public bool RankDropoutScale { get; set; }

        /// <summary>PEFT's <c>module_dropout</c>, in [0, 1): in training, the whole update is skipped for a batch with this probability. Default 0.</summary>
        public double ModuleDropout { get; set; }

        /// <summary>The adapter's name (PEFT's adapter name). Default <c>"default"</c>.</summary>
        public string Name { get; set; } = "default";

        /// <summary>
        /// Only on a class: the fields (use <c>nameof</c>) the adapter applies to, PEFT's <c>target_modules</c>
        /// checked by the compiler.
        /// </summary>
        public string[]? Targets { get; set; }
    }
}
