/// The built-in trainer of SPEC §4: a thin client of the recipe transformation (`TwoPhase`) that
/// builds one of the repository's networks and the base algorithm A, feeds the recipe its batches
/// (`DataOrder`) and A's schedule, and writes checkpoints of the whole run.
namespace ResearchFramework.Algorithm

open System
open System.Threading
open TorchSharp
open ResearchFramework.MathCore

/// Summary of a run (what the host reports and the invariants check).
type RunResult =
    { /// Step records of this process's steps (after a resume: from the resume point on).
      Steps: StepRecord[]
      /// Iterations done in total (T when Completed).
      IterationsDone: int
      /// False when the run stopped early on cancellation.
      Completed: bool
      /// Every certificate computed at the switch, in attempt order.
      Certificates: Certificate[]
      /// True iff EC was Certified at the switch and Phase II ran (SPEC §4.2).
      GuaranteeClaimed: bool
      GuardTripped: bool
      FinalParameterFingerprint: string
      FinalBodyFingerprint: string
      /// L* of the training set (SPEC §1).
      LossOptimum: float
      /// ‖ω_T − ω_τ‖ (after the switch's perturbation), NaN without a Phase II.
      BodyDisplacementSinceSwitch: float
      LastCheckpoint: string }

/// The trainer. `recipe = None` is the base run (A for T iterations); `Some r` the two-phase run.
/// Readout choice (SPEC §4.2): a separate linear readout V: R^m → R^c with bias, zero-initialised,
/// for every architecture (also for MLPs, whose original output layer stays part of the body);
/// f̄(x) = f(x; θ) + V h̃(x; ω). V has its own instance of A (same rule, hyper-parameters and
/// schedule); the body keeps the Phase I optimiser and its state.
type TwoPhaseTrainer(architecture: ArchitectureSpec, training: TrainingConfig, recipe: RecipeConfig option,
                     data: TrainingData, observer: IRecipeObserver) =
    do
        if training.TotalIterations < 0 then invalidArg "training" "TotalIterations must be ≥ 0"
        if training.BatchSize <= 0 then invalidArg "training" "BatchSize must be positive"
        match recipe with
        | Some r ->
            if r.SwitchIteration < 0 || r.SwitchIteration > training.TotalIterations then
                invalidArg "recipe" (sprintf "switch τ = %d must lie in [0, T = %d]" r.SwitchIteration training.TotalIterations)
            TwoPhase.Validate(r, "recipe")   // before the network is built
        | None -> ()
    let observer = if isNull (box observer) then NullObserver() :> IRecipeObserver else observer
    let device = TorchEnvironment.selectDevice training.Device
    let taps = Networks.taps architecture
    let model = Networks.build architecture (int64 training.Seed)
    do model.``to``(device) |> ignore
    /// V = the MLP's own output layer (ReadoutChoice.OutputLayer): then the body is every other parameter,
    /// and the output layer has its own instance of A from the start (per-parameter updates are
    /// independent, so Phase I is still the base run bit for bit).
    let outputLayerReadout =
        match recipe with
        | Some r when r.Readout = ReadoutChoice.OutputLayer ->
            if architecture.Name <> "mlp" then
                invalidArg "recipe" (sprintf "Readout = OutputLayer needs an MLP (the architecture is %s)" architecture.Name)
            let defaultTaps = Networks.taps { architecture with Taps = [||] }
            if taps <> defaultTaps then
                invalidArg "recipe" (sprintf "Readout = OutputLayer needs the default tap %A (the last hidden layer), not %A" defaultTaps taps)
            let output = model.named_modules () |> Seq.pick (fun struct (name, m) -> if name = "output" then Some m else None)
            Some (output :?> Modules.Linear)
        | _ -> None
    let n = data.Count
    let certificationRows =
        match recipe with
        | Some r when r.CertificationSize > 0 && r.CertificationSize < n -> r.CertificationSize
        | _ -> n
    let setup =
        let certification = CertificationInputs.Create(data.Inputs.narrow(0L, 0L, int64 certificationRows), data.Fingerprint, n)
        let batch, _ = DataOrder.shape n training.BatchSize
        let baseSetup =
            { TwoPhase.Setup(defaultArg recipe RecipeConfig.Default, model, taps,
                             BodyRule.Optimizer (Optimizers.create training.Optimizer training.Schedule.BaseLearningRate (model.parameters ())),
                             certification, training.Loss, batch, architecture.Classes)
                with Architecture = Networks.describe architecture
                     ReadoutOptimizer = Func<_, _>(fun ps -> Optimizers.create training.Optimizer training.Schedule.BaseLearningRate ps)
                     ReadoutTakesGradientSteps = Optimizers.takesGradientSteps training.Optimizer
                     ReadoutRuleName = string training.Optimizer.Kind
                     ReadoutWeightDecay = training.Optimizer.WeightDecay
                     LossOptimum = Losses.optimum training.Loss data.Inputs data.Targets
                     Seed = training.Seed
                     RecordFingerprints = training.RecordFingerprints
                     Observer = observer
                     Targets = data.Targets }
        match outputLayerReadout with
        | Some output ->
            // the body's optimiser over every parameter except the output layer's (rebuilt: per-parameter updates are independent)
            let withLayer = TwoPhase.WithOutputLayer(baseSetup, output, Optimizers.create training.Optimizer training.Schedule.BaseLearningRate (output.parameters ()))
            (match baseSetup.BodyRule with BodyRule.Optimizer o -> o.Dispose() | _ -> ())
            { withLayer with BodyRule = BodyRule.Optimizer (Optimizers.create training.Optimizer training.Schedule.BaseLearningRate withLayer.Body) }
        | None -> baseSetup
    let bodyOpt = match setup.BodyRule with BodyRule.Optimizer o -> o | _ -> invalidOp "unreachable"
    let batch, stepsPerEpoch = DataOrder.shape n training.BatchSize
    let fullBatch = batch >= n
    /// The run's state: the recipe's (explicit record) and the epoch permutation cache.
    let mutable state = match recipe with Some _ -> TwoPhase.Init setup | None -> TwoPhase.InitBase setup
    let mutable permutation : int * torch.Tensor = -1, null
    let steps = ResizeArray<StepRecord>()
    let mutable lastCheckpoint : string = null

    /// Batch indices of iteration t (`DataOrder.batch`), caching the current epoch's permutation.
    let batchIndices (t: int) : torch.Tensor =
        if fullBatch then torch.arange(int64 n, dtype = torch.int64)
        else
            let epoch = t / stepsPerEpoch
            if epoch <> fst permutation then
                if not (isNull (snd permutation)) then (snd permutation).Dispose()
                permutation <- epoch, (DataOrder.permutation training.Seed n epoch).DetachFromDisposeScope()
            (snd permutation).narrow(0L, int64 ((t % stepsPerEpoch) * batch), int64 batch).clone()

    /// The network f(·; θ) (the body: every parameter except the readout V).
    member _.Model = model
    /// The recipe's setup (what the trainer hands the transformation).
    member _.Setup = setup
    /// The recipe's current state.
    member _.State = state
    /// The readout V (SPEC §4.2), null before a certified switch.
    member _.Readout : Modules.Linear = state.Readout
    /// The next iteration t to run (0 ≤ t ≤ T).
    member _.Iteration = state.Iteration
    member _.Phase = state.Phase
    /// Tap layer names defining h (SPEC §1).
    member _.Taps : string[] = setup.Taps
    /// Certificates computed at the switch, in attempt order.
    member _.Certificates = state.Certificates
    member _.Steps = steps.ToArray()
    /// L* of the training set (SPEC §1).
    member _.LossOptimum = setup.LossOptimum
    member _.GuardTripped = state.GuardTripped
    /// Fingerprint of the body parameters ω.
    member _.BodyFingerprint = TwoPhase.BodyFingerprint setup
    /// Fingerprint of body and readout parameters (the model's `Fingerprint.ofModule` before the switch).
    member _.ParameterFingerprint = TwoPhase.ParameterFingerprint(setup, state)
    /// Fingerprint of the last certified body (the guard's restore point), null before the switch.
    member _.LastCertifiedFingerprint = state.LastCertifiedFingerprint

    /// The switch at t = τ (SPEC §4.2, `TwoPhase.SwitchIfDue`). Idempotent; does nothing for a base run or t ≠ τ.
    member _.Switch() = state <- TwoPhase.SwitchIfDue(setup, state)

    /// One iteration t → t+1 (switching first when t = τ): the recipe's step on batch t with η_t of the schedule.
    member this.Step() =
        let t = state.Iteration
        let lr = Optimizers.learningRate training.Schedule training.TotalIterations t
        let result =
            TwoPhase.Step(setup, state, lr, fun forward ->
                let idx = batchIndices t
                let xb = data.Inputs.index_select(0L, idx).``to``(device)
                let yb = data.Targets.index_select(0L, idx).``to``(device)
                Losses.value training.Loss (forward.Invoke xb) yb)
        state <- result.State
        steps.Add result.Record
        if training.CheckpointEvery > 0 && not (String.IsNullOrEmpty training.CheckpointDirectory)
           && state.Iteration % training.CheckpointEvery = 0 then
            this.SaveCheckpoint(IO.Path.Combine(training.CheckpointDirectory, Checkpoint.fileName state.Iteration))

    /// Runs the remaining iterations up to T (with τ = T there is no switch: Phase II is empty and the
    /// run is the base run, no guarantee claimed). On cancellation: checkpoint (when a directory is
    /// configured) and return with Completed = false.
    member this.Run(cancellationToken: CancellationToken) : RunResult =
        let mutable cancelled = false
        while not cancelled && state.Iteration < training.TotalIterations do
            if cancellationToken.IsCancellationRequested then
                cancelled <- true
                if not (String.IsNullOrEmpty training.CheckpointDirectory) then
                    this.SaveCheckpoint(IO.Path.Combine(training.CheckpointDirectory, Checkpoint.fileName state.Iteration))
            else this.Step()
        // A complete run needs its kept Gram tiles no more (`TwoPhase.ReleaseKeptTiles`): its final state is checkpointed
        // first (unless the period just did), so a resume of the complete run (killed during its evaluation) needs none.
        let kept = if cancelled then null else TwoPhase.KeptTilesFolder(setup, state)
        if not (isNull kept) then
            let checkpointing = not (String.IsNullOrEmpty training.CheckpointDirectory)
            if checkpointing && not (training.CheckpointEvery > 0 && state.Iteration % training.CheckpointEvery = 0) then
                this.SaveCheckpoint(IO.Path.Combine(training.CheckpointDirectory, Checkpoint.fileName state.Iteration))
            TwoPhase.ReleaseKeptTiles(setup, kept) |> ignore
        this.Result(not cancelled)

    /// Runs up to (not including) iteration `target` (≤ T).
    member this.RunTo(target: int) =
        while state.Iteration < min target training.TotalIterations do this.Step()

    /// f̄(x) in evaluation mode, without gradients (the model's training flag is restored).
    member _.Predict(x: torch.Tensor) : torch.Tensor = TwoPhase.Predict(setup, state, x)

    member _.Result(completed: bool) : RunResult =
        { Steps = steps.ToArray(); IterationsDone = state.Iteration; Completed = completed
          Certificates = state.Certificates; GuaranteeClaimed = (state.Phase = Phase.PhaseTwo)
          GuardTripped = state.GuardTripped; FinalParameterFingerprint = TwoPhase.ParameterFingerprint(setup, state)
          FinalBodyFingerprint = TwoPhase.BodyFingerprint setup; LossOptimum = setup.LossOptimum
          BodyDisplacementSinceSwitch = TwoPhase.DisplacementSinceSwitch(setup, state); LastCheckpoint = lastCheckpoint }

    /// Writes the full state before iteration `Iteration` to `path`, atomically (see `Checkpoint`).
    member _.SaveCheckpoint(path: string) =
        let s = state
        let header = TwoPhase.Header(setup, s, training.TotalIterations, recipe.IsSome)
        Checkpoint.writeAtomically path (fun w ->
            w.Write(Checkpoint.serializeHeader header)
            model.save(w) |> ignore
            Optimizers.saveState bodyOpt w
            if not (isNull setup.OutputOptimizer) then Optimizers.saveState setup.OutputOptimizer w
            TwoPhase.WriteState(setup, s, w)
            use rng = torch.random.get_rng_state ()
            Checkpoint.writeTensor w rng
            TwoPhase.WriteReference(s, w))
        lastCheckpoint <- path
        observer.OnCheckpoint { Iteration = s.Iteration; Path = path }

    /// Restores the state written by `SaveCheckpoint` into this freshly built trainer (same
    /// architecture, config, recipe and data; checked against the header).
    member _.LoadCheckpoint(path: string) =
        Checkpoint.read path (fun r ->
            let h = Checkpoint.deserializeHeader (r.ReadString())
            if h.FormatVersion > 2 then
                raise (IO.InvalidDataException(sprintf "%s has checkpoint format %d; this build reads formats 1 and 2" path h.FormatVersion))
            let expectTau = match recipe with Some rc -> rc.SwitchIteration | None -> -1
            let expectReadout = match recipe with Some rc -> int rc.Readout | None -> 0
            if h.Readout <> expectReadout then
                invalidArg "path" (sprintf "checkpoint %s was written with readout %O, this run uses %O"
                                       path (enum<ReadoutChoice> h.Readout) (enum<ReadoutChoice> expectReadout))
            if h.Seed <> training.Seed || h.TotalIterations <> training.TotalIterations || h.SwitchIteration <> expectTau
               || h.ArchitectureDescription <> Networks.describe architecture || h.DatasetFingerprint <> data.Fingerprint then
                invalidArg "path" (sprintf "checkpoint %s was written by a different run (seed %d, T %d, τ %d, %s)"
                                       path h.Seed h.TotalIterations h.SwitchIteration h.ArchitectureDescription)
            TwoPhase.Dispose(setup, state)
            model.load(r, true) |> ignore
            Optimizers.loadState bodyOpt r
            if not (isNull setup.OutputOptimizer) then Optimizers.loadState setup.OutputOptimizer r
            // a base run's state never switches (its header says Switched = false)
            let scalars = { TwoPhase.ScalarsOf h with Switched = (h.Switched || recipe.IsNone) }
            let loaded = TwoPhase.ReadState(setup, scalars, h.ReadoutFeatures, r)
            use rng = Checkpoint.readTensor r
            torch.random.set_rng_state rng
            state <-
                if h.FormatVersion >= 2 then
                    // the cap follows this run's rule from the saved σ̄ (resuming with another ReadoutStep rule applies it)
                    TwoPhase.RestorePreconditioner(setup, TwoPhase.ReadReference(setup, loaded, r), h.Preconditioner, r)
                else
                    // format 1 (before the step cap and the Weyl route): the cap from the switch's
                    // certificate; every later guard check is a Gram certificate.
                    { loaded with
                        ReadoutSigmaMaxUpper =
                            (if h.Certificates.Length > 0 && h.Switched && h.ReadoutFeatures > 0
                             then (h.Certificates |> Array.last |> CertificateJson.deserialize).SigmaMaxUpper
                             else nan)
                        ReferenceSigmaMin = nan; ReferenceSigmaMax = nan }
            if state.Phase = Phase.PhaseTwo then model.eval () else model.train ())
        lastCheckpoint <- path

    interface IDisposable with
        member _.Dispose() =
            TwoPhase.Dispose(setup, state)
            if not (isNull (snd permutation)) then (snd permutation).Dispose()
            if not (isNull setup.OutputOptimizer) then setup.OutputOptimizer.Dispose()
            bodyOpt.Dispose()
            model.Dispose()
