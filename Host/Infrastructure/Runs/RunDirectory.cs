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
            Directory.CreateDirectory(run.CheckpointsPath);
            Directory.CreateDirectory(run.CertificatesPath);
            Directory.CreateDirectory(run.PlotsPath);
            return run;
        }
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
        var node = System.Text.Json.Nodes.JsonNode.Parse(JsonSerializer.Serialize(options))!.AsObject();
        var environment = new System.Text.Json.Nodes.JsonObject { ["Torch"] = MathCore.TorchEnvironment.describe() };
        var choice = MathCore.KernelCheck.currentChoice();
        if (choice is not null)
        {
            var (path, _, account) = choice.Value;
            environment["ConvolutionKernels"] = path.Name;
            environment["KernelSelfCheck"] = account;
        }
        else environment["ConvolutionKernels"] = "not checked (no convolutions)";
        node[RfConfiguration.EnvironmentSection] = environment;
        return node.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Appends this resume (time, torch line, convolution kernel path and its account) to
    /// <c>Environment:Resumes</c> of <c>config.effective.json</c>, leaving every option as it was written (a temporary
    /// file, renamed).</summary>
    public void RecordResume()
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(EffectiveConfigPath))!.AsObject();
        if (node[RfConfiguration.EnvironmentSection] is not System.Text.Json.Nodes.JsonObject environment)
        {
            environment = new System.Text.Json.Nodes.JsonObject();
            node[RfConfiguration.EnvironmentSection] = environment;
        }
        if (environment["Resumes"] is not System.Text.Json.Nodes.JsonArray resumes)
        {
            resumes = new System.Text.Json.Nodes.JsonArray();
            environment["Resumes"] = resumes;
        }
        var entry = new System.Text.Json.Nodes.JsonObject
        {
            ["Utc"] = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture),
            ["Torch"] = MathCore.TorchEnvironment.describe(),
        };
        if (MathCore.KernelCheck.currentChoice() is { } option)
        {
            var (path, _, account) = option.Value;
            entry["ConvolutionKernels"] = path.Name;
            entry["KernelSelfCheck"] = account;
        }
        resumes.Add(entry);
        var tmp = EffectiveConfigPath + ".tmp";
        File.WriteAllText(tmp, node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.Move(tmp, EffectiveConfigPath, overwrite: true);
    }

    private string Combine(string name) => System.IO.Path.Combine(Path, name);
}
