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

/// <summary>The spool layout: <c>inbox/</c> (new jobs), <c>running/&lt;owner&gt;/</c> (jobs claimed by one worker, by atomic
/// rename; with <c>NAME.run</c> naming the job's run directory and the owner's <c>lease.json</c> heartbeat), <c>done/</c>
/// (with <c>NAME.result.json</c>), <c>failed/</c> (with <c>NAME.error.txt</c>), <c>logs/</c> (one log file per worker).
/// Any number of workers, on one machine or several sharing the directory, run each job exactly once: a rename is atomic
/// (one claimant wins), and a job in another owner's folder is taken over (again by one atomic rename) only when that
/// owner is provably gone (same host, its process no longer exists) or its lease has expired.</summary>
public sealed class Spool(string root)
{
    public string Root { get; } = Path.GetFullPath(root);
    public string Inbox => Path.Combine(Root, "inbox");
    public string Running => Path.Combine(Root, "running");
    public string Done => Path.Combine(Root, "done");
    public string Failed => Path.Combine(Root, "failed");
    public string Logs => Path.Combine(Root, "logs");

    public void Create()
    {
        foreach (var d in new[] { Inbox, Running, Done, Failed, Logs }) Directory.CreateDirectory(d);
    }

    /// <summary>Job files: <c>*.json</c> other than the worker's own <c>*.config.json</c> / <c>*.result.json</c> and the
    /// lease, by name.</summary>
    public static string[] Jobs(string directory) =>
        Directory.Exists(directory)
            ? Directory.GetFiles(directory, "*.json")
                .Where(f => !f.EndsWith(".config.json", StringComparison.Ordinal) && !f.EndsWith(".result.json", StringComparison.Ordinal)
                            && Path.GetFileName(f) != WorkerLease.FileName && IsRegularFile(f))
                .Order(StringComparer.Ordinal).ToArray()
            : [];

    /// <summary>True for a regular file, symbolic links not followed: a FIFO, socket or device named <c>*.json</c> is
    /// never opened (opening a FIFO would block the worker forever).</summary>
    public static bool IsRegularFile(string path) => Infrastructure.FileChecks.IsRegularFile(path, followLinks: false);

    /// <summary>Entries of the inbox that are not jobs, with the reason: folders, non-regular files, names that differ
    /// from <c>NAME.json</c> only in case, and the worker's reserved suffixes.</summary>
    public IEnumerable<(string Entry, string Why)> NotJobs()
    {
        if (!Directory.Exists(Inbox)) yield break;
        foreach (var entry in Directory.EnumerateFileSystemEntries(Inbox).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(entry);
            if (Directory.Exists(entry)) yield return (entry, "a folder, not a job file");
            else if (name.EndsWith(".json", StringComparison.Ordinal) && !IsRegularFile(entry))
                yield return (entry, "not a regular file (a FIFO, socket, device or link); it is never opened");
            else if (name.EndsWith(".config.json", StringComparison.Ordinal) || name.EndsWith(".result.json", StringComparison.Ordinal))
                yield return (entry, "*.config.json and *.result.json are the worker's own files; rename the job NAME.json");
            else if (!name.EndsWith(".json", StringComparison.Ordinal))
                yield return (entry, name.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
                    ? "the extension must be .json in lower case" : "jobs are NAME.json files");
        }
    }

    /// <summary>Owner folders under <c>running/</c>.</summary>
    public string[] Owners() => Directory.Exists(Running) ? Directory.GetDirectories(Running).Order(StringComparer.Ordinal).ToArray() : [];

    /// <summary>Whether a job of this file name is claimed by any worker.</summary>
    public bool IsRunning(string fileName) =>
        Owners().Any(o => File.Exists(Path.Combine(o, fileName))) || File.Exists(Path.Combine(Running, fileName));
}

/// <summary>The identity and lease of one worker process: <c>running/&lt;host&gt;-&lt;pid&gt;-&lt;start&gt;/lease.json</c>
/// (host, pid, the process's start time, heartbeat time), renewed every <see cref="HeartbeatInterval"/>.</summary>
public sealed class WorkerLease
{
    public const string FileName = "lease.json";

    /// <summary>How often the heartbeat is written (and the fence checked): <c>RF_WORKER_HEARTBEAT_SECONDS</c>, default 10.</summary>
    public static readonly TimeSpan HeartbeatInterval = SecondsFromEnvironment("RF_WORKER_HEARTBEAT_SECONDS", 10);

    /// <summary>A lease older than this (no heartbeat) may be taken over from another host: <c>RF_WORKER_LEASE_SECONDS</c>,
    /// default 120.</summary>
    public static TimeSpan Expiry { get; set; } = SecondsFromEnvironment("RF_WORKER_LEASE_SECONDS", 120);

    private static TimeSpan SecondsFromEnvironment(string variable, double fallback) =>
        TimeSpan.FromSeconds(double.TryParse(Environment.GetEnvironmentVariable(variable), System.Globalization.NumberStyles.Float,
                                             System.Globalization.CultureInfo.InvariantCulture, out var s) && s > 0 ? s : fallback);

    public WorkerLease(Spool spool)
    {
        Host = Environment.MachineName;
        ProcessId = Environment.ProcessId;
        StartTicks = ProcessStartTicks(ProcessId) ?? DateTime.UtcNow.Ticks;
        Machine = ThisMachine;
        Directory = Path.Combine(spool.Running, $"{Host}-{ProcessId}-{StartTicks}-{Guid.NewGuid().ToString("N")[..8]}");
        System.IO.Directory.CreateDirectory(Directory);
        Beat();
    }

    /// <summary>What makes "this host" provable: the kernel's boot id and this process's PID namespace. Two containers
    /// or cloned VMs with one host name differ here, so neither reads the other's PIDs as its own.</summary>
    public static string MachineIdentity()
    {
        string Read(Func<string> f) { try { return f(); } catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException) { return "?"; } }
        var boot = Read(() => File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim());
        var pidNamespace = Read(() => new FileInfo("/proc/self/ns/pid").LinkTarget ?? "?");
        return $"{boot}/{pidNamespace}";
    }

    /// <summary><see cref="MachineIdentity"/> of this process, read once (it cannot change while the process runs).</summary>
    public static readonly string ThisMachine = MachineIdentity();

    /// <summary>Boot id and PID namespace of this worker (see <see cref="MachineIdentity"/>).</summary>
    public string Machine { get; }

    public string Host { get; }
    public int ProcessId { get; }
    public long StartTicks { get; }

    /// <summary>This worker's folder under <c>running/</c>.</summary>
    public string Directory { get; }

    private long _beats;

    /// <summary>Writes the heartbeat (atomically: temporary file, rename); its counter changes at every beat.</summary>
    public void Beat()
    {
        if (!System.IO.Directory.Exists(Directory)) System.IO.Directory.CreateDirectory(Directory);
        var lease = new JsonObject
        {
            ["host"] = Host, ["machine"] = Machine, ["pid"] = ProcessId, ["startTicks"] = StartTicks,
            ["heartbeatUtc"] = DateTime.UtcNow.ToString("O"), ["beat"] = Interlocked.Increment(ref _beats),
        };
        var tmp = Path.Combine(Directory, FileName + ".tmp");
        File.WriteAllText(tmp, lease.ToJsonString());
        File.Move(tmp, Path.Combine(Directory, FileName), overwrite: true);
    }

    /// <summary>The kernel's start time of a process (clock ticks since boot, /proc/PID/stat field 22), or null.</summary>
    public static long? ProcessStartTicks(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[19], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }

    /// <summary>Whether the owner of <paramref name="ownerDirectory"/> is provably gone or its lease expired, with the reason.</summary>
    public static (bool Gone, string Why) IsGone(string ownerDirectory)
    {
        var leaseFile = Path.Combine(ownerDirectory, FileName);
        JsonNode? lease = null;
        try { lease = JsonNode.Parse(File.ReadAllText(leaseFile)); }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException) { }
        if (lease is null)
        {
            var age = DateTime.UtcNow - System.IO.Directory.GetLastWriteTimeUtc(ownerDirectory);
            return age > Expiry ? (true, $"no lease, folder untouched for {age.TotalSeconds:F0} s") : (false, "no lease yet");
        }
        string? host, machine;
        int pid;
        long start;
        try
        {
            host = lease["host"]?.GetValue<string>();
            machine = lease["machine"]?.GetValue<string>();
            pid = lease["pid"]?.GetValue<int>() ?? -1;
            start = lease["startTicks"]?.GetValue<long>() ?? -1;
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            return (false, $"unreadable lease ({e.Message}); left alone");
        }
        if (host == Environment.MachineName && machine is not null && machine == ThisMachine && !ThisMachine.Contains('?'))
        {
            var now = ProcessStartTicks(pid);
            if (now is null) return (true, $"process {pid} on this host no longer exists");
            if (now != start) return (true, $"process {pid} on this host is another process now");
            return (false, $"process {pid} on this host is alive");
        }
        // Another host (or one we cannot prove is this one): the lease expires when its heartbeat has not changed for
        // Expiry, measured on this worker's own monotonic clock (no comparison of two hosts' wall clocks).
        var beat = lease.ToJsonString();
        lock (Observed)
        {
            if (!Observed.TryGetValue(ownerDirectory, out var seen) || seen.Beat != beat)
            {
                Observed[ownerDirectory] = (beat, System.Diagnostics.Stopwatch.StartNew());
                return (false, $"host {host}: heartbeat seen changing");
            }
            var silence = seen.Since.Elapsed;
            return silence > Expiry ? (true, $"host {host}: heartbeat unchanged for {silence.TotalSeconds:F0} s (lease {Expiry.TotalSeconds:F0} s)")
                                    : (false, $"host {host}: heartbeat unchanged for {silence.TotalSeconds:F0} s, within the lease");
        }
    }

    /// <summary>The last lease content seen per owner folder and since when (this worker's monotonic clock).</summary>
    private static readonly Dictionary<string, (string Beat, System.Diagnostics.Stopwatch Since)> Observed = new();
}

/// <summary><c>rf worker --spool DIR [--once]</c> as a <see cref="BackgroundService"/>: at start-up resumes the jobs left in
/// <c>running/</c> by a graceful stop, then claims inbox jobs one at a time (atomic rename into <c>running/</c>). A job file is
/// a full rf configuration plus <c>"Command": "train" | "compare"</c> (and, for compare, optional <c>"Seeds"</c>, default 2), or
/// <c>"Command": "verify"</c> with a <c>"Verify"</c> section (<see cref="VerifyHandler.FromJob"/>).
/// Ctrl-C / SIGTERM cancels the running job, whose trainer writes a checkpoint; the job stays in <c>running/</c>.</summary>
public sealed class SpoolWorker(WorkerSettings settings, IHostApplicationLifetime lifetime, ILogger<SpoolWorker> logger) : BackgroundService
{
    private readonly Spool _spool = new(settings.SpoolDirectory);
    private WorkerLease? _lease;

    public int JobsDone { get; private set; }
    public int JobsFailed { get; private set; }

    /// <summary>True when the worker loop itself stopped on an unexpected error (not a job's failure, which
    /// <see cref="JobsFailed"/> counts): <c>rf worker</c> then exits non-zero too.</summary>
    public bool StoppedByError { get; private set; }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.Factory.StartNew(() => Loop(stoppingToken), stoppingToken, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>Moves the jobs of owners that are provably gone (or whose lease expired), and jobs left directly in
    /// <c>running/</c> by an older version, into this worker's folder: one atomic rename per job, so one worker wins.</summary>
    private List<string> TakeOverOrphans()
    {
        var taken = new List<string>();
        var sources = new List<(string Directory, string Why)>();
        if (Spool.Jobs(_spool.Running).Length > 0) sources.Add((_spool.Running, "left in running/ by an older worker"));
        foreach (var owner in _spool.Owners())
        {
            if (owner == _lease!.Directory) continue;
            var (gone, why) = WorkerLease.IsGone(owner);
            if (gone) sources.Add((owner, why));
        }
        foreach (var (directory, why) in sources)
        {
            foreach (var job in Spool.Jobs(directory))
            {
                var target = Path.Combine(_lease!.Directory, Path.GetFileName(job));
                try
                {
                    File.Move(job, target, overwrite: false); // the claim: one taker wins
                }
                catch (IOException)
                {
                    continue; // another worker took it first
                }
                // The winner then moves the side files; losers never delete a folder that still holds them (below).
                var name = Path.GetFileNameWithoutExtension(job);
                foreach (var side in new[] { SideFile(name, ".run"), SideFile(name, ".attempts") })
                {
                    var from = Path.Combine(directory, side);
                    if (File.Exists(from))
                        try { File.Move(from, Path.Combine(_lease.Directory, side), overwrite: true); }
                        catch (IOException e) { logger.LogWarning("worker: {Side} of {Job} not moved: {Reason}", side, name, e.Message); }
                }
                logger.LogInformation("worker: took over interrupted job {Job} ({Why})", Path.GetFileName(job), why);
                taken.Add(target);
            }
            if (directory != _spool.Running) RemoveIfOnlyLease(directory);
        }
        return taken;
    }

    /// <summary>Removes an owner folder that holds nothing but its lease (never recursively: side files of a job being
    /// taken over by another worker may still be there).</summary>
    private static void RemoveIfOnlyLease(string directory)
    {
        try
        {
            var entries = System.IO.Directory.GetFileSystemEntries(directory).Select(Path.GetFileName).ToArray();
            if (entries.All(e => e is WorkerLease.FileName or WorkerLease.FileName + ".tmp"))
            {
                foreach (var e in entries) File.Delete(Path.Combine(directory, e!));
                System.IO.Directory.Delete(directory, recursive: false);
            }
        }
        catch (IOException) { }
    }

    /// <summary>The job this worker is running (fencing: if another worker took it over, the heartbeat notices and this
    /// process exits at once, writing nothing more).</summary>
    private volatile string? _current;

    /// <summary>Exit code of a worker that found its running job taken over (it stops without writing anything).</summary>
    public const int FencedExitCode = 75;

    private void Heartbeat()
    {
        try
        {
            _lease?.Beat();
            if (_current is { } job && !File.Exists(job))
            {
                // Fencing: another worker owns the job and resumes it from the shared run directory. A graceful stop
                // would write an interruption checkpoint there; this process writes nothing more and exits at once.
                logger.LogError("worker: {Job} was taken over by another worker (this one was presumed gone); exiting at once without writing anything (exit {Code})",
                    Path.GetFileName(job), FencedExitCode);
                Console.Error.WriteLine($"rf worker: {Path.GetFileName(job)} was taken over by another worker; exiting at once without writing anything (exit {FencedExitCode})");
                Serilog.Log.CloseAndFlush();
                Infrastructure.NativeProcess.ExitImmediately(FencedExitCode);
            }
        }
        catch (Exception e)
        {
            logger.LogError("worker: heartbeat failed: {Reason}", e.Message);
        }
    }

    private void Loop(CancellationToken stoppingToken)
    {
        // The job thread formats invariantly even where the worker is hosted without rf's Main (which sets the default).
        System.Globalization.CultureInfo.CurrentCulture = System.Globalization.CultureInfo.InvariantCulture;
        System.Globalization.CultureInfo.CurrentUICulture = System.Globalization.CultureInfo.InvariantCulture;
        var heartbeat = new Timer(_ => Heartbeat(), null, WorkerLease.HeartbeatInterval, WorkerLease.HeartbeatInterval);
        try
        {
            _spool.Create();
            _lease = new WorkerLease(_spool);
            logger.LogInformation("worker: spool {Spool}{Once}, owner {Owner}", _spool.Root, settings.Once ? " (--once)" : "", Path.GetFileName(_lease.Directory));
            foreach (var job in TakeOverOrphans())
            {
                if (stoppingToken.IsCancellationRequested) return;
                logger.LogInformation("worker: resuming interrupted job {Job}", Path.GetFileName(job));
                Process(job, stoppingToken);
            }
            var waiting = new HashSet<string>();
            var reported = new HashSet<string>();
            while (!stoppingToken.IsCancellationRequested)
            {
                // Entries of the inbox that are not jobs are reported once each, never silently ignored.
                foreach (var (entry, why) in _spool.NotJobs())
                    if (reported.Add(entry))
                        logger.LogWarning("worker: inbox/{Entry} ignored: {Why}", Path.GetFileName(entry), why);
                // A same-named job already claimed elsewhere waits in the inbox (its results would collide), logged once.
                var next = Spool.Jobs(_spool.Inbox).FirstOrDefault(j => !_spool.IsRunning(Path.GetFileName(j)));
                foreach (var blocked in Spool.Jobs(_spool.Inbox).Where(j => _spool.IsRunning(Path.GetFileName(j))))
                    if (waiting.Add(blocked))
                        logger.LogWarning("worker: {Job} waits: a job of the same name is running", Path.GetFileName(blocked));
                if (next is null)
                {
                    if (settings.Once) break;
                    stoppingToken.WaitHandle.WaitOne(settings.PollInterval);
                    foreach (var job in TakeOverOrphans()) Process(job, stoppingToken);
                    continue;
                }
                foreach (var job in TakeOverOrphans()) Process(job, stoppingToken); // interrupted jobs are not starved
                var claimed = Path.Combine(_lease.Directory, Path.GetFileName(next));
                try
                {
                    if (!System.IO.Directory.Exists(_lease.Directory)) _lease.Beat(); // our folder was removed: re-create it
                    File.Move(next, claimed, overwrite: false); // atomic rename on one file system: one worker wins
                }
                catch (IOException e)
                {
                    if (File.Exists(next) && !File.Exists(claimed))
                    {
                        // Not a lost race: say why, and wait before trying again (no silent spin).
                        logger.LogError("worker: cannot claim {Job}: {Reason}", Path.GetFileName(next), e.Message);
                        stoppingToken.WaitHandle.WaitOne(settings.PollInterval);
                    }
                    continue; // taken by another worker
                }
                logger.LogInformation("worker: claimed {Job}", Path.GetFileName(claimed));
                Process(claimed, stoppingToken);
            }
        }
        catch (Exception e)
        {
            StoppedByError = true;
            logger.LogError(e, "worker: stopped by an unexpected error: {Reason}", e.Message);
        }
        finally
        {
            // Stop the heartbeat first (it would re-create the folder), then remove an owner folder with nothing
            // interrupted in it; one with an interrupted job stays for the next start.
            using (var stopped = new ManualResetEvent(false))
                if (heartbeat.Dispose(stopped)) stopped.WaitOne(TimeSpan.FromSeconds(5));
            if (_lease is not null && Spool.Jobs(_lease.Directory).Length == 0)
                try { System.IO.Directory.Delete(_lease.Directory, recursive: true); } catch (IOException) { }
            if (settings.Once || !stoppingToken.IsCancellationRequested) lifetime.StopApplication();
        }
    }

    /// <summary>Starts of one job (this one included) after which it goes to <c>failed/</c> instead of running again: a job
    /// whose process is killed every time (out of memory) must not block the queue forever.</summary>
    public const int MaxAttempts = 3;

    /// <summary>The attempt file: starts without finishing, and the run directory's <see cref="ProgressSignature"/> at the
    /// last start (null in files written before it, or before the run directory existed).</summary>
    private static (int Attempts, string? Signature) ReadAttempts(string path)
    {
        if (!File.Exists(path)) return (0, null);
        var parts = File.ReadAllText(path).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        int count = parts.Length > 0 && int.TryParse(parts[0], System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var a) ? a : 0;
        var signature = parts.Skip(1).FirstOrDefault(p => p.StartsWith("progress=", StringComparison.Ordinal))?["progress=".Length..];
        return (count, signature);
    }

    private static void WriteAttempts(string path, int attempts, string? signature) =>
        File.WriteAllText(path, attempts.ToString(System.Globalization.CultureInfo.InvariantCulture) + (signature is null ? "" : " progress=" + signature) + "\n");

    /// <summary>What a job has durably done in its run directory, as a SHA-256: the names and sizes of its checkpoints
    /// (<c>checkpoint-*.bin</c>) and of the files in its certificates' tile folders (<c>certificate-*</c>: Gram and
    /// factor tiles), and the content of those folders' manifests (the recorded factorisation outcomes and estimates).
    /// Row files and Theorem P's factor tiles are left out: their folders get fresh names at every start. Two starts
    /// with the same signature made no progress between them.</summary>
    public static string ProgressSignature(string runDirectory)
    {
        var lines = new List<string>();
        foreach (var file in Directory.EnumerateFiles(runDirectory, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(runDirectory, file);
            var name = Path.GetFileName(file);
            var inCertificate = relative.Split(Path.DirectorySeparatorChar).Any(part => part.StartsWith("certificate-", StringComparison.Ordinal));
            bool checkpoint = name.StartsWith("checkpoint-", StringComparison.Ordinal) && name.EndsWith(".bin", StringComparison.Ordinal);
            if (!checkpoint && !inCertificate) continue;
            if (name.EndsWith(".partial", StringComparison.Ordinal)) continue; // a write the kill interrupted
            try
            {
                lines.Add(name == "manifest.txt" && inCertificate
                    ? relative + " " + File.ReadAllText(file)
                    : relative + " " + new FileInfo(file).Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            catch (IOException) { } // removed while we looked
        }
        lines.Sort(StringComparer.Ordinal);
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(string.Join("\n", lines))))[..16].ToLowerInvariant();
    }

    /// <summary>A side file name for a job: <c>NAME + suffix</c>, shortened with a hash when it would exceed the file
    /// system's 255-byte limit (a 250-character job name must still get its error file).</summary>
    private static string SideFile(string name, string suffix)
    {
        var candidate = name + suffix;
        if (System.Text.Encoding.UTF8.GetByteCount(candidate) <= 255) return candidate;
        var hash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(name)))[..12].ToLowerInvariant();
        return new string(name.Take(120).ToArray()) + "~" + hash + suffix;
    }

    private void Fail(string jobPath, string name, string reason, Exception? e, params string[] cleanup)
    {
        _current = null; // the job leaves this worker's folder: not a takeover
        JobsFailed++;
        logger.LogError("worker: {Job} failed: {Reason}", name, reason);
        try
        {
            File.WriteAllText(Path.Combine(_spool.Failed, SideFile(name, ".error.txt")), e is null ? reason + "\n" : $"{e.GetType().Name}: {reason}\n\n{e}\n");
        }
        catch (IOException io)
        {
            // A full disk: say so in the log, and leave no empty error file that would hide the reason.
            logger.LogError("worker: {Job}: the error file could not be written ({Reason}); the reason was: {Failure}", name, io.Message, reason);
            try { File.Delete(Path.Combine(_spool.Failed, SideFile(name, ".error.txt"))); } catch (IOException) { }
        }
        try { File.Move(jobPath, Path.Combine(_spool.Failed, Path.GetFileName(jobPath)), overwrite: true); }
        catch (IOException) { }
        Cleanup(cleanup);
    }

    private void Process(string jobPath, CancellationToken stoppingToken)
    {
        var name = Path.GetFileNameWithoutExtension(jobPath);
        var owner = Path.GetDirectoryName(jobPath)!;
        var configPath = Path.Combine(owner, SideFile(name, ".config.json"));
        var runPathFile = Path.Combine(owner, SideFile(name, ".run"));
        var attemptsFile = Path.Combine(owner, SideFile(name, ".attempts"));
        // The attempt counter lives beside the job (it moves with it on takeover): a job that killed its worker
        // MaxAttempts times without progress is failed, not started again. Progress (a new checkpoint, a certificate's
        // tile or recorded outcome since the last start: ProgressSignature) resets it, so a long job on a machine that
        // is stopped now and then (a session's end, a preempted node) goes on, and one killed at the same point each
        // time (out of memory) does not.
        var (previous, previousSignature) = ReadAttempts(attemptsFile);
        var knownRun = File.Exists(runPathFile) ? File.ReadAllText(runPathFile).Trim() : null;
        if (knownRun is not null && !Directory.Exists(knownRun)) knownRun = null;
        string? signature = null;
        try
        {
            if (knownRun is not null) signature = ProgressSignature(knownRun);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // an unreadable run directory must not stop the worker (before the counter is written, every restart would
            // take the job over and stop again): the start counts, with no progress known
            logger.LogWarning("worker: {Job}: its progress could not be read ({Reason}); this start counts as one without progress", name, e.Message);
        }
        if (previous > 0 && signature is not null && previousSignature is not null && signature != previousSignature)
        {
            logger.LogInformation("worker: {Job} made progress since its last start ({Starts} start(s) without finishing): its attempt counter starts afresh",
                name, previous);
            previous = 0;
        }
        int attempts = previous + 1;
        if (attempts > MaxAttempts)
        {
            // The run directory keeps what the job did (checkpoints, certificate tiles): named, so that it can be resumed
            // by hand once the cause is fixed (a new job in the inbox starts a new run directory).
            var resumeHint = knownRun is not null
                ? $"; its run directory {knownRun} keeps its checkpoints and tiles (`rf train --resume` / `rf compare --resume` continue it)"
                : "";
            Fail(jobPath, name, $"started {MaxAttempts} times without finishing or progress (its worker was killed each time: out of memory?); not started again{resumeHint}", null,
                 configPath, runPathFile, attemptsFile);
            return;
        }
        WriteAttempts(attemptsFile, attempts, signature);
        _current = jobPath;
        try
        {
            var (command, seeds) = JobFile.WriteConfig(jobPath, configPath);
            var input = new ConfigurationInput(configPath, []);
            string? runDirectory = knownRun; // read above (null when it names no existing folder)
            // A verify job is no training configuration: its "Verify" section is read on its own (a bad one fails here).
            var verify = command == "verify" ? VerifyHandler.FromJob(configPath) : default;
            if (command == "verify" && (runDirectory is null || !Directory.Exists(runDirectory)))
            {
                runDirectory = Path.GetFullPath(Path.Combine(verify.RunsDirectory,
                    $"verify-{name}-{DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", System.Globalization.CultureInfo.InvariantCulture)}"));
                Directory.CreateDirectory(runDirectory);
                File.WriteAllText(runPathFile, runDirectory);
            }
            if (runDirectory is null || !Directory.Exists(runDirectory))
            {
                var options = RfOptions.Load(RfConfiguration.Build(input)); // a bad config fails here, before anything is created
                Infrastructure.KernelSelfCheck.Ensure(options); // so the new run directory records the kernel path of this job
                runDirectory = RunDirectory.Create(options).Path;
                File.WriteAllText(runPathFile, runDirectory);
            }
            logger.LogInformation("worker: {Job}: {Command} in {RunDirectory}", name, command, runDirectory);
            int code = command switch
            {
                "train" => TrainHandler.Execute(input, runDirectory, stoppingToken, showProgress: false).ExitCode,
                "compare" => CompareHandler.Execute(input, seeds, runDirectory, stoppingToken, showProgress: false).ExitCode,
                // Resumes by itself: the run directory holds the same plan, the finished batches are skipped.
                "verify" => VerifyHandler.Execute(verify.Arguments, runDirectory, stoppingToken),
                _ => throw new ConfigurationException($"Command: unknown command '{command}' (expected train, compare or verify)"),
            };
            if (!File.Exists(jobPath))
            {
                logger.LogError("worker: {Job} belongs to another worker now; no result written by this one", name);
                return;
            }
            if (code == ExitCodes.Interrupted)
            {
                logger.LogWarning("worker: {Job} interrupted; it stays in running/ and resumes at the next start", name);
                WriteAttempts(attemptsFile, attempts - 1, signature); // a graceful stop is no failed attempt
                return;
            }
            if (code != ExitCodes.Success)
            {
                // A command that ends neither done nor interrupted is a failed job (counted, in failed/, exit non-zero).
                Fail(jobPath, name, $"{command} exited with code {code}", null, configPath, runPathFile, attemptsFile);
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
            _current = null; // the job leaves this worker's folder now: the heartbeat must not read that as a takeover
            try
            {
                File.Move(jobPath, Path.Combine(_spool.Done, Path.GetFileName(jobPath)), overwrite: true); // the commit: atomic
            }
            catch (FileNotFoundException)
            {
                logger.LogError("worker: {Job} was taken over just before it finished; no result written by this one", name);
                return;
            }
            File.WriteAllText(Path.Combine(_spool.Done, SideFile(name, ".result.json")), result.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            Cleanup(configPath, runPathFile, attemptsFile);
            JobsDone++;
            logger.LogInformation("worker: {Job} done ({RunDirectory})", name, runDirectory);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopped (SIGTERM) before the trainer could checkpoint: the job stays where it is.
            if (File.Exists(jobPath))
                WriteAttempts(attemptsFile, attempts - 1, signature);
            logger.LogWarning("worker: {Job} cancelled before it finished; it stays in running/", name);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            if (File.Exists(jobPath)) Fail(jobPath, name, e.Message, e, configPath, runPathFile, attemptsFile);
            else logger.LogError("worker: {Job} failed after another worker took it over: {Reason}", name, e.Message);
        }
        finally
        {
            _current = null;
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
