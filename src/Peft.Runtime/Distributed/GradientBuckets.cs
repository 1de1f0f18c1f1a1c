using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Distributed
{
    /// <summary>
    /// The trainable parameters' gradients laid end to end in one flat tensor per (dtype, device) — one all-reduce per
    /// step instead of one per parameter — allocated once and reused every step. The first bucket ends with a few
    /// status slots (each rank's loss and bad-gradient flag) that ride along in the same all-reduce.
    /// </summary>
    internal sealed class GradientBuckets : IDisposable
    {
        private readonly List<Entry> _entries;
        private readonly Tensor[] _buckets;
        private readonly long[] _parameterElements;
        private readonly int _statusSlots;

        private readonly record struct Entry(Parameter Parameter, long Elements, int Bucket, long Offset);

        internal GradientBuckets(IReadOnlyList<(string Name, Parameter Parameter)> trainable, int statusSlots, string trainer)
        {
            if (trainable.Count == 0) throw new InvalidOperationException($"{trainer}: the model has no trainable parameters to train across ranks.");
            foreach (var (name, p) in trainable)
                if (p.dtype is not (ScalarType.Float32 or ScalarType.Float64))
                    throw new ArgumentException($"{trainer}: data-parallel training averages float32 or float64 gradients; '{name}' is {p.dtype}.");
            var keys = new List<(ScalarType Type, string Device)>();
            var totals = new List<long>();
            _entries = new List<Entry>(trainable.Count);
            foreach (var (_, p) in trainable)
            {
                var key = (p.dtype, p.device.ToString());
                int bucket = keys.IndexOf(key);
                if (bucket < 0) { keys.Add(key); totals.Add(0); bucket = keys.Count - 1; }
                long elements = p.numel();
                _entries.Add(new Entry(p, elements, bucket, totals[bucket]));
                totals[bucket] += elements;
            }
            _statusSlots = statusSlots;
            _parameterElements = totals.ToArray();
            _buckets = new Tensor[keys.Count];
            for (int b = 0; b < keys.Count; b++)
            {
                var first = _entries.First(e => e.Bucket == b).Parameter;
                _buckets[b] = zeros(totals[b] + (b == 0 ? statusSlots : 0), dtype: keys[b].Type, device: first.device).DetachFromDisposeScope();
            }
        }

        /// <summary>The number of trainable scalars the buckets hold (status slots not counted).</summary>
        internal long ParameterElements => _parameterElements.Sum();

        /// <summary>Whether <paramref name="trainable"/> is the parameter set these buckets were built for.</summary>
        internal bool Matches(IReadOnlyList<(string Name, Parameter Parameter)> trainable) =>
            trainable.Count == _entries.Count
            && trainable.Select((t, i) => ReferenceEquals(t.Parameter, _entries[i].Parameter) && t.Parameter.numel() == _entries[i].Elements).All(x => x);

        /// <summary>Checks every rank has the same trainable layout, then gives every rank rank 0's parameter values.</summary>
        internal void BroadcastParameters(ICommunicator communicator, string trainer)
        {
            CheckSameLayout(communicator, trainer);
            using var _ = no_grad();
            for (int b = 0; b < _buckets.Length; b++)
            {
                var values = Parameters(b);
                foreach (var e in _entries.Where(e => e.Bucket == b))
                    values.narrow(0, e.Offset, e.Elements).copy_(e.Parameter.detach().reshape(-1));
                communicator.Broadcast(values, root: 0);
                if (communicator.Rank == 0) continue;
                foreach (var e in _entries.Where(e => e.Bucket == b))
                    e.Parameter.copy_(values.narrow(0, e.Offset, e.Elements).view_as(e.Parameter));
            }
        }

        /// <summary>Copies every gradient into its bucket (zeros for a parameter without one).</summary>
        internal void PackGradients()
        {
            using var _ = no_grad();
            foreach (var e in _entries)
            {
                var slice = _buckets[e.Bucket].narrow(0, e.Offset, e.Elements);
                if (e.Parameter.grad is { } grad) slice.copy_(grad.reshape(-1));
                else slice.zero_();
            }
        }

        /// <summary>
        /// Whether the gradients the buckets hold are all finite (one synchronisation per bucket): this rank's after
        /// <see cref="PackGradients"/>, the averaged ones after <see cref="AllReduceMean"/>.
        /// </summary>
        internal bool GradientsFinite() => _buckets.Select((_, b) => isfinite(Parameters(b)).all().item<bool>()).All(x => x);

        internal void SetStatus(double[] status)
        {
            if (status.Length != _statusSlots) throw new ArgumentException("status slots", nameof(status));
            using var _ = no_grad();
            using var values = tensor(status, dtype: ScalarType.Float64);
            StatusSlots().copy_(values);
        }

        internal double[] Status()
        {
            using var values = StatusSlots().to(ScalarType.Float64, CPU);
            return values.data<double>().ToArray();
        }

        /// <summary>Averages every bucket, status slots included, across the ranks.</summary>
        internal void AllReduceMean(ICommunicator communicator)
        {
            foreach (var bucket in _buckets) communicator.AllReduceMean(bucket);
        }

        /// <summary>Copies the averaged gradients back into the parameters' gradients.</summary>
        internal void UnpackGradients()
        {
            // A parameter this rank's forward did not use has no gradient yet, but others' may: give it one (zeros).
            var missing = _entries.Where(e => e.Parameter.grad is null).Select(e => e.Parameter).ToList();
            if (missing.Count > 0)
                using (var zero = stack(missing.Select(p => p.sum().to(ScalarType.Float64)).ToArray()).sum() * 0)
                    zero.backward();
            using var _ = no_grad();
            foreach (var e in _entries)
                e.Parameter.grad!.copy_(_buckets[e.Bucket].narrow(0, e.Offset, e.Elements).view_as(e.Parameter));
        }

        public void Dispose()
        {
            foreach (var bucket in _buckets) bucket.Dispose();
        }

        private Tensor Parameters(int bucket) => _buckets[bucket].narrow(0, 0, _parameterElements[bucket]);

        private Tensor StatusSlots() => _buckets[0].narrow(0, _parameterElements[0], _statusSlots);

        /// <summary>
        /// Ranks built from different models would average unrelated numbers (or hang on different sizes): every rank
        /// compares rank 0's parameter count and bucket sizes with its own first, and a rank that differs says so.
        /// </summary>
        private void CheckSameLayout(ICommunicator communicator, string trainer)
        {
            if (communicator.Size == 1) return;
            var mine = new List<double> { _entries.Count, _buckets.Length };
            mine.AddRange(_parameterElements.Select(n => (double)n));
            using var _ = no_grad();
            using var values = tensor(mine.ToArray(), dtype: ScalarType.Float64);
            communicator.Broadcast(values, root: 0);
            double[] root = values.data<double>().ToArray();
            if (!root.SequenceEqual(mine))
                throw new InvalidOperationException(
                    $"{trainer}: rank {communicator.Rank} has {_entries.Count} trainable parameters with {ParameterElements.ToString(CultureInfo.InvariantCulture)} elements " +
                    $"in {_buckets.Length} bucket(s), rank 0 has {root[0]} with {root.Skip(2).Sum().ToString(CultureInfo.InvariantCulture)} in {root[1]}: " +
                    "every rank must build the same model with the same adapters.");
        }
    }
}
