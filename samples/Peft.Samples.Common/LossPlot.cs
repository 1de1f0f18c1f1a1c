using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using ScottPlot;

namespace Peft.Samples;

/// <summary>Loss curves as PNG files (ScottPlot, drawn by SkiaSharp; no display needed).</summary>
public static class LossPlot
{
    private static readonly Color[] Palette = { Colors.C0, Colors.C1, Colors.C2, Colors.C3, Colors.C4 };

    /// <summary>
    /// Writes one curve per run to <paramref name="path"/>: each step's loss faint, a moving average over it bold.
    /// </summary>
    public static string Write(string path, string title, IReadOnlyList<TrainingRun> runs, int width = 900, int height = 500, string yLabel = "cross-entropy loss (nats per character)")
    {
        var plot = new Plot();
        for (int i = 0; i < runs.Count; i++)
        {
            var run = runs[i];
            var color = Palette[i % Palette.Length];
            double[] steps = Enumerable.Range(1, run.Losses.Count).Select(s => (double)s).ToArray();
            var raw = plot.Add.ScatterLine(steps, run.Losses.ToArray());
            raw.Color = color.WithAlpha(0.25);
            raw.LineWidth = 1;
            var smooth = plot.Add.ScatterLine(steps, MovingAverage(run.Losses, 10));
            smooth.Color = color;
            smooth.LineWidth = 2.5f;
            smooth.LegendText = run.Title;
        }
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel(yLabel);
        plot.ShowLegend(Alignment.UpperRight);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        plot.SavePng(path, width, height);
        return path;
    }

    private static double[] MovingAverage(IReadOnlyList<double> values, int window)
    {
        var result = new double[values.Count];
        double sum = 0;
        for (int i = 0; i < values.Count; i++)
        {
            sum += values[i];
            if (i >= window) sum -= values[i - window];
            result[i] = sum / Math.Min(i + 1, window);
        }
        return result;
    }
}
