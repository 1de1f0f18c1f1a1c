namespace Peft
{
    /// <summary>How the low-rank factors of a LoRA (or DoRA) adapter start.</summary>
    public enum LoRAInit
    {
        /// <summary>
        /// PEFT's default (<c>init_lora_weights = true</c>): A is Kaiming-uniform with a = √5, B is zero,
        /// so the adapted layer starts exactly equal to the base layer.
        /// </summary>
        Default = 0,

        /// <summary>
        /// PEFT's <c>"gaussian"</c>: A ~ N(0, 1/r), B is zero. The layer still starts equal to the base layer.
        /// </summary>
        Gaussian = 1,
    }
}
