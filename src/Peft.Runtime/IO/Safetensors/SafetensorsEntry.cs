using System;

namespace Peft.Runtime.IO
{
    /// <summary>One tensor as a safetensors header describes it.</summary>
    /// <param name="Name">The tensor's key.</param>
    /// <param name="DType">The safetensors dtype name: <c>F32</c>, <c>F16</c>, <c>BF16</c>, <c>F64</c>, <c>I64</c>,
    /// <c>I32</c>, <c>I16</c>, <c>I8</c>, <c>U8</c> or <c>BOOL</c>.</param>
    /// <param name="Shape">The dimensions; empty for a 0-d scalar.</param>
    /// <param name="Begin">First byte of the data, relative to the start of the data section.</param>
    /// <param name="End">One past the last byte of the data, relative to the start of the data section.</param>
    public sealed record SafetensorsEntry(string Name, string DType, long[] Shape, long Begin, long End)
    {
        /// <summary>The number of data bytes: <c>End - Begin</c>.</summary>
        public long ByteLength => End - Begin;

        /// <summary>Whether <paramref name="other"/> describes the same tensor, comparing the shape element-wise
        /// (the record's own equality compares the shape array by reference).</summary>
        internal bool SameAs(SafetensorsEntry other) =>
            Name == other.Name && DType == other.DType && Begin == other.Begin && End == other.End
            && Shape.AsSpan().SequenceEqual(other.Shape);
    }
}
