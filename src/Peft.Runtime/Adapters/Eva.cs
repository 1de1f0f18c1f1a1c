using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// EVA's init of LoRA adapters (PEFT's <c>initialize_lora_eva_weights</c>, <c>tuners/lora/eva.py</c>): forward passes
    /// with the adapters disabled, an incremental PCA of each layer's inputs, convergence of the components by cosine
    /// similarity ≥ τ between batches, the ranks redistributed by explained variance after each batch, then
    /// A ← the top components, B ← 0.
    /// </summary>
    internal static class Eva
    {
        /// <summary>Python's <c>round</c>: to the nearest integer, halves to even (round(2.5) = 2).</summary>
        public static int MaxRank(int rank, double rho) => checked((int)Math.Round(rank * rho, MidpointRounding.ToEven));

        /// <summary>
        /// PEFT's rank redistribution: every layer contributes the explained-variance ratios of its decomposition's top
        /// <paramref name="maxComponents"/> components (a layer that shares another's input, that decomposition's), the
        /// <paramref name="budget"/> largest of all are kept, and a layer's rank is how many of its own were kept. Then in a
        /// group of layers with equal inputs the layer holding the decomposition gets the largest count (swapped), since its
        /// convergence stands for the group's. Ties keep the order of the layers (those holding a decomposition first, in
        /// tree order, then the others), then of the components.
        /// </summary>
        /// <param name="layers">Each layer and the layer whose decomposition it uses (itself when it holds one), in PEFT's order.</param>
        /// <param name="ratios">Explained-variance ratios per decomposition, largest first.</param>
        /// <param name="maxComponents">Components per layer.</param>
        /// <param name="budget">The sum of the declared ranks.</param>
        public static Dictionary<string, int> DistributeRanks(
            IReadOnlyList<(string Layer, string Holder)> layers, IReadOnlyDictionary<string, double[]> ratios,
            IReadOnlyDictionary<string, int> maxComponents, int budget)
        {
            var entries = new List<(string Layer, double Ratio)>();
            foreach (var (layer, holder) in layers)
                foreach (double r in ratios[holder].Take(maxComponents[layer]))
                    entries.Add((layer, r));
            var counts = layers.ToDictionary(l => l.Layer, _ => 0, StringComparer.Ordinal);
            // OrderByDescending is stable: equal ratios keep the order above.
            foreach (var (layer, _) in entries.OrderByDescending(e => e.Ratio).Take(budget)) counts[layer]++;
            foreach (var (layer, holder) in layers)
            {
                if (layer == holder || counts[holder] >= counts[layer]) continue;
                (counts[holder], counts[layer]) = (counts[layer], counts[holder]);
            }
            return counts;
        }

        /// <summary>One adapter's EVA layers: path, layer, declared rank and alpha.</summary>
        private sealed record Site(string Path, LoRALinear Layer, int Rank, double Alpha);

        /// <summary>Runs EVA for every adapter that waits for it (or only <see cref="EvaOptions.Adapter"/>).</summary>
        public static void Initialize(PeftModelCore core, IEnumerable<Tensor> batches, EvaOptions options)
        {
            ArgumentNullException.ThrowIfNull(batches);
            options.Validate(core.ModelName);
            if (core.Root is not nn.Module<Tensor, Tensor> model)
                throw new InvalidOperationException($"{core.ModelName}: EVA runs the model on tensors, but the model is not a Module<Tensor, Tensor>");
            var adapters = core.AdapterLayers
                .SelectMany(l => l.Layer is LoRALinear lora ? lora.AdapterNames.Where(lora.AwaitsEva) : Enumerable.Empty<string>())
                .Distinct(StringComparer.Ordinal).ToList();
            if (options.Adapter is { } only)
            {
                if (!adapters.Contains(only))
                    throw new InvalidOperationException(
                        $"{core.ModelName}: no layer of adapter '{only}' waits for EVA's init (declare it with [LoRA(rank, Init = LoRAInit.Eva)]; a loaded or initialised adapter is done)");
                adapters = new List<string> { only };
            }
            if (adapters.Count == 0)
                throw new InvalidOperationException(
                    $"{core.ModelName}: no adapter waits for EVA's init; declare one with [LoRA(rank, Init = LoRAInit.Eva)] (a loaded or initialised adapter is done)");
            foreach (var adapter in adapters) Initialize(core, model, adapter, batches, options);
        }

        private static void Initialize(PeftModelCore core, nn.Module<Tensor, Tensor> model, string adapter, IEnumerable<Tensor> batches, EvaOptions options)
        {
            var sites = new List<Site>();
            foreach (var (path, layer) in core.AdapterLayers)
            {
                if (layer is not LoRALinear lora || !lora.AdapterNames.Contains(adapter) || !lora.AwaitsEva(adapter)) continue;
                if (lora.MergedAdapters.Contains(adapter))
                    throw new InvalidOperationException($"{core.ModelName}: layer '{path}': adapter '{adapter}' is merged; unmerge it before EVA's init");
                var declared = lora.Options(adapter);
                sites.Add(new Site(path, lora, declared.Rank, declared.Alpha));
            }
            // A layer's rank may not exceed min(in, out), which LoRA's layer requires (PEFT allows more): cap round(r·ρ) there.
            var maxComponents = sites.ToDictionary(
                s => s.Path, s => (int)Math.Min(MaxRank(s.Rank, options.Rho), Math.Min(s.Layer.InFeatures, s.Layer.OutFeatures)), StringComparer.Ordinal);
            int budget = sites.Sum(s => s.Rank);

            var disabled = core.AdapterLayers.Select(l => (l.Layer, l.Layer.AdaptersDisabled)).ToList();
            bool training = core.Root.training;
            var byPath = sites.ToDictionary(s => s.Path, StringComparer.Ordinal);
            using var cycle = new Cycle(batches, core.ModelName);
            try
            {
                foreach (var (layer, _) in disabled) layer.AdaptersDisabled = true; // the base model's inputs, as PEFT's disable_adapter()
                core.Root.eval();
                using var _ = no_grad();

                // The first batch finds the layers with identical inputs (q, k, v of one block): they share one decomposition.
                List<(string Layer, string Holder)> order;
                using (var scope = NewDisposeScope())
                {
                    var first = new Dictionary<string, Tensor>(StringComparer.Ordinal);
                    foreach (var site in sites) site.Layer.InputObserver = x => first[site.Path] = Rows(x, site);
                    model.forward(cycle.Next());
                    foreach (var site in sites) site.Layer.InputObserver = null;
                    var holders = new List<string>();
                    var holderOf = new Dictionary<string, string>(StringComparer.Ordinal);
                    foreach (var site in sites)
                    {
                        if (!first.TryGetValue(site.Path, out var x))
                            throw new InvalidOperationException($"{core.ModelName}: layer '{site.Path}' was not run by the model's forward, so EVA has no inputs for it");
                        string? same = holders.FirstOrDefault(h => first[h].shape.SequenceEqual(x.shape) && first[h].eq(x).all().item<bool>());
                        holderOf[site.Path] = same ?? site.Path;
                        if (same is null) holders.Add(site.Path);
                    }
                    foreach (var group in sites.GroupBy(s => holderOf[s.Path]).Where(g => g.Count() > 1).ToList())
                    {
                        int max = group.Max(s => maxComponents[s.Path]);
                        foreach (var s in group) maxComponents[s.Path] = max;
                    }
                    // PEFT's order: the layers holding a decomposition, then those sharing one.
                    order = holders.Select(h => (h, h)).Concat(sites.Where(s => holderOf[s.Path] != s.Path).Select(s => (s.Path, holderOf[s.Path]))).ToList();
                }
                var (pca, ranks) = Run(core, model, adapter, byPath, order, maxComponents, budget, cycle, options);
                Apply(adapter, order, byPath, pca, ranks, options);
            }
            finally
            {
                foreach (var site in sites) site.Layer.InputObserver = null;
                foreach (var (layer, was) in disabled) layer.AdaptersDisabled = was;
                core.Root.train(training);
            }
        }

        private static (Dictionary<string, IncrementalPca> Pca, Dictionary<string, int> Ranks) Run(
            PeftModelCore core, nn.Module<Tensor, Tensor> model, string adapter, Dictionary<string, Site> byPath,
            List<(string Layer, string Holder)> order, Dictionary<string, int> maxComponents, int budget, Cycle cycle, EvaOptions options)
        {
            var holders = order.Where(o => o.Layer == o.Holder).Select(o => o.Layer).ToList();
            var pca = holders.ToDictionary(h => h, h => new IncrementalPca(maxComponents[h]), StringComparer.Ordinal);
            var converged = holders.ToDictionary(h => h, h => new bool[maxComponents[h]], StringComparer.Ordinal);
            var observers = holders.ToDictionary(h => h, h => (Action<Tensor>)(x =>
            {
                using var scope = NewDisposeScope();
                var rows = Rows(x, byPath[h]);
                if (rows.shape[0] < pca[h].Components) return; // PEFT skips a batch with fewer rows than components
                var previous = pca[h].ComponentsOrNull?.clone();
                pca[h].PartialFit(rows);
                if (previous is null) return;
                var similarity = nn.functional.cosine_similarity(pca[h].ComponentsOrNull!, previous, dim: 1);
                converged[h] = similarity.data<double>().Select(c => c >= options.Tau).ToArray();
            }), StringComparer.Ordinal);
            var done = holders.ToDictionary(h => h, _ => false, StringComparer.Ordinal);
            var ranks = new Dictionary<string, int>(maxComponents, StringComparer.Ordinal);
            int batches = 1; // the first went to finding equal inputs
            while (true)
            {
                // A layer whose components needed for its current rank have converged is no longer observed; one whose
                // rank grew past them is observed again (PEFT removes and re-adds its hook).
                foreach (var h in holders)
                {
                    done[h] = converged[h].Take(ranks[h]).All(c => c);
                    byPath[h].Layer.InputObserver = done[h] ? null : observers[h];
                }
                if (batches > 1)
                    options.Progress?.Report(new EvaProgress(
                        adapter, batches, order.Count(o => done[o.Holder]), order.Count, new Dictionary<string, int>(ranks, StringComparer.Ordinal)));
                if (holders.All(h => done[h])) break;
                if (batches - 1 >= options.MaxBatches)
                    throw new InvalidOperationException(
                        $"{core.ModelName}: EVA's components for adapter '{adapter}' have not converged after {options.MaxBatches} batches (τ = {options.Tau}) in layer(s) " +
                        string.Join(", ", order.Where(o => !done[o.Holder]).Select(o => "'" + o.Layer + "'")) +
                        "; give more varied batches, lower EvaOptions.Tau or raise EvaOptions.MaxBatches");
                using (var scope = NewDisposeScope()) model.forward(cycle.Next());
                batches++;
                if (holders.Any(h => pca[h].ComponentsOrNull is null)) continue; // a layer skipped every batch so far
                ranks = DistributeRanks(order, holders.ToDictionary(h => h, h => pca[h].Ratios, StringComparer.Ordinal), maxComponents, budget);
            }
            return (pca, ranks);
        }

        /// <summary>A ← the top r' components (divided by √σ with <see cref="EvaOptions.Whiten"/>), B ← 0, α' = α·r'/r.</summary>
        private static void Apply(
            string adapter, List<(string Layer, string Holder)> order, Dictionary<string, Site> byPath,
            Dictionary<string, IncrementalPca> pca, Dictionary<string, int> ranks, EvaOptions options)
        {
            foreach (var (layer, holder) in order)
            {
                var site = byPath[layer];
                int rank = ranks[layer];
                Tensor u;
                using (var scope = NewDisposeScope())
                {
                    u = pca[holder].ComponentsOrNull!.narrow(0, 0, rank);
                    if (options.Whiten) u = u.div(pca[holder].SingularValues.narrow(0, 0, rank).sqrt().unsqueeze(1));
                    u = u.contiguous().DetachFromDisposeScope();
                }
                double alpha = site.Alpha;
                if (rank != site.Rank && options.AdjustScalingFactors) alpha *= (double)rank / site.Rank;
                using (u) site.Layer.ApplyEva(adapter, u, alpha); // outside any scope: it creates the new factors
            }
        }

        /// <summary>The layer's input as rows [tokens, in], float64, detached.</summary>
        private static Tensor Rows(Tensor x, Site site) => x.detach().reshape(-1, site.Layer.InFeatures).to(float64);

        /// <summary>The batches, started again from the first when they run out (PEFT's <c>cycle(dataloader)</c>).</summary>
        private sealed class Cycle : IDisposable
        {
            private readonly IEnumerable<Tensor> _source;
            private readonly string _model;
            private IEnumerator<Tensor> _current;

            public Cycle(IEnumerable<Tensor> source, string model)
            {
                _source = source;
                _model = model;
                _current = source.GetEnumerator();
            }

            public Tensor Next()
            {
                if (!_current.MoveNext())
                {
                    _current.Dispose();
                    _current = _source.GetEnumerator();
                    if (!_current.MoveNext())
                        throw new ArgumentException($"{_model}: EVA needs at least one batch, and the batches must enumerate again from the start (they are cycled until convergence)");
                }
                return _current.Current ?? throw new ArgumentException($"{_model}: EVA's batches hold a null tensor");
            }

            public void Dispose() => _current.Dispose();
        }
    }

    /// <summary>
    /// scikit-learn's incremental PCA as PEFT ports it (<c>utils/incremental_pca.py</c>), in float64 with a full SVD where
    /// PEFT uses float32 and <c>svd_lowrank</c>: the same values up to rounding. Each batch is mean-centred; from the
    /// second on, the SVD is of [σ·components; centred batch; mean-correction row]. Signs follow
    /// <c>svd_flip(u_based_decision=False)</c>: the largest |entry| of each component is positive.
    /// </summary>
    internal sealed class IncrementalPca
    {
        private Tensor? _mean; // [d], float64
        private Tensor? _var;
        private long _seen;

        public IncrementalPca(int components) => Components = components;

        /// <summary>How many components are kept.</summary>
        public int Components { get; }

        /// <summary>The components [k, d] (rows unit-norm), or null before the first batch.</summary>
        public Tensor? ComponentsOrNull { get; private set; }

        /// <summary>The singular values of the components.</summary>
        public Tensor SingularValues { get; private set; } = empty(0);

        /// <summary>Explained-variance ratios: σᵢ² / (n · Σ per-feature variance).</summary>
        public double[] Ratios { get; private set; } = Array.Empty<double>();

        /// <summary>One step of the fit on rows [n, d] (float64).</summary>
        public void PartialFit(Tensor x)
        {
            using var scope = NewDisposeScope();
            long n = x.shape[0];
            var (mean, variance, total) = MeanAndVariance(x);
            Tensor stacked;
            if (ComponentsOrNull is null)
                stacked = x.sub(mean);
            else
            {
                var batchMean = x.mean(new long[] { 0 });
                var correction = _mean!.sub(batchMean).mul(Math.Sqrt((double)_seen / total * n));
                stacked = cat(new[] { SingularValues.unsqueeze(1).mul(ComponentsOrNull), x.sub(batchMean), correction.unsqueeze(0) }, 0);
            }
            var (_, s, vh) = linalg.svd(stacked, fullMatrices: false);
            var largest = vh.abs().argmax(1, keepdim: true);
            vh = vh.mul(vh.gather(1, largest).sign()); // svd_flip, u_based_decision=False
            double totalVariance = variance.sum().item<double>() * total;
            int k = (int)Math.Min(Components, s.shape[0]);
            var ratios = totalVariance > 0 ? s.square().div(totalVariance) : zeros_like(s);

            ComponentsOrNull?.Dispose();
            SingularValues.Dispose();
            _mean?.Dispose();
            _var?.Dispose();
            ComponentsOrNull = vh.narrow(0, 0, k).contiguous().DetachFromDisposeScope();
            SingularValues = s.narrow(0, 0, k).contiguous().DetachFromDisposeScope();
            Ratios = ratios.narrow(0, 0, k).data<double>().ToArray();
            _mean = mean.DetachFromDisposeScope();
            _var = variance.DetachFromDisposeScope();
            _seen = total;
        }

        /// <summary>scikit-learn's <c>_incremental_mean_and_var</c>: the running mean and (biased) variance per feature.</summary>
        private (Tensor Mean, Tensor Variance, long Total) MeanAndVariance(Tensor x)
        {
            long n = x.shape[0];
            long total = _seen + n;
            var newSum = x.sum(new long[] { 0 });
            var batchMean = newSum.div(n);
            var centred = x.sub(batchMean);
            var newUnnormalised = centred.square().sum(new long[] { 0 }).sub(centred.sum(new long[] { 0 }).square().div(n));
            if (_seen == 0) return (batchMean, newUnnormalised.div(total), total);
            var lastSum = _mean!.mul(_seen);
            var mean = lastSum.add(newSum).div(total);
            double lastOverNew = (double)_seen / n;
            var unnormalised = _var!.mul(_seen).add(newUnnormalised)
                .add(lastSum.div(lastOverNew).sub(newSum).square().mul(lastOverNew / total));
            return (mean, unnormalised.div(total), total);
        }
    }
}
