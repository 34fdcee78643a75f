using Microsoft.Extensions.DependencyInjection;
using ResearchFramework.Host.Data.Fetch;
using ResearchFramework.Host.Infrastructure;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf data fetch NAME</c>: fetches into <c>--data-dir</c> (else <c>Data:DataDirectory</c>) and writes the manifest.</summary>
public sealed class DataFetchHandler
{
    public int Run(DataFetchArguments args)
    {
        using var app = RfApplication.Start(args.Configuration, createRunDirectory: false);
        var directory = args.DataDirectory ?? app.Options.Data.DataDirectory;
        var outcome = app.Services.GetRequiredService<DatasetFetcher>().Fetch(args.Name, directory, args.Own);
        Console.WriteLine($"{args.Name}: {outcome} ({Path.GetFullPath(Path.Combine(directory, args.Name.ToLowerInvariant()))})");
        return ExitCodes.Success;
    }
}
