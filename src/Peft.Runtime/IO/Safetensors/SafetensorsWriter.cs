using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.IO
{
    /// <summary>A tensor checked and placed in the data section, ready to be written.</summary>
    internal sealed record PreparedTensor(string Name, byte[] Utf8Name, Tensor Tensor, SafetensorsDType DType, long[] Shape, long Begin, long End);

    /// <summary>Lays tensors out and writes a safetensors image to a stream.</summary>
    internal static class SafetensorsWriter
    {
        // Throws on lone surrogates instead of writing U+FFFD: a key must come back as it went in.
        private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

        /// <summary>
        /// Checks every key, dtype and metadata entry and computes the header, before any byte is written, so that
        /// bad arguments never leave a file behind.
        /// </summary>
        internal static (byte[] Header, IReadOnlyList<PreparedTensor> Tensors) Prepare(
            IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata)
        {
            ArgumentNullException.ThrowIfNull(tensors);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var prepared = new List<PreparedTensor>();
            foreach (KeyValuePair<string, Tensor> pair in tensors)
            {
                string key = pair.Key ?? throw new ArgumentException("A tensor key is null.", nameof(tensors));
                if (key == "__metadata__")
                    throw new ArgumentException("Tensor key '__metadata__' is reserved for the metadata map.", nameof(tensors));
                if (!seen.Add(key))
                    throw new ArgumentException($"Tensor key '{key}' appears twice.", nameof(tensors));
                Tensor tensor = pair.Value ?? throw new ArgumentException($"Tensor '{key}' is null.", nameof(tensors));
                if (!SafetensorsDTypes.TryFromScalarType(tensor.dtype, out SafetensorsDType? dtype))
                    throw new ArgumentException(
                        $"Tensor '{key}' has dtype {tensor.dtype}, which safetensors IO does not support ({SafetensorsDTypes.SupportedNames}).",
                        nameof(tensors));
                long[] shape = tensor.shape;
                long bytes = checked(tensor.numel() * dtype.Value.Size);
                prepared.Add(new PreparedTensor(key, Utf8(key, $"Tensor key '{key}'"), tensor, dtype.Value, shape, 0, bytes));
            }

            // The Rust crate's order: widest dtype first, then by name as UTF-8 bytes (ordinal for one dtype).
            prepared.Sort((a, b) =>
            {
                int byType = b.DType.WriteRank.CompareTo(a.DType.WriteRank);
                return byType != 0 ? byType : a.Utf8Name.AsSpan().SequenceCompareTo(b.Utf8Name);
            });
            long offset = 0;
            for (int i = 0; i < prepared.Count; i++)
            {
                long length = prepared[i].End;
                prepared[i] = prepared[i] with { Begin = offset, End = checked(offset + length) };
                offset += length;
            }

            return (SafetensorsHeaderJson.Build(SortedMetadata(metadata), prepared), prepared);
        }

        /// <summary>Writes the length field, the header and every tensor's bytes.</summary>
        internal static void WriteTo(Stream stream, byte[] header, IReadOnlyList<PreparedTensor> tensors)
        {
            Span<byte> lengthField = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(lengthField, (ulong)header.Length);
            stream.Write(lengthField);
            stream.Write(header);
            foreach (PreparedTensor t in tensors)
            {
                // Frees the CPU copy (for a GPU or strided tensor) before the next one is made.
                using var scope = torch.NewDisposeScope();
                Tensor cpu = t.Tensor.detach().cpu().contiguous();
                long bytes = t.End - t.Begin;
                if (cpu.dtype != t.DType.ScalarType || cpu.numel() * t.DType.Size != bytes)
                    throw new InvalidOperationException($"Tensor '{t.Name}' changed its dtype or shape while it was being written.");
                TensorMemory.WriteFrom(stream, cpu, bytes);
            }
        }

        private static List<KeyValuePair<string, string>> SortedMetadata(IReadOnlyDictionary<string, string>? metadata)
        {
            var sorted = new List<KeyValuePair<string, string>>();
            if (metadata is null) return sorted;
            foreach (KeyValuePair<string, string> pair in metadata)
            {
                if (pair.Value is null)
                    throw new ArgumentException($"Metadata value of '{pair.Key}' is null.", nameof(metadata));
                Utf8(pair.Key, $"Metadata key '{pair.Key}'");
                Utf8(pair.Value, $"Metadata value of '{pair.Key}'");
                sorted.Add(pair);
            }
            // serde writes a HashMap in arbitrary order; a fixed order makes our files reproducible.
            sorted.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
            return sorted;
        }

        private static byte[] Utf8(string text, string what)
        {
            try
            {
                return StrictUtf8.GetBytes(text);
            }
            catch (EncoderFallbackException ex)
            {
                throw new ArgumentException($"{what} is not valid Unicode (a lone surrogate).", ex);
            }
        }
    }
}
