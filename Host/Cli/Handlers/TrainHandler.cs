using Microsoft.Extensions.Logging;
using ResearchFramework.Host.Infrastructure;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.Host.Training;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf train --config FILE [--resume RUN_DIR]</c>: one base or two-phase run (per <c>Recipe:Enabled</c>) in a run
/// directory; Ctrl-C / SIGTERM writes a checkpoint and exits 130; <c>--resume</c> continues from the latest checkpoint.</summary>
public sealed class TrainHandler
{
    public int Run(TrainArguments args)
    {
        using var signal = new ShutdownSignal();
        return Execute(args.Configuration, args.Resume, signal.Token, showProgress: true).ExitCode;
    }

    /// <summary>The work of <c>rf train</c> (also used by the worker): exit code, run directory and summary.</summary>
    public static (int ExitCode, string RunDirectory, RunSummary Summary) Execute(ConfigurationInput input, string? resume,
        CancellationToken cancellationToken, bool showProgress)
    {
        if (resume is not null && !Directory.Exists(resume))
            throw new DirectoryNotFoundException($"--resume {resume}: run directory not found");
        input = WithEffectiveConfig(input, resume);
        using var app = RfApplication.Start(input, createRunDirectory: true, existingRunDirectory: resume, checkKernels: true);
        var logger = app.Logger<TrainHandler>();
        var options = app.Options;
        using var data = RunSetup.LoadData(options);
        MemoryBudget.EnsureFits("rf train", options, RunSetup.Architecture(options, data), data.Train.Count, data.Train.Inputs.NumberOfElements + data.TestInputs.NumberOfElements,
            options.Recipe.Enabled, options.Recipe.Enabled ? MemoryBudget.DenseCertifiedRows(options, data.Train.Count) : null);
        var summary = TrainingRun.Execute(options, data, app.Run!, app.Metrics!, logger, options.Recipe.Enabled, options.Training.Seed,
            resume is not null, cancellationToken, "train", showProgress);
        Print(summary);
        return (summary.Completed ? ExitCodes.Success : ExitCodes.Interrupted, app.Run!.Path, summary);
    }

    public static void Print(RunSummary s)
    {
        if (!s.Completed)
        {
            Console.WriteLine($"interrupted at iteration {s.Iterations}/{s.TotalIterations}; checkpoint {s.LastCheckpoint}");
            Console.WriteLine($"resume with: rf train --resume {s.RunDirectory}");
            return;
        }
        Console.WriteLine($"run: {s.RunDirectory}");
        Console.WriteLine($"mode: {s.Mode}, seed {s.Seed}, iterations {s.Iterations}{(s.SwitchIteration is int t ? $", switch τ = {t}" : "")}");
        Console.WriteLine($"final train loss: {s.FinalTrainLoss:G6} (L* = {s.LossOptimum:G4}, gap {s.LossGap:G6})");
        Console.WriteLine($"test error: {s.TestError:P2} ({s.TestSize} test points), train error {s.TrainError:P2} ({s.TrainSize} points)");
        Console.WriteLine($"certificate: {s.Verdict}{(double.IsFinite(s.SigmaMinAtSwitch) && s.SigmaMinAtSwitch > 0 ? $" (σ_min ≥ {s.SigmaMinAtSwitch:G4})" : "")}, guarantee {(s.GuaranteeClaimed ? "claimed" : "not claimed")}{(s.GuardTripped ? ", guard tripped" : "")}");
        if (s.PredictionLine() is string line) Console.WriteLine(line);
        Console.WriteLine($"wall time: {s.WallSeconds:F1} s");
        Console.WriteLine($"fingerprint: {s.FinalParameterFingerprint}");
    }

    /// <summary>With <c>--resume DIR</c> and no <c>--config</c>: the run's own <c>config.effective.json</c>.</summary>
    public static ConfigurationInput WithEffectiveConfig(ConfigurationInput input, string? resume)
    {
        if (input.ConfigFile is not null || resume is null) return input;
        var effective = Path.Combine(resume, "config.effective.json");
        if (!File.Exists(effective)) throw new FileNotFoundException($"--resume {resume}: no config.effective.json; give --config FILE");
        return input with { ConfigFile = effective };
    }
}
