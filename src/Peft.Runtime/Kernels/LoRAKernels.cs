using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Peft.Runtime.Kernels
{
    /// <summary>One LoRA product over raw float32 memory: x [n, in], A [r, in], Bᵀ [r, out], c = s / (1 − p).</summary>
    internal unsafe struct LoRAProblem
    {
        internal float* X, A, Bt;
        internal long Rows;
        internal int In, Out, Rank;
        internal float Scale;
        internal DropoutMask Mask;
    }

    /// <summary>
    /// The thin (rank-r) half of the LoRA layer, written out by hand so each pass reads the big operands once and
    /// applies the dropout mask in registers, while libtorch does the big x·Wᵀ / dY·W products.
    /// </summary>
    /// <remarks>
    /// Rows are processed in blocks of four (a missing row of the last block reads a zero row and writes a scratch row),
    /// eight columns per vector. Forward: u = (x ⊙ keep)·Aᵀ and y = init + c·u·Bᵀ, init being the bias, the previous
    /// output or zero, before libtorch adds x·Wᵀ in place. Backward: g = c·dY·B and dBᵀ += c·uᵀ·dY in one pass over dY;
    /// dA += gᵀ·(x ⊙ keep) and dX = (g·A) ⊙ keep in one pass over x and dX, before libtorch adds dY·W in place.
    /// Each libtorch thin product is its own pass over an [n, d] operand with its own thread barrier; on two busy cores
    /// those barriers cost more than the arithmetic, which is why these loops exist.
    /// The loops (and the mask generator's) are compiled fully optimised from their first call
    /// (<c>AggressiveOptimization</c>): unoptimised first-tier code inlines no vector helper and runs ten times slower,
    /// which a short benchmark or the first steps of training would otherwise measure.
    /// </remarks>
    internal static unsafe partial class LoRAKernels
    {
        private const int Block = 4;
        private static readonly Vector256<uint> LaneBits = Vector256.Create(1u, 2, 4, 8, 16, 32, 64, 128);

        /// <summary>Rows [row0, row1): u[i, :] = (x_i ⊙ keep_i)·Aᵀ; y[i, :] = init_i + c·u[i, :]·Bᵀ.</summary>
        /// <param name="p">The problem.</param>
        /// <param name="bias">[out] added to every row, or null.</param>
        /// <param name="previous">[n, out] added row by row, or null (then <paramref name="bias"/> or zero).</param>
        /// <param name="u">[n, r] output (unscaled, masked thin product).</param>
        /// <param name="y">[n, out] output.</param>
        /// <param name="row0">First row.</param>
        /// <param name="row1">One past the last row.</param>
        internal static void Forward(in LoRAProblem p, float* bias, float* previous, float* u, float* y, long row0, long row1)
        {
            if (Wide) Forward512(p, bias, previous, u, y, row0, row1);
            else Forward256(p, bias, previous, u, y, row0, row1);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Forward256(in LoRAProblem p, float* bias, float* previous, float* u, float* y, long row0, long row1)
        {
            int d = p.In, o = p.Out, r = p.Rank;
            bool drop = p.Mask.DropsAny;
            int words = RowWords(d);
            using var s = new Scratch(Math.Max(d, o) + Block * d + Block * o + 3 * Block * r, Block * words + words + 1, Math.Max(d, o));
            float* zero = s.Floats, xm = zero + Math.Max(d, o), dump = xm + Block * d, ub = dump + Block * o, cu = ub + Block * r, uDump = cu + Block * r;
            ulong* rowBits = s.Words, raw = rowBits + Block * words;
            float c = p.Scale;
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
                        MaskRow(src, xm + t * d, rowBits + t * words, d);
                        xr[t] = xm + t * d;
                    }
                    else xr[t] = src;
                    init[t] = previous != null ? previous + i * o : bias != null ? bias : zero;
                    yr[t] = y + i * o;
                }

                // u = x_m·Aᵀ: four rows against one row of A at a time.
                float* x0 = xr[0], x1 = xr[1], x2 = xr[2], x3 = xr[3];
                for (int k = 0; k < r; k++)
                {
                    float* ak = p.A + (long)k * d;
                    Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                    int j = 0;
                    for (; j + 8 <= d; j += 8)
                    {
                        var av = Vector256.Load(ak + j);
                        a0 = Vector256.FusedMultiplyAdd(Vector256.Load(x0 + j), av, a0);
                        a1 = Vector256.FusedMultiplyAdd(Vector256.Load(x1 + j), av, a1);
                        a2 = Vector256.FusedMultiplyAdd(Vector256.Load(x2 + j), av, a2);
                        a3 = Vector256.FusedMultiplyAdd(Vector256.Load(x3 + j), av, a3);
                    }
                    float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1), s2 = Vector256.Sum(a2), s3 = Vector256.Sum(a3);
                    for (; j < d; j++)
                    {
                        float av = ak[j];
                        s0 += x0[j] * av;
                        s1 += x1[j] * av;
                        s2 += x2[j] * av;
                        s3 += x3[j] * av;
                    }
                    ub[k] = s0;
                    ub[r + k] = s1;
                    ub[2 * r + k] = s2;
                    ub[3 * r + k] = s3;
                }
                for (int t = 0; t < Block; t++)
                {
                    float* dst = t < rows ? u + (i0 + t) * r : uDump;
                    for (int k = 0; k < r; k++)
                    {
                        dst[k] = ub[t * r + k];
                        cu[t * r + k] = t < rows ? c * ub[t * r + k] : 0f;
                    }
                }

                // y = init + c·u·Bᵀ, eight outputs of four rows at a time.
                float* i0p = init[0], i1p = init[1], i2p = init[2], i3p = init[3];
                float* y0 = yr[0], y1 = yr[1], y2 = yr[2], y3 = yr[3];
                float* c0 = cu, c1 = cu + r, c2 = cu + 2 * r, c3 = cu + 3 * r;
                int jo = 0;
                for (; jo + 8 <= o; jo += 8)
                {
                    Vector256<float> v0 = Vector256.Load(i0p + jo), v1 = Vector256.Load(i1p + jo), v2 = Vector256.Load(i2p + jo), v3 = Vector256.Load(i3p + jo);
                    float* bt = p.Bt + jo;
                    for (int k = 0; k < r; k++, bt += o)
                    {
                        var bv = Vector256.Load(bt);
                        v0 = Vector256.FusedMultiplyAdd(Vector256.Create(c0[k]), bv, v0);
                        v1 = Vector256.FusedMultiplyAdd(Vector256.Create(c1[k]), bv, v1);
                        v2 = Vector256.FusedMultiplyAdd(Vector256.Create(c2[k]), bv, v2);
                        v3 = Vector256.FusedMultiplyAdd(Vector256.Create(c3[k]), bv, v3);
                    }
                    v0.Store(y0 + jo);
                    v1.Store(y1 + jo);
                    v2.Store(y2 + jo);
                    v3.Store(y3 + jo);
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

        /// <summary>
        /// Rows [row0, row1) of the backward thin half: accumulates dA [r, in] (if not null) and dBᵀ [r, out] (if not
        /// null), and writes dX [n, in] rows = (g·A) ⊙ keep (if not null), where g = c·dY·B.
        /// </summary>
        internal static void Backward(in LoRAProblem p, float* dY, float* u, float* dX, float* dA, float* dBt, long row0, long row1)
        {
            if (Wide)
            {
                if (dA != null)
                {
                    if (dX != null) Backward512<Yes, Yes>(p, dY, u, dX, dA, dBt, row0, row1);
                    else Backward512<Yes, No>(p, dY, u, dX, dA, dBt, row0, row1);
                }
                else if (dX != null) Backward512<No, Yes>(p, dY, u, dX, dA, dBt, row0, row1);
                else Backward512<No, No>(p, dY, u, dX, dA, dBt, row0, row1);
                return;
            }
            if (dA != null)
            {
                if (dX != null) Backward256<Yes, Yes>(p, dY, u, dX, dA, dBt, row0, row1);
                else Backward256<Yes, No>(p, dY, u, dX, dA, dBt, row0, row1);
            }
            else if (dX != null) Backward256<No, Yes>(p, dY, u, dX, dA, dBt, row0, row1);
            else Backward256<No, No>(p, dY, u, dX, dA, dBt, row0, row1);
        }

        /// <summary>Rows per unit of work when the rows are shared between workers.</summary>
        private const long ChunkRows = 64;

        /// <summary>
        /// <see cref="Forward"/> over all rows, shared by up to <paramref name="threads"/> workers (libtorch's intra-op
        /// thread count, so the thin half uses the cores the GEMM does).
        /// </summary>
        /// <remarks>Rows go out in chunks of <see cref="ChunkRows"/> (<see cref="KernelWorkers.Spans"/>).</remarks>
        internal static void ForwardAll(LoRAProblem p, float* bias, float* previous, float* u, float* y, int threads)
        {
            KernelWorkers.Spans(p.Rows, ChunkRows, threads, (row0, row1) => Forward(p, bias, previous, u, y, row0, row1));
        }

        /// <summary>
        /// <see cref="Backward"/> over all rows, shared like <see cref="ForwardAll"/>; each worker accumulates dA and dBᵀ
        /// into its own zeroed buffers, added into the caller's when it finishes.
        /// </summary>
        internal static void BackwardAll(LoRAProblem p, float* dY, float* u, float* dX, float* dA, float* dBt, int threads)
        {
            long chunks = (p.Rows + ChunkRows - 1) / ChunkRows;
            if (threads <= 1 || chunks <= 1)
            {
                Backward(p, dY, u, dX, dA, dBt, 0, p.Rows);
                return;
            }
            long aLen = dA == null ? 0 : (long)p.Rank * p.In, bLen = dBt == null ? 0 : (long)p.Rank * p.Out;
            nint dYP = (nint)dY, uP = (nint)u, dXP = (nint)dX, dAP = (nint)dA, dBP = (nint)dBt;
            var gate = new object();
            System.Threading.Tasks.Parallel.For(0L, chunks, new System.Threading.Tasks.ParallelOptions { MaxDegreeOfParallelism = threads },
                () => aLen + bLen == 0 ? 0 : (nint)NativeMemory.AllocZeroed((nuint)((aLen + bLen) * sizeof(float))),
                (chunk, _, own) =>
                {
                    long row0 = chunk * ChunkRows, row1 = Math.Min(p.Rows, row0 + ChunkRows);
                    float* a = dAP == 0 ? null : (float*)own, b = dBP == 0 ? null : (float*)own + aLen;
                    Backward(p, (float*)dYP, (float*)uP, (float*)dXP, a, b, row0, row1);
                    return own;
                },
                own =>
                {
                    if (own == 0) return;
                    lock (gate)
                    {
                        if (dAP != 0) Add((float*)dAP, (float*)own, aLen);
                        if (dBP != 0) Add((float*)dBP, (float*)own + aLen, bLen);
                    }
                    NativeMemory.Free((void*)own);
                });
        }

        private static void Add(float* into, float* from, long count)
        {
            long j = 0;
            for (; j + 8 <= count; j += 8) (Vector256.Load(into + j) + Vector256.Load(from + j)).Store(into + j);
            for (; j < count; j++) into[j] += from[j];
        }

        /// <summary>Whether the 512-bit loops run (AVX-512 hardware, unless a test asks for the 256-bit ones).</summary>
        internal static bool Wide => Vector512.IsHardwareAccelerated && !ForceNarrow;

        /// <summary>Tests set this to run the 256-bit loops on AVX-512 hardware too.</summary>
        internal static bool ForceNarrow { get; set; }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Backward256<TNeedA, TNeedX>(in LoRAProblem p, float* dY, float* u, float* dX, float* dA, float* dBt, long row0, long row1)
            where TNeedA : struct, IFlag where TNeedX : struct, IFlag
        {
            int d = p.In, o = p.Out, r = p.Rank;
            bool needB = dBt != null;
            bool drop = p.Mask.DropsAny;
            int words = RowWords(d);
            using var s = new Scratch(Math.Max(d, Math.Max(o, r)) + Block * d + Block * r, Block * words + words + 1, Math.Max(d, Math.Max(o, r)));
            float* zero = s.Floats, dump = zero + Math.Max(d, Math.Max(o, r)), gb = dump + Block * d;
            ulong* rowBits = s.Words, raw = rowBits + Block * words;
            float c = p.Scale;
            float** yr = stackalloc float*[Block];
            float** ur = stackalloc float*[Block];
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
                    ur[t] = real && needB ? u + i * r : zero;
                    xr[t] = real && default(TNeedA).Value ? p.X + i * d : zero;
                    dxr[t] = real && default(TNeedX).Value ? dX + i * d : dump + t * d;
                    rb[t] = rowBits + t * words;
                    if (drop)
                    {
                        if (real) p.Mask.RowBits(i * d, d, rb[t], raw);
                        else new Span<ulong>(rb[t], words).Clear();
                    }
                }

                // g = c·dY·B (four rows against one row of Bᵀ) and dBᵀ[k, :] += Σ_rows c·u[i, k]·dY[i, :], one pass over dY.
                float* v0p = yr[0], v1p = yr[1], v2p = yr[2], v3p = yr[3];
                for (int k = 0; k < r; k++)
                {
                    float* bt = p.Bt + (long)k * o;
                    float* db = needB ? dBt + (long)k * o : null;
                    float cu0 = c * ur[0][k], cu1 = c * ur[1][k], cu2 = c * ur[2][k], cu3 = c * ur[3][k];
                    Vector256<float> w0 = Vector256.Create(cu0), w1 = Vector256.Create(cu1), w2 = Vector256.Create(cu2), w3 = Vector256.Create(cu3);
                    Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                    int j = 0;
                    for (; j + 8 <= o; j += 8)
                    {
                        var bv = Vector256.Load(bt + j);
                        Vector256<float> y0 = Vector256.Load(v0p + j), y1 = Vector256.Load(v1p + j), y2 = Vector256.Load(v2p + j), y3 = Vector256.Load(v3p + j);
                        a0 = Vector256.FusedMultiplyAdd(y0, bv, a0);
                        a1 = Vector256.FusedMultiplyAdd(y1, bv, a1);
                        a2 = Vector256.FusedMultiplyAdd(y2, bv, a2);
                        a3 = Vector256.FusedMultiplyAdd(y3, bv, a3);
                        if (needB)
                        {
                            var acc = Vector256.Load(db + j);
                            acc = Vector256.FusedMultiplyAdd(w0, y0, acc);
                            acc = Vector256.FusedMultiplyAdd(w1, y1, acc);
                            acc = Vector256.FusedMultiplyAdd(w2, y2, acc);
                            acc = Vector256.FusedMultiplyAdd(w3, y3, acc);
                            acc.Store(db + j);
                        }
                    }
                    float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1), s2 = Vector256.Sum(a2), s3 = Vector256.Sum(a3);
                    for (; j < o; j++)
                    {
                        float bv = bt[j];
                        float y0 = v0p[j], y1 = v1p[j], y2 = v2p[j], y3 = v3p[j];
                        s0 += y0 * bv;
                        s1 += y1 * bv;
                        s2 += y2 * bv;
                        s3 += y3 * bv;
                        if (needB) db[j] += cu0 * y0 + cu1 * y1 + cu2 * y2 + cu3 * y3;
                    }
                    gb[k] = c * s0;
                    gb[r + k] = c * s1;
                    gb[2 * r + k] = c * s2;
                    gb[3 * r + k] = c * s3;
                }
                if (!default(TNeedA).Value && !default(TNeedX).Value) continue;

                // dA[k, :] += Σ_rows g[i, k]·(x_i ⊙ keep_i) and dX_i = (Σ_k g[i, k]·A[k, :]) ⊙ keep_i, one pass over x and dX.
                float* x0 = xr[0], x1 = xr[1], x2 = xr[2], x3 = xr[3];
                float* dx0 = dxr[0], dx1 = dxr[1], dx2 = dxr[2], dx3 = dxr[3];
                ulong* b0 = rb[0], b1 = rb[1], b2 = rb[2], b3 = rb[3];
                float* g0 = gb, g1 = gb + r, g2 = gb + 2 * r, g3 = gb + 3 * r;
                int jj = 0;
                for (; jj + 8 <= d; jj += 8)
                {
                    Vector256<float> k0 = Vector256<float>.AllBitsSet, k1 = k0, k2 = k0, k3 = k0;
                    if (drop)
                    {
                        k0 = Keep(b0, jj);
                        k1 = Keep(b1, jj);
                        k2 = Keep(b2, jj);
                        k3 = Keep(b3, jj);
                    }
                    Vector256<float> m0 = default, m1 = default, m2 = default, m3 = default;
                    if (default(TNeedA).Value)
                    {
                        m0 = Vector256.Load(x0 + jj) & k0;
                        m1 = Vector256.Load(x1 + jj) & k1;
                        m2 = Vector256.Load(x2 + jj) & k2;
                        m3 = Vector256.Load(x3 + jj) & k3;
                    }
                    Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default;
                    float* ak = p.A + jj;
                    float* dak = dA + jj;
                    for (int k = 0; k < r; k++, ak += d, dak += d)
                    {
                        Vector256<float> q0 = Vector256.Create(g0[k]), q1 = Vector256.Create(g1[k]), q2 = Vector256.Create(g2[k]), q3 = Vector256.Create(g3[k]);
                        if (default(TNeedX).Value)
                        {
                            var av = Vector256.Load(ak);
                            e0 = Vector256.FusedMultiplyAdd(q0, av, e0);
                            e1 = Vector256.FusedMultiplyAdd(q1, av, e1);
                            e2 = Vector256.FusedMultiplyAdd(q2, av, e2);
                            e3 = Vector256.FusedMultiplyAdd(q3, av, e3);
                        }
                        if (default(TNeedA).Value)
                        {
                            var acc = Vector256.Load(dak);
                            acc = Vector256.FusedMultiplyAdd(q0, m0, acc);
                            acc = Vector256.FusedMultiplyAdd(q1, m1, acc);
                            acc = Vector256.FusedMultiplyAdd(q2, m2, acc);
                            acc = Vector256.FusedMultiplyAdd(q3, m3, acc);
                            acc.Store(dak);
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
        }

        private static int RowWords(int cols) => (cols + 63) / 64;

        // x ⊙ keep for one row, given its dropped bits aligned to the row start.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void MaskRow(float* src, float* dst, ulong* bits, int d)
        {
            int j = 0;
            for (; j + 8 <= d; j += 8) (Vector256.Load(src + j) & Keep(bits, j)).Store(dst + j);
            for (; j < d; j++) dst[j] = Dropped(bits, j) ? 0f : src[j];
        }

        // All-ones lanes for the kept elements j .. j + 7 (j a multiple of 8).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<float> Keep(ulong* bits, int j)
        {
            uint b = (uint)(bits[j >> 6] >> (j & 63)) & 0xFF;
            return Vector256.Equals(Vector256.Create(b) & LaneBits, Vector256<uint>.Zero).AsSingle();
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static bool Dropped(ulong* bits, int j) => ((bits[j >> 6] >> (j & 63)) & 1) != 0;

        private interface IFlag
        {
            bool Value { get; }
        }

        private struct Yes : IFlag
        {
            public bool Value => true;
        }

        private struct No : IFlag
        {
            public bool Value => false;
        }

        // Aligned native scratch, freed on dispose: floats whose first `zeroed` are zero (the zero row), and words.
        private readonly struct Scratch : IDisposable
        {
            internal readonly float* Floats;
            internal readonly ulong* Words;

            internal Scratch(long floats, long words, long zeroed)
            {
                Floats = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float) + 64), 64);
                Words = (ulong*)NativeMemory.AlignedAlloc((nuint)(words * sizeof(ulong) + 64), 64);
                NativeMemory.Clear(Floats, (nuint)(zeroed * sizeof(float)));
            }

            public void Dispose()
            {
                NativeMemory.AlignedFree(Floats);
                NativeMemory.AlignedFree(Words);
            }
        }
    }
}
