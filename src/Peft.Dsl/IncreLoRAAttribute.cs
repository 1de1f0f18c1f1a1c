using System;

namespace Peft
{
    /// <summary>
    /// Incremental rank allocation (Zhang et al., 2023, "IncreLoRA: Incremental Parameter Allocation Method for
    /// Parameter-Efficient Fine-tuning"). Each layer starts with <see cref="InitRank"/> ranks of AdaLoRA's triplet form,
    /// ΔW = Q·(P ⊙ Λ)·α / (ranknum + 1e-5); after <see cref="Warmup"/> steps and every <see cref="Interval"/> steps the
    /// <see cref="TopH"/> most important layers (AdaLoRA's sensitivity, smoothed, per layer) each gain
    /// <see cref="RankIncrement"/> ranks, and their ranknum grows with them (which rescales their existing ranks), until the
    /// adapter holds <c>targetRank</c> ranks per layer on average.
    /// </summary>
    /// <remarks>
    /// Each layer preallocates <see cref="MaxRank"/> ranks and unmasks them as it grows, so the optimizer's state stays in
    /// place. <c>AdapterTrainer</c> runs the growth after each optimizer step; a hand-written loop calls
    /// <c>model.UpdateAndAllocate(step)</c>. Saved as Hugging Face PEFT's plain LoRA (<c>peft_type: "LORA"</c>) with each
    /// layer's rank and alpha in <c>rank_pattern</c> / <c>alpha_pattern</c>.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class IncreLoRAAttribute : Attribute
    {
        /// <summary>Declares an IncreLoRA adapter that grows to <paramref name="targetRank"/> ranks per layer on average.</summary>
        /// <param name="targetRank">The average rank per layer at the end: at least 1, from InitRank to MaxRank.</param>
        public IncreLoRAAttribute(int targetRank) => TargetRank = targetRank;

        /// <summary>The average rank per layer the budget grows to.</summary>
        public int TargetRank { get; }

        /// <summary>The rank every layer starts at (the reference's <c>lora_r</c>). Default 1.</summary>
        public int InitRank { get; set; } = 1;

        /// <summary>The most ranks one layer may grow to (preallocated). Default 16.</summary>
        public int MaxRank { get; set; } = 16;

        /// <summary>Ranks a selected layer gains at a growth step (the reference's <c>incre_rank_num</c>). Default 1.</summary>
        public int RankIncrement { get; set; } = 1;

        /// <summary>Layers that gain ranks at each growth step (the reference's <c>top_h</c>). Default 4.</summary>
        public int TopH { get; set; } = 4;

        /// <summary>Steps before the first growth (the reference's <c>init_warmup</c>). Default 50.</summary>
        public int Warmup { get; set; } = 50;

        /// <summary>Steps between growths (the reference's <c>incre_interval</c>). Default 50.</summary>
        public int Interval { get; set; } = 50;

        /// <summary>The scaling numerator: the update is scaled by Alpha / (ranknum + 1e-5). Default 8.</summary>
        public double Alpha { get; set; } = 8;

        /// <summary>Dropout probability on the adapter's input, in [0, 1). Default 0.</summary>
        public double Dropout { get; set; }

        /// <summary>Smoothing of the sensitivity EMA, in (0, 1). Default 0.85.</summary>
        public double Beta1 { get; set; } = 0.85;

        /// <summary>Smoothing of the uncertainty EMA, in (0, 1). Default 0.85.</summary>
        public double Beta2 { get; set; } = 0.85;

        /// <summary>Weight of the orthogonal regulariser over the rank-1 chunks. Default 0.1.</summary>
        public double OrthRegWeight { get; set; } = 0.1;

        /// <summary>The adapter's name. Default <c>"default"</c>.</summary>
        public string Name { get; set; } = "default";

        /// <summary>Only on a class: the fields (use <c>nameof</c>) the adapter applies to.</summary>
        public string[]? Targets { get; set; }
    }
}
