using ResearchFramework.Host.Infrastructure.Configuration;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf compare</c>. Stage 1: validates the configuration, then reports "not wired yet".</summary>
public sealed class CompareHandler
{
    public int Run(CompareArguments args)
    {
        RfOptions.Load(RfConfiguration.Build(args.Configuration));
        return NotWired.Report("compare", $"configuration is valid, {args.Seeds} seeds");
    }
}
