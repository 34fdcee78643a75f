using System.Globalization;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using ResearchFramework.Algorithm;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.Host.Infrastructure.Plotting;
using ResearchFramework.Host.Infrastructure.Progress;
using ResearchFramework.Host.Infrastructure.Runs;
using TorchSharp;

namespace ResearchFramework.Host.Training;

/// <summary>What <c>summary.json</c> of a run holds.</summary>
public sealed record RunSummary
{
    public required string RunDirectory { get; init; }
    /// <summary>"base" or "two-phase".</summary>
    public required string Mode { get; init; }
    public required int Seed { get; init; }
    public required bool Completed { get; init; }
    public required int Iterations { get; init; }
    public required int TotalIterations { get; init; }
    public int? SwitchIteration { get; init; }
    /// <summary>L(θ_T) on the whole training (sub)set, evaluation mode.</summary>
    public double FinalTrainLoss { get; init; } = double.NaN;
    public double LossOptimum { get; init; } = double.NaN;
    public double LossGap { get; init; } = double.NaN;
    public double TestError { get; init; } = double.NaN;
    public double TrainError { get; init; } = double.NaN;
    /// <summary>Verdict of the last certificate at the switch; "n/a" for a base run.</summary>
    public required string Verdict { get; init; }
    public double SigmaMinAtSwitch { get; init; } = double.NaN;
    public required bool GuaranteeClaimed { get; init; }
    public required bool GuardTripped { get; init; }
    /// <summary>Seconds of training + evaluation, summed over the processes that worked on the run (resumes).</summary>
    public double WallSeconds { get; init; }
    public string? FinalParameterFingerprint { get; init; }
    public string? LastCheckpoint { get; init; }
    public string? ResumedFrom { get; init; }
    public int TrainSize { get; init; }
    public int TestSize { get; init; }
    /// <summary>Theorem P (ReadoutStep = preconditioned): k(ε) predicted at the switch (Theorem PD's k_δ(ε) for a damped
    /// body with λ = 0; −1: no prediction, damped body with λ > 0),
    /// null when the rule was not used.</summary>
    public int? PredictedSteps { get; init; }
    /// <summary>Theorem P: ε of the prediction.</summary>
    public double? PredictionEpsilon { get; init; }
    /// <summary>Theorem P: Phase II steps after which J_λ − J_λ* ≤ ε·(its value at the switch) was shown (−1: not within T).</summary>
    public int? AchievedAfter { get; init; }
    /// <summary>Theorem P: whether every step's perturbation stayed within the prediction's hypothesis.</summary>
    public bool? PredictionHypothesisHeld { get; init; }
    /// <summary>Theorem PD (damped body, λ = 0): refactors of the Gram during Phase II; null otherwise.</summary>
    public int? Refactors { get; init; }
    /// <summary>Theorem PD: the largest drift ratio Δ_t = ‖R̂_t − G_tA_t‖/‖R̂_t‖ seen (after refactors); null otherwise.</summary>
    public double? MaxDriftRatio { get; init; }

    /// <summary>Theorem P's "predicted / achieved" steps ("–" when the preconditioned readout did not run): the cell of
    /// <c>compare.md</c> and the end of <see cref="PredictionLine"/>.</summary>
    public string Prediction() => PredictedSteps is not int k ? "–"
        : $"{(k < 0 ? "none (damped, λ > 0)" : k.ToString(CultureInfo.InvariantCulture))} / {(AchievedAfter >= 0 ? AchievedAfter.Value.ToString(CultureInfo.InvariantCulture) : "not within T")}" +
          (PredictionHypothesisHeld == true ? "" : " (hypothesis not met)");

    /// <summary>The console line of Theorem P's prediction, null when the preconditioned readout did not run.</summary>
    public string? PredictionLine() => PredictedSteps is null ? null
        : $"preconditioned readout ({(Refactors is null ? "Theorem P" : "Theorem PD")}), k(ε = {PredictionEpsilon?.ToString("G3", CultureInfo.InvariantCulture)}) predicted / achieved: {Prediction()}" +
          (Refactors is int k ? $"; {k} refactor(s), largest drift ratio {MaxDriftRatio?.ToString("G3", CultureInfo.InvariantCulture)}" : "");

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public const string FileName = "summary.json";

    public void Save(string directory) =>
        File.WriteAllText(Path.Combine(directory, FileName), JsonSerializer.Serialize(this, Json));

    public static RunSummary? TryLoad(string directory)
    {
        var path = Path.Combine(directory, FileName);
        return File.Exists(path) ? JsonSerializer.Deserialize<RunSummary>(File.ReadAllText(path), Json) : null;
    }
}

/// <summary>One run (base or two-phase) in a run directory: trainer with observer and checkpoints, resume from the
/// latest checkpoint, evaluation, <c>summary.json</c> and plots.</summary>
public static class TrainingRun
{
    public static RunSummary Execute(RfOptions options, PreparedTensors data, RunDirectory run, MetricsWriter metrics, ILogger logger,
        bool recipeEnabled, int seed, bool resume, CancellationToken cancellationToken, string label, bool showProgress = true)
    {
        var clock = Stopwatch.StartNew();
        var architecture = RunSetup.Architecture(options, data);
        var training = RunSetup.Training(options.Training, seed, run.CheckpointsPath);
        // The switch's and the guard's certificates (and Theorem P's factor) on the engine of Certificate:Engine, tile
        // files in the run directory's tiles/: a killed run's certificate resumes from them.
        var engine = Certification.CertificateEngineConfiguration.ForRun(options.Certificate,
            Infrastructure.MemoryBudget.CertifiedRows(options, null, data.Train.Count), Path.Combine(run.Path, "tiles"))
            .WithCancel(cancellationToken); // a stop request ends a certificate of hours between two tiles, not after it
        var recipe = RunSetup.Recipe(options.Recipe, options.Training, recipeEnabled, engine);
        var previous = resume ? RunSummary.TryLoad(run.Path) : null;
        string? checkpoint = null;
        if (resume)
        {
            // The newest checkpoint whose content hash verifies; corrupted newer ones are named and skipped.
            var (valid, refused) = Checkpoint.latestValid(run.CheckpointsPath);
            foreach (var (file, why) in refused)
                logger.LogWarning("{Label}: checkpoint {Checkpoint} refused ({Reason}); falling back to an earlier one", label, file, why);
            if (refused.Length > 0 && valid is null)
                throw new InvalidDataException($"{label}: no checkpoint in {run.CheckpointsPath} verifies ({refused.Length} refused: {string.Join("; ", refused.Select(r => $"{Path.GetFileName(r.Item1)}: {r.Item2}"))}); start a new run");
            checkpoint = valid;
        }
        if (resume && checkpoint is null)
            logger.LogInformation("{Label}: no checkpoint in {Directory}; starting from the beginning", label, run.CheckpointsPath);
        var progress = showProgress ? new ProgressReporter(label, training.TotalIterations) : null;
        var observer = new RunObserver(metrics, run, logger, progress, options.Training.LogEvery, label);
        logger.LogInformation("{Label}: {Mode} run, seed {Seed}, T = {T}{Switch}, {Architecture}, n = {N} training / {M} test points ({Dataset})",
            label, recipe is null ? "base" : "two-phase", seed, training.TotalIterations,
            recipe is null ? "" : $", τ = {recipe.SwitchIteration}", Networks.describe(architecture), data.Train.Count,
            data.TestInputs.shape[0], data.DatasetName);

        using var trainer = new TwoPhaseTrainer(architecture, training, RunSetup.Option(recipe), data.Train, observer);
        if (checkpoint is not null)
        {
            trainer.LoadCheckpoint(checkpoint);
            logger.LogInformation("{Label}: resumed from {Checkpoint} (iteration {Iteration})", label, checkpoint, trainer.Iteration);
        }
        RunResult result;
        try
        {
            result = trainer.Run(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopped inside a tiled certificate (the switch's: the body is put back as it was at τ; a guard's: mid-step).
            // Nothing is checkpointed here: a resume starts from the last checkpoint, redoes the steps after it
            // (deterministically: the same body), and the certificate continues from its finished tiles in tiles/.
            logger.LogWarning("{Label}: stopped during the certificate at iteration {Iteration}; its finished tiles are kept and a resume continues from them",
                label, trainer.Iteration);
            result = trainer.Result(false);
        }
        var lastCertificate = result.Certificates.LastOrDefault();
        var summary = new RunSummary
        {
            RunDirectory = run.Path,
            Mode = recipe is null ? "base" : "two-phase",
            Seed = seed,
            Completed = result.Completed,
            Iterations = result.IterationsDone,
            TotalIterations = training.TotalIterations,
            SwitchIteration = recipe?.SwitchIteration,
            LossOptimum = result.LossOptimum,
            Verdict = recipe is null ? "n/a" : lastCertificate is null ? "none" : lastCertificate.Verdict.ToString(),
            SigmaMinAtSwitch = lastCertificate?.SigmaMinLower ?? double.NaN,
            GuaranteeClaimed = result.GuaranteeClaimed,
            GuardTripped = result.GuardTripped,
            FinalParameterFingerprint = result.FinalParameterFingerprint,
            LastCheckpoint = result.LastCheckpoint ?? observer.LastCheckpoint,
            ResumedFrom = checkpoint,
            TrainSize = data.Train.Count,
            TestSize = (int)data.TestInputs.shape[0],
            PredictedSteps = trainer.State.Preconditioner?.PredictedSteps,
            PredictionEpsilon = trainer.State.Preconditioner?.Epsilon,
            AchievedAfter = trainer.State.Preconditioner?.AchievedAfter,
            PredictionHypothesisHeld = trainer.State.Preconditioner?.HypothesisHeld,
            Refactors = trainer.State.Preconditioner?.Damped?.Refactors,
            MaxDriftRatio = trainer.State.Preconditioner?.Damped?.MaxDrift,
        };
        if (!result.Completed)
        {
            summary = summary with { WallSeconds = (previous?.WallSeconds ?? 0) + clock.Elapsed.TotalSeconds };
            summary.Save(run.Path);
            logger.LogWarning("{Label}: stopped at iteration {Iteration} of {T}; checkpoint {Checkpoint}", label, result.IterationsDone,
                training.TotalIterations, summary.LastCheckpoint);
            return summary;
        }

        var loss = RunSetup.LossOf(options.Training);
        var (trainError, trainLoss) = Evaluate(trainer, data.Train.Inputs, data.TrainLabels, data.Train.Targets, loss);
        var (testError, _) = Evaluate(trainer, data.TestInputs, data.TestLabels, null, loss);
        summary = summary with
        {
            FinalTrainLoss = trainLoss,
            LossGap = trainLoss - result.LossOptimum,
            TestError = testError,
            TrainError = trainError,
            WallSeconds = (previous?.WallSeconds ?? 0) + clock.Elapsed.TotalSeconds,
        };
        metrics.Write(new MetricRow("eval", result.IterationsDone, null, new Dictionary<string, double>
        {
            ["trainLoss"] = trainLoss,
            ["lossGap"] = summary.LossGap,
            ["trainError"] = trainError,
            ["testError"] = testError,
        }));
        summary.Save(run.Path);
        Plot(run, metrics.Path, recipe?.SwitchIteration, logger, summary.PredictedSteps);
        logger.LogInformation("{Label}: done in {Seconds:F1} s: train loss {Loss:G6} (gap to L* {Gap:G4}), test error {TestError:P2}, verdict {Verdict}, guarantee {Guarantee}",
            label, summary.WallSeconds, trainLoss, summary.LossGap, testError, summary.Verdict, summary.GuaranteeClaimed ? "claimed" : "not claimed");
        return summary;
    }

    /// <summary>Error rate and mean loss of the trained model (f̄ in Phase II) on (x, labels[, targets]), in chunks.</summary>
    public static (double Error, double Loss) Evaluate(TwoPhaseTrainer trainer, torch.Tensor x, torch.Tensor labels, torch.Tensor? targets, LossKind loss)
    {
        long n = x.shape[0];
        if (n == 0) return (double.NaN, double.NaN);
        // 512 inputs at a time: with chunks of 2048 a ResNet-18 (k = 1) run on 60,000 images reached 11 GB RSS in this
        // evaluation (activations and convolution buffers of 2048 images; 2026-12-03), enough to push a tiled
        // certificate beside it out of memory
        const long chunk = 512;
        long wrong = 0;
        double lossSum = 0;
        for (long start = 0; start < n; start += chunk)
        {
            using var scope = torch.NewDisposeScope();
            long len = Math.Min(chunk, n - start);
            var z = trainer.Predict(x.narrow(0, start, len)).cpu();
            wrong += z.argmax(1).ne(labels.narrow(0, start, len)).sum().item<long>();
            if (targets is not null)
                lossSum += Losses.value(loss, z, targets.narrow(0, start, len)).ToDouble() * len;
        }
        return ((double)wrong / n, targets is null ? double.NaN : lossSum / n);
    }

    /// <summary>Rows of metrics.jsonl, keeping the last row per (kind, iteration) (a resumed run repeats the steps after
    /// its checkpoint).</summary>
    public static List<MetricRow> ReadMetrics(string path) =>
        MetricsReader.Read(path).GroupBy(r => (r.Kind, r.Iteration)).Select(g => g.Last()).OrderBy(r => r.Iteration).ToList();

    public static void Plot(RunDirectory run, string metricsPath, int? switchIteration, ILogger logger, int? predictedSteps = null)
    {
        try
        {
            var rows = ReadMetrics(metricsPath);
            MetricPlots.LossCurves(rows, run.PlotFile("loss"), switchIteration,
                predictedIteration: switchIteration is int tau && predictedSteps is int k && k >= 0 ? tau + k : null);
            // σ_min over Phase II: the certified value at the switch (certificate rows), then the guard's checks.
            var atSwitch = rows.Where(r => r.Kind == "certificate" && r.Get("certified") == 1 && r.Get("sigmaMinLower") is double)
                .Select(r => new MetricRow("train", r.Iteration, "2", new Dictionary<string, double> { ["sigmaMin"] = r.Get("sigmaMinLower")!.Value }))
                .TakeLast(1);
            var checks = rows.Where(r => r.Kind == "train" && r.Get("sigmaMin") is double v && v > 0).ToList();
            if (checks.Count > 0)
                MetricPlots.SigmaMinOverTime(atSwitch.Concat(checks).OrderBy(r => r.Iteration), run.PlotFile("sigma-min"), switchIteration);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            logger.LogWarning(e, "plots not written: {Reason}", e.Message);
        }
    }
}
