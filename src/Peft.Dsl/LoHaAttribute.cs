using System;

namespace Peft
{
    /// <summary>
    /// Low-rank Hadamard product (Hyeon-Woo, Ye-Bin and Oh, 2022, "FedPara: Low-Rank Hadamard Product for
    /// Communication-Efficient Federated Learning"; as packaged by LyCORIS). The update is the element-wise product
    /// of two rank-r products: ΔW = (W1a·W1b) ⊙ (W2a·W2b) · Alpha / rank, with W1a, W2a of shape [out, rank] and
    /// W1b, W2b of shape [rank, in]; y = xWᵀ + b + x·ΔWᵀ. The Hadamard product reaches rank up to rank², for the
    /// parameters of a rank-2r LoRA.
    /// </summary>
    /// <remarks>
    /// W1a, W1b and W2a start Kaiming-uniform (a = √5) and W2b at zero, as in Hugging Face PEFT, so the layer starts
    /// equal to the base layer. Put it on a field or property typed <c>Module&lt;Tensor, Tensor&gt;</c> that holds a
    /// <c>Linear</c>, or on the class with <see cref="Targets"/>. Saved as PEFT's <c>peft_type: "LOHA"</c>.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class LoHaAttribute : Attribute
    {
        /// <summary>Declares a LoHa adapter of the given rank.</summary>
        /// <param name="rank">The rank r of each of the two products (PEFT's <c>r</c>): at least 1 and at most min(in, out).</param>
        public LoHaAttribute(int rank) => Rank = rank;

        /// <summary>The rank r of each of the two products (PEFT's <c>r</c>).</summary>
        public int Rank { get; }

        /// <summary>PEFT's <c>alpha</c>: the update is scaled by Alpha / rank. Default 8, as in PEFT.</summary>
        public double Alpha { get; set; } = 8;

        /// <summary>
        /// PEFT's <c>rank_dropout</c>, in [0, 1): in training, each output row of ΔW is dropped with this probability and
        /// the kept rows are divided by the fraction kept. Default 0.
        /// </summary>
        public double RankDropout { get; set; }

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
