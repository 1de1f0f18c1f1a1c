using System;

namespace Peft
{
    /// <summary>
    /// RandLoRA (Albert et al., ICLR 2025): a full-rank update built from frozen random low-rank bases shared by every
    /// layer of the adapter, with trainable diagonal scalings λ [rank, n] and γ [n, min(in, out)], n = ⌈min(in, out) / rank⌉:
    /// ΔW = (Alpha / rank) · Σⱼ Bⱼ·diag(λ[:, j])·A·diag(γ[j]). Saved in PEFT's <c>RANDLORA</c> format.
    /// </summary>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class RandLoRAAttribute : Attribute
    {
        /// <summary>Declares a RandLoRA adapter whose random bases have rank <paramref name="rank"/>.</summary>
        public RandLoRAAttribute(int rank) => Rank = rank;

        /// <summary>The rank r of each random basis (PEFT's <c>r</c>; PEFT's default 32).</summary>
        public int Rank { get; }

        /// <summary>PEFT's <c>randlora_alpha</c>: the update is scaled by Alpha / Rank (PEFT's default 640, i.e. 20 at rank 32).</summary>
        public double Alpha { get; set; } = 640;

        /// <summary>Dropout probability on the adapter input (PEFT's <c>randlora_dropout</c>).</summary>
        public double Dropout { get; set; }

        /// <summary>The seed of the CPU generator that draws the bases (PEFT's <c>projection_prng_key</c>).</summary>
        public int ProjectionSeed { get; set; }

        /// <summary>Whether saved files hold the bases (PEFT's <c>save_projection</c>); without them they are redrawn from the seed.</summary>
        public bool SaveProjection { get; set; } = true;

        /// <summary>The adapter name.</summary>
        public string Name { get; set; } = "default";

        /// <summary>On a class: the members it applies to.</summary>
        public string[]? Targets { get; set; }
    }
}
