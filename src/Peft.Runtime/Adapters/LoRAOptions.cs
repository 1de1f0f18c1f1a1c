namespace Peft.Runtime.Adapters
{
    /// <summary>The options of one LoRA adapter, as <c>[LoRA]</c> declares them (the same defaults).</summary>
    public sealed record LoRAOptions
    {
        /// <summary>The rank r (PEFT's <c>r</c>).</summary>
        public int Rank { get; init; } = 8;

        /// <summary>PEFT's <c>lora_alpha</c>; the update is scaled by Alpha / r (Alpha / √r with <see cref="UseRsLora"/>).</summary>
        public double Alpha { get; init; } = 8;

        /// <summary>Dropout probability on the adapter input (PEFT's <c>lora_dropout</c>).</summary>
        public double Dropout { get; init; }

        /// <summary>Rank-stabilised scaling Alpha / √r.</summary>
        public bool UseRsLora { get; init; }

        /// <summary>How A and B start.</summary>
        public LoRAInit Init { get; init; } = LoRAInit.Default;

        /// <summary>The factor applied to B·A.</summary>
        public double Scaling => UseRsLora ? Alpha / System.Math.Sqrt(Rank) : Alpha / Rank;
    }
}
