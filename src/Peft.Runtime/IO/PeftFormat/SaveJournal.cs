using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Peft.Runtime.IO
{
    /// <summary>
    /// Makes one save of several files (a config and weights per adapter folder) all-or-nothing, even when the process
    /// is killed halfway. A save first writes every file beside its final name (<c>adapter_model.safetensors.peft-staged-&lt;id&gt;</c>,
    /// each written atomically and flushed), then writes this journal, which lists the renames that commit the save,
    /// then renames, then deletes the journal. The journal's own atomic write is the commit point:
    /// <list type="bullet">
    /// <item>killed before it: no file was replaced, the previous save is intact; the staged files are removed by the next save;</item>
    /// <item>killed after it: <see cref="Recover"/> (run by every load and save of the directory) finishes the renames.</item>
    /// </list>
    /// Two processes saving into one directory at the same time are not supported.
    /// </summary>
    internal static class SaveJournal
    {
        /// <summary>The journal's name in the adapter directory.</summary>
        internal const string FileName = ".peft-save-journal.json";

        /// <summary>The suffix of a staged file, before its save's id.</summary>
        internal const string StagedMarker = ".peft-staged-";

        /// <summary>Test seam: called at each step of a commit (<c>staged</c>, <c>journaled</c>, <c>renamed N</c>, <c>committed</c>).</summary>
        internal static Action<string>? CommitPoint;

        /// <summary>The staged name for <paramref name="finalPath"/> in save <paramref name="id"/>.</summary>
        internal static string StagedPath(string finalPath, string id) => finalPath + StagedMarker + id;

        internal static void Reached(string point) => CommitPoint?.Invoke(point);

        /// <summary>
        /// Commits a save whose files are all staged: writes the journal (the commit point), renames every staged file
        /// over its final name, deletes the journal.
        /// </summary>
        internal static void Commit(string directory, IReadOnlyList<(string Staged, string Final)> renames)
        {
            string journal = Path.Combine(directory, FileName);
            var relative = renames.Select(r => (From: Relative(directory, r.Staged), To: Relative(directory, r.Final))).ToList();
            var entries = new JsonArray();
            foreach (var (from, to) in relative) entries.Add(new JsonObject { ["from"] = from, ["to"] = to });
            var content = new JsonObject { ["version"] = 1, ["renames"] = entries };
            AtomicFile.Write(journal, stream => stream.Write(Encoding.UTF8.GetBytes(content.ToJsonString())));
            Reached("journaled");
            RollForward(directory, journal, relative.Select(r => (Checked(r.From), Checked(r.To))).ToList());
        }

        /// <summary>
        /// Finishes a save that was killed after its commit point, if <paramref name="directory"/> holds a journal. Every
        /// step is idempotent, so a kill during recovery is recovered by the next call.
        /// </summary>
        internal static void Recover(string directory)
        {
            string journal = Path.Combine(directory, FileName);
            if (!File.Exists(journal)) return;
            try
            {
                RollForward(directory, journal, Parse(journal));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"{journal}: a save into {directory} was interrupted after its commit point and could not be completed: {ex.Message}", ex);
            }
        }

        /// <summary>
        /// Deletes what saves killed before their commit point left in <paramref name="folder"/>: staged files and the
        /// temporary files of atomic writes of the adapter files.
        /// </summary>
        internal static void DeleteLeftovers(string folder)
        {
            if (!Directory.Exists(folder)) return;
            foreach (string file in Directory.EnumerateFiles(folder))
            {
                string name = Path.GetFileName(file);
                bool leftover = name.Contains(StagedMarker, StringComparison.Ordinal)
                    || name.StartsWith(AdapterConfig.FileName + ".tmp-", StringComparison.Ordinal)
                    || name.StartsWith(PeftAdapterFormat.WeightsFileName + ".tmp-", StringComparison.Ordinal)
                    || name.StartsWith(FileName + ".tmp-", StringComparison.Ordinal);
                if (leftover) File.Delete(file);
            }
        }

        private static void RollForward(string directory, string journal, IReadOnlyList<(string From, string To)> renames)
        {
            int done = 0;
            foreach (var (from, to) in renames)
            {
                string source = Path.Combine(directory, from), target = Path.Combine(directory, to);
                // Absent: renamed before a kill, by the save itself or an earlier recovery.
                if (File.Exists(source)) File.Move(source, target, overwrite: true);
                Reached("renamed " + ++done);
            }
            Reached("committed");
            File.Delete(journal);
        }

        private static List<(string From, string To)> Parse(string journal)
        {
            try
            {
                var root = JsonNode.Parse(File.ReadAllText(journal))?.AsObject() ?? throw new InvalidDataException("empty");
                if (root["version"]?.GetValue<int>() != 1) throw new InvalidDataException("unknown version");
                return root["renames"]!.AsArray()
                    .Select(entry => (Checked(entry!["from"]!.GetValue<string>()), Checked(entry["to"]!.GetValue<string>())))
                    .ToList();
            }
            catch (Exception ex) when (ex is JsonException or InvalidOperationException or InvalidDataException or NullReferenceException or FormatException)
            {
                throw new InvalidDataException(
                    $"{journal}: not a save journal this version of PeftDsl wrote ({ex.Message}); delete it to keep the adapter files as they are", ex);
            }
        }

        /// <summary>A journal names files inside its directory only.</summary>
        private static string Checked(string relative)
        {
            if (relative.Length == 0 || Path.IsPathRooted(relative) || relative.Split('/').Any(part => part is "" or "." or ".."))
                throw new InvalidDataException($"path '{relative}' leaves the adapter directory");
            return relative.Replace('/', Path.DirectorySeparatorChar);
        }

        private static string Relative(string directory, string path) =>
            Path.GetRelativePath(directory, path).Replace(Path.DirectorySeparatorChar, '/');
    }
}
