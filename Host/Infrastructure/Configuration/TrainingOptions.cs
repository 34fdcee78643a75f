using System.ComponentModel.DataAnnotations;

namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>Configuration section <c>Training</c>: optimiser, schedule, loss and bookkeeping.</summary>
public sealed class TrainingOptions
{
    public const string Section = "Training";

    [Required, OneOf("sgd", "momentum", "nesterov", "adam", "adamw")]
    public string Optimizer { get; set; } = "sgd";

    [Range(1e-12, 100.0)]
    public double LearningRate { get; set; } = 0.05;

    [Range(0.0, 0.999999)]
    public double Momentum { get; set; } = 0.9;

    [Range(0.0, 1.0)]
    public double WeightDecay { get; set; }

    [Required, OneOf("constant", "step", "cosine", "warmup")]
    public string Schedule { get; set; } = "constant";

    [Range(0, int.MaxValue)]
    public int WarmupSteps { get; set; }

    [Range(1, int.MaxValue)]
    public int StepSize { get; set; } = 1000;

    [Range(1e-9, 1.0)]
    public double Gamma { get; set; } = 0.1;

    [Range(1, 1_000_000)]
    public int BatchSize { get; set; } = 128;

    [Range(1, int.MaxValue)]
    public int TotalIterations { get; set; } = 1000;

    public int Seed { get; set; }

    [Required, OneOf("squared", "crossentropy")]
    public string Loss { get; set; } = "crossentropy";

    [Required, OneOf("auto", "cpu", "cuda")]
    public string Device { get; set; } = "auto";

    /// <summary>Iterations between checkpoints; 0 = none periodically (one is still written on Ctrl-C / SIGTERM).</summary>
    [Range(0, int.MaxValue)]
    public int CheckpointEvery { get; set; }

    [Range(1, int.MaxValue)]
    public int LogEvery { get; set; } = 50;
}
