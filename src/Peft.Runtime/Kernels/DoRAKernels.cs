using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// DoRA's own passes over raw float32 memory (the norm's rows shared between workers, the rest on the calling
    /// thread). Each replaces several libtorch operations:
    /// on two shared cores every parallel libtorch call waits for its OpenMP worker to be scheduled, so the small steps
    /// cost more in barriers than in work (benchmarks/README.md).
    /// </summary>
    /// <remarks>Loops are compiled fully optimised from their first call, as <see cref="LoRAKernels"/>' are.</remarks>
    internal static unsafe class DoRAKernels
    {
        private static readonly int Width = Vector256<float>.Count;

        /// <summary>
        /// n_o = ‖W_o + s·(B·A)_o‖ and g_o = m_o / n_o (1 where n_o = 0) for every row o of W [out, in], from
        /// ‖W_o‖² + 2s·Σₖ B[o,k]·(W·Aᵀ)[o,k] + s²·Σₖₗ B[o,k]·B[o,l]·(A·Aᵀ)[k,l], never forming B·A. The row sums are
        /// taken in float32 vectors, the combination in float64; a negative n² from cancellation is clamped to 0.
        /// </summary>
        /// <param name="w">W [out, in].</param>
        /// <param name="a">A [r, in].</param>
        /// <param name="b">B [out, r].</param>
        /// <param name="m">m [out].</param>
        /// <param name="norm">n [out], written.</param>
        /// <param name="factor">g [out], written.</param>
        /// <param name="outF">Rows of W.</param>
        /// <param name="inF">Columns of W and A.</param>
        /// <param name="r">The rank.</param>
        /// <param name="s">The scaling s.</param>
        /// <param name="threads">Workers for the rows (chunks of 64 go to whichever asks next).</param>
        internal static void NormAndFactor(float* w, float* a, float* b, float* m, float* norm, float* factor, int outF, int inF, int r, double s, int threads)
        {
            var gram = new double[r * r];                      // A·Aᵀ
            for (int k = 0; k < r; k++)
                for (int l = k; l < r; l++)
                    gram[k * r + l] = gram[l * r + k] = Dot(a + (long)k * inF, a + (long)l * inF, inF);
            KernelWorkers.Spans(outF, 64, threads, (o0, o1) => NormRows(w, a, b, m, norm, factor, inF, r, s, gram, (int)o0, (int)o1));
        }

        // Rows [o0, o1) of NormAndFactor, given A·Aᵀ.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void NormRows(float* w, float* a, float* b, float* m, float* norm, float* factor, int inF, int r, double s,
            double[] gram, int o0, int o1)
        {
            var wa = new double[r];                            // (W·Aᵀ)_o
            for (int o = o0; o < o1; o++)
            {
                float* row = w + (long)o * inF, bRow = b + (long)o * r;
                double squared = Dot(row, row, inF);
                RowTimesFactors(row, a, inF, r, wa);
                double cross = 0, update = 0;
                for (int k = 0; k < r; k++)
                {
                    cross += bRow[k] * wa[k];
                    double gk = 0;
                    for (int l = 0; l < r; l++) gk += gram[k * r + l] * bRow[l];
                    update += bRow[k] * gk;
                }
                double n = Math.Sqrt(Math.Max(0, squared + 2 * s * cross + s * s * update));
                norm[o] = (float)n;
                factor[o] = n > 0 ? (float)(m[o] / (float)n) : 1f; // the float division DoRA.Factor does
            }
        }

        /// <summary>y[i, :] = g ⊙ z[i, :] + bias (bias may be null) for <paramref name="rows"/> rows of <paramref name="cols"/>.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        internal static void ScaleRows(float* z, float* g, float* bias, float* y, long rows, int cols)
        {
            int vectorEnd = cols - cols % Width;
            for (long i = 0; i < rows; i++)
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
        /// over dY and z.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        internal static void ScaleAndCorrelate(float* dY, float* g, float* z, float* dZ, float* corr, long rows, int cols)
        {
            int vectorEnd = cols - cols % Width;
            for (long i = 0; i < rows; i++)
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

        // out[k] = Σⱼ row[j]·A[k, j] for every k, four factors per pass over the row (the row stays in L1).
        private static void RowTimesFactors(float* row, float* a, int inF, int r, double[] result)
        {
            int vectorEnd = inF - inF % Width;
            int k = 0;
            for (; k + 4 <= r; k += 4)
            {
                float* a0 = a + (long)k * inF, a1 = a0 + inF, a2 = a1 + inF, a3 = a2 + inF;
                Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
                int j = 0;
                for (; j < vectorEnd; j += Width)
                {
                    var x = Vector256.Load(row + j);
                    s0 = Vector256.FusedMultiplyAdd(x, Vector256.Load(a0 + j), s0);
                    s1 = Vector256.FusedMultiplyAdd(x, Vector256.Load(a1 + j), s1);
                    s2 = Vector256.FusedMultiplyAdd(x, Vector256.Load(a2 + j), s2);
                    s3 = Vector256.FusedMultiplyAdd(x, Vector256.Load(a3 + j), s3);
                }
                double t0 = Vector256.Sum(s0), t1 = Vector256.Sum(s1), t2 = Vector256.Sum(s2), t3 = Vector256.Sum(s3);
                for (; j < inF; j++)
                {
                    t0 += row[j] * a0[j];
                    t1 += row[j] * a1[j];
                    t2 += row[j] * a2[j];
                    t3 += row[j] * a3[j];
                }
                result[k] = t0;
                result[k + 1] = t1;
                result[k + 2] = t2;
                result[k + 3] = t3;
            }
            for (; k < r; k++) result[k] = Dot(row, a + (long)k * inF, inF);
        }

        private static double Dot(float* x, float* y, int count)
        {
            int vectorEnd = count - count % Width;
            Vector256<float> sum = default;
            int j = 0;
            for (; j < vectorEnd; j += Width) sum = Vector256.FusedMultiplyAdd(Vector256.Load(x + j), Vector256.Load(y + j), sum);
            double total = Vector256.Sum(sum);
            for (; j < count; j++) total += x[j] * y[j];
            return total;
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
