namespace ResearchFramework.Host.Cli;

/// <summary>Process exit codes of <c>rf</c>.</summary>
public static class ExitCodes
{
    public const int Success = 0;
    /// <summary>The work failed (bad data, failed download, …).</summary>
    public const int Failure = 1;
    /// <summary>Invalid command line or configuration; nothing was done.</summary>
    public const int Usage = 2;
    /// <summary>Stopped by Ctrl-C / SIGTERM after writing a checkpoint; resume with <c>--resume RUN_DIR</c>.</summary>
    public const int Interrupted = 130;
}
