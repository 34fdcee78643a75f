using ResearchFramework.Host.Infrastructure.Runs;
using ScottPlot;

namespace ResearchFramework.Host.Infrastructure.Plotting;

/// <summary>PNG plots from metric rows (ScottPlot 5).</summary>
public static class MetricPlots
{
    public const int DefaultWidth = 800;
    public const int DefaultHeight = 500;

    /// <summary>Loss against iteration, one line per phase, the switch iteration marked by a dashed vertical line.
    /// Uses rows of <paramref name="kind"/> carrying <paramref name="metric"/>.</summary>
    public static void LossCurves(IEnumerable<MetricRow> rows, string path, long? switchIteration = null,
        string kind = "train", string metric = "loss", bool logScale = true, long? predictedIteration = null)
    {
        var plot = new Plot();
        var selected = rows.Where(r => r.Kind == kind && r.Get(metric) is double v && double.IsFinite(v) && (!logScale || v > 0)).ToList();
        foreach (var group in selected.GroupBy(r => r.Phase ?? "all").OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var xs = group.Select(r => (double)r.Iteration).ToArray();
            var ys = group.Select(r => Transform(r.Get(metric)!.Value, logScale)).ToArray();
            var line = plot.Add.Scatter(xs, ys);
            line.MarkerSize = 0;
            line.LineWidth = 2;
            line.LegendText = group.Key == "all" ? metric : $"phase {group.Key}";
        }
        MarkSwitch(plot, switchIteration);
        MarkPrediction(plot, switchIteration, predictedIteration);
        Finish(plot, $"{metric} per phase", "iteration", logScale ? $"log10 {metric}" : metric, path);
    }

    /// <summary>Loss against iteration for several runs (one line each, e.g. every seed of base and two-phase runs),
    /// the switch iteration marked.</summary>
    public static void LossCurvesOfRuns(IEnumerable<(string Label, IReadOnlyList<MetricRow> Rows)> runs, string path,
        long? switchIteration = null, string kind = "train", string metric = "loss", bool logScale = true, long? predictedIteration = null)
    {
        var plot = new Plot();
        foreach (var (label, rows) in runs)
        {
            var selected = rows.Where(r => r.Kind == kind && r.Get(metric) is double v && double.IsFinite(v) && (!logScale || v > 0))
                .OrderBy(r => r.Iteration).ToList();
            if (selected.Count == 0) continue;
            var line = plot.Add.Scatter(selected.Select(r => (double)r.Iteration).ToArray(),
                selected.Select(r => Transform(r.Get(metric)!.Value, logScale)).ToArray());
            line.MarkerSize = 0;
            line.LineWidth = 2;
            line.LegendText = label;
        }
        MarkSwitch(plot, switchIteration);
        MarkPrediction(plot, switchIteration, predictedIteration);
        Finish(plot, $"{metric}, all runs", "iteration", logScale ? $"log10 {metric}" : metric, path);
    }

    /// <summary>σ_min (or any metric) against iteration on a log10 scale, switch iteration marked.</summary>
    public static void SigmaMinOverTime(IEnumerable<MetricRow> rows, string path, long? switchIteration = null,
        string metric = "sigmaMin")
    {
        var plot = new Plot();
        var selected = rows.Where(r => r.Get(metric) is double v && v > 0 && double.IsFinite(v)).ToList();
        var line = plot.Add.Scatter(selected.Select(r => (double)r.Iteration).ToArray(), selected.Select(r => Math.Log10(r.Get(metric)!.Value)).ToArray());
        line.LegendText = "σ_min";
        line.MarkerSize = 4;
        MarkSwitch(plot, switchIteration);
        Finish(plot, "smallest singular value over training", "iteration", "log10 σ_min", path);
    }

    /// <summary>Bar chart with symmetric error bars (e.g. mean ± std over seeds).</summary>
    public static void BarsWithErrors(IReadOnlyList<string> labels, IReadOnlyList<double> means, IReadOnlyList<double> errors,
        string path, string title, string yLabel)
    {
        if (labels.Count != means.Count || labels.Count != errors.Count)
            throw new ArgumentException($"{labels.Count} labels, {means.Count} means and {errors.Count} errors must agree");
        var plot = new Plot();
        var bars = labels.Select((_, i) => new Bar { Position = i, Value = means[i], Error = errors[i] }).ToArray();
        plot.Add.Bars(bars);
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, labels.Count).Select(i => (double)i).ToArray(), labels.ToArray());
        plot.Axes.Margins(bottom: 0);
        Finish(plot, title, "", yLabel, path, legend: false);
    }

    private static double Transform(double value, bool log) => log ? Math.Log10(value) : value;

    /// <summary>Theorem P's predicted τ + k(ε), a dotted vertical line (nothing when no prediction was made).</summary>
    private static void MarkPrediction(Plot plot, long? switchIteration, long? predictedIteration)
    {
        if (predictedIteration is not long p || switchIteration is not long s) return;
        var line = plot.Add.VerticalLine(p);
        line.LinePattern = LinePattern.Dotted;
        line.Color = Colors.DarkGreen;
        line.LegendText = $"predicted τ + k(ε) = {s} + {p - s}";
    }

    private static void MarkSwitch(Plot plot, long? switchIteration)
    {
        if (switchIteration is not long s) return;
        var line = plot.Add.VerticalLine(s);
        line.LinePattern = LinePattern.Dashed;
        line.Color = Colors.Gray;
        line.LegendText = $"switch @ {s}";
    }

    private static void Finish(Plot plot, string title, string xLabel, string yLabel, string path, bool legend = true)
    {
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        if (legend) plot.ShowLegend(Alignment.UpperRight); // loss curves fall: the upper right is free
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        plot.SavePng(path, DefaultWidth, DefaultHeight);
    }
}
