using System;
using System.IO;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.IO
{
    /// <summary>
    /// Moves raw bytes between a stream and the memory of a contiguous CPU tensor, without a managed copy.
    /// </summary>
    /// <remarks>
    /// TorchSharp's <c>Tensor.bytes</c> is a <see cref="Span{T}"/> and so stops at 2 GiB; a pointer handed out in
    /// chunks has no such limit. <c>THSTensor_data</c> returns the address of the tensor's first element, storage
    /// offset included (unlike <c>storage&lt;T&gt;().data_ptr()</c>).
    /// </remarks>
    internal static unsafe class TensorMemory
    {
        // Below int.MaxValue, so each chunk fits a Span; large enough that the per-call cost vanishes.
        private const int ChunkBytes = 1 << 30;

        [DllImport("LibTorchSharp")]
        private static extern IntPtr THSTensor_data(IntPtr handle);

        /// <summary>Fills <paramref name="tensor"/> (CPU, contiguous) with <paramref name="byteLength"/> bytes from the stream.</summary>
        /// <returns>Whether the stream held all of them.</returns>
        internal static bool TryReadInto(Stream stream, Tensor tensor, long byteLength)
        {
            RequireLittleEndianHost();
            if (byteLength == 0) return true;
            byte* data = DataPointer(tensor);
            for (long done = 0; done < byteLength;)
            {
                int chunk = (int)Math.Min(ChunkBytes, byteLength - done);
                int read = stream.ReadAtLeast(new Span<byte>(data + done, chunk), chunk, throwOnEndOfStream: false);
                if (read < chunk) return false;
                done += chunk;
            }
            return true;
        }

        /// <summary>Writes the <paramref name="byteLength"/> bytes of <paramref name="tensor"/> (CPU, contiguous) to the stream.</summary>
        internal static void WriteFrom(Stream stream, Tensor tensor, long byteLength)
        {
            RequireLittleEndianHost();
            if (byteLength == 0) return;
            byte* data = DataPointer(tensor);
            for (long done = 0; done < byteLength;)
            {
                int chunk = (int)Math.Min(ChunkBytes, byteLength - done);
                stream.Write(new ReadOnlySpan<byte>(data + done, chunk));
                done += chunk;
            }
        }

        /// <summary>The position of the first byte that is neither 0 nor 1, or -1: a BOOL tensor may hold no other byte.</summary>
        internal static long FindNonBoolean(Tensor tensor, long byteLength)
        {
            if (byteLength == 0) return -1;
            byte* data = DataPointer(tensor);
            for (long done = 0; done < byteLength;)
            {
                int chunk = (int)Math.Min(ChunkBytes, byteLength - done);
                int at = new ReadOnlySpan<byte>(data + done, chunk).IndexOfAnyExcept((byte)0, (byte)1);
                if (at >= 0) return done + at;
                done += chunk;
            }
            return -1;
        }

        /// <summary>The address of the tensor's first element (any device): equal for tensors that share memory.</summary>
        internal static IntPtr Address(Tensor tensor)
        {
            IntPtr data = THSTensor_data(tensor.Handle);
            if (data == IntPtr.Zero) torch.CheckForErrors();
            return data;
        }

        private static byte* DataPointer(Tensor tensor)
        {
            if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
                throw new InvalidOperationException("Raw tensor bytes need a contiguous CPU tensor.");
            IntPtr data = THSTensor_data(tensor.Handle);
            if (data == IntPtr.Zero)
            {
                torch.CheckForErrors();
                throw new InvalidOperationException("libtorch returned no data pointer for a non-empty tensor.");
            }
            return (byte*)data;
        }

        // The format is little-endian and we copy element bytes as they lie in memory.
        private static void RequireLittleEndianHost()
        {
            if (!BitConverter.IsLittleEndian)
                throw new PlatformNotSupportedException("safetensors IO copies raw little-endian bytes and needs a little-endian host.");
        }
    }
}
