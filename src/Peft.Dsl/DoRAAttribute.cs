using System;

namespace Peft
{
    /// <summary>
    /// Weight-Decomposed Low-Rank Adaptation (Liu et al., 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation"):
    /// LoRA whose adapted weight W + s·B·A is split into a direction and a learned magnitude m (one per output).
    /// With n = ‖W + s·B·A‖ per output row (treated as a constant in backward) and g = m / n:
    /// y = g ⊙ (xWᵀ + s·B·A·x) + b; the bias is not rescaled. m starts as the row norms of W + s·B·A, so the layer
    /// starts equal to the base layer.
    /// </summary>
    /// <remarks>
    /// Put it on a field or property typed <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>Linear</c>, or on the
    /// class with <see cref="Targets"/> naming such fields. It shares the layer with <c>[LoRA]</c>: a field may carry
    /// <c>[LoRA(Name = "a")]</c> and <c>[DoRA(Name = "b")]</c>. Trainable: A [rank, in], B [out, rank] and m [out].
    /// With <see cref="Dropout"/> in training, y = xWᵀ + b + (g − 1) ⊙ drop(x)Wᵀ + g ⊙ s·B·A·drop(x), as PEFT
    /// computes it. Saved as Hugging Face PEFT's <c>peft_type: "LORA"</c> with <c>use_dora: true</c>.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class DoRAAttribute : Attribute
    {
        /// <summary>Declares a DoRA adapter of the given rank.</summary>
        /// <param name="rank">The rank r of the low-rank update (PEFT's <c>r</c>): at least 1 and at most min(in, out).</param>
        public DoRAAttribute(int rank) => Rank = rank;

        /// <summary>The rank r of the low-rank update (PEFT's <c>r</c>).</summary>
        public int Rank { get; }

        /// <summary>PEFT's <c>lora_alpha</c>: the low-rank update is scaled by Alpha / rank. Default 8, as in PEFT.</summary>
        public double Alpha { get; set; } = 8;

        /// <summary>Dropout probability on the adapter's input (PEFT's <c>lora_dropout</c>), in [0, 1). Default 0.</summary>
        public double Dropout { get; set; }

        /// <summary>Rank-stabilised scaling (Kalajdzievski, 2023): Alpha / √rank instead of Alpha / rank.</summary>
        public bool UseRsLora { get; set; }

        /// <summary>How A and B start; see <see cref="LoRAInit"/>. The magnitude then starts at the row norms of W + s·B·A.</summary>
        public LoRAInit Init { get; set; } = LoRAInit.Default;

        /// <summary>The adapter's name (PEFT's adapter name). Default <c>"default"</c>.</summary>
        public string Name { get; set; } = "default";

        /// <summary>
        /// Only on a class: the fields (use <c>nameof</c>) the adapter applies to, PEFT's <c>target_modules</c>
        /// checked by the compiler.
        /// </summary>
        public string[]? Targets { get; set; }
    }
}
