using System;
using System.Collections.Generic;
using System.Linq;
using static TorchSharp.torch;

namespace Peft.Runtime
{
    /// <summary>
    /// The model-level side of adaptive-rank methods (AdaLoRA, IncreLoRA): the per-step allocation and the regulariser
    /// their loss carries, each over the layers of one adapter at a time, for the adapters that are active.
    /// </summary>
    public static class RankAllocation
    {
        private static IEnumerable<(IRankAllocator Allocator, string Adapter, List<(string Path, IAdapterLayer Layer)> Sites)> Groups(IReadOnlyList<(string Path, IAdapterLayer Layer)> layers)
        {
            var allocating = layers.Where(l => l.Layer is IRankAllocatingLayer).ToList();
            foreach (var allocator in allocating.Select(l => ((IRankAllocatingLayer)l.Layer).Allocator).Distinct())
            {
                var sites = allocating.Where(l => ((IRankAllocatingLayer)l.Layer).Allocator == allocator).ToList();
                // The adapters being trained: active (and not disabled) on some layer.
                var active = sites.Where(s => !s.Layer.AdaptersDisabled).SelectMany(s => s.Layer.ActiveAdapters).Distinct(StringComparer.Ordinal).ToList();
                foreach (var adapter in active)
                    yield return (allocator, adapter, sites.Where(s => s.Layer.AdapterNames.Contains(adapter)).ToList());
            }
        }

        /// <summary>The layers of type <typeparamref name="TLayer"/> among <paramref name="sites"/> that hold <paramref name="adapter"/> (for the allocators).</summary>
        internal static List<TLayer> LayersOf<TLayer>(IReadOnlyList<(string Path, IAdapterLayer Layer)> sites, string adapter) where TLayer : IAdapterLayer =>
            sites.Select(s => s.Layer).OfType<TLayer>().Where(l => l.AdapterNames.Contains(adapter)).ToList();

        /// <summary>
        /// Runs each adaptive-rank adapter's per-step update (AdaLoRA's importance and masking, IncreLoRA's growth) for
        /// the 0-based <paramref name="step"/>, after <c>optimizer.step()</c> and before the gradients are zeroed. Only the
        /// active adapters are updated. Does nothing on a model without such adapters.
        /// </summary>
        public static void UpdateAndAllocate(IReadOnlyList<(string Path, IAdapterLayer Layer)> layers, int step)
        {
            if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "the step index must be at least 0");
            foreach (var (allocator, adapter, sites) in Groups(layers).ToList())
                allocator.UpdateAndAllocate(sites, adapter, step);
        }

        /// <summary>
        /// The regularisers of the active adaptive-rank adapters (AdaLoRA's orthogonal regulariser, weighted by
        /// <c>OrthRegWeight</c>), summed, to add to the loss; null when the model has none. <c>AdapterTrainer</c> adds it
        /// by itself; a hand-written loop adds it to its loss: <c>loss = loss + model.OrthogonalRegularization()</c>.
        /// </summary>
        public static Tensor? OrthogonalRegularization(this IPeftModel model) => Regularization(model.AdapterLayers);

        /// <summary>See <see cref="OrthogonalRegularization(IPeftModel)"/>, over the given layers.</summary>
        public static Tensor? Regularization(IReadOnlyList<(string Path, IAdapterLayer Layer)> layers)
        {
            Tensor? sum = null;
            foreach (var (allocator, adapter, sites) in Groups(layers))
                if (allocator.Regularization(sites, adapter) is { } term)
                    sum = sum is null ? term : sum.add(term);
            return sum;
        }
    }
}
