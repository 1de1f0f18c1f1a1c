using System;
using System.Collections.Generic;

namespace Peft.Runtime
{
    /// <summary>
    /// The settings of EVA's data-driven init (PEFT's <c>EvaConfig</c>), for <see cref="IPeftModel.InitializeEva"/>.
    /// </summary>
    public sealed record EvaOptions
    {
        /// <summary>
        /// PEFT's <c>rho</c> (≥ 1): a layer of declared rank r may end with up to round(r·ρ) ranks (Python's rounding, half
        /// to even). 1 keeps every layer at its declared rank. Default 2.
        /// </summary>
        public double Rho { get; init; } = 2;

        /// <summary>
        /// PEFT's <c>tau</c> in (0, 1]: a component has converged when its cosine similarity with the same component one
        /// batch earlier is at least τ. Default 0.99.
        /// </summary>
        public double Tau { get; init; } = 0.99;

        /// <summary>PEFT's <c>whiten</c>: divide row i of A by √σᵢ (σᵢ the i-th singular value of the layer's inputs). Default false.</summary>
        public bool Whiten { get; init; }

        /// <summary>
        /// PEFT's <c>adjust_scaling_factors</c>: a layer whose rank changes from r to r' gets α' = α·r'/r (its
        /// <c>alpha_pattern</c> entry), so its scaling α'/r' stays α/r. Default true.
        /// </summary>
        public bool AdjustScalingFactors { get; init; } = true;

        /// <summary>
        /// The adapter to initialise; null (the default) initialises every adapter declared with <c>LoRAInit.Eva</c>
        /// that still waits for it, each with its own rank budget.
        /// </summary>
        public string? Adapter { get; init; }

        /// <summary>
        /// Stop with an error naming the layers that have not converged after this many batches (the batches are cycled
        /// as PEFT's loop does, so a slow convergence would otherwise run on). Default 10 000.
        /// </summary>
        public int MaxBatches { get; init; } = 10_000;

        /// <summary>Receives one report per batch: batches run, layers converged.</summary>
        public IProgress<EvaProgress>? Progress { get; init; }

        internal void Validate(string model)
        {
            if (!(Rho >= 1) || double.IsInfinity(Rho))
                throw new ArgumentException($"{model}: EvaOptions.Rho must be a finite number ≥ 1, got {Rho}");
            if (!(Tau > 0 && Tau <= 1))
                throw new ArgumentException($"{model}: EvaOptions.Tau must lie in (0, 1], got {Tau}");
            if (MaxBatches < 1)
                throw new ArgumentException($"{model}: EvaOptions.MaxBatches must be at least 1, got {MaxBatches}");
        }
    }

    /// <summary>One step of EVA's init: after <see cref="Batches"/> batches, <see cref="Converged"/> of <see cref="Layers"/> layers have converged.</summary>
    /// <param name="Adapter">The adapter being initialised.</param>
    /// <param name="Batches">Batches run through the model so far (the first also served to find layers with equal inputs).</param>
    /// <param name="Converged">Layers whose components needed for their current rank have converged.</param>
    /// <param name="Layers">Layers being initialised.</param>
    /// <param name="Ranks">Each layer's rank as redistributed after this batch, by module path.</param>
    public sealed record EvaProgress(string Adapter, int Batches, int Converged, int Layers, IReadOnlyDictionary<string, int> Ranks);
}
