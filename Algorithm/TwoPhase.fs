/// The two-phase recipe of SPEC §4 as a composable transformation around a base first-order
/// algorithm A, in the shape of optax's `init` / `update`: an immutable `RecipeSetup` (the model,
/// its taps, the body's rule A, the certification set), an explicit `RecipeState` record, and pure-
/// shaped step functions `TwoPhase.Init` / `TwoPhase.Step` that the user calls once per iteration
/// of their own loop. Parameter groups get different rules: the body ω takes A's step damped by
/// α_t (SPEC §4.3); the readout V (SPEC §4.2) takes its own rule, its step capped by the theorem's
/// b/σ̄² (docs/theory.md §4). The recipe owns the switch at τ (BN → eval, V = 0, the certificate,
/// perturbation retries), the damping, V's step rule, the rank guard and the serialisation of its
/// own state; effects are at the edges (the observer's events, the certificates it computes).
///
/// A state is consumed by the call that takes it (its tensors may be disposed or reused):
/// keep only the returned one, and `TwoPhase.Dispose` the last one.
namespace ResearchFramework.Algorithm

open System
open System.IO
open TorchSharp
open ResearchFramework.MathCore

/// Captures the flattened outputs of the tap layers during a forward pass, with gradients
/// (Phase II needs ∂h/∂ω for the body's damped step), concatenated in tap order: h̃ without the 1.
type internal TapCapture(model: torch.nn.Module<torch.Tensor, torch.Tensor>, taps: string list) =
    let resolved = FeatureMap.resolveTaps model taps
    /// Runs `f` with forward hooks on the taps; returns f's result and h (batch × m).
    member _.Run(f: unit -> torch.Tensor) : torch.Tensor * torch.Tensor =
        let z, captured = FeatureMap.captureTaps resolved (fun output -> output.flatten(1L)) f
        z, (if captured.Length = 1 then captured.[0] else torch.cat(captured, 1L))

/// How the body ω takes the base algorithm's step, so that the recipe can form α_t·(A's step)
/// (SPEC §4.3).
type BodyRule =
    /// A torch optimiser over the body's parameters (built-in or the user's own). The damped step
    /// runs it with every group's η multiplied by α_t for that step: exactly α_t·(A's step) when A's
    /// step is linear in η given its state (SGD, momentum, Nesterov, Adam, AdamW, RMSprop, Adagrad:
    /// their buffers and moments do not depend on η).
    | Optimizer of torch.optim.Optimizer
    /// Any step function that applies A's step to the body in place. The damped step is formed by
    /// interpolation, ω_{t+1} = ω_t + α_t·(A(ω_t) − ω_t), for any rule; A's own state advances as
    /// in an undamped step.
    | StepFunction of Action

    /// The rule of a torch optimiser (see `BodyRule.Optimizer`).
    static member Of(optimizer: torch.optim.Optimizer) =
        if isNull optimizer then nullArg "optimizer"
        BodyRule.Optimizer optimizer

    /// The rule of a step function (see `BodyRule.StepFunction`).
    static member Of(step: Action) =
        if isNull step then nullArg "step"
        BodyRule.StepFunction step

/// The certification set of SPEC §3: the inputs whose Φ̃(ω) the switch and the guard certify,
/// named in the certificate. `TrainingCount` is n of the training set (when the certification set
/// is a subset, the σ_max bound behind V's step cap is a heuristic, and the switch says so).
type CertificationInputs =
    { /// The inputs, rows = points (any device; moved to the model's device in blocks).
      Inputs: torch.Tensor
      /// SHA-256 naming the dataset in certificates.
      DatasetFingerprint: string
      /// Words for the certificate, e.g. "all 1024 training points".
      Description: string
      /// n of the training set (≥ the certification set's rows).
      TrainingCount: int
      /// The first pair (i, j) of bitwise-identical inputs, as [| i; j |], or empty: then EC is
      /// refuted for every ω (SPEC §2: h is a function of x).
      DuplicateInputs: Lazy<int[]> }

    /// The certification set of `inputs`: all `trainingCount` points when it has that many rows,
    /// else the first rows of the training set (described so).
    static member Create(inputs: torch.Tensor, datasetFingerprint: string, trainingCount: int) =
        if isNull inputs then nullArg "inputs"
        let rows = int inputs.shape.[0]
        if rows < 1 then invalidArg "inputs" "the certification set is empty"
        if trainingCount < rows then invalidArg "trainingCount" (sprintf "the training set (%d points) is smaller than the certification set (%d)" trainingCount rows)
        { Inputs = inputs
          DatasetFingerprint = (if isNull datasetFingerprint then Fingerprint.ofTensors [ inputs ] else datasetFingerprint)
          Description = (if rows = trainingCount then sprintf "all %d training points" rows else sprintf "first %d of %d training points" rows trainingCount)
          TrainingCount = trainingCount
          DuplicateInputs =
            lazy (Losses.identicalInputGroups inputs |> Array.tryFind (fun g -> g.Length > 1)
                  |> Option.map (fun g -> [| g.[0]; g.[1] |]) |> Option.defaultValue [||]) }

    /// Rows of the certification set.
    member c.Rows = int c.Inputs.shape.[0]

/// Everything the recipe needs that does not change during a run: the recipe's knobs, the model f
/// with its taps (h of SPEC §1), the body ω and its rule A, where V comes from and its rule, the
/// certification set, and the quantities behind V's step cap. Built by `TwoPhase.Setup`; adjust
/// with `with` (F#) or the `With…` members (C#).
type RecipeSetup =
    { /// The recipe's knobs (SPEC §4).
      Recipe: RecipeConfig
      /// The network f (any module).
      Model: torch.nn.Module<torch.Tensor, torch.Tensor>
      /// Tap layer names defining h (SPEC §1).
      Taps: string[]
      /// ω: the parameters the body rule steps (every parameter of the model except an existing readout layer).
      Body: Modules.Parameter[]
      /// How the body takes A's step (optimiser or step function).
      BodyRule: BodyRule
      /// V = this existing linear output layer (ReadoutChoice.OutputLayer: its taps must be the
      /// layer's input), trained in Phase I by `OutputOptimizer`; null for a separate V.
      OutputLayer: Modules.Linear
      /// The output layer's optimiser (ReadoutChoice.OutputLayer), null otherwise.
      OutputOptimizer: torch.optim.Optimizer
      /// Builds V's optimiser over V's parameters at the switch (separate V; η is set every step).
      ReadoutOptimizer: Func<Modules.Parameter[], torch.optim.Optimizer>
      /// True when the readout's rule takes (heavy-ball) gradient steps, so the theorem's cap applies.
      ReadoutTakesGradientSteps: bool
      /// Words for the readout rule in the switch's reason (e.g. "Sgd").
      ReadoutRuleName: string
      /// Output width c (V: R^m → R^c).
      Classes: int
      /// The model's dtype (V is made in it).
      Precision: torch.ScalarType
      /// The model's device.
      Device: torch.Device
      /// The certification set (SPEC §3).
      Certification: CertificationInputs
      /// Words naming the network in certificates.
      Architecture: string
      /// The loss (squared or cross-entropy) behind V's step cap.
      Loss: LossKind
      /// b of V's step cap b/σ̄² (the user's batch size; n for full batches).
      BatchSize: int
      /// Weight decay applied to V, reported (the theorem assumes none).
      ReadoutWeightDecay: float
      /// L* of the training set (SPEC §1) for LossGap in step records; NaN when unknown.
      LossOptimum: float
      /// Seeds the switch's perturbations ξ (SPEC §4.2).
      Seed: int
      /// Add parameter fingerprints to every step record (bit-identity checks).
      RecordFingerprints: bool
      /// Receives the recipe's events (switch, certificates, guard trips, steps).
      Observer: IRecipeObserver
      /// Y of the training set, rows aligned with the certification inputs (n × c, or n for c = 1): needed by
      /// the preconditioned readout (ReadoutStep = Preconditioned), null otherwise.
      Targets: torch.Tensor }

    /// The same setup reporting to `observer`.
    member s.WithObserver(observer: IRecipeObserver) = { s with Observer = (if isNull (box observer) then NullObserver() :> IRecipeObserver else observer) }
    /// The same setup with L* (SPEC §1) known, e.g. `Losses.optimum`.
    member s.WithLossOptimum(lossOptimum: float) = { s with LossOptimum = lossOptimum }
    /// The same setup with V's optimiser built by `factory` (`takesGradientSteps`: whether the theorem's cap applies).
    member s.WithReadoutOptimizer(factory: Func<Modules.Parameter[], torch.optim.Optimizer>, takesGradientSteps: bool, name: string) =
        { s with ReadoutOptimizer = factory; ReadoutTakesGradientSteps = takesGradientSteps; ReadoutRuleName = name }
    /// The same setup with the perturbation seed `seed`.
    member s.WithSeed(seed: int) = { s with Seed = seed }
    /// The same setup with fingerprints in every step record.
    member s.WithFingerprints(record: bool) = { s with RecordFingerprints = record }
    /// The same setup with the training targets Y (the preconditioned readout needs them).
    member s.WithTargets(targets: torch.Tensor) = { s with Targets = targets }
    /// The same setup certifying (switch, guard) and factoring Theorem P's M_τ on `engine` (`RecipeConfig.CertificateEngine`;
    /// its `WorkDirectory` is where a killed run's tiles wait for the resume, e.g. a folder in the run directory).
    member s.WithCertificateEngine(engine: CertificateEngine) = { s with Recipe = s.Recipe.WithCertificateEngine engine }

/// Quantities a frozen body's steps share, computed on first use and handed from record to record (a memo of
/// functions of the immutable Φ̃_τ and A_τ, not state): Ŵ = Φ̃_τᵀA_τ, |Φ̃_τ|ᵀ|A_τ| and ‖Φ̃_τ‖_F.
[<AllowNullLiteral>]
type internal FrozenProducts() =
    member val Target : torch.Tensor = null with get, set
    member val AbsProduct : torch.Tensor = null with get, set
    member val FeatureNorm = nan with get, set
    member this.Dispose() =
        for t in [ this.Target; this.AbsProduct ] do
            if not (isNull t) then t.Dispose()

/// Theorem PD's state (damped body, λ = 0: the step on the residual R_t = Y − f̄(X; θ_t); docs/theory.md §4): the
/// refactor threshold δ, where the factor comes from (the switch, or the body of the last refactor σ, kept for
/// checkpoints), the refactors so far, the largest drift ratio Δ_t seen, and what the next step needs to bound the
/// body's perturbation e_t: fl(R'_t) = fl(Z_t − Φ̃_tW_{t+1}) (n × c float64), its rounding bound, and the part of e_t
/// known at step t, (1 + q)ε_t + ‖Φ̃_t‖_F‖δ_t‖. Its fields do not change, but the step that replaces it disposes its
/// carried residual (and, on a refactor, the factor and the factor's body): a state handed to `TwoPhase.Step` must not
/// be used (saved, stepped, disposed) afterwards — use the state the step returns.
[<AllowNullLiteral>]
type DampedReadoutTrack(threshold: float, factorIteration: int, factorBody: torch.Tensor[], refactors: int, maxDrift: float,
                        carried: torch.Tensor, carriedError: float, pending: float, accumulated: float, switchUpper: float) =
    /// δ ∈ (0, 1).
    member _.Threshold = threshold
    /// The iteration whose body the factor was computed at (τ, or the last refactor's).
    member _.FactorIteration = factorIteration
    /// The body at the last refactor (null: the factor is the switch's).
    member _.FactorBody = factorBody
    /// Refactors so far.
    member _.Refactors = refactors
    /// max_t Δ_t (after any refactor of that step).
    member _.MaxDrift = maxDrift
    /// fl(R'_{t−1}) of the previous step (null before the first).
    member _.Carried = carried
    /// Rounding bound ε'_{t−1} of `Carried`.
    member _.CarriedError = carriedError
    /// (1 + q)ε_{t−1} + ‖Φ̃_{t−1}‖_F‖δ_{t−1}‖.
    member _.Pending = pending
    /// E_k = Σ_{j<k} q^{k−1−j}e_{τ+j} (E_{k+1} = qE_k + e_{τ+k}) through the last e known (k = steps done − 1).
    member _.Accumulated = accumulated
    /// Upper bound on ‖R_τ‖ (NaN before the first Phase II step): a miss is reported as a bug only when the lower
    /// bound on ‖R_{τ+k}‖ exceeds √ε times it (a sure miss, not one within measurement slack).
    member _.SwitchUpper = switchUpper
    /// The scalars as text (checkpoints): δ, factor iteration, refactors, max drift, carried error, pending, whether a
    /// carried residual and a factor body follow.
    member _.Text =
        let r (x: float) = x.ToString("R", Globalization.CultureInfo.InvariantCulture)
        String.Join(";", [| r threshold; string factorIteration; string refactors; r maxDrift; r carriedError; r pending
                            string (not (isNull carried)); string (not (isNull factorBody)); r accumulated; r switchUpper |])
    /// Disposes the carried residual and the factor body.
    member _.Dispose() =
        if not (isNull carried) then carried.Dispose()
        if not (isNull factorBody) then for t in factorBody do t.Dispose()

/// The preconditioned readout of Theorem P (docs/theory.md §4) as the run carries it: the switch's
/// Cholesky factor C of M_τ = fl(G_τ) + nλI (float64; dense, or in tiles when the switch certificate was
/// tiled: `CholeskyFactor`, one update for both storages), the step η_P, the ridge λ, the prediction
/// k(ε) made at the switch, and what has been measured since. With W the readout (weights and bias,
/// (m+1) × c), Z_t = Y − f(X; θ_t), J_t(W) = (1/2n)‖Φ̃_tW − Z_t‖² + (λ/2)‖W‖² and Ŵ_t = Φ̃_tᵀA_t
/// (A_t = C⁻ᵀC⁻¹Z_t), the gap g_t = √(J_t(W_t) − J_t*) lies within (d_t ± ‖r_t‖/√n)/√2, d_t = ‖W_t − Ŵ_t‖_H,
/// r_t = Z_t − (G_t + nλI)A_t bounded rigorously. Immutable; the state replaces it after every step.
[<AllowNullLiteral>]
type PreconditionedReadout internal (factor: CholeskyFactor, step: float, ridge: float, epsilon: float, predictedSteps: int,
                                     frozenFeatures: FeatureRows, frozenSolution: torch.Tensor, frozenTargets: torch.Tensor, frozenResidualNorm: float,
                                     initialGapLower: float, lastGapUpper: float, achievedAfter: int, hypothesisHeld: bool,
                                     maxPerturbationRatio: float, stepsDone: int, products: FrozenProducts, damped: DampedReadoutTrack) =
    /// A record with the given factor, caches and measurements (see the members).
    new(factor: CholeskyFactor, step: float, ridge: float, epsilon: float, predictedSteps: int,
        frozenFeatures: FeatureRows, frozenSolution: torch.Tensor, frozenTargets: torch.Tensor, frozenResidualNorm: float,
        initialGapLower: float, lastGapUpper: float, achievedAfter: int, hypothesisHeld: bool,
        maxPerturbationRatio: float, stepsDone: int) =
        PreconditionedReadout(factor, step, ridge, epsilon, predictedSteps, frozenFeatures, frozenSolution, frozenTargets,
                              frozenResidualNorm, initialGapLower, lastGapUpper, achievedAfter, hypothesisHeld,
                              maxPerturbationRatio, stepsDone, FrozenProducts(), null)
    member internal _.Products = products
    /// Theorem PD's state when the body is damped and λ = 0 (the step on the residual), else null.
    member _.Damped = damped
    /// Lower Cholesky factor of fl(G_τ) + nλI (n × n, float64): one dense tensor or b × b tiles (`CholeskyFactor`).
    member _.Factor = factor
    /// η_P ∈ (0, 1].
    member _.Step = step
    /// λ ≥ 0.
    member _.Ridge = ridge
    /// ε of the prediction.
    member _.Epsilon = epsilon
    /// k(ε) = ⌈ln(√ε/2)/ln(1 − η_P)⌉ (1 when η_P = 1) for a frozen body; −1 when no prediction is made (damped body).
    member _.PredictedSteps = predictedSteps
    /// Frozen body: Φ̃_τ (n × (m+1), float64: one block in memory, or row blocks of the engine's tiles in memory and files
    /// when Φ̃ does not fit, `TwoPhase.StreamsFeatures`), A_τ and Z_τ, and the bound on ‖r_τ‖ (computed once); null/NaN otherwise.
    member _.FrozenFeatures = frozenFeatures
    /// Frozen body: A_τ = M_τ⁻¹Z_τ (n × c).
    member _.FrozenSolution = frozenSolution
    /// Frozen body: Z_τ = Y − f(X; θ_τ) (n × c).
    member _.FrozenTargets = frozenTargets
    /// Frozen body: the rigorous upper bound on ‖r_τ‖_F.
    member _.FrozenResidualNorm = frozenResidualNorm
    /// Lower bound on J_τ(W_τ) − J_τ* at the first Phase II step (NaN before it).
    member _.InitialGapLower = initialGapLower
    /// Upper bound on J_t(W_t) − J_t* at the start of the last step that measured it: every step, except a frozen body's
    /// once settled (prediction met and k(ε) passed: no more measurements) and past k(ε) with the hypothesis failed
    /// (steps k(ε) + 2^j only, `TwoPhase.MeasuresGap`).
    member _.LastGapUpper = lastGapUpper
    /// Phase II steps after which the gap's measured upper bound was first ≤ ε·(initial gap) (−1: not yet). Every step is
    /// measured up to k(ε) and while the hypothesis holds; past k(ε) with the hypothesis failed only steps k(ε) + 2^j are
    /// (`TwoPhase.MeasuresGap`), so there it is the first measured step that met it.
    member _.AchievedAfter = achievedAfter
    /// True while every step's perturbation e_t (solve residual and float rounding of W) stayed ≤ η_P·(√ε/2)·g_τ:
    /// the hypothesis under which k(ε) is guaranteed (Theorem PD: Δ_t ≤ δ at every step and E_k ≤ (√ε/2)‖R_τ‖ at
    /// every k ≥ k_δ(ε)).
    member _.HypothesisHeld = hypothesisHeld
    /// max_t e_t / (η_P·g_τ) so far; for Theorem PD (damped body, λ = 0) max over k ≥ k_δ(ε) of E_k/((√ε/2)‖R_τ‖),
    /// ≤ 1 while the hypothesis holds.
    member _.MaxPerturbationRatio = maxPerturbationRatio
    /// Phase II steps taken with this rule.
    member _.StepsDone = stepsDone
    /// The same record after one more step's measurements.
    member internal _.After(gapUpper: float, initialLower: float, achieved: int, held: bool, ratio: float) =
        PreconditionedReadout(factor, step, ridge, epsilon, predictedSteps, frozenFeatures, frozenSolution, frozenTargets,
                              frozenResidualNorm, initialLower, gapUpper, achieved, held, ratio, stepsDone + 1, products, damped)
    /// Theorem PD: the same record after one more step, with the (possibly new) factor and damped state.
    member internal _.AfterDamped(newFactor: CholeskyFactor, track: DampedReadoutTrack, gapUpper: float, initialLower: float,
                                  achieved: int, held: bool, ratio: float) =
        PreconditionedReadout(newFactor, step, ridge, epsilon, predictedSteps, frozenFeatures, frozenSolution, frozenTargets,
                              frozenResidualNorm, initialLower, gapUpper, achieved, held, ratio, stepsDone + 1, products, track)
    /// This record's measurements as text (for checkpoints): initial gap, last gap, achieved, held, ratio, steps.
    member _.ProgressText =
        String.Join(";", [| yield initialGapLower.ToString("R", Globalization.CultureInfo.InvariantCulture)
                            yield lastGapUpper.ToString("R", Globalization.CultureInfo.InvariantCulture)
                            yield string achievedAfter; yield string hypothesisHeld
                            yield maxPerturbationRatio.ToString("R", Globalization.CultureInfo.InvariantCulture); yield string stepsDone
                            if not (isNull damped) then yield damped.Text |])
    /// The same factor and caches with the measurements of `ProgressText` (fields 0–5; Theorem PD's scalars, when
    /// present, are read by the caller with its tensors: `WithDamped`).
    member internal _.WithProgress(text: string) =
        let f = text.Split ';'
        let num (s: string) = Double.Parse(s, Globalization.CultureInfo.InvariantCulture)
        PreconditionedReadout(factor, step, ridge, epsilon, predictedSteps, frozenFeatures, frozenSolution, frozenTargets,
                              frozenResidualNorm, num f.[0], num f.[1], int f.[2], Boolean.Parse f.[3], num f.[4], int f.[5], products, damped)
    /// The same record with its hypothesis marked as failed (no prediction kept).
    member internal _.WithHypothesisFailed() =
        PreconditionedReadout(factor, step, ridge, epsilon, predictedSteps, frozenFeatures, frozenSolution, frozenTargets,
                              frozenResidualNorm, initialGapLower, lastGapUpper, achievedAfter, false, maxPerturbationRatio,
                              stepsDone, products, damped)
    /// The same record with Theorem PD's state `track` (the old one is disposed unless it is `track`).
    member internal _.WithDamped(track: DampedReadoutTrack) =
        if not (isNull damped) && not (obj.ReferenceEquals(damped, track)) then damped.Dispose()
        PreconditionedReadout(factor, step, ridge, epsilon, predictedSteps, frozenFeatures, frozenSolution, frozenTargets,
                              frozenResidualNorm, initialGapLower, lastGapUpper, achievedAfter, hypothesisHeld, maxPerturbationRatio,
                              stepsDone, products, track)
    /// Disposes the factor and the frozen body's cache.
    member _.Dispose() =
        if not (isNull factor) then factor.Dispose()
        if not (isNull frozenFeatures) then frozenFeatures.Dispose()
        for t in [ frozenSolution; frozenTargets ] do
            if not (isNull t) then t.Dispose()
        if not (isNull products) then products.Dispose()
        if not (isNull damped) then damped.Dispose()

/// The recipe's state before iteration `Iteration` (SPEC §4): phase, the switch's certified
/// σ_min(Φ̃_τ), the guard's state, V and its optimiser, and the tensors the recipe keeps (the
/// last certified body, the body at the switch, the guard's Weyl reference Φ_ref, ω_t after the
/// last damped step). Immutable fields; its tensors and modules are owned by the state and
/// handed on to the state that replaces it.
type RecipeState =
    { /// The next iteration t to run.
      Iteration: int
      /// Phase of the next iteration.
      Phase: Phase
      /// True once the switch has run (certified or not).
      Switched: bool
      /// The certified lower bound on σ_min(Φ̃_τ) (NaN before a certified switch).
      SigmaTau: float
      /// True once the rank guard froze the body.
      GuardTripped: bool
      /// Every certificate computed at the switch, in attempt order.
      Certificates: Certificate[]
      /// Iteration of the last certified body (the guard's restore point).
      LastCertifiedIteration: int
      /// Fingerprint of the last certified body.
      LastCertifiedFingerprint: string
      /// σ̄ behind V's step cap (the last certificate's or passing guard check's upper bound on σ_max(Φ̃)).
      ReadoutSigmaMaxUpper: float
      /// Certified σ_min lower bound of the guard's reference Φ̃_ref.
      ReferenceSigmaMin: float
      /// Rigorous σ_max upper bound of the guard's reference Φ̃_ref.
      ReferenceSigmaMax: float
      /// V (null before a certified switch; the output layer itself for ReadoutChoice.OutputLayer).
      Readout: Modules.Linear
      /// V's optimiser (unused by the preconditioned rule).
      ReadoutOptimizer: torch.optim.Optimizer
      /// The guard's restore point (flat copies of the body's tensors), null before the switch.
      LastCertifiedBody: torch.Tensor[]
      /// The body right after the switch (for ‖ω_T − ω_τ‖), null before the switch.
      SwitchBody: torch.Tensor[]
      /// Φ_ref of the guard's Weyl route (null when not kept).
      ReferenceFeatures: torch.Tensor
      /// ω after the last damped step, flattened (null when unknown).
      PreviousBody: torch.Tensor
      /// The preconditioned readout of Theorem P (ReadoutStep = Preconditioned, after a certified switch), else null.
      Preconditioner: PreconditionedReadout }

/// One step's outcome: the state before the next iteration and the step's record.
type RecipeStep =
    { /// The state before the next iteration.
      State: RecipeState
      /// What the step did (SPEC §4 step record).
      Record: StepRecord }

/// One `TapCapture` per setup (the taps resolved by name once, not at every forward pass of a step); keyed by
/// the setup instance, so a `{ s with Taps = … }` copy resolves its own.
module internal TapCaptures =
    let private cache = System.Runtime.CompilerServices.ConditionalWeakTable<RecipeSetup, TapCapture>()
    let ofSetup (setup: RecipeSetup) =
        cache.GetValue(setup, fun s -> TapCapture(s.Model, List.ofArray s.Taps))
    let private columns = System.Runtime.CompilerServices.ConditionalWeakTable<RecipeSetup, obj>()
    /// m + 1 of the setup's Φ̃, computed by `count` on first use (`TwoPhase.FeatureColumns`: asked at the switch, at
    /// every guard check and at the preconditioner's build).
    let featureColumns (setup: RecipeSetup) (count: unit -> int) : int =
        columns.GetValue(setup, fun _ -> box (count ())) :?> int

/// The recipe's operations (SPEC §4). Static members with delegates, callable alike from F#
/// (lambdas convert) and C#.
[<AbstractClass; Sealed>]
type TwoPhase =

    /// Largest Φ_ref kept for the guard's Weyl route (bigger ones: every check is a Gram certificate).
    static member ReferenceFeatureBytes = 256L * 1024L * 1024L

    /// A setup for `model` with taps `taps`, whose body is stepped by `bodyOptimizer`; V (separate,
    /// with bias, zero at the switch) steps by plain SGD, the theorem's rule. `certification` names
    /// the certification set; `batchSize` is b of V's step cap; `classes` the output width.
    static member Setup(recipe: RecipeConfig, model: torch.nn.Module<torch.Tensor, torch.Tensor>, taps: string seq,
                        bodyRule: BodyRule, certification: CertificationInputs, loss: LossKind, batchSize: int, classes: int) : RecipeSetup =
        if isNull model then nullArg "model"
        if isNull (box recipe) then nullArg "recipe"
        if isNull (box certification) then nullArg "certification"
        let tapList = if isNull taps then [] else List.ofSeq taps
        if tapList.IsEmpty then invalidArg "taps" "name at least one tap layer (h of SPEC §1)"
        FeatureMap.resolveTaps model tapList |> ignore
        let first = model.parameters () |> Seq.tryHead
        let precision, device =
            match first with
            | Some p -> p.dtype, p.device
            | None -> invalidArg "model" "the model has no parameters"
        { Recipe = recipe; Model = model; Taps = List.toArray tapList
          Body = model.parameters () |> Seq.toArray; BodyRule = bodyRule
          OutputLayer = null; OutputOptimizer = null
          ReadoutOptimizer = Func<_, _>(fun ps -> torch.optim.SGD(ps, 0.01) :> torch.optim.Optimizer)
          ReadoutTakesGradientSteps = true; ReadoutRuleName = "Sgd"
          Classes = classes; Precision = precision; Device = device; Certification = certification
          Architecture = model.GetType().Name; Loss = loss; BatchSize = batchSize; ReadoutWeightDecay = 0.0
          LossOptimum = nan; Seed = 0; RecordFingerprints = false; Observer = NullObserver(); Targets = null }

    /// The same setup with V = the model's existing output layer `layer` (ReadoutChoice.OutputLayer;
    /// SPEC §4.2 allows it): the body is every other parameter, and `layerOptimizer` steps the layer.
    static member WithOutputLayer(setup: RecipeSetup, layer: Modules.Linear, layerOptimizer: torch.optim.Optimizer) : RecipeSetup =
        if isNull layer then nullArg "layer"
        if isNull layerOptimizer then nullArg "layerOptimizer"
        let own = layer.parameters () |> Seq.toArray
        let body = setup.Model.parameters () |> Seq.filter (fun p -> not (own |> Array.exists (fun q -> obj.ReferenceEquals(p, q)))) |> Seq.toArray
        { setup with OutputLayer = layer; OutputOptimizer = layerOptimizer; Body = body; Recipe = { setup.Recipe with Readout = ReadoutChoice.OutputLayer } }

    /// The recipe's own knobs are in range (τ ≥ 0, κ ∈ (0, 1), R ≥ 0; for the preconditioned rule a separate V,
    /// η_P ∈ (0, 1], λ ≥ 0, ε ∈ (0, 1)); throws ArgumentException for `paramName` otherwise. `Init` checks it; a
    /// caller that builds a model first (the trainer) checks it before.
    static member Validate(r: RecipeConfig, paramName: string) =
        if r.SwitchIteration < 0 then invalidArg paramName (sprintf "switch τ = %d must be ≥ 0" r.SwitchIteration)
        if not (r.GuardKappa > 0.0 && r.GuardKappa < 1.0) then invalidArg paramName "guard κ must lie in (0, 1)"
        if r.MaxTries < 0 then invalidArg paramName "MaxTries must be ≥ 0"
        if isNull (box r.CertificateEngine) then invalidArg paramName "CertificateEngine is null (CertificateEngine.Default: auto)"
        r.CertificateEngine.Validate paramName
        if r.ReadoutStep = ReadoutStepRule.Preconditioned then
            let refuse why = invalidArg paramName (sprintf "ReadoutStep = Preconditioned (Theorem P, docs/theory.md §4) %s" why)
            if r.Readout <> ReadoutChoice.Separate then refuse "needs a separate readout V (zero at the switch)"
            if not (r.PreconditionedStep > 0.0 && r.PreconditionedStep <= 1.0) then refuse (sprintf "needs a step η_P in (0, 1], not %g" r.PreconditionedStep)
            if not (r.ReadoutRidge >= 0.0 && Double.IsFinite r.ReadoutRidge) then refuse (sprintf "needs a ridge λ ≥ 0, not %g" r.ReadoutRidge)
            if not (r.PredictionEpsilon > 0.0 && r.PredictionEpsilon < 1.0) then refuse (sprintf "needs ε in (0, 1), not %g" r.PredictionEpsilon)
            if not (r.RefactorThreshold > 0.0 && r.RefactorThreshold < 1.0) then refuse (sprintf "needs a refactor threshold δ in (0, 1), not %g" r.RefactorThreshold)

    /// The state before iteration 0 (Phase I; the switch runs in the step of iteration τ).
    static member Init(setup: RecipeSetup) : RecipeState =
        let r = setup.Recipe
        TwoPhase.Validate(r, "setup")
        if setup.BatchSize <= 0 then invalidArg "setup" "BatchSize must be positive"
        if r.Readout = ReadoutChoice.OutputLayer && isNull setup.OutputLayer then
            invalidArg "setup" "Readout = OutputLayer needs the layer (TwoPhase.WithOutputLayer)"
        if r.Readout = ReadoutChoice.Separate && not (isNull setup.OutputLayer) then
            invalidArg "setup" "an output layer was given as V but the recipe's Readout is Separate"
        if r.ReadoutStep = ReadoutStepRule.Preconditioned then
            let refuse why = invalidArg "setup" (sprintf "ReadoutStep = Preconditioned (Theorem P, docs/theory.md §4) %s" why)
            if setup.Loss <> LossKind.Squared then refuse "needs the squared loss (its preconditioner is the Hessian of a quadratic)"
            if setup.Certification.Rows <> setup.Certification.TrainingCount then
                refuse (sprintf "steps on all n training points: the certification set must be the whole training set (it has %d of %d)" setup.Certification.Rows setup.Certification.TrainingCount)
            if isNull setup.Targets then refuse "needs the training targets Y (RecipeSetup.WithTargets)"
            if int setup.Targets.shape.[0] <> setup.Certification.Rows then
                refuse (sprintf "needs one target row per training point (%d targets, %d points)" setup.Targets.shape.[0] setup.Certification.Rows)
        { Iteration = 0; Phase = Phase.PhaseOne; Switched = false; SigmaTau = nan; GuardTripped = false
          Certificates = [||]; LastCertifiedIteration = -1; LastCertifiedFingerprint = null
          ReadoutSigmaMaxUpper = nan; ReferenceSigmaMin = nan; ReferenceSigmaMax = nan
          Readout = null; ReadoutOptimizer = null; LastCertifiedBody = null; SwitchBody = null
          ReferenceFeatures = null; PreviousBody = null; Preconditioner = null }

    /// The state of a base run through the same step (SPEC §4: A for T iterations): it never
    /// switches, and its steps are recorded as Phase.Base.
    static member InitBase(setup: RecipeSetup) : RecipeState =
        { TwoPhase.Init setup with Phase = Phase.Base; Switched = true }

    // ---- internals ---------------------------------------------------------------------------

    static member private DisposeAll(ts: torch.Tensor[]) = if not (isNull ts) then for t in ts do t.Dispose()

    static member private Snapshot(setup: RecipeSetup) = setup.Body |> Array.map (fun p -> p.detach().clone())

    static member private Restore(setup: RecipeSetup, saved: torch.Tensor[]) =
        use _ = torch.no_grad ()
        Array.iter2 (fun (p: Modules.Parameter) (s: torch.Tensor) -> p.copy_(s) |> ignore) setup.Body saved

    /// ω as one detached vector (a copy; for ‖ω_{t+1} − ω_t‖ with one reduction).
    static member private FlatBody(setup: RecipeSetup) =
        use _ = torch.no_grad ()
        torch.cat(setup.Body |> Array.map (fun p -> p.view(-1L)), 0L)

    /// Fingerprint of the body parameters ω.
    static member BodyFingerprint(setup: RecipeSetup) = Fingerprint.ofTensors (setup.Body |> Seq.cast<torch.Tensor>)

    /// Fingerprint of body and readout parameters (the model's `Fingerprint.ofModule` while V is not separate).
    static member ParameterFingerprint(setup: RecipeSetup, state: RecipeState) =
        if isNull state.Readout || not (isNull setup.OutputLayer) then Fingerprint.ofModule setup.Model
        else Fingerprint.ofTensors (Seq.append (setup.Body |> Seq.cast<torch.Tensor>) (state.Readout.parameters () |> Seq.cast<torch.Tensor>))

    /// Refutations no perturbation of ω can repair: identical inputs, or m + 1 < n.
    static member private StructurallyRefuted(setup: RecipeSetup, c: Certificate) =
        c.Verdict = Verdict.Refuted && (setup.Certification.DuplicateInputs.Value.Length > 0 || c.Subject.Columns < c.Subject.Rows)

    /// Φ of the certification set at the current ω (model precision, evaluation mode; caller owns it).
    static member CertificationFeatures(setup: RecipeSetup) : torch.Tensor =
        use xc = setup.Certification.Inputs.``to``(setup.Device)
        (FeatureMap.featureMatrix setup.Model (List.ofArray setup.Taps) 256 xc).DetachFromDisposeScope()

    /// The observer's progress callback (`IProgressObserver`), or null: long computations (tiled certificates and
    /// factors) report their tiles to it.
    static member ProgressLog(setup: RecipeSetup) : Action<string> =
        match box setup.Observer with
        | :? IProgressObserver as p -> Action<string>(fun line -> p.OnProgress line)
        | _ -> null

    /// Certifies EC for Φ̃(ω) = [Φ, 1] on the certification set (SPEC §3, §6) with Math.Core's Rump test, on the
    /// engine `Recipe.CertificateEngine` picks for n (dense, or tiled: resumable from its tile files); a tiled
    /// certificate's progress goes to the observer (`ProgressLog`).
    static member CertifyFeatures(setup: RecipeSetup, phi: torch.Tensor) : Certificate =
        TwoPhase.CertifyFeatures(setup, phi, Certify.defaults)

    /// `CertifyFeatures` with the certificate's options (the guard's warm shift, `Guard`).
    static member private CertifyFeatures(setup: RecipeSetup, phi: torch.Tensor, opts: Certify.Options) : Certificate =
        TwoPhase.CertifySubject(setup, int phi.shape.[1], fun subject ->
            CertificateEngine.Certify(setup.Recipe.CertificateEngine, opts, subject, phi, TwoPhase.ProgressLog setup))

    /// Certifies EC for Φ̃(ω) = [Φ, 1] on the certification set without ever holding Φ (`StreamsFeatures`): row blocks
    /// of the engine's tile size, produced by forward passes without gradients in the mode the caller set (evaluation
    /// at the switch and the guard; `FeaturesAndOutputsOf`), certified by the tiled engine from them
    /// (`CertificateEngine.CertifyRowBlocks`: row tiles in memory up to a quarter of its budget, spilled to files beyond
    /// it, resumable from its tile files). The same Gram test and bounds as `CertifyFeatures`; identical inputs are still
    /// refuted exactly, but distinct inputs with identical feature rows are left Inconclusive (no row comparison).
    static member CertifyStreamed(setup: RecipeSetup) : Certificate =
        TwoPhase.CertifyStreamed(setup, Certify.defaults, ignore)

    /// `CertifyStreamed`; when the Gram route certifies, `onCertifiedGram` runs with the certificate's Gram tiles
    /// (`CertificateEngine.CertifyRowBlocks`). The row blocks are the rows Theorem P keeps (`FeaturesAndOutputsOf`, the
    /// same forward passes in the same batches, in the model's precision), so the factor formed from these tiles is
    /// bitwise the one a resumed run forms from its rows (`CholeskyFactor.OfRows`).
    static member internal CertifyStreamed(setup: RecipeSetup, opts: Certify.Options,
                                           onCertifiedGram: (int -> int -> (torch.Tensor -> unit) -> unit) -> unit) : Certificate =
        TwoPhase.CertifyStreamed(setup, opts, onCertifiedGram, false)

    /// `CertifyStreamed`; with `keepTiles` a Certified certificate's tile folder (its Gram tiles) stays for a resumed run's
    /// factor (`StoredSwitchFactor`) until `ReleaseKeptTiles`.
    static member internal CertifyStreamed(setup: RecipeSetup, opts: Certify.Options,
                                           onCertifiedGram: (int -> int -> (torch.Tensor -> unit) -> unit) -> unit, keepTiles: bool) : Certificate =
        let engine = setup.Recipe.CertificateEngine
        let c = setup.Certification
        let n = c.Rows
        let b = engine.TileSize
        let features = TwoPhase.FeatureColumns setup - 1
        let dtype = (Seq.head (setup.Model.parameters ())).dtype
        TwoPhase.CertifySubject(setup, features, fun subject ->
            let rowBlock i =
                let phi, f = TwoPhase.FeaturesAndOutputsOf(setup, i * b, min b (n - i * b))
                f.Dispose()
                use phi = phi
                // the tap outputs in the model's precision when that is exact (they were widened from it), else float64
                use scope = torch.NewDisposeScope()
                let wide = phi.narrow(1L, 0L, int64 features)
                let narrow = wide.``to``(dtype)
                let exact = narrow.``to``(torch.float64).eq(wide).all().item<bool> ()
                (if exact then narrow else wide.contiguous()).MoveToOuterDisposeScope()
            CertificateEngine.CertifyRowBlocks(engine, opts, subject, None, b, (n + b - 1) / b, rowBlock,
                                               TwoPhase.ProgressLog setup, onCertifiedGram, keepTiles))

    /// What a certificate of the certification set's Φ̃ = [h, 1] with m = `features` features at the current parameters
    /// is of: it names the certificate's tile folder (`CertificateEngine.SubjectKey`).
    static member private SubjectOf(setup: RecipeSetup, features: int) : ExpressivitySubject =
        let c = setup.Certification
        { DatasetFingerprint = c.DatasetFingerprint
          CertificationSet = c.Description
          Architecture = setup.Architecture
          Taps = setup.Taps
          ParameterFingerprint = Fingerprint.ofModule setup.Model
          Rows = c.Rows
          Features = features
          WithBias = true }

    /// The certificate of the certification set's Φ̃ with m features by `certify subject`, unless two certification
    /// inputs are identical (then Refuted exactly, SPEC §2).
    static member private CertifySubject(setup: RecipeSetup, features: int, certify: ExpressivitySubject -> Certificate) : Certificate =
        let c = setup.Certification
        let subject = TwoPhase.SubjectOf(setup, features)
        match c.DuplicateInputs.Value with
        | [| i; j |] ->
            // SPEC §2: h is a function of x, so identical inputs give identical rows of Φ̃ for every ω.
            { Subject = subject; Verdict = Verdict.Refuted
              Reason = sprintf "inputs %d and %d of the certification set are identical, so rows %d and %d of Φ̃ are equal for every ω" i j i j
              Method = "exact (bitwise) comparison of the certification inputs (SPEC §2: EC needs distinct inputs)"
              Precision = "inputs compared bitwise"; Device = string setup.Device; SigmaMinLower = 0.0
              SigmaMaxEstimate = nan; SigmaMaxUpper = nan; Terms = CertificateTerms.Empty; Route = CertificateRoute.Gram
              ElapsedSeconds = 0.0; CreatedUtc = DateTime.UtcNow; FormatVersion = 1 }
        | _ -> certify subject

    /// Keeps Φ_ref (when the guard runs and it fits `ReferenceFeatureBytes`) with its certified
    /// bounds for the guard's Weyl route; takes ownership of `phi` (null when streamed) and of the old reference.
    static member private KeepReference(setup: RecipeSetup, state: RecipeState, cert: Certificate, phi: torch.Tensor) : RecipeState =
        if not (isNull state.ReferenceFeatures) then state.ReferenceFeatures.Dispose()
        let r = setup.Recipe
        let guardRuns = r.Mode = PhaseTwoMode.Damped && r.CheckPeriod > 0
        let keep = guardRuns && not (isNull phi) && phi.NumberOfElements * int64 phi.ElementSize <= TwoPhase.ReferenceFeatureBytes
        if not keep && not (isNull phi) then phi.Dispose()
        { state with ReferenceFeatures = (if keep then phi else null)
                     ReferenceSigmaMin = cert.SigmaMinLower; ReferenceSigmaMax = cert.SigmaMaxUpper }

    /// Squared loss: η ≤ b/σ_max² (SPEC §4 Theorem); cross-entropy is (σ_max²/2b)-smooth in V
    /// (diag(p) − ppᵀ ⪯ ½I), so η ≤ 2b/σ_max² (docs/theory.md, Theorem B).
    static member private CapFactor(setup: RecipeSetup) = if setup.Loss = LossKind.CrossEntropy then 2.0 else 1.0

    /// V's step cap b/σ̄² (squared loss, SPEC §4 Theorem; 2b/σ̄² for cross-entropy) from a rigorous
    /// upper bound σ̄ on σ_max(Φ̃); ∞ when the rule is `Schedule`, V's rule takes no gradient steps,
    /// or σ̄ is unknown.
    static member ReadoutStepCap(setup: RecipeSetup, state: RecipeState) : float =
        let sigmaMaxUpper = state.ReadoutSigmaMaxUpper
        if setup.Recipe.ReadoutStep = ReadoutStepRule.Theorem && setup.ReadoutTakesGradientSteps
           && Double.IsFinite sigmaMaxUpper && sigmaMaxUpper > 0.0 then
            FloatingPoint.down (TwoPhase.CapFactor setup * float setup.BatchSize / FloatingPoint.mulUp sigmaMaxUpper sigmaMaxUpper)
        else infinity

    /// What the switch reports about V's step (SPEC §4 Theorem hypothesis η ≤ b/σ_max(Φ̃)²).
    static member private ReadoutStepDescription(setup: RecipeSetup, state: RecipeState) =
        let r = setup.Recipe
        let decay = if setup.ReadoutWeightDecay > 0.0 then sprintf "; weight decay %g on V (the theorem assumes none)" setup.ReadoutWeightDecay else ""
        let cap = TwoPhase.ReadoutStepCap(setup, state)
        if r.ReadoutStep = ReadoutStepRule.Preconditioned then
            let objective = if r.ReadoutRidge > 0.0 then sprintf "J_λ (λ = %g)" r.ReadoutRidge else "the squared loss (L* = 0)"
            if r.Mode = PhaseTwoMode.Damped && r.ReadoutRidge = 0.0 then
                let delta = r.RefactorThreshold
                sprintf "preconditioned on the residual (Theorem PD, damped body): W ← W + η_P·Φ̃_tᵀG_σ⁻¹R_t, η_P = %g, G refactored when the drift ratio exceeds δ = %g; while the body's perturbation of the outputs stays within its budget, the training loss falls below ε = %g of L(θ_τ) (L* = 0) within k_δ(ε) = %d steps (rate 1 − η_P(1 − δ))"
                    r.PreconditionedStep delta r.PredictionEpsilon (TwoPhase.PredictedSteps(r.PreconditionedStep * (1.0 - delta), r.PredictionEpsilon))
            else
            let prediction =
                if r.Mode = PhaseTwoMode.Frozen then
                    sprintf "; with the frozen body the gap to the minimum of %s falls below ε = %g of its value at τ within k(ε) = %d steps" objective r.PredictionEpsilon (TwoPhase.PredictedSteps(r.PreconditionedStep, r.PredictionEpsilon))
                else "; with a damped body and λ > 0 each step contracts the current objective's gap by (1 − η_P) up to its measured perturbation, no k(ε) is promised (the objective moves with ω; Theorem PD needs λ = 0)"
            sprintf "preconditioned (Theorem P): W ← (1 − η_P)W + η_P·Φ̃ᵀ(G_τ + nλI)⁻¹Z, η_P = %g, minimising %s%s" r.PreconditionedStep objective prediction
        elif r.ReadoutStep = ReadoutStepRule.Schedule then
            "as scheduled (ReadoutStep = Schedule: the theorem's η ≤ b/σ_max(Φ̃)² is not enforced)" + decay
        elif not setup.ReadoutTakesGradientSteps then
            sprintf "as scheduled: %s steps are not gradient steps, the theorem's step hypothesis does not apply%s" setup.ReadoutRuleName decay
        elif setup.Certification.Rows < setup.Certification.TrainingCount then
            sprintf "capped at b/σ̄² = %g with σ̄ from the certification subset (σ_max of all %d training points is not bounded: a heuristic cap)%s"
                cap setup.Certification.TrainingCount decay
        else
            let rule =
                if setup.ReadoutRuleName = "Sgd" then ""
                else sprintf "; %s steps are capped too, but the contraction is proved for plain SGD steps only" setup.ReadoutRuleName
            let drift =
                if r.Mode = PhaseTwoMode.Damped then "; with a damped body the cap is exact at the switch and at each guard check, and between checks follows σ̄ of the last one (docs/theory.md §4)"
                else ""
            sprintf "capped at %sb/σ̄² = %g (SPEC §4 Theorem; b = %d)%s%s%s" (if TwoPhase.CapFactor setup = 2.0 then "2" else "") cap setup.BatchSize rule drift decay

    /// Parameters below the taps (ω): those that receive a gradient from Σ h(x) on a few inputs.
    static member private ParametersBelowTaps(setup: RecipeSetup) : Modules.Parameter[] =
        for p in setup.Body do p.grad <- null
        let model = setup.Model
        let wasTraining = model.training
        model.eval ()
        do
            use scope = torch.NewDisposeScope()
            use x = setup.Certification.Inputs.narrow(0L, 0L, int64 (min setup.Certification.Rows 4)).``to``(setup.Device)
            let _, h = (TapCaptures.ofSetup setup).Run(fun () -> model.call x)
            h.sum().backward()
        let below = setup.Body |> Array.filter (fun p -> not (isNull p.grad))
        for p in setup.Body do p.grad <- null
        if wasTraining then model.train ()
        below

    /// ω ← ω + ε·ξ, ξ Gaussian from a generator seeded by (seed, attempt), scaled per tensor by its
    /// RMS (by 1 for an all-zero tensor) (SPEC §4.2).
    static member private Perturb(setup: RecipeSetup, eps: float, attempt: int) =
        let below = TwoPhase.ParametersBelowTaps setup
        let seed = uint64 (int64 setup.Seed) * 0x9E3779B97F4A7C15UL + 0x51ED270B27AD4F1DUL * uint64 attempt
        use g = new torch.Generator(seed, torch.CPU)
        use _ = torch.no_grad ()
        for p in below do
            use scope = torch.NewDisposeScope()
            let rms = p.detach().pow(scalar 2.0).mean().sqrt().ToDouble()
            let scale = if rms > 0.0 then rms else 1.0
            let xi = torch.randn(p.shape, dtype = p.dtype, generator = g).``to``(p.device)
            p.add_(xi.mul(scalar (eps * scale))) |> ignore

    /// A separate V: R^m → R^c with bias, zero-initialised (SPEC §4.2), and its optimiser.
    static member private MakeReadout(setup: RecipeSetup, m: int) : Modules.Linear * torch.optim.Optimizer =
        let v = torch.nn.Linear(int64 m, int64 setup.Classes, true, device = setup.Device, dtype = setup.Precision)
        do
            use _ = torch.no_grad ()
            v.weight.zero_() |> ignore
            v.bias.zero_() |> ignore
        v, setup.ReadoutOptimizer.Invoke(v.parameters () |> Seq.toArray)

    /// f̄(x) = f(x; θ) + V h̃(x; ω) after a certified switch with a separate V, f(x; θ) otherwise
    /// (with gradients; no mode change).
    static member Forward(setup: RecipeSetup, state: RecipeState, x: torch.Tensor) : torch.Tensor =
        if isNull state.Readout || not (isNull setup.OutputLayer) then setup.Model.call x
        else
            let z, h = (TapCaptures.ofSetup setup).Run(fun () -> setup.Model.call x)
            z.add(state.Readout.call h)

    /// f̄(x) with the body evaluated without autograd (Phase II with α_t = 0): only V gets gradients.
    static member private ForwardFrozenBody(setup: RecipeSetup, state: RecipeState, x: torch.Tensor) : torch.Tensor =
        let z, h =
            use _ = torch.no_grad ()
            (TapCaptures.ofSetup setup).Run(fun () -> setup.Model.call x)
        if not (isNull setup.OutputLayer) then setup.OutputLayer.call h   // the output layer on h again, now with V's gradient
        else z.add(state.Readout.call h)

    /// f̄(x) in evaluation mode, without gradients (the model's training flag is restored).
    static member Predict(setup: RecipeSetup, state: RecipeState, x: torch.Tensor) : torch.Tensor =
        let model = setup.Model
        let wasTraining = model.training
        model.eval ()
        try
            use _ = torch.no_grad ()
            use xd = x.``to``(setup.Device)
            TwoPhase.Forward(setup, state, xd)
        finally
            if wasTraining then model.train ()

    static member private ChangePhase(setup: RecipeSetup, state: RecipeState, target: Phase, reason: string) : RecipeState =
        setup.Observer.OnPhaseChange { Iteration = state.Iteration; From = state.Phase; To = target; Reason = reason; BodyFingerprint = TwoPhase.BodyFingerprint setup }
        { state with Phase = target }

    /// α_t of SPEC §4.3: 1 outside Phase II; 0 when frozen (mode or guard); (t − τ + 1)^(−p) otherwise.
    static member Alpha(setup: RecipeSetup, state: RecipeState) : float =
        let r = setup.Recipe
        if state.Phase <> Phase.PhaseTwo then 1.0
        elif state.GuardTripped || r.Mode = PhaseTwoMode.Frozen then 0.0
        else Math.Pow(float (state.Iteration - r.SwitchIteration + 1), -r.DampingPower)

    /// Φ̃ = [h, 1] and F = f(X) of the `count` certification inputs from `start` at the current ω, as float64 CPU
    /// tensors, without gradients, in batches of 256 from `start` (the caller sets the mode; the caller owns both).
    static member private FeaturesAndOutputsOf(setup: RecipeSetup, start: int, count: int) : torch.Tensor * torch.Tensor =
        use _ = torch.no_grad ()
        let x = setup.Certification.Inputs
        let capture = TapCaptures.ofSetup setup
        let hs = ResizeArray<torch.Tensor>()
        let zs = ResizeArray<torch.Tensor>()
        let mutable offset = start
        while offset < start + count do
            let len = min 256 (start + count - offset)
            use scope = torch.NewDisposeScope()
            use xb = x.narrow(0L, int64 offset, int64 len).``to``(setup.Device)
            let z, h = capture.Run(fun () -> setup.Model.call xb)
            hs.Add(h.to_type(torch.float64).cpu().DetachFromDisposeScope())
            zs.Add(z.to_type(torch.float64).cpu().DetachFromDisposeScope())
            offset <- offset + len
        use h = torch.cat(hs.ToArray(), 0L)
        use ones = torch.ones([| int64 count; 1L |], dtype = torch.float64)
        let phi = torch.cat([| h; ones |], 1L)
        let f = torch.cat(zs.ToArray(), 0L)
        for t in Seq.append hs zs do t.Dispose()
        phi, f

    /// Φ̃ = [h, 1] and F = f(X) of all n certification inputs (`FeaturesAndOutputsOf` from 0).
    static member private FeaturesAndOutputs(setup: RecipeSetup) : torch.Tensor * torch.Tensor =
        TwoPhase.FeaturesAndOutputsOf(setup, 0, setup.Certification.Rows)

    /// m + 1: the columns of Φ̃ = [h, 1] (one forward pass of one input, once per setup: the architecture fixes m).
    static member FeatureColumns(setup: RecipeSetup) : int =
        TapCaptures.featureColumns setup (fun () ->
            use x = setup.Certification.Inputs.narrow(0L, 0L, 1L).``to``(setup.Device)
            FeatureMap.featureCount setup.Model (List.ofArray setup.Taps) x + 1)

    /// Whether Φ̃ of the certification set is streamed (docs/theory.md §4 "Φ̃ streamed"): the engine certifies n rows on
    /// tiles and Φ̃'s 8·n·(m+1) float64 bytes exceed half its memory budget. Then Φ̃ is never held whole: the switch and
    /// the guard certify it from row blocks produced by forward passes (`CertificateEngine.CertifyRowBlocks`), and a
    /// frozen body's Theorem P keeps it as row blocks of the engine's tiles, in memory up to half the budget and in
    /// files beyond it (`FeatureRows`), with the factor's tiles in the rest of the budget.
    static member StreamsFeatures(setup: RecipeSetup) : bool =
        let engine = setup.Recipe.CertificateEngine
        let n = setup.Certification.Rows
        engine.UsesTiled n && 8L * int64 n * int64 (TwoPhase.FeatureColumns setup) > engine.MemoryBudgetBytes / 2L

    /// The folder of the streamed rows' resumable files (`FeatureRowsAndOutputs`, and Theorem P's A_τ and ‖r_τ‖ bound beside
    /// them: `BuildPreconditioner`) inside the switch certificate's kept folder, and the key their headers carry (the
    /// subject: data, certification set, network, parameters in place, taps, shape; and the device). The body at the
    /// switch must be in place.
    static member private ResumableRowsFolder(setup: RecipeSetup) : string * string =
        let engine = setup.Recipe.CertificateEngine
        let subject = TwoPhase.SubjectOf(setup, TwoPhase.FeatureColumns setup - 1)
        Path.Combine(CertificateEngine.TileFolder(engine, subject), sprintf "rows-b%d" engine.TileSize),
        sprintf "%s|device=%O" (CertificateEngine.SubjectKey subject) setup.Device

    /// Φ̃ = [h, 1] (as `FeatureRows`) and F = f(X) (n × c float64) of all n certification inputs at the current ω:
    /// streamed (`StreamsFeatures`): blocks of the engine's tile size produced one by one, in memory up to half the
    /// engine's budget and beyond it in files of the switch certificate's kept folder, resumable
    /// (`FeatureRows.ProduceResumable`: a resume reads back the blocks and outputs a stopped run left instead of forward
    /// passes); otherwise one block in memory (`FeaturesAndOutputs`).
    static member private FeatureRowsAndOutputs(setup: RecipeSetup, streamed: bool) : FeatureRows * torch.Tensor =
        if not streamed then
            let phi, f = TwoPhase.FeaturesAndOutputs setup
            FeatureRows.InMemory phi, f
        else
            let engine = setup.Recipe.CertificateEngine
            let n = setup.Certification.Rows
            let b = engine.TileSize
            if String.IsNullOrEmpty engine.WorkDirectory then
                invalidOp (sprintf "Φ̃ of n = %d rows is streamed (it exceeds half the certificate's memory budget) but the certificate engine has no work directory for its row files: give one (Certificate work directory; the Host puts it in the run directory)" n)
            let blocks = (n + b - 1) / b
            let outputs = Array.zeroCreate<torch.Tensor> blocks
            let keep i (f: torch.Tensor) =
                if not (isNull outputs.[i]) then outputs.[i].Dispose()
                outputs.[i] <- f
            let log = TwoPhase.ProgressLog setup
            try
                // resumable (docs/theory.md §4 "Φ̃ streamed"): the rows of the body at the switch (in place), in the folder
                // that keeps the switch certificate's Gram tiles (`KeepsSwitchTiles`: streamed rows are Theorem P's with a
                // frozen body, the damped body being refused), with the outputs f_I beside each block
                let folder, key = TwoPhase.ResumableRowsFolder setup
                let outputsPath i = Path.Combine(folder, sprintf "outputs-%d.tile" i)
                let outputsHeader i = sprintf "rf-feature-outputs\nkey=%s\nblock=%d\n" key i
                let produce i =
                    let phi, f = TwoPhase.FeaturesAndOutputsOf(setup, i * b, min b (n - i * b))
                    keep i f
                    Tiled.writeTile (outputsPath i) (outputsHeader i) f
                    phi
                let reusable i =
                    match Tiled.readTile (outputsPath i) (outputsHeader i) (min b (n - i * b)) setup.Classes with
                    | Ok f -> keep i f; true
                    | Error _ -> false
                let rows = FeatureRows.ProduceResumable(n, TwoPhase.FeatureColumns setup, b, engine.MemoryBudgetBytes / 2L, folder, key,
                                                        produce, reusable, null, log)
                rows, torch.cat(outputs, 0L)
            finally
                for t in outputs do if not (isNull t) then t.Dispose()

    /// Y of the training set as an n × c float64 CPU matrix.
    static member private TargetMatrix(setup: RecipeSetup) : torch.Tensor =
        use y = setup.Targets.detach().cpu()
        if y.dim () = 1L then y.unsqueeze(1L).to_type(torch.float64) else y.to_type(torch.float64)

    /// A rigorous upper bound on ‖r‖_F, r = Z − (Φ̃Φ̃ᵀ + nλI)A (exact arithmetic on the float64 values of Φ̃,
    /// Z, A): ‖fl(r)‖_F + ‖γ_k(|Z| + |Φ̃|(|Φ̃|ᵀ|A|) + nλ|A|)‖_F, k = n + m + 4 (two products of lengths
    /// n and m + 1 and three additions, Higham §3.5), times (1 + γ_{nc+1}) for the norm's own rounding.
    /// It is measured on Φ̃ itself, never through the factor, so it holds for any A however computed (dense
    /// potrs or tiled forward/back substitution, `CholeskyFactor`) and for any summation order of its products.
    /// Φ̃ as row blocks (`FeatureRows`): the products Φ̃(Φ̃ᵀA) and |Φ̃|(|Φ̃|ᵀ|A|) are sums over the blocks, another
    /// summation order covered by the same γ_k.
    static member private ResidualBound(phi: FeatureRows, z: torch.Tensor, a: torch.Tensor, ridge: float) : float =
        use scope = torch.NewDisposeScope()
        let n = float phi.Rows
        let k = phi.Rows + phi.Columns + 4
        let r = z.sub(phi.Times(phi.TransposeTimes a)).sub(a.mul(scalar (n * ridge)))
        let bound = z.abs().add(phi.AbsTimes(phi.AbsTransposeTimes a)).add(a.abs().mul(scalar (n * ridge)))
        let gamma = FloatingPoint.gamma FloatingPoint.unitRoundoff64 k
        let norm = r.norm().ToDouble() + gamma * bound.norm().ToDouble()
        norm * (1.0 + FloatingPoint.gamma FloatingPoint.unitRoundoff64 (int z.NumberOfElements + 1))

    /// `ResidualBound` of Φ̃ held as one tensor (not taken).
    static member private ResidualBound(phi: torch.Tensor, z: torch.Tensor, a: torch.Tensor, ridge: float) : float =
        use rows = FeatureRows.InMemory(phi.alias())
        TwoPhase.ResidualBound(rows, z, a, ridge)

    /// k(ε) of Theorem P: the fewest steps with (1 − η)^k ≤ √ε/2 (1 when η = 1).
    static member PredictedSteps(step: float, epsilon: float) : int =
        if step >= 1.0 then 1
        else
            // the logarithms' rounding could leave (1 − η)^k just above √ε/2: step on until it is not
            let mutable k = max 1 (int (ceil (log (sqrt epsilon / 2.0) / log (1.0 - step))))
            while Math.Pow(1.0 - step, float k) > sqrt epsilon / 2.0 do k <- k + 1
            k

    /// Whether a frozen body's Phase II step (`stepsDone` steps taken before it) measures the gap g_t, one pass over
    /// Φ̃_τ (docs/theory.md §4, "What the run checks"): at every step up to k(ε) and past it while the hypothesis holds
    /// (the prediction is decided there, and a miss must be seen). Past k(ε) with the hypothesis failed no prediction
    /// is claimed and the measurement only reports: it runs at steps k(ε) + 2^j (j ≥ 0), so T steps cost O(k(ε) + log T)
    /// passes, not T (at n = 60,000 with Φ̃ in files, one pass reads ≈ 20 GB). Not called once the prediction is met
    /// (settled: no measurement). `predicted` < 0 (no prediction): every step.
    static member MeasuresGap(predicted: int, stepsDone: int, achievedAfter: int, hypothesisHeld: bool) : bool =
        if predicted < 0 || stepsDone <= predicted || hypothesisHeld then true
        elif achievedAfter >= 0 then false
        else
            let s = stepsDone - predicted
            s &&& (s - 1) = 0

    /// The preconditioner of Theorem P at the switch (certified Φ̃_τ, evaluation mode): the Cholesky
    /// factor of M_τ = fl(Φ̃_τΦ̃_τᵀ) + nλI in float64, on the storage of the switch's certificate
    /// (`CholeskyFactor.OfRows`: dense, or tiles when the certificate was tiled); with a frozen body also Φ̃_τ (as `FeatureRows`:
    /// streamed when it does not fit, `StreamsFeatures`), Z_τ, A_τ and the bound on ‖r_τ‖, and the prediction k(ε).
    static member private BuildPreconditioner(setup: RecipeSetup) : PreconditionedReadout =
        TwoPhase.BuildPreconditioner(setup, null)

    /// Theorem PD (damped body) needs Φ̃_t whole at every step: refused when Φ̃ is streamed.
    static member private RefuseDampedStreamed(setup: RecipeSetup, streamed: bool) =
        let r = setup.Recipe
        if streamed && r.ReadoutStep = ReadoutStepRule.Preconditioned && r.Mode <> PhaseTwoMode.Frozen then
            invalidOp (sprintf "Theorem P with a damped body needs Φ̃_t of all n = %d points whole at every step, but Φ̃ (%d × %d float64) exceeds half the certificate's memory budget (%d bytes): use Recipe:Mode = frozen, which streams Φ̃_τ, or raise Certificate:TileMemoryGB"
                           setup.Certification.Rows setup.Certification.Rows (TwoPhase.FeatureColumns setup) r.CertificateEngine.MemoryBudgetBytes)

    /// Whether the switch's certificate keeps its tile folder (docs/theory.md §4 "Φ̃ streamed"): Φ̃ streamed, Theorem P
    /// with a frozen body, whose factor is formed from the certificate's Gram tiles. Then the folder (≈ 15 GB at
    /// n = 60,000) stays until the run ends (`ReleaseKeptTiles`), so that a run resumed after the switch forms the factor
    /// from it (`StoredSwitchFactor`) instead of a second Gram (three hours at n = 60,000).
    static member KeepsSwitchTiles(setup: RecipeSetup) : bool =
        let r = setup.Recipe
        r.ReadoutStep = ReadoutStepRule.Preconditioned && r.Mode = PhaseTwoMode.Frozen
        && not (String.IsNullOrEmpty r.CertificateEngine.WorkDirectory) && TwoPhase.StreamsFeatures setup

    /// Theorem P's factor at a resume after the switch (the body at the switch in place, evaluation mode): from the Gram
    /// tiles the switch's certificate kept (`KeepsSwitchTiles`, `CholeskyFactor.FromStoredGram`, bitwise the
    /// switch's factor), in half the engine's budget as at the switch; null when they are not there (or a file fails
    /// verification: said in the log), and the caller forms it from the rows (`CholeskyFactor.OfRows`, the same bits).
    static member private StoredSwitchFactor(setup: RecipeSetup) : CholeskyFactor =
        if not (TwoPhase.KeepsSwitchTiles setup) then null
        else
            let r = setup.Recipe
            let engine = r.CertificateEngine
            let half = engine.WithTiles(engine.TileSize, max 1L (engine.MemoryBudgetBytes / 2L))
            let subject = TwoPhase.SubjectOf(setup, TwoPhase.FeatureColumns setup - 1)
            let log = TwoPhase.ProgressLog setup
            let say (line: string) = if not (isNull log) then log.Invoke line
            try
                match CholeskyFactor.FromStoredGram(half, subject, float setup.Certification.Rows * r.ReadoutRidge, log) with
                | Some factor when isNull factor ->
                    // the tiles the switch factorised: the rows would give the same tiles and fail the same way
                    invalidOp (sprintf "Theorem P: the float64 Cholesky of fl(G_τ) + nλI failed (λ = %g) although EC is certified; raise ReadoutRidge" r.ReadoutRidge)
                | Some factor -> factor
                | None ->
                    say (sprintf "no complete set of the switch certificate's Gram tiles in %s" (CertificateEngine.TileFolder(engine, subject)))
                    null
            with :? InvalidDataException as e ->
                // a tile refused on reading (missing, truncated, corrupted): its entry is dropped, the rows give the same tiles
                say (sprintf "the switch certificate's Gram tiles could not be used (%s)" e.Message)
                null

    /// The tile folder the switch's certificate kept (`KeepsSwitchTiles`), null when there is none: named by the body at
    /// the switch (put in place for the name, then the current body and mode are put back). Whatever the engine would
    /// choose now (a resume with more memory may no longer stream), the folder the switch named is the one looked for.
    static member KeptTilesFolder(setup: RecipeSetup, state: RecipeState) : string =
        let engine = setup.Recipe.CertificateEngine
        if not state.Switched || isNull state.SwitchBody || String.IsNullOrEmpty engine.WorkDirectory then null
        else
            let current = TwoPhase.Snapshot setup
            let wasTraining = setup.Model.training
            try
                TwoPhase.Restore(setup, state.SwitchBody)
                setup.Model.eval ()
                let folder = CertificateEngine.TileFolder(engine, TwoPhase.SubjectOf(setup, TwoPhase.FeatureColumns setup - 1))
                if not (isNull folder) && Directory.Exists folder then folder else null
            finally
                TwoPhase.Restore(setup, current)
                TwoPhase.DisposeAll current
                if wasTraining then setup.Model.train ()

    /// Removes the tile folder the switch's certificate kept (`KeptTilesFolder`), once the run needs no resume: the
    /// trainer does it when a run completes (after checkpointing its final state), a loop of one's own when it is done
    /// with the state (before `Dispose`). True when there was one; a folder that cannot be removed is said in the log
    /// (the run stays complete).
    static member ReleaseKeptTiles(setup: RecipeSetup, state: RecipeState) : bool =
        TwoPhase.ReleaseKeptTiles(setup, TwoPhase.KeptTilesFolder(setup, state))

    /// `ReleaseKeptTiles` of the folder `KeptTilesFolder` already found (null: nothing to do).
    static member ReleaseKeptTiles(setup: RecipeSetup, folder: string) : bool =
        if isNull folder then false
        else
            let say (line: string) = match TwoPhase.ProgressLog setup with | null -> () | log -> log.Invoke line
            try
                Directory.Delete(folder, true)
                say (sprintf "the switch certificate's kept Gram tiles removed (%s)" folder)
                true
            with :? IOException | :? UnauthorizedAccessException as e ->
                say (sprintf "the switch certificate's kept Gram tiles in %s could not be removed (%s): remove the folder by hand" folder e.Message)
                false

    /// Removes the row files and factor tiles a killed run left in the engine's work directory (`features/rows-*`,
    /// `cholesky/factor-*`: tens of GB at n = 60,000). Called where no preconditioner of this run exists yet (the switch,
    /// a resume): their folders have fresh names, so nothing would ever read them again.
    static member private RemoveStaleStreamedFiles(setup: RecipeSetup) =
        let directory = setup.Recipe.CertificateEngine.WorkDirectory
        if not (String.IsNullOrEmpty directory) then
            for sub, pattern in [ "features", "rows-*"; "cholesky", "factor-*" ] do
                let folder = Path.Combine(directory, sub)
                if Directory.Exists folder then
                    for stale in Directory.GetDirectories(folder, pattern) do
                        match TwoPhase.ProgressLog setup with
                        | null -> ()
                        | log -> log.Invoke(sprintf "removing %s, left by an interrupted run" stale)
                        Directory.Delete(stale, true)

    /// Φ̃ᵀA, |Φ̃|ᵀ|A| and an upper bound on ‖Φ̃‖_F (the computed norm, a sum of n·m' squares, the blocks' sum and a
    /// square root, inflated by γ): three passes over the rows; a frozen body's memo (`FrozenProducts`).
    static member private ProductsOf(phi: FeatureRows, a: torch.Tensor) : torch.Tensor * torch.Tensor * float =
        let target = phi.TransposeTimes a
        let absProduct = phi.AbsTransposeTimes a
        let phiNorm = phi.FrobeniusNorm * (1.0 + FloatingPoint.gamma FloatingPoint.unitRoundoff64 (phi.Rows * phi.Columns + phi.BlockCount + 1))
        target, absProduct, phiNorm

    /// A_τ = M_τ⁻¹Z_τ and the rigorous bound on ‖r_τ‖ (`ResidualBound`) of a frozen body, and with streamed rows also its
    /// memo (`FrozenProducts`: Φ̃ᵀA_τ, |Φ̃|ᵀ|A_τ|, the bound on ‖Φ̃‖_F; otherwise null, and the first step forms it). Streamed
    /// (the rows in the kept folder), all of it is written beside the rows (`ResumableRowsFolder`, keyed by the subject,
    /// the device and the shift nλ's bits), and a resume reads it back instead of two triangular solves through the
    /// factor's tiles and seven passes over the rows (≈ 8 min at n = 60,000): the same float64 values, so the same run.
    /// A file that is missing or fails verification is computed again.
    static member private FrozenSolution(setup: RecipeSetup, streamed: bool, factor: CholeskyFactor, phi: FeatureRows,
                                         z: torch.Tensor) : torch.Tensor * float * FrozenProducts =
        let r = setup.Recipe
        let solve () =
            let a = factor.Solve z
            a, TwoPhase.ResidualBound(phi, z, a, r.ReadoutRidge)
        if not streamed then
            let a, rNorm = solve ()
            a, rNorm, null
        else
            let folder, key = TwoPhase.ResumableRowsFolder setup
            let shift = float phi.Rows * r.ReadoutRidge
            let path = Path.Combine(folder, sprintf "solution-%016x.tile" (BitConverter.DoubleToInt64Bits shift))
            let header = sprintf "rf-theorem-p-solution 2\nkey=%s\nshift=%016x\n" key (BitConverter.DoubleToInt64Bits shift)
            let n, m1, c = int z.shape.[0], phi.Columns, int z.shape.[1]
            // [A_τ (n × c); Φ̃ᵀA_τ (m' × c); |Φ̃|ᵀ|A_τ| (m' × c); a row whose first entry is the bound on ‖r_τ‖; one with the bound on ‖Φ̃‖_F]
            let rows = n + 2 * m1 + 2
            let part (t: torch.Tensor) (start: int) (count: int) =
                use scope = torch.NewDisposeScope()
                t.narrow(0L, int64 start, int64 count).clone().DetachFromDisposeScope()
            let products (target: torch.Tensor) (absProduct: torch.Tensor) (phiNorm: float) =
                let memo = FrozenProducts()
                memo.Target <- target
                memo.AbsProduct <- absProduct
                memo.FeatureNorm <- phiNorm
                memo
            match Tiled.readTile path header rows c with
            | Ok stored ->
                use stored = stored
                let rNorm = stored.[int64 (rows - 2), 0L].ToDouble()
                let phiNorm = stored.[int64 (rows - 1), 0L].ToDouble()
                match TwoPhase.ProgressLog setup with
                | null -> ()
                | log -> log.Invoke(sprintf "A_τ, its products and the bounds on ‖r_τ‖ and ‖Φ̃‖_F read back from %s (a stopped run's)" path)
                part stored 0 n, rNorm, products (part stored n m1) (part stored (n + m1) m1) phiNorm
            | Error _ ->
                let a, rNorm = solve ()
                let target, absProduct, phiNorm = TwoPhase.ProductsOf(phi, a)
                do
                    use scope = torch.NewDisposeScope()
                    let scalar (v: float) =
                        let row = torch.zeros([| 1L; int64 c |], dtype = torch.float64)
                        row.[0L, 0L] <- torch.tensor(v, dtype = torch.float64)
                        row
                    Directory.CreateDirectory folder |> ignore
                    Tiled.writeTile path header (torch.cat([| a; target; absProduct; scalar rNorm; scalar phiNorm |], 0L).contiguous())
                a, rNorm, products (target.DetachFromDisposeScope()) (absProduct.DetachFromDisposeScope()) phiNorm

    /// `BuildPreconditioner` with the factor already formed from the switch certificate's Gram tiles (`switchFactor`,
    /// taken; null: formed here from the rows, `CholeskyFactor.OfRows`, bitwise the same for the same rows).
    static member private BuildPreconditioner(setup: RecipeSetup, switchFactor: CholeskyFactor) : PreconditionedReadout =
        let r = setup.Recipe
        let streamed = TwoPhase.StreamsFeatures setup
        TwoPhase.RefuseDampedStreamed(setup, streamed)
        let phi, f = TwoPhase.FeatureRowsAndOutputs(setup, streamed)
        use f = f
        // a failure past this point (the factor, the solve, the residual bound) frees the rows in memory (up to half the
        // budget) and a factor formed here; the switch's factor is the caller's to free
        let formed = ref (null: CholeskyFactor)
        try
            use y = TwoPhase.TargetMatrix setup
            let n = phi.Rows
            // streamed: the factor's tiles share the budget with the feature rows kept in memory
            let engine = if streamed then r.CertificateEngine.WithTiles(r.CertificateEngine.TileSize, max 1L (r.CertificateEngine.MemoryBudgetBytes - phi.MemoryBytes)) else r.CertificateEngine
            let factor =
                if not (isNull switchFactor) then switchFactor
                else
                    match TwoPhase.ProgressLog setup with
                    | null -> ()
                    | log -> if streamed then log.Invoke "Theorem P's factor of fl(G_τ) + nλI formed from the rows (a second Gram)"
                    formed.Value <- CholeskyFactor.OfRows(engine, phi, float n * r.ReadoutRidge, TwoPhase.ProgressLog setup)
                    formed.Value
            if isNull factor then
                invalidOp (sprintf "Theorem P: the float64 Cholesky of fl(G_τ) + nλI failed (λ = %g) although EC is certified; raise ReadoutRidge" r.ReadoutRidge)
            let z = y.sub(f)
            if r.Mode = PhaseTwoMode.Frozen then
                let a, rNorm, memo = TwoPhase.FrozenSolution(setup, streamed, factor, phi, z)
                PreconditionedReadout(factor, r.PreconditionedStep, r.ReadoutRidge, r.PredictionEpsilon,
                                      TwoPhase.PredictedSteps(r.PreconditionedStep, r.PredictionEpsilon),
                                      phi, a, z, rNorm, nan, nan, -1, true, 0.0, 0, (if isNull memo then FrozenProducts() else memo), null)
            elif r.ReadoutRidge = 0.0 then
                // Theorem PD: the damped body's step on the residual, with the prediction k_δ(ε) for the rate 1 − η_P(1 − δ)
                phi.Dispose()
                z.Dispose()
                let delta = r.RefactorThreshold
                PreconditionedReadout(factor, r.PreconditionedStep, 0.0, r.PredictionEpsilon,
                                      TwoPhase.PredictedSteps(r.PreconditionedStep * (1.0 - delta), r.PredictionEpsilon),
                                      null, null, null, nan, nan, nan, -1, true, 0.0, 0, FrozenProducts(),
                                      DampedReadoutTrack(delta, r.SwitchIteration, null, 0, 0.0, null, nan, 0.0, 0.0, nan))
            else
                phi.Dispose()
                z.Dispose()
                PreconditionedReadout(factor, r.PreconditionedStep, r.ReadoutRidge, r.PredictionEpsilon, -1,
                                      null, null, null, nan, nan, nan, -1, true, 0.0, 0)
        with _ ->
            phi.Dispose()
            if not (isNull formed.Value) then formed.Value.Dispose()
            reraise ()

    /// Theorem PD: fl(R) = fl(Y − F − Φ̃W) of all n points and ε ≥ ‖R − fl(R)‖_F (one product of length m + 1 and two
    /// subtractions, Higham §3.5; times 1 + γ for the norm's own rounding). One computation for the step and the body limit,
    /// so that a body that did not move gives bitwise the same fl(R).
    static member private DampedResidual(phi: torch.Tensor, f: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) : torch.Tensor * float =
        let u = FloatingPoint.unitRoundoff64
        let r = y.sub(f).sub(phi.mm(weights))
        let normGamma = FloatingPoint.gamma u (int y.NumberOfElements + 2)
        use absPhi = phi.abs()
        use prod = absPhi.mm(weights.abs())
        use bound = y.abs().add(f.abs(), one).add(prod, one)
        let err = FloatingPoint.gamma u (int phi.shape.[1] + 3) * bound.norm().ToDouble() * (1.0 + normGamma)
        r, err

    /// Theorem PD: a lower bound on ‖R_τ‖ from the recorded lower bound L_τ ≥ `initialGapLower` = r²/(2n), made safe
    /// against the rounding of r² and of the square root (× (1 − 4u)).
    static member private SwitchResidualLower(n: float, initialGapLower: float) =
        sqrt (2.0 * n * initialGapLower) * (1.0 - 4.0 * FloatingPoint.unitRoundoff64)

    /// W = [weightᵀ; biasᵀ] of V as an (m+1) × c float64 CPU matrix.
    static member private Readout64(state: RecipeState) : torch.Tensor =
        let v = state.Readout
        torch.cat([| v.weight.detach().t(); v.bias.detach().unsqueeze(0L) |], 0L).to_type(torch.float64).cpu()

    /// Writes W = [weightᵀ; biasᵀ] ((m+1) × c, already at the model's precision) into V.
    static member private WriteReadout(v: Modules.Linear, stored: torch.Tensor) =
        use _ = torch.no_grad ()
        let m = v.weight.shape.[1]
        use weightT = stored.narrow(0L, 0L, m).t().``to``(v.weight.device)
        use bias = stored.[m].``to``(v.bias.device)
        v.weight.copy_(weightT) |> ignore
        v.bias.copy_(bias) |> ignore

    /// Theorem PD's e_{t−1} = pending + ‖D_{t−1}‖ with ‖D_{t−1}‖ ≤ ‖fl(R'_{t−1}) − fl(R_t)‖(1 + γ_{nc+2}) + ε'_{t−1} + ε_t,
    /// for fl(R_t) = `r` with bound `eps` (`DampedResidual`). One function for the step and the body limit, so the budget
    /// the limit enforces is bitwise the perturbation the next step measures.
    static member private BodyPerturbation(track: DampedReadoutTrack, r: torch.Tensor, eps: float) : float =
        let normGamma = FloatingPoint.gamma FloatingPoint.unitRoundoff64 (int r.NumberOfElements + 2)
        use d = track.Carried.sub(r)
        track.Pending + d.norm().ToDouble() * (1.0 + normGamma) + track.CarriedError + eps

    /// Sets ω = before + β·(stepped − before) (flat vectors).
    static member private SetBodyBetween(setup: RecipeSetup, before: torch.Tensor, stepped: torch.Tensor, beta: float) =
        use _ = torch.no_grad ()
        let mutable offset = 0L
        for p in setup.Body do
            let count = p.NumberOfElements
            use b = before.narrow(0L, offset, count).view(p.shape)
            use s = stepped.narrow(0L, offset, count).view(p.shape)
            use d = s.sub(b)
            use v = b.add(d.mul(scalar beta))
            p.copy_(v) |> ignore
            offset <- offset + count

    /// Theorem PD's body limit (`RecipeConfig.LimitBodyStep`), after the readout step and the damped body step: the
    /// body's perturbation e_t = pending + ‖D_t‖ (as the next step will measure it) must fit the uniform budget
    /// η_P(1 − δ)(√ε/2)‖R_τ‖ (then E_k ≤ (√ε/2)‖R_τ‖ at every k); else the body's step is halved, ω_{t+1} = ω_t + β·(step),
    /// up to 30 times, and dropped (β = 0: D_t = 0) if it still does not fit. Returns β.
    static member private LimitBodyStep(setup: RecipeSetup, state: RecipeState, p: PreconditionedReadout, before: torch.Tensor) : float =
        let track = if isNull p then null else p.Damped
        if isNull track || isNull track.Carried || not setup.Recipe.LimitBodyStep || Double.IsNaN p.InitialGapLower then 1.0
        else
            use scope = torch.NewDisposeScope()
            use y = TwoPhase.TargetMatrix setup
            let n = float y.shape.[0]
            let w = TwoPhase.Readout64 state
            let r0 = TwoPhase.SwitchResidualLower(n, p.InitialGapLower)
            let budget = p.Step * (1.0 - track.Threshold) * (sqrt p.Epsilon / 2.0) * r0
            let perturbation () =
                let phi, f = TwoPhase.FeaturesAndOutputs setup
                use phi = phi
                use f = f
                let r, eps = TwoPhase.DampedResidual(phi, f, y, w)
                use r = r
                TwoPhase.BodyPerturbation(track, r, eps)
            // With no body step (β = 0) the next residual is fl(R'_t) bitwise: e_t = pending + 2ε'_t, which no shortening
            // can lower. When that floor exceeds the budget (the readout's own rounding, e.g. a float32 W of large norm),
            // the body keeps its step and the failed hypothesis is reported.
            if track.Pending + 2.0 * track.CarriedError > budget then 1.0
            else
            let stepped = TwoPhase.FlatBody setup
            let mutable beta = 1.0
            let mutable e = perturbation ()
            let mutable halvings = 0
            // (a NaN perturbation is not within the budget)
            while not (e <= budget) && halvings < 30 do
                beta <- beta / 2.0
                halvings <- halvings + 1
                TwoPhase.SetBodyBetween(setup, before, stepped, beta)
                e <- perturbation ()
            if not (e <= budget) then
                beta <- 0.0
                TwoPhase.SetBodyBetween(setup, before, stepped, 0.0)
            beta

    /// Theorem PD's step (damped body, λ = 0; docs/theory.md §4) at the current ω, before the body moves: the residual
    /// R̂_t = fl(Y − F_t − Φ̃_tW_t) of all n points, e_{t−1} from the previous step's fl(R'_{t−1}), A_t = C⁻ᵀC⁻¹R̂_t with
    /// its drift ratio Δ_t (a refactor at ω_t when Δ_t > δ), W_{t+1} = W_t + η_PΦ̃_tᵀA_t written into V, and fl(R'_t)
    /// kept for the next step. Gaps are of the training loss L = ‖R‖²/(2n) (L* = 0 under EC). A run whose
    /// hypotheses held and that misses k_δ(ε) raises: a bug.
    static member private DampedPreconditionedUpdate(setup: RecipeSetup, state: RecipeState) : PreconditionedReadout =
        let p = state.Preconditioner
        let track = p.Damped
        let u = FloatingPoint.unitRoundoff64
        let gamma k = FloatingPoint.gamma u k
        let phi, f = TwoPhase.FeaturesAndOutputs setup
        try
            use scope = torch.NewDisposeScope()
            use y = TwoPhase.TargetMatrix setup
            let v = state.Readout
            let n = int phi.shape.[0]
            let m1 = int phi.shape.[1]
            let nf = float n
            let normGamma = gamma (n * int y.shape.[1] + 2)   // a norm's own rounding and that of one subtraction before it
            let w = TwoPhase.Readout64 state
            let absPhi = phi.abs()
            let residual (weights: torch.Tensor) = TwoPhase.DampedResidual(phi, f, y, weights)
            let rHat, eps = residual w
            let rNorm = rHat.norm().ToDouble()
            let rUpper = rNorm * (1.0 + normGamma) + eps
            let rLower = max 0.0 (rNorm * (1.0 - normGamma) - eps)
            let lossUpper = rUpper * rUpper / (2.0 * nf)
            let initial = if Double.IsNaN p.InitialGapLower then rLower * rLower / (2.0 * nf) else p.InitialGapLower
            let r0 = TwoPhase.SwitchResidualLower(nf, initial)   // ‖R_τ‖ ≥ r0
            let switchUpper = if Double.IsNaN track.SwitchUpper then rUpper else track.SwitchUpper   // ‖R_τ‖ ≤ switchUpper
            let delta = track.Threshold
            let eta = p.Step
            let q = 1.0 - eta * (1.0 - delta)
            let budget = (sqrt p.Epsilon / 2.0) * r0
            // e_{t−1} = (1 + q)ε_{t−1} + ‖Φ̃‖‖δ_{t−1}‖ + ‖D_{t−1}‖, ‖D_{t−1}‖ ≤ ‖fl(R'_{t−1}) − fl(R_t)‖ + ε'_{t−1} + ε_t
            let previousE =
                if isNull track.Carried then 0.0 else TwoPhase.BodyPerturbation(track, rHat, eps)
            // E_k = qE_{k−1} + e_{τ+k−1} (k = steps done): the body's perturbations, each damped by the steps since
            let accumulated = q * track.Accumulated + previousE
            let due = p.PredictedSteps >= 0 && p.StepsDone >= p.PredictedSteps
            let ratio = if not due then 0.0 elif budget > 0.0 then accumulated / budget elif accumulated = 0.0 then 0.0 else infinity
            let heldBefore = p.HypothesisHeld && (not due || accumulated <= budget)
            let achieved =
                if p.AchievedAfter >= 0 then p.AchievedAfter
                elif rUpper <= sqrt p.Epsilon * r0 then p.StepsDone
                else -1
            // a sure miss: ‖R_{τ+k}‖ ≥ rLower > √ε·switchUpper ≥ √ε‖R_τ‖ (not one within the bounds' slack)
            if p.PredictedSteps >= 0 && heldBefore && achieved < 0 && p.StepsDone >= p.PredictedSteps && rLower > sqrt p.Epsilon * switchUpper then
                invalidOp (sprintf "Theorem PD: the prediction k_δ(ε) = %d (ε = %g, δ = %g) was missed although its hypotheses held (loss ≤ %g after %d steps, initial ≥ %g): a bug"
                               p.PredictedSteps p.Epsilon delta lossUpper p.StepsDone initial)
            // A_t and its drift ratio Δ_t = ‖R̂_t − G_tA_t‖/‖R̂_t‖ (rigorous upper bound, on Φ̃_t itself)
            let drift (factor: CholeskyFactor) =
                let a = factor.Solve rHat
                let rho = TwoPhase.ResidualBound(phi, rHat, a, 0.0)
                let ratio = if rNorm = 0.0 then (if rho = 0.0 then 0.0 else infinity) else rho / (rNorm * (1.0 - normGamma))
                a, ratio
            let a0, d0 = drift p.Factor
            let factor, a, driftRatio, track' =
                if d0 <= delta then p.Factor, a0, d0, track
                else
                    // the order a resume rebuilds the factor in (`BuildPreconditioner` → `CholeskyFactor.OfRows`), bit for bit
                    let refactored = (use rows = FeatureRows.InMemory(phi.alias()) in CholeskyFactor.OfRows(setup.Recipe.CertificateEngine, rows, 0.0, TwoPhase.ProgressLog setup))
                    match refactored with
                    | null -> p.Factor, a0, d0, track
                    | fresh ->
                        let a1, d1 = drift fresh
                        p.Factor.Dispose()
                        if not (isNull track.FactorBody) then for t in track.FactorBody do t.Dispose()
                        let body = TwoPhase.Snapshot setup |> Array.map (fun t -> t.DetachFromDisposeScope())
                        fresh, a1, d1,
                        DampedReadoutTrack(delta, state.Iteration, body, track.Refactors + 1, track.MaxDrift, track.Carried,
                                           track.CarriedError, track.Pending, track.Accumulated, track.SwitchUpper)
            let held = heldBefore && driftRatio <= delta
            let next = w.add(phi.t().mm(a).mul(scalar eta))
            let stored = next.to_type(v.weight.dtype)
            let stored64 = stored.to_type(torch.float64)
            let deltaNorm =
                stored64.sub(next).norm().ToDouble()
                + gamma (n + m1 + 4) * w.abs().add(absPhi.t().mm(a.abs()).mul(scalar eta)).norm().ToDouble()
            let phiNorm = phi.norm().ToDouble() * (1.0 + gamma (n * m1 + 1))
            let pending = (1.0 + q) * eps + phiNorm * deltaNorm
            let carried, carriedError = residual stored64
            TwoPhase.WriteReadout(v, stored)
            if not (isNull track'.Carried) then track'.Carried.Dispose()
            let next' =
                DampedReadoutTrack(delta, track'.FactorIteration, track'.FactorBody, track'.Refactors, max track'.MaxDrift driftRatio,
                                   carried.DetachFromDisposeScope(), carriedError, pending, accumulated, switchUpper)
            p.AfterDamped(factor, next', lossUpper, initial, achieved, held, max p.MaxPerturbationRatio ratio)
        finally
            phi.Dispose()
            f.Dispose()

    /// One preconditioned readout step of Theorem P at the current ω (before the body moves):
    /// W ← (1 − η_P)W + η_P·Φ̃_tᵀA_t, A_t = M_τ⁻¹Z_t by two triangular solves (dense or tiled: `CholeskyFactor`), written into V at the
    /// model's precision; measures the gap bounds, the step's perturbation e_t (the solve residual and
    /// the rounding of W) and the prediction. A frozen body that met the hypothesis and missed k(ε)
    /// is a bug: it raises.
    static member private PreconditionedUpdate(setup: RecipeSetup, state: RecipeState) : PreconditionedReadout =
        let p = state.Preconditioner
        let owned = ResizeArray<IDisposable>()
        try
            use scope = torch.NewDisposeScope()
            let phi, z, a, rNorm =
                if not (isNull p.FrozenFeatures) then p.FrozenFeatures, p.FrozenTargets, p.FrozenSolution, p.FrozenResidualNorm
                else
                    let phi, f = TwoPhase.FeaturesAndOutputs setup
                    let rows = FeatureRows.InMemory phi
                    owned.Add rows
                    owned.Add f
                    use y = TwoPhase.TargetMatrix setup
                    let z = y.sub(f)
                    let a = p.Factor.Solve z
                    rows, z, a, TwoPhase.ResidualBound(rows, z, a, p.Ridge)
            let v = state.Readout
            let n = float phi.Rows
            let gamma = FloatingPoint.gamma FloatingPoint.unitRoundoff64 (phi.Rows + phi.Columns + 4)
            let w = TwoPhase.Readout64 state
            let hNorm (x: torch.Tensor) =
                sqrt (phi.Times(x).pow(scalar 2.0).sum().ToDouble() / n + p.Ridge * x.pow(scalar 2.0).sum().ToDouble())
            // a frozen body's Φ̃_τ and A_τ do not change: their products are computed once (the memo)
            let frozen = not (isNull p.FrozenFeatures)
            let memo = p.Products
            let target, absProduct, phiNorm =
                if frozen && not (isNull memo.Target) then memo.Target, memo.AbsProduct, memo.FeatureNorm
                else
                    let target, absProduct, phiNorm = TwoPhase.ProductsOf(phi, a)
                    if frozen then
                        memo.Target <- target.DetachFromDisposeScope()
                        memo.AbsProduct <- absProduct.DetachFromDisposeScope()
                        memo.FeatureNorm <- phiNorm
                    target, absProduct, phiNorm
            let writeReadout (stored: torch.Tensor) = TwoPhase.WriteReadout(v, stored)
            // Settled: a frozen body whose prediction was met and whose k(ε) has passed: the rule keeps stepping, the
            // measurements (two more (n × (m+1))·((m+1) × c) products per step) stop; the record keeps their last values.
            if frozen && p.PredictedSteps >= 0 && p.AchievedAfter >= 0 && p.StepsDone > p.PredictedSteps then
                writeReadout (w.mul(scalar (1.0 - p.Step)).add(target.mul(scalar p.Step)).to_type(v.weight.dtype))
                p.After(p.LastGapUpper, p.InitialGapLower, p.AchievedAfter, p.HypothesisHeld, p.MaxPerturbationRatio)
            else
                let sqrtN = sqrt n
                let eta = p.Step
                // the gap's bounds, measured (one pass over Φ̃: `hNorm`) on the frozen schedule `MeasuresGap`, every step otherwise
                let measured =
                    if frozen && not (TwoPhase.MeasuresGap(p.PredictedSteps, p.StepsDone, p.AchievedAfter, p.HypothesisHeld)) then None
                    else
                        let d = hNorm (w.sub(target))
                        let gapUpper = (d * (1.0 + gamma) + rNorm / sqrtN) / sqrt 2.0
                        let gapLower = max 0.0 (d * (1.0 - gamma) - rNorm / sqrtN) / sqrt 2.0
                        Some(gapUpper, gapLower)
                let initial =
                    match measured with
                    | Some(_, gapLower) when Double.IsNaN p.InitialGapLower -> gapLower * gapLower
                    | _ -> p.InitialGapLower
                let g0 = sqrt initial
                let achieved =
                    match measured with
                    | _ when p.AchievedAfter >= 0 -> p.AchievedAfter
                    | Some(gapUpper, _) when gapUpper <= sqrt p.Epsilon * g0 -> p.StepsDone
                    | _ -> -1
                // A sure miss only: the lower bound on g_t above √ε times an upper bound on g_τ. With a frozen body ‖r‖ is
                // the constant ‖r_τ‖ bound, and g_τ ≥ g0 = (d_τ(1 − γ) − ‖r‖/√n)/√2 gives d_τ ≤ (√2·g0 + ‖r‖/√n)/(1 − γ),
                // so g_τ ≤ (d_τ(1 + γ) + ‖r‖/√n)/√2 from the recorded g0 alone (no extra state, the same after a resume).
                let g0Upper = (((sqrt 2.0 * g0 + rNorm / sqrtN) / (1.0 - gamma)) * (1.0 + gamma) + rNorm / sqrtN) / sqrt 2.0
                match measured with
                | Some(gapUpper, gapLower) when p.PredictedSteps >= 0 && p.HypothesisHeld && achieved < 0 && p.StepsDone >= p.PredictedSteps
                                                && gapLower > sqrt p.Epsilon * g0Upper ->
                    invalidOp (sprintf "Theorem P: the prediction k(ε) = %d (ε = %g) was missed although its hypothesis held (gap ≤ %g after %d steps, initial ≥ %g): a bug"
                                   p.PredictedSteps p.Epsilon (gapUpper * gapUpper) p.StepsDone initial)
                | _ -> ()
                let next = w.mul(scalar (1.0 - eta)).add(target.mul(scalar eta))
                let stored = next.to_type(v.weight.dtype)
                let delta = stored.to_type(torch.float64).sub(next)
                let roundingOfNext = w.abs().mul(scalar (abs (1.0 - eta))).add(absProduct.mul(scalar eta)).norm().ToDouble() * gamma
                let deltaNorm = delta.norm().ToDouble() + roundingOfNext
                let perturbation = eta * rNorm / sqrt (2.0 * n) + sqrt (phiNorm * phiNorm / n + p.Ridge) * deltaNorm / sqrt 2.0
                let ratio = if g0 > 0.0 then perturbation / (eta * g0) elif perturbation = 0.0 then 0.0 else infinity
                let held = p.HypothesisHeld && perturbation <= eta * (sqrt p.Epsilon / 2.0) * g0
                writeReadout stored
                let gapUpper = match measured with Some(u, _) -> u * u | None -> p.LastGapUpper
                p.After(gapUpper, initial, achieved, held, max p.MaxPerturbationRatio ratio)
        finally
            for t in owned do t.Dispose()

    /// The switch at t = τ (SPEC §4.2): evaluation mode, Φ̃(ω_τ) certified, up to R perturbations
    /// ω + ε·ξ while not Certified (none after a structural refutation); Certified: V is created
    /// (zero) or the output layer becomes V, and Phase II starts; otherwise the body is restored,
    /// training mode resumes and the run continues as the base algorithm (no guarantee claimed).
    /// Returns the state unchanged unless t = τ and the switch has not run.
    static member SwitchIfDue(setup: RecipeSetup, state: RecipeState) : RecipeState =
        let r = setup.Recipe
        if state.Switched || state.Iteration <> r.SwitchIteration then state
        else
            let t = state.Iteration
            let model = setup.Model
            model.eval ()
            let original = TwoPhase.Snapshot setup
            let certificates = ResizeArray<Certificate>(state.Certificates)
            let streamed = TwoPhase.StreamsFeatures setup
            TwoPhase.RefuseDampedStreamed(setup, streamed)   // before hours of certificate, not after
            if streamed then TwoPhase.RemoveStaleStreamedFiles setup
            // Streamed, frozen, preconditioned: Theorem P's factor of fl(G_τ) + nλI from the certificate's own Gram tiles
            // (its tiles in half the budget; the rows take the other half)
            let switchFactor = ref (null: CholeskyFactor)
            let handedOver = ref false
            let keepTiles = TwoPhase.KeepsSwitchTiles setup
            let onCertifiedGram =
                if keepTiles then
                    fun (withGram: int -> int -> (torch.Tensor -> unit) -> unit) ->
                        let engine = r.CertificateEngine
                        let n = setup.Certification.Rows
                        let half = engine.WithTiles(engine.TileSize, max 1L (engine.MemoryBudgetBytes / 2L))
                        handedOver.Value <- true
                        // the factor's tiles resumable beside the kept Gram tiles (the certified body is in place: its folder)
                        let kept = CertificateEngine.TileFolder(engine, TwoPhase.SubjectOf(setup, TwoPhase.FeatureColumns setup - 1))
                        switchFactor.Value <- CholeskyFactor.FromGram(half, n, TwoPhase.FeatureColumns setup, withGram, float n * r.ReadoutRidge,
                                                                      TwoPhase.ProgressLog setup, kept)
                else ignore
            let certifyNow (attempt: int) =
                let phi = if streamed then null else TwoPhase.CertificationFeatures setup
                // the Gram tiles Theorem P's factor is formed from stay until the run ends: a resume after the switch forms the
                // factor from them again (`StoredSwitchFactor`), not from a second Gram of hours
                let cert = if streamed then TwoPhase.CertifyStreamed(setup, Certify.defaults, onCertifiedGram, keepTiles) else TwoPhase.CertifyFeatures(setup, phi)
                certificates.Add cert
                setup.Observer.OnCertificate { Iteration = t; Attempt = attempt; Certificate = cert }
                phi, cert
            let attempts () =
                let mutable phi, cert = certifyNow 0
                let mutable attempt = 0
                while not cert.IsCertified && not (TwoPhase.StructurallyRefuted(setup, cert)) && attempt < r.MaxTries do
                    attempt <- attempt + 1
                    TwoPhase.Perturb(setup, r.PerturbationScale, attempt)
                    if not (isNull phi) then phi.Dispose()
                    let p, c = certifyNow attempt
                    phi <- p
                    cert <- c
                phi, cert, attempt
            // Stopped or failed inside a certificate (a stop request, `CertificateEngine.Cancel`): the body as before the
            // switch (not a perturbed one) and training mode, so the state is the one at τ before the switch.
            let phi, cert, attempt =
                try attempts ()
                with _ ->
                    TwoPhase.Restore(setup, original)
                    TwoPhase.DisposeAll original
                    model.train ()
                    reraise ()
            let switched = { state with Switched = true; Certificates = certificates.ToArray() }
            let result =
                if cert.IsCertified then
                    let withReference = TwoPhase.KeepReference(setup, switched, cert, phi)
                    let readout, readoutOpt =
                        if isNull setup.OutputLayer then TwoPhase.MakeReadout(setup, cert.Subject.Features)
                        else setup.OutputLayer, setup.OutputOptimizer
                    let s =
                        { withReference with
                            SigmaTau = cert.SigmaMinLower
                            ReadoutSigmaMaxUpper = cert.SigmaMaxUpper
                            Readout = readout
                            ReadoutOptimizer = readoutOpt
                            LastCertifiedBody = TwoPhase.Snapshot setup
                            SwitchBody = TwoPhase.Snapshot setup
                            LastCertifiedIteration = t
                            LastCertifiedFingerprint = TwoPhase.BodyFingerprint setup
                            Preconditioner =
                                if r.ReadoutStep <> ReadoutStepRule.Preconditioned then null
                                elif handedOver.Value && isNull switchFactor.Value then
                                    // the same tiles in the same order would fail again: no second Gram to find that out
                                    invalidOp (sprintf "Theorem P: the float64 Cholesky of fl(G_τ) + nλI failed (λ = %g) although EC is certified; raise ReadoutRidge" r.ReadoutRidge)
                                else
                                    try TwoPhase.BuildPreconditioner(setup, switchFactor.Value)
                                    with _ ->
                                        if not (isNull switchFactor.Value) then switchFactor.Value.Dispose()
                                        reraise () }
                    TwoPhase.ChangePhase(setup, s, Phase.PhaseTwo,
                        sprintf "EC certified after %d perturbation(s): σ_min(Φ̃_τ) ≥ %g, σ_max ≤ %g; readout step %s"
                            attempt cert.SigmaMinLower cert.SigmaMaxUpper (TwoPhase.ReadoutStepDescription(setup, s)))
                else
                    if not (isNull phi) then phi.Dispose()
                    TwoPhase.Restore(setup, original)
                    model.train ()
                    TwoPhase.ChangePhase(setup, switched, Phase.BaseUncertified,
                        sprintf "EC not certified after %d perturbation(s) (%O: %s); continuing as the base algorithm, no guarantee claimed"
                            attempt cert.Verdict cert.Reason)
            TwoPhase.DisposeAll original
            result

    /// The rank guard (SPEC §4.3) after step t: prove σ_min(Φ̃_{t+1}) ≥ κ·σ_min(Φ̃_τ), first by
    /// Weyl's inequality against the last Gram-certified Φ̃_ref (σ_min(Φ̃_t) ≥ s_ref − ‖Φ̃_t − Φ̃_ref‖_F,
    /// O(nm)), else by a new Gram certificate (which becomes Φ̃_ref). Proved: the current body becomes
    /// the last certified one and V's step cap follows the new σ_max bound. Not proved: the body is
    /// restored to the last certified one and frozen. Returns the state and (σ_min lower, σ_max upper, route).
    static member private Guard(setup: RecipeSetup, state: RecipeState, t: int) : RecipeState * float * float * string =
        let threshold = setup.Recipe.GuardKappa * state.SigmaTau
        let streamed = TwoPhase.StreamsFeatures setup
        let phi = if streamed then null else TwoPhase.CertificationFeatures setup
        let weyl =
            if isNull state.ReferenceFeatures || isNull phi then None
            else
                let delta = Perturbation.frobeniusDistanceUpper phi state.ReferenceFeatures
                let lower = Perturbation.sigmaMinLowerAfter state.ReferenceSigmaMin delta
                if lower >= threshold then Some (lower, Perturbation.sigmaMaxUpperAfter state.ReferenceSigmaMax delta) else None
        let accept (s: RecipeState) (upper: float) =
            TwoPhase.DisposeAll s.LastCertifiedBody
            { s with LastCertifiedBody = TwoPhase.Snapshot setup; LastCertifiedIteration = t + 1
                     LastCertifiedFingerprint = TwoPhase.BodyFingerprint setup; ReadoutSigmaMaxUpper = upper }
        match weyl with
        | Some (lower, upper) ->
            phi.Dispose()
            accept state upper, lower, upper, "weyl"
        | None ->
            // the warm shift (SPEC §4.3: the body moved little since its last certificate): the Cholesky of
            // fl(G_t) − s_ref²·I decides the check when it proves (κσ_τ)², with no λ_min estimate (a second Cholesky)
            // and no duplicate scan; otherwise the certificate goes on as at the switch. Cost, never soundness.
            let opts =
                if state.ReferenceSigmaMin > 0.0 then
                    { Certify.defaults with
                        WarmShift = state.ReferenceSigmaMin * state.ReferenceSigmaMin
                        // a little above threshold²: the certificate reports σ = √λ rounded down, which must still reach it
                        WarmShiftFloor = FloatingPoint.mulUp (threshold * (1.0 + 1e-12)) (threshold * (1.0 + 1e-12)) }
                else Certify.defaults
            let cert = if streamed then TwoPhase.CertifyStreamed(setup, opts, ignore) else TwoPhase.CertifyFeatures(setup, phi, opts)
            if cert.IsCertified && cert.SigmaMinLower >= threshold then
                let s = TwoPhase.KeepReference(setup, state, cert, phi)
                // no λ_min estimate was made: the warm shift decided (Certificate.fs, LambdaMinEstimate)
                let route =
                    if cert.Route = CertificateRoute.Gram && Double.IsNaN cert.Terms.LambdaMinEstimate then "certificate, warm shift" else "certificate"
                accept s cert.SigmaMaxUpper, cert.SigmaMinLower, cert.SigmaMaxUpper, route
            else
                if not (isNull phi) then phi.Dispose()
                TwoPhase.Restore(setup, state.LastCertifiedBody)
                if not (isNull state.PreviousBody) then state.PreviousBody.Dispose()
                let s = { state with GuardTripped = true; PreviousBody = null }
                setup.Observer.OnGuardTrip
                    { Iteration = t + 1; SigmaMinLower = cert.SigmaMinLower; Threshold = threshold; Verdict = cert.Verdict
                      RestoredBodyFingerprint = TwoPhase.BodyFingerprint setup; LastCertifiedIteration = s.LastCertifiedIteration }
                s, cert.SigmaMinLower, cert.SigmaMaxUpper, "certificate"

    static member private SetGroupRates(opt: torch.optim.Optimizer, rate: float) =
        for g in opt.ParamGroups do g.LearningRate <- rate

    /// One iteration t → t+1 of the user's loop (switching first when t = τ). `learningRate` is
    /// η_t of A's schedule: the body's optimiser steps with η_t (Phase I) or α_t·η_t (Phase II),
    /// V with min(η_t, its cap). `lossOf` receives f̄ (the forward of the current phase) and returns
    /// the loss on the user's batch; the recipe clears gradients, differentiates it, steps, runs the
    /// guard when due and reports the step. Tensors made inside `lossOf` are disposed after the step.
    static member Step(setup: RecipeSetup, state: RecipeState, learningRate: float,
                       lossOf: Func<Func<torch.Tensor, torch.Tensor>, torch.Tensor>) : RecipeStep =
        if isNull lossOf then nullArg "lossOf"
        let state = TwoPhase.SwitchIfDue(setup, state)
        let t = state.Iteration
        let model = setup.Model
        let inPhaseTwo = state.Phase = Phase.PhaseTwo
        let alpha = TwoPhase.Alpha(setup, state)
        // α_t·(A's step) = A's step with η_t·α_t (optimiser rule; see BodyRule). α_t = 1 outside Phase II.
        match setup.BodyRule with
        | BodyRule.Optimizer opt -> TwoPhase.SetGroupRates(opt, (if inPhaseTwo then learningRate * alpha else learningRate))
        | BodyRule.StepFunction _ -> ()
        if not (isNull setup.OutputOptimizer) then TwoPhase.SetGroupRates(setup.OutputOptimizer, learningRate)
        let preconditioned = not (isNull state.Preconditioner)
        let readoutLr =
            if isNull state.ReadoutOptimizer then nan
            elif preconditioned then state.Preconditioner.Step
            else min learningRate (TwoPhase.ReadoutStepCap(setup, state))
        if not (isNull state.ReadoutOptimizer) then TwoPhase.SetGroupRates(state.ReadoutOptimizer, readoutLr)
        // the mode changes only at the switch (or after Predict restored it): setting it walks the module tree
        if inPhaseTwo then (if model.training then model.eval ()) elif not model.training then model.train ()
        let frozen = alpha = 0.0 && inPhaseTwo
        let mutable preconditioner = state.Preconditioner
        let lossValue, movement, undamped, previous =
            use scope = torch.NewDisposeScope()
            match setup.BodyRule with
            | BodyRule.Optimizer opt -> opt.zero_grad ()
            | BodyRule.StepFunction _ ->
                for p in setup.Body do
                    if not (isNull p.grad) then p.grad.zero_() |> ignore
            if not (isNull setup.OutputOptimizer) then setup.OutputOptimizer.zero_grad ()
            if not (isNull state.ReadoutOptimizer) then state.ReadoutOptimizer.zero_grad ()
            // A frozen body (α_t = 0) takes no step: its forward pass runs without autograd, which
            // gives the same values and the same gradient of V at a third of the cost.
            let forward =
                if frozen then Func<torch.Tensor, torch.Tensor>(fun x -> TwoPhase.ForwardFrozenBody(setup, state, x))
                else Func<torch.Tensor, torch.Tensor>(fun x -> TwoPhase.Forward(setup, state, x))
            let loss = lossOf.Invoke forward
            if isNull loss then invalidOp "lossOf returned null"
            loss.backward ()
            let lossValue = loss.ToDouble()
            if not (Double.IsFinite lossValue) then
                invalidOp (sprintf "training diverged at iteration %d: the loss is %g (lower the learning rate); no step was taken" t lossValue)
            let bodyStep () =
                match setup.BodyRule with
                | BodyRule.Optimizer opt -> opt.step () |> ignore
                | BodyRule.StepFunction f -> f.Invoke()
            let readoutStep () =
                if preconditioned then
                    preconditioner <-
                        if isNull state.Preconditioner.Damped then TwoPhase.PreconditionedUpdate(setup, state)
                        else TwoPhase.DampedPreconditionedUpdate(setup, state)
                else state.ReadoutOptimizer.step () |> ignore
            if frozen then
                readoutStep ()
                lossValue, 0.0, 0.0, state.PreviousBody
            elif not inPhaseTwo then
                // Phase I / base: A's step as is; the body movement is only recorded in Phase II.
                bodyStep ()
                if not (isNull setup.OutputOptimizer) then setup.OutputOptimizer.step () |> ignore
                lossValue, nan, nan, state.PreviousBody
            else
                // ω_t as one vector: kept from the previous damped step (nothing else moves the body
                // in between; the guard's restore and a state load clear it), else copied now
                let before = if isNull state.PreviousBody then TwoPhase.FlatBody setup else state.PreviousBody
                // the preconditioned step reads Φ̃_t at ω_t: before the body moves
                if preconditioned then readoutStep ()
                bodyStep ()
                match setup.BodyRule with
                | BodyRule.StepFunction _ when alpha <> 1.0 ->
                    // ω_{t+1} = ω_t + α_t·(A(ω_t) − ω_t)
                    use stepped = TwoPhase.FlatBody setup
                    TwoPhase.SetBodyBetween(setup, before, stepped, alpha)
                | _ -> ()
                if not preconditioned then readoutStep ()
                // Theorem PD: the body's step shortened until its perturbation fits the prediction's budget
                let scale = if preconditioned then TwoPhase.LimitBodyStep(setup, state, preconditioner, before) else 1.0
                let after = TwoPhase.FlatBody setup
                let moved = (use d = after.sub(before) in d.norm().ToDouble())
                before.Dispose()
                lossValue, moved, (if scale > 0.0 then moved / (alpha * scale) else nan), after.DetachFromDisposeScope()
        let stepped = { state with Iteration = t + 1; PreviousBody = previous; Preconditioner = preconditioner }
        let r = setup.Recipe
        let next, sigmaMin, sigmaMax, guardRoute =
            if inPhaseTwo && not stepped.GuardTripped && r.Mode = PhaseTwoMode.Damped && r.CheckPeriod > 0
               && (t - r.SwitchIteration + 1) % r.CheckPeriod = 0 then TwoPhase.Guard(setup, stepped, t)
            else stepped, nan, nan, null
        let record =
            { Iteration = t; Phase = next.Phase; Loss = lossValue; LossGap = lossValue - setup.LossOptimum; Alpha = alpha
              BodyMovement = movement; UndampedBodyStep = undamped; SigmaMin = sigmaMin; SigmaMax = sigmaMax
              LearningRate = learningRate; ReadoutLearningRate = readoutLr; GuardRoute = guardRoute
              ParameterFingerprint = (if setup.RecordFingerprints then TwoPhase.ParameterFingerprint(setup, next) else null)
              BodyFingerprint = (if setup.RecordFingerprints then TwoPhase.BodyFingerprint setup else null) }
        setup.Observer.OnStep record
        { State = next; Record = record }

    /// ‖ω − ω_τ‖ of the current body against the body right after the switch (NaN without one).
    static member DisplacementSinceSwitch(setup: RecipeSetup, state: RecipeState) : float =
        if isNull state.SwitchBody then nan
        else
            use _ = torch.no_grad ()
            let mutable sq = 0.0
            for i in 0 .. setup.Body.Length - 1 do
                use d = setup.Body.[i].detach().sub(state.SwitchBody.[i])
                use s = d.pow(scalar 2.0).sum()
                sq <- sq + s.ToDouble()
            sqrt sq

    /// Disposes what the state owns (V and its optimiser unless they are the model's output layer, and the kept tensors).
    static member Dispose(setup: RecipeSetup, state: RecipeState) =
        TwoPhase.DisposeAll state.LastCertifiedBody
        TwoPhase.DisposeAll state.SwitchBody
        if not (isNull state.ReferenceFeatures) then state.ReferenceFeatures.Dispose()
        if not (isNull state.PreviousBody) then state.PreviousBody.Dispose()
        if not (isNull state.Preconditioner) then state.Preconditioner.Dispose()
        if isNull setup.OutputLayer then
            if not (isNull state.ReadoutOptimizer) then state.ReadoutOptimizer.Dispose()
            if not (isNull state.Readout) then state.Readout.Dispose()

    // ---- the recipe's own state on disk --------------------------------------------------------

    /// Rebuilds the preconditioner of Theorem P after a load: the factor (and a frozen body's cache) from
    /// the body at the switch, or for Theorem PD after a refactor from the body of the last refactor (deterministic:
    /// the same computation as then), the measurements from `progress` (`PreconditionedReadout.ProgressText`) and
    /// Theorem PD's tensors from `r` (written by `WriteReference` after Φ_ref); the body is put back.
    static member RestorePreconditioner(setup: RecipeSetup, state: RecipeState, progress: string, r: BinaryReader) : RecipeState =
        if String.IsNullOrEmpty progress || isNull state.SwitchBody then state
        else
            let f = progress.Split ';'
            let num (s: string) = Double.Parse(s, Globalization.CultureInfo.InvariantCulture)
            // Theorem PD's fields (6–15) and tensors: the carried fl(R'_{t−1}) and the factor's body, when present
            let track =
                if f.Length <= 6 then null
                else
                    let carried = if Boolean.Parse f.[12] then (match Checkpoint.readTensors r with | null -> null | ts -> ts.[0]) else null
                    let body =
                        if Boolean.Parse f.[13] then
                            Checkpoint.readTensors r |> Array.map (fun t -> let d = t.``to``(setup.Device) in (if not (obj.ReferenceEquals(d, t)) then t.Dispose()); d)
                        else null
                    DampedReadoutTrack(num f.[6], int f.[7], body, int f.[8], num f.[9], carried, num f.[10], num f.[11], num f.[14], num f.[15])
            let rc = setup.Recipe
            let isPD = rc.Mode = PhaseTwoMode.Damped && rc.ReadoutStep = ReadoutStepRule.Preconditioned && rc.ReadoutRidge = 0.0
            let refuse why =
                if not (isNull track) then track.Dispose()
                raise (InvalidDataException(sprintf "the checkpoint's preconditioned readout %s" why))
            if not (isNull track) && not isPD then
                refuse "was written by Theorem PD (damped body, λ = 0); this run's recipe is not (frozen body or λ > 0): resume with the recipe that wrote it"
            if not (isNull track) && track.Threshold <> rc.RefactorThreshold then
                refuse (sprintf "was written with RefactorThreshold δ = %g, this run has δ = %g: resume with the same δ" track.Threshold rc.RefactorThreshold)
            let current = TwoPhase.Snapshot setup
            let wasTraining = setup.Model.training
            try
                try
                    TwoPhase.Restore(setup, (if not (isNull track) && not (isNull track.FactorBody) then track.FactorBody else state.SwitchBody))
                    setup.Model.eval ()
                    if TwoPhase.StreamsFeatures setup then TwoPhase.RemoveStaleStreamedFiles setup
                    let stored = TwoPhase.StoredSwitchFactor setup
                    let built =
                        try TwoPhase.BuildPreconditioner(setup, stored)
                        with _ ->
                            if not (isNull stored) then stored.Dispose()
                            reraise ()
                    let rebuilt = built.WithProgress progress
                    let restored =
                        if not (isNull track) then rebuilt.WithDamped track
                        // a Theorem P record (before Theorem PD) resumed by a PD run: the earlier steps' perturbations are
                        // unknown, so no prediction is kept
                        elif not (isNull rebuilt.Damped) then rebuilt.WithHypothesisFailed()
                        else rebuilt
                    { state with Preconditioner = restored }
                with _ ->
                    if not (isNull track) then track.Dispose()
                    reraise ()
            finally
                TwoPhase.Restore(setup, current)
                TwoPhase.DisposeAll current
                if wasTraining then setup.Model.train ()

    /// Writes V and its optimiser state (when V is separate and exists), the last certified body and the
    /// body at the switch (the trainer's checkpoint layout; Φ_ref follows by `WriteReference`). The model
    /// and the body's optimiser are the caller's to save; Theorem P's factor is rebuilt on load.
    static member WriteState(setup: RecipeSetup, state: RecipeState, w: BinaryWriter) =
        if not (isNull state.Readout) && isNull setup.OutputLayer then
            state.Readout.save(w) |> ignore
            Optimizers.saveState state.ReadoutOptimizer w
        Checkpoint.writeTensors w state.LastCertifiedBody
        Checkpoint.writeTensors w state.SwitchBody

    /// Writes Φ_ref (after the caller's RNG state in the trainer's layout).
    static member WriteReference(state: RecipeState, w: BinaryWriter) =
        Checkpoint.writeTensors w (if isNull state.ReferenceFeatures then null else [| state.ReferenceFeatures |])
        // Theorem PD's tensors (their presence is in the header's progress text, `DampedReadoutTrack.Text`)
        let track = if isNull state.Preconditioner then null else state.Preconditioner.Damped
        if not (isNull track) then
            if not (isNull track.Carried) then Checkpoint.writeTensors w [| track.Carried |]
            if not (isNull track.FactorBody) then Checkpoint.writeTensors w track.FactorBody

    /// Reads what `WriteState` wrote into a state with the given scalars (`readoutFeatures` = m of a
    /// separate V, 0 when none was saved); tensors land on the setup's device.
    static member ReadState(setup: RecipeSetup, scalars: RecipeState, readoutFeatures: int, r: BinaryReader) : RecipeState =
        let toDevice (ts: torch.Tensor[]) =
            if isNull ts then null
            else ts |> Array.map (fun t -> let d = t.``to``(setup.Device) in (if not (obj.ReferenceEquals(d, t)) then t.Dispose()); d)
        let readout, readoutOpt =
            if readoutFeatures > 0 then
                let v, o = TwoPhase.MakeReadout(setup, readoutFeatures)
                v.load(r, true) |> ignore
                Optimizers.loadState o r
                v, o
            elif scalars.Phase = Phase.PhaseTwo && not (isNull setup.OutputLayer) then setup.OutputLayer, setup.OutputOptimizer
            else null, null
        let lastCertified = toDevice (Checkpoint.readTensors r)
        let switchBody = toDevice (Checkpoint.readTensors r)
        { scalars with Readout = readout; ReadoutOptimizer = readoutOpt; LastCertifiedBody = lastCertified
                       SwitchBody = switchBody; ReferenceFeatures = null; PreviousBody = null; Preconditioner = null }

    /// Reads Φ_ref written by `WriteReference`.
    static member ReadReference(setup: RecipeSetup, state: RecipeState, r: BinaryReader) : RecipeState =
        match Checkpoint.readTensors r with
        | null -> state
        | ts -> { state with ReferenceFeatures = (let d = ts.[0].``to``(setup.Device) in (if not (obj.ReferenceEquals(d, ts.[0])) then ts.[0].Dispose()); d) }

    /// The checkpoint header of `state` (`Checkpoint`): the recipe's scalars and the setup's names.
    /// `totalIterations` is the trainer's T (−1 for a recipe state saved alone); `isRecipe` false for a base
    /// run (never switched, no switch iteration, readout choice 0).
    static member internal Header(setup: RecipeSetup, state: RecipeState, totalIterations: int, isRecipe: bool) : CheckpointHeader =
        { FormatVersion = 2; Iteration = state.Iteration; Phase = state.Phase; Switched = isRecipe && state.Switched; SigmaTau = state.SigmaTau
          GuardTripped = state.GuardTripped; LastCertifiedIteration = state.LastCertifiedIteration
          LastCertifiedFingerprint = state.LastCertifiedFingerprint
          ReadoutFeatures = (if isNull state.Readout || not (isNull setup.OutputLayer) then 0 else int state.Readout.weight.shape.[1])
          Seed = setup.Seed; TotalIterations = totalIterations
          SwitchIteration = (if isRecipe then setup.Recipe.SwitchIteration else -1)
          ArchitectureDescription = setup.Architecture; DatasetFingerprint = setup.Certification.DatasetFingerprint
          Certificates = state.Certificates |> Array.map CertificateJson.serialize
          ReadoutSigmaMaxUpper = state.ReadoutSigmaMaxUpper; ReferenceSigmaMin = state.ReferenceSigmaMin; ReferenceSigmaMax = state.ReferenceSigmaMax
          Readout = (if isRecipe then int setup.Recipe.Readout else 0)
          Preconditioner = (if isNull state.Preconditioner then null else state.Preconditioner.ProgressText) }

    /// Saves the recipe's state alone to `path`, atomically and hash-verified (`Checkpoint`): for a
    /// user's own loop, beside their own model and optimiser checkpoint.
    static member Save(setup: RecipeSetup, state: RecipeState, path: string) =
        let header = TwoPhase.Header(setup, state, -1, true)
        Checkpoint.writeAtomically path (fun w ->
            w.Write(Checkpoint.serializeHeader header)
            TwoPhase.WriteState(setup, state, w)
            TwoPhase.WriteReference(state, w))

    /// The scalars of a checkpoint header as a state (tensors and V not yet read).
    static member internal ScalarsOf(h: CheckpointHeader) : RecipeState =
        { Iteration = h.Iteration; Phase = h.Phase; Switched = h.Switched; SigmaTau = h.SigmaTau; GuardTripped = h.GuardTripped
          Certificates = h.Certificates |> Array.map CertificateJson.deserialize
          LastCertifiedIteration = h.LastCertifiedIteration; LastCertifiedFingerprint = h.LastCertifiedFingerprint
          ReadoutSigmaMaxUpper = h.ReadoutSigmaMaxUpper; ReferenceSigmaMin = h.ReferenceSigmaMin; ReferenceSigmaMax = h.ReferenceSigmaMax
          Readout = null; ReadoutOptimizer = null; LastCertifiedBody = null; SwitchBody = null; ReferenceFeatures = null; PreviousBody = null; Preconditioner = null }

    /// Loads a state saved by `Save` for this setup (same switch τ, network words and certification
    /// set; checked, with the file named on a mismatch).
    static member Load(setup: RecipeSetup, path: string) : RecipeState =
        let mutable result = Unchecked.defaultof<RecipeState>
        Checkpoint.read path (fun r ->
            let h = Checkpoint.deserializeHeader (r.ReadString())
            if h.TotalIterations <> -1 then
                raise (InvalidDataException(sprintf "%s is a trainer checkpoint, not a recipe state (load it with the trainer)" path))
            if h.SwitchIteration <> setup.Recipe.SwitchIteration || h.DatasetFingerprint <> setup.Certification.DatasetFingerprint
               || h.ArchitectureDescription <> setup.Architecture || h.Readout <> int setup.Recipe.Readout then
                raise (InvalidDataException(sprintf "%s was saved by a different recipe (τ %d, %s, readout %O)" path h.SwitchIteration h.ArchitectureDescription (enum<ReadoutChoice> h.Readout)))
            let s = TwoPhase.ReadState(setup, TwoPhase.ScalarsOf h, h.ReadoutFeatures, r)
            result <- TwoPhase.RestorePreconditioner(setup, TwoPhase.ReadReference(setup, s, r), h.Preconditioner, r))
        result
