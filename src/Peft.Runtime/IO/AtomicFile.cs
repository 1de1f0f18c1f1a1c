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
        /// exception the temporary file is deleted and the exception rethrown.
        /// </summary>
        internal static void Write(string path, Action<Stream> write)
        {
            string target = Path.GetFullPath(path);
            string temp = target + ".tmp-" + Guid.NewGuid().ToString("N");
            try
            {
                using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16))
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
