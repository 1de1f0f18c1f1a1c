using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Merging
{
    /// <summary>
    /// WIDEN (Yu et al., 2024) on one layer: per input column, how much each fine-tuned weight Wᵢ = W₀ + ΔWᵢ moved in
    /// magnitude and in direction from the base weight W₀, turned into one weight per source and column. The merge is
    /// Σ ΔWᵢ·diag(cᵢ) — for a LoRA source Bᵢ·(Aᵢ·diag(cᵢ)), so the result stays exactly low-rank.
    /// </summary>
    public static class Widen
    {
        /// <summary>The paper's <c>above_average_value_ratio</c>: a significance above this times the model's mean gets the calibrated score.</summary>
        public const double AboveAverageRatio = 1.0;

        /// <summary>The paper's <c>score_calibration_value</c>.</summary>
        public const double CalibrationScore = 1.0;

        /// <summary>
        /// The column weights cᵢ [T, in]: with m = ‖W[:, j]‖₂ and D = W[:, j] / m (0 for a zero column), Δmᵢ[j] = |mᵢ − m₀|
        /// and Δdᵢ[j] = 1 − ⟨Dᵢ, D₀⟩; each row replaced by its rank significance (position in an ascending stable sort,
        /// divided by in); scores = softmax over the sources, set to <see cref="CalibrationScore"/> where the significance
        /// exceeds <see cref="AboveAverageRatio"/> × that source's mean; cᵢ = ½(magnitude score + direction score).
        /// </summary>
        /// <param name="baseWeight">W₀ [out, in].</param>
        /// <param name="deltas">ΔWᵢ [out, in] (unweighted).</param>
        public static Tensor ColumnWeights(Tensor baseWeight, IReadOnlyList<Tensor> deltas)
        {
            if (deltas.Count == 0) throw new ArgumentException("no deltas to merge", nameof(deltas));
            using var scope = NewDisposeScope();
            var w0 = baseWeight.detach().to(float64);
            var (m0, d0) = Split(w0);
            var magnitude = new List<Tensor>();
            var direction = new List<Tensor>();
            foreach (var delta in deltas)
            {
                var (m, d) = Split(w0.add(delta.to(float64)));
                magnitude.Add(Significance(m.sub(m0).abs()));
                direction.Add(Significance(ones_like(m).sub(d.mul(d0).sum(dim: 0))));
            }
            var weights = Scores(stack(magnitude.ToArray(), 0)).add(Scores(stack(direction.ToArray(), 0))).mul(0.5);
            return weights.MoveToOuterDisposeScope();
        }

        /// <summary>Σ wᵢ·ΔWᵢ·diag(cᵢ) with cᵢ = <see cref="ColumnWeights"/>: the dense WIDEN delta.</summary>
        public static Tensor Merge(Tensor baseWeight, IReadOnlyList<Tensor> deltas, IReadOnlyList<double> weights)
        {
            if (weights.Count != deltas.Count) throw new ArgumentException($"{weights.Count} weights for {deltas.Count} deltas", nameof(weights));
            using var scope = NewDisposeScope();
            var columns = ColumnWeights(baseWeight, deltas);
            var scaled = deltas.Select((delta, i) => delta.to(float64).mul(columns[i].unsqueeze(0))).ToList();
            return DeltaMerge.WeightedSum(scaled, weights).MoveToOuterDisposeScope();
        }

        private static (Tensor Magnitude, Tensor Direction) Split(Tensor w)
        {
            var m = w.norm(0, false, 2);
            var safe = where(m.gt(0), m, ones_like(m));
            return (m, w.div(safe.unsqueeze(0)));
        }

        /// <summary>Each value's position in an ascending stable sort of the vector (ties keep column order): 0 … n − 1.</summary>
        private static Tensor Significance(Tensor values)
        {
            double[] v = values.cpu().data<double>().ToArray();
            var position = new double[v.Length];
            int next = 0;
            foreach (int j in Enumerable.Range(0, v.Length).OrderBy(j => v[j])) position[j] = next++;
            return tensor(position, dtype: float64, device: values.device);
        }

        /// <summary>
        /// Softmax over the sources of the significance (position / n), then the calibrated score where the significance
        /// exceeds the ratio times the source's mean. Positions are a permutation of 0 … n − 1, so that mean is exactly
        /// (n − 1) / 2 in positions: the comparison is made there, exactly (with n odd one column sits on the mean).
        /// </summary>
        private static Tensor Scores(Tensor positions)
        {
            long n = positions.shape[1];
            var scores = positions.div(n).softmax(0);
            var above = positions.gt(AboveAverageRatio * (n - 1) / 2.0);
            return where(above, full_like(scores, CalibrationScore), scores);
        }
    }
}
