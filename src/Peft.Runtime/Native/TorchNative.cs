using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using System.Runtime.Versioning;

namespace Peft.Runtime.Native
{
    /// <summary>
    /// Loads libtorch and TorchSharp's native glue before the first tensor is made.
    /// </summary>
    /// <remarks>
    /// TorchSharp's <c>libLibTorchSharp.so</c> declares a need for <c>GLIBCXX_3.4.32</c> (GCC 13) only through
    /// <c>std::ios_base_library_init</c>, which nothing calls. On systems whose libstdc++ is older (Debian 12 stops
    /// at 3.4.30) a plain load fails. Where that happens we load a copy whose version need is marked weak
    /// (<c>VER_FLG_WEAK</c> in <c>.gnu.version_r</c>), after preloading libc10 / libtorch_cpu / libtorch so the copy
    /// resolves them by soname. The copy is cached in <c>$XDG_CACHE_HOME/peftdsl/native</c> (or
    /// <c>~/.cache/peftdsl/native</c>), a 0700 folder, and its SHA-256 checked before every load; where no such
    /// private folder can be had it is written to a 0700 temporary folder for the process (<see cref="PrivateCacheFolder"/>).
    /// Where the plain load works this does nothing beyond the preload.
    /// Generated code calls <see cref="EnsureLoaded"/> from a module initializer; calling it again is free.
    /// On Linux it also sets glibc's malloc thresholds so that tensors freed at the end of a step are not paged in
    /// afresh on the next (<see cref="AllocatorTuning"/>), and shortens libgomp's idle spin so the fused kernels'
    /// workers can use the cores between GEMMs (<see cref="OpenMpTuning"/>).
    /// </remarks>
    public static class TorchNative
    {
        private const string GlueLibrary = "libLibTorchSharp.so";
        private static readonly string[] LibTorchLibraries = { "libc10.so", "libtorch_cpu.so", "libtorch.so" };
        private static readonly object Gate = new();
        private static bool _loaded;
        private static IntPtr _glueHandle;

        /// <summary>How the native libraries were found: for diagnostics and tests.</summary>
        public static string LoadReport { get; private set; } = "not loaded";

        /// <summary>
        /// Makes sure libtorch and TorchSharp's glue library are loaded. Idempotent and thread-safe.
        /// Set <c>PEFT_LIBTORCH_DIR</c> to preload libtorch from another folder (for example a PyTorch install's
        /// <c>lib/</c> with CUDA).
        /// </summary>
        /// <exception cref="InvalidOperationException">libtorch or the glue library cannot be loaded at all.</exception>
        public static void EnsureLoaded()
        {
            if (_loaded) return;
            lock (Gate)
            {
                if (_loaded) return;
                if (RuntimeInformation.IsOSPlatform(OSPlatform.Linux))
                {
                    AllocatorTuning.Apply();
                    OpenMpTuning.Apply(); // before libtorch's load pulls in libgomp, which reads it once
                    LoadOnLinux();
                }
                else
                    LoadReport = "not Linux: TorchSharp loads its own libraries";
                _loaded = true;
            }
        }

        [SupportedOSPlatform("linux")]
        private static void LoadOnLinux()
        {
            string? packageDir = FindNativeDirectory();
            if (packageDir is null)
            {
                LoadReport = $"no {GlueLibrary} next to the application: TorchSharp loads its own libraries";
                return;
            }

            string libTorchDir = Environment.GetEnvironmentVariable("PEFT_LIBTORCH_DIR") is { Length: > 0 } custom ? custom : packageDir;
            foreach (string name in LibTorchLibraries)
            {
                string path = Path.Combine(libTorchDir, name);
                if (!File.Exists(path)) continue; // TorchSharp itself explains a missing backend package
                try
                {
                    NativeLibrary.Load(path);
                }
                catch (Exception ex) when (ex is DllNotFoundException or BadImageFormatException)
                {
                    throw new InvalidOperationException($"PeftDsl could not load libtorch from '{path}': {ex.Message}", ex);
                }
            }

            string glue = Path.Combine(packageDir, GlueLibrary);
            if (NativeLibrary.TryLoad(glue, out _glueHandle))
            {
                LoadReport = $"loaded {glue} as is";
                return;
            }

            PatchedCopy patched = WeakVersionPatch.WritePatchedCopy(glue, "GLIBCXX_3.4.32");
            try
            {
                _glueHandle = NativeLibrary.Load(patched.Path);
            }
            catch (Exception ex) when (ex is DllNotFoundException or BadImageFormatException)
            {
                throw new InvalidOperationException(
                    $"PeftDsl could not load TorchSharp's native library '{glue}', nor its copy '{patched.Path}' with the GLIBCXX_3.4.32 need made weak: {ex.Message}", ex);
            }
            if (patched.Temporary) DeleteAtExit(Path.GetDirectoryName(patched.Path)!);

            // TorchSharp probes by file path first; that load of the original still fails, then the soname
            // matches our copy. The resolver covers probing orders where it would not.
            AssemblyLoadContext.Default.ResolvingUnmanagedDll += (_, name) =>
                name.Contains("LibTorchSharp", StringComparison.Ordinal) ? _glueHandle : IntPtr.Zero;
            LoadReport = $"loaded {patched.Path} (copy of {glue} with the GLIBCXX_3.4.32 need marked weak, from the {patched.Cache})";
        }

        // A folder made for this process alone would otherwise pile up in /tmp, a copy per run. The mapping outlives
        // the file, so removing it while loaded is harmless.
        private static void DeleteAtExit(string folder) =>
            AppDomain.CurrentDomain.ProcessExit += (_, _) =>
            {
                try
                {
                    Directory.Delete(folder, recursive: true);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    // best effort
                }
            };

        internal static string? FindNativeDirectory()
        {
            string baseDir = AppContext.BaseDirectory;
            foreach (string dir in new[] { Path.Combine(baseDir, "runtimes", "linux-x64", "native"), baseDir })
            {
                if (File.Exists(Path.Combine(dir, GlueLibrary))) return dir;
            }
            return null;
        }
    }
}
