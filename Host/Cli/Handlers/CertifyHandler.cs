using Microsoft.Extensions.Logging;
using ResearchFramework.Host.Certification;
using ResearchFramework.Host.Data;
using ResearchFramework.Host.Infrastructure;
using ResearchFramework.Host.Training;
using ResearchFramework.MathCore;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf certify</c>: <c>--config FILE [--checkpoint C] [--subset K]</c> certifies architecture + dataset + taps at
/// initialisation or at a checkpoint (<see cref="ModelCertification"/>), writing the JSON into a run directory's
/// <c>certificates/</c>; <c>--matrix FILE</c> certifies a given matrix (<c>.npy</c> or <c>.safetensors</c>, streamed; bias
/// column on unless <c>--bias off</c>). Exit 0 Certified, 1 otherwise, 2 bad input.</summary>
public sealed class CertifyHandler
{
    public int Run(CertifyArguments args)
    {
        var engine = args.Engine ?? CertificateEngineOptions.Default;
        if (args.MatrixFile is { } file) return CertifyMatrix(file, args.JsonOutput, args.Bias, args.Tensor, engine);
        if (engine.Kind == CertificateEngineKind.ScaLAPACK) return ScaLAPACKCertification.RunModel(args, engine);
        var checkpoint = args.Checkpoint is null ? null : ModelCertification.ResolveCheckpoint(args.Checkpoint);
        using var app = RfApplication.Start(args.Configuration!, createRunDirectory: true, checkKernels: true, evaluationOnly: true);
        var logger = app.Logger<CertifyHandler>();
        // Certificate:Engine, TileSize and TileMemoryGB of the configuration, under the flags given on the command line
        engine = CertificateEngineConfiguration.Merge(app.Options.Certificate, engine, args.EngineGiven, args.TileSizeGiven);
        using var data = RunSetup.LoadData(app.Options);
        long certified = MemoryBudget.CertifiedRows(app.Options, args.Subset, data.Train.Count);
        bool tiled = engine.UsesTiled(certified);
        if (!tiled)
            MemoryBudget.EnsureCertificateFits(certified, "rf certify",
                "Refused before any training step (the data is loaded, nothing trained): use --engine tiled, or set Recipe:CertificationSubset (or --subset) to");
        var seed = app.Options.Training.Seed;
        logger.LogInformation("certify: {What}, {Rows} training points", checkpoint is null ? $"initialisation (seed {seed})" : $"checkpoint {checkpoint}",
            args.Subset ?? data.Train.Count);
        var name = checkpoint is null ? $"init-seed{seed}" : Path.GetFileNameWithoutExtension(checkpoint);
        // The default tile folder is shared by every `rf certify` of the same model and data (a new run directory is
        // made per invocation), so running the same command again resumes; it is keyed by the certified subject.
        var runs = Path.GetDirectoryName(app.Run!.Path)!;
        void Log(string line)
        {
            Console.Error.WriteLine($"rf certify: {line}");
            logger.LogInformation("{Line}", line);
        }
        var (certificate, workDirectory) = ModelCertification.Certify(app.Options, data, checkpoint, args.Subset, seed,
            tiled ? engine with { Kind = CertificateEngineKind.Tiled } : engine with { Kind = CertificateEngineKind.Dense }, runs, Log);
        Console.WriteLine(MatrixCertification.Describe(certificate));
        var output = app.Run!.CertificateFile(name);
        CertificateJson.save(output, certificate);
        Console.WriteLine($"certificate: {output}");
        if (workDirectory is not null) CertificateEngineOptions.RemoveTiles(workDirectory);
        return certificate.Verdict == Verdict.Certified ? ExitCodes.Success : ExitCodes.Failure;
    }

    /// <summary><c>rf certify --matrix FILE [--json OUT] [--bias on|off] [--tensor NAME]</c>: FILE is a <c>.npy</c> or
    /// <c>.safetensors</c> matrix, streamed (<see cref="MatrixCertification"/>); exit 0 Certified, 1 Refuted/Inconclusive,
    /// 2 bad input.</summary>
    private static int CertifyMatrix(string file, string? jsonOutput, bool withBias, string? tensor, CertificateEngineOptions engine)
    {
        int BadInput(string message)
        {
            Console.Error.WriteLine($"rf certify: bad input: {message}");
            return ExitCodes.Usage;
        }
        var output = jsonOutput ?? Path.ChangeExtension(file, ".certificate.json");
        if (string.Equals(Path.GetFullPath(output), Path.GetFullPath(file), StringComparison.Ordinal))
            return BadInput($"--json {output} is the input file itself; it would be overwritten");
        if (File.Exists(file) && !FileChecks.IsRegularFile(file))
            return BadInput($"{file} is not a regular file (a device, FIFO or socket): give a .npy or .safetensors file");
        if (engine.Kind == CertificateEngineKind.ScaLAPACK)
            return ScaLAPACKCertification.Run(file, output, withBias, tensor, engine);
        // Default tile folder of the tiled engine: next to the JSON, so the same command resumes an interrupted run.
        var workDirectory = engine.WorkDirectory ?? Path.ChangeExtension(output, ".tiles");
        Certificate certificate;
        // the JSON serializer's metadata is built beside the certificate's linear algebra, not after it
        var jsonPrepared = Task.Run(CertificateJson.prepare);
        try
        {
            var layout = MatrixFiles.Open(file, tensor);
            certificate = MatrixCertification.Certify(layout, withBias, engine, workDirectory, line => Console.Error.WriteLine($"rf certify: {line}"),
                                                      MatrixCertification.StartFingerprint(layout.Path));
        }
        catch (Exception e) when (e is MatrixFormatException or FileNotFoundException or DirectoryNotFoundException)
        {
            return BadInput(e.Message);
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            return BadInput($"{file}: cannot be read ({e.Message})");
        }
        catch (ArgumentException e)
        {
            // The certificate refuses inputs outside its error analysis (squares that overflow, entries that underflow).
            return BadInput($"{file}: {e.Message}");
        }
        Console.WriteLine(MatrixCertification.Describe(certificate));
        jsonPrepared.Wait();
        CertificateJson.save(output, certificate);
        Console.WriteLine($"certificate: {output}");
        CertificateEngineOptions.RemoveTiles(workDirectory);
        return certificate.Verdict == Verdict.Certified ? ExitCodes.Success : ExitCodes.Failure;
    }
}
