using System.Diagnostics;

namespace ResearchFramework.Host.Data.Fetch;

/// <summary>Runs external tools (npm, apt-get, dpkg, tar) with explicit argument lists.</summary>
public static class ProcessRunner
{
    /// <summary>Full path of the executable <paramref name="tool"/> in the first <em>absolute</em> PATH entry that holds
    /// one, or null. Relative entries (<c>.</c>, empty) are skipped and the working directory is never searched (.NET's
    /// <see cref="Process.Start(ProcessStartInfo)"/> would look there first for a bare name: an <c>./npm</c> would run).</summary>
    public static string? FindOnPath(string tool)
    {
        if (tool.Contains('/')) throw new ArgumentException($"tool '{tool}' must be a bare name, resolved through PATH");
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
        {
            if (!Path.IsPathRooted(dir)) continue;
            var candidate = Path.Combine(dir, tool);
            if (File.Exists(candidate) && IsExecutable(candidate)) return candidate;
        }
        return null;
    }

    private static bool IsExecutable(string file) =>
        OperatingSystem.IsWindows() ||
        (File.GetUnixFileMode(file) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0;

    /// <summary>Runs the tool in <paramref name="workingDirectory"/>; throws <see cref="DataFetchException"/>
    /// with its output when it exits non-zero or exceeds <paramref name="timeout"/>.</summary>
    public static void Run(string tool, IEnumerable<string> arguments, string workingDirectory, TimeSpan timeout)
    {
        var executable = FindOnPath(tool)
            ?? throw new DataFetchException($"`{tool}` not found in any absolute PATH entry (PATH={Environment.GetEnvironmentVariable("PATH")})");
        var info = new ProcessStartInfo(executable)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        var commandLine = $"{executable} {string.Join(' ', info.ArgumentList)}";
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
