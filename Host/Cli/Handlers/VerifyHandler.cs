using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.Host.Training;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf verify</c>: the property suite as a verification job. The properties are the CI suite's own code
/// (Properties/), run by the property runner in its verification mode (<c>Properties --verify</c>, Properties/Verify/Runner.fs)
/// as a child process, once per device of <c>--device</c> (with <c>RF_TEST_DEVICE</c> and <c>RF_SIZE_SCALE</c> set for it);
/// the runner writes the report (<c>summary.md</c>, <c>summary.json</c>), the state (<c>verify.json</c>,
/// <c>batches.jsonl</c>) and the failures (<c>failures/*.json</c>) into the run directory. Host does not reference
/// Properties (Properties references Host): the runner is found as a built file.</summary>
public sealed class VerifyHandler
{
    /// <summary>The devices <c>--device</c> accepts.</summary>
    public static readonly string[] KnownDevices = ["cpu", "cuda", "auto"];

    /// <summary><c>rf verify</c> from the command line: Ctrl-C / SIGTERM stops the runner (the finished batches stay;
    /// <c>--resume</c> continues) and exits 130.</summary>
    public int Run(VerifyArguments args)
    {
        using var signal = new ShutdownSignal();
        if (args.Replay is { } replay) return Replay(replay, args.PropertiesPath, signal.Token);
        var runDirectory = args.Resume ?? args.Output
            ?? Path.Combine("runs", "verify-" + DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture));
        return Execute(args, Path.GetFullPath(runDirectory), signal.Token);
    }

    /// <summary>Runs (or continues) the verification in <paramref name="runDirectory"/>: a directory that already holds
    /// the same plan continues from its last finished batch (so a worker that takes the job over resumes it). Returns the
    /// runner's exit code (0 passed, 1 a failure or a vacuous property, 2 bad arguments), or 130 when cancelled.</summary>
    public static int Execute(VerifyArguments args, string runDirectory, CancellationToken cancel)
    {
        var runner = LocateRunner(args.PropertiesPath);
        var planFile = Path.Combine(runDirectory, "verify.json");
        string[] devices;
        double sizeScale;
        if (args.Resume is not null)
        {
            if (!File.Exists(planFile))
                throw new ConfigurationException($"--resume {runDirectory}: not a verification run (no verify.json)");
            var plan = JsonNode.Parse(File.ReadAllText(planFile))!;
            devices = plan["devices"]!.AsArray().Select(d => d!.GetValue<string>()).ToArray();
            sizeScale = plan["sizeScale"]!.GetValue<double>();
        }
        else
        {
            devices = Resolve(Devices(args.Devices));
            sizeScale = args.SizeScale ?? 1.0;
        }
        var deadline = args.Time is { } time ? Stopwatch.StartNew() : null;
        var budget = args.Time is { } t ? ParseDuration(t) : (double?)null;
        int worst = ExitCodes.Success;
        foreach (var device in devices)
        {
            var arguments = new List<string> { "--verify", "--run-dir", runDirectory, "--devices", string.Join(",", devices), "--parent-watch" };
            if (args.Resume is not null) arguments.Add("--resume");
            else
            {
                foreach (var f in args.Filters) { arguments.Add("--filter"); arguments.Add(f); }
                if (args.Cases is { } cases) { arguments.Add("--cases"); arguments.Add(cases); }
                if (args.Batch is { } batch) { arguments.Add("--batch"); arguments.Add(batch.ToString(CultureInfo.InvariantCulture)); }
                arguments.Add("--seed");
                arguments.Add(args.Seed.ToString(CultureInfo.InvariantCulture));
            }
            if (budget is { } seconds)
            {
                var left = seconds - deadline!.Elapsed.TotalSeconds;
                if (left <= 0) break;
                arguments.Add("--time");
                arguments.Add(left.ToString("R", CultureInfo.InvariantCulture) + "s");
            }
            var environment = new Dictionary<string, string?>
            {
                ["RF_TEST_DEVICE"] = device,
                ["RF_SIZE_SCALE"] = sizeScale.ToString("R", CultureInfo.InvariantCulture),
                // The CI counts are the baseline of --cases Nx, and every case comes from its batch seed.
                ["RF_CASES_SCALE"] = null,
                ["RF_REPLAY_SEED"] = null,
            };
            var code = RunChild(runner, arguments, environment, cancel);
            if (code == ExitCodes.Interrupted)
            {
                Console.Error.WriteLine($"rf verify: stopped; the finished batches are kept: continue with rf verify --resume {runDirectory}");
                return ExitCodes.Interrupted;
            }
            if (code == ExitCodes.Usage) return code;
            worst = Math.Max(worst, code);
        }
        return worst;
    }

    /// <summary><c>rf verify --replay FILE</c>: the saved batch again, on the device and size scale it ran at; exit 1 when
    /// the failure reproduces, 0 when the property now passes.</summary>
    public static int Replay(string failureFile, string? propertiesPath, CancellationToken cancel)
    {
        var runner = LocateRunner(propertiesPath);
        if (!File.Exists(failureFile)) throw new FileNotFoundException($"{failureFile}: no such failure file", failureFile);
        JsonNode node;
        try
        {
            node = JsonNode.Parse(File.ReadAllText(failureFile)) ?? throw new InvalidDataException("empty");
        }
        catch (Exception e) when (e is JsonException or InvalidDataException)
        {
            throw new InvalidDataException($"{failureFile} is not a failure file of rf verify: {e.Message}", e);
        }
        var device = node["device"]?.GetValue<string>() ?? throw new InvalidDataException($"{failureFile}: no \"device\": not a failure file of rf verify");
        var scale = node["sizeScale"]?.GetValue<double>() ?? 1.0;
        var environment = new Dictionary<string, string?>
        {
            ["RF_TEST_DEVICE"] = device,
            ["RF_SIZE_SCALE"] = scale.ToString("R", CultureInfo.InvariantCulture),
            ["RF_CASES_SCALE"] = null,
            ["RF_REPLAY_SEED"] = null,
        };
        return RunChild(runner, ["--verify-replay", Path.GetFullPath(failureFile)], environment, cancel);
    }

    /// <summary>The property runner: <paramref name="explicitPath"/> (<c>--properties</c>), else <c>RF_PROPERTIES_DLL</c>,
    /// else <c>Properties/bin/&lt;configuration&gt;/&lt;framework&gt;/Properties.dll</c> of the repository this rf was
    /// built in (the same configuration as rf, Release as a fallback).</summary>
    public static string LocateRunner(string? explicitPath)
    {
        var given = explicitPath ?? Environment.GetEnvironmentVariable("RF_PROPERTIES_DLL");
        if (!string.IsNullOrEmpty(given))
        {
            if (File.Exists(given)) return Path.GetFullPath(given);
            throw new FileNotFoundException($"the property runner {given} does not exist (--properties / RF_PROPERTIES_DLL)", given);
        }
        var baseDirectory = new DirectoryInfo(AppContext.BaseDirectory);
        var framework = baseDirectory.Name;
        var configuration = baseDirectory.Parent?.Name ?? "Release";
        var root = baseDirectory;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "ResearchFramework.sln"))) root = root.Parent;
        if (root is null)
            throw new FileNotFoundException(
                "the property runner Properties.dll was not found (rf is not inside a ResearchFramework checkout): give --properties PATH or set RF_PROPERTIES_DLL");
        var candidates = new[] { configuration, "Release" }.Distinct()
            .Select(c => Path.Combine(root.FullName, "Properties", "bin", c, framework, "Properties.dll")).ToArray();
        return candidates.FirstOrDefault(File.Exists)
               ?? throw new FileNotFoundException(
                   $"the property runner is not built ({candidates[0]} not found): run ./build.sh setup (or give --properties PATH / RF_PROPERTIES_DLL)",
                   candidates[0]);
    }

    /// <summary>Parses a duration: <c>90s</c>, <c>30m</c>, <c>8h</c>, <c>1d</c>, or plain seconds.</summary>
    public static double ParseDuration(string text)
    {
        var t = text.Trim();
        double unit = 1;
        if (t.Length > 0 && "smhd".Contains(t[^1]))
        {
            unit = t[^1] switch { 's' => 1, 'm' => 60, 'h' => 3600, _ => 86400 };
            t = t[..^1];
        }
        return double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var x) && x > 0 && double.IsFinite(x)
            ? x * unit
            : throw new ConfigurationException($"--time {text}: expected a duration such as 90s, 30m, 8h");
    }

    /// <summary>The devices of <c>--device</c> (repeatable, comma-separated), each cpu, cuda or auto; default cpu.</summary>
    public static string[] Devices(IEnumerable<string> given)
    {
        var devices = given.SelectMany(d => d.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .Select(d => d.ToLowerInvariant()).Distinct().ToArray();
        foreach (var d in devices)
            if (!KnownDevices.Contains(d)) throw new ConfigurationException($"--device {d}: expected cpu, cuda or auto");
        return devices.Length == 0 ? ["cpu"] : devices;
    }

    /// <summary>The devices as they will run: <c>auto</c> becomes cuda or cpu (whichever <c>auto</c> picks here), duplicates
    /// go; <c>cuda</c> without CUDA is refused before anything runs.</summary>
    public static string[] Resolve(string[] devices) =>
        devices.Select(d =>
        {
            if (d == "cpu") return d;
            try
            {
                return ResearchFramework.MathCore.TorchEnvironment.selectDevice(d).type == TorchSharp.DeviceType.CUDA ? "cuda" : "cpu";
            }
            catch (ArgumentException e)
            {
                throw new ConfigurationException($"--device {d}: {e.Message.Split(" (Parameter")[0]}; the devices here: cpu", e);
            }
        }).Distinct().ToArray();

    /// <summary>A verify job of the spool worker: <c>{"Command": "verify", "Verify": {"Filters": [...], "Cases": "10x",
    /// "Time": "1h", "Batch": 5, "SizeScale": 1, "Devices": ["cpu"], "Seed": 1, "RunsDirectory": "runs"}}</c>, every key
    /// optional; read from the job's configuration part (<paramref name="configPath"/>). Returns the arguments and the
    /// folder to create the run directory in.</summary>
    public static (VerifyArguments Arguments, string RunsDirectory) FromJob(string configPath)
    {
        var root = JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject
                   ?? throw new ConfigurationException("verify job: expected a JSON object");
        foreach (var key in root.Select(p => p.Key))
            if (key != "Verify") throw new ConfigurationException($"verify job: unknown key '{key}' (expected \"Command\" and \"Verify\")");
        var v = root["Verify"] as JsonObject ?? new JsonObject();
        string[] known = ["Filters", "Cases", "Time", "Batch", "SizeScale", "Devices", "Seed", "RunsDirectory"];
        foreach (var key in v.Select(p => p.Key))
            if (!known.Contains(key)) throw new ConfigurationException($"Verify:{key}: unknown key (known: {string.Join(", ", known)})");
        T? Get<T>(string key)
        {
            try { return v[key] is { } n ? n.GetValue<T>() : default; }
            catch (Exception e) when (e is InvalidOperationException or FormatException)
            {
                throw new ConfigurationException($"Verify:{key}: expected a {typeof(T).Name}", e);
            }
        }
        string[] Strings(string key) =>
            v[key] is JsonArray a ? a.Select(n => n!.GetValue<string>()).ToArray()
            : v[key] is null ? [] : throw new ConfigurationException($"Verify:{key}: expected an array of strings");
        var args = new VerifyArguments(Strings("Filters"), Get<string>("Cases"), Get<string>("Time"), v["Batch"] is null ? null : Get<int>("Batch"),
            v["SizeScale"] is null ? null : Get<double>("SizeScale"), Strings("Devices"),
            v["Seed"] is null ? 1 : Get<long>("Seed"), null, null, null, null);
        return (args, Get<string>("RunsDirectory") ?? "runs");
    }

    private static int RunChild(string runner, IEnumerable<string> arguments, Dictionary<string, string?> environment, CancellationToken cancel)
    {
        // The runner's own executable (apphost) beside the dll when there is one, else `dotnet Properties.dll`.
        var apphost = Path.Combine(Path.GetDirectoryName(runner)!, Path.GetFileNameWithoutExtension(runner));
        var info = File.Exists(apphost) && !OperatingSystem.IsWindows()
            ? new ProcessStartInfo(apphost)
            : new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet") { ArgumentList = { runner } };
        foreach (var a in arguments) info.ArgumentList.Add(a);
        foreach (var (k, v) in environment)
            if (v is null) info.Environment.Remove(k);
            else info.Environment[k] = v;
        // Standard input stays open while rf lives: the runner (--parent-watch) stops when it closes, so a killed rf
        // leaves no runner behind. Output goes straight to rf's own (the progress lines).
        info.RedirectStandardInput = true;
        info.UseShellExecute = false;
        using var child = Process.Start(info) ?? throw new InvalidOperationException($"could not start {info.FileName}");
        using var stop = cancel.Register(() =>
        {
            try { child.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        });
        child.WaitForExit();
        return cancel.IsCancellationRequested ? ExitCodes.Interrupted : child.ExitCode;
    }
}
