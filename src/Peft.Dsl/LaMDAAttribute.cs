using System;

namespace Peft
{
    /// <summary>
    /// LaMDA (Azizi, Kundu and Pedram, 2024, "LaMDA: Large Model Fine-Tuning via Spectrally Decomposed Low-Dimensional
    /// Adaptation"): y = xWᵀ + b + s·drop(x)·Aᵀ·Sᵀ·Bᵀ with a frozen projection A [rank, in] (the top right singular
    /// vectors of W), a trainable rank×rank core S (starts at zero) and a projection B [out, rank] (the top left singular
    /// vectors of W) that trains early and then freezes column by column, largest singular value first, on the schedule
    /// <see cref="FreezeBStart"/> / <see cref="FreezeBSteps"/>; s = <see cref="Alpha"/> / rank.
    /// </summary>
    /// <remarks>
    /// Trainable: rank² + out·rank while B trains, rank² once it is frozen. Its backward keeps only drop(x)·Aᵀ
    /// ([n, rank]) instead of the input x. The freezing runs per optimizer step: <c>AdapterTrainer</c> drives it, and a
    /// hand-written loop calls <c>AdapterSchedule.AfterOptimizerStep(model, step)</c> after <c>optimizer.step()</c>.
    /// Saved as exactly a LoRA (A' = S·A, B' = B, the same scaling): Hugging Face PEFT's <c>peft_type: "LORA"</c>.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class LaMDAAttribute : Attribute
    {
        /// <summary>Declares a LaMDA adapter of the given rank.</summary>
        /// <param name="rank">The rank r (the saved LoRA's <c>r</c>): at least 1 and at most min(in, out).</param>
        public LaMDAAttribute(int rank) => Rank = rank;

        /// <summary>The rank r (the saved LoRA's <c>r</c>).</summary>
        public int Rank { get; }

        /// <summary>The update is scaled by Alpha / rank (the saved LoRA's <c>lora_alpha</c>). Default 8, as LoRA's.</summary>
        public double Alpha { get; set; } = 8;

        /// <summary>Dropout probability on the adapter's input only (the saved LoRA's <c>lora_dropout</c>), in [0, 1). Default 0.</summary>
        public double Dropout { get; set; }

        /// <summary>Optimizer steps during which all of B trains before its first column freezes (at least 0). Default 0.</summary>
        public int FreezeBStart { get; set; }

        /// <summary>
        /// Optimizer steps over which B's rank columns freeze one by one, the paper's t_i (at least 0; 0 freezes B from the
        /// start): column k (0-based, largest singular value first) freezes once FreezeBStart + ⌈FreezeBSteps·(k + 1) / rank⌉
        /// steps have completed. Default 500.
        /// </summary>
        public int FreezeBSteps { get; set; } = 500;

        /// <summary>The adapter's name. Default <c>"default"</c>.</summary>
        public string Name { get; set; } = "default";

        /// <summary>Only on a class: the fields (use <c>nameof</c>) the adapter applies to.</summary>
        public string[]? Targets { get; set; }
    }
}
