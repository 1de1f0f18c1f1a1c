using System;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Kernels
{
    /// <summary>Raw element pointers of contiguous CPU float32 tensors, for the kernels' hand-written loops.</summary>
    internal static unsafe class TensorData
    {
        // The address of the tensor's first element, storage offset included (storage<T>().data_ptr() ignores it).
        // The runtime's only import of it: the safetensors I/O, the base-weight loader and the MPI communicator take
        // raw addresses through Address too.
        [DllImport("LibTorchSharp")]
        private static extern IntPtr THSTensor_data(IntPtr handle);

        /// <summary>
        /// The address of the first element of <paramref name="t"/> (a CPU tensor of any dtype, storage offset
        /// included); throws libtorch's error, or says so, when libtorch returns none.
        /// </summary>
        internal static IntPtr Address(Tensor t)
        {
            IntPtr data = THSTensor_data(t.Handle);
            if (data == IntPtr.Zero)
            {
                torch.CheckForErrors();
                throw new InvalidOperationException("libtorch returned no data pointer for a non-empty tensor.");
            }
            return data;
        }

        /// <summary>Whether the kernels' raw loops can read <paramref name="t"/>: a contiguous float32 CPU tensor.</summary>
        internal static bool IsDenseCpuFloat(Tensor t) =>
            t.dtype == ScalarType.Float32 && t.device_type == DeviceType.CPU && t.is_contiguous();

        /// <summary>The first element of <paramref name="t"/>, which must be a contiguous float32 CPU tensor.</summary>
        internal static float* Floats(Tensor t)
        {
            if (!IsDenseCpuFloat(t))
                throw new InvalidOperationException("The kernel needs a contiguous float32 CPU tensor.");
            if (t.numel() == 0) return null;
            return (float*)Address(t);
        }

        /// <summary>The first word of <paramref name="t"/>, which must be a contiguous int64 CPU tensor (a dropout mask's bits).</summary>
        internal static ulong* Words(Tensor t)
        {
            if (t.dtype != ScalarType.Int64 || t.device_type != DeviceType.CPU || !t.is_contiguous())
                throw new InvalidOperationException("The kernel needs a contiguous int64 CPU tensor.");
            if (t.numel() == 0) return null;
            return (ulong*)Address(t);
        }
    }
}
