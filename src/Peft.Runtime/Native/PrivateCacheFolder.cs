using System;
using System.IO;
using System.Runtime.Versioning;

namespace Peft.Runtime.Native
{
    /// <summary>
    /// Where the patched native library may be written and then loaded: a folder no other user can write to, so that
    /// what this process verified there is what the loader maps. (The cache used to be <c>/tmp/peftdsl-native-$USER</c>,
    /// where another user could create the folder first and plant a library: issue 12.)
    /// </summary>
    /// <remarks>
    /// The cache is <c>$XDG_CACHE_HOME/peftdsl/native</c>, or <c>~/.cache/peftdsl/native</c>. Folders it creates are
    /// 0700. It refuses a <c>peftdsl</c>, <c>native</c> or per-image folder that is a symlink, belongs to another
    /// user or is writable by group or others; and a cache root whose real path passes through a folder that
    /// another user (root aside) owns, or that others may write without the sticky bit (as /tmp has), since whoever
    /// can write a parent can swap the folders below it. Refused, the caller uses <see cref="CreateProcessFolder"/>.
    /// </remarks>
    [SupportedOSPlatform("linux")]
    internal static class PrivateCacheFolder
    {
        internal const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
        private static readonly string[] Chain = { "peftdsl", "native" };

        /// <summary>
        /// The XDG cache root: <paramref name="xdgCacheHome"/> when absolute (the XDG spec says to ignore a relative
        /// one), else <c>.cache</c> under an absolute <paramref name="home"/>; null when neither is usable.
        /// </summary>
        internal static string? CacheRoot(string? xdgCacheHome, string? home)
        {
            if (!string.IsNullOrEmpty(xdgCacheHome) && Path.IsPathRooted(xdgCacheHome)) return xdgCacheHome;
            if (!string.IsNullOrEmpty(home) && Path.IsPathRooted(home)) return Path.Combine(home, ".cache");
            return null;
        }

        /// <summary>
        /// Opens (creating what is missing) <c>cacheRoot/peftdsl/native/leaf</c>; false, and why, when it is refused
        /// or cannot be made.
        /// </summary>
        internal static bool TryOpen(string cacheRoot, string leaf, out string folder, out string refusal)
        {
            folder = "";
            try
            {
                // XDG asks for 0700 when creating the root; an existing one keeps its mode and is checked below.
                Directory.CreateDirectory(cacheRoot, OwnerOnly);
                if (UnixFileStatus.RealPath(cacheRoot) is not { } real)
                {
                    refusal = $"{cacheRoot} vanished while it was opened";
                    return false;
                }
                if (!IsSafeAncestry(real, out refusal)) return false;

                string current = real;
                foreach (string name in new[] { Chain[0], Chain[1], leaf })
                {
                    current = Path.Combine(current, name);
                    if (!TryCreateOwnFolder(current, out refusal)) return false;
                }
                folder = current;
                return true;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or EntryPointNotFoundException or DllNotFoundException)
            {
                refusal = $"cannot use {cacheRoot}: {ex.Message}";
                return false;
            }
        }

        /// <summary>
        /// A new 0700 folder for this process alone, under the temp folder, for when there is no private cache.
        /// <see cref="Directory.CreateTempSubdirectory"/> makes it with <c>mkdtemp</c> (0700, a fresh name, created
        /// exclusively); the mode is set again and checked in case that ever changes.
        /// </summary>
        internal static string CreateProcessFolder()
        {
            string folder = Directory.CreateTempSubdirectory("peftdsl-native-").FullName;
            File.SetUnixFileMode(folder, OwnerOnly);
            if (!IsOwnPrivateFolder(folder, out string refusal))
                throw new IOException($"the temporary folder for TorchSharp's patched library is not private: {refusal}");
            return folder;
        }

        /// <summary>Creates <paramref name="folder"/> 0700 if missing, then checks it is a real folder, ours, not writable by others.</summary>
        private static bool TryCreateOwnFolder(string folder, out string refusal)
        {
            // mkdir does nothing to a folder that exists (whoever made it), so the check after it decides.
            Directory.CreateDirectory(folder, OwnerOnly);
            return IsOwnPrivateFolder(folder, out refusal);
        }

        private static bool IsOwnPrivateFolder(string folder, out string refusal)
        {
            refusal = "";
            if (UnixFileStatus.Read(folder) is not { } status) refusal = $"{folder} vanished while it was opened";
            else if (status.IsSymlink) refusal = $"{folder} is a symlink";
            else if (!status.IsDirectory) refusal = $"{folder} is not a folder";
            else if (status.Owner != UnixFileStatus.EffectiveUserId) refusal = $"{folder} belongs to user {status.Owner}, not {UnixFileStatus.EffectiveUserId}";
            else if (status.OthersMayWrite) refusal = $"{folder} is writable by group or others (mode {Octal(status)})";
            return refusal.Length == 0;
        }

        /// <summary>
        /// Whether nobody but us and root can replace <paramref name="realPath"/> (symlinks already resolved) or any
        /// folder above it: each is ours or root's, and writable by others only with the sticky bit.
        /// </summary>
        private static bool IsSafeAncestry(string realPath, out string refusal)
        {
            uint me = UnixFileStatus.EffectiveUserId;
            for (string? dir = realPath; dir is not null; dir = Path.GetDirectoryName(dir))
            {
                if (UnixFileStatus.Read(dir) is not { IsDirectory: true } status)
                {
                    refusal = $"{dir} is not a folder";
                    return false;
                }
                if (status.Owner != me && status.Owner != 0)
                {
                    refusal = $"{dir} belongs to user {status.Owner}";
                    return false;
                }
                if (status.OthersMayWrite && (status.Permissions & UnixFileMode.StickyBit) == 0)
                {
                    refusal = $"{dir} is writable by group or others without the sticky bit (mode {Octal(status)})";
                    return false;
                }
            }
            refusal = "";
            return true;
        }

        private static string Octal(UnixFileStatus status) => Convert.ToString((int)status.Permissions, 8).PadLeft(4, '0');
    }
}
