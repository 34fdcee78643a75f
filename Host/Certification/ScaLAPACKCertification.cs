using ResearchFramework.Host.Cli;
using ResearchFramework.Host.Data;
using ResearchFramework.MathCore;
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
}
