using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.Host.Infrastructure.Plotting;
using ResearchFramework.Host.Infrastructure.Runs;

namespace ResearchFramework.Host.Training;

/// <summary>Outcome of a compare run: every sub-run's summary (base and two-phase per seed) and the table.</summary>
public sealed record CompareOutcome(bool Completed, IReadOnlyList<RunSummary> Runs, string Table, string Directory);

/// <summary><c>rf compare</c>: base vs two-phase with the same hyper-parameters and total iterations T over N seeds
/// (seed = Training:Seed + k). Sub-runs live in <c>&lt;compare&gt;/runs/{base|two-phase}-seed{s}/</c>; a resumed compare keeps
/// finished sub-runs and resumes the interrupted one from its latest checkpoint.</summary>
public static class CompareRun
{
    public static readonly string[] Modes = ["base", "two-phase"];

    public static CompareOutcome Execute(RfOptions options, PreparedTensors data, RunDirectory compare, ILogger logger, int seeds,
        bool resume, CancellationToken cancellationToken, bool showProgress = true)
    {
        if (!options.Recipe.Enabled)
            logger.LogInformation("compare: Recipe:Enabled is false in the configuration; the two-phase runs enable it (same hyper-parameters)");
        var summaries = new List<RunSummary>();
        bool completed = true;
        for (int k = 0; k < seeds && completed; k++)
        {
            int seed = options.Training.Seed + k;
            foreach (var mode in Modes)
            {
                var path = Path.Combine(compare.Path, "runs", $"{mode}-seed{seed}");
                var existing = RunSummary.TryLoad(path);
                if (resume && existing is { Completed: true })
                {
                    logger.LogInformation("compare: {Mode} seed {Seed} already finished ({Path})", mode, seed, path);
                    summaries.Add(existing);
                    continue;
                }
                var run = RunDirectory.OpenOrCreate(path, options);
                using var metrics = new MetricsWriter(run.MetricsPath, TryTensorBoard(run));
                var summary = TrainingRun.Execute(options, data, run, metrics, logger, recipeEnabled: mode == "two-phase", seed,
                    resume && Directory.Exists(run.CheckpointsPath), cancellationToken, $"{mode} seed {seed}", showProgress);
                summaries.Add(summary);
                if (!summary.Completed) { completed = false; break; }
            }
        }
        var table = completed ? WriteReport(options, compare, summaries, logger) : "";
        return new CompareOutcome(completed, summaries, table, compare.Path);
    }

    private static TensorBoardScalars? TryTensorBoard(RunDirectory run)
    {
        try { return new TensorBoardScalars(run.TensorBoardPath); }
        catch (Exception) { return null; }
    }

    private static (double Mean, double Std) MeanStd(IEnumerable<double> values)
    {
        var v = values.ToArray();
        if (v.Length == 0) return (double.NaN, double.NaN);
        double mean = v.Average();
        double std = v.Length > 1 ? Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1)) : 0.0;
        return (mean, std);
    }

    private static string Pm((double Mean, double Std) s, string format) =>
        $"{s.Mean.ToString(format, CultureInfo.InvariantCulture)} ± {s.Std.ToString(format, CultureInfo.InvariantCulture)}";

    /// <summary>Writes <c>compare.md</c>, <c>compare.csv</c> and the plots; returns the Markdown table.</summary>
    public static string WriteReport(RfOptions options, RunDirectory compare, IReadOnlyList<RunSummary> runs, ILogger logger)
    {
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine($"| mode | runs | final train loss | gap to L* | test error | certificate verdicts | guarantee claimed | mean wall time (s) |");
        md.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var mode in Modes)
        {
            var rs = runs.Where(r => r.Mode == mode).ToList();
            var verdicts = string.Join(", ", rs.GroupBy(r => r.Verdict).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Key}: {g.Count()}"));
            md.AppendLine($"| {mode} | {rs.Count} | {Pm(MeanStd(rs.Select(r => r.FinalTrainLoss)), "G4")} | {Pm(MeanStd(rs.Select(r => r.LossGap)), "G4")} | " +
                          $"{Pm(MeanStd(rs.Select(r => 100 * r.TestError)), "F2")} % | {verdicts} | {rs.Count(r => r.GuaranteeClaimed)}/{rs.Count} | " +
                          $"{MeanStd(rs.Select(r => r.WallSeconds)).Mean.ToString("F1", inv)} |");
        }
        double baseWall = runs.Where(r => r.Mode == "base").Sum(r => r.WallSeconds);
        double twoWall = runs.Where(r => r.Mode == "two-phase").Sum(r => r.WallSeconds);
        var ratio = baseWall > 0 ? twoWall / baseWall : double.NaN;
        var t = options.Training;
        var header = new StringBuilder();
        header.AppendLine($"# compare: base vs two-phase ({options.Data.Dataset}, n = {runs.FirstOrDefault()?.TrainSize}, {options.Model.Architecture} " +
                          $"[{string.Join(", ", options.Model.HiddenWidths)}, {options.Model.WideWidth}] {options.Model.Activation}, {t.Loss} loss, " +
                          $"{t.Optimizer} lr {t.LearningRate.ToString(inv)}, batch {t.BatchSize}, T = {t.TotalIterations}, τ = {options.Recipe.SwitchIteration}, " +
                          $"seeds {t.Seed}..{t.Seed + runs.Count / 2 - 1})");
        header.AppendLine();
        var table = md.ToString() + $"\nwall time ratio two-phase / base: {ratio.ToString("F2", inv)}\n";

        var perRun = new StringBuilder();
        perRun.AppendLine("\n## runs\n");
        perRun.AppendLine("| mode | seed | final train loss | gap to L* | test error | verdict | σ_min at switch | guarantee | guard tripped | k(ε) predicted / achieved | wall (s) | run |");
        perRun.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
        var csv = new StringBuilder("mode,seed,final_train_loss,loss_optimum,loss_gap,test_error,train_error,verdict,sigma_min_at_switch,guarantee_claimed,guard_tripped,wall_seconds,iterations,run_directory,predicted_steps,achieved_after,prediction_hypothesis_held\n");
        foreach (var r in runs)
        {
            perRun.AppendLine($"| {r.Mode} | {r.Seed} | {r.FinalTrainLoss.ToString("G6", inv)} | {r.LossGap.ToString("G6", inv)} | {(100 * r.TestError).ToString("F2", inv)} % | " +
                              $"{r.Verdict} | {r.SigmaMinAtSwitch.ToString("G4", inv)} | {r.GuaranteeClaimed} | {r.GuardTripped} | {r.Prediction()} | {r.WallSeconds.ToString("F1", inv)} | {Path.GetRelativePath(compare.Path, r.RunDirectory)} |");
            csv.AppendLine(string.Join(",", r.Mode, r.Seed.ToString(inv), r.FinalTrainLoss.ToString("R", inv), r.LossOptimum.ToString("R", inv),
                r.LossGap.ToString("R", inv), r.TestError.ToString("R", inv), r.TrainError.ToString("R", inv), r.Verdict,
                r.SigmaMinAtSwitch.ToString("R", inv), r.GuaranteeClaimed, r.GuardTripped, r.WallSeconds.ToString("F3", inv),
                r.Iterations.ToString(inv), Path.GetRelativePath(compare.Path, r.RunDirectory),
                r.PredictedSteps?.ToString(inv) ?? "", r.AchievedAfter?.ToString(inv) ?? "", r.PredictionHypothesisHeld?.ToString() ?? ""));
        }
        File.WriteAllText(Path.Combine(compare.Path, "compare.md"), header + table + perRun);
        File.WriteAllText(Path.Combine(compare.Path, "compare.csv"), csv.ToString());

        try
        {
            var curves = runs.Select(r => ($"{r.Mode} seed {r.Seed}",
                (IReadOnlyList<MetricRow>)TrainingRun.ReadMetrics(Path.Combine(r.RunDirectory, "metrics.jsonl")))).ToList();
            var predicted = runs.Select(r => r.PredictedSteps).FirstOrDefault(k => k >= 0);
            MetricPlots.LossCurvesOfRuns(curves, compare.PlotFile("loss-all-runs"), options.Recipe.SwitchIteration,
                predictedIteration: predicted is int k ? options.Recipe.SwitchIteration + k : null);
            var errors = Modes.Select(m => MeanStd(runs.Where(r => r.Mode == m).Select(r => 100 * r.TestError))).ToList();
            MetricPlots.BarsWithErrors(Modes, errors.Select(e => e.Mean).ToList(), errors.Select(e => e.Std).ToList(),
                compare.PlotFile("test-error"), "test error (mean ± std over seeds)", "test error (%)");
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            logger.LogWarning(e, "compare plots not written: {Reason}", e.Message);
        }
        return table;
    }
}
