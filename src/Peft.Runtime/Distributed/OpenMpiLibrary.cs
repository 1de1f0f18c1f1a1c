using System;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;

namespace Peft.Runtime.Distributed
{
    /// <summary>
    /// A minimal binding to OpenMPI's C library (<c>libmpi.so.40</c>, OpenMPI 3.x to 5.x): the nine functions data-parallel
    /// training calls, through function pointers looked up once. OpenMPI's handles are addresses of exported globals
    /// (<c>MPI_COMM_WORLD</c> is <c>&amp;ompi_mpi_comm_world</c>, <c>MPI_FLOAT</c> is <c>&amp;ompi_mpi_float</c>,
    /// <c>MPI_SUM</c> is <c>&amp;ompi_mpi_op_sum</c>) and <c>MPI_IN_PLACE</c> is <c>(void*)1</c>; those are OpenMPI's ABI,
    /// not MPI's, so the library is checked to be OpenMPI before anything is called. Every MPI function returns an error
    /// code, but OpenMPI's default error handler (<c>MPI_ERRORS_ARE_FATAL</c>) aborts the job before a call could return
    /// one; a non-zero code is still turned into an exception.
    /// </summary>
    internal sealed unsafe class OpenMpiLibrary
    {
        /// <summary>The soname of OpenMPI's library since 3.0; <c>PEFT_MPI_LIBRARY</c> names another file.</summary>
        internal const string DefaultName = "libmpi.so.40";

        /// <summary><c>MPI_IN_PLACE</c> in OpenMPI.</summary>
        internal static readonly IntPtr InPlace = (IntPtr)1;

        /// <summary><c>MPI_THREAD_SERIALIZED</c>: any thread may call, one at a time (the communicator holds a lock).</summary>
        internal const int ThreadSerialized = 2;

        private const int RtldNow = 2, RtldGlobal = 0x100;

        internal string Path { get; }
        internal IntPtr CommWorld { get; }
        internal IntPtr Float { get; }
        internal IntPtr Double { get; }
        internal IntPtr OpSum { get; }

        internal readonly delegate* unmanaged<int*, int> Initialized;
        internal readonly delegate* unmanaged<int*, int> Finalized;
        internal readonly delegate* unmanaged<int*, IntPtr, int, int*, int> InitThread;
        internal readonly delegate* unmanaged<IntPtr, int*, int> CommRank;
        internal readonly delegate* unmanaged<IntPtr, int*, int> CommSize;
        internal readonly delegate* unmanaged<IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr, int> Allreduce;
        internal readonly delegate* unmanaged<IntPtr, int, IntPtr, int, IntPtr, int> Bcast;
        internal readonly delegate* unmanaged<IntPtr, int> Barrier;
        internal readonly delegate* unmanaged<int> Finalize;
        internal readonly delegate* unmanaged<IntPtr, int, int> Abort;
        private readonly delegate* unmanaged<byte*, int*, int> _getLibraryVersion;

        private OpenMpiLibrary(string path, IntPtr handle)
        {
            Path = path;
            IntPtr Export(string name) =>
                NativeLibrary.TryGetExport(handle, name, out var address) ? address
                : throw new InvalidOperationException(
                    $"{path} does not export '{name}', so it is not OpenMPI's libmpi (MPICH, Intel MPI and MS-MPI have other ABIs). " +
                    "Install OpenMPI (Debian/Ubuntu: apt-get install openmpi-bin) and launch with its mpirun, or set PEFT_MPI_LIBRARY to OpenMPI's libmpi.so.40.");
            // The globals first: they are what makes this library OpenMPI.
            CommWorld = Export("ompi_mpi_comm_world");
            Float = Export("ompi_mpi_float");
            Double = Export("ompi_mpi_double");
            OpSum = Export("ompi_mpi_op_sum");
            Initialized = (delegate* unmanaged<int*, int>)Export("MPI_Initialized");
            Finalized = (delegate* unmanaged<int*, int>)Export("MPI_Finalized");
            InitThread = (delegate* unmanaged<int*, IntPtr, int, int*, int>)Export("MPI_Init_thread");
            CommRank = (delegate* unmanaged<IntPtr, int*, int>)Export("MPI_Comm_rank");
            CommSize = (delegate* unmanaged<IntPtr, int*, int>)Export("MPI_Comm_size");
            Allreduce = (delegate* unmanaged<IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr, int>)Export("MPI_Allreduce");
            Bcast = (delegate* unmanaged<IntPtr, int, IntPtr, int, IntPtr, int>)Export("MPI_Bcast");
            Barrier = (delegate* unmanaged<IntPtr, int>)Export("MPI_Barrier");
            Finalize = (delegate* unmanaged<int>)Export("MPI_Finalize");
            Abort = (delegate* unmanaged<IntPtr, int, int>)Export("MPI_Abort");
            _getLibraryVersion = (delegate* unmanaged<byte*, int*, int>)Export("MPI_Get_library_version");
        }

        /// <summary>The library's own version line, e.g. <c>Open MPI v4.1.4, package: Debian OpenMPI, ...</c>.</summary>
        internal string LibraryVersion()
        {
            // MPI_MAX_LIBRARY_VERSION_STRING is 256 in OpenMPI; room to spare.
            byte* buffer = stackalloc byte[1024];
            int length = 0;
            Check(_getLibraryVersion(buffer, &length), "MPI_Get_library_version");
            return Encoding.UTF8.GetString(buffer, Math.Clamp(length, 0, 1024)).TrimEnd('\0', '\n', ' ');
        }

        internal static void Check(int code, string function)
        {
            if (code != 0) throw new InvalidOperationException($"{function} failed with MPI error code {code}");
        }

        /// <summary>Loads OpenMPI's library (globally, as its plugins need) and checks it is OpenMPI.</summary>
        internal static OpenMpiLibrary Load()
        {
            if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
                throw new PlatformNotSupportedException("OpenMPI data parallelism runs on Linux (and macOS); on Windows run one process per machine.");
            string name = Environment.GetEnvironmentVariable("PEFT_MPI_LIBRARY") is { Length: > 0 } custom ? custom
                : OperatingSystem.IsMacOS() ? "libmpi.40.dylib" : DefaultName;
            RefuseOtherMpi();
            // RTLD_GLOBAL: OpenMPI dlopen()s its MCA components, which resolve libmpi's symbols from the global scope.
            IntPtr handle = DlOpen(name, RtldNow | RtldGlobal);
            if (handle == IntPtr.Zero)
                throw new InvalidOperationException(
                    $"This process was started by OpenMPI's mpirun (OMPI_COMM_WORLD_SIZE={Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE")}), " +
                    $"but OpenMPI's library {name} could not be loaded ({DlError()}). Install OpenMPI's runtime (Debian/Ubuntu: apt-get install openmpi-bin) " +
                    "or set PEFT_MPI_LIBRARY to the path of its libmpi.so.40.");
            var library = new OpenMpiLibrary(name, handle);
            string version = library.LibraryVersion();
            if (!version.Contains("Open MPI", StringComparison.Ordinal))
                throw new InvalidOperationException($"{name} reports '{version}', not Open MPI; PeftDsl's binding follows OpenMPI's ABI only.");
            return library;
        }

        /// <summary>Another MPI already mapped into this process (MPICH's libmpich, Intel's libmpi.so.12) would clash with OpenMPI's symbols.</summary>
        private static void RefuseOtherMpi()
        {
            if (!File.Exists("/proc/self/maps")) return;
            string? other = File.ReadLines("/proc/self/maps")
                .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "")
                .Where(path => path.StartsWith('/'))
                .Select(System.IO.Path.GetFileName)
                .FirstOrDefault(file => file is not null
                    && (file.StartsWith("libmpich", StringComparison.Ordinal) || file.StartsWith("libmpi.so.12", StringComparison.Ordinal)
                        || file.StartsWith("libmpi_mt", StringComparison.Ordinal) || file.StartsWith("libmpi_dbg", StringComparison.Ordinal)));
            if (other is not null)
                throw new InvalidOperationException(
                    $"Another MPI library ({other}) is already loaded in this process; OpenMPI cannot run beside it. Launch with OpenMPI's mpirun and load no other MPI.");
        }

        [DllImport("libc", EntryPoint = "dlopen")]
        private static extern IntPtr DlOpen(string file, int mode);

        [DllImport("libc", EntryPoint = "dlerror")]
        private static extern IntPtr DlErrorLibc();

        private static string DlError() => Marshal.PtrToStringUTF8(DlErrorLibc()) ?? "unknown error";
    }
}
