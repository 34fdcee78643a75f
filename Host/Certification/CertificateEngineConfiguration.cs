using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.MathCore;

namespace ResearchFramework.Host.Certification;

/// <summary>The <c>Certificate</c> section (<see cref="CertificateOptions"/>) as the engine options of <c>rf certify</c>
/// (<see cref="CertificateEngineOptions"/>) and as the Math.Core engine of the trainer's switch, guard and Theorem P's
/// factor (<see cref="CertificateEngine"/>): one choice, made by <see cref="CertificateEngineOptions.UsesTiled"/>.</summary>
public static class CertificateEngineConfiguration
{
    /// <summary>The engine kind named by <c>Certificate:Engine</c> (auto, dense, tiled; validated by the options).</summary>
    public static CertificateEngineKind KindOf(string name) => name.ToLowerInvariant() switch
    {
        "dense" => CertificateEngineKind.Dense,
        "tiled" => CertificateEngineKind.Tiled,
        _ => CertificateEngineKind.Auto,
    };

    /// <summary><c>rf certify</c>'s engine options from the section, tile files in <paramref name="workDirectory"/>
    /// (null: the command's default).</summary>
    public static CertificateEngineOptions Options(CertificateOptions c, string? workDirectory = null) =>
        new(KindOf(c.Engine), c.TileSize, workDirectory, c.TileMemoryGB is { } gb ? (long)(gb * 1e9) : null);

    /// <summary>The options given on the command line over the section: <paramref name="cli"/>'s kind, tile size and
    /// budget where <paramref name="kindGiven"/>, <paramref name="tileSizeGiven"/>, a budget was given; else the section's
    /// (the blocked order's <c>--gram-chunk</c> and <c>--cholesky-panel</c> are command-line only).</summary>
    public static CertificateEngineOptions Merge(CertificateOptions c, CertificateEngineOptions cli, bool kindGiven, bool tileSizeGiven)
    {
        var fromConfig = Options(c, cli.WorkDirectory);
        return fromConfig with
        {
            Kind = kindGiven ? cli.Kind : fromConfig.Kind,
            TileSize = tileSizeGiven ? cli.TileSize : fromConfig.TileSize,
            MemoryBudgetBytes = cli.MemoryBudgetBytes ?? fromConfig.MemoryBudgetBytes,
            GramChunkColumns = cli.GramChunkColumns,
            CholeskyPanel = cli.CholeskyPanel,
        };
    }

    /// <summary>The Math.Core engine of a run certifying <paramref name="rows"/> points: auto resolved here by the rule of
    /// <c>rf certify</c> (<see cref="CertificateEngineOptions.UsesTiled"/>: dense when 32·n² bytes fit the memory
    /// available), the tile size, the budget (<c>Certificate:TileMemoryGB</c>, else
    /// <see cref="CertificateEngineOptions.DefaultBudgetBytes"/>) and the tile files under <paramref name="workDirectory"/>.</summary>
    public static CertificateEngine ForRun(CertificateOptions c, long rows, string workDirectory)
    {
        var options = Options(c);
        var kind = options.UsesTiled(rows) ? EngineKind.Tiled : EngineKind.Dense;
        return new CertificateEngine(kind, options.TileSize, options.MemoryBudgetBytes ?? CertificateEngineOptions.DefaultBudgetBytes, workDirectory,
            options.GramChunkColumns ?? Tiled.defaults.GramChunkColumns, CancellationToken.None);
    }
}
