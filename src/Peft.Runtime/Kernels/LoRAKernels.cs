using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// One adapter's rows of a mixed batch over raw float32 memory: x [n, in] (read at the listed rows), A packed as Aᵀ
    /// panels (<see cref="LoRAKernels.PackRankPanels"/>), B [out, r] and packed as Bᵀ panels
    /// (<see cref="LoRAKernels.PackTransposed"/>), c = s.
    /// </summary>
    internal unsafe struct LoRARowGroup
    {
        internal float* X, AtPanels, BtPanels, B;
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
    /// AVX-512). Rows go in blocks of eight, each product accumulated in eight vector registers as a sum of outer
    /// products (a broadcast element of the left operand times a vector of the packed right one), so the packed
    /// factors are read once per eight rows and no horizontal sum is taken: u's rank chunk of w = x·Aᵀ from Aᵀ panels
    /// [⌈r / w⌉][in][w], then y's column chunk of w = init + c·u·Bᵀ from Bᵀ panels [out / w][r][w], both packed once per
    /// adapter and call. A missing row of the last block reads a zero row and writes a scratch row. The loops are
    /// compiled fully optimised from their first call (<c>AggressiveOptimization</c>): unoptimised first-tier code
    /// inlines no vector helper and runs ten times slower.
    /// </remarks>
    internal static unsafe class LoRAKernels
    {
        private const int Block = 8;

        /// <summary>Floats per vector of the loops that run here.</summary>
        internal static int Width => Wide ? 16 : 8;

        /// <summary>Floats of <see cref="PackTransposed"/>'s panels for B [out, r].</summary>
        internal static long TransposedFloats(int o, int r) => (long)(o / Width) * r * Width;

        /// <summary>
        /// Bᵀ of <paramref name="b"/> [out, r] as panels [out / w][r][w] (w = <see cref="Width"/>) into
        /// <paramref name="panels"/> (<see cref="TransposedFloats"/> floats, 32-byte aligned); the last out mod w columns
        /// are not packed (the loops read them from B).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        internal static void PackTransposed(float* b, int o, int r, float* panels)
        {
            int w = Width, chunks = o / w;
            // A panel row is one column of w consecutive rows of B: 8 × 8 blocks transposed in registers, the rank's last
            // r mod 8 columns copied one by one.
            for (int chunk = 0; chunk < chunks; chunk++)
            {
                float* panel = panels + (long)chunk * r * w;
                for (int half = 0; half < w; half += 8)
                {
                    float* rows = b + (long)(chunk * w + half) * r;
                    int k = 0;
                    if (Avx.IsSupported)
                        for (; k + 8 <= r; k += 8) Transpose8(rows + k, r, panel + k * w + half, w);
                    for (; k < r; k++)
                        for (int l = 0; l < 8; l++) panel[k * w + half + l] = rows[(long)l * r + k];
                }
            }
        }

        /// <summary>
        /// The first cols − cols mod w columns of <paramref name="m"/> [rows, cols] as panels [cols / w][rows][w]
        /// (w = <see cref="Width"/>; <see cref="TransposedFloats"/>(cols, rows) floats): a product against m's rows then
        /// reads each panel row once, contiguously.
        /// </summary>
        internal static void PackColumnPanels(float* m, int rows, int cols, float* panels)
        {
            int w = Width, chunks = cols / w;
            for (int chunk = 0; chunk < chunks; chunk++)
                for (int k = 0; k < rows; k++)
                    Buffer.MemoryCopy(m + (long)k * cols + (long)chunk * w, panels + ((long)chunk * rows + k) * w, w * sizeof(float), w * sizeof(float));
        }

        /// <summary>Floats of <see cref="PackRankPanels"/>'s panels for A [r, in].</summary>
        internal static long RankPanelFloats(int r, int d) => (long)((r + Width - 1) / Width) * d * Width;

        /// <summary>
        /// Aᵀ of <paramref name="a"/> [r, in] as panels [⌈r / w⌉][in][w] (w = <see cref="Width"/>; lanes past r zero) into
        /// <paramref name="panels"/> (<see cref="RankPanelFloats"/> floats, 32-byte aligned).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        internal static void PackRankPanels(float* a, int r, int d, float* panels)
        {
            int w = Width, chunks = (r + w - 1) / w;
            for (int chunk = 0; chunk < chunks; chunk++)
            {
                float* panel = panels + (long)chunk * d * w;
                int k0 = chunk * w;
                for (int half = 0; half < w; half += 8)
                {
                    // Panel row j is column j of w consecutive rows of A: 8 × 8 blocks transposed in registers (the rows
                    // lie in floats apart, so gathering a column hits one cache set eight times), the rest one by one.
                    int j = 0;
                    if (Avx.IsSupported && k0 + half + 8 <= r)
                        for (float* rows = a + (long)(k0 + half) * d; j + 8 <= d; j += 8)
                            Transpose8(rows + j, d, panel + (long)j * w + half, w);
                    for (; j < d; j++)
                        for (int l = half; l < half + 8; l++)
                            panel[(long)j * w + l] = k0 + l < r ? a[(long)(k0 + l) * d + j] : 0f;
                }
            }
        }

        // dst[c·dstStride + l] = src[l·srcStride + c] for an 8 × 8 block: pairs of rows interleaved, then pairs of
        // pairs, then the 128-bit halves exchanged.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Transpose8(float* src, long srcStride, float* dst, long dstStride)
        {
            var r0 = Avx.LoadVector256(src);
            var r1 = Avx.LoadVector256(src + srcStride);
            var r2 = Avx.LoadVector256(src + 2 * srcStride);
            var r3 = Avx.LoadVector256(src + 3 * srcStride);
            var r4 = Avx.LoadVector256(src + 4 * srcStride);
            var r5 = Avx.LoadVector256(src + 5 * srcStride);
            var r6 = Avx.LoadVector256(src + 6 * srcStride);
            var r7 = Avx.LoadVector256(src + 7 * srcStride);
            Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1), t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
            Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5), t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
            Vector256<float> s0 = Avx.Shuffle(t0, t2, 0x44), s1 = Avx.Shuffle(t0, t2, 0xEE), s2 = Avx.Shuffle(t1, t3, 0x44), s3 = Avx.Shuffle(t1, t3, 0xEE);
            Vector256<float> s4 = Avx.Shuffle(t4, t6, 0x44), s5 = Avx.Shuffle(t4, t6, 0xEE), s6 = Avx.Shuffle(t5, t7, 0x44), s7 = Avx.Shuffle(t5, t7, 0xEE);
            Avx.Store(dst, Avx.Permute2x128(s0, s4, 0x20));
            Avx.Store(dst + dstStride, Avx.Permute2x128(s1, s5, 0x20));
            Avx.Store(dst + 2 * dstStride, Avx.Permute2x128(s2, s6, 0x20));
            Avx.Store(dst + 3 * dstStride, Avx.Permute2x128(s3, s7, 0x20));
            Avx.Store(dst + 4 * dstStride, Avx.Permute2x128(s0, s4, 0x31));
            Avx.Store(dst + 5 * dstStride, Avx.Permute2x128(s1, s5, 0x31));
            Avx.Store(dst + 6 * dstStride, Avx.Permute2x128(s2, s6, 0x31));
            Avx.Store(dst + 7 * dstStride, Avx.Permute2x128(s3, s7, 0x31));
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
            int d = g.In, o = g.Out, r = g.Rank, w = V.Count;
            int rankChunks = (r + w - 1) / w, rp = rankChunks * w;
            int wide = Math.Max(d, o);
            float* zero = ThreadScratch.Pointer(ThreadScratch.Slot.KernelRows, wide + o + Block * o + Block * rp);
            float* init = zero + wide, dump = init + o, cu = dump + Block * o;
            new Span<float>(zero, wide).Clear();
            if (bias != null) new ReadOnlySpan<float>(bias, o).CopyTo(new Span<float>(init, o));
            else new Span<float>(init, o).Clear();
            float c = g.Scale;
            float** xr = stackalloc float*[Block];
            float** yr = stackalloc float*[Block];
            float** cr = stackalloc float*[Block];

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

                // cu = c·x·Aᵀ, a rank chunk of w at a time: eight rows' accumulators over the input columns.
                for (int kc = 0; kc < rankChunks; kc++)
                {
                    V a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
                    OuterProducts(g.AtPanels + (long)kc * d * w, d, xr, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
                    var scale = V.Broadcast(c);
                    float* u = cu + kc * w;
                    V.MultiplyAdd(a0, scale, default).Store(u);
                    V.MultiplyAdd(a1, scale, default).Store(u + rp);
                    V.MultiplyAdd(a2, scale, default).Store(u + 2 * rp);
                    V.MultiplyAdd(a3, scale, default).Store(u + 3 * rp);
                    V.MultiplyAdd(a4, scale, default).Store(u + 4 * rp);
                    V.MultiplyAdd(a5, scale, default).Store(u + 5 * rp);
                    V.MultiplyAdd(a6, scale, default).Store(u + 6 * rp);
                    V.MultiplyAdd(a7, scale, default).Store(u + 7 * rp);
                }

                // y = init + cu·Bᵀ, a column chunk of w at a time: eight rows' accumulators over the rank.
                for (int t = 0; t < Block; t++) cr[t] = cu + t * rp;
                int jo = 0;
                for (; jo + w <= o; jo += w)
                {
                    var start = V.Load(init + jo);
                    V y0 = start, y1 = start, y2 = start, y3 = start, y4 = start, y5 = start, y6 = start, y7 = start;
                    // Panel jo / w starts at (jo / w)·r·w.
                    OuterProducts(g.BtPanels + (long)jo * r, r, cr, ref y0, ref y1, ref y2, ref y3, ref y4, ref y5, ref y6, ref y7);
                    y0.Store(yr[0] + jo);
                    y1.Store(yr[1] + jo);
                    y2.Store(yr[2] + jo);
                    y3.Store(yr[3] + jo);
                    y4.Store(yr[4] + jo);
                    y5.Store(yr[5] + jo);
                    y6.Store(yr[6] + jo);
                    y7.Store(yr[7] + jo);
                }
                for (; jo < o; jo++)
                {
                    float* bRow = g.B + (long)jo * r;
                    for (int t = 0; t < Block; t++)
                    {
                        float sum = init[jo];
                        float* ct = cu + t * rp;
                        for (int k = 0; k < r; k++) sum += ct[k] * bRow[k];
                        yr[t][jo] = sum;
                    }
                }
            }
        }

        // a_t += Σ_i s_t[i]·panel[i·w, (i + 1)·w) for the eight rows t and i < count (s: eight row pointers, w the
        // vector width): one panel load and eight broadcast multiply-adds per step, the accumulators in registers.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        internal static void OuterProducts<V>(float* panel, int count, float** s, ref V a0, ref V a1, ref V a2, ref V a3,
            ref V a4, ref V a5, ref V a6, ref V a7) where V : struct, ISimdFloat<V>
        {
            int w = V.Count;
            float* s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3], s4 = s[4], s5 = s[5], s6 = s[6], s7 = s[7];
            V b0 = a0, b1 = a1, b2 = a2, b3 = a3, b4 = a4, b5 = a5, b6 = a6, b7 = a7;
            for (int i = 0; i < count; i++, panel += w)
            {
                var v = V.Load(panel);
                b0 = V.MultiplyAdd(V.Broadcast(s0[i]), v, b0);
                b1 = V.MultiplyAdd(V.Broadcast(s1[i]), v, b1);
                b2 = V.MultiplyAdd(V.Broadcast(s2[i]), v, b2);
                b3 = V.MultiplyAdd(V.Broadcast(s3[i]), v, b3);
                b4 = V.MultiplyAdd(V.Broadcast(s4[i]), v, b4);
                b5 = V.MultiplyAdd(V.Broadcast(s5[i]), v, b5);
                b6 = V.MultiplyAdd(V.Broadcast(s6[i]), v, b6);
                b7 = V.MultiplyAdd(V.Broadcast(s7[i]), v, b7);
            }
            (a0, a1, a2, a3, a4, a5, a6, a7) = (b0, b1, b2, b3, b4, b5, b6, b7);
        }

        /// <summary>Whether the 512-bit loops run (AVX-512 hardware, unless a test asks for the 256-bit ones).</summary>
        internal static bool Wide => Vector512.IsHardwareAccelerated && !ForceNarrow;

        /// <summary>Tests set this to run the 256-bit loops on AVX-512 hardware too.</summary>
        internal static bool ForceNarrow { get; set; }
    }
}
