using System;

namespace Peft
{
    /// <summary>
    /// Declares a new named adapter made from existing ones; the generator emits <c>Merge{Name}()</c> (PascalCase:
    /// <c>Name = "math_code"</c> gives <c>MergeMathCode()</c>), and the analyzers check the names, weights, density
    /// and method at compile time. On a class it combines the adapters on every site that has them; on a field, that
    /// field's only.
    /// </summary>
    [AttributeUsage(AttributeTargets.Class | AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
    public sealed class MergeWithAttribute : Attribute
    {
        /// <summary>Declares a combination of the named adapters.</summary>
        /// <param name="adapters">The adapters to combine, by name (at least one).</param>
        public MergeWithAttribute(params string[] adapters) => Adapters = adapters ?? Array.Empty<string>();

        /// <summary>The adapters to combine.</summary>
        public string[] Adapters { get; }

        /// <summary>How to combine them. Default <see cref="MergeMethod.Linear"/>.</summary>
        public MergeMethod Method { get; set; } = MergeMethod.Linear;

        /// <summary>One weight per adapter, finite; default 1 each. <see cref="MergeMethod.ModelStock"/> does not use them.</summary>
        public double[]? Weights { get; set; }

        /// <summary>For TIES, DARE and magnitude pruning: the fraction of entries kept, in (0, 1]. Default 1.</summary>
        public double Density { get; set; } = 1;

        /// <summary>
        /// For SVD-based results: the rank of the new adapter; 0 means the sum of the source ranks, capped at min(in, out).
        /// For <see cref="MergeMethod.LoraLego"/> the number of clusters, which is the new adapter's rank (required there).
        /// </summary>
        public int Rank { get; set; }

        /// <summary>The new adapter's name (required; it names the generated method).</summary>
        public string Name { get; set; } = "merged";

        /// <summary>For DARE: the seed of the drop mask; for <see cref="MergeMethod.LoraLego"/>: the seed of k-means++; so merges are reproducible.</summary>
        public int Seed { get; set; }

        /// <summary>Where the deltas are combined: <see cref="MergeSpace.Full"/> (default) or the sources' <see cref="MergeSpace.Core"/> space.</summary>
        public MergeSpace Space { get; set; } = MergeSpace.Full;

        /// <summary>For <see cref="MergeMethod.IsoCts"/>: the fraction of the singular directions given to the common subspace, in (0, 1]. Default 0.8 (the paper's).</summary>
        public double CommonFraction { get; set; } = 0.8;
    }
}
