using System;

namespace Peft
{
    /// <summary>
    /// Low-Rank Adaptation (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models").
    /// The base layer is frozen and a trainable update s·B·A is added: y = xWᵀ + b + s·B·A·dropout(x),
    /// with A of shape [rank, in], B of shape [out, rank] and s = <see cref="Alpha"/> / rank
    /// (or <see cref="Alpha"/> / √rank with <see cref="UseRsLora"/>).
    /// </summary>
    /// <remarks>
    /// Put it on a field or property typed <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>Linear</c>, or on
    /// the class with <see cref="Targets"/> naming such fields. Several <c>[LoRA]</c> attributes with distinct
    /// <see cref="Name"/>s on one field give several named adapters. Saved as Hugging Face PEFT's
    /// <c>peft_type: "LORA"</c>.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class LoRAAttribute : Attribute
    {
        /// <summary>Declares a LoRA adapter of the given rank.</summary>
        /// <param name="rank">The rank r of the update (PEFT's <c>r</c>): at least 1 and at most min(in, out).</param>
        public LoRAAttribute(int rank) => Rank = rank;

        /// <summary>The rank r of the update (PEFT's <c>r</c>).</summary>
        public int Rank { get; }

        /// <summary>PEFT's <c>lora_alpha</c>: the update is scaled by Alpha / rank. Default 8, as in PEFT.</summary>
        public double Alpha { get; set; } = 8;

        /// <summary>Dropout probability on the adapter's input only (PEFT's <c>lora_dropout</c>), in [0, 1). Default 0.</summary>
        public double Dropout { get; set; }

        /// <summary>Rank-stabilised LoRA (Kalajdzievski, 2023): scale by Alpha / √rank instead of Alpha / rank.</summary>
        public bool UseRsLora { get; set; }

        /// <summary>How A and B start; see <see cref="LoRAInit"/>.</summary>
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
