using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// DoRA's own passes over raw float32 memory, rows shared between workers. Each replaces several libtorch
    /// operations:
    /// on two shared cores every parallel libtorch call waits for its OpenMP worker to be scheduled, so the small steps
    /// cost more in barriers than in work (benchmarks/README.md).
    /// </summary>
    /// <remarks>Loops are compiled fully optimised from their first call, as <see cref="LoRAKernels"/>' are.</remarks>
    internal static unsafe class DoRAKernels
    {
        private static readonly int Width = Vector256<float>.Count;

        /// <summary>
        /// n_o = ‖W_o + s·(B·A)_o‖ and g_o = m_o / n_o (1 where n_o = 0) for every row o of W [out, in], from
        /// ‖W_o‖² + 2s·⟨B_o, (W·Aᵀ)_o⟩ + s²·⟨B_o, (B·(A·Aᵀ))_o⟩, never forming B·A. The thin products come from the caller
        /// (GEMMs); the row norms are taken in float32 vectors with four accumulators, each row's combination in
        /// float64; a negative n² from cancellation is clamped to 0.
        /// </summary>
        /// <param name="w">W [out, in].</param>
        /// <param name="wa">W·Aᵀ [out, r].</param>
        /// <param name="b">B [out, r].</param>
        /// <param name="bg">B·(A·Aᵀ) [out, r].</param>
        /// <param name="m">m [out].</param>
        /// <param name="norm">n [out], written.</param>
        /// <param name="factor">g [out], written.</param>
        /// <param name="outF">Rows of W.</param>
        /// <param name="inF">Columns of W.</param>
        /// <param name="r">The rank.</param>
        /// <param name="s">The scaling s.</param>
        /// <param name="threads">Workers for the rows (chunks of 64 go to whichever asks next).</param>
        internal static void NormAndFactor(float* w, float* wa, float* b, float* bg, float* m, float* norm, float* factor, int outF, int inF, int r, double s, int threads) =>
            KernelWorkers.Spans(outF, 64, threads, (o0, o1) => NormRows(w, wa, b, bg, m, norm, factor, inF, r, s, (int)o0, (int)o1));

        // Rows [o0, o1) of NormAndFactor.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void NormRows(float* w, float* wa, float* b, float* bg, float* m, float* norm, float* factor, int inF, int r, double s,
            int o0, int o1)
        {
            for (int o = o0; o < o1; o++)
            {
                float* row = w + (long)o * inF, bRow = b + (long)o * r, waRow = wa + (long)o * r, bgRow = bg + (long)o * r;
                double squared = SquaredNorm(row, inF);
                double cross = 0, update = 0;
                for (int k = 0; k < r; k++)
                {
                    cross += bRow[k] * (double)waRow[k];
                    update += bRow[k] * (double)bgRow[k];
                }
                double n = Math.Sqrt(Math.Max(0, squared + 2 * s * cross + s * s * update));
                norm[o] = (float)n;
                factor[o] = n > 0 ? (float)(m[o] / (float)n) : 1f; // the float division DoRA.Factor does
            }
        }

        // Σ x², four independent vector accumulators (one would wait on its own latency at every step).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static double SquaredNorm(float* x, int count)
        {
            Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
            int j = 0;
            for (; j + 4 * Width <= count; j += 4 * Width)
            {
                var v0 = Vector256.Load(x + j);
                var v1 = Vector256.Load(x + j + Width);
                var v2 = Vector256.Load(x + j + 2 * Width);
                var v3 = Vector256.Load(x + j + 3 * Width);
                s0 = Vector256.FusedMultiplyAdd(v0, v0, s0);
                s1 = Vector256.FusedMultiplyAdd(v1, v1, s1);
                s2 = Vector256.FusedMultiplyAdd(v2, v2, s2);
                s3 = Vector256.FusedMultiplyAdd(v3, v3, s3);
            }
            for (; j + Width <= count; j += Width)
            {
                var v = Vector256.Load(x + j);
                s0 = Vector256.FusedMultiplyAdd(v, v, s0);
            }
            double total = Vector256.Sum(s0) + (double)Vector256.Sum(s1) + Vector256.Sum(s2) + Vector256.Sum(s3);
            for (; j < count; j++) total += x[j] * x[j];
            return total;
        }

        /// <summary>
        /// y[i, :] = g ⊙ z[i, :] + bias (bias may be null) for <paramref name="rows"/> rows of <paramref name="cols"/>,
        /// rows shared by up to <paramref name="threads"/> workers.
        /// </summary>
        internal static void ScaleRows(float* z, float* g, float* bias, float* y, long rows, int cols, int threads) =>
            KernelWorkers.Spans(rows, 64, threads, (i0, i1) => ScaleRows(z, g, bias, y, i0, i1, cols));

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void ScaleRows(float* z, float* g, float* bias, float* y, long i0, long i1, int cols)
        {
            int vectorEnd = cols - cols % Width;
            for (long i = i0; i < i1; i++)
            {
                float* zRow = z + i * cols, yRow = y + i * cols;
                int j = 0;
                if (bias == null)
                {
                    for (; j < vectorEnd; j += Width) (Vector256.Load(zRow + j) * Vector256.Load(g + j)).Store(yRow + j);
                    for (; j < cols; j++) yRow[j] = zRow[j] * g[j];
                }
                else
                {
                    for (; j < vectorEnd; j += Width)
                        Vector256.FusedMultiplyAdd(Vector256.Load(zRow + j), Vector256.Load(g + j), Vector256.Load(bias + j)).Store(yRow + j);
                    for (; j < cols; j++) yRow[j] = MathF.FusedMultiplyAdd(zRow[j], g[j], bias[j]);
                }
            }
        }

        /// <summary>
        /// dZ = dY ⊙ g (g broadcast over rows) and, when <paramref name="z"/> is given, corr += Σᵢ dY ⊙ z: one pass
        /// over dY and z, its rows cut into one contiguous part per worker (up to <paramref name="threads"/>), each
        /// summing into its own partial, the partials added in order: the result does not depend on which worker ran
        /// which part.
        /// </summary>
        internal static void ScaleAndCorrelate(float* dY, float* g, float* z, float* dZ, float* corr, long rows, int cols, int threads)
        {
            long parts = Math.Max(1, Math.Min(threads, rows)), span = (rows + parts - 1) / parts;
            if (parts == 1 || z == null)
            {
                KernelWorkers.Spans(rows, Math.Max(64, span), threads, (i0, i1) => ScaleAndCorrelate(dY, g, z, dZ, corr, i0, i1, cols));
                return;
            }
            var partials = (float*)NativeMemory.AllocZeroed((nuint)(parts * cols), sizeof(float));
            try
            {
                KernelWorkers.Spans(rows, span, threads, (i0, i1) => ScaleAndCorrelate(dY, g, z, dZ, partials + i0 / span * cols, i0, i1, cols));
                for (long part = 0; part < parts; part++)
                    for (int j = 0; j < cols; j++) corr[j] += partials[part * cols + j];
            }
            finally
            {
                NativeMemory.Free(partials);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void ScaleAndCorrelate(float* dY, float* g, float* z, float* dZ, float* corr, long i0, long i1, int cols)
        {
            int vectorEnd = cols - cols % Width;
            for (long i = i0; i < i1; i++)
            {
                float* dyRow = dY + i * cols, dzRow = dZ + i * cols, zRow = z == null ? null : z + i * cols;
                int j = 0;
                if (zRow == null)
                {
                    for (; j < vectorEnd; j += Width) (Vector256.Load(dyRow + j) * Vector256.Load(g + j)).Store(dzRow + j);
                }
                else
                {
                    for (; j < vectorEnd; j += Width)
                    {
                        var dy = Vector256.Load(dyRow + j);
                        (dy * Vector256.Load(g + j)).Store(dzRow + j);
                        Vector256.FusedMultiplyAdd(dy, Vector256.Load(zRow + j), Vector256.Load(corr + j)).Store(corr + j);
                    }
                }
                for (; j < cols; j++)
                {
                    dzRow[j] = dyRow[j] * g[j];
                    if (zRow != null) corr[j] = MathF.FusedMultiplyAdd(dyRow[j], zRow[j], corr[j]);
                }
            }
        }

        /// <summary>m's gradient from the correlation: corr_o / n_o where n_o &gt; 0, else 0 (there g is the constant 1).</summary>
        internal static void MagnitudeGradient(float* corr, float* norm, float* dm, int outF)
        {
            for (int o = 0; o < outF; o++) dm[o] = norm[o] > 0 ? corr[o] / norm[o] : 0f;
        }

        /// <summary>Elements per chunk of the mask passes: the scaled mask of a chunk lives on the stack.</summary>
        private const int MaskChunk = 4096;

        /// <summary>
        /// xd = x ⊙ k and e = x − xd for elements [0, <paramref name="count"/>), k the scaled dropout mask (0 where
        /// dropped, 1 / (1 − p) elsewhere): the dropped input and the part of x the dropout removed, in one pass;
        /// <paramref name="e"/> may be null when only xd is wanted.
        /// </summary>
        internal static void SplitDropped(DropoutMask mask, float* x, float* xd, float* e, long count, int threads) =>
            KernelWorkers.Spans(count, MaskSpan, threads, (first, end) => SplitDropped(mask, x, xd, e, first, end));

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void SplitDropped(DropoutMask mask, float* x, float* xd, float* e, long first, long count)
        {
            float* k = stackalloc float[MaskChunk];
            for (long start = first; start < count; start += MaskChunk)
            {
                int len = (int)Math.Min(MaskChunk, count - start);
                mask.Fill(k, start, len);
                float* xs = x + start, xds = xd + start, es = e + start;
                int i = 0;
                for (; i + 8 <= len; i += 8)
                {
                    var xv = Vector256.Load(xs + i);
                    var dropped = xv * Vector256.Load(k + i);
                    dropped.Store(xds + i);
                    if (e != null) (xv - dropped).Store(es + i);
                }
                for (; i < len; i++)
                {
                    float dropped = xs[i] * k[i];
                    xds[i] = dropped;
                    if (e != null) es[i] = xs[i] - dropped;
                }
            }
        }

        /// <summary>
        /// dX = dE + k ⊙ (dXd − dE), written over <paramref name="dXd"/>, for elements [0, <paramref name="count"/>): the
        /// input gradient of x through e = x − x ⊙ k (dE) and through xd = x ⊙ k (dXd).
        /// </summary>
        internal static void MergeDropped(DropoutMask mask, float* dE, float* dXd, long count, int threads) =>
            KernelWorkers.Spans(count, MaskSpan, threads, (first, end) => MergeDropped(mask, dE, dXd, first, end));

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void MergeDropped(DropoutMask mask, float* dE, float* dXd, long first, long count)
        {
            float* k = stackalloc float[MaskChunk];
            for (long start = first; start < count; start += MaskChunk)
            {
                int len = (int)Math.Min(MaskChunk, count - start);
                mask.Fill(k, start, len);
                float* de = dE + start, dxd = dXd + start;
                int i = 0;
                for (; i + 8 <= len; i += 8)
                {
                    var dev = Vector256.Load(de + i);
                    Vector256.FusedMultiplyAdd(Vector256.Load(k + i), Vector256.Load(dxd + i) - dev, dev).Store(dxd + i);
                }
                for (; i < len; i++) dxd[i] = de[i] + k[i] * (dxd[i] - de[i]);
            }
        }

        /// <summary>Elements per work item of the mask passes when they are shared: 64 mask chunks (1 MiB of floats, a multiple of the mask's block).</summary>
        private const long MaskSpan = 64L * MaskChunk;
    }
}
