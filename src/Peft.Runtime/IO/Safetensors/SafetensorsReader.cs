using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.IO
{
    /// <summary>Reads safetensors from any seekable stream; the public path API and the in-memory tests share it.</summary>
    internal static class SafetensorsReader
    {
        /// <summary>The Rust crate's limit; a larger header is refused before anything is allocated for it.</summary>
        internal const long MaxHeaderLength = 100_000_000;

        /// <summary>Reads and validates the header.</summary>
        internal static SafetensorsHeader ReadHeader(Stream stream, string path)
        {
            long fileLength = stream.Length;
            if (fileLength < 8)
                throw new SafetensorsFormatException(path, null,
                    $"the file holds {fileLength} bytes, fewer than the 8-byte header length that starts every safetensors file");

            Span<byte> lengthField = stackalloc byte[8];
            stream.Position = 0;
            ReadExactly(stream, lengthField, path, "the header length");
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthField);
            if (headerLength < 2)
                throw new SafetensorsFormatException(path, null,
                    $"the header length is {headerLength} bytes, less than the 2 of the smallest JSON object");
            if (headerLength > MaxHeaderLength)
                throw new SafetensorsFormatException(path, null,
                    $"the header length is {headerLength} bytes, above the limit of {MaxHeaderLength}");
            if (headerLength > (ulong)(fileLength - 8))
                throw new SafetensorsFormatException(path, null,
                    $"the header length is {headerLength} bytes but only {fileLength - 8} bytes follow the length field");

            // Bounded by both checks above: at most 100 MB and never more than the file holds.
            byte[] json = new byte[headerLength];
            ReadExactly(stream, json, path, "the header");
            return SafetensorsHeaderParser.Parse(json, fileLength, path);
        }

        /// <summary>Reads one tensor described by <paramref name="header"/> into a new CPU tensor.</summary>
        /// <remarks>The tensor follows TorchSharp's usual ownership: it joins the caller's dispose scope, if any.</remarks>
        internal static Tensor ReadTensor(Stream stream, SafetensorsHeader header, SafetensorsEntry entry, string path)
        {
            if (!header.TryGetEntry(entry.Name, out SafetensorsEntry? own) || !own.SameAs(entry))
                throw new ArgumentException($"The header of '{path}' does not describe tensor '{entry.Name}' this way.", nameof(entry));
            long fileLength = stream.Length;
            if (fileLength != header.FileLength)
                throw new SafetensorsFormatException(path, entry.Name,
                    $"the file holds {fileLength} bytes now but {header.FileLength} when its header was read");
            if (!SafetensorsDTypes.TryFromName(own.DType, out SafetensorsDType? dtype))
                throw new InvalidOperationException($"The validated header of '{path}' holds unknown dtype '{own.DType}'.");

            using var scope = torch.NewDisposeScope();
            // Device and dtype are explicit so that a changed default device or dtype cannot leak in.
            Tensor tensor = torch.empty(own.Shape, dtype: dtype.Value.ScalarType, device: torch.CPU);
            stream.Position = header.DataOffset + own.Begin;
            if (!TensorMemory.TryReadInto(stream, tensor, own.ByteLength))
                throw new SafetensorsFormatException(path, own.Name,
                    $"the file ends inside tensor '{own.Name}' (data_offsets [{own.Begin}, {own.End}])");
            if (dtype.Value.ScalarType == ScalarType.Bool)
            {
                long at = TensorMemory.FindNonBoolean(tensor, own.ByteLength);
                if (at >= 0)
                    throw new SafetensorsFormatException(path, own.Name,
                        $"tensor '{own.Name}' of BOOL holds a byte other than 0 or 1 at element {at}");
            }
            return tensor.MoveToOuterDisposeScope();
        }

        /// <summary>Reads the header and every tensor; the tensors belong to the returned object and no dispose scope.</summary>
        internal static SafetensorsFile Read(Stream stream, string path)
        {
            SafetensorsHeader header = ReadHeader(stream, path);
            var tensors = new OrderedDictionary<string, Tensor>(header.Entries.Count, StringComparer.Ordinal);
            try
            {
                foreach (SafetensorsEntry entry in header.Entries)
                {
                    Tensor tensor = ReadTensor(stream, header, entry, path);
                    tensors.Add(entry.Name, tensor.DetachFromDisposeScope());
                }
            }
            catch
            {
                foreach (Tensor t in tensors.Values) t.Dispose();
                throw;
            }
            return new SafetensorsFile(path, header, tensors);
        }

        private static void ReadExactly(Stream stream, Span<byte> buffer, string path, string what)
        {
            if (stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false) < buffer.Length)
                throw new SafetensorsFormatException(path, null, $"the file ends inside {what}");
        }
    }
}
