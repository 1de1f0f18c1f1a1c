using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// One adapter's rows of a mixed batch over raw float32 memory: x [n, in] (read at the listed rows), A [r, in], B
    /// packed as Bᵀ panels (<see cref="LoRAKernels.PackTransposed"/>), c = s.
    /// </summary>
    internal unsafe struct LoRARowGroup
    {
        internal float* X, A, BtPanels, B;
        internal long* Rows;
        internal long Count;
        internal int In, Out, Rank;
        internal float Scale;
    }

    /// <summary>
    /// A mixed batch's thin products written out by hand: each adapter's rows read where they lie in x and their
    /// s·(x·Aᵀ)·Bᵀ written into the same rows of the output buffer, before libtorch's GEMM adds x·Wᵀ to every row in
    /// place. No gathered copy of x, no temporary, no scatter. (One adapter on every row is three GEMMs instead, which
    /// libtorch does faster: <see cref="LoRAFunction"/>.)
    /// </summary>
    /// <remarks>
    /// One generic body serves both vector widths (<see cref="ISimdFloat{TSelf}"/>: eight floats with AVX2, sixteen with
    /// AVX-512). Rows go in blocks of four (a missing row of the last block reads a zero row and writes a scratch row).
    /// u = x·Aᵀ is reduced over the columns, four rows against several rank rows at once (four with AVX-512's 32
    /// registers, two with AVX2's 16); y = init + c·u·Bᵀ is accumulated over the rank, two vectors per row, from Bᵀ
    /// packed as panels of one vector's width ([out / w][r][w], once per group and call): rows of Bᵀ lie out floats
    /// apart, so at out = 1024 the r rows a column chunk needs would all fall in one L1 set and evict each other. The
    /// loops are compiled fully optimised from their first call (<c>AggressiveOptimization</c>): unoptimised first-tier
    /// code inlines no vector helper and runs ten times slower.
    /// </remarks>
    internal static unsafe class LoRAKernels
    {
        private const int Block = 4;

        /// <summary>Floats per vector of the loops that run here.</summary>
        internal static int Width => Wide ? 16 : 8;

        /// <summary>
        /// Bᵀ of <paramref name="b"/> [out, r] as panels [out / w][r][w] (w = <see cref="Width"/>), in aligned native
        /// memory the caller frees with <see cref="NativeMemory.AlignedFree"/>; the last out mod w columns are not
        /// packed (the loops read them from B).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        internal static float* PackTransposed(float* b, int o, int r)
        {
            int w = Width, chunks = o / w;
            var panels = (float*)NativeMemory.AlignedAlloc((nuint)((long)Math.Max(1, chunks) * r * w * sizeof(float)), 64);
            // A panel row is one column of w consecutive rows of B, r floats apart: one vector gather each (a scalar
            // copy took as long as the group's whole thin product at 64 rows).
            if (Avx2.IsSupported && w % 8 == 0)
            {
                var index = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * r;
                for (int chunk = 0; chunk < chunks; chunk++)
                {
                    float* panel = panels + (long)chunk * r * w, rows = b + (long)chunk * w * r;
                    for (int k = 0; k < r; k++)
                        for (int half = 0; half < w; half += 8)
                            Avx2.GatherVector256(rows + (long)half * r + k, index, 4).Store(panel + k * w + half);
                }
            }
            else
            {
                for (int chunk = 0; chunk < chunks; chunk++)
                {
                    float* panel = panels + (long)chunk * r * w;
                    for (int l = 0; l < w; l++)
                    {
                        float* row = b + (long)(chunk * w + l) * r;
                        for (int k = 0; k < r; k++) panel[k * w + l] = row[k];
                    }
                }
            }
            return panels;
        }

        /// <summary>Rows [row0, row1) of group <paramref name="g"/>: y[rows[i], :] = init + c·(x[rows[i], :]·Aᵀ)·Bᵀ.</summary>
        /// <param name="g">The group.</param>
        /// <param name="bias">[out] as every row's init, or null (zero).</param>
        /// <param name="y">[n, out] output.</param>
        /// <param name="row0">First of the group's rows.</param>
        /// <param name="row1">One past the last.</param>
        internal static void Forward(in LoRARowGroup g, float* bias, float* y, long row0, long row1)
        {
            if (Wide) Forward<Simd512>(g, bias, y, row0, row1);
            else Forward<Simd256>(g, bias, y, row0, row1);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Forward<V>(in LoRARowGroup g, float* bias, float* y, long row0, long row1)
            where V : struct, ISimdFloat<V>
        {
            int d = g.In, o = g.Out, r = g.Rank;
            int wide = Math.Max(d, o);
            using var s = new Scratch(wide + Block * o + 2 * Block * r, wide);
            float* zero = s.Floats, dump = zero + wide, ub = dump + Block * o, cu = ub + Block * r;
            float c = g.Scale;
            float* btPanels = g.BtPanels;
            float** xr = stackalloc float*[Block];
            float** yr = stackalloc float*[Block];
            float* init = bias != null ? bias : zero;

            for (long i0 = row0; i0 < row1; i0 += Block)
            {
                int rows = (int)Math.Min(Block, row1 - i0);
                for (int t = 0; t < Block; t++)
                {
                    if (t >= rows)
                    {
                        xr[t] = zero;
                        yr[t] = dump + t * o;
                        continue;
                    }
                    long at = g.Rows[i0 + t];
                    xr[t] = g.X + at * d;
                    yr[t] = y + at * o;
                }

                RowsTimesRowsT<V>(xr[0], xr[1], xr[2], xr[3], g.A, r, d, zero, ub);
                for (int t = 0; t < Block; t++)
                    for (int k = 0; k < r; k++)
                        cu[t * r + k] = t < rows ? c * ub[t * r + k] : 0f;

                // y = init + c·u·Bᵀ: two vectors of four rows at a time, accumulated over the rank.
                int w = V.Count;
                float* i0p = init, i1p = init, i2p = init, i3p = init;
                float* y0 = yr[0], y1 = yr[1], y2 = yr[2], y3 = yr[3];
                float* c0 = cu, c1 = cu + r, c2 = cu + 2 * r, c3 = cu + 3 * r;
                int jo = 0;
                for (; jo + 2 * w <= o; jo += 2 * w)
                {
                    V v0 = V.Load(i0p + jo), v1 = V.Load(i1p + jo), v2 = V.Load(i2p + jo), v3 = V.Load(i3p + jo);
                    V w0 = V.Load(i0p + jo + w), w1 = V.Load(i1p + jo + w), w2 = V.Load(i2p + jo + w), w3 = V.Load(i3p + jo + w);
                    float* bt = btPanels + (long)jo * r; // panel jo / w starts at (jo / w)·r·w
                    float* bt2 = bt + (long)r * w;
                    for (int k = 0; k < r; k++, bt += w, bt2 += w)
                    {
                        V ba = V.Load(bt), bb = V.Load(bt2);
                        var q = V.Broadcast(c0[k]);
                        v0 = V.MultiplyAdd(q, ba, v0);
                        w0 = V.MultiplyAdd(q, bb, w0);
                        q = V.Broadcast(c1[k]);
                        v1 = V.MultiplyAdd(q, ba, v1);
                        w1 = V.MultiplyAdd(q, bb, w1);
                        q = V.Broadcast(c2[k]);
                        v2 = V.MultiplyAdd(q, ba, v2);
                        w2 = V.MultiplyAdd(q, bb, w2);
                        q = V.Broadcast(c3[k]);
                        v3 = V.MultiplyAdd(q, ba, v3);
                        w3 = V.MultiplyAdd(q, bb, w3);
                    }
                    v0.Store(y0 + jo);
                    v1.Store(y1 + jo);
                    v2.Store(y2 + jo);
                    v3.Store(y3 + jo);
                    w0.Store(y0 + jo + w);
                    w1.Store(y1 + jo + w);
                    w2.Store(y2 + jo + w);
                    w3.Store(y3 + jo + w);
                }
                for (; jo < o; jo++)
                {
                    float v0 = i0p[jo], v1 = i1p[jo], v2 = i2p[jo], v3 = i3p[jo];
                    for (int k = 0; k < r; k++)
                    {
                        float bv = g.B[(long)jo * r + k];
                        v0 += c0[k] * bv;
                        v1 += c1[k] * bv;
                        v2 += c2[k] * bv;
                        v3 += c3[k] * bv;
                    }
                    y0[jo] = v0;
                    y1[jo] = v1;
                    y2[jo] = v2;
                    y3[jo] = v3;
                }
            }
        }

        // result[t·r + k] = Σ_j rows_t[j]·m[k, j] for four rows against the r rows of m ([r, len]), several rank rows
        // per pass: four with 512-bit vectors (16 accumulators of AVX-512's 32 registers), two with 256-bit ones
        // (AVX2 has 16 registers, and four would spill); a rank row past r reads the zero row.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void RowsTimesRowsT<V>(float* x0, float* x1, float* x2, float* x3, float* m, int r, int len, float* zero, float* result)
            where V : struct, ISimdFloat<V>
        {
            int w = V.Count;
            int kb = w >= 16 ? 4 : 2;
            float* sums = stackalloc float[16]; // [row][4]
            for (int k0 = 0; k0 < r; k0 += kb)
            {
                float* m0 = m + (long)k0 * len;
                float* m1 = k0 + 1 < r ? m0 + len : zero;
                float* m2 = kb == 4 && k0 + 2 < r ? m0 + 2L * len : zero;
                float* m3 = kb == 4 && k0 + 3 < r ? m0 + 3L * len : zero;
                V s00 = default, s01 = default, s02 = default, s03 = default;
                V s10 = default, s11 = default, s12 = default, s13 = default;
                V s20 = default, s21 = default, s22 = default, s23 = default;
                V s30 = default, s31 = default, s32 = default, s33 = default;
                int j = 0;
                for (; j + w <= len; j += w)
                {
                    V a0 = V.Load(x0 + j), a1 = V.Load(x1 + j), a2 = V.Load(x2 + j), a3 = V.Load(x3 + j);
                    var b = V.Load(m0 + j);
                    s00 = V.MultiplyAdd(a0, b, s00);
                    s10 = V.MultiplyAdd(a1, b, s10);
                    s20 = V.MultiplyAdd(a2, b, s20);
                    s30 = V.MultiplyAdd(a3, b, s30);
                    b = V.Load(m1 + j);
                    s01 = V.MultiplyAdd(a0, b, s01);
                    s11 = V.MultiplyAdd(a1, b, s11);
                    s21 = V.MultiplyAdd(a2, b, s21);
                    s31 = V.MultiplyAdd(a3, b, s31);
                    if (kb == 4)
                    {
                        b = V.Load(m2 + j);
                        s02 = V.MultiplyAdd(a0, b, s02);
                        s12 = V.MultiplyAdd(a1, b, s12);
                        s22 = V.MultiplyAdd(a2, b, s22);
                        s32 = V.MultiplyAdd(a3, b, s32);
                        b = V.Load(m3 + j);
                        s03 = V.MultiplyAdd(a0, b, s03);
                        s13 = V.MultiplyAdd(a1, b, s13);
                        s23 = V.MultiplyAdd(a2, b, s23);
                        s33 = V.MultiplyAdd(a3, b, s33);
                    }
                }
                sums[0] = V.Sum(s00); sums[1] = V.Sum(s01);
                sums[4] = V.Sum(s10); sums[5] = V.Sum(s11);
                sums[8] = V.Sum(s20); sums[9] = V.Sum(s21);
                sums[12] = V.Sum(s30); sums[13] = V.Sum(s31);
                if (kb == 4)
                {
                    sums[2] = V.Sum(s02); sums[3] = V.Sum(s03);
                    sums[6] = V.Sum(s12); sums[7] = V.Sum(s13);
                    sums[10] = V.Sum(s22); sums[11] = V.Sum(s23);
                    sums[14] = V.Sum(s32); sums[15] = V.Sum(s33);
                }
                else
                {
                    sums[2] = sums[3] = sums[6] = sums[7] = 0;
                    sums[10] = sums[11] = sums[14] = sums[15] = 0;
                }
                for (; j < len; j++)
                {
                    float a0 = x0[j], a1 = x1[j], a2 = x2[j], a3 = x3[j];
                    float b0 = m0[j], b1 = m1[j], b2 = m2[j], b3 = m3[j];
                    sums[0] += a0 * b0; sums[1] += a0 * b1; sums[2] += a0 * b2; sums[3] += a0 * b3;
                    sums[4] += a1 * b0; sums[5] += a1 * b1; sums[6] += a1 * b2; sums[7] += a1 * b3;
                    sums[8] += a2 * b0; sums[9] += a2 * b1; sums[10] += a2 * b2; sums[11] += a2 * b3;
                    sums[12] += a3 * b0; sums[13] += a3 * b1; sums[14] += a3 * b2; sums[15] += a3 * b3;
                }
                for (int t = 0; t < Block; t++)
                    for (int kk = 0; kk < kb && k0 + kk < r; kk++)
                        result[t * r + k0 + kk] = sums[t * 4 + kk];
            }
        }

        /// <summary>Whether the 512-bit loops run (AVX-512 hardware, unless a test asks for the 256-bit ones).</summary>
        internal static bool Wide => Vector512.IsHardwareAccelerated && !ForceNarrow;

        /// <summary>Tests set this to run the 256-bit loops on AVX-512 hardware too.</summary>
        internal static bool ForceNarrow { get; set; }

        // Aligned native scratch, freed on dispose: floats whose first `zeroed` are zero (the zero row).
        private readonly struct Scratch : IDisposable
        {
            internal readonly float* Floats;

            internal Scratch(long floats, long zeroed)
            {
                Floats = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float) + 64), 64);
                NativeMemory.Clear(Floats, (nuint)(zeroed * sizeof(float)));
            }

            public void Dispose() => NativeMemory.AlignedFree(Floats);
        }
    }
}
