using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.FSharp.Core;
using ResearchFramework.Host.Data;
using ResearchFramework.Host.Infrastructure;
using ResearchFramework.MathCore;
using TorchSharp;

namespace ResearchFramework.Host.Certification;

/// <summary>Certifies a feature matrix read from a <c>.npy</c> or <c>.safetensors</c> file (rows = samples) with
/// Math.Core's float64 Gram + Rump test (SPEC §3), streamed: the file is never held whole. The Gram is accumulated
/// over column blocks (every row's entries [c, c + b), read with one positioned read per row; one pass over the file)
/// as one product of every column (h = m'), and again in <see cref="Gram.ColumnBlockAccumulator"/>'s blocked order
/// (products of 4096 columns) only where that order's smaller accumulation term could decide an Inconclusive
/// certificate (docs/theory.md §3 "One product first"; <c>--gram-chunk</c>: the blocked order from the start), with
/// blocks of <see cref="Certify.defaults"/>' 4096 columns (then the blocked fl(G)
/// is bit for bit the in-memory <c>Certify.certifyMatrix</c>'s) unless n × 4096 × 8 bytes exceeds
/// <see cref="BlockBytes"/>; peak memory ≈ the n × n float64 Gram and its copies plus one block. A matrix with fewer
/// columns (bias included) than rows is refuted by shape from its row norms, read in row blocks, without any Gram.
/// With <c>withBias</c> the certified matrix is Φ̃ = [Φ, 1], as on the model path; without, the file is Φ̃ itself.</summary>
public static class MatrixCertification
{
    /// <summary>Bytes of one block read from the file (column block n × b, or a run of whole rows): 64 MiB, or
    /// <c>RF_MATRIX_BLOCK_BYTES</c> when set to a positive number (tests: several blocks on a small file).</summary>
    public static long BlockBytes =>
        long.TryParse(Environment.GetEnvironmentVariable("RF_MATRIX_BLOCK_BYTES"), out var forced) && forced > 0 ? forced : 64L * 1024 * 1024;

    /// <summary>Columns below which a column block is not narrowed further for memory (tiny reads are slow).</summary>
    public const int MinBlockColumns = 256;

    /// <summary>The certificate of the matrix of <paramref name="layout"/> (validated by its reader), with or without
    /// the bias column. Throws the layout's <see cref="MatrixFormatException"/> for a non-finite entry (naming it),
    /// <see cref="ArgumentException"/> for inputs outside the error analysis (squares that overflow, underflow).</summary>
    public static Certificate Certify(MatrixLayout layout, bool withBias) =>
        Certify(layout, withBias, CertificateEngineOptions.Default with { Kind = CertificateEngineKind.Dense }, "", _ => { });

    /// <summary>The certificate of <paramref name="layout"/>'s matrix on the engine <paramref name="engine"/> chooses
    /// (<see cref="CertificateEngineOptions.UsesTiled"/>): dense as <see cref="Certify(MatrixLayout, bool)"/>, or tiled, row
    /// tiles read from the file on demand, tile files in the engine's work directory or else
    /// <paramref name="defaultWorkDirectory"/> (resumable: the same command continues from the last finished tile).
    /// Progress and the tiled engine's log lines go to <paramref name="log"/>.</summary>
    public static Certificate Certify(MatrixLayout layout, bool withBias, CertificateEngineOptions engine, string defaultWorkDirectory, Action<string> log) =>
        Certify(layout, withBias, engine, defaultWorkDirectory, log, null);

    /// <summary>As <see cref="Certify(MatrixLayout, bool, CertificateEngineOptions, string, Action{string})"/>, with the
    /// file's fingerprint from <paramref name="fingerprint"/> (<see cref="StartFingerprint"/>, started before libtorch's
    /// load has finished) when given: the dense engine awaits it only after the Gram, so hashing the whole file overlaps
    /// the load and the Gram instead of preceding them.</summary>
    public static Certificate Certify(MatrixLayout layout, bool withBias, CertificateEngineOptions engine, string defaultWorkDirectory, Action<string> log,
                                     Task<string>? fingerprint)
    {
        var clock = Stopwatch.StartNew();
        fingerprint ??= Task.FromResult(FileFingerprint(layout.Path));
        if (layout.Rows > int.MaxValue || layout.Columns >= int.MaxValue)
            throw layout.Error($"shape ({layout.Rows}, {layout.Columns}): more than {int.MaxValue} rows or columns are not supported");
        int n = (int)layout.Rows, m = (int)layout.Columns;
        bool tall = m + (withBias ? 1L : 0L) < n;
        bool tiled = !tall && engine.UsesTiled(n);
        if (!tall && !tiled) MemoryBudget.EnsureCertificateFits(n, layout.Path, "Nothing was read: use --engine tiled, or certify rows");
        ExpressivitySubject Subject() =>
            new(fingerprint.GetAwaiter().GetResult(), CertificationSet(layout), "matrix", [], "none", n, m, withBias);
        var precision = layout.ItemSize == 4 ? "float32" : "float64";
        using var reader = new MatrixFileReader(layout);
        if (tall)
            return ResearchFramework.MathCore.Certify.refuteByShapeOn(Subject(), precision, "cpu", RowSquares(reader), clock);
        var options = engine.CertifyOptions(ResearchFramework.MathCore.Certify.defaults);
        if (tiled)
        {
            var subject = Subject();
            // The row tiles come from the file itself: reading them again is cheaper than spilling a copy.
            var settings = engine.Settings($"{subject.DatasetFingerprint}|{layout.Tensor}", defaultWorkDirectory, log).WithSpillFeatures(false);
            int b = Math.Max(1, Math.Min(n, engine.TileSize));
            var buffers = new Dictionary<int, Array>();
            torch.Tensor RowBlock(int s)
            {
                long row0 = (long)s * b;
                return Read(reader, row0, (int)Math.Min(b, n - row0), 0, m, buffers);
            }
            // Then, as on the dense engine, the orthogonal route when the Gram route is Inconclusive and the matrix fits.
            var tiledCertificate = Tiled.certifyRowBlocks(options, settings, subject, RowEquality(reader, m), b, (n + b - 1) / b,
                FuncConvert.FromFunc<int, torch.Tensor>(RowBlock));
            // the orthogonal follow-up cannot spill: within the tile memory budget too
            options = ResearchFramework.MathCore.Certify.withinTileBudget(settings.MemoryBudgetBytes, options);
            return AfterGram(tiledCertificate);
        }
        var equal = RowEquality(reader, m);
        // One product first (docs/theory.md §3 "One product first"): unless an order is asked for (--gram-chunk names the
        // products, --cholesky-panel asks for the blocked order of both, Certify.withBlockedOrder), fl G is
        // accumulated in one product of every column (h = m', no separate products to add), and again in the blocked
        // order of options.BlockColumns (h = c + ⌈m/c⌉ − 1) only when that order's smaller accumulation term could turn
        // an Inconclusive certificate into a Certified one (Certify.blockedOrderMayCertify).
        bool oneProductFirst = engine.GramChunkColumns is null && engine.CholeskyPanel is null;
        int blockedDepth = Gram.accumulationDepth(m, withBias, options.BlockColumns);
        // certify(productColumns): the certificate of fl G accumulated in products of that many columns (null: blocked)
        Certificate OneProductFirst(Func<int?, Certificate> certify)
        {
            var first = certify(oneProductFirst ? OneProduct : null);
            if (!oneProductFirst || !ResearchFramework.MathCore.Certify.blockedOrderMayCertify(blockedDepth, first)) return first;
            log(FormattableString.Invariant(
                $"certify: the one-product Gram (h = {first.Terms.AccumulationGammaIndex}) proved λ_min(fl G) ≥ {first.Terms.LambdaMinComputedGramLower:G3} but its accumulation term {first.Terms.AccumulationError:G3} took the bound to ≤ 0 (scaled Gram's units); accumulating fl G again in products of {options.BlockColumns} columns (h = {blockedDepth})"));
            return ResearchFramework.MathCore.Certify.afterOneProduct(first, certify(null));
        }
        if (DenseNative.available())
        {
            // On OpenBLAS the dense certificate runs on native buffers (DenseNative): no tensor, so libtorch is not loaded
            // unless the orthogonal route follows (docs/BENCHMARKS.md: its load is ≈ 0.4 s of a 1.5 s process).
            // one n × n work matrix: the Gram's later products, then every factorisation (its pages touched once); both
            // freed before an orthogonal route (which reads the matrix whole)
            Certificate gramCertificate;
            using (var work = DenseNative.Buffer.OfDoubles((long)n * n))
                gramCertificate = OneProductFirst(products =>
                {
                    using var nativeGram = StreamNativeGram(reader, withBias, options.BlockColumns, work, products);
                    return DenseNative.certifyAccumulatedIn(work, options, Subject(), equal, clock, nativeGram);
                });
            return AfterGram(gramCertificate);
        }
        return AfterGram(OneProductFirst(products =>
        {
            using var gram = StreamGram(reader, withBias, options.BlockColumns, products);
            return ResearchFramework.MathCore.Certify.certifyAccumulated(options, Subject(), equal, clock, gram);
        }));

        // Auto route after the Gram route (either engine): the certificate itself, or the orthogonal route on the matrix
        // read whole when the Gram route was Inconclusive and it fits, or the reason why it was not tried.
        Certificate AfterGram(Certificate certificate)
        {
            var want = ResearchFramework.MathCore.Certify.wantsOrthogonal(options, certificate);
            bool wanted = want.Item1, fits = want.Item2;
            if (!wanted) return certificate;
            if (!fits || (long)n * m > int.MaxValue)
                return ResearchFramework.MathCore.Certify.orthogonalNotTried(certificate,
                    ResearchFramework.MathCore.Certify.orthogonalTooLarge(options, n, m + (withBias ? 1 : 0)));
            // The Gram route was Inconclusive and the matrix fits: read it whole (widened to float64, exact) for the
            // orthogonal route (docs/theory.md §3), as Certify.certifyMatrix does in Auto mode.
            var entries = new double[(long)n * m];
            reader.ReadBlock(0, n, 0, m, entries);
            using var phi = torch.tensor(entries, new long[] { n, m }, torch.float64);
            return ResearchFramework.MathCore.Certify.certifyAfterGram(options, Subject(), phi, clock, certificate);
        }
    }

    /// <summary>Exact comparison of two rows of the file (duplicate candidates are confirmed by it, never by the Gram).</summary>
    internal static FSharpOption<FSharpFunc<int, FSharpFunc<int, bool>>> RowEquality(MatrixFileReader reader, int m)
    {
        bool RowsEqual(int i, int j)
        {
            var a = new double[m];
            var b = new double[m];
            reader.ReadBlock(i, 1, 0, m, a);
            reader.ReadBlock(j, 1, 0, m, b);
            for (int k = 0; k < m; k++)
                if (a[k] != b[k]) return false;
            return true;
        }
        return FSharpOption<FSharpFunc<int, FSharpFunc<int, bool>>>.Some(
            FuncConvert.FromFunc<int, FSharpFunc<int, bool>>(i => FuncConvert.FromFunc<int, bool>(j => RowsEqual(i, j))));
    }

    /// <summary>Columns per product meaning "one product of every column" (h = m': the any-order depth).</summary>
    public const int OneProduct = int.MaxValue;

    /// <summary>fl(G) of the file's matrix (Φ̃ = [Φ, 1] with <paramref name="withBias"/>), accumulated over column blocks
    /// of <see cref="BlockColumns"/> columns read from <paramref name="reader"/>: one pass over the file; in products of
    /// <paramref name="productColumns"/> columns (<see cref="OneProduct"/>: one), by default
    /// <paramref name="preferredBlockColumns"/> (Math.Core's blocked order).</summary>
    public static Gram.GramMatrix StreamGram(MatrixFileReader reader, bool withBias, int preferredBlockColumns, int? productColumns = null)
    {
        int n = checked((int)reader.Layout.Rows);
        var accumulator = new Gram.ColumnBlockAccumulator(n, torch.CPU, productColumns ?? preferredBlockColumns);
        var buffers = new Dictionary<int, Array>();
        foreach (var (c, w) in ColumnBlocks(reader, preferredBlockColumns))
        {
            using var block = Read(reader, 0, n, c, w, buffers);
            accumulator.Add(block);
        }
        if (withBias) accumulator.AddBiasColumn();
        return accumulator.Finish();
    }

    /// <summary><see cref="StreamGram"/> into native memory (<see cref="DenseNative.Accumulator"/>: the same products and
    /// additions, so the same fl(G) bit for bit on OpenBLAS): each column block read straight into one reused native
    /// buffer of the file's dtype; the Gram's later products in <paramref name="spare"/> (n × n, kept) when given; in
    /// products of <paramref name="productColumns"/> columns as <see cref="StreamGram"/>.</summary>
    public static DenseNative.NativeGram StreamNativeGram(MatrixFileReader reader, bool withBias, int preferredBlockColumns,
                                                          DenseNative.Buffer? spare = null, int? productColumns = null)
    {
        int n = checked((int)reader.Layout.Rows), m = checked((int)reader.Layout.Columns);
        bool isFloat32 = reader.Layout.ItemSize == 4;
        using var accumulator = new DenseNative.Accumulator(n, productColumns ?? preferredBlockColumns, spare);
        using var block = new DenseNative.Buffer((long)n * BlockColumns(n, m, preferredBlockColumns) * reader.Layout.ItemSize);
        foreach (var (c, w) in ColumnBlocks(reader, preferredBlockColumns))
        {
            int count = checked(n * w);
            if (isFloat32) reader.ReadBlock(0, n, c, w, block.Floats(count));
            else reader.ReadBlock(0, n, c, w, block.Doubles(count));
            accumulator.Add(block.Pointer, w, isFloat32);
        }
        if (withBias) accumulator.AddBiasColumn();
        return accumulator.Finish();
    }

    /// <summary>The column blocks (first column, width) of the file's one pass, <see cref="BlockColumns"/> wide (the last
    /// narrower): the cuts both Gram streams read, so their products and sums are the same.</summary>
    private static IEnumerable<(long Column, int Width)> ColumnBlocks(MatrixFileReader reader, int preferredBlockColumns)
    {
        int n = checked((int)reader.Layout.Rows), m = checked((int)reader.Layout.Columns);
        int width = BlockColumns(n, m, preferredBlockColumns);
        for (long c = 0; c < m; c += width) yield return (c, (int)Math.Min(width, m - c));
    }

    /// <summary>Columns per block for n rows and m columns: <paramref name="preferred"/> (Math.Core's in-memory block,
    /// so the Gram matches <c>certifyMatrix</c>'s bit for bit) when n × preferred float64 entries fit
    /// <see cref="BlockBytes"/>, else as many as fit, at least <see cref="MinBlockColumns"/>; never more than m.</summary>
    public static int BlockColumns(int n, int m, int preferred)
    {
        long fit = Math.Max(MinBlockColumns, BlockBytes / (8L * n));
        return (int)Math.Max(1, Math.Min(m, Math.Min(preferred, fit)));
    }

    /// <summary>Entries [row0, row0 + rows) × [column0, column0 + width) as a tensor of the file's dtype, read straight
    /// into the tensor's memory (<c>Tensor.bytes</c>: no second copy) when the block's bytes fit one span; else through a
    /// read buffer (one per block size, reused: torch.tensor copies it) kept in <paramref name="buffers"/>.</summary>
    private static torch.Tensor Read(MatrixFileReader reader, long row0, int rows, long column0, int width, Dictionary<int, Array> buffers)
    {
        int count = checked(rows * width);
        if ((long)count * reader.Layout.ItemSize <= int.MaxValue)
        {
            var block = torch.empty(new long[] { rows, width }, dtype: reader.Layout.ItemSize == 4 ? torch.float32 : torch.float64);
            try
            {
                if (reader.Layout.ItemSize == 4) reader.ReadBlock(row0, rows, column0, width, MemoryMarshal.Cast<byte, float>(block.bytes));
                else reader.ReadBlock(row0, rows, column0, width, MemoryMarshal.Cast<byte, double>(block.bytes));
                return block;
            }
            catch
            {
                block.Dispose();
                throw;
            }
        }
        if (reader.Layout.ItemSize == 4)
        {
            if (!buffers.TryGetValue(count, out var buffer)) buffers[count] = buffer = new float[count];
            reader.ReadBlock(row0, rows, column0, width, (float[])buffer);
            return torch.tensor((float[])buffer, [rows, width], dtype: torch.float32);
        }
        else
        {
            if (!buffers.TryGetValue(count, out var buffer)) buffers[count] = buffer = new double[count];
            reader.ReadBlock(row0, rows, column0, width, (double[])buffer);
            return torch.tensor((double[])buffer, [rows, width], dtype: torch.float64);
        }
    }

    /// <summary>fl(‖φ_i‖²) of every row: float64 squares (exact for float32 entries' widening, one rounding each) summed
    /// along the row in vector lanes, reading runs of whole rows of at most <see cref="BlockBytes"/>. No tensor, so a tall
    /// file is refuted without loading libtorch. Any order of the m additions: the refutation's Frobenius bound covers
    /// fl(‖φ_i‖²) with γ_{m'} (<c>Gram.squaredNormSumUpper</c>), so its last bits may differ from
    /// <c>certifyMatrix</c>'s torch sums, never its soundness.</summary>
    public static double[] RowSquares(MatrixFileReader reader)
    {
        var layout = reader.Layout;
        int n = (int)layout.Rows, m = (int)layout.Columns;
        var squares = new double[n];
        int rowsPerBlock = (int)Math.Clamp(BlockBytes / ((long)m * 8), 1, n);
        var block = new double[(long)rowsPerBlock * m];
        for (int r = 0; r < n; r += rowsPerBlock)
        {
            int rows = Math.Min(rowsPerBlock, n - r);
            reader.ReadBlock(r, rows, 0, m, block.AsSpan(0, rows * m));
            for (int i = 0; i < rows; i++) squares[r + i] = SumOfSquares(block.AsSpan(i * m, m));
        }
        return squares;
    }

    /// <summary>Σ x_k² in float64, in <see cref="System.Numerics.Vector{T}"/> lanes (each lane a running sum), the lanes
    /// then added, then the tail.</summary>
    private static double SumOfSquares(ReadOnlySpan<double> x)
    {
        var lanes = MemoryMarshal.Cast<double, System.Numerics.Vector<double>>(x);
        var acc = System.Numerics.Vector<double>.Zero;
        foreach (var v in lanes) acc += v * v;
        double sum = System.Numerics.Vector.Sum(acc);
        for (int k = lanes.Length * System.Numerics.Vector<double>.Count; k < x.Length; k++) sum += x[k] * x[k];
        return sum;
    }

    internal static string CertificationSet(MatrixLayout layout) =>
        layout.Tensor is null
            ? $"all {layout.Rows} rows of {Path.GetFileName(layout.Path)}"
            : $"all {layout.Rows} rows of tensor \"{layout.Tensor}\" of {Path.GetFileName(layout.Path)}";

    /// <summary><see cref="FileFingerprint"/> on a thread of the pool, so that it overlaps libtorch's load
    /// (<see cref="Infrastructure.TorchPreload"/>): the command's own thread stops at its first use of TorchSharp (in
    /// <see cref="Certify(MatrixLayout, bool, CertificateEngineOptions, string, Action{string}, Task{string})"/>, before
    /// any line of it ran: measured ≈ 0.38 s) until the load has finished.</summary>
    public static Task<string> StartFingerprint(string path) => Task.Run(() => FileFingerprint(path));

    /// <summary>SHA-256 of the file's bytes, streamed (the same string as <c>Fingerprint.ofBytes</c> of the whole file).</summary>
    public static string FileFingerprint(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 20);
        return "sha256:" + Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
    }

    /// <summary>One human-readable summary of a certificate.</summary>
    public static string Describe(Certificate c) =>
        $"verdict: {c.Verdict}\n" +
        $"  n = {c.Subject.Rows}, columns = {c.Subject.Columns}, {c.Precision}\n" +
        $"  bias column: {(c.Subject.WithBias ? $"on (Φ̃ = [Φ, 1], m = {c.Subject.Features} + 1)" : $"off (Φ̃ = Φ, m = {c.Subject.Features})")}\n" +
        $"  σ_min ≥ {c.SigmaMinLower:G6} (rigorous lower bound)\n" +
        $"  σ_max ≈ {c.SigmaMaxEstimate:G6} (estimate), ≤ {c.SigmaMaxUpper:G6} (rigorous upper bound; ‖Φ̃‖_F ≤ {ResearchFramework.MathCore.Certify.frobeniusUpper(c.Terms):G6})\n" +
        $"  reason: {c.Reason}\n" +
        $"  time: {c.ElapsedSeconds:F3} s";
}
