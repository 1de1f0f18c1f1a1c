using System;
using System.IO;

namespace Peft.Runtime.IO
{
    /// <summary>
    /// Replaces a file all at once: readers see the old content or the new, never half of it, and a failure leaves
    /// the old file as it was.
    /// </summary>
    internal static class AtomicFile
    {
        /// <summary>
        /// Writes <c>path.tmp-&lt;guid&gt;</c> beside <paramref name="path"/> (same folder, so the rename stays on one
        /// file system and is atomic), flushes it to disk, then renames it over <paramref name="path"/>. On any
        /// exception the temporary file is deleted and the exception rethrown. The temporary file is created exclusively
        /// (<c>O_EXCL</c>: never through an existing file or symlink), with <paramref name="unixCreateMode"/> where given (Unix only).
        /// </summary>
        internal static void Write(string path, Action<Stream> write, UnixFileMode? unixCreateMode = null)
        {
            string target = Path.GetFullPath(path);
            string temp = target + ".tmp-" + Guid.NewGuid().ToString("N");
            var options = new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Share = FileShare.None,
                BufferSize = 1 << 16,
            };
            if (unixCreateMode is { } mode && !OperatingSystem.IsWindows()) options.UnixCreateMode = mode;
            try
            {
                using (var stream = new FileStream(temp, options))
                {
                    write(stream);
                    // Without this a crash after the rename could leave the new name pointing at unwritten blocks.
                    stream.Flush(flushToDisk: true);
                }
                File.Move(temp, target, overwrite: true);
            }
            catch
            {
                TryDelete(temp);
                throw;
            }
        }

        private static void TryDelete(string temp)
        {
            try
            {
                File.Delete(temp);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The original exception matters more than a leftover temporary file.
            }
        }
    }
}
