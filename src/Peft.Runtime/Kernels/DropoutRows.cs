using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// Row passes for a dropout mask held as bits: drawing a matrix's mask once (and the masked copy with it), and
    /// applying saved bits later, so that libtorch's GEMMs can take the masked operand.
    /// </summary>
    /// <remarks>
    /// Row i's bits start at word i·⌈cols / 64⌉, bit t saying whether element (i, t) is dropped: 1/32 of the matrix's
    /// bytes, where a float mask would be as large as the matrix.
    /// </remarks>
    internal static unsafe class DropoutRows
    {
        /// <summary>Rows per unit of work shared between workers.</summary>
        private const long ChunkRows = 64;

        /// <summary>Words of one row's bits.</summary>
        internal static int Words(int cols) => (cols + 63) / 64;

        /// <summary>
        /// Draws the mask of <paramref name="x"/> [n, cols] (element (i, t) is flattened element i·cols + t of
        /// <paramref name="mask"/>) into <paramref name="bits"/> and writes x ⊙ keep into <paramref name="masked"/>.
        /// </summary>
        internal static void Draw(DropoutMask mask, float* x, long n, int cols, ulong* bits, float* masked, int threads)
        {
            nint xp = (nint)x, bp = (nint)bits, mp = (nint)masked;
            KernelWorkers.Spans(n, ChunkRows, threads, (row0, row1) =>
            {
                if (LoRAKernels.Wide) Draw<Simd512>(mask, (float*)xp, row0, row1, cols, (ulong*)bp, (float*)mp);
                else Draw<Simd256>(mask, (float*)xp, row0, row1, cols, (ulong*)bp, (float*)mp);
            });
        }

        /// <summary>With the bits <see cref="Draw"/> wrote: <paramref name="masked"/> = x ⊙ keep, both [n, cols].</summary>
        internal static void Apply(ulong* bits, float* x, float* masked, long n, int cols, int threads)
        {
            nint xp = (nint)x, bp = (nint)bits, mp = (nint)masked;
            KernelWorkers.Spans(n, ChunkRows, threads, (row0, row1) =>
            {
                if (LoRAKernels.Wide) Apply<Simd512>((ulong*)bp, (float*)xp, (float*)mp, row0, row1, cols);
                else Apply<Simd256>((ulong*)bp, (float*)xp, (float*)mp, row0, row1, cols);
            });
        }

        /// <summary>
        /// LoRA's backward pass over dX with the saved bits: dX[i, :] += (g[i, :]·A) ⊙ keep_i (= when
        /// <paramref name="accumulate"/> is false) and masked[i, :] = x[i, :] ⊙ keep_i when <paramref name="masked"/>
        /// is not null, for g [n, r], A [r, cols] given also as <see cref="LoRAKernels.PackColumnPanels"/> panels: one
        /// pass over dX and x, g·A taken eight rows at a time in registers, rows shared by up to
        /// <paramref name="threads"/> workers.
        /// </summary>
        internal static void AddMaskedProduct(ulong* bits, float* g, int r, float* a, float* aPanels, float* x, float* masked, float* dX,
            long n, int cols, bool accumulate, int threads)
        {
            nint bp = (nint)bits, gp = (nint)g, ap = (nint)a, pp = (nint)aPanels, xp = (nint)x, mp = (nint)masked, dp = (nint)dX;
            KernelWorkers.Spans(n, ChunkRows, threads, (row0, row1) =>
            {
                if (LoRAKernels.Wide)
                    AddMaskedProduct<Simd512>((ulong*)bp, (float*)gp, r, (float*)ap, (float*)pp, (float*)xp, (float*)mp, (float*)dp, row0, row1, cols, accumulate);
                else
                    AddMaskedProduct<Simd256>((ulong*)bp, (float*)gp, r, (float*)ap, (float*)pp, (float*)xp, (float*)mp, (float*)dp, row0, row1, cols, accumulate);
            });
        }

        private const int ProductRows = 8;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void AddMaskedProduct<V>(ulong* bits, float* g, int r, float* a, float* aPanels, float* x, float* masked, float* dX,
            long row0, long row1, int cols, bool accumulate) where V : struct, ISimdFloat<V>
        {
            int w = V.Count, words = Words(cols);
            float* zero = ThreadScratch.Pointer(ThreadScratch.Slot.KernelRows, r);
            new Span<float>(zero, r).Clear();
            float** gr = stackalloc float*[ProductRows];
            for (long i0 = row0; i0 < row1; i0 += ProductRows)
            {
                int rows = (int)Math.Min(ProductRows, row1 - i0);
                for (int t = 0; t < ProductRows; t++) gr[t] = t < rows ? g + (i0 + t) * r : zero;
                int j = 0;
                for (; j + w <= cols; j += w)
                {
                    V a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
                    LoRAKernels.OuterProducts(aPanels + (long)j * r, r, gr, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
                    float* at = dX + i0 * cols + j, xt = x + i0 * cols + j, mt = masked == null ? null : masked + i0 * cols + j;
                    ulong* bt = bits + i0 * words;
                    Finish(a0, 0, rows, at, xt, mt, bt, words, cols, j, accumulate);
                    Finish(a1, 1, rows, at, xt, mt, bt, words, cols, j, accumulate);
                    Finish(a2, 2, rows, at, xt, mt, bt, words, cols, j, accumulate);
                    Finish(a3, 3, rows, at, xt, mt, bt, words, cols, j, accumulate);
                    Finish(a4, 4, rows, at, xt, mt, bt, words, cols, j, accumulate);
                    Finish(a5, 5, rows, at, xt, mt, bt, words, cols, j, accumulate);
                    Finish(a6, 6, rows, at, xt, mt, bt, words, cols, j, accumulate);
                    Finish(a7, 7, rows, at, xt, mt, bt, words, cols, j, accumulate);
                }
                for (; j < cols; j++)
                    for (int t = 0; t < rows; t++)
                    {
                        long i = i0 + t;
                        float sum = 0;
                        for (int k = 0; k < r; k++) sum += g[i * r + k] * a[(long)k * cols + j];
                        bool dropped = Dropped(bits + i * words, j);
                        float* d = dX + i * cols + j;
                        *d = (accumulate ? *d : 0f) + (dropped ? 0f : sum);
                        if (masked != null) masked[i * cols + j] = dropped ? 0f : x[i * cols + j];
                    }

            }
        }

        // Row t of the block (if it is one of its real rows): the masked product into dX (added or set), the masked
        // input into xd. The pointers are the block's first row at column j.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Finish<V>(V product, int t, int rows, float* dX, float* x, float* masked, ulong* bits, int words, int cols, int j,
            bool accumulate) where V : struct, ISimdFloat<V>
        {
            if (t >= rows) return;
            var keep = Keep<V>(bits + (long)t * words, j);
            float* d = dX + (long)t * cols;
            (accumulate ? V.Load(d) + (product & keep) : product & keep).Store(d);
            if (masked != null) (V.Load(x + (long)t * cols) & keep).Store(masked + (long)t * cols);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Draw<V>(DropoutMask mask, float* x, long row0, long row1, int cols, ulong* bits, float* masked)
            where V : struct, ISimdFloat<V>
        {
            int words = Words(cols);
            var raw = (ulong*)NativeMemory.Alloc((nuint)(words + 1), sizeof(ulong));
            try
            {
                for (long i = row0; i < row1; i++)
                {
                    ulong* rowBits = bits + i * words;
                    mask.RowBits(i * cols, cols, rowBits, raw);
                    MaskRow<V>(x + i * cols, masked + i * cols, rowBits, cols);
                }
            }
            finally
            {
                NativeMemory.Free(raw);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Apply<V>(ulong* bits, float* x, float* masked, long row0, long row1, int cols)
            where V : struct, ISimdFloat<V>
        {
            int words = Words(cols);
            for (long i = row0; i < row1; i++) MaskRow<V>(x + i * cols, masked + i * cols, bits + i * words, cols);
        }

        /// <summary>x ⊙ keep for one row, given its dropped bits aligned to the row start (source and destination may coincide).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        internal static void MaskRow<V>(float* source, float* destination, ulong* bits, int cols) where V : struct, ISimdFloat<V>
        {
            int j = 0;
            for (; j + V.Count <= cols; j += V.Count) (V.Load(source + j) & Keep<V>(bits, j)).Store(destination + j);
            for (; j < cols; j++) destination[j] = Dropped(bits, j) ? 0f : source[j];
        }

        /// <summary>All-ones lanes for the kept elements j .. j + width − 1 (j a multiple of the width, which divides 64).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        internal static V Keep<V>(ulong* bits, int j) where V : struct, ISimdFloat<V> =>
            V.KeptLanes((uint)(bits[j >> 6] >> (j & 63)) & (uint)((1L << V.Count) - 1));

        /// <summary>Whether element j of a row is dropped.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        internal static bool Dropped(ulong* bits, int j) => ((bits[j >> 6] >> (j & 63)) & 1) != 0;
    }
}
