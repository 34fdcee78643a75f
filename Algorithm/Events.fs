/// Events of a run (SPEC §4): the trainer reports through an observer, never by printing.
/// Records and an interface with one-argument methods, so a C# host can implement it.
namespace ResearchFramework.Algorithm

open ResearchFramework.MathCore

/// Where a step belongs: Phase I (t < τ), Phase II (after a certified switch), or the base
/// algorithm continued because EC could not be certified (no guarantee claimed), or a base run.
type Phase =
    | PhaseOne = 1
    | PhaseTwo = 2
    | BaseUncertified = 3
    | Base = 0

/// One iteration t (SPEC §4): L(θ_t) on the step's batch (before the step), L − L*, α_t,
/// body movement ‖ω_{t+1} − ω_t‖ (measured; recorded in Phase II only, NaN before), the undamped step
/// ‖A(ω_t) − ω_t‖ (derived as movement/α_t: the body steps with η_t·α_t; below ~1 ulp of ω the applied
/// step is quantised and the derived value is not the step A would take), σ_min / σ_max of Φ̃_t when checked (NaN otherwise; σ_min is the certified
/// lower bound, σ_max a rigorous upper bound: from a Gram certificate or by Weyl's inequality), η_t, and
/// (when requested) the fingerprints of all parameters and of the body after the step.
type StepRecord =
    { Iteration: int
      Phase: Phase
      Loss: float
      LossGap: float
      Alpha: float
      BodyMovement: float
      UndampedBodyStep: float
      SigmaMin: float
      SigmaMax: float
      LearningRate: float
      /// The readout's step size η_V,t (NaN outside Phase II; ≤ LearningRate, see ReadoutStepRule).
      ReadoutLearningRate: float
      /// How the rank guard decided at this step: "weyl" (σ_min ≥ s_ref − ‖Φ̃_t − Φ̃_ref‖_F),
      /// "certificate, warm shift" (a new Gram certificate whose Cholesky at the shift s_ref² of the last certified
      /// body proved (κσ_τ)², with no λ_min estimate), "certificate" (a new Gram certificate: the estimate's shifts, or
      /// a failed check), null when no check ran.
      GuardRoute: string
      ParameterFingerprint: string
      BodyFingerprint: string }

/// A phase change at iteration t (the switch, or the fallback to the base algorithm), with the
/// fingerprint of the body ω after it (the certified ω_τ when To = PhaseTwo).
type PhaseChange =
    { Iteration: int
      From: Phase
      To: Phase
      Reason: string
      BodyFingerprint: string }

/// One certification attempt at the switch (attempt 0 = unperturbed ω_τ).
type CertificateEvent =
    { Iteration: int
      Attempt: int
      Certificate: Certificate }

/// The rank guard fired: σ_min(Φ̃_t) fell below κ·σ_min(Φ̃_τ) (or could not be certified);
/// the body was restored to the state with fingerprint RestoredBodyFingerprint and frozen.
type GuardTrip =
    { Iteration: int
      SigmaMinLower: float
      Threshold: float
      Verdict: Verdict
      RestoredBodyFingerprint: string
      LastCertifiedIteration: int }

/// A checkpoint was written (atomically) at Path, holding the state before iteration Iteration.
type CheckpointWritten =
    { Iteration: int
      Path: string }

/// Observer of a run; the trainer calls it synchronously on the training thread.
type IRecipeObserver =
    abstract OnStep: StepRecord -> unit
    abstract OnPhaseChange: PhaseChange -> unit
    abstract OnCertificate: CertificateEvent -> unit
    abstract OnGuardTrip: GuardTrip -> unit
    abstract OnCheckpoint: CheckpointWritten -> unit

/// Optional beside `IRecipeObserver`: an observer that also implements it receives the progress lines of the long
/// computations inside the recipe, as they happen: the tiled certificate engine's "tiles: gram k/K, GFLOP/s, ETA" and
/// its phase lines at the switch and at the guard's checks (a certificate at n = 60,000 takes hours).
type IProgressObserver =
    abstract OnProgress: string -> unit

/// An observer that ignores everything.
type NullObserver() =
    interface IRecipeObserver with
        member _.OnStep _ = ()
        member _.OnPhaseChange _ = ()
        member _.OnCertificate _ = ()
        member _.OnGuardTrip _ = ()
        member _.OnCheckpoint _ = ()

/// An observer that keeps every event in memory (tests, small runs).
type RecordingObserver() =
    let steps = ResizeArray<StepRecord>()
    let phases = ResizeArray<PhaseChange>()
    let certificates = ResizeArray<CertificateEvent>()
    let trips = ResizeArray<GuardTrip>()
    let checkpoints = ResizeArray<CheckpointWritten>()
    member _.Steps = steps
    member _.PhaseChanges = phases
    member _.Certificates = certificates
    member _.GuardTrips = trips
    member _.Checkpoints = checkpoints
    interface IRecipeObserver with
        member _.OnStep s = steps.Add s
        member _.OnPhaseChange p = phases.Add p
        member _.OnCertificate c = certificates.Add c
        member _.OnGuardTrip g = trips.Add g
        member _.OnCheckpoint c = checkpoints.Add c
