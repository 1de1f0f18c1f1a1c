using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Peft.Runtime.Kernels
{
    /// <summary>Short vector loops over one rank-r row: the work done per dropped element.</summary>
    internal static unsafe class LowRankLoops
    {
        /// <summary>y[k] += a·x[k] for k &lt; r.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        internal static void Axpy(float* y, float* x, float a, int r)
        {
            int k = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                var va = Vector256.Create(a);
                for (; k + 8 <= r; k += 8)
                    Vector256.Store(Vector256.FusedMultiplyAdd(va, Vector256.Load(x + k), Vector256.Load(y + k)), y + k);
            }
            for (; k < r; k++) y[k] += a * x[k];
        }

        /// <summary>Σ a[k]·b[k] for k &lt; r.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        internal static float Dot(float* a, float* b, int r)
        {
            int k = 0;
            float sum = 0;
            if (Vector256.IsHardwareAccelerated && r >= 8)
            {
                var acc = Vector256<float>.Zero;
                for (; k + 8 <= r; k += 8)
                    acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + k), Vector256.Load(b + k), acc);
                sum = Vector256.Sum(acc);
            }
            for (; k < r; k++) sum += a[k] * b[k];
            return sum;
        }
    }

    /// <summary>Forward: u[i, :] −= x[i, j]·Aᵀ[j, :] for each dropped (i, j), turning x·Aᵀ into (x ⊙ keep)·Aᵀ.</summary>
    internal unsafe struct DropForwardVisitor : IDroppedVisitor
    {
        internal float* X, U, At;
        internal long Cols;
        internal int Rank;

        public void Visit(long row, long col)
        {
            float xv = X[row * Cols + col];
            if (xv != 0) LowRankLoops.Axpy(U + row * Rank, At + col * Rank, -xv, Rank);
        }
    }

    /// <summary>
    /// Backward: for each dropped (i, j), dAᵀ[j, :] −= x[i, j]·g[i, :] (turning xᵀg into (x ⊙ keep)ᵀg) and
    /// dX[i, j] −= g[i, :]·Aᵀ[j, :] (turning g·A into (g·A) ⊙ keep); g already carries s / (1 − p).
    /// </summary>
    internal unsafe struct DropBackwardVisitor : IDroppedVisitor
    {
        internal float* X, G, At, DAt, DX;
        internal long Cols;
        internal int Rank;

        public void Visit(long row, long col)
        {
            float* g = G + row * Rank;
            long at = row * Cols + col;
            if (DAt != null)
            {
                float xv = X[at];
                if (xv != 0) LowRankLoops.Axpy(DAt + col * Rank, g, -xv, Rank);
            }
            if (DX != null) DX[at] -= LowRankLoops.Dot(g, At + col * Rank, Rank);
        }
    }
}
