using System;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Merging
{
    /// <summary>Truncated SVD: the best rank-r approximation B·A of a dense delta (Eckart–Young).</summary>
    public static class LowRankFactorization
    {
        /// <summary>
        /// Factors <paramref name="delta"/> [out, in] as B [out, r] · A [r, in] with ΔW = U·S·Vᵀ, B = U_r·√S_r and
        /// A = √S_r·V_rᵀ (the singular values split evenly, so neither factor dwarfs the other). Computed in float64 and
        /// returned in float64. The error ‖ΔW − B·A‖ is exactly the discarded singular values: √(Σ_{k&gt;r} σ_k²) in the
        /// Frobenius norm, σ_{r+1} in the spectral norm.
        /// </summary>
        public static (Tensor A, Tensor B) Truncated(Tensor delta, int rank)
        {
            if (delta.dim() != 2) throw new ArgumentException($"expected a matrix, got shape [{string.Join(", ", delta.shape)}]", nameof(delta));
            long max = Math.Min(delta.shape[0], delta.shape[1]);
            if (rank < 1 || rank > max) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must lie in [1, {max}] for shape [{delta.shape[0]}, {delta.shape[1]}]");
            using var scope = NewDisposeScope();
            var (u, s, vh) = linalg.svd(delta.detach().to(float64), fullMatrices: false);
            var root = s.narrow(0, 0, rank).sqrt();
            var b = u.narrow(1, 0, rank).mul(root.unsqueeze(0));
            var a = vh.narrow(0, 0, rank).mul(root.unsqueeze(1));
            return (a.contiguous().MoveToOuterDisposeScope(), b.contiguous().MoveToOuterDisposeScope());
        }
    }
}
