using ResearchFramework.Host.Infrastructure.Configuration;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf train</c>. Stage 1: validates the configuration (so a bad key fails now), then reports "not wired yet".
/// The training stage will replace the body with: <c>using var app = RfApplication.Start(args.Configuration, createRunDirectory: true)</c>,
/// <c>DatasetCatalog.Load</c>, <c>TensorBatches.Enumerate</c>, <c>app.Metrics.Write</c>, <c>MetricPlots.*</c>.</summary>
public sealed class TrainHandler
{
    public int Run(TrainArguments args)
    {
        RfOptions.Load(RfConfiguration.Build(args.Configuration));
        return NotWired.Report("train", "configuration is valid");
    }
}
