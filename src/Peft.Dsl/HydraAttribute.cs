using System;

namespace Peft
{
    /// <summary>
    /// Hydra (Kim et al., 2024, "Hydra: Multi-head Low-rank Adaptation for Parameter Efficient Fine-tuning"): a
    /// parallel low-rank branch on the layer's input, as LoRA, plus a sequential low-rank branch on the frozen layer's
    /// output. y = xWᵀ + b + s_p·B_p·A_p·dropout(x) + s_s·B_s·A_s·dropout(xWᵀ), with A_p [parallelRank, in],
    /// B_p [out, parallelRank], A_s [sequentialRank, out], B_s [out, sequentialRank], s_p = <see cref="Alpha"/> /
    /// parallelRank and s_s = <see cref="Alpha"/> / sequentialRank. The merged weight is
    /// W' = (I + s_s·B_s·A_s)·W + s_p·B_p·A_p.
    /// </summary>
    /// <remarks>
    /// The sequential branch sees xWᵀ without the bias, so the bias is never transformed and merging leaves it
    /// unchanged. Both A's start Kaiming-uniform (a = √5) and both B's at zero, so the layer starts equal to the base
    /// layer. Both ranks must be at least 1 (a Hydra with one branch is LoRA, or a purely sequential adapter that this
    /// attribute does not offer). Hugging Face PEFT has no Hydra: PeftDsl saves it in PEFT's directory layout under
    /// its own <c>peft_type: "HYDRA"</c>, with <c>r</c> (the parallel rank), <c>sequential_r</c>, <c>lora_alpha</c>
    /// and <c>lora_dropout</c>.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class HydraAttribute : Attribute
    {
        /// <summary>Declares a Hydra adapter with the given ranks.</summary>
        /// <param name="parallelRank">The rank of the parallel branch B_p·A_p: at least 1 and at most min(in, out).</param>
        /// <param name="sequentialRank">The rank of the sequential branch B_s·A_s: at least 1 and at most out.</param>
        public HydraAttribute(int parallelRank, int sequentialRank)
        {
            ParallelRank = parallelRank;
            SequentialRank = sequentialRank;
        }

        /// <summary>The rank of the parallel branch (written as <c>r</c>).</summary>
        public int ParallelRank { get; }

        /// <summary>The rank of the sequential branch (written as <c>sequential_r</c>).</summary>
        public int SequentialRank { get; }

        /// <summary>
        /// As LoRA's <c>lora_alpha</c>, per branch: the parallel branch is scaled by Alpha / parallelRank and the
        /// sequential one by Alpha / sequentialRank. Default 8.
        /// </summary>
        public double Alpha { get; set; } = 8;

        /// <summary>
        /// Dropout probability in [0, 1) on each branch's input (x for the parallel branch, xWᵀ for the sequential
        /// one), with independent masks, in training only. Default 0.
        /// </summary>
        public double Dropout { get; set; }

        /// <summary>The adapter's name. Default <c>"default"</c>.</summary>
        public string Name { get; set; } = "default";

        /// <summary>
        /// Only on a class: the fields (use <c>nameof</c>) the adapter applies to, PEFT's <c>target_modules</c>
        /// checked by the compiler.
        /// </summary>
        public string[]? Targets { get; set; }
    }
}
