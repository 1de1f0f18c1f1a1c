using System;

namespace Peft
{
    /// <summary>
    /// Block-affine adaptation (Kang, 2024, "Bone: Block-Affine Adaptation of Large Language Models"), which Hugging
    /// Face PEFT renamed MiSS in 0.19. The base layer is frozen and a small trainable block D changes its weight
    /// W ([out, in]) block by block. With <see cref="BoneVariant.Bone"/> (the default) D is [block, out] and the
    /// update is y = xWᵀ + b + (Σₖ x[…, k·block:(k+1)·block])·D, i.e. ΔW[o, i] = D[i mod block, o]; with
    /// <see cref="BoneVariant.Bat"/> D is [out / block, block, block] and every block × block tile becomes
    /// W_IJ + W_IJ·D_I + D_I. D starts at zero, so the adapted layer starts equal to the base layer.
    /// </summary>
    /// <remarks>
    /// Put it on a field or property typed <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>Linear</c>, or on
    /// the class with <see cref="Targets"/> naming such fields. The block must divide the layer's in-features (Bat:
    /// in- and out-features); PEFT pads the input instead, PeftDsl rejects it (PEFT006). There is no scaling;
    /// <see cref="Dropout"/> is PEFT's <c>miss_dropout</c>. Saved as PEFT's <c>peft_type: "MISS"</c> with <c>r</c> = block and <c>init_weights</c> <c>true</c> or
    /// <c>"bat"</c>; files of PEFT's older <c>"BONE"</c> type load too.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class BoneAttribute : Attribute
    {
        /// <summary>Declares a Bone adapter with the given block size.</summary>
        /// <param name="block">
        /// The block size r (PEFT's <c>r</c>): at least 1, dividing the layer's in-features (Bat: also its out-features).
        /// </param>
        public BoneAttribute(int block) => Block = block;

        /// <summary>The block size r (PEFT's <c>r</c>).</summary>
        public int Block { get; }

        /// <summary>The form of the update; see <see cref="BoneVariant"/>. Default <see cref="BoneVariant.Bone"/>.</summary>
        public BoneVariant Variant { get; set; } = BoneVariant.Bone;

        /// <summary>
        /// PEFT's <c>miss_dropout</c>, in [0, 1): in training, dropout on the input of the Bone update (the folded
        /// x in (Σₖ x[…, k·block:(k+1)·block])·D). PEFT applies it only to the default variant; with
        /// <see cref="BoneVariant.Bat"/>, whose update acts on the weight, it has no effect, as in PEFT. Default 0.
        /// </summary>
        public double Dropout { get; set; }

        /// <summary>The adapter's name (PEFT's adapter name). Default <c>"default"</c>.</summary>
        public string Name { get; set; } = "default";

        /// <summary>
        /// Only on a class: the fields (use <c>nameof</c>) the adapter applies to, PEFT's <c>target_modules</c>
        /// checked by the compiler.
        /// </summary>
        public string[]? Targets { get; set; }
    }
}
