using System.ComponentModel.DataAnnotations;

namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>Configuration section <c>Run</c>: where run directories go and what they are called.</summary>
public sealed class RunOptions
{
    public const string Section = "Run";

    [Required]
    public string RunsDirectory { get; set; } = "runs";

    /// <summary>Prefix of the run folder <c>&lt;RunName&gt;-&lt;timestamp&gt;</c>; letters, digits, '-', '_' and '.'.</summary>
    [Required, RegularExpression(@"^[A-Za-z0-9._-]{1,80}$", ErrorMessage = "must be 1-80 characters of letters, digits, '.', '_' or '-'")]
    public string RunName { get; set; } = "run";
}
