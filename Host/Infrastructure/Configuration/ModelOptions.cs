using System.ComponentModel.DataAnnotations;

namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>Configuration section <c>Model</c>: architecture and its widths.</summary>
public sealed class ModelOptions
{
    public const string Section = "Model";

    [Required, OneOf("mlp", "lenet", "resnet18")]
    public string Architecture { get; set; } = "mlp";

    /// <summary>Widths of the narrow hidden layers (MLP).</summary>
    [Required, MinLength(0)]
    public int[] HiddenWidths { get; set; } = [64];

    /// <summary>Width of the one wide layer (see SPEC §5); must be ≥ the number of training samples for the certificate.</summary>
    [Range(1, 1_000_000)]
    public int WideWidth { get; set; } = 1024;

    [Required, OneOf("tanh", "softplus", "relu", "sigmoid")]
    public string Activation { get; set; } = "tanh";

    [Range(0.0625, 64.0)]
    public double WidthMultiplier { get; set; } = 1.0;

    /// <summary>Names of the layers whose features the certificate taps.</summary>
    [Required]
    public string[] Taps { get; set; } = [];
}
