using System.ComponentModel.DataAnnotations;

namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>Configuration section <c>Recipe</c>: the two-phase recipe of SPEC §4.</summary>
public sealed class RecipeOptions : IValidatableObject
{
    public const string Section = "Recipe";

    public bool Enabled { get; set; }

    /// <summary>Iteration at which phase two starts.</summary>
    [Range(0, int.MaxValue)]
    public int SwitchIteration { get; set; } = 500;

    [Required, OneOf("damped", "frozen")]
    public string PhaseTwoMode { get; set; } = "damped";

    [Range(1e-12, 1.0)]
    public double Epsilon { get; set; } = 1e-3;

    /// <summary>p of the damping α_t = (t − τ + 1)^(−p); above 1 so that Σ α_t &lt; ∞ (SPEC §4.3; default 2).</summary>
    [Range(0.0, 10.0)]
    public double DampingPower { get; set; } = 2.0;

    [Range(1, 1000)]
    public int MaxTries { get; set; } = 10;

    [Range(1e-12, 1e12)]
    public double Kappa { get; set; } = 1e-6;

    [Range(1, int.MaxValue)]
    public int CheckEvery { get; set; } = 50;

    /// <summary>Training samples used for the certificate; 0 = all.</summary>
    [Range(0, int.MaxValue)]
    public int CertificationSubset { get; set; }

    /// <summary>Readout step in phase two: "theorem" caps it at b/σ_max(Φ̃)² (SPEC §4, gradient rules only);
    /// "schedule" uses the base schedule as is; "preconditioned" is Theorem P (docs/theory.md §4): squared loss, the
    /// switch's Cholesky factor of G_τ + nλI as preconditioner, a rate independent of Φ̃'s conditioning and a predicted
    /// number of steps to ε.</summary>
    [Required, OneOf("theorem", "schedule", "preconditioned")]
    public string ReadoutStep { get; set; } = "theorem";

    /// <summary>η_P ∈ (0, 1] of the preconditioned readout step (Theorem P).</summary>
    [Range(1e-6, 1.0)]
    public double PreconditionedStep { get; set; } = 0.5;

    /// <summary>λ ≥ 0 of the ridge objective the preconditioned readout minimises (0: the squared loss, L* = 0).</summary>
    [Range(0.0, 1e6)]
    public double ReadoutRidge { get; set; }

    /// <summary>ε of the predicted steps-to-ε k(ε) (Theorem P).</summary>
    [Range(1e-15, 0.5)]
    public double PredictionEpsilon { get; set; } = 1e-6;

    /// <summary>δ ∈ (0, 1) of Theorem PD (damped body, λ = 0; docs/theory.md §4): when the preconditioned step's drift
    /// ratio exceeds it, the run refactors the Gram at the current body; the predicted rate is 1 − η_P(1 − δ).</summary>
    [Range(1e-12, 0.999999999)]
    public double RefactorThreshold { get; set; } = 0.5;

    /// <summary>Theorem PD: shorten the damped body's step until its perturbation of the outputs fits the prediction's
    /// budget (true, default), or let the body step as the base algorithm does and report a failed hypothesis.</summary>
    public bool LimitBodyStep { get; set; } = true;

    /// <summary>Which parameters form the readout V: "separate" (a zero-initialised linear readout on the taps) or
    /// "output-layer" (an MLP's own output layer; its taps must be the last hidden layer; SPEC §4.2).</summary>
    [Required, OneOf("separate", "output-layer")]
    public string Readout { get; set; } = "separate";

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Enabled && SwitchIteration == 0)
            yield return new ValidationResult("must be positive when the recipe is enabled", [nameof(SwitchIteration)]);
        if (Enabled && PhaseTwoMode.Equals("damped", StringComparison.OrdinalIgnoreCase) && DampingPower <= 1.0)
            yield return new ValidationResult("must exceed 1 in damped mode, so that Σ α_t = Σ (t − τ + 1)^(−p) is finite (SPEC §4.3)", [nameof(DampingPower)]);
    }
}
