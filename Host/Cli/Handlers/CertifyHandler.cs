using ResearchFramework.Host.Certification;
using ResearchFramework.Host.Data;
using ResearchFramework.MathCore;
using ResearchFramework.Host.Infrastructure.Configuration;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf certify</c>. Stage 1: validates the configuration or reads and checks the <c>.npy</c> matrix
/// (<see cref="NpyReader"/>), then reports "not wired yet".</summary>
public sealed class CertifyHandler
{
    public int Run(CertifyArguments args)
    {
        if (args.MatrixFile is { } file) return CertifyMatrix(file, args.JsonOutput);
        RfOptions.Load(RfConfiguration.Build(args.Configuration!));
        return NotWired.Report("certify", "configuration is valid");
    }

    /// <summary><c>rf certify --matrix FILE.npy [--json OUT]</c>: exit 0 Certified, 1 Refuted/Inconclusive, 2 bad input.</summary>
    private static int CertifyMatrix(string file, string? jsonOutput)
    {
        NpyMatrix matrix;
        try
        {
            matrix = NpyReader.Read(file);
        }
        catch (Exception e) when (e is NpyFormatException or FileNotFoundException or DirectoryNotFoundException)
        {
            Console.Error.WriteLine($"rf certify: bad input: {e.Message}");
            return ExitCodes.Usage;
        }
        var certificate = MatrixCertification.Certify(file, matrix);
        Console.WriteLine(MatrixCertification.Describe(certificate));
        var output = jsonOutput ?? Path.ChangeExtension(file, ".certificate.json");
        CertificateJson.save(output, certificate);
        Console.WriteLine($"certificate: {output}");
        return certificate.Verdict == Verdict.Certified ? ExitCodes.Success : ExitCodes.Failure;
    }
}
