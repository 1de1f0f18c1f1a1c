using System;
using System.Collections.Generic;
using System.IO;
using static TorchSharp.torch;

namespace Peft.Runtime.IO
{
    /// <summary>
    /// Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON header of
    /// dtype / shape / data_offsets per tensor (plus an optional <c>__metadata__</c> string map), then raw
    /// little-endian tensor data. Files written here are byte-identical to what Python's <c>safetensors</c> writes
    /// for the same tensors and metadata; every file read is validated first, so a malformed or hostile file gives a
    /// <see cref="SafetensorsFormatException"/> and never an allocation larger than the file.
    /// </summary>
    public static class Safetensors
    {
        /// <summary>Reads and validates the header only, without loading any tensor.</summary>
        /// <param name="path">The safetensors file.</param>
        /// <returns>The entries in header order and the metadata.</returns>
        /// <exception cref="SafetensorsFormatException">The file is malformed.</exception>
        /// <exception cref="IOException">The file cannot be read.</exception>
        public static SafetensorsHeader ReadHeader(string path)
        {
            using FileStream stream = OpenRead(path);
            return SafetensorsReader.ReadHeader(stream, path);
        }

        /// <summary>Reads every tensor of a file into CPU tensors of the matching torch dtype.</summary>
        /// <param name="path">The safetensors file.</param>
        /// <returns>The tensors and metadata; dispose it to free the tensors.</returns>
        /// <exception cref="SafetensorsFormatException">The file is malformed.</exception>
        /// <exception cref="IOException">The file cannot be read.</exception>
        public static SafetensorsFile Read(string path)
        {
            using FileStream stream = OpenRead(path);
            return SafetensorsReader.Read(stream, path);
        }

        /// <summary>
        /// Reads one tensor of a file whose header was read with <see cref="ReadHeader(string)"/>, so that a caller
        /// can check keys and shapes before loading anything.
        /// </summary>
        /// <param name="path">The safetensors file.</param>
        /// <param name="header">Its header.</param>
        /// <param name="entry">One of <paramref name="header"/>'s entries.</param>
        /// <returns>A new CPU tensor; like any new tensor it joins the current dispose scope, if there is one.</returns>
        /// <exception cref="ArgumentException"><paramref name="entry"/> is not one of the header's.</exception>
        /// <exception cref="SafetensorsFormatException">The file changed since its header was read, or holds invalid data.</exception>
        public static Tensor ReadTensor(string path, SafetensorsHeader header, SafetensorsEntry entry)
        {
            ArgumentNullException.ThrowIfNull(header);
            ArgumentNullException.ThrowIfNull(entry);
            using FileStream stream = OpenRead(path);
            return SafetensorsReader.ReadTensor(stream, header, entry, path);
        }

        /// <summary>
        /// Writes tensors (any device, any strides; they are copied to CPU and made contiguous) and metadata
        /// atomically: the file appears complete or not at all, and a failure leaves an existing file untouched.
        /// </summary>
        /// <param name="path">The file to create or replace.</param>
        /// <param name="tensors">The tensors by key. They are laid out as the safetensors crate lays them out:
        /// widest dtype first, then by key in ordinal (UTF-8 byte) order; for tensors of one dtype, simply sorted.</param>
        /// <param name="metadata">The <c>__metadata__</c> map (PEFT writes <c>{"format": "pt"}</c>), or <see langword="null"/>.</param>
        /// <exception cref="ArgumentException">A key is null, reserved or repeated, a tensor's dtype is not one of the ten
        /// safetensors dtypes TorchSharp has, or a string is not valid Unicode.</exception>
        /// <exception cref="IOException">The file cannot be written.</exception>
        public static void Write(
            string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        {
            ArgumentException.ThrowIfNullOrEmpty(path);
            (byte[] header, IReadOnlyList<PreparedTensor> prepared) = SafetensorsWriter.Prepare(tensors, metadata);
            AtomicFile.Write(path, stream => SafetensorsWriter.WriteTo(stream, header, prepared));
        }

        /// <summary>The bytes <see cref="Write"/> would write, in memory.</summary>
        internal static byte[] Serialize(IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        {
            (byte[] header, IReadOnlyList<PreparedTensor> prepared) = SafetensorsWriter.Prepare(tensors, metadata);
            using var stream = new MemoryStream();
            SafetensorsWriter.WriteTo(stream, header, prepared);
            return stream.ToArray();
        }

        /// <summary><see cref="ReadHeader(string)"/> on an in-memory file; <paramref name="label"/> stands for the path in messages.</summary>
        internal static SafetensorsHeader ReadHeader(byte[] file, string label)
        {
            using var stream = new MemoryStream(file, writable: false);
            return SafetensorsReader.ReadHeader(stream, label);
        }

        /// <summary><see cref="Read(string)"/> on an in-memory file; <paramref name="label"/> stands for the path in messages.</summary>
        internal static SafetensorsFile Read(byte[] file, string label)
        {
            using var stream = new MemoryStream(file, writable: false);
            return SafetensorsReader.Read(stream, label);
        }

        private static FileStream OpenRead(string path)
        {
            ArgumentException.ThrowIfNullOrEmpty(path);
            // Unbuffered: tensor bytes go straight from the file into tensor memory.
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.RandomAccess);
        }
    }
}
