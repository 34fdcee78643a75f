using System.Globalization;

namespace ResearchFramework.Host.Infrastructure;

/// <summary>Every number <c>rf</c> writes (console, logs, tables, plots, files) is formatted culture-invariantly:
/// <c>0.139</c>, never <c>0,139</c>, whatever <c>LANG</c> / <c>LC_ALL</c> say. Output is read by scripts
/// (<c>experiments/report.py</c>, CSV readers, the tests) and compared across machines, so the process culture is not the
/// user's locale but the invariant culture.</summary>
public static class InvariantCulture
{
    /// <summary>Makes the invariant culture the culture of this thread and the default of every thread created or
    /// scheduled afterwards (the worker's job thread, thread-pool continuations, Serilog's sinks), for formatting and
    /// resources alike. Called first thing in <see cref="Program.Main"/>; idempotent.</summary>
    public static void Apply()
    {
        CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
        CultureInfo.DefaultThreadCurrentUICulture = CultureInfo.InvariantCulture;
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        CultureInfo.CurrentUICulture = CultureInfo.InvariantCulture;
    }
}
