using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ResearchFramework.Host.Cli;
using ResearchFramework.Host.Cli.Handlers;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.Host.Infrastructure.Runs;

namespace ResearchFramework.Host.Worker;

/// <summary>Settings of <c>rf worker</c>.</summary>
public sealed record WorkerSettings(string SpoolDirectory, bool Once, TimeSpan PollInterval);

/// <summary>The spool layout: <c>inbox/</c> (new jobs), <c>running/</c> (claimed by atomic rename; a job interrupted by a
/// graceful stop stays here with <c>NAME.run</c> naming its run directory), <c>done/</c> (with <c>NAME.result.json</c>),
/// <c>failed/</c> (with <c>NAME.error.txt</c>).</summary>
public sealed class Spool(string root)
{
    public string Root { get; } = Path.GetFullPath(root);
    public string Inbox => Path.Combine(Root, "inbox");
    public string Running => Path.Combine(Root, "running");
    public string Done => Path.Combine(Root, "done");
    public string Failed => Path.Combine(Root, "failed");

    public void Create()
    {
        foreach (var d in new[] { Inbox, Running, Done, Failed }) Directory.CreateDirectory(d);
    }

    /// <summary>Job files: <c>*.json</c> other than the worker's own <c>*.config.json</c> / <c>*.result.json</c>, by name.</summary>
    public static string[] Jobs(string directory) =>
        Directory.GetFiles(directory, "*.json")
            .Where(f => !f.EndsWith(".config.json", StringComparison.Ordinal) && !f.EndsWith(".result.json", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal).ToArray();
}

/// <summary><c>rf worker --spool DIR [--once]</c> as a <see cref="BackgroundService"/>: at start-up resumes the jobs left in
/// <c>running/</c> by a graceful stop, then claims inbox jobs one at a time (atomic rename into <c>running/</c>). A job file is
/// a full rf configuration plus <c>"Command": "train" | "compare"</c> (and, for compare, optional <c>"Seeds"</c>, default 2).
/// Ctrl-C / SIGTERM cancels the running job, whose trainer writes a checkpoint; the job stays in <c>running/</c>.</summary>
public sealed class SpoolWorker(WorkerSettings settings, IHostApplicationLifetime lifetime, ILogger<SpoolWorker> logger) : BackgroundService
{
    private readonly Spool _spool = new(settings.SpoolDirectory);

    public int JobsDone { get; private set; }
    public int JobsFailed { get; private set; }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.Factory.StartNew(() => Loop(stoppingToken), stoppingToken, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private void Loop(CancellationToken stoppingToken)
    {
        try
        {
            _spool.Create();
            logger.LogInformation("worker: spool {Spool}{Once}", _spool.Root, settings.Once ? " (--once)" : "");
            foreach (var job in Spool.Jobs(_spool.Running))
            {
                if (stoppingToken.IsCancellationRequested) return;
                logger.LogInformation("worker: resuming interrupted job {Job}", Path.GetFileName(job));
                Process(job, stoppingToken);
            }
            while (!stoppingToken.IsCancellationRequested)
            {
                var next = Spool.Jobs(_spool.Inbox).FirstOrDefault();
                if (next is null)
                {
                    if (settings.Once) break;
                    stoppingToken.WaitHandle.WaitOne(settings.PollInterval);
                    continue;
                }
                var claimed = Path.Combine(_spool.Running, Path.GetFileName(next));
                try
                {
                    File.Move(next, claimed, overwrite: false); // atomic rename on one file system: one worker wins
                }
                catch (IOException)
                {
                    continue; // taken by another worker (or a same-named job is already running)
                }
                logger.LogInformation("worker: claimed {Job}", Path.GetFileName(claimed));
                Process(claimed, stoppingToken);
            }
        }
        catch (Exception e)
        {
            logger.LogError(e, "worker: stopped by an unexpected error: {Reason}", e.Message);
        }
        finally
        {
            if (settings.Once || !stoppingToken.IsCancellationRequested) lifetime.StopApplication();
        }
    }

    private void Process(string jobPath, CancellationToken stoppingToken)
    {
        var name = Path.GetFileNameWithoutExtension(jobPath);
        var configPath = Path.Combine(_spool.Running, name + ".config.json");
        var runPathFile = Path.Combine(_spool.Running, name + ".run");
        try
        {
            var (command, seeds) = JobFile.WriteConfig(jobPath, configPath);
            var input = new ConfigurationInput(configPath, []);
            string? runDirectory = File.Exists(runPathFile) ? File.ReadAllText(runPathFile).Trim() : null;
            if (runDirectory is null || !Directory.Exists(runDirectory))
            {
                var options = RfOptions.Load(RfConfiguration.Build(input)); // a bad config fails here, before anything is created
                runDirectory = RunDirectory.Create(options).Path;
                File.WriteAllText(runPathFile, runDirectory);
            }
            logger.LogInformation("worker: {Job}: {Command} in {RunDirectory}", name, command, runDirectory);
            int code = command switch
            {
                "train" => TrainHandler.Execute(input, runDirectory, stoppingToken, showProgress: false).ExitCode,
                "compare" => CompareHandler.Execute(input, seeds, runDirectory, stoppingToken, showProgress: false).ExitCode,
                _ => throw new ConfigurationException($"Command: unknown command '{command}' (expected train or compare)"),
            };
            if (code == ExitCodes.Interrupted)
            {
                logger.LogWarning("worker: {Job} interrupted; it stays in running/ and resumes at the next start", name);
                return;
            }
            var result = new JsonObject
            {
                ["job"] = Path.GetFileName(jobPath),
                ["command"] = command,
                ["exitCode"] = code,
                ["runDirectory"] = runDirectory,
                ["finishedUtc"] = DateTime.UtcNow.ToString("O"),
            };
            File.WriteAllText(Path.Combine(_spool.Done, name + ".result.json"), result.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            File.Move(jobPath, Path.Combine(_spool.Done, Path.GetFileName(jobPath)), overwrite: true);
            Cleanup(configPath, runPathFile);
            JobsDone++;
            logger.LogInformation("worker: {Job} done ({RunDirectory})", name, runDirectory);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            JobsFailed++;
            logger.LogError("worker: {Job} failed: {Reason}", name, e.Message);
            File.WriteAllText(Path.Combine(_spool.Failed, name + ".error.txt"), $"{e.GetType().Name}: {e.Message}\n\n{e}\n");
            try { File.Move(jobPath, Path.Combine(_spool.Failed, Path.GetFileName(jobPath)), overwrite: true); }
            catch (IOException) { }
            Cleanup(configPath, runPathFile);
        }
    }

    private static void Cleanup(params string[] files)
    {
        foreach (var f in files)
            try { File.Delete(f); } catch (IOException) { }
    }
}

/// <summary>A job file: a full rf configuration plus <c>"Command": "train" | "compare"</c> and, for compare, <c>"Seeds"</c>
/// (default 2). Used by the worker and by the main job (<c>experiments/main-job.json</c>).</summary>
public static class JobFile
{
    /// <summary>Splits a job file into its command (+ seeds) and the rf configuration, written to <paramref name="configPath"/>.</summary>
    public static (string Command, int Seeds) WriteConfig(string jobPath, string configPath)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(File.ReadAllText(jobPath), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new ConfigurationException($"job {Path.GetFileName(jobPath)} is not valid JSON: {e.Message}", e);
        }
        if (node is not JsonObject root) throw new ConfigurationException($"job {Path.GetFileName(jobPath)}: expected a JSON object");
        string command = "train";
        int seeds = 2;
        foreach (var key in root.Select(p => p.Key).ToList())
        {
            if (key.Equals("Command", StringComparison.OrdinalIgnoreCase))
            {
                command = root[key]?.GetValue<string>()?.Trim().ToLowerInvariant() ?? "train";
                root.Remove(key);
            }
            else if (key.Equals("Seeds", StringComparison.OrdinalIgnoreCase))
            {
                seeds = root[key]!.GetValue<int>();
                root.Remove(key);
            }
        }
        if (seeds < 1) throw new ConfigurationException("Seeds: must be at least 1");
        File.WriteAllText(configPath, root.ToJsonString());
        return (command, seeds);
    }
}
