using ResearchFramework.Algorithm;
using ResearchFramework.Host.Infrastructure.Configuration;

namespace ResearchFramework.Host.Infrastructure;

/// <summary>Raised when the work would not fit in memory: refused with the numbers before any training step.</summary>
public sealed class InsufficientMemoryException(string message) : InvalidOperationException(message);

/// <summary>An up-front estimate of the certificate's peak memory against the memory available, so that a run that
/// cannot certify at its switch is refused before Phase I, not after it. The dense certificate
/// (<c>MathCore.Certify</c>) holds fl(G), the shifted copy and its Cholesky factor, and the λ_min estimate's factor:
/// about <see cref="DenseCertificateBytes"/> = 4·8·n² bytes for n certified points.</summary>
public static class MemoryBudget
{
    /// <summary>Peak bytes of one dense certificate of n rows: four n×n float64 matrices.</summary>
    public static long DenseCertificateBytes(long n) => 4L * 8L * n * n;

    /// <summary>Memory available to new work: <c>MemAvailable</c> of /proc/meminfo, capped by a cgroup v2 limit when one
    /// is set; <c>RF_MEMORY_AVAILABLE_BYTES</c> overrides both (tests, shared machines).</summary>
    public static long AvailableBytes()
    {
        if (long.TryParse(Environment.GetEnvironmentVariable("RF_MEMORY_AVAILABLE_BYTES"), out var forced) && forced > 0) return forced;
        long available = long.MaxValue;
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                    available = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024L;
        }
        catch (IOException) { }
        try
        {
            var max = File.ReadAllText("/sys/fs/cgroup/memory.max").Trim();
            var current = long.Parse(File.ReadAllText("/sys/fs/cgroup/memory.current").Trim(), System.Globalization.CultureInfo.InvariantCulture);
            // memory.current counts the page cache; its inactive part is reclaimable, so it is not "in use".
            foreach (var line in File.ReadLines("/sys/fs/cgroup/memory.stat"))
                if (line.StartsWith("inactive_file ", StringComparison.Ordinal))
                    current -= long.Parse(line["inactive_file ".Length..], System.Globalization.CultureInfo.InvariantCulture);
            if (max != "max") available = Math.Min(available, long.Parse(max, System.Globalization.CultureInfo.InvariantCulture) - current);
        }
        catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException) { }
        return available;
    }

    /// <summary>The number of points a certificate of this run covers: <paramref name="subset"/> when given, else
    /// <c>Recipe:CertificationSubset</c>, else the loaded training set (<paramref name="trainCount"/> points).</summary>
    public static long CertifiedRows(RfOptions options, int? subset, long trainCount)
    {
        if (subset is > 0) return Math.Min(trainCount, subset.Value);
        return options.Recipe.CertificationSubset > 0 ? Math.Min(trainCount, options.Recipe.CertificationSubset) : trainCount;
    }

    /// <summary>The rows of a run's certificate when it runs on the dense engine (<c>Certificate:Engine</c> dense, or auto
    /// and 32·n² bytes fit), else null: the tiled engine holds at most its tile budget and spills the rest to files.</summary>
    public static long? DenseCertifiedRows(RfOptions options, long trainCount)
    {
        long rows = CertifiedRows(options, null, trainCount);
        return Certification.CertificateEngineConfiguration.Options(options.Certificate).UsesTiled(rows) ? null : rows;
    }

    /// <summary>Training's resident memory, estimated before the network is built (<c>Networks.memoryEstimate</c>):
    /// parameters with gradients and up to two optimiser states (×4; ×7 with the recipe's body copies), activations at the
    /// batch size with their gradients (×2), and the loaded data.</summary>
    public static (long Parameters, long Activations, long Data) TrainingBytes(RfOptions options, ArchitectureSpec architecture,
        long trainCount, long dataElements, bool recipe)
    {
        var (parameters, activationsPerSample) = Networks.memoryEstimate(architecture);
        long element = architecture.Precision == Precision.Float64 ? 8 : 4;
        long batch = Math.Min(options.Training.BatchSize, Math.Max(1, trainCount));
        return (Saturating(parameters, element * (recipe ? 7 : 4)), Saturating(Saturating(activationsPerSample, batch), 2 * element), dataElements * 4);
    }

    private static long Saturating(long a, long b) => a != 0 && b > long.MaxValue / a ? long.MaxValue : a * b;

    /// <summary>Throws <see cref="InsufficientMemoryException"/> with a breakdown when training (and the certificate at the
    /// switch, whose matrices come on top of the resident parameters and data) would not fit.</summary>
    public static void EnsureFits(string what, RfOptions options, ArchitectureSpec architecture, long trainCount, long dataElements,
        bool recipe, long? certifiedRows)
    {
        var (parameters, activations, data) = TrainingBytes(options, architecture, trainCount, dataElements, recipe);
        long certificate = certifiedRows is long n ? DenseCertificateBytes(n) : 0;
        long resident = parameters + data;
        if (resident < 0) resident = long.MaxValue;
        long peak = resident + Math.Max(activations, certificate);
        if (peak < 0) peak = long.MaxValue;
        long available = AvailableBytes();
        if (peak <= available) return;
        var parts = $"parameters and optimiser state {parameters / 1e9:F2} GB, activations at batch {Math.Min(options.Training.BatchSize, trainCount)} " +
                    $"{activations / 1e9:F2} GB, data {data / 1e9:F2} GB" +
                    (certifiedRows is long m ? $", the certificate of n = {m} points {certificate / 1e9:F2} GB (32·n² bytes)" : "");
        string advice;
        if (certifiedRows is long rows && certificate >= activations && resident < available)
        {
            long fits = (long)Math.Floor(Math.Sqrt((available - resident) / 32.0));
            advice = $"set Certificate:Engine=tiled (tiles in memory up to Certificate:TileMemoryGB, files beyond), or Recipe:CertificationSubset (or --subset) to at most {fits}";
        }
        else advice = "reduce Training:BatchSize or the widths (Model:HiddenWidths, Model:WideWidth, Model:WidthMultiplier)";
        throw new InsufficientMemoryException(
            $"{what}: needs about {peak / 1e9:F2} GB ({parts}); {available / 1e9:F2} GB are available. " +
            $"Refused before any training step (nothing built or trained): {advice}, or use a machine with more memory.");
    }

    /// <summary>Before anything is built (and before the kernel check builds the network to find its convolutions): the
    /// network's parameters, optimiser state and activations at the batch size against the available memory, from the
    /// dataset's nominal shape. The data and the certificate are checked after loading (<see cref="EnsureFits"/>).</summary>
    public static void EnsureNetworkFits(string what, RfOptions options)
    {
        var (channels, height, width, classes) = Data.DatasetCatalog.ShapeOf(options.Data.Dataset);
        var architecture = Training.RunSetup.Architecture(options.Model, channels, height, width, classes);
        EnsureFits(what, options, architecture, options.Training.BatchSize, 0, options.Recipe.Enabled, null);
    }

    /// <summary>Throws <see cref="InsufficientMemoryException"/> with the numbers when the dense certificate of
    /// <paramref name="rows"/> points would not fit: "<paramref name="what"/>: … <paramref name="remedy"/> at most N", N the
    /// largest n that fits.</summary>
    public static void EnsureCertificateFits(long rows, string what, string remedy)
    {
        long need = DenseCertificateBytes(rows), available = AvailableBytes();
        if (need <= available) return;
        long fits = (long)Math.Floor(Math.Sqrt(available / 32.0));
        throw new InsufficientMemoryException(
            $"{what}: the certificate of n = {rows} points needs about {need / 1e9:F1} GB (four n×n float64 matrices, 32·n² bytes); " +
            $"{available / 1e9:F1} GB are available. {remedy} at most {fits}, or use a machine with more memory.");
    }
}
