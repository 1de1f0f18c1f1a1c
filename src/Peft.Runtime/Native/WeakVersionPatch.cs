using System;
using System.Buffers.Binary;
using System.IO;
using System.Runtime.Versioning;
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

        /// <summary>
        /// Returns the path of a copy of <paramref name="library"/> with <paramref name="version"/> marked weak, whose
        /// content has just been checked against the patched image: from the private per-user cache when there is one
        /// (<see cref="PrivateCacheFolder"/>), else written afresh into a 0700 folder made for this process.
        /// </summary>
        [SupportedOSPlatform("linux")]
        public static PatchedCopy WritePatchedCopy(string library, string version) =>
            WritePatchedCopy(library, version, Environment.GetEnvironmentVariable("XDG_CACHE_HOME"), Environment.GetEnvironmentVariable("HOME"));

        /// <summary><see cref="WritePatchedCopy(string, string)"/> with the environment's two values given: for tests.</summary>
        [SupportedOSPlatform("linux")]
        internal static PatchedCopy WritePatchedCopy(string library, string version, string? xdgCacheHome, string? home)
        {
            byte[] image = PatchedImage(library, version);
            byte[] hash = SHA256.HashData(image);
            string fileName = Path.GetFileName(library);

            string refusal;
            if (PrivateCacheFolder.CacheRoot(xdgCacheHome, home) is not { } root)
                refusal = "neither XDG_CACHE_HOME nor HOME is an absolute path";
            else if (PrivateCacheFolder.TryOpen(root, Convert.ToHexString(hash)[..16], out string folder, out refusal))
            {
                // The folder is ours and no one else can write it or the folders above it, so the file checked here
                // is the file the loader opens next: no other user can swap it between the check and the load. Our
                // own processes may replace it meanwhile, but only ever with the same bytes.
                string cached = Path.Combine(folder, fileName);
                try
                {
                    if (!HasContent(cached, hash)) WriteAtomically(cached, image);
                    return new PatchedCopy(cached, $"private cache {folder}", Temporary: false);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    refusal = $"cannot write {cached}: {ex.Message}";
                }
            }

            string temporary = PrivateCacheFolder.CreateProcessFolder();
            string path = Path.Combine(temporary, fileName);
            WriteAtomically(path, image);
            return new PatchedCopy(path, $"temporary folder {temporary} for this process, as {refusal}", Temporary: true);
        }

        /// <summary>The bytes of <paramref name="library"/> with <paramref name="version"/> marked weak.</summary>
        internal static byte[] PatchedImage(string library, string version)
        {
            byte[] image = File.ReadAllBytes(library);
            if (MarkWeak(image, version) == 0)
                throw new InvalidOperationException($"'{library}' declares no need for {version}; cannot make it weak.");
            return image;
        }

        /// <summary>Whether <paramref name="path"/> is a regular file whose SHA-256 is <paramref name="hash"/>; its length alone proves nothing.</summary>
        [SupportedOSPlatform("linux")]
        private static bool HasContent(string path, byte[] hash)
        {
            if (UnixFileStatus.Read(path) is not { IsRegularFile: true }) return false;
            try
            {
                using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                return SHA256.HashData(stream).AsSpan().SequenceEqual(hash);
            }
            catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
            {
                return false;
            }
        }

        /// <summary>
        /// Replaces <paramref name="target"/> all at once (<see cref="IO.AtomicFile"/>: an exclusively created temp file
        /// beside it, renamed over it), owner-only: concurrent processes see the old file or the whole new one.
        /// </summary>
        [SupportedOSPlatform("linux")]
        private static void WriteAtomically(string target, byte[] image) =>
            IO.AtomicFile.Write(target, stream => stream.Write(image), PrivateCacheFolder.OwnerOnly);

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

    /// <summary>A verified patched library: where it is, and which cache (and, for a temporary one, why).</summary>
    /// <param name="Path">The file to load.</param>
    /// <param name="Cache">Which cache it is in, for <see cref="TorchNative.LoadReport"/>.</param>
    /// <param name="Temporary">True when it lies in a folder made for this process, which it may delete at exit.</param>
    internal readonly record struct PatchedCopy(string Path, string Cache, bool Temporary);
}
