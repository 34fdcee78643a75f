namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf worker</c>. Stage 1: "not wired yet".</summary>
public sealed class WorkerHandler
{
    public int Run(WorkerArguments args) => NotWired.Report("worker", $"spool {args.SpoolDirectory}");
}
