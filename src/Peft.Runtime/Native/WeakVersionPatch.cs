using System;
using System.Buffers.Binary;
using System.IO;
using System.Security.Cryptography;
using System.Text;

namespace Peft.Runtime.Native
{
    /// <summary>
    /// Marks one symbol-version need of an ELF64 little-endian shared library weak (<c>VER_FLG_WEAK</c>), so the
    /// dynamic loader accepts a libstdc++ that lacks that version as long as no symbol of it is bound.
    /// </summary>
    internal static class WeakVersionPatch
    {
        private const uint ShtGnuVerneed = 0x6ffffffe;
        private const ushort VerFlagWeak = 0x2;

        /// <summary>Writes (once per content) a patched copy into a per-user cache folder and returns its path.</summary>
        public static string WritePatchedCopy(string library, string version)
        {
            byte[] image = File.ReadAllBytes(library);
            int patchedEntries = MarkWeak(image, version);
            if (patchedEntries == 0)
                throw new InvalidOperationException($"'{library}' declares no need for {version}; cannot make it weak.");

            string hash = Convert.ToHexString(SHA256.HashData(image))[..16];
            string dir = Path.Combine(Path.GetTempPath(), $"peftdsl-native-{Environment.UserName}", hash);
            string target = Path.Combine(dir, Path.GetFileName(library));
            if (File.Exists(target) && new FileInfo(target).Length == image.Length) return target;

            Directory.CreateDirectory(dir);
            string temp = target + "." + Guid.NewGuid().ToString("N") + ".tmp";
            File.WriteAllBytes(temp, image);
            File.Move(temp, target, overwrite: true); // atomic: concurrent processes never see half a file
            return target;
        }

        /// <summary>Sets the weak flag on every <c>Vernaux</c> entry named <paramref name="version"/>; returns how many.</summary>
        public static int MarkWeak(byte[] elf, string version)
        {
            var span = elf.AsSpan();
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException("not an ELF file");
            if (elf[4] != 2 || elf[5] != 1)
                throw new InvalidDataException("only 64-bit little-endian ELF files are supported");

            long sectionTable = BinaryPrimitives.ReadInt64LittleEndian(span[0x28..]);
            int entrySize = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3A..]);
            int count = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3C..]);
            byte[] wanted = Encoding.ASCII.GetBytes(version);
            int patched = 0;

            for (int i = 0; i < count; i++)
            {
                var section = span.Slice(checked((int)(sectionTable + (long)i * entrySize)), 64);
                if (BinaryPrimitives.ReadUInt32LittleEndian(section[4..]) != ShtGnuVerneed) continue;

                long offset = BinaryPrimitives.ReadInt64LittleEndian(section[24..]);
                uint stringSection = BinaryPrimitives.ReadUInt32LittleEndian(section[40..]);
                uint needCount = BinaryPrimitives.ReadUInt32LittleEndian(section[44..]);
                var strings = span.Slice(checked((int)(sectionTable + (long)stringSection * entrySize)), 64);
                long stringsOffset = BinaryPrimitives.ReadInt64LittleEndian(strings[24..]);

                long need = offset;
                for (uint n = 0; n < needCount; n++)
                {
                    var verneed = span.Slice(checked((int)need), 16);
                    int auxCount = BinaryPrimitives.ReadUInt16LittleEndian(verneed[2..]);
                    long aux = need + BinaryPrimitives.ReadUInt32LittleEndian(verneed[8..]);
                    for (int a = 0; a < auxCount; a++)
                    {
                        var vernaux = span.Slice(checked((int)aux), 16);
                        long name = stringsOffset + BinaryPrimitives.ReadUInt32LittleEndian(vernaux[8..]);
                        var nameBytes = span[checked((int)name)..];
                        int end = nameBytes.IndexOf((byte)0);
                        if (end >= 0 && nameBytes[..end].SequenceEqual(wanted))
                        {
                            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(vernaux[4..]);
                            BinaryPrimitives.WriteUInt16LittleEndian(vernaux[4..], (ushort)(flags | VerFlagWeak));
                            patched++;
                        }
                        uint next = BinaryPrimitives.ReadUInt32LittleEndian(vernaux[12..]);
                        if (next == 0) break;
                        aux += next;
                    }
                    uint nextNeed = BinaryPrimitives.ReadUInt32LittleEndian(verneed[12..]);
                    if (nextNeed == 0) break;
                    need += nextNeed;
                }
            }
            return patched;
        }
    }
}
