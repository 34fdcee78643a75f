using System.CommandLine;
using ResearchFramework.Host.Infrastructure.Configuration;

namespace ResearchFramework.Host.Cli;

/// <summary>The <c>--config</c> / <c>--set</c> pair shared by commands that read configuration.</summary>
public sealed class CommonOptions
{
    public CommonOptions(bool configRequired)
    {
        Config = new Option<FileInfo>("--config", "-c")
        {
            Description = "JSON configuration file (sections Data, Model, Training, Recipe, Run)",
            Required = configRequired,
        };
        Set = new Option<string[]>("--set")
        {
            Description = "override one key, Section:Key=value (repeatable), e.g. --set Training:LearningRate=0.01",
            AllowMultipleArgumentsPerToken = false,
            DefaultValueFactory = _ => [],
        };
    }

    public Option<FileInfo> Config { get; }
    public Option<string[]> Set { get; }

    public void AddTo(Command command)
    {
        command.Options.Add(Config);
        command.Options.Add(Set);
    }

    public ConfigurationInput Read(ParseResult result) =>
        new(result.GetValue(Config)?.FullName, result.GetValue(Set) ?? []);
}
