namespace Peft.Runtime.Adapters
{
    /// <summary>The options of one Bone (PEFT's MiSS) adapter, as <c>[Bone]</c> declares them (the same defaults).</summary>
    public sealed record BoneOptions
    {
        /// <summary>The block size r (PEFT's <c>r</c>; PEFT's default is 64).</summary>
        public int Block { get; init; } = 64;

        /// <summary>The form of the update (PEFT's <c>init_weights</c>: <c>true</c> or <c>"bat"</c>).</summary>
        public BoneVariant Variant { get; init; } = BoneVariant.Bone;

        /// <summary>PEFT's <c>miss_dropout</c>: dropout on the input of the default variant's update, in training (none for Bat, as in PEFT).</summary>
        public double Dropout { get; init; }
    }
}
