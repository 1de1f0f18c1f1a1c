using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// A float vector of one hardware width, so one loop body serves AVX2 and AVX-512: the JIT compiles a generic
    /// method once per struct argument, with the wrapper inlined away. (.NET 10's own ISimdVector is not implemented
    /// publicly by Vector256 and Vector512.)
    /// </summary>
    /// <typeparam name="TSelf">The implementing struct.</typeparam>
    internal unsafe interface ISimdFloat<TSelf> where TSelf : struct, ISimdFloat<TSelf>
    {
        /// <summary>Floats per vector.</summary>
        static abstract int Count { get; }

        /// <summary>Loads <see cref="Count"/> floats.</summary>
        static abstract TSelf Load(float* source);

        /// <summary>Every lane <paramref name="value"/>.</summary>
        static abstract TSelf Broadcast(float value);

        /// <summary>a·b + c, fused.</summary>
        static abstract TSelf MultiplyAdd(TSelf a, TSelf b, TSelf c);

        /// <summary>Lane-wise sum.</summary>
        static abstract TSelf operator +(TSelf a, TSelf b);

        /// <summary>Lane-wise bitwise and (a lane mask of all ones or zeros keeps or clears a float).</summary>
        static abstract TSelf operator &(TSelf a, TSelf b);

        /// <summary>Every bit set: the mask that keeps every lane.</summary>
        static abstract TSelf AllBitsSet { get; }

        /// <summary>
        /// All-ones lanes where bit l of <paramref name="dropped"/> is clear, zero lanes where it is set
        /// (l &lt; <see cref="Count"/>; higher bits must be zero).
        /// </summary>
        static abstract TSelf KeptLanes(uint dropped);

        /// <summary>The sum of the lanes.</summary>
        static abstract float Sum(TSelf a);

        /// <summary>Stores <see cref="Count"/> floats.</summary>
        void Store(float* destination);
    }

    /// <summary>Eight floats (AVX2).</summary>
    internal readonly unsafe struct Simd256 : ISimdFloat<Simd256>
    {
        private readonly Vector256<float> _value;

        private Simd256(Vector256<float> value) => _value = value;

        public static int Count => Vector256<float>.Count;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Simd256 Load(float* source) => new(Vector256.Load(source));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Simd256 Broadcast(float value) => new(Vector256.Create(value));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Simd256 MultiplyAdd(Simd256 a, Simd256 b, Simd256 c) => new(Vector256.FusedMultiplyAdd(a._value, b._value, c._value));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Simd256 operator +(Simd256 a, Simd256 b) => new(a._value + b._value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Simd256 operator &(Simd256 a, Simd256 b) => new(a._value & b._value);

        public static Simd256 AllBitsSet
        {
            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            get => new(Vector256<float>.AllBitsSet);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Simd256 KeptLanes(uint dropped) =>
            new(Vector256.Equals(Vector256.Create(dropped) & Vector256.Create(1u, 2, 4, 8, 16, 32, 64, 128), Vector256<uint>.Zero).AsSingle());

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Sum(Simd256 a) => Vector256.Sum(a._value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Store(float* destination) => _value.Store(destination);
    }

    /// <summary>Sixteen floats (AVX-512).</summary>
    internal readonly unsafe struct Simd512 : ISimdFloat<Simd512>
    {
        private readonly Vector512<float> _value;

        private Simd512(Vector512<float> value) => _value = value;

        public static int Count => Vector512<float>.Count;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Simd512 Load(float* source) => new(Vector512.Load(source));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Simd512 Broadcast(float value) => new(Vector512.Create(value));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Simd512 MultiplyAdd(Simd512 a, Simd512 b, Simd512 c) => new(Vector512.FusedMultiplyAdd(a._value, b._value, c._value));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Simd512 operator +(Simd512 a, Simd512 b) => new(a._value + b._value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Simd512 operator &(Simd512 a, Simd512 b) => new(a._value & b._value);

        public static Simd512 AllBitsSet
        {
            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            get => new(Vector512<float>.AllBitsSet);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Simd512 KeptLanes(uint dropped) =>
            new(Vector512.Equals(Vector512.Create(dropped) & Vector512.Create(1u, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768),
                Vector512<uint>.Zero).AsSingle());

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Sum(Simd512 a) => Vector512.Sum(a._value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Store(float* destination) => _value.Store(destination);
    }
}
