using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Tests.Merging;

/// <summary>The merge formulas written out entry by entry, on plain arrays, as references for the runtime's tensor code.</summary>
internal static class NaiveMerge
{
    public static double[] Values(Tensor t) => t.detach().to(float64).contiguous().data<double>().ToArray();

    public static Tensor ToTensor(double[] values, long[] shape) => tensor(values, shape);

    /// <summary>Keep the ⌊density·n⌋ entries of largest magnitude.</summary>
    public static double[] Prune(double[] x, double density)
    {
        long k = (long)(density * x.Length);
        var keep = Enumerable.Range(0, x.Length).OrderByDescending(i => Math.Abs(x[i])).Take((int)k).ToHashSet();
        return x.Select((v, i) => keep.Contains(i) ? v : 0).ToArray();
    }

    public static double[] WeightedSum(IReadOnlyList<double[]> xs, IReadOnlyList<double> w)
    {
        var r = new double[xs[0].Length];
        for (int i = 0; i < xs.Count; i++)
            for (int j = 0; j < r.Length; j++)
                r[j] += w[i] * xs[i][j];
        return r;
    }

    /// <summary>
    /// TIES on already trimmed tensors: per entry the sign of the unweighted sum (≥ 0 → +), then the mean of the
    /// weighted entries whose own sign agrees, divided by how many agree (0 when none does).
    /// </summary>
    public static double[] ElectAndMean(IReadOnlyList<double[]> trimmed, IReadOnlyList<double> w)
    {
        var r = new double[trimmed[0].Length];
        for (int j = 0; j < r.Length; j++)
        {
            double sum = 0;
            foreach (var t in trimmed) sum += t[j];
            int sign = sum >= 0 ? 1 : -1;
            double num = 0;
            int count = 0;
            for (int i = 0; i < trimmed.Count; i++)
                if (Math.Sign(trimmed[i][j]) == sign)
                {
                    num += w[i] * trimmed[i][j];
                    count++;
                }
            r[j] = count == 0 ? 0 : num / count;
        }
        return r;
    }

    public static double[] Ties(IReadOnlyList<double[]> xs, IReadOnlyList<double> w, double density) =>
        ElectAndMean(xs.Select(x => Prune(x, density)).ToList(), w);

    /// <summary>Model Stock: t = N·c / (1 + (N − 1)·c), c the mean pairwise cosine clamped to [0, 1]; result t·mean.</summary>
    public static double[] ModelStock(IReadOnlyList<double[]> xs)
    {
        int n = xs.Count;
        double t = 1;
        if (n > 1)
        {
            double sum = 0;
            int pairs = 0;
            for (int a = 0; a < n; a++)
                for (int b = a + 1; b < n; b++)
                {
                    double dot = 0, na = 0, nb = 0;
                    for (int j = 0; j < xs[a].Length; j++)
                    {
                        dot += xs[a][j] * xs[b][j];
                        na += xs[a][j] * xs[a][j];
                        nb += xs[b][j] * xs[b][j];
                    }
                    sum += na > 0 && nb > 0 ? dot / Math.Sqrt(na * nb) : 0;
                    pairs++;
                }
            double c = Math.Clamp(sum / pairs, 0, 1);
            t = n * c / (1 + (n - 1) * c);
        }
        var mean = WeightedSum(xs, xs.Select(_ => 1.0 / n).ToArray());
        return mean.Select(v => t * v).ToArray();
    }
}

/// <summary>WIDEN's column weights written out column by column on arrays (the reference for <c>Widen.ColumnWeights</c>).</summary>
internal static class NaiveWiden
{
    /// <summary>c[t][j] for W₀ [out, in] and the deltas, with ratio 1 and calibration 1 (the paper's defaults).</summary>
    public static double[][] ColumnWeights(double[,] w0, IReadOnlyList<double[,]> deltas)
    {
        int rows = w0.GetLength(0), cols = w0.GetLength(1), t = deltas.Count;
        var mag = new double[t][];
        var dir = new double[t][];
        for (int k = 0; k < t; k++)
        {
            mag[k] = new double[cols];
            dir[k] = new double[cols];
            for (int j = 0; j < cols; j++)
            {
                double n0 = 0, n1 = 0, dot = 0;
                for (int i = 0; i < rows; i++)
                {
                    double a = w0[i, j], b = w0[i, j] + deltas[k][i, j];
                    n0 += a * a;
                    n1 += b * b;
                    dot += a * b;
                }
                n0 = Math.Sqrt(n0);
                n1 = Math.Sqrt(n1);
                mag[k][j] = Math.Abs(n1 - n0);
                dir[k][j] = 1 - (n0 > 0 && n1 > 0 ? dot / (n0 * n1) : 0);
            }
            mag[k] = RankSignificance(mag[k]);
            dir[k] = RankSignificance(dir[k]);
        }
        var magScore = Score(mag);
        var dirScore = Score(dir);
        return Enumerable.Range(0, t).Select(k => Enumerable.Range(0, cols).Select(j => 0.5 * (magScore[k][j] + dirScore[k][j])).ToArray()).ToArray();
    }

    private static double[] RankSignificance(double[] v)
    {
        // position in an ascending stable sort: the count of smaller values plus the equal ones before it
        var r = new double[v.Length];
        for (int j = 0; j < v.Length; j++)
        {
            int position = 0;
            for (int i = 0; i < v.Length; i++)
                if (v[i] < v[j] || (v[i] == v[j] && i < j)) position++;
            r[j] = (double)position / v.Length;
        }
        return r;
    }

    private static double[][] Score(double[][] sig)
    {
        int t = sig.Length, cols = sig[0].Length;
        var score = new double[t][];
        for (int k = 0; k < t; k++) score[k] = new double[cols];
        for (int j = 0; j < cols; j++)
        {
            double max = Enumerable.Range(0, t).Max(k => sig[k][j]);
            double z = Enumerable.Range(0, t).Sum(k => Math.Exp(sig[k][j] - max));
            for (int k = 0; k < t; k++) score[k][j] = Math.Exp(sig[k][j] - max) / z;
        }
        for (int k = 0; k < t; k++)
        {
            // sig = position / n with positions a permutation of 0 … n − 1: compare sig > mean(sig) exactly, in integers,
            // as position·n > Σ positions.
            long sum = sig[k].Sum(x => (long)Math.Round(x * cols));
            for (int j = 0; j < cols; j++)
                if ((long)Math.Round(sig[k][j] * cols) * cols > sum) score[k][j] = 1.0;
        }
        return score;
    }
}
