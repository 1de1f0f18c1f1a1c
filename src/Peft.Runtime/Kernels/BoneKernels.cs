using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// The memory-bound passes of the Bone layer over raw float32 rows whose columns repeat with period r (the block):
    /// folding a row's r-wide blocks into one, broadcasting r values over a row's blocks, and adding a per-row r-vector
    /// to every block of a weight row. libtorch runs each as a strided reduction or a copy from a broadcast view, an
    /// order of magnitude slower than one streaming pass on the development machine (benchmarks/README.md).
    /// </summary>
    /// <remarks>
    /// Every loop works on a period of L = lcm(r, 8) floats, a whole number of 8-float vectors and of blocks, so any
    /// block size is vectorised: the r values are laid out L / r times in a pattern (or an accumulator) of L floats.
    /// The loops are compiled fully optimised from their first call (<c>AggressiveOptimization</c>), as in
    /// <see cref="LoRAKernels"/>.
    /// </remarks>
    internal static unsafe class BoneKernels
    {
        private const int Width = 8;

        /// <summary>The period: the least common multiple of r and the vector width.</summary>
        internal static int Period(int r) => r / Gcd(r, Width) * Width;

        private static int Gcd(int a, int b) => b == 0 ? a : Gcd(b, a % b);

        /// <summary>fold[i, c] = Σ_J x[i, J·r + c] for x [rows, cols] (r dividing cols), fold [rows, r].</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        internal static void Fold(float* x, long rows, int cols, int r, float* fold)
        {
            int period = Period(r);
            using var buffer = new Scratch(period);
            float* acc = buffer.Floats;
            for (long i = 0; i < rows; i++)
            {
                float* row = x + i * cols, f = fold + i * r;
                int j = 0;
                if (cols >= period)
                {
                    // Whole periods into L accumulators, then the L / r copies of each block folded into f.
                    for (int c = 0; c < period; c += Width) Vector256.Load(row + c).Store(acc + c);
                    for (j = period; j + period <= cols; j += period)
                        for (int c = 0; c < period; c += Width)
                            (Vector256.Load(acc + c) + Vector256.Load(row + j + c)).Store(acc + c);
                    for (int c = 0; c < r; c++) f[c] = acc[c];
                    for (int k = r; k < period; k += r)
                        for (int c = 0; c < r; c++) f[c] += acc[k + c];
                }
                else
                    for (int c = 0; c < r; c++) f[c] = 0;
                for (; j < cols; j += r)                                     // blocks past the last whole period
                    for (int c = 0; c < r; c++) f[c] += row[j + c];
            }
        }

        /// <summary>dst[i, J·r + c] = g[i, c] for g [rows, r] and dst [rows, cols] (r dividing cols).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        internal static void Broadcast(float* g, long rows, int cols, int r, float* dst)
        {
            int period = Period(r);
            using var buffer = new Scratch(period);
            float* pattern = buffer.Floats;
            for (long i = 0; i < rows; i++)
            {
                float* src = g + i * r, row = dst + i * cols;
                for (int k = 0; k < period; k += r)
                    for (int c = 0; c < r; c++) pattern[k + c] = src[c];
                int j = 0;
                for (; j + period <= cols; j += period)
                    for (int c = 0; c < period; c += Width) Vector256.Load(pattern + c).Store(row + j + c);
                for (; j < cols; j++) row[j] = pattern[j % r];
            }
        }

        /// <summary>
        /// dst[o, J·r + c] = src[o, J·r + c] + dT[o, c] for src, dst [rows, cols] and dT [rows, r] (r dividing cols):
        /// W + ΔW for the Bone block D = dTᵀ. <paramref name="dst"/> may be <paramref name="src"/>.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        internal static void AddPeriodic(float* src, float* dT, long rows, int cols, int r, float* dst)
        {
            int period = Period(r);
            using var buffer = new Scratch(period);
            float* pattern = buffer.Floats;
            for (long o = 0; o < rows; o++)
            {
                float* add = dT + o * r, s = src + o * cols, t = dst + o * cols;
                for (int k = 0; k < period; k += r)
                    for (int c = 0; c < r; c++) pattern[k + c] = add[c];
                int j = 0;
                for (; j + period <= cols; j += period)
                    for (int c = 0; c < period; c += Width)
                        (Vector256.Load(s + j + c) + Vector256.Load(pattern + c)).Store(t + j + c);
                for (; j < cols; j++) t[j] = s[j] + pattern[j % r];
            }
        }

        /// <summary>
        /// The Bat-adapted weight: dst[o, J·r + b] = W[o, J·r + b] + D[I, a, b] + Σ_c W[o, J·r + c]·D[I, c, b] for
        /// W [outF, inF], D [outF / r, r, r], with I = o / r and a = o mod r: every tile W_IJ + W_IJ·D_I + D_I, written
        /// in W's own layout in one pass (libtorch would need a batched product and two additions, each a fresh
        /// weight-sized tensor). Rows are shared by up to <paramref name="threads"/> workers.
        /// </summary>
        internal static void BatWeight(float* w, float* d, int outF, int inF, int r, float* dst, int threads)
        {
            // Groups of four rows of one output block: a block of r rows splits into ⌈r / 4⌉ groups.
            int groupsPerBlock = (r + 3) / 4;
            long groups = (long)(outF / r) * groupsPerBlock;
            KernelWorkers.Spans(groups, 16, threads, (g0, g1) => BatGroups(w, d, inF, r, dst, g0, g1));
        }

        // Row groups [g0, g1) of BatWeight: group g is rows I·r + 4q .. I·r + 4q + 3 (fewer at the block's end), with
        // I = g / ⌈r/4⌉ and q = g mod ⌈r/4⌉. Missing rows of a short group read a zero row and write a scratch row.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void BatGroups(float* w, float* d, int inF, int r, float* dst, long g0, long g1)
        {
            int groupsPerBlock = (r + 3) / 4;
            int vw = LoRAKernels.Wide ? 16 : 8;
            bool vector = r % vw == 0;
            float* zero = (float*)NativeMemory.AllocZeroed((nuint)(2 * inF + r) * sizeof(float));
            float* dump = zero + inF + r;
            float** wr = stackalloc float*[4];
            float** dr = stackalloc float*[4];
            float** outRows = stackalloc float*[4];
            try
            {
                for (long g = g0; g < g1; g++)
                {
                    long I = g / groupsPerBlock;
                    int a0 = (int)(g % groupsPerBlock) * 4;
                    float* dI = d + I * r * r;
                    for (int t = 0; t < 4; t++)
                    {
                        bool real = a0 + t < r;
                        long o = I * r + a0 + t;
                        wr[t] = real ? w + o * inF : zero;
                        dr[t] = real ? dI + (long)(a0 + t) * r : zero + inF;
                        outRows[t] = real ? dst + o * inF : dump;
                    }
                    for (int j = 0; j < inF; j += r)
                    {
                        float* w0 = wr[0] + j, w1 = wr[1] + j, w2 = wr[2] + j, w3 = wr[3] + j;
                        float* o0 = outRows[0] + j, o1 = outRows[1] + j, o2 = outRows[2] + j, o3 = outRows[3] + j;
                        if (!vector)
                        {
                            for (int b = 0; b < r; b++)
                            {
                                float s0 = w0[b] + dr[0][b], s1 = w1[b] + dr[1][b], s2 = w2[b] + dr[2][b], s3 = w3[b] + dr[3][b];
                                for (int c = 0; c < r; c++)
                                {
                                    float dv = dI[(long)c * r + b];
                                    s0 += w0[c] * dv;
                                    s1 += w1[c] * dv;
                                    s2 += w2[c] * dv;
                                    s3 += w3[c] * dv;
                                }
                                o0[b] = s0;
                                o1[b] = s1;
                                o2[b] = s2;
                                o3[b] = s3;
                            }
                        }
                        else if (vw == 16) BatTile<Simd512>(w0, w1, w2, w3, dr, dI, r, o0, o1, o2, o3);
                        else BatTile<Simd256>(w0, w1, w2, w3, dr, dI, r, o0, o1, o2, o3);
                    }
                }
            }
            finally
            {
                NativeMemory.Free(zero);
            }
        }

        // Four rows of one Bat tile, r a multiple of the vector width: o_t[b] = w_t[b] + D_I[a_t, b] + Σ_c w_t[c]·D_I[c, b].
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void BatTile<TV>(float* w0, float* w1, float* w2, float* w3, float** dr, float* dI, int r,
            float* o0, float* o1, float* o2, float* o3) where TV : struct, ISimdFloat<TV>
        {
            for (int b = 0; b < r; b += TV.Count)
            {
                var s0 = TV.Load(w0 + b) + TV.Load(dr[0] + b);
                var s1 = TV.Load(w1 + b) + TV.Load(dr[1] + b);
                var s2 = TV.Load(w2 + b) + TV.Load(dr[2] + b);
                var s3 = TV.Load(w3 + b) + TV.Load(dr[3] + b);
                float* dc = dI + b;
                for (int c = 0; c < r; c++, dc += r)
                {
                    var dv = TV.Load(dc);
                    s0 = TV.MultiplyAdd(TV.Broadcast(w0[c]), dv, s0);
                    s1 = TV.MultiplyAdd(TV.Broadcast(w1[c]), dv, s1);
                    s2 = TV.MultiplyAdd(TV.Broadcast(w2[c]), dv, s2);
                    s3 = TV.MultiplyAdd(TV.Broadcast(w3[c]), dv, s3);
                }
                s0.Store(o0 + b);
                s1.Store(o1 + b);
                s2.Store(o2 + b);
                s3.Store(o3 + b);
            }
        }

        // A period's worth of native floats (a block may be as wide as the layer, too large for the stack).
        private readonly struct Scratch : IDisposable
        {
            internal readonly float* Floats;

            internal Scratch(int count) => Floats = (float*)NativeMemory.AlignedAlloc((nuint)count * sizeof(float), 64);

            public void Dispose() => NativeMemory.AlignedFree(Floats);
        }
    }
}
