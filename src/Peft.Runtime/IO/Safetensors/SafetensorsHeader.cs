using System;
using System.Collections.Generic;
using System.Diagnostics.CodeAnalysis;

namespace Peft.Runtime.IO
{
    /// <summary>The validated header of a safetensors file: where every tensor's bytes are, and the free-form metadata.</summary>
    public sealed class SafetensorsHeader
    {
        private readonly Dictionary<string, SafetensorsEntry> _byName;

        internal SafetensorsHeader(
            IReadOnlyList<SafetensorsEntry> entries, IReadOnlyDictionary<string, string> metadata, long headerLength, long fileLength)
        {
            Entries = entries;
            Metadata = metadata;
            HeaderLength = headerLength;
            FileLength = fileLength;
            _byName = new Dictionary<string, SafetensorsEntry>(entries.Count, StringComparer.Ordinal);
            foreach (SafetensorsEntry e in entries) _byName.Add(e.Name, e);
        }

        /// <summary>The tensors in the order the header lists them.</summary>
        public IReadOnlyList<SafetensorsEntry> Entries { get; }

        /// <summary>The <c>__metadata__</c> map (empty when the file has none), in header order.</summary>
        public IReadOnlyDictionary<string, string> Metadata { get; }

        /// <summary>The length of the JSON header in bytes, as the file's first 8 bytes state it.</summary>
        public long HeaderLength { get; }

        /// <summary>Where the data section starts in the file: <c>8 + HeaderLength</c>.</summary>
        public long DataOffset => 8 + HeaderLength;

        /// <summary>The file's length when the header was read; reading tensors checks the file still has it.</summary>
        public long FileLength { get; }

        /// <summary>Finds a tensor's entry by key.</summary>
        /// <param name="name">The tensor's key.</param>
        /// <param name="entry">The entry, when found.</param>
        /// <returns>Whether the header describes a tensor of that key.</returns>
        public bool TryGetEntry(string name, [NotNullWhen(true)] out SafetensorsEntry? entry) => _byName.TryGetValue(name, out entry);
    }
}
