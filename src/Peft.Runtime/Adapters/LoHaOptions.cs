namespace Peft.Runtime.Adapters
{
    /// <summary>The options of one LoHa adapter, as <c>[LoHa]</c> declares them (the same defaults).</summary>
    public sealed record LoHaOptions
    {
        /// <summary>The rank r of each of the two products (PEFT's <c>r</c>).</summary>
        public int Rank { get; init; } = 8;

        /// <summary>PEFT's <c>alpha</c>; the update is scaled by Alpha / r.</summary>
        public double Alpha { get; init; } = 8;

        /// <summary>Probability of dropping each output row of the update in training (PEFT's <c>rank_dropout</c>).</summary>
        public double RankDropout { get; init; }

        /// <summary>Probability of skipping the whole update for a batch in training (PEFT's <c>module_dropout</c>).</summary>
        public double ModuleDropout { get; init; }

        /// <summary>The factor applied to the Hadamard product.</summary>
        public double Scaling => Alpha / Rank;
    }
}
