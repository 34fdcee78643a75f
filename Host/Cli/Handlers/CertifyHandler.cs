using ResearchFramework.Host.Data;
using ResearchFramework.Host.Infrastructure.Configuration;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf certify</c>. Stage 1: validates the configuration or reads and checks the <c>.npy</c> matrix
/// (<see cref="NpyReader"/>), then reports "not wired yet".</summary>
public sealed class CertifyHandler
{
    public int Run(CertifyArguments args)
    {
        if (args.MatrixFile is { } file)
        {
            var matrix = NpyReader.Read(file);
            return NotWired.Report("certify", $"{file}: {matrix.Rows}×{matrix.Columns} matrix read");
        }
        RfOptions.Load(RfConfiguration.Build(args.Configuration!));
        return NotWired.Report("certify", "configuration is valid");
    }
}
