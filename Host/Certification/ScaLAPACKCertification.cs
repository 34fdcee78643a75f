using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using ResearchFramework.Host.Cli;
using ResearchFramework.Host.Data;
using ResearchFramework.MathCore;
using ResearchFramework.Host.Infrastructure;
using ResearchFramework.Host.Training;
using TorchSharp;

namespace ResearchFramework.Host.Certification;

/// <summary><c>mpirun -np P rf certify --matrix FILE --engine scalapack [--grid PxQ] [--block NB]</c>: every rank runs this,
/// reads only its own rows of the file (<see cref="ScaLAPACK.certify"/>: block-cyclic rows, column panels) and takes part in
/// the distributed Gram and factorisations; rank 0 prints the certificate and writes the JSON. Every rank prints one line
/// <c>rf certify: rank r of P: verdict …, σ_min ≥ …, σ_max ≤ …</c> (round-trip numbers) on stderr, so a caller can check
/// that all ranks agree (the engine itself checks it bitwise). Exit 0 Certified, 1 otherwise, 2 bad input, on every rank.</summary>
public static class ScaLAPACKCertification
{
    /// <summary>Runs the certificate on this rank; see the class summary.</summary>
    public static int Run(string file, string output, bool withBias, string? tensor, CertificateEngineOptions engine)
    {
        if (ScaLAPACK.available().IsError)
        {
            Console.Error.WriteLine($"rf certify: bad input: {ScaLAPACK.available().ErrorValue}");
            return ExitCodes.Usage;
        }
        var (rank, size) = ScaLAPACK.processInfo();
        bool root = rank == 0;
        var shape = ScaLAPACK.gridShape(size, engine.Grid ?? "");
        if (shape.IsError)
        {
            if (root) Console.Error.WriteLine($"rf certify: bad input: {shape.ErrorValue}");
            ScaLAPACK.finish();
            return ExitCodes.Usage;
        }
        var grid = ScaLAPACK.openGrid(shape.ResultValue.Item1, shape.ResultValue.Item2);
        int code;
        try
        {
            code = Certify(file, output, withBias, tensor, engine, grid, root);
        }
        catch (Exception e)
        {
            // A failure outside the collective steps, seen by this rank only: stop every rank rather than leave them waiting.
            Console.Error.WriteLine($"rf certify: rank {rank} of {size}: {e.GetType().Name}: {e.Message}");
            ScaLAPACK.abort(grid, 1);
            return ExitCodes.Failure;
        }
        ScaLAPACK.closeGrid(grid);
        ScaLAPACK.finish();
        return code;
    }

    private static int Certify(string file, string output, bool withBias, string? tensor, CertificateEngineOptions engine,
        ScaLAPACK.Grid grid, bool root)
    {
        Certificate certificate;
        try
        {
            var layout = ScaLAPACK.Collectively(grid, () =>
            {
                var l = MatrixFiles.Open(file, tensor);
                if (l.Rows > int.MaxValue || l.Columns >= int.MaxValue)
                    throw l.Error($"shape ({l.Rows}, {l.Columns}): more than {int.MaxValue} rows or columns are not supported");
                return l;
            });
            int n = (int)layout.Rows, m = (int)layout.Columns;
            // The file's SHA-256 is read by rank 0 only (the other ranks read only their rows); only rank 0 writes the subject.
            var fingerprint = root ? MatrixCertification.FileFingerprint(layout.Path) : "sha256:(computed on rank 0)";
            var subject = new ExpressivitySubject(fingerprint, MatrixCertification.CertificationSet(layout), "matrix", [], "none", n, m, withBias);
            using var reader = new MatrixFileReader(layout);
            var source = ScaLAPACK.source(n, m, layout.ItemSize == 4 ? "float32" : "float64",
                (row0, rows, column0, width, destination) => reader.ReadBlock(row0, rows, column0, width, destination.AsSpan()));
            var settings = ScaLAPACK.settings(engine.BlockSize, line => Console.Error.WriteLine($"rf certify: {line}"));
            certificate = ScaLAPACK.certify(ResearchFramework.MathCore.Certify.defaults, settings, grid, subject,
                MatrixCertification.RowEquality(reader, m), source);
        }
        catch (Exception e) when (e is MatrixFormatException or FileNotFoundException or DirectoryNotFoundException or ArgumentException
                                       or UnauthorizedAccessException or IOException)
        {
            // Raised on every rank alike (`ScaLAPACK.collectively`, or the same file seen the same way by every rank).
            if (root) Console.Error.WriteLine($"rf certify: bad input: {file}: {e.Message}");
            return ExitCodes.Usage;
        }
        Console.Error.WriteLine(
            $"rf certify: rank {grid.Rank} of {grid.Size}: verdict {certificate.Verdict}, σ_min ≥ {certificate.SigmaMinLower:R}, σ_max ≤ {certificate.SigmaMaxUpper:R}");
        if (root)
        {
            Console.WriteLine(MatrixCertification.Describe(certificate));
            CertificateJson.save(output, certificate);
            Console.WriteLine($"certificate: {output}");
        }
        return certificate.Verdict == Verdict.Certified ? ExitCodes.Success : ExitCodes.Failure;
    }

    /// <summary>The MPI rank of this process from the launcher's environment (Open MPI, PMIx, MPICH/Hydra, Slurm), read
    /// before MPI is initialised (the kernel self-check may re-execute the process first); 0 when none is set. Checked
    /// against MPI's own rank once MPI has started (<see cref="RunModel"/>).</summary>
    public static int RankFromEnvironment()
    {
        foreach (var name in new[] { "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID" })
            if (int.TryParse(Environment.GetEnvironmentVariable(name), out var r) && r >= 0) return r;
        return 0;
    }

    /// <summary><c>mpirun -np P rf certify --config FILE [--checkpoint C] [--subset K] --engine scalapack [--grid PxQ]
    /// [--block NB]</c>: every rank builds the same model (same seed or checkpoint) and loads the same data, computes the
    /// features of its own block-cyclic rows only (forward passes in evaluation mode, <see cref="ModelFeatures"/>), and
    /// takes part in the distributed Gram and factorisations (<see cref="ScaLAPACK.certify"/>). A rank's rows are computed
    /// once per rank: when Φ is read in more than one column panel, they are kept in a rank-local file (the features' own
    /// dtype) under <c>--work-dir</c> (default <c>$TMPDIR/rf-scalapack-&lt;hash of the subject&gt;</c>, node-local scratch),
    /// deleted when the rank ends. The P_c ranks of one process row own the same rows (each uses its own columns of
    /// them), so each computes them: a P × 1 grid (<c>--grid Px1</c>) computes every row once in all.
    /// Rank 0 makes the run directory, prints the certificate and writes its JSON; every rank prints its line
    /// <c>rank r of P: verdict …</c>. Exit 0 Certified, 1 otherwise, 2 bad input, on every rank.</summary>
    public static int RunModel(CertifyArguments args, CertificateEngineOptions engine)
    {
        if (ScaLAPACK.available().IsError)
        {
            Console.Error.WriteLine($"rf certify: bad input: {ScaLAPACK.available().ErrorValue}");
            return ExitCodes.Usage;
        }
        bool root = RankFromEnvironment() == 0;
        var checkpoint = args.Checkpoint is null ? null : ModelCertification.ResolveCheckpoint(args.Checkpoint);
        // The kernel self-check (which may re-execute this process) runs before MPI is initialised.
        using var app = RfApplication.Start(args.Configuration!, createRunDirectory: root, checkKernels: true, evaluationOnly: true);
        var (rank, size) = ScaLAPACK.processInfo();
        var shape = ScaLAPACK.gridShape(size, engine.Grid ?? "");
        if (shape.IsError)
        {
            if (rank == 0) Console.Error.WriteLine($"rf certify: bad input: {shape.ErrorValue}");
            ScaLAPACK.finish();
            return ExitCodes.Usage;
        }
        var grid = ScaLAPACK.openGrid(shape.ResultValue.Item1, shape.ResultValue.Item2);
        int code;
        try
        {
            // The run directory was made (or not) from the launcher's environment: every rank checks it against MPI.
            ScaLAPACK.Collectively(grid, () =>
            {
                if (root != (rank == 0))
                    throw new ArgumentException($"rank {rank}: the launcher's environment gave rank {RankFromEnvironment()} before MPI started " +
                        "(read from OMPI_COMM_WORLD_RANK, PMIX_RANK, PMI_RANK, MV2_COMM_WORLD_RANK, SLURM_PROCID): set one of them for every rank");
                return 0;
            });
            code = CertifyModel(app, args, checkpoint, engine, grid);
        }
        catch (ArgumentException e)
        {
            // Raised on every rank alike by `Collectively`.
            if (rank == 0) Console.Error.WriteLine($"rf certify: bad input: {e.Message}");
            ScaLAPACK.closeGrid(grid);
            ScaLAPACK.finish();
            return ExitCodes.Usage;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"rf certify: rank {rank} of {size}: {e.GetType().Name}: {e.Message}");
            ScaLAPACK.abort(grid, 1);
            return ExitCodes.Failure;
        }
        ScaLAPACK.closeGrid(grid);
        ScaLAPACK.finish();
        return code;
    }

    /// <summary>Test hook: <c>RF_TEST_SCALAPACK_PANEL_BYTES</c> sets the bytes of a rank's column panel of Φ (default 64 MiB),
    /// so a process test can make a small Φ be read in several panels (the rank feature files then in use).</summary>
    private static readonly long PanelBytesHook =
        long.TryParse(Environment.GetEnvironmentVariable("RF_TEST_SCALAPACK_PANEL_BYTES"), out var b) && b > 0 ? b : 0;

    private static int CertifyModel(RfApplication app, CertifyArguments args, string? checkpoint, CertificateEngineOptions engine, ScaLAPACK.Grid grid)
    {
        bool root = grid.IsRoot;
        void Log(string line)
        {
            if (!root) return;
            Console.Error.WriteLine($"rf certify: {line}");
            app.Logger<RfApplication>().LogInformation("{Line}", line);
        }
        var seed = app.Options.Training.Seed;
        Certificate certificate;
        try
        {
            using var data = ScaLAPACK.Collectively(grid, () => RunSetup.LoadData(app.Options));
            using var features = ScaLAPACK.Collectively(grid, () => new ModelFeatures(app.Options, data, checkpoint, args.Subset, seed));
            var subject = features.Subject;
            Log($"certify: {(checkpoint is null ? $"initialisation (seed {seed})" : $"checkpoint {checkpoint}")}, {subject.Rows} training points, m = {subject.Features}, on {grid.Size} ranks");
            // Node-local scratch by default (TMPDIR): every rank writes its own file, and a shared runs folder would
            // carry P of them.
            var directory = engine.WorkDirectory
                ?? Path.Combine(Path.GetTempPath(), "rf-scalapack-" + ModelCertification.ShortHash(ModelCertification.SubjectKey(subject)));
            if ((long)engine.BlockSize * subject.Features * (features.FeatureType == torch.ScalarType.Float64 ? 8 : 4) > int.MaxValue)
                throw new ArgumentException($"--block {engine.BlockSize}: a block of {engine.BlockSize} rows of m = {subject.Features} features exceeds 2 GB; use a smaller --block");
            // Whether the folder was there before this run, seen by every rank before any rank makes it (`Collectively`
            // returns only when every rank has looked): a folder the run made is removed by the last rank to finish.
            var folderExisted = ScaLAPACK.Collectively(grid, () => Directory.Exists(directory));
            using var cache = new RankFeatureCache(features, Path.Combine(directory, $"features-rank{grid.Rank}-of-{grid.Size}.bin"), removeFolder: !folderExisted);
            var precision = features.FeatureType == torch.ScalarType.Float64 ? "float64" : "float32";
            var source = ScaLAPACK.source(subject.Rows, subject.Features, precision, cache.Read);
            var settings = ScaLAPACK.settingsWithPanel(engine.BlockSize, PanelBytesHook, Log);
            var equal = Microsoft.FSharp.Core.FSharpOption<Microsoft.FSharp.Core.FSharpFunc<int, Microsoft.FSharp.Core.FSharpFunc<int, bool>>>.Some(
                Microsoft.FSharp.Core.FuncConvert.FromFunc<int, Microsoft.FSharp.Core.FSharpFunc<int, bool>>(i =>
                    Microsoft.FSharp.Core.FuncConvert.FromFunc<int, bool>(j => features.RowsEqual(i, j))));
            certificate = ScaLAPACK.certify(ResearchFramework.MathCore.Certify.defaults, settings, grid, subject, equal, source);
            Log($"rank 0's rows: {cache.Computed} row blocks computed once, {cache.ReadBack} reads from its feature file");
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or FileNotFoundException or DirectoryNotFoundException)
        {
            // Raised on every rank alike (`ScaLAPACK.collectively`, or the same configuration seen the same way by every rank).
            if (root) Console.Error.WriteLine($"rf certify: bad input: {e.Message}");
            return ExitCodes.Usage;
        }
        Console.Error.WriteLine(
            $"rf certify: rank {grid.Rank} of {grid.Size}: verdict {certificate.Verdict}, σ_min ≥ {certificate.SigmaMinLower:R}, σ_max ≤ {certificate.SigmaMaxUpper:R}");
        if (root)
        {
            Console.WriteLine(MatrixCertification.Describe(certificate));
            var name = checkpoint is null ? $"init-seed{seed}" : Path.GetFileNameWithoutExtension(checkpoint);
            var output = app.Run!.CertificateFile(name);
            CertificateJson.save(output, certificate);
            Console.WriteLine($"certificate: {output}");
        }
        return certificate.Verdict == Verdict.Certified ? ExitCodes.Success : ExitCodes.Failure;
    }
}

/// <summary>One rank's rows of a model's Φ for the ScaLAPACK engine, which reads Φ by (row block, column panel): a row
/// block is computed by forward passes the first time it is asked for; when the request covers only some columns (Φ read
/// in more than one panel) the whole rows are kept in a rank-local file in the features' dtype, and later panels read
/// them from there, so each row is computed once. The file is deleted when the cache is disposed.</summary>
internal sealed class RankFeatureCache : IDisposable
{
    private readonly ModelFeatures features;
    private readonly string path;
    private readonly int columns;
    private readonly int itemSize;
    private readonly Dictionary<int, (long Offset, int Rows)> index = [];
    private FileStream? file;
    private long end;
    private readonly bool removeFolder;

    /// <summary>Row blocks computed (forward passes) and row blocks read back from the file, so far.</summary>
    public int Computed { get; private set; }
    public int ReadBack { get; private set; }

    public RankFeatureCache(ModelFeatures features, string path, bool removeFolder)
    {
        this.removeFolder = removeFolder;
        this.features = features;
        this.path = path;
        columns = features.Subject.Features;
        itemSize = features.FeatureType == torch.ScalarType.Float64 ? 8 : 4;
    }

    /// <summary>Entries [row0, row0 + rows) × [col0, col0 + width) of Φ, widened to float64, row-major into
    /// <paramref name="destination"/>.</summary>
    public void Read(int row0, int rows, int col0, int width, double[] destination)
    {
        var block = new byte[checked(rows * columns * itemSize)];
        if (index.TryGetValue(row0, out var at))
        {
            if (at.Rows != rows) throw new InvalidOperationException($"row block {row0} was cached with {at.Rows} rows, asked for {rows}");
            if (RandomAccess.Read(file!.SafeFileHandle, block, at.Offset) != block.Length)
                throw new IOException($"{path}: row block {row0} could not be read back whole");
            ReadBack++;
        }
        else
        {
            Computed++;
            using (var t = features.Rows(row0, rows))
            using (var cpu = t.cpu().contiguous())
            {
                if (itemSize == 8) MemoryMarshal.AsBytes(cpu.data<double>().ToArray().AsSpan()).CopyTo(block);
                else MemoryMarshal.AsBytes(cpu.data<float>().ToArray().AsSpan()).CopyTo(block);
            }
            if (width < columns)
            {
                if (file is null)
                {
                    Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                    file = new FileStream(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
                }
                RandomAccess.Write(file.SafeFileHandle, block, end);
                index[row0] = (end, rows);
                end += block.LongLength;
            }
        }
        for (int r = 0; r < rows; r++)
        {
            var target = destination.AsSpan(r * width, width);
            if (itemSize == 8)
                MemoryMarshal.Cast<byte, double>(block.AsSpan()).Slice(r * columns + col0, width).CopyTo(target);
            else
            {
                var from = MemoryMarshal.Cast<byte, float>(block.AsSpan()).Slice(r * columns + col0, width);
                for (int c = 0; c < width; c++) target[c] = from[c];
            }
        }
    }

    public void Dispose()
    {
        file?.Dispose();
        // The folder goes only if the run made it, once empty: every rank tries, the last one to finish succeeds (other
        // ranks' files may still be there before). Nothing here may fail the certificate that has been computed.
        if (removeFolder)
            try { Directory.Delete(Path.GetDirectoryName(path)!); } catch (Exception) { }
    }
}
