using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ResearchFramework.Host.Data.Fetch;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.Host.Infrastructure.Logging;
using ResearchFramework.Host.Infrastructure.Runs;
using Serilog;
using ILogger = Microsoft.Extensions.Logging.ILogger;

namespace ResearchFramework.Host.Infrastructure;

/// <summary>Composition root of one <c>rf</c> invocation: layered configuration, validated options (failing before any
/// work with a <see cref="ConfigurationException"/> naming the key), Serilog, DI and, optionally, a fresh run directory
/// with <c>config.effective.json</c>, <c>metrics.jsonl</c>, <c>log.jsonl</c> and TensorBoard events.</summary>
public sealed class RfApplication : IDisposable
{
    private readonly IHost _host;

    private RfApplication(IHost host, RfOptions options, RunDirectory? run)
    {
        _host = host;
        Options = options;
        Run = run;
    }

    public IServiceProvider Services => _host.Services;
    public RfOptions Options { get; }

    /// <summary>The run directory; null unless started with <c>createRunDirectory: true</c>.</summary>
    public RunDirectory? Run { get; }

    /// <summary>The run's metrics writer (registered as a singleton too); null without a run directory.</summary>
    public MetricsWriter? Metrics => Services.GetService<MetricsWriter>();

    public ILogger<T> Logger<T>() => Services.GetRequiredService<ILogger<T>>();

    /// <summary>Builds configuration, validates all options, then (only if valid) creates the run directory and host.</summary>
    /// <param name="input">The <c>--config</c> file and <c>--set</c> overrides.</param>
    /// <param name="createRunDirectory">Create <c>runs/&lt;name&gt;-&lt;timestamp&gt;/</c> with metrics and logs.</param>
    /// <param name="configureServices">Extra registrations (e.g. trainers) by the caller.</param>
    /// <param name="existingRunDirectory">Reuse this run folder (a resume) instead of creating one.</param>
    /// <param name="checkKernels">Run the convolution kernel self-check for this configuration first
    /// (<see cref="KernelSelfCheck"/>): before any training or certification step, and before the run directory exists.</param>
    /// <param name="evaluationOnly">The work only evaluates the network (certification): its training kernels are not checked.</param>
    public static RfApplication Start(ConfigurationInput input, bool createRunDirectory,
        Action<IServiceCollection, RfOptions>? configureServices = null, string? existingRunDirectory = null, bool checkKernels = false,
        bool evaluationOnly = false)
    {
        var configuration = RfConfiguration.Build(input);
        var options = RfOptions.Load(configuration);
        if (existingRunDirectory is not null)
        {
            var stored = Path.Combine(existingRunDirectory, "config.effective.json");
            if (!File.Exists(stored))
                throw new ConfigurationException($"--resume {existingRunDirectory}: not a run directory (no config.effective.json); give the folder rf created for the run");
            ResumeGuard.Check(stored, options);
        }
        if (checkKernels)
        {
            MemoryBudget.EnsureNetworkFits("rf", options); // a network too large to build is refused before anything builds it
            KernelSelfCheck.Ensure(options, trains: !evaluationOnly);
        }
        var run = existingRunDirectory is not null ? RunDirectory.Open(existingRunDirectory)
                : createRunDirectory ? RunDirectory.Create(options) : null;
        if (existingRunDirectory is not null && checkKernels && run is not null)
            run.RecordResume(); // the options on disk stay those that ran; the resume's kernel path is appended

        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings
        {
            EnvironmentName = RfConfiguration.EnvironmentName,
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Configuration.AddConfiguration(configuration);
        builder.Services.AddRfOptions(builder.Configuration);
        builder.Services.AddSerilog(SerilogSetup.Create(run?.LogPath), dispose: true);
        builder.Services.AddSingleton<DatasetFetcher>();
        if (run is not null)
        {
            builder.Services.AddSingleton(run);
            builder.Services.AddSingleton(sp => new MetricsWriter(run.MetricsPath, TryTensorBoard(run, sp.GetRequiredService<ILogger<RfApplication>>())));
        }
        configureServices?.Invoke(builder.Services, options);
        var host = builder.Build();
        host.StartAsync().GetAwaiter().GetResult();
        var app = new RfApplication(host, options, run);
        if (run is not null)
            app.Logger<RfApplication>().LogInformation("run directory {RunDirectory}", run.Path);
        if (checkKernels)
            app.Logger<RfApplication>().LogInformation("environment: {Environment}", MathCore.KernelCheck.environmentLine());
        return app;
    }

    private static TensorBoardScalars? TryTensorBoard(RunDirectory run, ILogger logger)
    {
        try
        {
            return new TensorBoardScalars(run.TensorBoardPath);
        }
        catch (Exception e)
        {
            logger.LogWarning(e, "TensorBoard events disabled: {Reason}", e.Message);
            return null;
        }
    }

    public void Dispose()
    {
        _host.StopAsync().GetAwaiter().GetResult();
        _host.Dispose();
    }
}
