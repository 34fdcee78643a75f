using System.Globalization;
using System.Text.Json;
using ResearchFramework.Host.Infrastructure.Configuration;

namespace ResearchFramework.Host.Infrastructure.Runs;

/// <summary>The folder of one run, <c>&lt;RunsDirectory&gt;/&lt;RunName&gt;-&lt;yyyyMMdd-HHmmss&gt;/</c>, and the paths inside it.</summary>
public sealed class RunDirectory
{
    private RunDirectory(string path) => Path = path;

    /// <summary>Full path of the run folder.</summary>
    public string Path { get; }

    public string EffectiveConfigPath => Combine("config.effective.json");
    public string MetricsPath => Combine("metrics.jsonl");
    public string LogPath => Combine("log.jsonl");
    public string TensorBoardPath => Combine("tensorboard");
    public string CheckpointsPath => Combine("checkpoints");
    public string CertificatesPath => Combine("certificates");
    public string PlotsPath => Combine("plots");

    /// <summary>Checkpoint file for an iteration, e.g. <c>checkpoints/iter-000500.pt</c>.</summary>
    public string CheckpointFile(long iteration) => System.IO.Path.Combine(CheckpointsPath, $"iter-{iteration:D6}.pt");

    /// <summary>Certificate file, e.g. <c>certificates/final.json</c>.</summary>
    public string CertificateFile(string name) => System.IO.Path.Combine(CertificatesPath, $"{name}.json");

    /// <summary>Plot file, e.g. <c>plots/loss.png</c>.</summary>
    public string PlotFile(string name) => System.IO.Path.Combine(PlotsPath, $"{name}.png");

    /// <summary>Creates a fresh run folder with its subfolders and writes <c>config.effective.json</c>.
    /// A name clash within the same second gets a <c>-2</c>, <c>-3</c>, … suffix.</summary>
    public static RunDirectory Create(RfOptions options, DateTimeOffset? now = null)
    {
        var stamp = (now ?? DateTimeOffset.UtcNow).UtcDateTime.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
        var root = System.IO.Path.GetFullPath(options.Run.RunsDirectory);
        Directory.CreateDirectory(root);
        var baseName = $"{options.Run.RunName}-{stamp}";
        var path = System.IO.Path.Combine(root, baseName);
        for (int suffix = 2; Directory.Exists(path); suffix++)
            path = System.IO.Path.Combine(root, $"{baseName}-{suffix}");
        var run = new RunDirectory(path);
        Directory.CreateDirectory(path);
        Directory.CreateDirectory(run.CheckpointsPath);
        Directory.CreateDirectory(run.CertificatesPath);
        Directory.CreateDirectory(run.PlotsPath);
        File.WriteAllText(run.EffectiveConfigPath, JsonSerializer.Serialize(options, new JsonSerializerOptions { WriteIndented = true }));
        return run;
    }

    /// <summary>The run folder at <paramref name="path"/> (e.g. a sub-run of a compare run): created with its subfolders and
    /// <c>config.effective.json</c> when absent, opened as it is otherwise.</summary>
    public static RunDirectory OpenOrCreate(string path, RfOptions options)
    {
        var run = new RunDirectory(System.IO.Path.GetFullPath(path));
        Directory.CreateDirectory(run.Path);
        Directory.CreateDirectory(run.CheckpointsPath);
        Directory.CreateDirectory(run.CertificatesPath);
        Directory.CreateDirectory(run.PlotsPath);
        if (!File.Exists(run.EffectiveConfigPath))
            File.WriteAllText(run.EffectiveConfigPath, JsonSerializer.Serialize(options, new JsonSerializerOptions { WriteIndented = true }));
        return run;
    }

    /// <summary>An existing run folder (e.g. for <c>rf certify --checkpoint</c> or plotting afterwards).</summary>
    public static RunDirectory Open(string path) =>
        Directory.Exists(path) ? new RunDirectory(System.IO.Path.GetFullPath(path)) : throw new DirectoryNotFoundException($"run directory {path} not found");

    private string Combine(string name) => System.IO.Path.Combine(Path, name);
}
