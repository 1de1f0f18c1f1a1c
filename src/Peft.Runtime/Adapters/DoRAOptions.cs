namespace Peft.Runtime.Adapters
{
    /// <summary>The options of one DoRA adapter, as <c>[DoRA]</c> declares them (the same defaults).</summary>
    public sealed record DoRAOptions
    {
        /// <summary>The rank r of the low-rank update (PEFT's <c>r</c>).</summary>
        public int Rank { get; init; } = 8;

        /// <summary>PEFT's <c>lora_alpha</c>; the low-rank update is scaled by Alpha / r (Alpha / √r with <see cref="UseRsLora"/>).</summary>
        public double Alpha { get; init; } = 8;

        /// <summary>Dropout probability on the adapter input (PEFT's <c>lora_dropout</c>).</summary>
        public double Dropout { get; init; }

        /// <summary>Rank-stabilised scaling Alpha / √r.</summary>
        public bool UseRsLora { get; init; }

        /// <summary>How A and B start; the magnitude then starts at the row norms of W + s·B·A.</summary>
        public LoRAInit Init { get; init; } = LoRAInit.Default;

        /// <summary>The factor s applied to B·A.</summary>
        public double Scaling => UseRsLora ? Alpha / System.Math.Sqrt(Rank) : Alpha / Rank;

        /// <summary>The same hyper-parameters as LoRA options (DoRA adds only the magnitude, which has none).</summary>
        public LoRAOptions ToLoRAOptions() => new() { Rank = Rank, Alpha = Alpha, Dropout = Dropout, UseRsLora = UseRsLora, Init = Init };
    }
}
