using System.ComponentModel.DataAnnotations;

namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>Configuration section <c>Certificate</c>: the engine of every certificate a run makes (the trainer's switch
/// and guard, Theorem P's factor, <c>rf certify --config</c>; docs/theory.md §3 "Tiles").</summary>
public sealed class CertificateOptions
{
    public const string Section = "Certificate";

    /// <summary>"auto": the dense n×n Gram when its 32·n² bytes fit the memory available, else tiled; "dense"; "tiled"
    /// (tile files in the run directory's <c>tiles/</c>, so a killed run's certificate resumes from them).</summary>
    [Required, OneOf("auto", "dense", "tiled")]
    public string Engine { get; set; } = "auto";

    /// <summary>Rows and columns of a tile of the tiled engine.</summary>
    [Range(1, 1 << 20)]
    public int TileSize { get; set; } = 2048;

    /// <summary>GB of tiles the tiled engine keeps in memory (beyond it: tile files). Unset: 20 GiB (a 24 GB machine with
    /// headroom), at most half the memory available (then absent from <c>config.effective.json</c>, which is read back as
    /// a configuration file on resume).</summary>
    [Range(1e-6, 1e6)]
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public double? TileMemoryGB { get; set; }
}
