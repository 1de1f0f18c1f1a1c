using System;
using System.Collections.Generic;
using System.Linq;
using Peft.Runtime.Adapters;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Merging
{
    /// <summary>
    /// Builds a new named adapter from existing ones on every layer that holds them all (what the generated
    /// <c>Merge{Name}()</c> calls). Every method works on the sources' delta weights ΔWᵢ (each with its own scaling
    /// baked in); the new adapter is a LoRA adapter with scaling 1 (α = r).
    /// </summary>
    /// <remarks>
    /// <para><see cref="MergeMethod.Linear"/> and <see cref="MergeMethod.Cat"/> over plain LoRA sources are exact by
    /// concatenation: A = [A₁; A₂; …], B = [w₁s₁B₁, w₂s₂B₂, …], so B·A = Σ wᵢΔWᵢ with rank Σ rᵢ (where that exceeds
    /// min(out, in), the exact sum is factorised by SVD at full rank instead). Every other case — the other methods, and
    /// any source that is not a plain LoRA adapter (DoRA, Bone, Hydra, ...), which enters through its delta weight — forms
    /// the dense result and re-factorises it by truncated SVD to <see cref="MergeSpec.Rank"/> (0: the sum of the sources'
    /// ranks, capped at min(out, in)).</para>
    /// <para>The new adapter lives in a <see cref="LoRALinear"/>. A layer of another method (a Bone or Hydra layer)
    /// cannot hold one: there the merge is refused, naming the layer, and <see cref="FoldIntoBase(IPeftModel, MergeSpec)"/>
    /// folds the same combination into the base weights instead. Nothing changes unless every layer succeeds: all
    /// results are computed and checked for NaN / Inf first.</para>
    /// </remarks>
    public static class AdapterMerger
    {
        /// <summary>The layers among <paramref name="sites"/> that hold every adapter the spec names.</summary>
        public static List<(string Path, IAdapterLayer Layer)> Select(IEnumerable<(string Path, IAdapterLayer Layer)> sites, MergeSpec spec) =>
            sites.Where(s => spec.Adapters.All(a => s.Layer.AdapterNames.Contains(a))).ToList();

        /// <summary>
        /// An upper bound on the rank of an adapter's delta weight: r for LoRA, the block r for Bone, r_p + r_s for Hydra,
        /// min(out, in) for DoRA, Bat and anything else.
        /// </summary>
        public static int RankBound(IAdapterLayer layer, string adapter)
        {
            var (outFeatures, inFeatures) = Shape(layer);
            long max = Math.Min(outFeatures, inFeatures);
            long bound = layer.Settings(adapter) switch
            {
                LoRAOptions { UseDora: false } lora => lora.Rank,
                BoneOptions { Variant: BoneVariant.Bone } bone => bone.Block,
                HydraOptions hydra => (long)hydra.ParallelRank + hydra.SequentialRank,
                _ => max,
            };
            return (int)Math.Min(bound, max);
        }

        /// <summary>The rank of a re-factorised result: <see cref="MergeSpec.Rank"/>, or the sum of the sources' <see cref="RankBound"/>s; capped at min(out, in).</summary>
        public static int TargetRank(IAdapterLayer layer, MergeSpec spec)
        {
            var (outFeatures, inFeatures) = Shape(layer);
            long max = Math.Min(outFeatures, inFeatures);
            long rank = spec.Rank > 0 ? spec.Rank : spec.Adapters.Sum(a => (long)RankBound(layer, a));
            return (int)Math.Min(rank, max);
        }

        /// <summary>
        /// The combination as a dense [out, in] float64 tensor, before any low-rank truncation: Σ wᵢΔWᵢ for Linear, Cat
        /// and Svd; the pruned / elected forms for TIES, DARE and magnitude pruning; Model Stock's t·mean(ΔWᵢ).
        /// </summary>
        /// <param name="layer">A layer holding every source adapter.</param>
        /// <param name="spec">The merge.</param>
        /// <param name="position">The layer's position among the merged layers: DARE's masks are seeded by (Seed, position).</param>
        public static Tensor CombinedDelta(IAdapterLayer layer, MergeSpec spec, int position)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            if (spec.Space == MergeSpace.Core || spec.Method == MergeMethod.LoraLego)
            {
                var (a, b) = FactorMerge(layer, spec, position);
                return matmul(b, a).MoveToOuterDisposeScope();
            }
            var deltas = spec.Adapters.Select(a => layer.DeltaWeight(a).detach().to(float64)).ToList();
            if (spec.Method == MergeMethod.Widen)
                return Widen.Merge(BaseWeight(layer), deltas, spec.EffectiveWeights).MoveToOuterDisposeScope();
            using var generator = DareGenerator(spec, position);
            return DeltaMerge.Combine(spec.Method, deltas, spec.EffectiveWeights, spec.Density, generator, spec.CommonFraction).MoveToOuterDisposeScope();
        }

        /// <summary>
        /// The merges that work on the sources' LoRA factors themselves — any method in <see cref="MergeSpace.Core"/>, and
        /// <see cref="MergeMethod.LoraLego"/> — as the new adapter's float64 factors (A, B), scaling 1. Every source must be
        /// a plain LoRA adapter (not DoRA, not another method's layer); otherwise this throws naming the layer and adapter.
        /// </summary>
        /// <param name="layer">A layer holding every source adapter.</param>
        /// <param name="spec">The merge.</param>
        /// <param name="position">The layer's position among the merged layers: DARE's masks and LoRA-LEGO's k-means++ are seeded by (Seed, position).</param>
        /// <param name="path">The layer's path, for messages.</param>
        public static (Tensor A, Tensor B) FactorMerge(IAdapterLayer layer, MergeSpec spec, int position, string? path = null)
        {
            string where = path ?? layer.GetType().Name;
            string why = spec.Method == MergeMethod.LoraLego ? "LoRA-LEGO clusters the sources' rank-1 units" : "Core Space is built from the sources' LoRA factors";
            if (layer is not LoRALinear lora)
                throw new NotSupportedException($"layer '{where}': cannot merge into '{spec.Name}': {why}, and this is a {layer.PeftType} layer; use Space = MergeSpace.Full with another method");
            foreach (string adapter in spec.Adapters)
                if (lora.Settings(adapter) is not LoRAOptions { UseDora: false })
                    throw new NotSupportedException($"layer '{where}': cannot merge into '{spec.Name}': {why}, and '{adapter}' is not a plain LoRA adapter (DoRA's delta is no product B·A); use Space = MergeSpace.Full with another method");
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var weights = spec.EffectiveWeights;
            var a = spec.Adapters.Select(n => lora.LoraA(n).detach().to(float64)).ToList();
            Tensor A, B;
            if (spec.Method == MergeMethod.LoraLego)
            {
                var b = spec.Adapters.Select((n, i) => lora.LoraB(n).detach().to(float64).mul(weights[i] * lora.Options(n).Scaling)).ToList();
                using var generator = new Generator(DareSeed(spec.Seed, position), CPU);
                (A, B) = LoraLego.Merge(a, b, spec.Rank, generator);
            }
            else
            {
                var b = spec.Adapters.Select(n => lora.LoraB(n).detach().to(float64).mul(lora.Options(n).Scaling)).ToList();
                using var generator = DareGenerator(spec, position);
                (A, B) = CoreSpace.Merge(a, b, spec.Method, weights, spec.Density, generator, spec.CommonFraction, spec.Rank);
            }
            return (A.MoveToOuterDisposeScope(), B.MoveToOuterDisposeScope());
        }

        /// <summary>DARE's mask generator for the layer at <paramref name="position"/>; null for the methods that draw nothing.</summary>
        private static Generator? DareGenerator(MergeSpec spec, int position) =>
            spec.Method is MergeMethod.DareLinear or MergeMethod.DareTies ? new Generator(DareSeed(spec.Seed, position), CPU) : null;

        /// <summary>
        /// DARE's generator seed for one layer: SplitMix64 of (seed, position). libtorch's CPU generator (mt19937) keeps
        /// only the low 32 bits of a seed, so the two are mixed rather than placed side by side.
        /// </summary>
        public static ulong DareSeed(int seed, int position)
        {
            ulong z = unchecked(((ulong)(uint)seed << 32 | (uint)position) + 0x9E3779B97F4A7C15UL);
            z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
            z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
            return z ^ (z >> 31);
        }

        /// <summary>
        /// The new adapter's factors on one layer, in float64, with scaling 1: B [out, r] · A [r, in] is the combination
        /// (exactly for Linear / Cat, and for WIDEN where plain LoRA sources' ranks fit; else its truncated SVD). Throws,
        /// naming <paramref name="path"/>, if it holds NaN or Inf.
        /// </summary>
        public static (Tensor A, Tensor B) Factors(string path, IAdapterLayer layer, MergeSpec spec, int position)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var (outFeatures, inFeatures) = Shape(layer);
            long max = Math.Min(outFeatures, inFeatures);
            var weights = spec.EffectiveWeights;
            if (spec.Space == MergeSpace.Core || spec.Method == MergeMethod.LoraLego)
            {
                var (ca, cb) = FactorMerge(layer, spec, position, path);
                RequireFinite(path, spec, ca, cb);
                return (ca.MoveToOuterDisposeScope(), cb.MoveToOuterDisposeScope());
            }

            if (spec.Method is MergeMethod.Linear or MergeMethod.Cat or MergeMethod.Widen && layer is LoRALinear lora
                && spec.Adapters.All(a => lora.Settings(a) is LoRAOptions { UseDora: false })
                && spec.Adapters.Sum(a => (long)lora.Options(a).Rank) <= max)
            {
                // The factors concatenated: exact for Linear / Cat, and for WIDEN, which scales columns:
                // Bᵢ·Aᵢ·diag(cᵢ) = Bᵢ·(Aᵢ·diag(cᵢ)).
                var columns = spec.Method == MergeMethod.Widen
                    ? Widen.ColumnWeights(BaseWeight(layer), spec.Adapters.Select(n => lora.DeltaWeight(n).detach().to(float64)).ToList())
                    : null;
                var a = cat(spec.Adapters.Select((n, i) =>
                {
                    var ai = lora.LoraA(n).detach().to(float64);
                    return columns is null ? ai : ai.mul(columns[i].unsqueeze(0));
                }).ToArray(), 0);
                var b = cat(spec.Adapters.Select((n, i) => lora.LoraB(n).detach().to(float64).mul(weights[i] * lora.Options(n).Scaling)).ToArray(), 1);
                RequireFinite(path, spec, a, b);
                return (a.MoveToOuterDisposeScope(), b.MoveToOuterDisposeScope());
            }

            var delta = CombinedDelta(layer, spec, position);
            RequireFinite(path, spec, delta);
            int rank = spec.Method is MergeMethod.Linear or MergeMethod.Cat && spec.Rank == 0
                ? (int)Math.Min(spec.Adapters.Sum(n => (long)RankBound(layer, n)), max)
                : TargetRank(layer, spec);
            var (fa, fb) = LowRankFactorization.Truncated(delta, rank);
            return (fa.MoveToOuterDisposeScope(), fb.MoveToOuterDisposeScope());
        }

        /// <summary>Adds the merged adapter to every layer of <paramref name="model"/> that holds all the sources.</summary>
        public static void AddMergedAdapter(IPeftModel model, MergeSpec spec) =>
            AddMergedAdapter(model.AdapterLayers, spec, model.GetType().FullName ?? model.GetType().Name);

        /// <summary>
        /// Adds the merged adapter to the adapter layers that are direct members of <paramref name="owner"/> named in
        /// <paramref name="members"/> (component names) and hold all the sources: a <c>[MergeWith]</c> on a class that is
        /// not the model's root, or on one field.
        /// </summary>
        public static void AddMergedAdapter(nn.Module owner, MergeSpec spec, params string[] members)
        {
            var sites = owner.named_children()
                .Where(c => members.Contains(c.name) && c.module is IAdapterLayer)
                .Select(c => (c.name, (IAdapterLayer)c.module))
                .ToList();
            AddMergedAdapter(sites, spec, owner.GetType().FullName ?? owner.GetType().Name);
        }

        /// <summary>
        /// Adds adapter <see cref="MergeSpec.Name"/> to every layer among <paramref name="sites"/> that holds all the
        /// sources. It starts inactive (<c>SetActiveAdapters</c> selects it). All or nothing: the spec, the layers'
        /// methods, the name and every result's finiteness are checked before any layer changes.
        /// </summary>
        /// <param name="sites">Candidate layers by module path.</param>
        /// <param name="spec">The merge.</param>
        /// <param name="owner">The model or class, named in messages.</param>
        public static void AddMergedAdapter(IEnumerable<(string Path, IAdapterLayer Layer)> sites, MergeSpec spec, string owner)
        {
            spec.Validate(owner);
            var selected = Targets(sites, spec, owner);
            foreach (var (path, layer) in selected)
            {
                if (layer is not LoRALinear)
                    throw new NotSupportedException(
                        $"{owner}: cannot create adapter '{spec.Name}' on layer '{path}': it is a {layer.PeftType} layer, which holds no LoRA adapter; " +
                        $"fold the combination into the base weights with AdapterMerger.FoldIntoBase instead (the model is unchanged)");
                if (layer.AdapterNames.Contains(spec.Name))
                    throw new ArgumentException($"{owner}: layer '{path}' already has an adapter named '{spec.Name}'; delete it first (the model is unchanged)");
            }

            var results = new List<(LoRALinear Layer, Tensor A, Tensor B, double Dropout)>();
            try
            {
                for (int i = 0; i < selected.Count; i++)
                {
                    var (path, layer) = selected[i];
                    var lora = (LoRALinear)layer;
                    var dtype = lora.LoraA(spec.Adapters[0]).dtype;
                    var (a, b) = Factors(path, layer, spec, i);
                    var (ta, tb) = (a.to(dtype), b.to(dtype));
                    a.Dispose();
                    b.Dispose();
                    results.Add((lora, ta, tb, lora.Settings(spec.Adapters[0]) is LoRAOptions first ? first.Dropout : 0));
                    using (no_grad())
                    using (var product = matmul(tb, ta))
                        RequireFinite(path, spec, ta, tb, product);
                }

                var added = new List<LoRALinear>();
                try
                {
                    foreach (var (layer, a, b, dropout) in results)
                    {
                        int rank = (int)a.shape[0];
                        layer.AddAdapter(spec.Name, new LoRAOptions { Rank = rank, Alpha = rank, Dropout = dropout });
                        added.Add(layer);
                        using (no_grad())
                        {
                            layer.LoraA(spec.Name).copy_(a);
                            layer.LoraB(spec.Name).copy_(b);
                        }
                    }
                }
                catch
                {
                    foreach (var layer in added) layer.DeleteAdapter(spec.Name);
                    throw;
                }
            }
            finally
            {
                foreach (var (_, a, b, _) in results)
                {
                    a.Dispose();
                    b.Dispose();
                }
            }
        }

        /// <summary>Folds the combination into the base weights of every layer of <paramref name="model"/> that holds all the sources.</summary>
        public static void FoldIntoBase(IPeftModel model, MergeSpec spec) =>
            FoldIntoBase(model.AdapterLayers, spec, model.GetType().FullName ?? model.GetType().Name);

        /// <summary>
        /// Adds the combination to the base weight of every layer among <paramref name="sites"/> that holds all the
        /// sources: W ← W + ΔW, on layers of any method (the way to merge Bone or Hydra adapters, whose layers cannot
        /// hold the LoRA adapter <see cref="AddMergedAdapter(IEnumerable{ValueTuple{string, IAdapterLayer}}, MergeSpec, string)"/>
        /// makes). The dense combination is folded as it is (no low-rank truncation, except for <see cref="MergeMethod.Svd"/>,
        /// whose result is the truncation). Like <c>MergeAndUnload</c> this is not recorded as a merge: follow it with
        /// <c>DisableAdapters()</c>, or <c>SetActiveAdapters()</c> (none) and <c>MergeAndUnload()</c>, to get the plain
        /// merged model. Refused, naming the layer and leaving every weight untouched, if any result holds NaN or Inf or a
        /// layer has adapters merged already.
        /// </summary>
        public static void FoldIntoBase(IEnumerable<(string Path, IAdapterLayer Layer)> sites, MergeSpec spec, string owner)
        {
            spec.Validate(owner);
            var selected = Targets(sites, spec, owner);
            foreach (var (path, layer) in selected)
                if (layer.MergedAdapters.Count > 0)
                    throw new InvalidOperationException($"{owner}: layer '{path}' has adapters merged into its base weight; unmerge them before folding '{spec.Name}' (the model is unchanged)");

            var folded = new List<(Parameter Weight, Tensor Value)>();
            try
            {
                for (int i = 0; i < selected.Count; i++)
                {
                    var (path, layer) = selected[i];
                    var weight = layer.BaseLayer.get_parameter("weight") ?? throw new InvalidOperationException($"{owner}: layer '{path}' has no base weight");
                    using var scope = NewDisposeScope();
                    using var _ = no_grad();
                    Tensor delta;
                    if (spec.Method == MergeMethod.Svd)
                    {
                        var (a, b) = Factors(path, layer, spec, i);
                        delta = matmul(b, a);
                    }
                    else
                    {
                        delta = CombinedDelta(layer, spec, i);
                    }
                    var value = weight.detach().to(float64).add(delta).to(weight.dtype);
                    if (!isfinite(value).all().item<bool>())
                        throw new InvalidOperationException($"{owner}: refusing to fold '{spec.Name}' into layer '{path}': the weight would hold NaN or Inf; the model is unchanged");
                    folded.Add((weight, value.MoveToOuterDisposeScope()));
                }

                using (no_grad())
                    foreach (var (weight, value) in folded) weight.copy_(value);
            }
            finally
            {
                foreach (var (_, value) in folded) value.Dispose();
            }
        }

        private static List<(string Path, IAdapterLayer Layer)> Targets(IEnumerable<(string Path, IAdapterLayer Layer)> sites, MergeSpec spec, string owner)
        {
            var all = sites.ToList();
            var selected = Select(all, spec);
            if (selected.Count == 0)
            {
                var known = all.SelectMany(s => s.Layer.AdapterNames).Distinct(StringComparer.Ordinal).ToList();
                throw new ArgumentException(
                    $"{owner}: no layer holds all of {string.Join(", ", spec.Adapters.Select(a => "'" + a + "'"))} to merge into '{spec.Name}' " +
                    $"(adapters present: {(known.Count == 0 ? "none" : string.Join(", ", known.Select(a => "'" + a + "'")))})");
            }
            return selected;
        }

        private static void RequireFinite(string path, MergeSpec spec, params Tensor[] tensors)
        {
            foreach (var t in tensors)
                if (!isfinite(t).all().item<bool>())
                    throw new InvalidOperationException($"layer '{path}': refusing to create adapter '{spec.Name}': the merged weights would hold NaN or Inf; the model is unchanged");
        }

        /// <summary>W₀ for WIDEN, refused while adapters are merged into it (the scores would measure against W₀ + their deltas).</summary>
        private static Tensor BaseWeight(IAdapterLayer layer)
        {
            if (layer.MergedAdapters.Count > 0)
                throw new InvalidOperationException($"WIDEN scores against the base weight, but {string.Join(", ", layer.MergedAdapters.Select(a => "'" + a + "'"))} is merged into it; unmerge first");
            return Weight(layer).detach();
        }

        private static (long Out, long In) Shape(IAdapterLayer layer)
        {
            var weight = Weight(layer);
            return (weight.shape[0], weight.shape[^1]);
        }

        private static Parameter Weight(IAdapterLayer layer) =>
            layer.BaseLayer.get_parameter("weight") ?? throw new InvalidOperationException("the base layer has no 'weight' parameter");
    }
}
