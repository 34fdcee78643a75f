using System.Diagnostics;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.Host.Training;
using ResearchFramework.Host.Worker;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary>The main job (bare <c>rf</c>, <c>rf main</c>, <c>./build.sh run</c>): fetch MNIST when missing, then the compare run
/// of <c>experiments/main-job.json</c> (a job file: rf configuration + <c>Command</c> + <c>Seeds</c>), ending with the table,
/// plots and the certificates.</summary>
public sealed class MainJobHandler
{
    public const string RelativePath = "experiments/main-job.json";

    /// <summary><c>experiments/main-job.json</c> in the working directory, else in a folder above the executable.</summary>
    public static string Locate(string? explicitPath)
    {
        if (explicitPath is not null)
            return File.Exists(explicitPath) ? Path.GetFullPath(explicitPath) : throw new FileNotFoundException($"main job file {explicitPath} not found");
        var here = Path.GetFullPath(RelativePath);
        if (File.Exists(here)) return here;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, RelativePath);
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException($"{RelativePath} not found in {Directory.GetCurrentDirectory()} or above {AppContext.BaseDirectory}");
    }

    public int Run(string? jobPath)
    {
        var clock = Stopwatch.StartNew();
        var job = Locate(jobPath);
        Console.WriteLine($"main job: {job}");
        // A fresh private directory (mkdtemp: created anew, mode 0700), never a predictable name in the shared temp
        // directory, where a planted symlink would redirect the write.
        var privateDirectory = Directory.CreateTempSubdirectory("rf-main-job-").FullName;
        var configPath = Path.Combine(privateDirectory, "config.json");
        try
        {
            var (command, seeds) = JobFile.WriteConfig(job, configPath);
            var input = new ConfigurationInput(configPath, []);
            var options = RfOptions.Load(RfConfiguration.Build(input));
            if (options.Data.Dataset is "mnist" or "fashion-mnist")
            {
                int fetched = new DataFetchHandler().Run(new DataFetchArguments(options.Data.Dataset, null, input));
                if (fetched != ExitCodes.Success) return fetched;
            }
            using var signal = new ShutdownSignal();
            int code = command switch
            {
                "compare" => CompareHandler.Execute(input, seeds, null, signal.Token, showProgress: true).ExitCode,
                "train" => TrainHandler.Execute(input, null, signal.Token, showProgress: true).ExitCode,
                _ => throw new ConfigurationException($"{job}: Command must be train or compare, not '{command}'"),
            };
            Console.WriteLine($"main job wall time: {clock.Elapsed.TotalSeconds:F1} s");
            return code;
        }
        finally
        {
            try { Directory.Delete(privateDirectory, recursive: true); } catch (IOException) { }
        }
    }
}
