namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf prove</c>. Stage 1: "not wired yet".</summary>
public sealed class ProveHandler
{
    public int Run(ProveArguments args) => NotWired.Report("prove");
}
