namespace Peft.Runtime.Adapters
{
    /// <summary>The options of one LoKr adapter, as <c>[LoKr]</c> declares them (the same defaults).</summary>
    public sealed record LoKrOptions
    {
        /// <summary>The rank r (PEFT's <c>r</c>).</summary>
        public int Rank { get; init; } = 8;

        /// <summary>PEFT's <c>alpha</c>; the update is scaled by Alpha / r.</summary>
        public double Alpha { get; init; } = 8;

        /// <summary>PEFT's <c>decompose_factor</c>: -1 for factors near the square root, or a positive preferred factor.</summary>
        public int DecomposeFactor { get; init; } = -1;

        /// <summary>PEFT's <c>decompose_both</c>: W1 low-rank too when the rank is small enough.</summary>
        public bool DecomposeBoth { get; init; }

        /// <summary>Probability of dropping each output row of the update in training (PEFT's <c>rank_dropout</c>).</summary>
        public double RankDropout { get; init; }

        /// <summary>Whether the rows <see cref="RankDropout"/> keeps are divided by the fraction kept (PEFT's <c>rank_dropout_scale</c>).</summary>
        public bool RankDropoutScale { get; init; }

        /// <summary>Probability of skipping the whole update for a batch in training (PEFT's <c>module_dropout</c>).</summary>
        public double ModuleDropout { get; init; }

        /// <summary>The factor applied to the Kronecker product.</summary>
        public double Scaling => Alpha / Rank;
    }
}
