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
    /// One generic body per loop serves both vector widths (<see cref="ISimdFloat{TSelf}"/>: eight floats with AVX2,
    /// sixteen with AVX-512). Rows are processed in blocks of four (a missing row of the last block reads a zero row
    /// and writes a scratch row). Where a product is reduced over the columns (u = x·Aᵀ, g = dY·B) four rows are
    /// blocked against several rank rows at once, four with AVX-512's 32 registers, two with AVX2's 16; where outputs
    /// are accumulated over the rank (y), each row takes two vectors. The rank loops read A, dA and Bᵀ as panels of
    /// one vector's width ([cols / width][r][width], packed per call): rows of A lie d floats apart, so at d = 1024 the
    /// r rows a column chunk needs all fall in one L1 set and evict each other. Forward: u = (x ⊙ keep)·Aᵀ and y = init + c·u·Bᵀ, init being the bias, the previous
    /// output or zero, before libtorch adds x·Wᵀ in place. Backward: g = c·dY·B and dBᵀ += c·uᵀ·dY in one pass over dY;
    /// dA += gᵀ·(x ⊙ keep) and dX = (g·A) ⊙ keep in one pass over x and dX, before libtorch adds dY·W in place.
    /// Each libtorch thin product is its own pass over an [n, d] operand with its own thread barrier; on two busy cores
    /// those barriers cost more than the arithmetic, which is why these loops exist.
    /// The loops (and the mask generator's) are compiled fully optimised from their first call
    /// (<c>AggressiveOptimization</c>): unoptimised first-tier code inlines no vector helper and runs ten times slower,
    /// which a short benchmark or the first steps of training would otherwise measure.
    /// </remarks>
    internal static unsafe class LoRAKernels
    {
        private const int Block = 4;

        /// <summary>Rows [row0, row1): u[i, :] = (x_i ⊙ keep_i)·Aᵀ; y[i, :] = init_i + c·u[i, :]·Bᵀ.</summary>
        /// <param name="p">The problem.</param>
        /// <param name="bias">[out] added to every row, or null.</param>
        /// <param name="previous">[n, out] added row by row, or null (then <paramref name="bias"/> or zero).</param>
        /// <param name="u">[n, r] output (unscaled, masked thin product).</param>
        /// <param name="y">[n, out] output.</param>
        /// <param name="row0">First row.</param>
        /// <param name="row1">One past the last row.</param>
        /// <param name="rowMap">
        /// Null, or where logical row i lies in x, <paramref name="previous"/> and <paramref name="y"/>: row rowMap[i]
        /// (a mixed batch's rows of one adapter, computed in place in the base output); u stays indexed by i. No dropout then.
        /// </param>
        internal static void Forward(in LoRAProblem p, float* bias, float* previous, float* u, float* y, long row0, long row1, long* rowMap = null)
        {
            if (rowMap != null && p.Mask.DropsAny) throw new ArgumentException("a row map is for inference: no dropout");
            if (Wide) Forward<Simd512>(p, bias, previous, u, y, row0, row1, rowMap);
            else Forward<Simd256>(p, bias, previous, u, y, row0, row1, rowMap);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Forward<V>(in LoRAProblem p, float* bias, float* previous, float* u, float* y, long row0, long row1, long* rowMap)
            where V : struct, ISimdFloat<V>
        {
            int d = p.In, o = p.Out, r = p.Rank;
            bool drop = p.Mask.DropsAny;
            int words = RowWords(d);
            int wide = Math.Max(d, o);
            using var s = new Scratch(wide + Block * d + Block * o + 2 * Block * r + r, Block * words + words + 1, wide);
            float* zero = s.Floats, xm = zero + wide, dump = xm + Block * d, ub = dump + Block * o, cu = ub + Block * r, uDump = cu + Block * r;
            ulong* rowBits = s.Words, raw = rowBits + Block * words;
            float c = p.Scale;
            using var panels = new Panels<V>(p.Bt, r, o, gradient: false);
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
                    long at = rowMap == null ? i : rowMap[i];
                    float* src = p.X + at * d;
                    if (drop)
                    {
                        p.Mask.RowBits(i * d, d, rowBits + t * words, raw);
                        MaskRow<V>(src, xm + t * d, rowBits + t * words, d);
                        xr[t] = xm + t * d;
                    }
                    else xr[t] = src;
                    init[t] = previous != null ? previous + at * o : bias != null ? bias : zero;
                    yr[t] = y + at * o;
                }

                RowsTimesRowsT<V>(xr[0], xr[1], xr[2], xr[3], p.A, r, d, zero, ub);
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
                int w = V.Count;
                float* i0p = init[0], i1p = init[1], i2p = init[2], i3p = init[3];
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

        /// <summary>
        /// Rows [row0, row1) of the backward thin half: accumulates dA [r, in] (if not null) and dBᵀ [r, out] (if not
        /// null), and writes dX [n, in] rows = (g·A) ⊙ keep (if not null), where g = c·dY·B.
        /// </summary>
        internal static void Backward(in LoRAProblem p, float* dY, float* u, float* dX, float* dA, float* dBt, long row0, long row1)
        {
            if (Wide) Backward<Simd512>(p, dY, u, dX, dA, dBt, row0, row1);
            else Backward<Simd256>(p, dY, u, dX, dA, dBt, row0, row1);
        }

        private static void Backward<V>(in LoRAProblem p, float* dY, float* u, float* dX, float* dA, float* dBt, long row0, long row1)
            where V : struct, ISimdFloat<V>
        {
            if (dA != null)
            {
                if (dX != null) Backward<V, Yes, Yes>(p, dY, u, dX, dA, dBt, row0, row1);
                else Backward<V, Yes, No>(p, dY, u, dX, dA, dBt, row0, row1);
            }
            else if (dX != null) Backward<V, No, Yes>(p, dY, u, dX, dA, dBt, row0, row1);
            else Backward<V, No, No>(p, dY, u, dX, dA, dBt, row0, row1);
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
        private static void Backward<V, TNeedA, TNeedX>(in LoRAProblem p, float* dY, float* u, float* dX, float* dA, float* dBt, long row0, long row1)
            where V : struct, ISimdFloat<V> where TNeedA : struct, IFlag where TNeedX : struct, IFlag
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
            using var panels = new Panels<V>(p.A, r, d, default(TNeedA).Value);
            float* aPanels = panels.Packed, daPanels = panels.Gradient;
            float** yr = stackalloc float*[Block];
            float** xr = stackalloc float*[Block];
            float** dxr = stackalloc float*[Block];
            ulong** rb = stackalloc ulong*[Block];
            int w = V.Count;

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
                RowsTimesRowsT<V>(yr[0], yr[1], yr[2], yr[3], p.Bt, r, o, zero, gb);
                for (int k = 0; k < Block * r; k++) gb[k] *= c;

                // dBᵀ[k, :] += Σ_rows c·u[i, k]·dY[i, :]: one load and store of dBᵀ per four rows.
                if (needB)
                {
                    float* v0p = yr[0], v1p = yr[1], v2p = yr[2], v3p = yr[3];
                    for (int k = 0; k < r; k++)
                    {
                        float* db = dBt + (long)k * o;
                        V w0 = V.Broadcast(cu[k]), w1 = V.Broadcast(cu[r + k]), w2 = V.Broadcast(cu[2 * r + k]), w3 = V.Broadcast(cu[3 * r + k]);
                        int j = 0;
                        for (; j + w <= o; j += w)
                        {
                            var acc = V.Load(db + j);
                            acc = V.MultiplyAdd(w0, V.Load(v0p + j), acc);
                            acc = V.MultiplyAdd(w1, V.Load(v1p + j), acc);
                            acc = V.MultiplyAdd(w2, V.Load(v2p + j), acc);
                            acc = V.MultiplyAdd(w3, V.Load(v3p + j), acc);
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
                for (; jj + w <= d; jj += w)
                {
                    V k0 = V.AllBitsSet, k1 = k0, k2 = k0, k3 = k0;
                    if (drop)
                    {
                        k0 = Keep<V>(b0, jj);
                        k1 = Keep<V>(b1, jj);
                        k2 = Keep<V>(b2, jj);
                        k3 = Keep<V>(b3, jj);
                    }
                    V m0 = default, m1 = default, m2 = default, m3 = default;
                    if (default(TNeedA).Value)
                    {
                        m0 = V.Load(x0 + jj) & k0;
                        m1 = V.Load(x1 + jj) & k1;
                        m2 = V.Load(x2 + jj) & k2;
                        m3 = V.Load(x3 + jj) & k3;
                    }
                    V e0 = default, e1 = default, e2 = default, e3 = default;
                    float* ak = aPanels + (long)jj * r; // panel jj / w starts at (jj / w)·r·w
                    float* dak = daPanels + (long)jj * r;
                    for (int k = 0; k < r; k++, ak += w, dak += w)
                    {
                        V q0 = V.Broadcast(g0[k]), q1 = V.Broadcast(g1[k]), q2 = V.Broadcast(g2[k]), q3 = V.Broadcast(g3[k]);
                        if (default(TNeedX).Value)
                        {
                            var av = V.Load(ak);
                            e0 = V.MultiplyAdd(q0, av, e0);
                            e1 = V.MultiplyAdd(q1, av, e1);
                            e2 = V.MultiplyAdd(q2, av, e2);
                            e3 = V.MultiplyAdd(q3, av, e3);
                        }
                        if (default(TNeedA).Value)
                        {
                            var acc = V.MultiplyAdd(q0, m0, V.Load(dak));
                            acc = V.MultiplyAdd(q1, m1, acc);
                            acc = V.MultiplyAdd(q2, m2, acc);
                            V.MultiplyAdd(q3, m3, acc).Store(dak);
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

        private static int RowWords(int cols) => (cols + 63) / 64;

        // x ⊙ keep for one row, given its dropped bits aligned to the row start.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void MaskRow<V>(float* src, float* dst, ulong* bits, int d) where V : struct, ISimdFloat<V>
        {
            int j = 0;
            for (; j + V.Count <= d; j += V.Count) (V.Load(src + j) & Keep<V>(bits, j)).Store(dst + j);
            for (; j < d; j++) dst[j] = Dropped(bits, j) ? 0f : src[j];
        }

        // All-ones lanes for the kept elements j .. j + width − 1 (j a multiple of the width, which divides 64).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static V Keep<V>(ulong* bits, int j) where V : struct, ISimdFloat<V> =>
            V.KeptLanes((uint)(bits[j >> 6] >> (j & 63)) & (uint)((1L << V.Count) - 1));

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

        // A [r, len] matrix's first len − len mod w columns as panels [len / w][r][w] (w floats per vector), and a
        // zeroed gradient in the same layout.
        private readonly struct Panels<V> : IDisposable where V : struct, ISimdFloat<V>
        {
            internal readonly float* Packed, Gradient;
            private readonly int _rank, _len, _chunks;

            internal Panels(float* matrix, int rank, int len, bool gradient)
            {
                int w = V.Count;
                _rank = rank;
                _len = len;
                _chunks = len / w;
                nuint bytes = (nuint)((long)_chunks * rank * w * sizeof(float) + 64);
                Packed = (float*)NativeMemory.AlignedAlloc(bytes, 64);
                Gradient = gradient ? (float*)NativeMemory.AlignedAlloc(bytes, 64) : null;
                if (gradient) NativeMemory.Clear(Gradient, bytes);
                for (int chunk = 0; chunk < _chunks; chunk++)
                    for (int k = 0; k < rank; k++)
                        V.Load(matrix + (long)k * len + chunk * w).Store(Packed + ((long)chunk * rank + k) * w);
            }

            // matrix[k, chunk·w + l] += Gradient[chunk][k][l].
            internal void AddGradientInto(float* matrix)
            {
                int w = V.Count;
                for (int chunk = 0; chunk < _chunks; chunk++)
                    for (int k = 0; k < _rank; k++)
                    {
                        float* at = matrix + (long)k * _len + chunk * w;
                        (V.Load(at) + V.Load(Gradient + ((long)chunk * _rank + k) * w)).Store(at);
                    }
            }

            public void Dispose()
            {
                NativeMemory.AlignedFree(Packed);
                if (Gradient != null) NativeMemory.AlignedFree(Gradient);
            }
        }
    }
}
