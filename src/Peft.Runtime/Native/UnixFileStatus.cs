using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace Peft.Runtime.Native
{
    /// <summary>
    /// The owner, type and mode of a path, read without following a final symlink; and the process's user id.
    /// .NET has no public API for a file's owner, so this calls Linux's <c>statx</c> (whose struct, unlike
    /// <c>stat</c>'s, has one layout on every architecture; glibc 2.28+). Linux only: only Linux needs the patched
    /// library this guards.
    /// </summary>
    [SupportedOSPlatform("linux")]
    internal readonly record struct UnixFileStatus(uint Owner, uint Mode)
    {
        private const int AtFdCwd = -100, AtSymlinkNoFollow = 0x100;
        private const uint StatxType = 0x1, StatxMode = 0x2, StatxUid = 0x8;
        private const uint TypeMask = 0xF000, Directory = 0x4000, RegularFile = 0x8000, Symlink = 0xA000;
        private const int ENOENT = 2, ENOTDIR = 20;

        public bool IsDirectory => (Mode & TypeMask) == Directory;
        public bool IsRegularFile => (Mode & TypeMask) == RegularFile;
        public bool IsSymlink => (Mode & TypeMask) == Symlink;

        /// <summary>Permission bits, with setuid / setgid / sticky.</summary>
        public UnixFileMode Permissions => (UnixFileMode)(Mode & 0xFFF);

        /// <summary>Whether a user other than the owner may write: the group or other write bit.</summary>
        public bool OthersMayWrite => (Permissions & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0;

        /// <summary>The effective user id: who owns what this process creates.</summary>
        public static uint EffectiveUserId => geteuid();

        /// <summary>Reads <paramref name="path"/>'s own status (a symlink is reported as one); null when it does not exist.</summary>
        /// <exception cref="IOException">statx failed otherwise.</exception>
        public static unsafe UnixFileStatus? Read(string path)
        {
            byte* buffer = stackalloc byte[256]; // sizeof(struct statx)
            if (statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType | StatxMode | StatxUid, buffer) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno is ENOENT or ENOTDIR) return null;
                throw new IOException($"statx('{path}') failed: errno {errno}");
            }
            // struct statx: u32 stx_mask @0, u32 stx_uid @20, u16 stx_mode @28.
            uint got = *(uint*)buffer;
            if ((got & (StatxType | StatxMode | StatxUid)) != (StatxType | StatxMode | StatxUid))
                throw new IOException($"statx('{path}') did not report the owner and mode");
            return new UnixFileStatus(*(uint*)(buffer + 20), *(ushort*)(buffer + 28));
        }

        /// <summary>The path with every symlink and <c>..</c> resolved (<c>realpath</c>); null when it does not exist.</summary>
        public static string? RealPath(string path)
        {
            IntPtr resolved = realpath(path, IntPtr.Zero);
            if (resolved == IntPtr.Zero) return null;
            try
            {
                return Marshal.PtrToStringUTF8(resolved);
            }
            finally
            {
                free(resolved);
            }
        }

        [DllImport("libc", SetLastError = true)]
        private static extern unsafe int statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte* buffer);

        [DllImport("libc")]
        private static extern uint geteuid();

        [DllImport("libc", SetLastError = true)]
        private static extern IntPtr realpath([MarshalAs(UnmanagedType.LPUTF8Str)] string path, IntPtr resolved);

        [DllImport("libc")]
        private static extern void free(IntPtr pointer);
    }
}
