using System;
using System.Collections;
using System.Collections.Generic;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// A mixed batch's routing, worked out once per <see cref="PeftModelCore.MixedBatch"/> scope and shared by every
    /// layer: the adapter of each row, the rows grouped by adapter name (first-seen order), the permutation that puts
    /// the groups' outputs back in row order, and each group's row indices as a tensor, built once per device on first
    /// use. It is the list of row adapters itself, so <see cref="IAdapterLayer.RowAdapters"/> hands it on unchanged.
    /// </summary>
    public sealed class RowRouting : IReadOnlyList<string>, IDisposable
    {
        private readonly string[] _rows;
        private readonly Dictionary<string, int> _groupOf = new(StringComparer.Ordinal);
        private readonly List<Group> _groups = new();
        private readonly long[] _inverse;
        private readonly Dictionary<string, Tensor[]> _indexTensors = new(StringComparer.Ordinal); // per device
        private readonly Dictionary<string, Tensor> _inverseTensors = new(StringComparer.Ordinal);
        private readonly object _lock = new();

        /// <summary>Groups the rows of <paramref name="rows"/> (one adapter name per row) by adapter.</summary>
        public RowRouting(IReadOnlyList<string> rows)
        {
            ArgumentNullException.ThrowIfNull(rows);
            _rows = new string[rows.Count];
            var members = new List<List<long>>();
            for (int i = 0; i < _rows.Length; i++)
            {
                string name = _rows[i] = rows[i] ?? throw new ArgumentException("a mixed batch names an adapter for every row; row " + i + " has none", nameof(rows));
                if (!_groupOf.TryGetValue(name, out int g))
                {
                    _groupOf[name] = g = members.Count;
                    members.Add(new List<long>());
                }
                members[g].Add(i);
            }
            _inverse = new long[_rows.Length];
            long position = 0;
            foreach (var m in members)
            {
                var indices = m.ToArray();
                bool contiguous = indices[^1] - indices[0] == indices.Length - 1;
                _groups.Add(new Group(_rows[indices[0]], indices, contiguous));
                foreach (long row in indices) _inverse[row] = position++;
            }
        }

        /// <summary>One adapter's rows, ascending.</summary>
        /// <param name="Adapter">The adapter name the rows carry (<c>"__base__"</c> or any name a layer may lack).</param>
        /// <param name="Rows">The row indices, ascending.</param>
        /// <param name="Contiguous">Whether the rows are one run (then a layer may narrow instead of gathering).</param>
        public sealed record Group(string Adapter, long[] Rows, bool Contiguous)
        {
            /// <summary>The first row.</summary>
            public long Start => Rows[0];
        }

        /// <summary>The groups in first-seen order.</summary>
        public IReadOnlyList<Group> Groups => _groups;

        /// <summary>Group <paramref name="group"/>'s row indices as an int64 tensor on <paramref name="device"/>, built once.</summary>
        public Tensor Index(int group, Device device)
        {
            lock (_lock)
            {
                string key = device.ToString();
                if (!_indexTensors.TryGetValue(key, out var all))
                    _indexTensors[key] = all = new Tensor[_groups.Count];
                return all[group] ??= Detached(tensor(_groups[group].Rows, device: device));
            }
        }

        /// <summary>
        /// The permutation that takes the groups' outputs, concatenated in group order, back to row order (an int64
        /// tensor on <paramref name="device"/>, built once).
        /// </summary>
        public Tensor Inverse(Device device)
        {
            lock (_lock)
            {
                string key = device.ToString();
                if (!_inverseTensors.TryGetValue(key, out var t))
                    _inverseTensors[key] = t = Detached(tensor(_inverse, device: device));
                return t;
            }
        }

        // Owned by the routing, not by whatever dispose scope the first forward ran in.
        private static Tensor Detached(Tensor t) => t.DetachFromDisposeScope();

        /// <inheritdoc />
        public int Count => _rows.Length;

        /// <inheritdoc />
        public string this[int index] => _rows[index];

        /// <inheritdoc />
        public IEnumerator<string> GetEnumerator() => ((IEnumerable<string>)_rows).GetEnumerator();

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

        /// <summary>Frees the index tensors (a later forward with this routing builds them again).</summary>
        public void Dispose()
        {
            lock (_lock)
            {
                foreach (var all in _indexTensors.Values)
                    foreach (var t in all) t?.Dispose();
                foreach (var t in _inverseTensors.Values) t.Dispose();
                _indexTensors.Clear();
                _inverseTensors.Clear();
            }
        }
    }
}
