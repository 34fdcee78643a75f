using System.Diagnostics;
using ResearchFramework.Host.Infrastructure;
using ResearchFramework.MathCore;

namespace ResearchFramework.Host.Certification;

/// <summary>Which certificate engine runs: the dense n × n Gram in memory (<c>Certify</c>), the tiled engine
/// (<c>Tiled</c>: tiles in memory up to a budget and in resumable files beyond it), or the dense one when its
/// 32·n² bytes fit the memory available and the tiled one otherwise.</summary>
public enum CertificateEngineKind
{
    /// <summary>Dense when <see cref="MemoryBudget.DenseCertificateBytes"/> fits <see cref="MemoryBudget.AvailableBytes"/>, else tiled.</summary>
    Auto,
    /// <summary>The dense n × n float64 Gram in memory.</summary>
    Dense,
    /// <summary>The tiled engine.</summary>
    Tiled,
    /// <summary>The Gram distributed over MPI ranks on a BLACS grid, factored by ScaLAPACK (<c>mpirun -np P rf certify
    /// --matrix FILE --engine scalapack</c>; <see cref="ScaLAPACKCertification"/>).</summary>
    ScaLAPACK,
}

/// <summary>The engine options of <c>rf certify</c> (<c>--engine</c>, <c>--tile-size</c>, <c>--work-dir</c>,
/// <c>--tile-memory-gb</c>, <c>--grid</c>, <c>--block</c>).</summary>
/// <param name="Kind">Which engine (default <see cref="CertificateEngineKind.Auto"/>).</param>
/// <param name="TileSize">Rows and columns of a tile (default 2048).</param>
/// <param name="WorkDirectory">Folder of the tile files and manifest (null: the command's default).</param>
/// <param name="MemoryBudgetBytes">Bytes of tiles kept in memory (null: <see cref="DefaultBudgetBytes"/>).</param>
/// <param name="Grid">BLACS grid "PxQ" of the ScaLAPACK engine (null: the most square one for the ranks started).</param>
/// <param name="BlockSize">NB of the ScaLAPACK engine's block-cyclic distribution (default 256).</param>
/// <param name="GramChunkColumns">Columns per product of the tiled engine's Gram tiles (<c>--gram-chunk</c>; null:
/// <see cref="Tiled.defaults"/>): only the accumulation constant depends on it.</param>
/// <param name="CholeskyPanel">Columns per panel of the tiled engine's Cholesky (<c>--cholesky-panel</c>; null:
/// <see cref="Tiled.defaults"/>): only the Cholesky constant depends on it.</param>
public sealed record CertificateEngineOptions(CertificateEngineKind Kind = CertificateEngineKind.Auto, int TileSize = 2048,
    string? WorkDirectory = null, long? MemoryBudgetBytes = null, string? Grid = null, int BlockSize = 256,
    int? GramChunkColumns = null, int? CholeskyPanel = null)
{
    /// <summary>Test hook: <c>RF_TEST_TILE_DELAY_MS</c> sleeps after every finished tile, so a process test can kill a
    /// tiled certificate reliably in the middle of a phase. Unset (the default): no delay.</summary>
    private static readonly int TileDelayMs =
        int.TryParse(Environment.GetEnvironmentVariable("RF_TEST_TILE_DELAY_MS"), out var ms) && ms > 0 ? ms : 0;

    /// <summary>Auto engine, 2048-row tiles, the default work directory and budget.</summary>
    public static CertificateEngineOptions Default { get; } = new();

    /// <summary>Whether a certificate of <paramref name="rows"/> points runs on the tiled engine.</summary>
    public bool UsesTiled(long rows) =>
        Kind == CertificateEngineKind.Tiled
        || (Kind == CertificateEngineKind.Auto && MemoryBudget.DenseCertificateBytes(rows) > MemoryBudget.AvailableBytes());

    /// <summary>The default budget: 20 GiB (a 24 GB machine with headroom), at most half the memory available.</summary>
    public static long DefaultBudgetBytes => Math.Min(Tiled.defaultMemoryBudgetBytes, MemoryBudget.AvailableBytes() / 2);

    /// <summary>The tiled engine's settings for a run named by <paramref name="runFingerprint"/>, tiles in
    /// <see cref="WorkDirectory"/> or else <paramref name="defaultWorkDirectory"/>; progress (throttled to one line every
    /// two seconds and at the end of each phase) and the engine's log lines go to <paramref name="log"/>.</summary>
    public Tiled.Settings Settings(string runFingerprint, string defaultWorkDirectory, Action<string> log)
    {
        var throttled = Tiled.throttledProgress(2.0, Microsoft.FSharp.Core.FuncConvert.FromAction(log));
        void Progress(Tiled.TiledProgress p)
        {
            if (TileDelayMs > 0) Thread.Sleep(TileDelayMs);
            throttled.Invoke(p);
        }
        var settings = Tiled.settings(TileSize, MemoryBudgetBytes ?? DefaultBudgetBytes, WorkDirectory ?? defaultWorkDirectory, runFingerprint,
            Progress, log, CancellationToken.None);
        return Tiled.withBlockedOrder(GramChunkColumns ?? settings.GramChunkColumns, CholeskyPanel ?? settings.CholeskyPanel, settings);
    }

    /// <summary>The certificate options <paramref name="options"/> with this command's blocked order where given
    /// (<c>--gram-chunk</c>: the dense route's Gram products, <c>--cholesky-panel</c>: its factorisation panels, then always
    /// that order; without it the dense route picks LAPACK's order when its constant costs the bound nothing
    /// (<c>Certify.anyOrderSuffices</c>); the tiled engine takes both from <see cref="Settings"/>).</summary>
    public ResearchFramework.MathCore.Certify.Options CertifyOptions(ResearchFramework.MathCore.Certify.Options options) =>
        CholeskyPanel is { } panel
            ? ResearchFramework.MathCore.Certify.withBlockedOrder(GramChunkColumns ?? options.BlockColumns, panel, options)
            : GramChunkColumns is { } chunk ? ResearchFramework.MathCore.Certify.withGramChunk(chunk, options) : options;

    /// <summary>Removes the tiled engine's files (<c>*.tile</c>, <c>*.partial</c>, <c>manifest.txt</c>) from a work
    /// directory after its certificate is saved, and the directory itself when nothing else is left in it.</summary>
    public static void RemoveTiles(string directory)
    {
        if (!Directory.Exists(directory)) return;
        foreach (var file in Directory.EnumerateFiles(directory))
        {
            var name = Path.GetFileName(file);
            if (name.EndsWith(".tile", StringComparison.Ordinal) || name.EndsWith(".partial", StringComparison.Ordinal) || name == "manifest.txt")
                File.Delete(file);
        }
        if (!Directory.EnumerateFileSystemEntries(directory).Any()) Directory.Delete(directory);
    }
}
