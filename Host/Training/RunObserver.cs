using Microsoft.Extensions.Logging;
using ResearchFramework.Algorithm;
using ResearchFramework.Host.Infrastructure.Progress;
using ResearchFramework.Host.Infrastructure.Runs;
using ResearchFramework.MathCore;

namespace ResearchFramework.Host.Training;

/// <summary>The host's <see cref="IRecipeObserver"/>: one <c>train</c> row per step in <c>metrics.jsonl</c> (loss, gap to L*,
/// α_t, body movement, σ_min/σ_max when checked, lr), phase changes / certificates / guard trips logged and recorded
/// (each certificate's JSON into the run's <c>certificates/</c>), checkpoints logged, progress with rate and ETA.</summary>
public sealed class RunObserver(MetricsWriter metrics, RunDirectory run, ILogger logger, ProgressReporter? progress, int logEvery,
    string label) : IRecipeObserver, IProgressObserver
{
    /// <summary>The tiled engine's progress at the switch and the guard's checks (tiles done, GFLOP/s, ETA), logged.</summary>
    public void OnProgress(string line) => logger.LogInformation("{Label}: {Line}", label, line);

    /// <summary>Test hook: <c>RF_TEST_STEP_DELAY_MS</c> sleeps after every step, so a process test can signal a run reliably
    /// between its first checkpoint and its end. Unset (the default): no delay.</summary>
    private static readonly int StepDelayMs =
        int.TryParse(Environment.GetEnvironmentVariable("RF_TEST_STEP_DELAY_MS"), out var ms) && ms > 0 ? ms : 0;

    public int Steps { get; private set; }
    public Certificate? SwitchCertificate { get; private set; }
    public int? SwitchIteration { get; private set; }
    public List<string> CertificateFiles { get; } = [];
    public string? LastCheckpoint { get; private set; }

    public static string PhaseName(Phase p) => p switch
    {
        Phase.PhaseOne => "1",
        Phase.PhaseTwo => "2",
        Phase.BaseUncertified => "base-uncertified",
        _ => "base",
    };

    public void OnStep(StepRecord s)
    {
        Steps++;
        var values = new Dictionary<string, double>
        {
            ["loss"] = s.Loss,
            ["lossGap"] = s.LossGap,
            ["alpha"] = s.Alpha,
            ["bodyMovement"] = s.BodyMovement,
            ["lr"] = s.LearningRate,
        };
        if (double.IsFinite(s.SigmaMin)) values["sigmaMin"] = s.SigmaMin;
        if (double.IsFinite(s.SigmaMax)) values["sigmaMax"] = s.SigmaMax;
        if (double.IsFinite(s.ReadoutLearningRate)) values["readoutLr"] = s.ReadoutLearningRate;
        if (s.GuardRoute is not null) values["guardWeyl"] = s.GuardRoute == "weyl" ? 1.0 : 0.0;
        bool periodic = (s.Iteration + 1) % Math.Max(1, logEvery) == 0 || values.ContainsKey("sigmaMin");
        metrics.Write(new MetricRow("train", s.Iteration, PhaseName(s.Phase), values), mirrorToTensorBoard: periodic);
        if (periodic)
            logger.LogDebug("{Label} step {Iteration} phase {Phase}: loss {Loss:G6}, gap {Gap:G4}, α {Alpha:G3}", label, s.Iteration,
                PhaseName(s.Phase), s.Loss, s.LossGap, s.Alpha);
        progress?.Report(s.Iteration + 1, $"phase {PhaseName(s.Phase)} loss {s.Loss:G4}");
        if (StepDelayMs > 0) Thread.Sleep(StepDelayMs);
    }

    public void OnPhaseChange(PhaseChange p)
    {
        if (p.To == Phase.PhaseTwo || p.To == Phase.BaseUncertified) SwitchIteration = p.Iteration;
        logger.LogInformation("{Label} phase change at {Iteration}: {From} → {To} ({Reason})", label, p.Iteration,
            PhaseName(p.From), PhaseName(p.To), p.Reason);
        metrics.Write(new MetricRow("phase", p.Iteration, PhaseName(p.To), new Dictionary<string, double> { ["to"] = (int)p.To }));
    }

    public void OnCertificate(CertificateEvent c)
    {
        SwitchCertificate = c.Certificate;
        var path = run.CertificateFile($"switch-{c.Iteration:D6}-attempt{c.Attempt}");
        Directory.CreateDirectory(run.CertificatesPath);
        CertificateJson.save(path, c.Certificate);
        CertificateFiles.Add(path);
        logger.LogInformation("{Label} certificate at {Iteration} (attempt {Attempt}): {Verdict}, σ_min ≥ {SigmaMin:G6}, n = {Rows}, columns = {Columns}; {Path}",
            label, c.Iteration, c.Attempt, c.Certificate.Verdict, c.Certificate.SigmaMinLower, c.Certificate.Subject.Rows,
            c.Certificate.Subject.Columns, path);
        metrics.Write(new MetricRow("certificate", c.Iteration, null, new Dictionary<string, double>
        {
            ["attempt"] = c.Attempt,
            ["certified"] = c.Certificate.IsCertified ? 1 : 0,
            ["sigmaMinLower"] = c.Certificate.SigmaMinLower,
            ["sigmaMaxEstimate"] = c.Certificate.SigmaMaxEstimate,
            ["seconds"] = c.Certificate.ElapsedSeconds,
        }));
    }

    public void OnGuardTrip(GuardTrip g)
    {
        logger.LogWarning("{Label} rank guard tripped at {Iteration}: σ_min ≥ {SigmaMin:G6} < κ·σ_min(τ) = {Threshold:G6} ({Verdict}); body restored to iteration {Last} and frozen",
            label, g.Iteration, g.SigmaMinLower, g.Threshold, g.Verdict, g.LastCertifiedIteration);
        metrics.Write(new MetricRow("guard", g.Iteration, "2", new Dictionary<string, double>
        {
            ["sigmaMinLower"] = g.SigmaMinLower,
            ["threshold"] = g.Threshold,
            ["lastCertifiedIteration"] = g.LastCertifiedIteration,
        }));
    }

    public void OnCheckpoint(CheckpointWritten c)
    {
        LastCheckpoint = c.Path;
        logger.LogInformation("{Label} checkpoint before iteration {Iteration}: {Path}", label, c.Iteration, c.Path);
    }
}
