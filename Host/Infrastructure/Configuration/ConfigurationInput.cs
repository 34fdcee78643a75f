namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>What the command line contributes to configuration: a <c>--config FILE</c> and <c>--set Section:Key=value</c> overrides.</summary>
public sealed record ConfigurationInput(string? ConfigFile, IReadOnlyList<string> Overrides)
{
    public static readonly ConfigurationInput None = new(null, []);
}
