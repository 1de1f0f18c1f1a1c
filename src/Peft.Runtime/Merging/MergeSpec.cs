using System;
using System.Collections.Generic;
using System.Linq;

namespace Peft.Runtime.Merging
{
    /// <summary>
    /// One combination of named adapters into a new one, as <c>[MergeWith]</c> declares it (the generated
    /// <c>Merge{Name}()</c> builds one of these and hands it to <see cref="AdapterMerger"/>).
    /// </summary>
    /// <param name="Name">The new adapter's name.</param>
    /// <param name="Adapters">The adapters to combine, by name, in order.</param>
    public sealed record MergeSpec(string Name, IReadOnlyList<string> Adapters)
    {
        /// <summary>How to combine them.</summary>
        public MergeMethod Method { get; init; } = MergeMethod.Linear;

        /// <summary>One weight per adapter; null means 1 each. Not used by <see cref="MergeMethod.ModelStock"/>.</summary>
        public IReadOnlyList<double>? Weights { get; init; }

        /// <summary>For TIES, DARE and magnitude pruning: the fraction of entries kept, in (0, 1].</summary>
        public double Density { get; init; } = 1;

        /// <summary>The rank of a result re-factorised by SVD; 0 means the sum of the sources' ranks, capped at min(out, in).</summary>
        public int Rank { get; init; }

        /// <summary>For DARE and LoRA-LEGO: the seed of the drop masks / of k-means++ (combined with each layer's position, so layers differ).</summary>
        public int Seed { get; init; }

        /// <summary>Where the deltas are combined: on the full ΔWᵢ, or in the Core Space of the sources' stacked LoRA factors.</summary>
        public MergeSpace Space { get; init; } = MergeSpace.Full;

        /// <summary>For <see cref="MergeMethod.IsoCts"/>: the fraction of singular directions given to the common subspace, in (0, 1].</summary>
        public double CommonFraction { get; init; } = 0.8;

        /// <summary>The weight of each adapter, 1 where <see cref="Weights"/> is null.</summary>
        public IReadOnlyList<double> EffectiveWeights => Weights ?? Adapters.Select(_ => 1.0).ToArray();

        /// <summary>Throws <see cref="ArgumentException"/>, naming <paramref name="owner"/>, unless the spec is well-formed.</summary>
        public void Validate(string owner)
        {
            string Prefix() => $"{owner}: merge into '{Name}'";
            if (string.IsNullOrEmpty(Name))
                throw new ArgumentException($"{owner}: a merge needs a Name for the adapter it creates");
            if (Name == PeftModelCore.BaseAdapterName)
                throw new ArgumentException($"{Prefix()}: '{PeftModelCore.BaseAdapterName}' names the base model in mixed batches and cannot name an adapter");
            if (Adapters is null || Adapters.Count == 0)
                throw new ArgumentException($"{Prefix()}: names no adapter to combine");
            if (Adapters.Any(string.IsNullOrEmpty))
                throw new ArgumentException($"{Prefix()}: an adapter name is empty");
            if (Adapters.Distinct(StringComparer.Ordinal).Count() != Adapters.Count)
                throw new ArgumentException($"{Prefix()}: names an adapter twice ({string.Join(", ", Adapters)})");
            if (Adapters.Contains(Name))
                throw new ArgumentException($"{Prefix()}: the new adapter cannot be one of its sources");
            if (!Enum.IsDefined(Method))
                throw new ArgumentException($"{Prefix()}: method {(int)Method} is not one of {string.Join(", ", Enum.GetNames<MergeMethod>())}");
            if (Weights is not null)
            {
                if (Weights.Count != Adapters.Count)
                    throw new ArgumentException($"{Prefix()}: {Weights.Count} weights for {Adapters.Count} adapters");
                if (Weights.Any(w => !double.IsFinite(w)))
                    throw new ArgumentException($"{Prefix()}: weights must be finite ({string.Join(", ", Weights)})");
            }
            if (!(Density > 0 && Density <= 1))
                throw new ArgumentException($"{Prefix()}: density {Density} is outside (0, 1]");
            if (Rank < 0)
                throw new ArgumentException($"{Prefix()}: rank {Rank} is negative (0 means the sum of the sources' ranks)");
            if (!Enum.IsDefined(Space))
                throw new ArgumentException($"{Prefix()}: space {(int)Space} is not one of {string.Join(", ", Enum.GetNames<MergeSpace>())}");
            if (Space == MergeSpace.Core && MergeMessages.NotInCoreSpace(Method.ToString()) is { } reason)
                throw new ArgumentException($"{Prefix()}: method {Method} cannot run in core space ({reason}); use Space = MergeSpace.Full");
            if (Method == MergeMethod.LoraLego && Rank == 0)
                throw new ArgumentException($"{Prefix()}: method LoraLego needs Rank, the number of clusters (the new adapter's rank)");
            if (!(CommonFraction > 0 && CommonFraction <= 1))
                throw new ArgumentException($"{Prefix()}: common fraction {CommonFraction} is outside (0, 1]");
        }

        /// <summary>Whether <paramref name="method"/> can combine Core Space matrices: every method but WIDEN (column norms of the base weight) and LoRA-LEGO (rank-1 units of the sources).</summary>
        public static bool RunsInCoreSpace(MergeMethod method) => MergeMessages.NotInCoreSpace(method.ToString()) is null;
    }
}
