using Microsoft.Extensions.Logging;
using ResearchFramework.Host.Infrastructure;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.Host.Training;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf compare --config FILE --seeds N [--resume DIR]</c>: base vs two-phase over N seeds, table on standard
/// output and in <c>compare.md</c> / <c>compare.csv</c>, plots; Ctrl-C / SIGTERM checkpoints the current sub-run (exit 130).</summary>
public sealed class CompareHandler
{
    public int Run(CompareArguments args)
    {
        using var signal = new ShutdownSignal();
        return Execute(args.Configuration, args.Seeds, args.Resume, signal.Token, showProgress: true).ExitCode;
    }

    public static (int ExitCode, string RunDirectory, CompareOutcome Outcome) Execute(ConfigurationInput input, int seeds, string? resume,
        CancellationToken cancellationToken, bool showProgress)
    {
        if (resume is not null && !Directory.Exists(resume))
            throw new DirectoryNotFoundException($"--resume {resume}: compare directory not found");
        input = WithEffectiveConfig(input, resume);
        using var app = RfApplication.Start(input, createRunDirectory: true, existingRunDirectory: resume, checkKernels: true);
        var logger = app.Logger<CompareHandler>();
        using var data = RunSetup.LoadData(app.Options);
        MemoryBudget.EnsureFits("rf compare", app.Options, RunSetup.Architecture(app.Options, data), data.Train.Count,
            data.Train.Inputs.NumberOfElements + data.TestInputs.NumberOfElements, true, MemoryBudget.DenseCertifiedRows(app.Options, data.Train.Count));
        var outcome = CompareRun.Execute(app.Options, data, app.Run!, logger, seeds, resume is not null, cancellationToken, showProgress);
        if (!outcome.Completed)
        {
            Console.WriteLine($"interrupted; resume with: rf compare --seeds {seeds} --resume {app.Run!.Path}");
            return (ExitCodes.Interrupted, app.Run!.Path, outcome);
        }
        Console.WriteLine();
        Console.WriteLine(outcome.Table);
        foreach (var r in outcome.Runs.Where(r => r.Mode == "two-phase"))
        {
            Console.WriteLine($"certificate (two-phase seed {r.Seed}): {r.Verdict}, σ_min(Φ̃_τ) ≥ {r.SigmaMinAtSwitch:G4}, guarantee {(r.GuaranteeClaimed ? "claimed" : "not claimed")}");
            if (r.PredictionLine() is string line) Console.WriteLine("  " + line);
        }
        Console.WriteLine($"compare directory: {app.Run!.Path} (compare.md, compare.csv, plots/loss-all-runs.png, plots/test-error.png)");
        return (ExitCodes.Success, app.Run!.Path, outcome);
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
