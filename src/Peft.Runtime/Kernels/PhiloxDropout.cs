using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the
    /// counter-based generator cuRAND and PyTorch's CUDA dropout use: four 32-bit words out of a 128-bit counter and
    /// a 64-bit key, with no state, so any part of a stream can be regenerated from (key, counter) alone.
    /// </summary>
    internal static class Philox4x32
    {
        internal const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

        /// <summary>The ten-round bijection of one counter under one key.</summary>
        internal static (uint X0, uint X1, uint X2, uint X3) Block(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
        {
            for (int round = 0; round < 10; round++)
            {
                if (round > 0)
                {
                    k0 += W0;
                    k1 += W1;
                }
                ulong p0 = (ulong)M0 * c0, p1 = (ulong)M1 * c2;
                uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0, n2 = (uint)(p0 >> 32) ^ c3 ^ k1;
                c1 = (uint)p1;
                c3 = (uint)p0;
                c0 = n0;
                c2 = n2;
            }
            return (c0, c1, c2, c3);
        }
    }

    /// <summary>
    /// The dropout mask of one forward call, defined on the flattened (row-major) input and regenerable from its seed:
    /// element <c>e</c> lies in 64-element block <c>e / 64</c>; block <c>q</c> draws Philox4x32-10 on the eight counters
    /// <c>8q + l</c> (l = 0..7, a 64-bit counter in words 0–1, words 2–3 zero) under key = seed; element
    /// <c>k = e mod 64</c> reads word <c>k / 16</c> of counter <c>8q + k mod 8</c>, its low 16 bits when
    /// <c>(k / 8)</c> is even, its high 16 bits otherwise, and is dropped when that value is below
    /// <see cref="Threshold"/> = round(p·65536). Kept elements are scaled by 1 / (1 − p), as
    /// <c>torch.nn.functional.dropout</c> does.
    /// </summary>
    /// <remarks>
    /// The definition does not depend on the vector width: the AVX-512, AVX2 and scalar paths produce the same bits
    /// (tested). 16-bit decisions quantise p to a multiple of 2⁻¹⁶ (0.05 becomes 0.0500030) and let one Philox call
    /// decide eight elements, which is what makes the mask cheap: about 2 vector instructions per element.
    /// </remarks>
    internal readonly struct DropoutMask
    {
        private static readonly Vector256<uint> LaneBits8 = Vector256.Create(1u, 2, 4, 8, 16, 32, 64, 128);

        /// <summary>Elements decided by one block of eight Philox counters.</summary>
        internal const int BlockElements = 64;

        /// <summary>A mask for probability <paramref name="p"/> in [0, 1).</summary>
        internal DropoutMask(ulong seed, double p)
        {
            if (!(p >= 0 && p < 1)) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout must lie in [0, 1)");
            Seed = seed;
            Probability = p;
            Threshold = (int)Math.Min(65535, Math.Round(p * 65536));
            KeepScale = (float)(1.0 / (1.0 - p));
        }

        /// <summary>The Philox key.</summary>
        internal ulong Seed { get; }

        /// <summary>The dropout probability as given.</summary>
        internal double Probability { get; }

        /// <summary>An element is dropped when its 16-bit draw is below this.</summary>
        internal int Threshold { get; }

        /// <summary>The factor on kept elements, 1 / (1 − p).</summary>
        internal float KeepScale { get; }

        /// <summary>Whether the mask drops anything at all.</summary>
        internal bool DropsAny => Threshold > 0;

        /// <summary>Which path <see cref="DroppedBits"/> takes on this machine: for tests and benchmark notes.</summary>
        internal static string Path => Avx512F.IsSupported ? "AVX-512" : Avx2.IsSupported ? "AVX2" : "scalar";

        /// <summary>Whether element <paramref name="element"/> is dropped (scalar; for tests).</summary>
        internal bool IsDropped(long element)
        {
            long block = element / BlockElements;
            int k = (int)(element % BlockElements);
            ulong ctr = (ulong)block * 8 + (ulong)(k & 7);
            var (x0, x1, x2, x3) = Philox4x32.Block((uint)ctr, (uint)(ctr >> 32), 0, 0, (uint)Seed, (uint)(Seed >> 32));
            uint word = (k >> 4) switch { 0 => x0, 1 => x1, 2 => x2, _ => x3 };
            uint value = ((k >> 3) & 1) == 0 ? word & 0xFFFF : word >> 16;
            return value < (uint)Threshold;
        }

        /// <summary>Bit <c>i</c> of <c>bits[j]</c> says whether element <c>64·(firstBlock + j) + i</c> is dropped.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        internal void DroppedBits(long firstBlock, Span<ulong> bits)
        {
            int done = 0;
            if (Avx512F.IsSupported)
            {
                if ((firstBlock & 1) != 0 && bits.Length > 0)
                {
                    DroppedBitsAvx2OrScalar(firstBlock, bits[..1]);
                    done = 1;
                }
                for (; done + 2 <= bits.Length; done += 2)
                    DroppedBitsAvx512(firstBlock + done, out bits[done], out bits[done + 1]);
            }
            DroppedBitsAvx2OrScalar(firstBlock + done, bits[done..]);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void DroppedBitsAvx2OrScalar(long firstBlock, Span<ulong> bits)
        {
            if (Avx2.IsSupported)
                for (int j = 0; j < bits.Length; j++) bits[j] = DroppedBitsAvx2(firstBlock + j);
            else
                DroppedBitsScalar(firstBlock, bits);
        }

        /// <summary>The portable definition, one counter at a time.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        internal void DroppedBitsScalar(long firstBlock, Span<ulong> bits)
        {
            uint k0 = (uint)Seed, k1 = (uint)(Seed >> 32);
            for (int j = 0; j < bits.Length; j++)
            {
                ulong mask = 0;
                ulong ctr0 = (ulong)(firstBlock + j) * 8;
                for (int l = 0; l < 8; l++)
                {
                    ulong ctr = ctr0 + (ulong)l;
                    var (x0, x1, x2, x3) = Philox4x32.Block((uint)ctr, (uint)(ctr >> 32), 0, 0, k0, k1);
                    mask |= Decide(x0, 0, l) | Decide(x1, 1, l) | Decide(x2, 2, l) | Decide(x3, 3, l);
                }
                bits[j] = mask;
            }
        }

        private ulong Decide(uint word, int index, int lane)
        {
            ulong lo = (word & 0xFFFF) < (uint)Threshold ? 1UL : 0UL;
            ulong hi = (word >> 16) < (uint)Threshold ? 1UL : 0UL;
            return (lo << (16 * index + lane)) | (hi << (16 * index + 8 + lane));
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private ulong DroppedBitsAvx2(long block)
        {
            Rounds<PhiloxLanes256>((ulong)block * 8, out var c0, out var c1, out var c2, out var c3);
            var threshold = Vector256.Create(Threshold);
            return Decide(c0.Value, threshold) | (Decide(c1.Value, threshold) << 16) | (Decide(c2.Value, threshold) << 32)
                | (Decide(c3.Value, threshold) << 48);
        }

        // Philox4x32-10 on the counters first + l, one per lane (first's low bits zero, so adding the lane never
        // carries), words 2–3 zero, under key = seed.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Rounds<T>(ulong first, out T c0, out T c1, out T c2, out T c3) where T : struct, IPhiloxLanes<T>
        {
            c0 = T.Counters((uint)first);
            c1 = T.Broadcast((uint)(first >> 32));
            c2 = default;
            c3 = default;
            uint k0 = (uint)Seed, k1 = (uint)(Seed >> 32);
            T m0 = T.Broadcast(Philox4x32.M0), m1 = T.Broadcast(Philox4x32.M1);
            for (int round = 0; round < 10; round++)
            {
                if (round > 0)
                {
                    k0 += Philox4x32.W0;
                    k1 += Philox4x32.W1;
                }
                T.MulHiLo(c0, m0, out var hi0, out var lo0);
                T.MulHiLo(c2, m1, out var hi1, out var lo1);
                c0 = T.Xor(hi1, c1, T.Broadcast(k0));
                c2 = T.Xor(hi0, c3, T.Broadcast(k1));
                c1 = lo1;
                c3 = lo0;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static ulong Decide(Vector256<uint> word, Vector256<int> threshold)
        {
            var lo = Vector256.LessThan((word & Vector256.Create(0xFFFFu)).AsInt32(), threshold).ExtractMostSignificantBits();
            var hi = Vector256.LessThan((word >>> 16).AsInt32(), threshold).ExtractMostSignificantBits();
            return lo | ((ulong)hi << 8);
        }

        // Two blocks at once: counters 8q .. 8q + 15 for an even q, so lanes 0–7 are block q and lanes 8–15 block q + 1.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void DroppedBitsAvx512(long block, out ulong first, out ulong second)
        {
            Rounds<PhiloxLanes512>((ulong)block * 8, out var c0, out var c1, out var c2, out var c3);
            var threshold = Vector512.Create(Threshold);
            ulong d0 = Decide(c0.Value, threshold), d1 = Decide(c1.Value, threshold), d2 = Decide(c2.Value, threshold), d3 = Decide(c3.Value, threshold);
            // Each dN holds 32 bits: low 16 for block q (lo half lanes, hi half lanes), high 16 for block q + 1.
            first = (d0 & 0xFFFF) | ((d1 & 0xFFFF) << 16) | ((d2 & 0xFFFF) << 32) | ((d3 & 0xFFFF) << 48);
            second = (d0 >> 16) | ((d1 >> 16) << 16) | ((d2 >> 16) << 32) | ((d3 >> 16) << 48);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static ulong Decide(Vector512<uint> word, Vector512<int> threshold)
        {
            ulong lo = Vector512.LessThan((word & Vector512.Create(0xFFFFu)).AsInt32(), threshold).ExtractMostSignificantBits();
            ulong hi = Vector512.LessThan((word >>> 16).AsInt32(), threshold).ExtractMostSignificantBits();
            // lo / hi: bit l = lane l (0–15). Block q takes lanes 0–7, block q + 1 lanes 8–15.
            return (lo & 0xFF) | ((hi & 0xFF) << 8) | ((lo >> 8) << 16) | ((hi >> 8) << 24);
        }

        /// <summary>
        /// Bit <c>t mod 64</c> of <c>destination[t / 64]</c> says whether element <c>first + t</c> is dropped, for
        /// t &lt; <paramref name="count"/> (bits past it are unspecified): one row's bits, aligned to the row's start.
        /// </summary>
        /// <param name="first">The first element (flattened index).</param>
        /// <param name="count">How many elements.</param>
        /// <param name="destination">⌈count / 64⌉ words.</param>
        /// <param name="scratch">⌈count / 64⌉ + 1 words.</param>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        internal unsafe void RowBits(long first, int count, ulong* destination, ulong* scratch)
        {
            int words = (count + BlockElements - 1) / BlockElements;
            int shift = (int)(first % BlockElements);
            if (shift == 0)
            {
                DroppedBits(first / BlockElements, new Span<ulong>(destination, words));
                return;
            }
            DroppedBits(first / BlockElements, new Span<ulong>(scratch, words + 1));
            for (int w = 0; w < words; w++) destination[w] = (scratch[w] >> shift) | (scratch[w + 1] << (64 - shift));
        }

        /// <summary>Writes the scaled mask of elements [0, <paramref name="count"/>): 0 where dropped, 1 / (1 − p) elsewhere.</summary>
        internal unsafe void Fill(float* destination, long count) => Fill(destination, 0, count);

        /// <summary>
        /// Writes the scaled mask of elements [<paramref name="first"/>, <paramref name="first"/> + <paramref name="count"/>)
        /// to <paramref name="destination"/>[0, count); <paramref name="first"/> is a multiple of <see cref="BlockElements"/>.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        internal unsafe void Fill(float* destination, long first, long count)
        {
            if (first % BlockElements != 0) throw new ArgumentOutOfRangeException(nameof(first), first, "must be a multiple of 64");
            const int Chunk = 64;
            Span<ulong> bits = stackalloc ulong[Chunk];
            long blocks = (count + BlockElements - 1) / BlockElements, firstBlock = first / BlockElements;
            float keep = KeepScale;
            var keepVector = Vector256.Create(keep);
            for (long b0 = 0; b0 < blocks; b0 += Chunk)
            {
                int n = (int)Math.Min(Chunk, blocks - b0);
                DroppedBits(firstBlock + b0, bits[..n]);
                for (int j = 0; j < n; j++)
                {
                    long start = (b0 + j) * BlockElements;
                    int len = (int)Math.Min(BlockElements, count - start);
                    ulong m = bits[j];
                    int i = 0;
                    if (Vector256.IsHardwareAccelerated)
                        for (; i + 8 <= len; i += 8)
                        {
                            var kept = Vector256.Equals(Vector256.Create((uint)(m >> i) & 0xFF) & LaneBits8, Vector256<uint>.Zero);
                            (kept.AsSingle() & keepVector).Store(destination + start + i);
                        }
                    for (; i < len; i++) destination[start + i] = ((m >> i) & 1) != 0 ? 0f : keep;
                }
            }
        }
    }
    /// <summary>
    /// Philox's 32-bit lanes at one vector width, so <see cref="DropoutMask"/>'s ten rounds are written once for AVX2
    /// and AVX-512 (the wrappers inline away, as <see cref="ISimdFloat{TSelf}"/>'s do).
    /// </summary>
    internal interface IPhiloxLanes<TSelf> where TSelf : struct, IPhiloxLanes<TSelf>
    {
        /// <summary>Lane l holds <paramref name="first"/> + l.</summary>
        static abstract TSelf Counters(uint first);

        /// <summary>Every lane <paramref name="value"/>.</summary>
        static abstract TSelf Broadcast(uint value);

        /// <summary>a ^ b ^ c lane-wise (one expression, so AVX-512 folds it into one ternary-logic instruction).</summary>
        static abstract TSelf Xor(TSelf a, TSelf b, TSelf c);

        /// <summary>The high and low words of each lane's 64-bit product with the same lane of <paramref name="m"/>.</summary>
        static abstract void MulHiLo(TSelf a, TSelf m, out TSelf hi, out TSelf lo);
    }

    /// <summary>Eight lanes (AVX2).</summary>
    internal readonly struct PhiloxLanes256 : IPhiloxLanes<PhiloxLanes256>
    {
        internal readonly Vector256<uint> Value;

        private PhiloxLanes256(Vector256<uint> value) => Value = value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static PhiloxLanes256 Counters(uint first) => new(Vector256.Create(first) + Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static PhiloxLanes256 Broadcast(uint value) => new(Vector256.Create(value));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static PhiloxLanes256 Xor(PhiloxLanes256 a, PhiloxLanes256 b, PhiloxLanes256 c) => new(a.Value ^ b.Value ^ c.Value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void MulHiLo(PhiloxLanes256 a, PhiloxLanes256 m, out PhiloxLanes256 hi, out PhiloxLanes256 lo)
        {
            var mv = m.Value;
            Vector256<ulong> even = Avx2.Multiply(a.Value, mv);
            Vector256<ulong> odd = Avx2.Multiply((a.Value.AsUInt64() >>> 32).AsUInt32(), mv);
            lo = new(Avx2.Blend(even.AsUInt32(), (odd << 32).AsUInt32(), 0b1010_1010));
            hi = new(Avx2.Blend((even >>> 32).AsUInt32(), odd.AsUInt32(), 0b1010_1010));
        }
    }

    /// <summary>Sixteen lanes (AVX-512).</summary>
    internal readonly struct PhiloxLanes512 : IPhiloxLanes<PhiloxLanes512>
    {
        internal readonly Vector512<uint> Value;

        private PhiloxLanes512(Vector512<uint> value) => Value = value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static PhiloxLanes512 Counters(uint first) =>
            new(Vector512.Create(first) + Vector512.Create(0u, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static PhiloxLanes512 Broadcast(uint value) => new(Vector512.Create(value));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static PhiloxLanes512 Xor(PhiloxLanes512 a, PhiloxLanes512 b, PhiloxLanes512 c) => new(a.Value ^ b.Value ^ c.Value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void MulHiLo(PhiloxLanes512 a, PhiloxLanes512 m, out PhiloxLanes512 hi, out PhiloxLanes512 lo)
        {
            var mv = m.Value;
            Vector512<ulong> even = Avx512F.Multiply(a.Value, mv);
            Vector512<ulong> odd = Avx512F.Multiply((a.Value.AsUInt64() >>> 32).AsUInt32(), mv);
            var low = Vector512.Create(0xFFFF_FFFFUL);
            lo = new(((even & low) | (odd << 32)).AsUInt32());
            hi = new(((even >>> 32) | (odd & ~low)).AsUInt32());
        }
    }
}
