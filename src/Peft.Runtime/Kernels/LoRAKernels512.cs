using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Peft.Runtime.Kernels
{
    // The same loops as LoRAKernels' 256-bit ones, sixteen columns per vector, with register blocking against the
    // latency of fused multiply-adds: four rows × four rank components per pass over a row (16 accumulators) where a
    // product is reduced over the columns, two vectors per row where outputs are accumulated over the rank.
    internal static unsafe partial class LoRAKernels
    {
        private const int KBlock = 4;
        private static readonly Vector512<uint> LaneBits16 =
            Vector512.Create(1u, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768);

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Forward512(in LoRAProblem p, float* bias, float* previous, float* u, float* y, long row0, long row1)
        {
            int d = p.In, o = p.Out, r = p.Rank;
            bool drop = p.Mask.DropsAny;
            int words = RowWords(d);
            int wide = Math.Max(d, o);
            using var s = new Scratch(wide + Block * d + Block * o + 2 * Block * r + r, Block * words + words + 1, wide);
            float* zero = s.Floats, xm = zero + wide, dump = xm + Block * d, ub = dump + Block * o, cu = ub + Block * r, uDump = cu + Block * r;
            ulong* rowBits = s.Words, raw = rowBits + Block * words;
            float c = p.Scale;
            using var panels = new Panels(p.Bt, r, o, gradient: false); // Bᵀ as 16-column panels, as A in backward
            float* btPanels = panels.Packed;
            float** xr = stackalloc float*[Block];
            float** init = stackalloc float*[Block];
            float** yr = stackalloc float*[Block];

            for (long i0 = row0; i0 < row1; i0 += Block)
            {
                int rows = (int)Math.Min(Block, row1 - i0);
                for (int t = 0; t < Block; t++)
                {
                    long i = i0 + t;
                    if (t >= rows)
                    {
                        xr[t] = zero;
                        init[t] = zero;
                        yr[t] = dump + t * o;
                        continue;
                    }
                    float* src = p.X + i * d;
                    if (drop)
                    {
                        p.Mask.RowBits(i * d, d, rowBits + t * words, raw);
                        MaskRow512(src, xm + t * d, rowBits + t * words, d);
                        xr[t] = xm + t * d;
                    }
                    else xr[t] = src;
                    init[t] = previous != null ? previous + i * o : bias != null ? bias : zero;
                    yr[t] = y + i * o;
                }

                RowsTimesRowsT(xr[0], xr[1], xr[2], xr[3], p.A, r, d, zero, ub);
                for (int t = 0; t < Block; t++)
                {
                    float* dst = t < rows ? u + (i0 + t) * r : uDump;
                    for (int k = 0; k < r; k++)
                    {
                        dst[k] = ub[t * r + k];
                        cu[t * r + k] = t < rows ? c * ub[t * r + k] : 0f;
                    }
                }

                // y = init + c·u·Bᵀ: two vectors of four rows at a time, accumulated over the rank.
                float* i0p = init[0], i1p = init[1], i2p = init[2], i3p = init[3];
                float* y0 = yr[0], y1 = yr[1], y2 = yr[2], y3 = yr[3];
                float* c0 = cu, c1 = cu + r, c2 = cu + 2 * r, c3 = cu + 3 * r;
                int jo = 0;
                for (; jo + 32 <= o; jo += 32)
                {
                    Vector512<float> v0 = Vector512.Load(i0p + jo), v1 = Vector512.Load(i1p + jo), v2 = Vector512.Load(i2p + jo), v3 = Vector512.Load(i3p + jo);
                    Vector512<float> w0 = Vector512.Load(i0p + jo + 16), w1 = Vector512.Load(i1p + jo + 16), w2 = Vector512.Load(i2p + jo + 16), w3 = Vector512.Load(i3p + jo + 16);
                    float* bt = btPanels + (long)(jo >> 4) * r * 16;
                    float* bt2 = bt + (long)r * 16;
                    for (int k = 0; k < r; k++, bt += 16, bt2 += 16)
                    {
                        Vector512<float> ba = Vector512.Load(bt), bb = Vector512.Load(bt2);
                        var q = Vector512.Create(c0[k]);
                        v0 = Vector512.FusedMultiplyAdd(q, ba, v0);
                        w0 = Vector512.FusedMultiplyAdd(q, bb, w0);
                        q = Vector512.Create(c1[k]);
                        v1 = Vector512.FusedMultiplyAdd(q, ba, v1);
                        w1 = Vector512.FusedMultiplyAdd(q, bb, w1);
                        q = Vector512.Create(c2[k]);
                        v2 = Vector512.FusedMultiplyAdd(q, ba, v2);
                        w2 = Vector512.FusedMultiplyAdd(q, bb, w2);
                        q = Vector512.Create(c3[k]);
                        v3 = Vector512.FusedMultiplyAdd(q, ba, v3);
                        w3 = Vector512.FusedMultiplyAdd(q, bb, w3);
                    }
                    v0.Store(y0 + jo);
                    v1.Store(y1 + jo);
                    v2.Store(y2 + jo);
                    v3.Store(y3 + jo);
                    w0.Store(y0 + jo + 16);
                    w1.Store(y1 + jo + 16);
                    w2.Store(y2 + jo + 16);
                    w3.Store(y3 + jo + 16);
                }
                for (; jo < o; jo++)
                {
                    float v0 = i0p[jo], v1 = i1p[jo], v2 = i2p[jo], v3 = i3p[jo];
                    for (int k = 0; k < r; k++)
                    {
                        float bv = p.Bt[(long)k * o + jo];
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

        // out[t·r + k] = Σ_j rows_t[j]·m[k, j] for four rows against the r rows of m ([r, len]), four rank rows at a
        // time; a rank row past r reads the zero row.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void RowsTimesRowsT(float* x0, float* x1, float* x2, float* x3, float* m, int r, int len, float* zero, float* result)
        {
            float* sums = stackalloc float[16];
            for (int k0 = 0; k0 < r; k0 += KBlock)
            {
                float* m0 = m + (long)k0 * len;
                float* m1 = k0 + 1 < r ? m0 + len : zero;
                float* m2 = k0 + 2 < r ? m0 + 2L * len : zero;
                float* m3 = k0 + 3 < r ? m0 + 3L * len : zero;
                Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default;
                Vector512<float> s10 = default, s11 = default, s12 = default, s13 = default;
                Vector512<float> s20 = default, s21 = default, s22 = default, s23 = default;
                Vector512<float> s30 = default, s31 = default, s32 = default, s33 = default;
                int j = 0;
                for (; j + 16 <= len; j += 16)
                {
                    Vector512<float> a0 = Vector512.Load(x0 + j), a1 = Vector512.Load(x1 + j), a2 = Vector512.Load(x2 + j), a3 = Vector512.Load(x3 + j);
                    var b = Vector512.Load(m0 + j);
                    s00 = Vector512.FusedMultiplyAdd(a0, b, s00);
                    s10 = Vector512.FusedMultiplyAdd(a1, b, s10);
                    s20 = Vector512.FusedMultiplyAdd(a2, b, s20);
                    s30 = Vector512.FusedMultiplyAdd(a3, b, s30);
                    b = Vector512.Load(m1 + j);
                    s01 = Vector512.FusedMultiplyAdd(a0, b, s01);
                    s11 = Vector512.FusedMultiplyAdd(a1, b, s11);
                    s21 = Vector512.FusedMultiplyAdd(a2, b, s21);
                    s31 = Vector512.FusedMultiplyAdd(a3, b, s31);
                    b = Vector512.Load(m2 + j);
                    s02 = Vector512.FusedMultiplyAdd(a0, b, s02);
                    s12 = Vector512.FusedMultiplyAdd(a1, b, s12);
                    s22 = Vector512.FusedMultiplyAdd(a2, b, s22);
                    s32 = Vector512.FusedMultiplyAdd(a3, b, s32);
                    b = Vector512.Load(m3 + j);
                    s03 = Vector512.FusedMultiplyAdd(a0, b, s03);
                    s13 = Vector512.FusedMultiplyAdd(a1, b, s13);
                    s23 = Vector512.FusedMultiplyAdd(a2, b, s23);
                    s33 = Vector512.FusedMultiplyAdd(a3, b, s33);
                }
                sums[0] = Vector512.Sum(s00); sums[1] = Vector512.Sum(s01); sums[2] = Vector512.Sum(s02); sums[3] = Vector512.Sum(s03);
                sums[4] = Vector512.Sum(s10); sums[5] = Vector512.Sum(s11); sums[6] = Vector512.Sum(s12); sums[7] = Vector512.Sum(s13);
                sums[8] = Vector512.Sum(s20); sums[9] = Vector512.Sum(s21); sums[10] = Vector512.Sum(s22); sums[11] = Vector512.Sum(s23);
                sums[12] = Vector512.Sum(s30); sums[13] = Vector512.Sum(s31); sums[14] = Vector512.Sum(s32); sums[15] = Vector512.Sum(s33);
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
                    for (int kk = 0; kk < KBlock && k0 + kk < r; kk++)
                        result[t * r + k0 + kk] = sums[t * KBlock + kk];
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Backward512<TNeedA, TNeedX>(in LoRAProblem p, float* dY, float* u, float* dX, float* dA, float* dBt, long row0, long row1)
            where TNeedA : struct, IFlag where TNeedX : struct, IFlag
        {
            int d = p.In, o = p.Out, r = p.Rank;
            bool needB = dBt != null;
            bool drop = p.Mask.DropsAny;
            int words = RowWords(d);
            int wide = Math.Max(d, Math.Max(o, r));
            using var s = new Scratch(wide + Block * wide + 2 * Block * r, Block * words + words + 1, wide);
            float* zero = s.Floats, dump = zero + wide, gb = dump + Block * wide, cu = gb + Block * r;
            ulong* rowBits = s.Words, raw = rowBits + Block * words;
            float c = p.Scale;
            // A and dA as 16-column panels, [in / 16][r][16]: the rank loop below then walks contiguous memory instead
            // of r rows d floats apart, which all land in one L1 set (4 KiB apart for d = 1024) and evict each other.
            using var panels = new Panels(p.A, r, d, default(TNeedA).Value);
            float* aPanels = panels.Packed, daPanels = panels.Gradient;
            float** yr = stackalloc float*[Block];
            float** xr = stackalloc float*[Block];
            float** dxr = stackalloc float*[Block];
            ulong** rb = stackalloc ulong*[Block];

            for (long i0 = row0; i0 < row1; i0 += Block)
            {
                int rows = (int)Math.Min(Block, row1 - i0);
                for (int t = 0; t < Block; t++)
                {
                    long i = i0 + t;
                    bool real = t < rows;
                    yr[t] = real ? dY + i * o : zero;
                    xr[t] = real && default(TNeedA).Value ? p.X + i * d : zero;
                    dxr[t] = real && default(TNeedX).Value ? dX + i * d : dump + t * wide;
                    rb[t] = rowBits + t * words;
                    for (int k = 0; k < r; k++) cu[t * r + k] = real && needB ? c * u[i * r + k] : 0f;
                    if (drop)
                    {
                        if (real) p.Mask.RowBits(i * d, d, rb[t], raw);
                        else new Span<ulong>(rb[t], words).Clear();
                    }
                }

                // g = c·dY·B: the same blocked product as forward's u, against Bᵀ [r, out].
                RowsTimesRowsT(yr[0], yr[1], yr[2], yr[3], p.Bt, r, o, zero, gb);
                for (int k = 0; k < Block * r; k++) gb[k] *= c;

                // dBᵀ[k, :] += Σ_rows c·u[i, k]·dY[i, :]: one load and store of dBᵀ per four rows.
                if (needB)
                {
                    float* v0p = yr[0], v1p = yr[1], v2p = yr[2], v3p = yr[3];
                    for (int k = 0; k < r; k++)
                    {
                        float* db = dBt + (long)k * o;
                        Vector512<float> w0 = Vector512.Create(cu[k]), w1 = Vector512.Create(cu[r + k]), w2 = Vector512.Create(cu[2 * r + k]), w3 = Vector512.Create(cu[3 * r + k]);
                        int j = 0;
                        for (; j + 16 <= o; j += 16)
                        {
                            var acc = Vector512.Load(db + j);
                            acc = Vector512.FusedMultiplyAdd(w0, Vector512.Load(v0p + j), acc);
                            acc = Vector512.FusedMultiplyAdd(w1, Vector512.Load(v1p + j), acc);
                            acc = Vector512.FusedMultiplyAdd(w2, Vector512.Load(v2p + j), acc);
                            acc = Vector512.FusedMultiplyAdd(w3, Vector512.Load(v3p + j), acc);
                            acc.Store(db + j);
                        }
                        for (; j < o; j++)
                            db[j] += cu[k] * v0p[j] + cu[r + k] * v1p[j] + cu[2 * r + k] * v2p[j] + cu[3 * r + k] * v3p[j];
                    }
                }
                if (!default(TNeedA).Value && !default(TNeedX).Value) continue;

                // dA[k, :] += Σ_rows g[i, k]·(x_i ⊙ keep_i) and dX_i = (Σ_k g[i, k]·A[k, :]) ⊙ keep_i, one pass over x and dX.
                float* x0 = xr[0], x1 = xr[1], x2 = xr[2], x3 = xr[3];
                float* dx0 = dxr[0], dx1 = dxr[1], dx2 = dxr[2], dx3 = dxr[3];
                ulong* b0 = rb[0], b1 = rb[1], b2 = rb[2], b3 = rb[3];
                float* g0 = gb, g1 = gb + r, g2 = gb + 2 * r, g3 = gb + 3 * r;
                int jj = 0;
                for (; jj + 16 <= d; jj += 16)
                {
                    Vector512<float> k0 = Vector512<float>.AllBitsSet, k1 = k0, k2 = k0, k3 = k0;
                    if (drop)
                    {
                        k0 = Keep16(b0, jj);
                        k1 = Keep16(b1, jj);
                        k2 = Keep16(b2, jj);
                        k3 = Keep16(b3, jj);
                    }
                    Vector512<float> m0 = default, m1 = default, m2 = default, m3 = default;
                    if (default(TNeedA).Value)
                    {
                        m0 = Vector512.Load(x0 + jj) & k0;
                        m1 = Vector512.Load(x1 + jj) & k1;
                        m2 = Vector512.Load(x2 + jj) & k2;
                        m3 = Vector512.Load(x3 + jj) & k3;
                    }
                    Vector512<float> e0 = default, e1 = default, e2 = default, e3 = default;
                    float* ak = aPanels + (long)(jj >> 4) * r * 16;
                    float* dak = daPanels + (long)(jj >> 4) * r * 16;
                    for (int k = 0; k < r; k++, ak += 16, dak += 16)
                    {
                        Vector512<float> q0 = Vector512.Create(g0[k]), q1 = Vector512.Create(g1[k]), q2 = Vector512.Create(g2[k]), q3 = Vector512.Create(g3[k]);
                        if (default(TNeedX).Value)
                        {
                            var av = Vector512.Load(ak);
                            e0 = Vector512.FusedMultiplyAdd(q0, av, e0);
                            e1 = Vector512.FusedMultiplyAdd(q1, av, e1);
                            e2 = Vector512.FusedMultiplyAdd(q2, av, e2);
                            e3 = Vector512.FusedMultiplyAdd(q3, av, e3);
                        }
                        if (default(TNeedA).Value)
                        {
                            var acc = Vector512.FusedMultiplyAdd(q0, m0, Vector512.Load(dak));
                            acc = Vector512.FusedMultiplyAdd(q1, m1, acc);
                            acc = Vector512.FusedMultiplyAdd(q2, m2, acc);
                            Vector512.FusedMultiplyAdd(q3, m3, acc).Store(dak);
                        }
                    }
                    if (default(TNeedX).Value)
                    {
                        (e0 & k0).Store(dx0 + jj);
                        (e1 & k1).Store(dx1 + jj);
                        (e2 & k2).Store(dx2 + jj);
                        (e3 & k3).Store(dx3 + jj);
                    }
                }
                for (; jj < d; jj++)
                {
                    bool keep0 = !drop || !Dropped(b0, jj), keep1 = !drop || !Dropped(b1, jj), keep2 = !drop || !Dropped(b2, jj), keep3 = !drop || !Dropped(b3, jj);
                    float m0 = keep0 ? x0[jj] : 0, m1 = keep1 ? x1[jj] : 0, m2 = keep2 ? x2[jj] : 0, m3 = keep3 ? x3[jj] : 0;
                    float e0 = 0, e1 = 0, e2 = 0, e3 = 0;
                    for (int k = 0; k < r; k++)
                    {
                        float av = p.A[(long)k * d + jj];
                        e0 += g0[k] * av;
                        e1 += g1[k] * av;
                        e2 += g2[k] * av;
                        e3 += g3[k] * av;
                        if (default(TNeedA).Value) dA[(long)k * d + jj] += g0[k] * m0 + g1[k] * m1 + g2[k] * m2 + g3[k] * m3;
                    }
                    if (default(TNeedX).Value)
                    {
                        dx0[jj] = keep0 ? e0 : 0;
                        dx1[jj] = keep1 ? e1 : 0;
                        dx2[jj] = keep2 ? e2 : 0;
                        dx3[jj] = keep3 ? e3 : 0;
                    }
                }
            }
            if (default(TNeedA).Value) panels.AddGradientInto(dA);
        }

        // A [r, len] matrix's first len & ~15 columns as panels [len / 16][r][16], and a zeroed gradient in the same layout.
        private readonly struct Panels : IDisposable
        {
            internal readonly float* Packed, Gradient;
            private readonly int _rank, _len, _chunks;

            internal Panels(float* matrix, int rank, int len, bool gradient)
            {
                _rank = rank;
                _len = len;
                _chunks = len >> 4;
                nuint bytes = (nuint)((long)_chunks * rank * 16 * sizeof(float) + 64);
                Packed = (float*)NativeMemory.AlignedAlloc(bytes, 64);
                Gradient = gradient ? (float*)NativeMemory.AlignedAlloc(bytes, 64) : null;
                if (gradient) NativeMemory.Clear(Gradient, bytes);
                for (int chunk = 0; chunk < _chunks; chunk++)
                    for (int k = 0; k < rank; k++)
                        Vector512.Load(matrix + (long)k * len + chunk * 16).Store(Packed + ((long)chunk * rank + k) * 16);
            }

            // matrix[k, chunk·16 + l] += Gradient[chunk][k][l].
            internal void AddGradientInto(float* matrix)
            {
                for (int chunk = 0; chunk < _chunks; chunk++)
                    for (int k = 0; k < _rank; k++)
                    {
                        float* at = matrix + (long)k * _len + chunk * 16;
                        (Vector512.Load(at) + Vector512.Load(Gradient + ((long)chunk * _rank + k) * 16)).Store(at);
                    }
            }

            public void Dispose()
            {
                NativeMemory.AlignedFree(Packed);
                if (Gradient != null) NativeMemory.AlignedFree(Gradient);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void MaskRow512(float* src, float* dst, ulong* bits, int d)
        {
            int j = 0;
            for (; j + 16 <= d; j += 16) (Vector512.Load(src + j) & Keep16(bits, j)).Store(dst + j);
            for (; j < d; j++) dst[j] = Dropped(bits, j) ? 0f : src[j];
        }

        // All-ones lanes for the kept elements j .. j + 15 (j a multiple of 16).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<float> Keep16(ulong* bits, int j)
        {
            uint b = (uint)(bits[j >> 6] >> (j & 63)) & 0xFFFF;
            return Vector512.Equals(Vector512.Create(b) & LaneBits16, Vector512<uint>.Zero).AsSingle();
        }
    }
}
