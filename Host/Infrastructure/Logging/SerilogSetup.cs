using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace ResearchFramework.Host.Infrastructure.Logging;

/// <summary>Serilog configuration: a readable console sink on standard error (stdout stays for command output)
/// and, for runs, a compact-JSON file sink (<c>log.jsonl</c>). Level from <c>RF_LOG_LEVEL</c> (default Information).</summary>
public static class SerilogSetup
{
    public const string ConsoleTemplate = "[{Timestamp:HH:mm:ss} {Level:u3}] {Source}: {Message:lj}{NewLine}{Exception}";

    public static Serilog.Core.Logger Create(string? jsonLogPath = null)
    {
        var level = Enum.TryParse<LogEventLevel>(Environment.GetEnvironmentVariable("RF_LOG_LEVEL"), ignoreCase: true, out var l)
            ? l : LogEventLevel.Information;
        var configuration = new LoggerConfiguration()
            .MinimumLevel.Is(level)
            .MinimumLevel.Override("Microsoft", LogEventLevel.Warning)
            .Enrich.FromLogContext()
            .Enrich.With(new ShortSourceEnricher())
            .WriteTo.Console(outputTemplate: ConsoleTemplate, standardErrorFromLevel: LogEventLevel.Verbose,
                formatProvider: System.Globalization.CultureInfo.InvariantCulture);
        if (jsonLogPath is not null)
            configuration = configuration.WriteTo.File(new CompactJsonFormatter(), jsonLogPath, flushToDiskInterval: TimeSpan.FromSeconds(1));
        return configuration.CreateLogger();
    }
}
