using System;
using System.Diagnostics.CodeAnalysis;
using static TorchSharp.torch;

namespace Peft.Runtime.IO
{
    /// <summary>One safetensors dtype this library reads and writes, and its torch counterpart.</summary>
    /// <param name="Name">The name in the header (<c>"F32"</c>, <c>"BOOL"</c>, ...).</param>
    /// <param name="ScalarType">The torch dtype a tensor of this kind is loaded as.</param>
    /// <param name="Size">Bytes per element.</param>
    /// <param name="WriteRank">
    /// The position of the dtype in the Rust <c>safetensors</c> crate's <c>Dtype</c> enum (relative order only).
    /// Its writer lays tensors out by this rank descending, then by name, so wide types come first and every
    /// tensor starts aligned to its element size; we do the same to write the bytes Python would write.
    /// </param>
    internal readonly record struct SafetensorsDType(string Name, ScalarType ScalarType, int Size, int WriteRank);

    /// <summary>The dtype table: the ten dtypes that both safetensors and TorchSharp know.</summary>
    internal static class SafetensorsDTypes
    {
        private static readonly SafetensorsDType[] All =
        {
            new("I64", ScalarType.Int64, 8, 9),
            new("F64", ScalarType.Float64, 8, 8),
            new("F32", ScalarType.Float32, 4, 7),
            new("I32", ScalarType.Int32, 4, 6),
            new("BF16", ScalarType.BFloat16, 2, 5),
            new("F16", ScalarType.Float16, 2, 4),
            new("I16", ScalarType.Int16, 2, 3),
            new("I8", ScalarType.Int8, 1, 2),
            new("U8", ScalarType.Byte, 1, 1),
            new("BOOL", ScalarType.Bool, 1, 0),
        };

        /// <summary>The supported names, for error messages.</summary>
        internal const string SupportedNames = "F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL";

        /// <summary>Looks a header dtype name up (exact, case-sensitive, as the format defines it).</summary>
        internal static bool TryFromName(string name, [NotNullWhen(true)] out SafetensorsDType? dtype)
        {
            foreach (SafetensorsDType d in All)
            {
                if (string.Equals(d.Name, name, StringComparison.Ordinal))
                {
                    dtype = d;
                    return true;
                }
            }
            dtype = null;
            return false;
        }

        /// <summary>Looks a torch dtype up.</summary>
        internal static bool TryFromScalarType(ScalarType type, [NotNullWhen(true)] out SafetensorsDType? dtype)
        {
            foreach (SafetensorsDType d in All)
            {
                if (d.ScalarType == type)
                {
                    dtype = d;
                    return true;
                }
            }
            dtype = null;
            return false;
        }
    }
}
