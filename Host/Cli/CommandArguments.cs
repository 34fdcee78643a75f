using ResearchFramework.Host.Infrastructure.Configuration;

namespace ResearchFramework.Host.Cli;

/// <summary>Parsed arguments of <c>rf train</c>.</summary>
public sealed record TrainArguments(ConfigurationInput Configuration, string? Resume = null);

/// <summary>Parsed arguments of <c>rf compare</c>: the same configuration over <paramref name="Seeds"/> seeds.</summary>
public sealed record CompareArguments(ConfigurationInput Configuration, int Seeds, string? Resume = null);

/// <summary>Parsed arguments of <c>rf certify</c>: either a configuration (+ checkpoint, subset) or a matrix file (+ JSON
/// output, the bias column on or off, the tensor of a <c>.safetensors</c> file), and the certificate engine for both.
/// <paramref name="EngineGiven"/>, <paramref name="TileSizeGiven"/>: <c>--engine</c>, <c>--tile-size</c> were given (with
/// <c>--config</c> they win over <c>Certificate:Engine</c>, <c>Certificate:TileSize</c>).</summary>
public sealed record CertifyArguments(ConfigurationInput? Configuration, string? Checkpoint, int? Subset, string? MatrixFile, string? JsonOutput,
    bool Bias = true, string? Tensor = null, ResearchFramework.Host.Certification.CertificateEngineOptions? Engine = null,
    bool EngineGiven = false, bool TileSizeGiven = false);

/// <summary>Parsed arguments of <c>rf export</c>: a run directory and the <c>.safetensors</c> file to write (default
/// <c>RUN_DIR/export/final.safetensors</c>).</summary>
public sealed record ExportArguments(string RunDirectory, string? Output);

/// <summary>Parsed arguments of <c>rf prove fc</c>: n inputs (Gaussian in R^4 from the seed, or the first n
/// training images of a dataset), hidden widths (the last is the wide layer), activation, certificate JSON output.</summary>
/// <paramref name="Engine"/>: the certificate engine (<c>--engine</c>, <c>--tile-size</c>, <c>--tile-memory-gb</c>; null: auto).
public sealed record ProveFcArguments(int N, string Widths, int Seed, string Activation, string? Dataset, string DataDirectory, string? JsonOutput,
    ResearchFramework.Host.Certification.CertificateEngineOptions? Engine = null);

/// <summary>Parsed arguments of <c>rf worker</c>.</summary>
public sealed record WorkerArguments(string SpoolDirectory, bool Once = false);

/// <summary>Parsed arguments of <c>rf data fetch</c>.</summary>
public sealed record DataFetchArguments(string Name, string? DataDirectory, ConfigurationInput Configuration, bool Own = false);

/// <summary>Parsed arguments of <c>rf verify</c>: property groups or filters, the case budget (<c>Nx</c> a multiple of
/// each property's CI count, or <c>N</c> cases), a time budget, cases per batch, the shape scale, the devices, the
/// master seed, the run directory (<c>--out</c>, or <c>--resume</c> of an existing one), a failure file to replay and
/// the property runner to use.</summary>
public sealed record VerifyArguments(string[] Filters, string? Cases, string? Time, int? Batch, double? SizeScale, string[] Devices, long Seed,
    string? Output, string? Resume, string? Replay, string? PropertiesPath);
