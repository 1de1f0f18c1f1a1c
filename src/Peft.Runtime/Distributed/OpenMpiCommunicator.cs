using System;
using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Distributed
{
    /// <summary>
    /// The ranks of an OpenMPI job (<c>mpirun -np N dotnet train.dll</c>, one host or many with <c>--hostfile</c>),
    /// through <c>MPI_COMM_WORLD</c>. Get it from <see cref="Communicator.FromEnvironment"/>: MPI is initialised once per
    /// process. Tensors may be float32 or float64, on any device: a CUDA or non-contiguous tensor goes through a contiguous
    /// CPU copy. The counters (<see cref="BytesAllReduced"/>, <see cref="AllReduceTime"/>, ...) say what crossed the wire.
    /// </summary>
    /// <remarks>
    /// MPI is finalised by <see cref="Dispose"/> or, when the process ends normally, by itself; a process that ends with
    /// a non-zero exit code (an exception) does not finalise, and <c>mpirun</c> then ends every other rank of the job —
    /// the way one rank's failure stops a job whose other ranks wait in a collective.
    /// </remarks>
    public sealed unsafe class OpenMpiCommunicator : ICommunicator, IDisposable
    {
        // MPI counts are ints: larger tensors go in pieces.
        private const int MaxCount = 1 << 30;

        private readonly OpenMpiLibrary _mpi;
        private readonly object _gate = new();
        private bool _disposed;

        private OpenMpiCommunicator(OpenMpiLibrary mpi, int rank, int size)
        {
            _mpi = mpi;
            Rank = rank;
            Size = size;
        }

        /// <inheritdoc/>
        public int Rank { get; }

        /// <inheritdoc/>
        public int Size { get; }

        /// <summary>The library's version line (<c>Open MPI v4.1.4, ...</c>).</summary>
        public string LibraryVersion => _mpi.LibraryVersion();

        /// <summary>Bytes this rank contributed to all-reductions so far (elements × element size).</summary>
        public long BytesAllReduced { get; private set; }

        /// <summary>Bytes of the tensors broadcast so far (sent by the root, received by the others).</summary>
        public long BytesBroadcast { get; private set; }

        /// <summary>How many all-reductions this rank took part in.</summary>
        public int AllReduceCount { get; private set; }

        /// <summary>Wall time spent in all-reductions, waiting for slower ranks included.</summary>
        public TimeSpan AllReduceTime { get; private set; }

        internal bool IsDisposed => _disposed;

        internal static OpenMpiCommunicator Initialize()
        {
            var mpi = OpenMpiLibrary.Load();
            int initialized = 0, provided = 0, rank = 0, size = 0;
            OpenMpiLibrary.Check(mpi.Initialized(&initialized), "MPI_Initialized");
            if (initialized == 0)
            {
                OpenMpiLibrary.Check(mpi.InitThread(null, IntPtr.Zero, OpenMpiLibrary.ThreadSerialized, &provided), "MPI_Init_thread");
                // Finalise at a normal exit only: after an exception the other ranks may wait in a collective, and
                // MPI_Finalize would wait with them; exiting non-zero without it makes mpirun end the job instead.
                AppDomain.CurrentDomain.ProcessExit += (_, _) =>
                {
                    if (Environment.ExitCode == 0) FinalizeOnce(mpi);
                };
            }
            OpenMpiLibrary.Check(mpi.CommRank(mpi.CommWorld, &rank), "MPI_Comm_rank");
            OpenMpiLibrary.Check(mpi.CommSize(mpi.CommWorld, &size), "MPI_Comm_size");
            return new OpenMpiCommunicator(mpi, rank, size);
        }

        /// <inheritdoc/>
        public void AllReduceMean(Tensor tensor)
        {
            ArgumentNullException.ThrowIfNull(tensor);
            lock (_gate)
            {
                ThrowIfDisposed();
                long start = Stopwatch.GetTimestamp();
                IntPtr type = DataType(tensor);
                Staged(tensor, (data, count) =>
                {
                    OpenMpiLibrary.Check(_mpi.Allreduce(OpenMpiLibrary.InPlace, data, count, type, _mpi.OpSum, _mpi.CommWorld), "MPI_Allreduce");
                });
                if (Size > 1) tensor.div_(Size);
                BytesAllReduced += tensor.numel() * tensor.ElementSize;
                AllReduceCount++;
                AllReduceTime += Stopwatch.GetElapsedTime(start);
            }
        }

        /// <inheritdoc/>
        public void Broadcast(Tensor tensor, int root)
        {
            ArgumentNullException.ThrowIfNull(tensor);
            if (root < 0 || root >= Size) throw new ArgumentOutOfRangeException(nameof(root), root, $"the job has ranks 0 to {Size - 1}");
            lock (_gate)
            {
                ThrowIfDisposed();
                IntPtr type = DataType(tensor);
                Staged(tensor, (data, count) => OpenMpiLibrary.Check(_mpi.Bcast(data, count, type, root, _mpi.CommWorld), "MPI_Bcast"));
                BytesBroadcast += tensor.numel() * tensor.ElementSize;
            }
        }

        /// <inheritdoc/>
        public void Barrier()
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                OpenMpiLibrary.Check(_mpi.Barrier(_mpi.CommWorld), "MPI_Barrier");
            }
        }

        /// <summary>
        /// Ends the whole job now with <paramref name="exitCode"/> (<c>MPI_Abort</c>): for a rank that knows the others
        /// cannot go on. Does not return.
        /// </summary>
        public void Abort(int exitCode)
        {
            _mpi.Abort(_mpi.CommWorld, exitCode);
            Environment.Exit(exitCode); // not reached: MPI_Abort ends this process too
        }

        /// <summary>Finalises MPI (a collective: every rank must call it). Later calls on this communicator throw.</summary>
        public void Dispose()
        {
            lock (_gate)
            {
                if (_disposed) return;
                _disposed = true;
                FinalizeOnce(_mpi);
            }
        }

        private static void FinalizeOnce(OpenMpiLibrary mpi)
        {
            int finalized = 0;
            if (mpi.Finalized(&finalized) == 0 && finalized == 0) mpi.Finalize();
        }

        private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

        private IntPtr DataType(Tensor tensor) => tensor.dtype switch
        {
            ScalarType.Float32 => _mpi.Float,
            ScalarType.Float64 => _mpi.Double,
            _ => throw new ArgumentException($"the communicator moves float32 or float64 tensors, not {tensor.dtype}", nameof(tensor)),
        };

        /// <summary>Runs <paramref name="operation"/> on the tensor's memory in pieces of at most <see cref="MaxCount"/> elements, through a CPU copy when needed.</summary>
        private static void Staged(Tensor tensor, Action<IntPtr, int> operation)
        {
            if (tensor.numel() == 0) return;
            bool direct = tensor.device_type == DeviceType.CPU && tensor.is_contiguous();
            using var staged = direct ? null : tensor.detach().to(CPU).contiguous();
            var cpu = staged ?? tensor;
            byte* data = (byte*)Kernels.TensorData.Address(cpu); // the runtime's one THSTensor_data import
            long total = cpu.numel(), elementSize = cpu.ElementSize;
            for (long done = 0; done < total; done += MaxCount)
                operation((IntPtr)(data + done * elementSize), (int)Math.Min(MaxCount, total - done));
            if (staged is not null)
                using (no_grad()) tensor.copy_(staged);
        }
    }
}
