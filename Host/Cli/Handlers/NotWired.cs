namespace ResearchFramework.Host.Cli.Handlers;

/// <summary>The message and exit code of a command whose work is not wired yet.</summary>
internal static class NotWired
{
    public static int Report(string command, string? detail = null)
    {
        Console.Error.WriteLine($"rf {command}: not wired yet{(detail is null ? "" : $" ({detail})")}");
        return ExitCodes.NotWired;
    }
}
