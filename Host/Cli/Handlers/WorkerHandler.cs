using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Internal;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.Host.Infrastructure.Logging;
using ResearchFramework.Host.Worker;
using Serilog;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf worker --spool DIR [--once]</c>: hosts <see cref="SpoolWorker"/> with the console lifetime (Ctrl-C / SIGTERM
/// stop it gracefully: the running job checkpoints and stays in <c>running/</c>).</summary>
public sealed class WorkerHandler
{
    public int Run(WorkerArguments args)
    {
        var spool = new Spool(args.SpoolDirectory);
        spool.Create();
        // A worker between jobs never re-executes itself: a failing kernel path falls back in-process or fails the job.
        Infrastructure.KernelSelfCheck.AllowRestart = false;
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings
        {
            EnvironmentName = RfConfiguration.EnvironmentName,
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Services.AddSerilog(SerilogSetup.Create(Path.Combine(spool.Logs, $"worker-{Environment.MachineName}-{Environment.ProcessId}.log.jsonl")), dispose: true);
        builder.Services.AddSingleton<IHostLifetime, ConsoleLifetime>();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromMinutes(10));
        builder.Services.AddSingleton(new WorkerSettings(spool.Root, args.Once, TimeSpan.FromSeconds(2)));
        builder.Services.AddSingleton<SpoolWorker>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<SpoolWorker>());
        using var host = builder.Build();
        var worker = host.Services.GetRequiredService<SpoolWorker>();
        host.Run(); // returns after --once finished the inbox, or after Ctrl-C / SIGTERM (host disposed)
        Console.WriteLine($"worker: {worker.JobsDone} done, {worker.JobsFailed} failed (spool {spool.Root})");
        // Any failed job (in failed/, with its reason) or a worker loop stopped by an error: exit 1.
        return worker.JobsFailed > 0 || worker.StoppedByError ? ExitCodes.Failure : ExitCodes.Success;
    }
}
