using Serilog.Core;
using Serilog.Events;

namespace ResearchFramework.Host.Infrastructure.Logging;

/// <summary>Adds <c>Source</c>: the last segment of <c>SourceContext</c> (the class name), for readable console lines.</summary>
public sealed class ShortSourceEnricher : ILogEventEnricher
{
    public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory)
    {
        if (logEvent.Properties.TryGetValue("SourceContext", out var value) && value is ScalarValue { Value: string context })
            logEvent.AddPropertyIfAbsent(propertyFactory.CreateProperty("Source", context[(context.LastIndexOf('.') + 1)..]));
    }
}
