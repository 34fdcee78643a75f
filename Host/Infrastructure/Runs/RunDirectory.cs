using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
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
        // Claimed atomically: the folder may exist (another process in the same second), but only one process creates
        // its config.effective.json (FileMode.CreateNew); the others move on to the next suffix.
        for (int suffix = 1; ; suffix++)
        {
            var path = System.IO.Path.Combine(root, suffix == 1 ? baseName : $"{baseName}-{suffix}");
            var run = new RunDirectory(path);
            Directory.CreateDirectory(path);
            FileStream claim;
            try
            {
                claim = new FileStream(run.EffectiveConfigPath, FileMode.CreateNew, FileAccess.Write, FileShare.None);
            }
            catch (IOException) when (File.Exists(run.EffectiveConfigPath))
            {
                continue; // another process claimed this name in the same second
            }
            try
            {
                using var writer = new StreamWriter(claim);
                writer.Write(EffectiveConfigJson(options));
            }
            catch
            {
                // A failed write (full disk) must not leave a half-written file that looks like a claimed run.
                claim.Dispose();
                try { File.Delete(run.EffectiveConfigPath); } catch (IOException) { }
                throw;
            }
            run.CreateSubfolders();
            return run;
        }
    }

    /// <summary>The run folder at <paramref name="path"/> (e.g. a sub-run of a compare run): created with its subfolders and
    /// <c>config.effective.json</c> when absent, opened as it is otherwise.</summary>
    public static RunDirectory OpenOrCreate(string path, RfOptions options)
    {
        var run = new RunDirectory(System.IO.Path.GetFullPath(path));
        Directory.CreateDirectory(run.Path);
        run.CreateSubfolders();
        if (!File.Exists(run.EffectiveConfigPath))
            File.WriteAllText(run.EffectiveConfigPath, EffectiveConfigJson(options));
        return run;
    }

    /// <summary>An existing run folder (e.g. for <c>rf certify --checkpoint</c> or plotting afterwards).</summary>
    public static RunDirectory Open(string path) =>
        Directory.Exists(path) ? new RunDirectory(System.IO.Path.GetFullPath(path)) : throw new DirectoryNotFoundException($"run directory {path} not found");

    /// <summary><c>config.effective.json</c>: the bound options, plus the record-only <c>Environment</c> section (the
    /// environment line and the convolution kernel path chosen by the self-check, with its account).</summary>
    public static string EffectiveConfigJson(RfOptions options)
    {
        var node = JsonNode.Parse(JsonSerializer.Serialize(options))!.AsObject();
        node[RfConfiguration.EnvironmentSection] = EnvironmentRecord();
        return node.ToJsonString(Indented);
    }

    /// <summary>What this process runs on: the torch line and the convolution kernel path in effect, with its account.</summary>
    private static JsonObject EnvironmentRecord()
    {
        var record = new JsonObject { ["Torch"] = MathCore.TorchEnvironment.describe(), ["CertificateKernels"] = MathCore.NativeBlas.describe() };
        if (MathCore.KernelCheck.currentChoice() is { } option)
        {
            var (path, _, account) = option.Value;
            record["ConvolutionKernels"] = path.Name;
            record["KernelSelfCheck"] = account;
        }
        else record["ConvolutionKernels"] = "not checked (no convolutions)";
        return record;
    }

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Appends this resume (time and <see cref="EnvironmentRecord"/>) to <c>Environment:Resumes</c> of
    /// <c>config.effective.json</c>, leaving every option as it was written (a temporary file, renamed).</summary>
    public void RecordResume()
    {
        var node = JsonNode.Parse(File.ReadAllText(EffectiveConfigPath))!.AsObject();
        if (node[RfConfiguration.EnvironmentSection] is not JsonObject environment)
            node[RfConfiguration.EnvironmentSection] = environment = new JsonObject();
        if (environment["Resumes"] is not JsonArray resumes)
            environment["Resumes"] = resumes = new JsonArray();
        var entry = EnvironmentRecord();
        entry.Insert(0, "Utc", DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture));
        resumes.Add(entry);
        var tmp = EffectiveConfigPath + ".tmp";
        File.WriteAllText(tmp, node.ToJsonString(Indented));
        File.Move(tmp, EffectiveConfigPath, overwrite: true);
    }

    private void CreateSubfolders()
    {
        Directory.CreateDirectory(CheckpointsPath);
        Directory.CreateDirectory(CertificatesPath);
        Directory.CreateDirectory(PlotsPath);
    }

    private string Combine(string name) => System.IO.Path.Combine(Path, name);
}
