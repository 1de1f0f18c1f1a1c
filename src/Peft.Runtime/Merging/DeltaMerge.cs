using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Merging
{
    /// <summary>
    /// The merge algebra on dense task tensors (delta weights ΔWᵢ of one layer, all of one shape), after Hugging Face
    /// PEFT's <c>merge_utils</c>; every function returns a new tensor and leaves its inputs alone.
    /// </summary>
    public static class DeltaMerge
    {
        /// <summary>Σ wᵢ·tᵢ.</summary>
        public static Tensor WeightedSum(IReadOnlyList<Tensor> tensors, IReadOnlyList<double> weights)
        {
            Check(tensors, weights);
            var sum = tensors[0].mul(weights[0]);
            for (int i = 1; i < tensors.Count; i++) sum = sum.add(tensors[i], alpha: weights[i]);
            return sum;
        }

        /// <summary>
        /// Keeps the k = ⌊density·numel⌋ entries of largest magnitude and zeroes the rest (PEFT's
        /// <c>magnitude_based_pruning</c>; ties at the threshold are broken by <c>topk</c>).
        /// </summary>
        public static Tensor MagnitudePrune(Tensor tensor, double density)
        {
            CheckDensity(density);
            long n = tensor.numel();
            long k = (long)(density * n);
            if (k >= n) return tensor.clone();
            if (k <= 0) return zeros_like(tensor);
            var flat = tensor.reshape(-1);
            var (_, indices) = flat.abs().topk(checked((int)k), dim: 0, largest: true, sorted: false);
            var mask = zeros_like(flat).index_fill_(0, indices, 1.0);
            return flat.mul(mask).reshape(tensor.shape);
        }

        /// <summary>
        /// DARE's drop and rescale: keeps each entry with probability <paramref name="density"/> (a Bernoulli mask drawn
        /// on the CPU from <paramref name="generator"/>, so the same seed gives the same mask on any device) and divides
        /// the kept ones by the density, which preserves the expectation (PEFT's <c>random_pruning</c> with rescale).
        /// </summary>
        public static Tensor RandomPrune(Tensor tensor, double density, Generator generator)
        {
            CheckDensity(density);
            if (density >= 1) return tensor.clone();
            var mask = full(tensor.shape, density, dtype: float64, device: CPU).bernoulli(generator).to(tensor.dtype, tensor.device);
            return tensor.mul(mask).div(density);
        }

        /// <summary>
        /// TIES sign election: per entry +1 where the sum of the (unweighted) tensors is ≥ 0, else −1 (PEFT's
        /// <c>calculate_majority_sign_mask</c>, method "total").
        /// </summary>
        public static Tensor ElectSign(IReadOnlyList<Tensor> tensors)
        {
            var total = stack(tensors.ToArray(), 0).sum(dim: 0); // sum(0) would bind to sum(ScalarType)
            return where(total.ge(0), ones_like(total), ones_like(total).neg());
        }

        /// <summary>
        /// TIES disjoint merge: per entry, the sum of wᵢ·tᵢ over the tensors whose own sign equals
        /// <paramref name="sign"/>, divided by how many agree (at least 1). Zero entries agree with no sign.
        /// </summary>
        public static Tensor DisjointMean(IReadOnlyList<Tensor> tensors, IReadOnlyList<double> weights, Tensor sign)
        {
            Check(tensors, weights);
            var sum = zeros_like(tensors[0]);
            var count = zeros_like(tensors[0]);
            for (int i = 0; i < tensors.Count; i++)
            {
                var agree = tensors[i].sign().eq(sign).to(tensors[i].dtype);
                sum = sum.add(tensors[i].mul(agree), alpha: weights[i]);
                count = count.add(agree);
            }
            return sum.div(count.clamp_min(1));
        }

        /// <summary>
        /// TIES-Merging (Yadav et al., 2023), as PEFT's <c>ties</c>: trim each tensor to its top-density magnitudes,
        /// elect each entry's sign from the trimmed unweighted tensors, then average the weighted entries that agree.
        /// </summary>
        public static Tensor Ties(IReadOnlyList<Tensor> tensors, IReadOnlyList<double> weights, double density)
        {
            var trimmed = tensors.Select(t => MagnitudePrune(t, density)).ToList();
            return DisjointMean(trimmed, weights, ElectSign(trimmed));
        }

        /// <summary>Keep the top-density magnitudes of each tensor, then Σ wᵢ·tᵢ (PEFT's <c>magnitude_prune</c>).</summary>
        public static Tensor MagnitudePruneSum(IReadOnlyList<Tensor> tensors, IReadOnlyList<double> weights, double density) =>
            WeightedSum(tensors.Select(t => MagnitudePrune(t, density)).ToList(), weights);

        /// <summary>DARE (Yu et al., 2024) then Σ wᵢ·tᵢ (PEFT's <c>dare_linear</c>); masks drawn in tensor order.</summary>
        public static Tensor DareLinear(IReadOnlyList<Tensor> tensors, IReadOnlyList<double> weights, double density, Generator generator) =>
            WeightedSum(tensors.Select(t => RandomPrune(t, density, generator)).ToList(), weights);

        /// <summary>DARE, then TIES sign election and agreeing mean (PEFT's <c>dare_ties</c>); masks drawn in tensor order.</summary>
        public static Tensor DareTies(IReadOnlyList<Tensor> tensors, IReadOnlyList<double> weights, double density, Generator generator)
        {
            var dropped = tensors.Select(t => RandomPrune(t, density, generator)).ToList();
            return DisjointMean(dropped, weights, ElectSign(dropped));
        }

        /// <summary>
        /// Model Stock's interpolation ratio (Jang et al., 2024) for N deltas from one base: with cos θ the mean cosine
        /// over all pairs of deltas (flattened; a zero delta has cosine 0 with anything), t = N·cos θ / (1 + (N − 1)·cos θ).
        /// cos θ is clamped to [0, 1] — the paper assumes fine-tuned weights at a positive angle, and a negative one would
        /// extrapolate past the base or divide by zero — so t lies in [0, 1]; one delta gives t = 1.
        /// </summary>
        public static double ModelStockRatio(IReadOnlyList<Tensor> tensors)
        {
            if (tensors.Count == 0) throw new ArgumentException("no tensors to merge", nameof(tensors));
            int n = tensors.Count;
            if (n == 1) return 1;
            var flat = tensors.Select(t => t.reshape(-1).to(float64)).ToList();
            var norms = flat.Select(f => f.norm().item<double>()).ToList();
            double sum = 0;
            int pairs = 0;
            for (int i = 0; i < n; i++)
                for (int j = i + 1; j < n; j++)
                {
                    double denominator = norms[i] * norms[j];
                    sum += denominator > 0 ? flat[i].dot(flat[j]).item<double>() / denominator : 0;
                    pairs++;
                }
            double cos = Math.Clamp(sum / pairs, 0, 1);
            return n * cos / (1 + (n - 1) * cos);
        }

        /// <summary>
        /// Model Stock: t·mean(ΔWᵢ) with t = <see cref="ModelStockRatio"/>, i.e. the base (ΔW = 0) interpolated toward the
        /// average of the fine-tuned weights by the angle between their deltas. Weights are not used.
        /// </summary>
        public static Tensor ModelStock(IReadOnlyList<Tensor> tensors)
        {
            double t = ModelStockRatio(tensors);
            return stack(tensors.ToArray(), 0).mean(new long[] { 0 }).mul(t);
        }

        /// <summary>
        /// The polar factor of <paramref name="matrix"/>: with the thin SVD X = U·S·Vᵀ, the semi-orthogonal U·Vᵀ, the
        /// nearest matrix with orthonormal columns (or rows, for a wide X) in the Frobenius norm.
        /// </summary>
        public static Tensor PolarFactor(Tensor matrix)
        {
            var (u, _, vh) = linalg.svd(matrix, fullMatrices: false);
            return matmul(u, vh);
        }

        /// <summary>Iso-C's isotropisation: with X = U·S·Vᵀ (thin), σ̄·U·Vᵀ where σ̄ is the mean of all min(rows, columns) singular values.</summary>
        public static Tensor Isotropize(Tensor matrix)
        {
            var (u, s, vh) = linalg.svd(matrix, fullMatrices: false);
            return matmul(u, vh).mul(s.mean().item<double>());
        }

        /// <summary>Iso-C (Marczak et al., 2025): <see cref="Isotropize"/> of Σ wᵢ·tᵢ.</summary>
        public static Tensor IsoC(IReadOnlyList<Tensor> tensors, IReadOnlyList<double> weights) => Isotropize(WeightedSum(tensors, weights));

        /// <summary>
        /// TSV-Merge (Gargiulo et al., 2025): each wᵢ·tᵢ = Uᵢ·Sᵢ·Vᵢᵀ keeps its top k = max(1, ⌊n / T⌋) triplets (n = min(rows,
        /// columns), T tensors); the stacks U = [U₁,ₖ … U_T,ₖ] and Vᵀ = [V₁,ₖᵀ; …] are replaced by their polar factors and
        /// the stacked singular values kept: polar(U)·diag(S)·polar(Vᵀ).
        /// </summary>
        public static Tensor Tsv(IReadOnlyList<Tensor> tensors, IReadOnlyList<double> weights)
        {
            Check(tensors, weights);
            long n = Math.Min(tensors[0].shape[0], tensors[0].shape[1]);
            long k = Math.Max(1, n / tensors.Count);
            var us = new List<Tensor>();
            var ss = new List<Tensor>();
            var vs = new List<Tensor>();
            for (int i = 0; i < tensors.Count; i++)
            {
                var (u, s, vh) = TopTriplets(tensors[i].mul(weights[i]), k);
                us.Add(u);
                ss.Add(s);
                vs.Add(vh);
            }
            return matmul(PolarFactor(cat(us.ToArray(), 1)).mul(cat(ss.ToArray(), 0).unsqueeze(0)), PolarFactor(cat(vs.ToArray(), 0)));
        }

        /// <summary>
        /// The split of Iso-CTS's n = min(rows, columns) directions between the common subspace and T tasks, as the paper's
        /// code computes it: k_c = ⌊n·fraction⌋, then k_c = n − round((n − k_c) / T)·T (round half to even, so the task
        /// part divides by T), clamped to [0, n]; each task gets ⌊(n − k_c) / T⌋.
        /// </summary>
        public static (long Common, long PerTask) IsoCtsSplit(long n, int tasks, double fraction)
        {
            long common = (long)Math.Floor(n * fraction);
            long taskTotal = (long)Math.Round((double)(n - common) / tasks, MidpointRounding.ToEven) * tasks;
            common = Math.Clamp(n - taskTotal, 0, n);
            return (common, (n - common) / tasks);
        }

        /// <summary>
        /// Iso-CTS (Marczak et al., 2025): the top k_c singular triplets of Σ wᵢ·tᵢ (the common subspace, see
        /// <see cref="IsoCtsSplit"/>); for each task, the top triplets of wᵢ·tᵢ − U_c·U_cᵀ·wᵢ·tᵢ (its part outside the common
        /// subspace); the stacked U's and Vᵀ's replaced by their polar factors and every singular value by the mean of the
        /// stacked ones: σ̄·polar(U)·polar(Vᵀ).
        /// </summary>
        public static Tensor IsoCts(IReadOnlyList<Tensor> tensors, IReadOnlyList<double> weights, double commonFraction)
        {
            Check(tensors, weights);
            if (!(commonFraction > 0 && commonFraction <= 1)) throw new ArgumentOutOfRangeException(nameof(commonFraction), commonFraction, "the common fraction must lie in (0, 1]");
            long n = Math.Min(tensors[0].shape[0], tensors[0].shape[1]);
            var (common, perTask) = IsoCtsSplit(n, tensors.Count, commonFraction);
            var (commonU, commonS, commonV) = TopTriplets(WeightedSum(tensors, weights), common);
            var us = new List<Tensor> { commonU };
            var ss = new List<Tensor> { commonS };
            var vs = new List<Tensor> { commonV };
            if (perTask > 0)
            {
                for (int i = 0; i < tensors.Count; i++)
                {
                    var task = tensors[i].mul(weights[i]);
                    var (ut, st, vt) = TopTriplets(task.sub(matmul(commonU, matmul(commonU.t(), task))), perTask);
                    us.Add(ut);
                    ss.Add(st);
                    vs.Add(vt);
                }
            }
            double mean = cat(ss.ToArray(), 0).mean().item<double>();
            return matmul(PolarFactor(cat(us.ToArray(), 1)), PolarFactor(cat(vs.ToArray(), 0))).mul(mean);
        }

        /// <summary>The top <paramref name="k"/> triplets of <paramref name="matrix"/>'s thin SVD: U's first k columns, the k largest singular values, Vᵀ's first k rows.</summary>
        private static (Tensor U, Tensor S, Tensor Vh) TopTriplets(Tensor matrix, long k)
        {
            var (u, s, vh) = linalg.svd(matrix, fullMatrices: false);
            return (u.narrow(1, 0, k), s.narrow(0, 0, k), vh.narrow(0, 0, k));
        }

        /// <summary>Combines dense deltas by <paramref name="method"/> (the low-rank-exact methods as a plain weighted sum).</summary>
        /// <param name="method">The method.</param>
        /// <param name="tensors">The delta weights, one per source adapter.</param>
        /// <param name="weights">One weight per tensor.</param>
        /// <param name="density">For TIES, DARE and magnitude pruning.</param>
        /// <param name="generator">For DARE; may be null for the other methods.</param>
        /// <param name="commonFraction">For Iso-CTS: the common subspace's fraction of the directions.</param>
        /// <remarks>WIDEN needs the base weight and LoRA-LEGO the sources' factors: <see cref="AdapterMerger"/> runs them, not this.</remarks>
        public static Tensor Combine(MergeMethod method, IReadOnlyList<Tensor> tensors, IReadOnlyList<double> weights, double density, Generator? generator, double commonFraction = 0.8)
        {
            switch (method)
            {
                case MergeMethod.Linear:
                case MergeMethod.Cat:
                case MergeMethod.Svd:
                    return WeightedSum(tensors, weights);
                case MergeMethod.Ties:
                    return Ties(tensors, weights, density);
                case MergeMethod.DareLinear:
                    return DareLinear(tensors, weights, density, generator ?? throw new ArgumentNullException(nameof(generator)));
                case MergeMethod.DareTies:
                    return DareTies(tensors, weights, density, generator ?? throw new ArgumentNullException(nameof(generator)));
                case MergeMethod.MagnitudePrune:
                    return MagnitudePruneSum(tensors, weights, density);
                case MergeMethod.ModelStock:
                    return ModelStock(tensors);
                case MergeMethod.Tsv:
                    return Tsv(tensors, weights);
                case MergeMethod.IsoC:
                    return IsoC(tensors, weights);
                case MergeMethod.IsoCts:
                    return IsoCts(tensors, weights, commonFraction);
                case MergeMethod.Widen:
                case MergeMethod.LoraLego:
                    throw new ArgumentException($"{method} needs the base weight (WIDEN) or the sources' LoRA factors (LoRA-LEGO); AdapterMerger runs it", nameof(method));
                default:
                    throw new ArgumentOutOfRangeException(nameof(method), method, "unknown merge method");
            }
        }

        private static void Check(IReadOnlyList<Tensor> tensors, IReadOnlyList<double> weights)
        {
            if (tensors.Count == 0) throw new ArgumentException("no tensors to merge", nameof(tensors));
            if (weights.Count != tensors.Count) throw new ArgumentException($"{weights.Count} weights for {tensors.Count} tensors", nameof(weights));
        }

        private static void CheckDensity(double density)
        {
            if (!(density > 0 && density <= 1)) throw new ArgumentOutOfRangeException(nameof(density), density, "density must lie in (0, 1]");
        }
    }
}
