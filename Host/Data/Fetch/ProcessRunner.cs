using System.Diagnostics;

namespace ResearchFramework.Host.Data.Fetch;

/// <summary>Runs external tools (npm, apt-get, dpkg, tar) with explicit argument lists.</summary>
public static class ProcessRunner
{
    /// <summary>Full path of <paramref name="tool"/> on PATH, or null.</summary>
    public static string? FindOnPath(string tool)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, tool);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    /// <summary>Runs the tool in <paramref name="workingDirectory"/>; throws <see cref="DataFetchException"/>
    /// with its output when it exits non-zero or exceeds <paramref name="timeout"/>.</summary>
    public static void Run(string tool, IEnumerable<string> arguments, string workingDirectory, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(tool)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        var commandLine = $"{tool} {string.Join(' ', info.ArgumentList)}";
        using var process = Process.Start(info) ?? throw new DataFetchException($"could not start `{commandLine}`");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new DataFetchException($"`{commandLine}` did not finish within {timeout.TotalSeconds:F0} s");
        }
        if (process.ExitCode != 0)
            throw new DataFetchException($"`{commandLine}` (in {workingDirectory}) failed with exit code {process.ExitCode}:\n{stderr.Result}{stdout.Result}".TrimEnd());
    }
}

/// <summary>A dataset could not be fetched; the message says what to do instead.</summary>
public sealed class DataFetchException(string message) : Exception(message);
