using System;
using System.IO;

namespace Peft.Runtime.IO
{
    /// <summary>
    /// A safetensors file is malformed: its header length, JSON, dtypes, shapes or data offsets do not fit together
    /// or do not fit the file. The message always starts with the file path and names the tensor and the numbers
    /// that disagree.
    /// </summary>
    /// <remarks>
    /// It derives from <see cref="IOException"/> because <see cref="InvalidDataException"/>, the natural base, is
    /// sealed; a caller that handles unreadable files with <c>catch (IOException)</c> handles malformed ones too.
    /// </remarks>
    public sealed class SafetensorsFormatException : IOException
    {
        /// <summary>Creates the exception.</summary>
        /// <param name="filePath">The file that is malformed (or a label for an in-memory buffer).</param>
        /// <param name="tensorKey">The tensor whose description is wrong, or <see langword="null"/> for the file as a whole.</param>
        /// <param name="detail">What is wrong, with the numbers; the file path is prepended.</param>
        /// <param name="innerException">The parser's error, if any.</param>
        public SafetensorsFormatException(string filePath, string? tensorKey, string detail, Exception? innerException = null)
            : base($"{filePath}: {detail}", innerException)
        {
            FilePath = filePath;
            TensorKey = tensorKey;
        }

        /// <summary>The file that is malformed.</summary>
        public string FilePath { get; }

        /// <summary>The tensor whose description or data is wrong, or <see langword="null"/> when the fault is not one tensor's.</summary>
        public string? TensorKey { get; }
    }
}
