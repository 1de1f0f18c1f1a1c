using System;

namespace Peft
{
    /// <summary>
    /// Vector-based Random Matrix Adaptation (Kopiczko, Blankevoort and Asano, 2024, "VeRA: Vector-based Random Matrix
    /// Adaptation"). One pair of frozen random matrices A [rank, in_max] and B [out_max, rank] is shared by every VeRA
    /// layer of the adapter in the model; each layer learns only two scaling vectors, λ_b [out] (starting at 0) and
    /// λ_d [rank] (starting at 0.1): y = xWᵀ + b + λ_b ⊙ ((λ_d ⊙ (dropout(x)·A[:, :in]ᵀ))·B[:out]ᵀ), i.e.
    /// ΔW = (λ_b ⊙ B[:out]) · (λ_d ⊙ A[:, :in]).
    /// </summary>
    /// <remarks>
    /// A and B are drawn on the CPU from a generator seeded with <see cref="ProjectionSeed"/>, A first, each uniform in
    /// ±√6/√fan_in, at the largest in- and out-size over the adapter's layers, exactly as Hugging Face PEFT draws them;
    /// they are written into the adapter file as well (PEFT's <c>save_projection: true</c>). The layer starts equal
    /// to the base layer. Since the projections are shared, every layer of one VeRA adapter needs the same rank and
    /// seed. Put it on a field or property typed <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>Linear</c>, or on
    /// the class with <see cref="Targets"/>. Saved as PEFT's <c>peft_type: "VERA"</c>.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
    public sealed class VeRAAttribute : Attribute
    {
        /// <summary>Declares a VeRA adapter of the given rank.</summary>
        /// <param name="rank">
        /// The rank r of the shared projections (PEFT's <c>r</c>, default 256 there): at least 1. It may exceed the layer's
        /// sizes, as it often does in VeRA, since only λ_d grows with it.
        /// </param>
        public VeRAAttribute(int rank) => Rank = rank;

        /// <summary>The rank r of the shared projections (PEFT's <c>r</c>).</summary>
        public int Rank { get; }

        /// <summary>Dropout probability on the adapter's input only (PEFT's <c>vera_dropout</c>), in [0, 1). Default 0.</summary>
        public double Dropout { get; set; }

        /// <summary>The seed of the generator that draws the shared projections (PEFT's <c>projection_prng_key</c>). Default 0.</summary>
        public int ProjectionSeed { get; set; }

        /// <summary>
        /// PEFT's <c>save_projection</c>: whether the adapter file holds the shared projections (<c>base_model.vera_A</c>,
        /// <c>vera_B</c>). With false the file is smaller and the projections are drawn again from
        /// <see cref="ProjectionSeed"/> on load, by PEFT and by PeftDsl alike (both reproduce PyTorch's CPU generator).
        /// Default true, as in PEFT.
        /// </summary>
        public bool SaveProjection { get; set; } = true;

        /// <summary>The adapter's name (PEFT's adapter name). Default <c>"default"</c>.</summary>
        public string Name { get; set; } = "default";

        /// <summary>
        /// Only on a class: the fields (use <c>nameof</c>) the adapter applies to, PEFT's <c>target_modules</c>
        /// checked by the compiler.
        /// </summary>
        public string[]? Targets { get; set; }
    }
}
