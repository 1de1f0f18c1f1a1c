using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// VeRA's frozen projections keyed by adapter name, as buffers (PEFT's <c>BufferDict</c> <c>vera_A</c> / <c>vera_B</c>).
    /// Once the model is attached, one instance of each is registered in every VeRA layer, so moving the model moves
    /// the shared projections once and a loaded projection reaches every layer.
    /// </summary>
    public sealed class VeRAProjectionDict : nn.Module
    {
        /// <summary>Creates an empty dictionary.</summary>
        public VeRAProjectionDict() : base("VeRAProjectionDict") { }

        /// <summary>The projection of adapter <paramref name="adapter"/>.</summary>
        public Tensor this[string adapter] => _internal_buffers[adapter].Item1;

        /// <summary>Whether the adapter has a projection here.</summary>
        public bool Contains(string adapter) => _internal_buffers.ContainsKey(adapter);

        /// <summary>The adapters with a projection here.</summary>
        public IEnumerable<string> Adapters => _internal_buffers.Keys;

        /// <summary>Adds the adapter's projection as a persistent buffer.</summary>
        public void Add(string adapter, Tensor projection) => register_buffer(adapter, projection);

        /// <summary>Unregisters the adapter's projection, if any; the tensor is left alone, since other layers may share it.</summary>
        public void Remove(string adapter)
        {
            if (_internal_buffers.ContainsKey(adapter)) _internal_buffers.Remove(adapter);
        }

        /// <inheritdoc />
        protected override void RegisterComponents() { } // registered one by one in Add
    }

    /// <summary>
    /// A layer's pair of frozen-tensor dictionaries (VeRA's projections, RandLoRA's bases), registered as two child
    /// modules: its own until the model is attached, then the model's shared pair; a layer that changes its adapters
    /// takes a private copy of the dictionaries (same tensors) until the next attach shares again.
    /// </summary>
    internal sealed class SharedTensorPair
    {
        private readonly nn.Module _owner;
        private readonly string _nameA, _nameB;

        public SharedTensorPair(nn.Module owner, string nameA, string nameB)
        {
            (_owner, _nameA, _nameB) = (owner, nameA, nameB);
            owner.register_module(nameA, A);
            owner.register_module(nameB, B);
        }

        public VeRAProjectionDict A { get; private set; } = new();

        public VeRAProjectionDict B { get; private set; } = new();

        public bool Shared { get; private set; }

        /// <summary>An adapter's pair under the names it is registered with (<c>vera_A.&lt;adapter&gt;</c>, <c>randlora_B.&lt;adapter&gt;</c>, ...).</summary>
        public IEnumerable<(string Name, Tensor Tensor)> Named(string adapter) =>
            new[] { ($"{_nameA}.{adapter}", A[adapter]), ($"{_nameB}.{adapter}", B[adapter]) };

        /// <summary>Adds an adapter's pair to this layer's own dictionaries (leaving the model's shared ones first).</summary>
        public void Add(IEnumerable<string> adapters, string adapter, Tensor a, Tensor b)
        {
            if (Shared) Privatize(adapters);
            A.Add(adapter, a.DetachFromDisposeScope());
            B.Add(adapter, b.DetachFromDisposeScope());
        }

        /// <summary>Drops an adapter's pair; other layers may still use the tensors, so they are not disposed.</summary>
        public void Remove(IEnumerable<string> adapters, string adapter)
        {
            if (Shared) Privatize(adapters);
            A.Remove(adapter);
            B.Remove(adapter);
        }

        /// <summary>Registers the model's shared dictionaries in place of this layer's own.</summary>
        public void Use(VeRAProjectionDict a, VeRAProjectionDict b)
        {
            PeftModelCore.ReplaceSubmodule(_owner, _nameA, a);
            PeftModelCore.ReplaceSubmodule(_owner, _nameB, b);
            (A, B) = (a, b);
            Shared = true;
        }

        private void Privatize(IEnumerable<string> adapters)
        {
            var a = new VeRAProjectionDict();
            var b = new VeRAProjectionDict();
            foreach (var name in adapters.ToList())
            {
                a.Add(name, A[name]);
                b.Add(name, B[name]);
            }
            Use(a, b);
            Shared = false;
        }

        /// <summary>
        /// Gives every <typeparamref name="TLayer"/> of <paramref name="layers"/> one shared pair of dictionaries holding,
        /// per adapter, the pair <paramref name="want"/> describes for the adapter's layers (the shapes, and how to draw
        /// it): an adapter whose layers already share a pair of those shapes keeps it (drawn before, or loaded); the others
        /// are drawn. <paramref name="check"/> refuses a layer that disagrees with the adapter's first. Idempotent.
        /// </summary>
        public static void Share<TLayer>(IReadOnlyList<(string Path, IAdapterLayer Layer)> layers, string method, string what,
            Func<TLayer, SharedTensorPair> pairOf, Action<TLayer, TLayer, string> check,
            Func<IReadOnlyList<TLayer>, string, (long[] ShapeA, long[] ShapeB, Func<(Tensor A, Tensor B)> Draw)> want)
            where TLayer : AdapterLayerBase
        {
            var all = layers.Select(l => l.Layer).OfType<TLayer>().ToList();
            if (all.Count == 0) return;
            bool oneDict = all.All(l => ReferenceEquals(pairOf(l).A, pairOf(all[0]).A) && ReferenceEquals(pairOf(l).B, pairOf(all[0]).B));
            var shared = new List<(string Adapter, Tensor A, Tensor B)>();
            bool drawn = false;
            foreach (var adapter in all.SelectMany(l => l.AdapterNames).Distinct(StringComparer.Ordinal).ToList())
            {
                var sites = all.Where(l => l.AdapterNames.Contains(adapter)).ToList();
                foreach (var layer in sites.Skip(1)) check(layer, sites[0], adapter);
                var (shapeA, shapeB, draw) = want(sites, adapter);
                var a = pairOf(sites[0]).A[adapter];
                var b = pairOf(sites[0]).B[adapter];
                bool keep = sites.All(l => ReferenceEquals(pairOf(l).A[adapter], a) && ReferenceEquals(pairOf(l).B[adapter], b))
                            && a.shape.SequenceEqual(shapeA) && b.shape.SequenceEqual(shapeB);
                if (!keep)
                {
                    if (sites.FirstOrDefault(l => l.MergedAdapters.Contains(adapter)) is { } merged)
                        throw new InvalidOperationException(
                            $"{merged.Site}: {method} adapter '{adapter}' is merged, but its shared {what} must be drawn anew for the model's layers; unmerge it first");
                    var (newA, newB) = draw();
                    (a, b) = (newA.to(a.dtype, a.device), newB.to(b.dtype, b.device));
                    drawn = true;
                }
                shared.Add((adapter, a, b));
            }
            if (oneDict && !drawn) return;
            Install(shared, all.Select(pairOf));
        }

        /// <summary>Gives every layer one new shared pair of dictionaries holding <paramref name="shared"/>.</summary>
        public static void Install(IEnumerable<(string Adapter, Tensor A, Tensor B)> shared, IEnumerable<SharedTensorPair> layers)
        {
            var dictA = new VeRAProjectionDict();
            var dictB = new VeRAProjectionDict();
            foreach (var (adapter, a, b) in shared)
            {
                dictA.Add(adapter, a.DetachFromDisposeScope());
                dictB.Add(adapter, b.DetachFromDisposeScope());
            }
            foreach (var layer in layers) layer.Use(dictA, dictB);
        }
    }

    /// <summary>How VeRA draws its projections and shares them across the layers of a model.</summary>
    public static class VeRAProjections
    {
        /// <summary>
        /// Draws A [rank, inFeatures] and then B [outFeatures, rank] from a CPU generator seeded with
        /// <paramref name="seed"/>, each uniform in ±√3·√2/√fan_in (fan_in: inFeatures for A, rank for B), in float32 —
        /// PEFT's <c>_kaiming_init</c> with <c>torch.Generator(device="cpu").manual_seed(projection_prng_key)</c>, which
        /// libtorch's CPU generator (Mersenne Twister) reproduces draw for draw.
        /// </summary>
        public static (Tensor A, Tensor B) Draw(int seed, int rank, long inFeatures, long outFeatures)
        {
            // Python turns a negative key into its 64-bit two's complement before seeding.
            using var generator = new Generator(unchecked((ulong)(long)seed));
            using (no_grad())
            {
                var a = empty(rank, inFeatures, dtype: float32).uniform_(-Bound(inFeatures), Bound(inFeatures), generator);
                var b = empty(outFeatures, rank, dtype: float32).uniform_(-Bound(rank), Bound(rank), generator);
                return (a, b);
            }
        }

        /// <summary>PEFT's bound: √3 · (√2 / √fan_in), computed in that order in double precision as Python does.</summary>
        internal static double Bound(long fanIn) => Math.Sqrt(3.0) * (Math.Sqrt(2) / Math.Sqrt(fanIn));

        /// <summary>
        /// Gives every VeRA layer of <paramref name="layers"/> one shared pair of projection dictionaries holding, per
        /// adapter, A [r, in_max] and B [out_max, r] over the layers that hold the adapter, as PEFT sizes them. An adapter
        /// whose layers already share projections of that size keeps them (drawn before, or loaded); the others are
        /// drawn from their seed. Idempotent.
        /// </summary>
        internal static void Share(IReadOnlyList<(string Path, IAdapterLayer Layer)> layers) =>
            SharedTensorPair.Share<VeRALinear>(layers, "VeRA", "projections", l => l.Projections,
                (layer, first, adapter) =>
                {
                    VeRAOptions o = layer.Options(adapter), f = first.Options(adapter);
                    if (o.Rank != f.Rank || o.ProjectionSeed != f.ProjectionSeed)
                        throw new InvalidOperationException(PeftMessages.Format(PeftMessages.VeRASharedMismatch,
                            layer.Site, adapter, o.Rank, o.ProjectionSeed, f.Rank, f.ProjectionSeed, first.Site));
                },
                (sites, adapter) =>
                {
                    var o = sites[0].Options(adapter);
                    long inMax = sites.Max(s => s.InFeatures), outMax = sites.Max(s => s.OutFeatures);
                    return (new[] { (long)o.Rank, inMax }, new[] { outMax, (long)o.Rank }, () => Draw(o.ProjectionSeed, o.Rank, inMax, outMax));
                });
    }
}
