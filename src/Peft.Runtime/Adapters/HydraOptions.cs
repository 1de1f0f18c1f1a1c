namespace Peft.Runtime.Adapters
{
    /// <summary>The options of one Hydra adapter, as <c>[Hydra]</c> declares them (the same defaults).</summary>
    public sealed record HydraOptions
    {
        /// <summary>The rank of the parallel branch B_p·A_p (written as <c>r</c>).</summary>
        public int ParallelRank { get; init; } = 8;

        /// <summary>The rank of the sequential branch B_s·A_s (written as <c>sequential_r</c>).</summary>
        public int SequentialRank { get; init; } = 8;

        /// <summary>As LoRA's <c>lora_alpha</c>, per branch: the branches are scaled by Alpha / their rank.</summary>
        public double Alpha { get; init; } = 8;

        /// <summary>Dropout probability on each branch's input (written as <c>lora_dropout</c>).</summary>
        public double Dropout { get; init; }

        /// <summary>The factor applied to B_p·A_p: Alpha / ParallelRank.</summary>
        public double ParallelScaling => Alpha / ParallelRank;

        /// <summary>The factor applied to B_s·A_s: Alpha / SequentialRank.</summary>
        public double SequentialScaling => Alpha / SequentialRank;
    }
}
