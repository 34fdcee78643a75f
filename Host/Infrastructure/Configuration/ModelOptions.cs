using System.ComponentModel.DataAnnotations;

namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>Configuration section <c>Model</c>: architecture and its widths.</summary>
public sealed class ModelOptions : IValidatableObject
{
    public const string Section = "Model";

    [Required, OneOf("mlp", "lenet", "resnet18")]
    public string Architecture { get; set; } = "mlp";

    /// <summary>Default of <see cref="HiddenWidths"/> when the key is absent from every configuration layer.</summary>
    public static readonly int[] DefaultHiddenWidths = [64];

    /// <summary>Widths of the narrow hidden layers (MLP). Starts empty because the configuration binder appends
    /// to an initialised array; <see cref="DefaultHiddenWidths"/> is applied after binding when the key is absent.
    /// (Arrays merge by index across configuration layers, so give the full list in one layer.)</summary>
    [Required]
    public int[] HiddenWidths { get; set; } = [];

    /// <summary>Width of the one wide layer (see SPEC §5); must be ≥ the number of training samples for the certificate.</summary>
    [Range(1, 1_000_000)]
    public int WideWidth { get; set; } = 1024;

    [Required, OneOf("tanh", "softplus", "relu", "sigmoid")]
    public string Activation { get; set; } = "tanh";

    [Range(0.0625, 64.0)]
    public double WidthMultiplier { get; set; } = 1.0;

    /// <summary>Floating-point precision of parameters and activations.</summary>
    [Required, OneOf("float32", "float64")]
    public string Precision { get; set; } = "float32";

    /// <summary>Names of the layers whose features the certificate taps.</summary>
    [Required]
    public string[] Taps { get; set; } = [];

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (HiddenWidths.Any(w => w < 1))
            yield return new ValidationResult($"every width must be at least 1", [nameof(HiddenWidths)]);
    }
}
