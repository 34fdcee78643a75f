using System.CommandLine;
using System.CommandLine.Help;

namespace ResearchFramework.Host.Infrastructure;

/// <summary>libtorch's load (≈ 0.35 s of <c>dlopen</c> and relocations, one core) started on another thread as soon as
/// the arguments name a command that computes, so that it overlaps what the command does before its first tensor
/// (parsing, checks, opening and hashing its input files; <c>rf certify --matrix</c> hashes the whole file). The first
/// TorchSharp call on the command's thread waits for the load, as for any type initialiser; a load that fails raises the
/// same error there as it would have without the preload. <see cref="Finish"/> waits for it before the process exits, so
/// that no exit runs while a library is half loaded.</summary>
public static class TorchPreload
{
    /// <summary>The commands that use TorchSharp (every one but <c>data</c> and the help).</summary>
    private static readonly HashSet<string> Computing =
        ["main", "train", "compare", "certify", "export", "prove", "fc", "verify", "worker", "env"];

    /// <summary>Starts the load for a parse result that will run a computing command; null otherwise.</summary>
    public static Task? StartIfNeeded(ParseResult parse)
    {
        if (parse.Errors.Count > 0 || parse.Action is HelpAction) return null;
        if (!Computing.Contains(parse.CommandResult.Command.Name)) return null;
        if (RunsWithoutTorch(parse)) return null;
        WarmFileAndHash();
        return Task.Run(() => TorchSharp.torch.InitializeDeviceType(TorchSharp.DeviceType.CPU));
    }

    /// <summary>Whether the command is <c>rf certify --matrix</c> on the dense engine (no <c>--engine tiled|scalapack</c>)
    /// with OpenBLAS as the kernels' backend: it runs without libtorch (<see cref="ResearchFramework.MathCore.DenseNative"/>);
    /// a route that needs libtorch after all (the orthogonal route, <c>auto</c> choosing tiles for a large n) loads it on
    /// first use. A bad <c>RF_BLAS</c> is left for the command to report: preload as before.</summary>
    private static bool RunsWithoutTorch(ParseResult parse)
    {
        if (parse.CommandResult.Command.Name != "certify") return false;
        var options = parse.CommandResult.Children.OfType<System.CommandLine.Parsing.OptionResult>().ToList();
        if (!options.Any(o => o.Option.Name is "--matrix" or "matrix")) return false;
        var engine = options.FirstOrDefault(o => o.Option.Name is "--engine" or "engine")?.Tokens.FirstOrDefault()?.Value;
        if (engine is not null && !engine.Equals("dense", StringComparison.OrdinalIgnoreCase) && !engine.Equals("auto", StringComparison.OrdinalIgnoreCase))
            return false;
        try { return ResearchFramework.MathCore.DenseNative.available(); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException) { return false; }
    }

    /// <summary>The native entry points a command uses before its first tensor (file open, stat, positioned read; libc's
    /// stat of <see cref="FileChecks"/>; SHA-256 through OpenSSL, itself a library load), resolved before the load starts: while <c>dlopen</c> relocates libtorch
    /// it holds the dynamic loader's lock, and a first call of any of them (its <c>dlsym</c>) would wait for the whole
    /// load (measured: <c>rf certify --matrix</c> blocked ≈ 0.37 s in its first <c>stat</c> of its input file).</summary>
    private static void WarmFileAndHash()
    {
        try
        {
            var path = typeof(TorchPreload).Assembly.Location;
            _ = File.Exists(path) && Directory.Exists(Path.GetDirectoryName(path)) && new FileInfo(path).Length > 0;
            _ = FileChecks.IsRegularFile(path) && FileChecks.IsRegularFile(path, followLinks: false);
            using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 20))
                System.Security.Cryptography.SHA256.HashData(stream);
            using var handle = File.OpenHandle(path);
            Span<byte> head = stackalloc byte[64];
            RandomAccess.Read(handle, head, 0);
            _ = RandomAccess.GetLength(handle);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>Waits for a started load; its failure, if any, was or will be reported by the command itself.</summary>
    public static void Finish(Task? preload)
    {
        if (preload is null) return;
        try { preload.Wait(); }
        catch (AggregateException) { }
    }
}
