using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Merging
{
    /// <summary>
    /// LoRA-LEGO (Zhao et al., ICLR 2025) on one layer. A LoRA delta B·A = Σⱼ bⱼ·aⱼᵀ is a sum of rank-1 "minimal semantic
    /// units" (aⱼ, bⱼ), any set of which is again a LoRA. The N = Σ rᵢ units of the sources (scaling and weight folded
    /// into b) are sign-canonicalised, clustered by k-means on [a; b], and the k centroids, dual-reweighted, are the new
    /// LoRA of rank k.
    /// </summary>
    /// <remarks>
    /// <para>Sign: (a, b) and (−a, −b) are one unit; each is flipped so that the entry of a with the largest magnitude
    /// (the first such) is positive.</para>
    /// <para>k-means: k-means++ seeding from <c>generator</c> (first centre uniform, then each with probability ∝ squared
    /// distance to the nearest centre), then Lloyd iterations until no assignment changes (at most
    /// <see cref="MaxIterations"/>); a cluster left empty takes the point farthest from its centre.</para>
    /// <para>Parameter reweighting (norm decay: a mean is shorter than its members): each centroid c is rescaled to its
    /// members' mean norm, ĉ = c·mean‖xᵢ‖ / ‖c‖. Output reweighting (variance expansion: with independent units a LoRA's
    /// output variance grows with the number of units it sums): the merged B is multiplied by γ = √(r̄ / k), r̄ the
    /// sources' mean rank, so k units carry the output scale of one r̄-unit source.</para>
    /// </remarks>
    public static class LoraLego
    {
        /// <summary>The cap on Lloyd iterations.</summary>
        public const int MaxIterations = 100;

        /// <summary>The units' rows [N, in + out], [a; b] per unit, sign-canonicalised.</summary>
        /// <param name="a">The sources' A factors [rᵢ, in].</param>
        /// <param name="b">The sources' B factors [out, rᵢ], scaling and weight folded in.</param>
        public static Tensor Units(IReadOnlyList<Tensor> a, IReadOnlyList<Tensor> b)
        {
            if (a.Count == 0 || a.Count != b.Count) throw new ArgumentException($"{a.Count} A factors for {b.Count} B factors", nameof(a));
            using var scope = NewDisposeScope();
            var units = cat(a.Select((ai, i) => cat(new[] { ai.to(float64), b[i].to(float64).t() }, 1)).ToArray(), 0);
            long inFeatures = a[0].shape[1];
            var head = units.narrow(1, 0, inFeatures);
            var pivot = head.abs().argmax(1, keepdim: true);
            var sign = where(head.gather(1, pivot).lt(0), full(units.shape[0], 1, -1.0, dtype: float64, device: units.device), ones(units.shape[0], 1, dtype: float64, device: units.device));
            return units.mul(sign).MoveToOuterDisposeScope();
        }

        /// <summary>k-means++ then Lloyd: the cluster of each row of <paramref name="points"/> (deterministic given the generator).</summary>
        public static int[] Cluster(Tensor points, int k, Generator generator)
        {
            double[][] x = Rows(points);
            int n = x.Length;
            if (k < 1 || k > n) throw new ArgumentOutOfRangeException(nameof(k), k, $"the number of clusters must lie in [1, {n}]");
            var uniform = rand(new long[] { k }, dtype: float64, generator: generator).data<double>().ToArray();
            var centres = new List<double[]> { (double[])x[Math.Min(n - 1, (int)(uniform[0] * n))].Clone() };
            var nearest = x.Select(p => Distance(p, centres[0])).ToArray();
            for (int c = 1; c < k; c++)
            {
                double total = nearest.Sum();
                int pick = 0;
                if (total > 0)
                {
                    double target = uniform[c] * total, running = 0;
                    for (pick = 0; pick < n - 1; pick++)
                    {
                        running += nearest[pick];
                        if (running > target && nearest[pick] > 0) break;
                    }
                }
                else
                {
                    pick = c; // every point sits on a centre: take the next unused index
                }
                centres.Add((double[])x[pick].Clone());
                for (int i = 0; i < n; i++) nearest[i] = Math.Min(nearest[i], Distance(x[i], centres[c]));
            }

            var assignment = Enumerable.Repeat(-1, n).ToArray();
            for (int iteration = 0; iteration < MaxIterations; iteration++)
            {
                bool changed = false;
                for (int i = 0; i < n; i++)
                {
                    int best = 0;
                    double bestDistance = double.PositiveInfinity;
                    for (int c = 0; c < k; c++)
                    {
                        double d = Distance(x[i], centres[c]);
                        if (d < bestDistance) (best, bestDistance) = (c, d);
                    }
                    if (assignment[i] != best) (assignment[i], changed) = (best, true);
                }
                for (int c = 0; c < k; c++)
                {
                    if (assignment.Contains(c)) continue;
                    int far = Enumerable.Range(0, n).OrderByDescending(i => Distance(x[i], centres[assignment[i]])).First();
                    assignment[far] = c;
                    changed = true;
                }
                for (int c = 0; c < k; c++) centres[c] = Mean(x, assignment, c);
                if (!changed) break;
            }
            return assignment;
        }

        /// <summary>
        /// The merged LoRA (A [k, in], B [out, k], scaling 1): centroids of the clusters of <see cref="Units"/>, each
        /// rescaled to its members' mean norm, B multiplied by √(r̄ / k).
        /// </summary>
        public static (Tensor A, Tensor B) Merge(IReadOnlyList<Tensor> a, IReadOnlyList<Tensor> b, int k, Generator generator)
        {
            using var scope = NewDisposeScope();
            var units = Units(a, b);
            int n = (int)units.shape[0];
            if (k > n) throw new ArgumentOutOfRangeException(nameof(k), k, $"LoRA-LEGO cannot make {k} clusters of the {n} rank-1 units the sources hold");
            int[] assignment = Cluster(units, k, generator);
            var index = tensor(assignment.Select(c => (long)c).ToArray(), device: units.device);
            var norms = units.norm(1, false, 2);
            var centroids = new Tensor[k];
            for (int c = 0; c < k; c++)
            {
                var members = index.eq(c);
                var centroid = units.index(members).mean(new long[] { 0 });
                double norm = centroid.norm().item<double>();
                double memberNorm = norms.index(members).mean().item<double>();
                centroids[c] = norm > 0 ? centroid.mul(memberNorm / norm) : centroid;
            }
            var merged = stack(centroids, 0);
            long inFeatures = a[0].shape[1];
            double meanRank = a.Average(ai => (double)ai.shape[0]);
            var outA = merged.narrow(1, 0, inFeatures).contiguous();
            var outB = merged.narrow(1, inFeatures, merged.shape[1] - inFeatures).t().mul(Math.Sqrt(meanRank / k)).contiguous();
            return (outA.MoveToOuterDisposeScope(), outB.MoveToOuterDisposeScope());
        }

        private static double[][] Rows(Tensor points)
        {
            var cpu = points.detach().to(float64).cpu().contiguous();
            long columns = cpu.shape[1];
            double[] flat = cpu.data<double>().ToArray();
            return Enumerable.Range(0, (int)cpu.shape[0]).Select(i => flat.AsSpan((int)(i * columns), (int)columns).ToArray()).ToArray();
        }

        private static double Distance(double[] p, double[] q)
        {
            double sum = 0;
            for (int i = 0; i < p.Length; i++)
            {
                double d = p[i] - q[i];
                sum += d * d;
            }
            return sum;
        }

        private static double[] Mean(double[][] x, int[] assignment, int cluster)
        {
            var mean = new double[x[0].Length];
            int count = 0;
            for (int i = 0; i < x.Length; i++)
            {
                if (assignment[i] != cluster) continue;
                count++;
                for (int j = 0; j < mean.Length; j++) mean[j] += x[i][j];
            }
            for (int j = 0; j < mean.Length; j++) mean[j] /= count;
            return mean;
        }
    }
}
