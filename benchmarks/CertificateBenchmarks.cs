using System.Globalization;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using ResearchFramework.MathCore;
using static TorchSharp.torch;

namespace ResearchFramework.Benchmarks;

/// <summary>
/// Certificate vs the bare linear algebra it cannot avoid (float64 Gram by mm, one Cholesky), side
/// by side in one process. Cases come from BENCH_CASES ("2048x8192:memory;4096x65536:streamed" by default).
/// </summary>
[MemoryDiagnoser]
public class CertificateBenchmarks
{
    /// <summary>Seed of every generated matrix.</summary>
    public const long Seed = 20261127;

    /// <summary>The cases: "NxM:memory" or "NxM:streamed".</summary>
    public static IEnumerable<string> Cases() =>
        (Environment.GetEnvironmentVariable("BENCH_CASES") ?? "2048x8192:memory;4096x65536:streamed")
            .Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [ParamsSource(nameof(Cases))]
    public string Case { get; set; } = "";

    int n, m;
    bool streamed;
    Tensor? phi;

    [GlobalSetup]
    public void Setup()
    {
        var parts = Case.Split(':');
        var dims = parts[0].Split('x');
        n = int.Parse(dims[0], CultureInfo.InvariantCulture);
        m = int.Parse(dims[1], CultureInfo.InvariantCulture);
        streamed = parts[1] == "streamed";
        if (!streamed) phi = Matrices.InMemory(n, m, Seed);
    }

    [GlobalCleanup]
    public void Cleanup() { phi?.Dispose(); phi = null; }

    [Benchmark(Baseline = true, Description = "bare mm + cholesky")]
    public double BareMmCholesky()
    {
        var start = Mem.ResetPeak();
        var r = streamed ? Workloads.BareStreamed(n, m, Seed) : Workloads.BareInMemory(phi!);
        Mem.Record($"{nameof(BareMmCholesky)}|{Case}", start);
        return r;
    }

    [Benchmark(Description = "certificate")]
    public double Certificate()
    {
        var start = Mem.ResetPeak();
        var cert = streamed ? Workloads.CertifyStreamed(n, m, Seed) : Workloads.CertifyInMemory(phi!);
        Mem.Record($"{nameof(Certificate)}|{Case}", start);
        if (cert.Verdict != Verdict.Certified) throw new InvalidOperationException($"{Case}: {cert.Verdict}: {cert.Reason}");
        return cert.SigmaMinLower;
    }
}

/// <summary>A column with the process peak RSS (VmHWM) or its growth over the RSS before the operation.</summary>
public sealed class PeakMemoryColumn(bool growth) : IColumn
{
    public string Id => growth ? "PeakRssGrowth" : "PeakRss";
    public string ColumnName => growth ? "Peak RSS growth" : "Peak RSS";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => growth ? 1 : 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => growth
        ? "max over invocations of VmHWM minus VmRSS at the start of the operation (native + managed memory the operation needed; Φ held in memory is not counted)"
        : "max over invocations of the process VmHWM (peak RSS, reset before each operation via /proc/self/clear_refs)";
    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var key = $"{benchmarkCase.Descriptor.WorkloadMethod.Name}|{benchmarkCase.Parameters["Case"]}";
        lock (Mem.Peaks)
            return Mem.Peaks.TryGetValue(key, out var v)
                ? $"{(growth ? v.Growth : v.Peak) / 1048576.0:F0} MiB"
                : "?";
    }
    public override string ToString() => ColumnName;
}

/// <summary>In-process, short: seconds per operation, so one warm-up and a few measured iterations.</summary>
public static class BenchConfig
{
    public static IConfig Create()
    {
        var iterations = int.TryParse(Environment.GetEnvironmentVariable("BENCH_ITERATIONS"), out var i) ? i : 3;
        var job = Job.Default
            .WithToolchain(InProcessEmitToolchain.Instance)
            .WithStrategy(RunStrategy.Monitoring)
            .WithLaunchCount(1).WithWarmupCount(1).WithIterationCount(iterations)
            .WithInvocationCount(1).WithUnrollFactor(1)
            .WithId($"InProcess-{iterations}it");
        return ManualConfig.CreateMinimumViable()
            .AddJob(job)
            .AddColumn(new PeakMemoryColumn(false), new PeakMemoryColumn(true))
            .AddColumn(StatisticColumn.Min, StatisticColumn.Max)
            .WithSummaryStyle(SummaryStyle.Default.WithRatioStyle(RatioStyle.Value))
            .WithArtifactsPath(Environment.GetEnvironmentVariable("BENCH_ARTIFACTS") ?? Path.Combine(Directory.GetCurrentDirectory(), "BenchmarkDotNet.Artifacts"))
            .WithOptions(ConfigOptions.DisableLogFile | ConfigOptions.JoinSummary);
    }
}
