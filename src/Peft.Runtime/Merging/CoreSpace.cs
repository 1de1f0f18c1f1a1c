using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Merging
{
    /// <summary>
    /// Core Space merging (Panariello et al., 2025) of one layer's LoRA sources ΔWᵢ = Bᵢ·Aᵢ (scaling folded into Bᵢ):
    /// reference bases from thin SVDs of the stacked factors, each source as a small core matrix, any merge method on the
    /// cores, and the result back as a LoRA of rank ≤ R = Σ rᵢ. Nothing of size [out, in] is formed.
    /// </summary>
    public static class CoreSpace
    {
        /// <summary>
        /// The reference bases: U_ref [out, m'] = the left singular vectors of [B₁ … B_T] and V_ref [m, in] = the right
        /// singular vectors (as rows) of [A₁; …; A_T], m' = min(out, R), m = min(R, in). col(Bᵢ) ⊆ col(U_ref) and
        /// row(Aᵢ) ⊆ row(V_ref), so U_ref·U_refᵀ·Bᵢ = Bᵢ and Aᵢ·V_refᵀ·V_ref = Aᵢ.
        /// </summary>
        public static (Tensor U, Tensor V) Bases(IReadOnlyList<Tensor> a, IReadOnlyList<Tensor> b)
        {
            if (a.Count == 0 || a.Count != b.Count) throw new ArgumentException($"{a.Count} A factors for {b.Count} B factors", nameof(a));
            var (u, _, _) = linalg.svd(cat(b.ToArray(), 1), fullMatrices: false);
            var (_, _, vh) = linalg.svd(cat(a.ToArray(), 0), fullMatrices: false);
            return (u, vh);
        }

        /// <summary>The core matrix Mᵢ = U_refᵀ·Bᵢ·Aᵢ·V_refᵀ [m', m], computed as (U_refᵀ·Bᵢ)·(Aᵢ·V_refᵀ); U_ref·Mᵢ·V_ref = Bᵢ·Aᵢ exactly.</summary>
        public static Tensor Core(Tensor u, Tensor v, Tensor a, Tensor b) => matmul(matmul(u.t(), b), matmul(a, v.t()));

        /// <summary>
        /// Merges the sources in core space: the cores Mᵢ combined by <paramref name="method"/> (the weights, density,
        /// generator and common fraction as <see cref="DeltaMerge.Combine"/> takes them) into M, and the LoRA
        /// A = V_ref, B = U_ref·M — exactly U_ref·M·V_ref (A = M·V_ref, B = U_ref where M is wide, m' &lt; m: the rank is
        /// min(m', m) ≤ min(out, in)). With 0 &lt; <paramref name="rank"/> &lt; min(m', m), M is first
        /// truncated by an SVD of its own (m'×m, not out×in): M ≈ P·Q, A = Q·V_ref, B = U_ref·P.
        /// </summary>
        /// <param name="a">The sources' A factors [rᵢ, in].</param>
        /// <param name="b">The sources' B factors [out, rᵢ], scaling folded in.</param>
        /// <param name="method">Any method but WIDEN and LoRA-LEGO.</param>
        /// <param name="weights">One weight per source.</param>
        /// <param name="density">For TIES, DARE and magnitude pruning (on the core entries).</param>
        /// <param name="generator">For DARE.</param>
        /// <param name="commonFraction">For Iso-CTS.</param>
        /// <param name="rank">0 keeps the full core.</param>
        public static (Tensor A, Tensor B) Merge(
            IReadOnlyList<Tensor> a, IReadOnlyList<Tensor> b, MergeMethod method, IReadOnlyList<double> weights,
            double density, Generator? generator, double commonFraction = 0.8, int rank = 0)
        {
            if (!MergeSpec.RunsInCoreSpace(method)) throw new ArgumentException($"{method} cannot run in core space", nameof(method));
            using var scope = NewDisposeScope();
            var (u, v) = Bases(a, b);
            var cores = a.Select((ai, i) => Core(u, v, ai, b[i])).ToList();
            var merged = DeltaMerge.Combine(method, cores, weights, density, generator, commonFraction);
            Tensor outA, outB;
            if (rank > 0 && rank < Math.Min(merged.shape[0], merged.shape[1]))
            {
                var (q, p) = LowRankFactorization.Truncated(merged, rank);
                (outA, outB) = (matmul(q, v), matmul(u, p));
            }
            else if (merged.shape[0] < merged.shape[1])
            {
                (outA, outB) = (matmul(merged, v), u); // m' < m (out < R): the rank is m', still exact
            }
            else
            {
                (outA, outB) = (v, matmul(u, merged));
            }
            return (outA.contiguous().MoveToOuterDisposeScope(), outB.contiguous().MoveToOuterDisposeScope());
        }
    }
}
