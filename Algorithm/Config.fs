/// Configuration of a base run and of a two-phase run (SPEC §4).
namespace ResearchFramework.Algorithm

open TorchSharp
open ResearchFramework.MathCore

/// What the body does in Phase II (SPEC §4.3): damped steps α_t·(A's step), or α_t = 0.
type PhaseTwoMode =
    | Damped = 0
    | Frozen = 1

/// The readout's step size in Phase II relative to the theorem of SPEC §4 (η ≤ n/σ_max(Φ̃)² for
/// full-batch gradient steps; b/σ_max(Φ̃)² bounds every mini-batch of size b, since σ_max(Φ̃_B) ≤ σ_max(Φ̃)).
type ReadoutStepRule =
    /// η_V,t = min(η_t, b/σ̄²) (2b/σ̄² for cross-entropy), σ̄ the rigorous upper bound on σ_max(Φ̃) of the last certificate or
    /// guard check, for the gradient rules (SGD, momentum, Nesterov); Adam and AdamW keep η_t (their
    /// steps are not gradient steps, and the run's reason says the theorem's step hypothesis is not met).
    | Theorem = 0
    /// η_V,t = η_t: A's schedule as configured.
    | Schedule = 1
    /// The preconditioned rule of Theorem P (docs/theory.md §4): squared loss, W ← (1 − η_P)W + η_P·Φ̃ᵀ(G_τ + nλI)⁻¹Z
    /// with the switch's factor of G_τ = Φ̃_τΦ̃_τᵀ, on all n training points every step; with a frozen body the gap
    /// J_λ(W) − J_λ* contracts by (1 − η_P)² per step whatever the conditioning of Φ̃, and k(ε) is predicted at the switch.
    | Preconditioned = 2

/// Which parameters form the readout V of SPEC §4.2.
type ReadoutChoice =
    /// A separate linear readout on the taps, with bias, zero-initialised at the switch (every architecture).
    | Separate = 0
    /// The MLP's own output layer (its taps must be the last hidden layer, the default): V is that layer's
    /// weight and bias as trained in Phase I (SPEC §4.2 allows it), so no extra layer runs in Phase II.
    | OutputLayer = 1

/// One record configures the base algorithm A and the run (SPEC §4 inputs). The same record
/// drives the base run and the two-phase run, so both use the same T, seed, batches and A.
/// CheckpointEvery = 0 or CheckpointDirectory = null/"" disables periodic checkpoints.
/// RecordFingerprints: add a parameter fingerprint to every step record (for bit-identity checks).
type TrainingConfig =
    { Seed: int
      BatchSize: int
      Schedule: Schedule
      TotalIterations: int
      Optimizer: OptimizerSpec
      Loss: LossKind
      Device: string
      CheckpointEvery: int
      CheckpointDirectory: string
      RecordFingerprints: bool }

    static member Default =
        { Seed = 0; BatchSize = 32; Schedule = Schedule.Constant 0.01; TotalIterations = 100
          Optimizer = OptimizerSpec.Sgd; Loss = LossKind.Squared; Device = "cpu"
          CheckpointEvery = 0; CheckpointDirectory = null; RecordFingerprints = false }

/// The recipe's own knobs (SPEC §4): switch τ, Phase II mode, perturbation ε and tries R,
/// damping α_t = (t − τ + 1)^(−p), guard κ checked every K steps, certification-set size
/// (0 = the whole training set; otherwise the first k training points), the readout's step rule, and
/// which parameters form the readout.
type RecipeConfig =
    { /// τ: the iteration of the switch (SPEC §4.2).
      SwitchIteration: int
      /// Phase II body: damped (α_t = (t − τ + 1)^(−p)) or frozen.
      Mode: PhaseTwoMode
      /// ε of the switch's perturbations ω + ε·ξ.
      PerturbationScale: float
      /// R: at most this many perturbations at the switch.
      MaxTries: int
      /// p of α_t = (t − τ + 1)^(−p).
      DampingPower: float
      /// κ ∈ (0, 1): the guard proves σ_min(Φ̃_t) ≥ κ·σ_min(Φ̃_τ).
      GuardKappa: float
      /// K: the guard checks every K Phase II steps (0: never).
      CheckPeriod: int
      /// Certification-set size (0 = the whole training set, else its first k points).
      CertificationSize: int
      /// V's step rule.
      ReadoutStep: ReadoutStepRule
      /// Which parameters form V.
      Readout: ReadoutChoice
      /// η_P ∈ (0, 1] of the preconditioned rule (ReadoutStep = Preconditioned; Theorem P).
      PreconditionedStep: float
      /// λ ≥ 0 of the objective J_λ(W) = (1/2n)‖Φ̃W − Z‖² + (λ/2)‖W‖² the preconditioned rule minimises
      /// (0: the squared loss itself, whose infimum is L* = 0 under EC).
      ReadoutRidge: float
      /// ε of the predicted steps-to-ε k(ε): J_λ − J_λ* ≤ ε·(its value at the switch) (Theorem P).
      PredictionEpsilon: float
      /// δ ∈ (0, 1) of Theorem PD (damped body, λ = 0, docs/theory.md §4): the preconditioned step's drift ratio
      /// Δ_t = ‖R̂_t − G_tA_t‖/‖R̂_t‖ may reach δ; beyond it the run refactors G at the current body. The predicted
      /// rate is 1 − η_P(1 − δ) per step.
      RefactorThreshold: float
      /// Theorem PD: shorten the damped body's step (halving, at most 30 times, else no body step) until its perturbation
      /// of the outputs e_t fits the uniform budget η_P(1 − δ)(√ε/2)‖R_τ‖, so that the prediction's hypothesis holds by
      /// construction (α_t is only ever made smaller: Σα_t stays finite). Off: the body steps as A does, and a failed
      /// hypothesis is reported.
      LimitBodyStep: bool
      /// The certificate engine of the switch and the guard (docs/theory.md §3, "Tiles"): Auto (dense when 32·n² bytes
      /// fit its memory budget, else tiled), Dense or Tiled, the tile size, the memory budget and the folder of the tile
      /// files (a killed run's certificate resumes from them). Theorem P's factor of G_τ + nλI takes the same storage.
      CertificateEngine: CertificateEngine }

    /// The defaults: τ = 0, damped (p = 2), ε = 1e-3, R = 3, κ = 0.5, K = 10, all points, the theorem's step, a separate V.
    static member Default =
        { SwitchIteration = 0; Mode = PhaseTwoMode.Damped; PerturbationScale = 1e-3; MaxTries = 3
          DampingPower = 2.0; GuardKappa = 0.5; CheckPeriod = 10; CertificationSize = 0
          ReadoutStep = ReadoutStepRule.Theorem; Readout = ReadoutChoice.Separate
          PreconditionedStep = 0.5; ReadoutRidge = 0.0; PredictionEpsilon = 1e-6; RefactorThreshold = 0.5; LimitBodyStep = true; CertificateEngine = CertificateEngine.Default }

    /// The same recipe switching at τ = `tau` (C#: F#'s `{ r with … }`).
    member r.WithSwitchIteration(tau: int) = { r with SwitchIteration = tau }
    /// The same recipe with Phase II mode `mode` and damping power p (α_t = (t − τ + 1)^(−p)).
    member r.WithPhaseTwo(mode: PhaseTwoMode, dampingPower: float) = { r with Mode = mode; DampingPower = dampingPower }
    /// The same recipe with guard κ checked every `checkPeriod` Phase II steps (0: never).
    member r.WithGuard(kappa: float, checkPeriod: int) = { r with GuardKappa = kappa; CheckPeriod = checkPeriod }
    /// The same recipe with perturbation scale ε and at most `maxTries` perturbations at the switch.
    member r.WithPerturbation(scale: float, maxTries: int) = { r with PerturbationScale = scale; MaxTries = maxTries }
    /// The same recipe with V's step rule `rule`.
    member r.WithReadoutStep(rule: ReadoutStepRule) = { r with ReadoutStep = rule }
    /// The same recipe with the preconditioned rule of Theorem P: step η_P, ridge λ, prediction ε.
    member r.WithPreconditionedReadout(step: float, ridge: float, epsilon: float) =
        { r with ReadoutStep = ReadoutStepRule.Preconditioned; PreconditionedStep = step; ReadoutRidge = ridge; PredictionEpsilon = epsilon }
    /// The same recipe with Theorem PD's refactor threshold δ ∈ (0, 1) (damped body, λ = 0).
    member r.WithRefactorThreshold(threshold: float) = { r with RefactorThreshold = threshold }
    /// The same recipe with Theorem PD's body-step limit on or off.
    member r.WithLimitBodyStep(limit: bool) = { r with LimitBodyStep = limit }
    /// The same recipe certifying (switch, guard) and factoring Theorem P's M_τ on `engine` (`CertificateEngine`).
    member r.WithCertificateEngine(engine: CertificateEngine) = { r with CertificateEngine = engine }

/// The training set S as tensors: inputs X (n × …) and targets Y (n × c real, or n labels).
type TrainingData(inputs: torch.Tensor, targets: torch.Tensor) =
    do
        if inputs.shape.[0] <> targets.shape.[0] then
            invalidArg "targets" (sprintf "X has %d rows but Y has %d" inputs.shape.[0] targets.shape.[0])
    let fingerprint = lazy (Fingerprint.ofTensors [ inputs; targets ])
    member _.Inputs = inputs
    member _.Targets = targets
    member _.Count = int inputs.shape.[0]
    /// SHA-256 of X and Y (dtype, shape, bytes): names the dataset in certificates.
    member _.Fingerprint = fingerprint.Value
