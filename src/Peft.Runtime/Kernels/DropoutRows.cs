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

        /// <summary>
        /// With the bits <see cref="Draw"/> wrote: <paramref name="masked"/> = x ⊙ keep (if not null) and
        /// <paramref name="inPlace"/> ⊙= keep (if not null), both [n, cols].
        /// </summary>
        internal static void Apply(ulong* bits, float* x, float* masked, float* inPlace, long n, int cols, int threads)
        {
            nint xp = (nint)x, bp = (nint)bits, mp = (nint)masked, ip = (nint)inPlace;
            KernelWorkers.Spans(n, ChunkRows, threads, (row0, row1) =>
            {
                if (LoRAKernels.Wide) Apply<Simd512>((ulong*)bp, (float*)xp, (float*)mp, (float*)ip, row0, row1, cols);
                else Apply<Simd256>((ulong*)bp, (float*)xp, (float*)mp, (float*)ip, row0, row1, cols);
            });
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
        private static void Apply<V>(ulong* bits, float* x, float* masked, float* inPlace, long row0, long row1, int cols)
            where V : struct, ISimdFloat<V>
        {
            int words = Words(cols);
            for (long i = row0; i < row1; i++)
            {
                ulong* rowBits = bits + i * words;
                if (masked != null) MaskRow<V>(x + i * cols, masked + i * cols, rowBits, cols);
                if (inPlace != null) MaskRow<V>(inPlace + i * cols, inPlace + i * cols, rowBits, cols);
            }
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
