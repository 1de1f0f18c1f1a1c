using System;

namespace Peft
{
    /// <summary>
    /// Adaptive budget allocation (Zhang et al., 2023, "AdaLoRA: Adaptive Budget Allocation for Parameter-Efficient
    /// Fine-Tuning"). The update is an SVD-shaped triplet product ΔW = Q·(Λ ⊙ P)·α / (InitRank + 1e-5) with
    /// P [InitRank, in] (PEFT's <c>lora_A</c>), Λ [InitRank, 1] (<c>lora_E</c>, starting at 0) and Q [out, InitRank]
    /// (<c>lora_B</c>). During training the ranks are scored by a smoothed sensitivity (importance EMAs) and the least
    /// important ones are masked out, the total budget falling on a cubic schedule from InitRank per layer after
    /// <see cref="Tinit"/> steps to <c>targetRank</c> per layer at <c>TotalSteps − Tfinal</c>, where the mask is frozen
    /// into PEFT's <c>rank_pattern</c>.
    /// </summary>
    /// <remarks>
    /// The per-step update runs after each optimizer step: <c>AdapterTrainer</c> runs it by itself; a hand-written loop
    /// calls <c>model.UpdateAndAllocate(step)</c> after <c>optimizer.step()</c> with the 0-based step index. The budget is
    /// shared by every layer of one adapter name, so they all need the same options. Saved as Hugging Face PEFT's
    /// <c>peft_type: "ADALORA"</c>, each layer's tensors sliced to the ranks it kept.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class AdaLoRAAttribute : Attribute
    {
        /// <summary>Declares an AdaLoRA adapter whose budget ends at <paramref name="targetRank"/> ranks per layer on average.</summary>
        /// <param name="targetRank">The average rank per layer at the end (PEFT's <c>target_r</c>): at least 1, at most <see cref="InitRank"/>.</param>
        public AdaLoRAAttribute(int targetRank) => TargetRank = targetRank;

        /// <summary>The average rank per layer the budget ends at (PEFT's <c>target_r</c>).</summary>
        public int TargetRank { get; }

        /// <summary>The rank every layer starts at (PEFT's <c>init_r</c>). Default 12, as in PEFT.</summary>
        public int InitRank { get; set; } = 12;

        /// <summary>PEFT's <c>lora_alpha</c>: the update is scaled by Alpha / (InitRank + 1e-5), whatever the ranks kept. Default 8.</summary>
        public double Alpha { get; set; } = 8;

        /// <summary>Dropout probability on the adapter's input (PEFT's <c>lora_dropout</c>), in [0, 1). Default 0.</summary>
        public double Dropout { get; set; }

        /// <summary>Warm-up steps at the full budget before any rank is masked (PEFT's <c>tinit</c>). Default 0.</summary>
        public int Tinit { get; set; }

        /// <summary>Final steps trained with the mask frozen (PEFT's <c>tfinal</c>). Default 0.</summary>
        public int Tfinal { get; set; }

        /// <summary>Steps between two maskings while the budget falls (PEFT's <c>deltaT</c>). Default 1.</summary>
        public int DeltaT { get; set; } = 1;

        /// <summary>Smoothing of the sensitivity EMA (PEFT's <c>beta1</c>), in (0, 1). Default 0.85.</summary>
        public double Beta1 { get; set; } = 0.85;

        /// <summary>Smoothing of the uncertainty EMA (PEFT's <c>beta2</c>), in (0, 1). Default 0.85.</summary>
        public double Beta2 { get; set; } = 0.85;

        /// <summary>Weight of the orthogonal regulariser added to the loss (PEFT's <c>orth_reg_weight</c>). Default 0.5.</summary>
        public double OrthRegWeight { get; set; } = 0.5;

        /// <summary>The number of training steps (PEFT's <c>total_step</c>): required, at least 1, and more than Tinit + Tfinal.</summary>
        public int TotalSteps { get; set; }

        /// <summary>The adapter's name (PEFT's adapter name). Default <c>"default"</c>.</summary>
        public string Name { get; set; } = "default";

        /// <summary>Only on a class: the fields (use <c>nameof</c>) the adapter applies to.</summary>
        public string[]? Targets { get; set; }
    }
}
