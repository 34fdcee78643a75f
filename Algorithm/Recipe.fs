/// The two-phase recipe of SPEC §4 as a stateful trainer: Phase I = the base algorithm A;
/// the switch (BN → eval, zero readout, certificate, perturbation retries); Phase II (readout
/// by A, body by A damped by α_t, rank guard); checkpoints; events.
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

/// Captures the flattened outputs of the tap layers during a forward pass, with gradients
/// (Phase II needs ∂h/∂ω for the body's damped step), concatenated in tap order: h̃ without the 1.
type internal TapCapture(model: torch.nn.Module<torch.Tensor, torch.Tensor>, taps: string list) =
    let resolved = FeatureMap.resolveTaps model taps
    /// Runs `f` with forward hooks on the taps; returns f's result and h (batch × m).
    member _.Run(f: unit -> torch.Tensor) : torch.Tensor * torch.Tensor =
        let z, captured = FeatureMap.captureTaps resolved (fun output -> output.flatten(1L)) f
        z, (if captured.Length = 1 then captured.[0] else torch.cat(captured, 1L))

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
            if not (r.GuardKappa > 0.0 && r.GuardKappa < 1.0) then invalidArg "recipe" "guard κ must lie in (0, 1)"
            if r.MaxTries < 0 then invalidArg "recipe" "MaxTries must be ≥ 0"
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
    let outputParams =
        match outputLayerReadout with
        | Some o -> o.parameters () |> Seq.toArray
        | None -> [||]
    let bodyParams =
        model.parameters () |> Seq.filter (fun p -> not (outputParams |> Array.exists (fun q -> obj.ReferenceEquals(p, q)))) |> Seq.toArray
    let bodyOpt = Optimizers.create training.Optimizer training.Schedule.BaseLearningRate bodyParams
    let outputOpt =
        if outputParams.Length = 0 then null
        else Optimizers.create training.Optimizer training.Schedule.BaseLearningRate outputParams
    let n = data.Count
    let lossOptimum = Losses.optimum training.Loss data.Inputs data.Targets
    let batch, stepsPerEpoch = DataOrder.shape n training.BatchSize
    let fullBatch = batch >= n
    let mutable permutationEpoch = -1
    let mutable permutation : torch.Tensor = null
    let capture = TapCapture(model, taps)
    let steps = ResizeArray<StepRecord>()
    let certificates = ResizeArray<Certificate>()
    let mutable iteration = 0
    let mutable phase = if recipe.IsSome then Phase.PhaseOne else Phase.Base
    let mutable switched = false
    let mutable sigmaTau = nan
    let mutable guardTripped = false
    let mutable readout : Modules.Linear = null
    let mutable readoutOpt : torch.optim.Optimizer = null
    let mutable lastCertifiedBody : torch.Tensor[] = null
    let mutable lastCertifiedIteration = -1
    let mutable lastCertifiedFingerprint : string = null
    let mutable switchBody : torch.Tensor[] = null
    let mutable lastCheckpoint : string = null
    /// σ̄ behind V's step cap (the last certificate's or passing guard check's upper bound on σ_max(Φ̃)).
    let mutable readoutSigmaMaxUpper = nan
    /// ω after the last damped Phase II step (flat), null when unknown.
    let mutable previousBody : torch.Tensor = null
    let forgetPreviousBody () =
        if not (isNull previousBody) then previousBody.Dispose()
        previousBody <- null
    let mutable referenceFeatures : torch.Tensor = null
    let mutable referenceSigmaMin = nan
    let mutable referenceSigmaMax = nan
    /// Largest Φ_ref kept for the guard's Weyl route (bigger ones: every check is a Gram certificate).
    let referenceFeatureBytes = 256L * 1024L * 1024L

    let snapshot () = bodyParams |> Array.map (fun p -> p.detach().clone())
    let restore (saved: torch.Tensor[]) =
        use _ = torch.no_grad ()
        Array.iter2 (fun (p: Modules.Parameter) (s: torch.Tensor) -> p.copy_(s) |> ignore) bodyParams saved
    /// ω as one detached vector (a copy; for measuring ‖ω_{t+1} − ω_t‖ with one reduction).
    let flatBody () =
        use _ = torch.no_grad ()
        torch.cat(bodyParams |> Array.map (fun p -> p.view(-1L)), 0L)
    let disposeAll (ts: torch.Tensor[]) = if not (isNull ts) then for t in ts do t.Dispose()
    let bodyFingerprint () = Fingerprint.ofTensors (bodyParams |> Seq.cast<torch.Tensor>)
    let allFingerprint () =
        if isNull readout then Fingerprint.ofModule model
        else Fingerprint.ofTensors (Seq.append (bodyParams |> Seq.cast<torch.Tensor>) (readout.parameters () |> Seq.cast<torch.Tensor>))

    /// Batch indices of iteration t (`DataOrder.batch`), caching the current epoch's permutation.
    let batchIndices (t: int) : torch.Tensor =
        if fullBatch then torch.arange(int64 n, dtype = torch.int64)
        else
            let epoch = t / stepsPerEpoch
            if epoch <> permutationEpoch then
                if not (isNull permutation) then permutation.Dispose()
                permutation <- (DataOrder.permutation training.Seed n epoch).DetachFromDisposeScope()
                permutationEpoch <- epoch
            permutation.narrow(0L, int64 ((t % stepsPerEpoch) * batch), int64 batch).clone()

    let certificationRows () =
        match recipe with
        | Some r when r.CertificationSize > 0 && r.CertificationSize < n -> r.CertificationSize
        | _ -> n

    /// The first pair of identical inputs in the certification set, if any (then EC is refuted for every ω).
    let duplicateInputs =
        lazy (
            use xc = data.Inputs.narrow(0L, 0L, int64 (certificationRows ()))
            Losses.identicalInputGroups xc |> Array.tryFind (fun g -> g.Length > 1) |> Option.map (fun g -> g.[0], g.[1]))

    /// Refutations no perturbation of ω can repair: identical inputs, or m + 1 < n.
    let structurallyRefuted (c: Certificate) =
        c.Verdict = Verdict.Refuted && (duplicateInputs.Value.IsSome || c.Subject.Columns < c.Subject.Rows)

    /// Φ of the certification set at the current ω (model precision, evaluation mode; caller owns it).
    let certificationFeatures () : torch.Tensor =
        use xc = data.Inputs.narrow(0L, 0L, int64 (certificationRows ())).``to``(device)
        (FeatureMap.featureMatrix model taps 256 xc).DetachFromDisposeScope()

    /// Certifies EC for Φ̃(ω) = [Φ, 1] on the certification set (SPEC §3, §6) with Math.Core's Rump test.
    let certifyFeatures (phi: torch.Tensor) : Certificate =
        let rows = certificationRows ()
        let subject =
            { DatasetFingerprint = data.Fingerprint
              CertificationSet = (if rows = n then sprintf "all %d training points" n else sprintf "first %d of %d training points" rows n)
              Architecture = Networks.describe architecture
              Taps = List.toArray taps
              ParameterFingerprint = Fingerprint.ofModule model
              Rows = rows
              Features = int phi.shape.[1]
              WithBias = true }
        match duplicateInputs.Value with
        | Some (i, j) ->
            // SPEC §2: h is a function of x, so identical inputs give identical rows of Φ̃ for every ω.
            { Subject = subject; Verdict = Verdict.Refuted
              Reason = sprintf "inputs %d and %d of the certification set are identical, so rows %d and %d of Φ̃ are equal for every ω" i j i j
              Method = "exact (bitwise) comparison of the certification inputs (SPEC §2: EC needs distinct inputs)"
              Precision = "inputs compared bitwise"; Device = string device; SigmaMinLower = 0.0
              SigmaMaxEstimate = nan; SigmaMaxUpper = nan; Terms = CertificateTerms.Empty
              ElapsedSeconds = 0.0; CreatedUtc = DateTime.UtcNow; FormatVersion = 1 }
        | None -> Certify.certifyMatrix Certify.defaults subject phi

    /// Keeps Φ_ref (when it fits in `referenceFeatureBytes`) with its certified bounds for the
    /// guard's Weyl route; takes ownership of `phi`.
    let keepReference (cert: Certificate) (phi: torch.Tensor) =
        if not (isNull referenceFeatures) then referenceFeatures.Dispose()
        referenceFeatures <- null
        let guardRuns = match recipe with Some r -> r.Mode = PhaseTwoMode.Damped && r.CheckPeriod > 0 | None -> false
        if guardRuns && phi.NumberOfElements * int64 phi.ElementSize <= referenceFeatureBytes then referenceFeatures <- phi
        else phi.Dispose()
        referenceSigmaMin <- cert.SigmaMinLower
        referenceSigmaMax <- cert.SigmaMaxUpper

    /// Squared loss: η ≤ b/σ_max² (SPEC §4 Theorem); cross-entropy is (σ_max²/2b)-smooth in V
    /// (diag(p) − ppᵀ ⪯ ½I), so η ≤ 2b/σ_max² (docs/theory.md, Theorem B).
    let capFactor = if training.Loss = LossKind.CrossEntropy then 2.0 else 1.0

    /// The readout's step cap b/σ̄² (squared loss, SPEC §4 Theorem; 2b/σ̄² for cross-entropy; b = n for
    /// full batches) from a rigorous upper bound σ̄ on σ_max(Φ̃); ∞ when the rule is `Schedule`, the base rule is Adam/AdamW, or σ̄ is unknown.
    let stepCapFrom (sigmaMaxUpper: float) =
        match recipe with
        | Some r when r.ReadoutStep = ReadoutStepRule.Theorem && Optimizers.takesGradientSteps training.Optimizer
                      && Double.IsFinite sigmaMaxUpper && sigmaMaxUpper > 0.0 ->
            FloatingPoint.down (capFactor * float batch / FloatingPoint.mulUp sigmaMaxUpper sigmaMaxUpper)
        | _ -> infinity

    /// V's current step cap, from the σ̄ of the last certificate or passing guard check.
    let readoutStepCap () = stepCapFrom readoutSigmaMaxUpper

    /// What the switch reports about the readout's step (SPEC §4 Theorem hypothesis η ≤ b/σ_max(Φ̃)²).
    let readoutStepDescription (r: RecipeConfig) =
        let decay = if training.Optimizer.WeightDecay > 0.0 then sprintf "; weight decay %g on V (the theorem assumes none)" training.Optimizer.WeightDecay else ""
        if r.ReadoutStep = ReadoutStepRule.Schedule then
            "as scheduled (ReadoutStep = Schedule: the theorem's η ≤ b/σ_max(Φ̃)² is not enforced)" + decay
        elif not (Optimizers.takesGradientSteps training.Optimizer) then
            sprintf "as scheduled: %O steps are not gradient steps, the theorem's step hypothesis does not apply%s" training.Optimizer.Kind decay
        elif certificationRows () < n then
            sprintf "capped at b/σ̄² = %g with σ̄ from the certification subset (σ_max of all %d training points is not bounded: a heuristic cap)%s" (readoutStepCap ()) n decay
        else
            let rule =
                if training.Optimizer.Kind = OptimizerKind.Sgd then ""
                else sprintf "; %O steps are capped too, but the contraction is proved for plain SGD steps only" training.Optimizer.Kind
            let drift =
                if r.Mode = PhaseTwoMode.Damped then "; with a damped body the cap is exact at the switch and at each guard check, and between checks follows σ̄ of the last one (docs/theory.md §4)"
                else ""
            sprintf "capped at %sb/σ̄² = %g (SPEC §4 Theorem; b = %d)%s%s%s" (if capFactor = 2.0 then "2" else "") (readoutStepCap ()) batch rule drift decay

    /// Parameters below the taps (ω): those that receive a gradient from Σ h(x) on a few inputs.
    let parametersBelowTaps () : Modules.Parameter[] =
        for p in bodyParams do p.grad <- null
        let wasTraining = model.training
        model.eval ()
        do
            use scope = torch.NewDisposeScope()
            use x = data.Inputs.narrow(0L, 0L, int64 (min n 4)).``to``(device)
            let _, h = capture.Run(fun () -> model.call x)
            h.sum().backward()
        let below = bodyParams |> Array.filter (fun p -> not (isNull p.grad))
        for p in bodyParams do p.grad <- null
        if wasTraining then model.train ()
        below

    /// ω ← ω + ε·ξ, ξ Gaussian from a generator seeded by (seed, attempt), scaled per tensor by its
    /// RMS (by 1 for an all-zero tensor) (SPEC §4.2).
    let perturb (eps: float) (attempt: int) =
        let below = parametersBelowTaps ()
        let seed = uint64 (int64 training.Seed) * 0x9E3779B97F4A7C15UL + 0x51ED270B27AD4F1DUL * uint64 attempt
        use g = new torch.Generator(seed, torch.CPU)
        use _ = torch.no_grad ()
        for p in below do
            use scope = torch.NewDisposeScope()
            let rms = p.detach().pow(scalar 2.0).mean().sqrt().ToDouble()
            let scale = if rms > 0.0 then rms else 1.0
            let xi = torch.randn(p.shape, dtype = p.dtype, generator = g).``to``(p.device)
            p.add_(xi.mul(scalar (eps * scale))) |> ignore

    let makeReadout (m: int) =
        let dtype = Networks.dtypeOf architecture.Precision
        let v = torch.nn.Linear(int64 m, int64 architecture.Classes, true, device = device, dtype = dtype)
        do
            use _ = torch.no_grad ()
            v.weight.zero_() |> ignore
            v.bias.zero_() |> ignore
        readout <- v
        readoutOpt <- Optimizers.create training.Optimizer training.Schedule.BaseLearningRate (v.parameters ())

    /// f̄(x) = f(x; θ) + V h̃(x; ω) in Phase II, f(x; θ) otherwise (no mode change here).
    let forward (x: torch.Tensor) : torch.Tensor =
        if isNull readout then model.call x
        else
            let z, h = capture.Run(fun () -> model.call x)
            z.add(readout.call h)

    /// f̄(x) with the body evaluated without autograd (Phase II with α_t = 0): only V gets gradients.
    let forwardFrozenBody (x: torch.Tensor) : torch.Tensor =
        let z, h =
            use _ = torch.no_grad ()
            capture.Run(fun () -> model.call x)
        match outputLayerReadout with
        | Some output -> output.call h   // the MLP's output layer applied to h again, now with V's gradient
        | None -> z.add(readout.call h)

    let changePhase t target reason =
        let from = phase
        phase <- target
        observer.OnPhaseChange { Iteration = t; From = from; To = target; Reason = reason; BodyFingerprint = bodyFingerprint () }

    /// α_t of SPEC §4.3: 1 outside Phase II; 0 when frozen (mode or guard); (t − τ + 1)^(−p) otherwise.
    let alphaAt (t: int) =
        match recipe with
        | Some r when phase = Phase.PhaseTwo ->
            if guardTripped || r.Mode = PhaseTwoMode.Frozen then 0.0
            else Math.Pow(float (t - r.SwitchIteration + 1), -r.DampingPower)
        | _ -> 1.0

    /// The network f(·; θ) (the body: every parameter except the readout V).
    member _.Model = model
    /// The readout V (SPEC §4.2), null before a certified switch.
    member _.Readout : Modules.Linear =
        match outputLayerReadout with
        | Some output when phase = Phase.PhaseTwo -> output
        | _ -> readout
    /// The next iteration t to run (0 ≤ t ≤ T).
    member _.Iteration = iteration
    member _.Phase = phase
    /// Tap layer names defining h (SPEC §1).
    member _.Taps = taps
    /// Certificates computed at the switch, in attempt order.
    member _.Certificates = certificates.ToArray()
    member _.Steps = steps.ToArray()
    /// L* of the training set (SPEC §1).
    member _.LossOptimum = lossOptimum
    member _.GuardTripped = guardTripped
    /// Fingerprint of the body parameters ω (all model parameters).
    member _.BodyFingerprint = bodyFingerprint ()
    /// Fingerprint of body and readout parameters (the model's `Fingerprint.ofModule` before the switch).
    member _.ParameterFingerprint = allFingerprint ()
    /// Fingerprint of the last certified body (the guard's restore point), null before the switch.
    member _.LastCertifiedFingerprint = lastCertifiedFingerprint

    /// The switch at t = τ (SPEC §4.2). Idempotent; does nothing for a base run or t ≠ τ.
    member this.Switch() =
        match recipe with
        | Some r when not switched && iteration = r.SwitchIteration ->
            switched <- true
            let t = iteration
            model.eval ()
            let original = snapshot ()
            let mutable phi = certificationFeatures ()
            let mutable cert = certifyFeatures phi
            certificates.Add cert
            observer.OnCertificate { Iteration = t; Attempt = 0; Certificate = cert }
            let mutable attempt = 0
            while not cert.IsCertified && not (structurallyRefuted cert) && attempt < r.MaxTries do
                attempt <- attempt + 1
                perturb r.PerturbationScale attempt
                phi.Dispose()
                phi <- certificationFeatures ()
                cert <- certifyFeatures phi
                certificates.Add cert
                observer.OnCertificate { Iteration = t; Attempt = attempt; Certificate = cert }
            if cert.IsCertified then
                sigmaTau <- cert.SigmaMinLower
                keepReference cert phi
                readoutSigmaMaxUpper <- cert.SigmaMaxUpper
                if isNull outputOpt then makeReadout cert.Subject.Features else readoutOpt <- outputOpt
                lastCertifiedBody <- snapshot ()
                switchBody <- snapshot ()
                lastCertifiedIteration <- t
                lastCertifiedFingerprint <- bodyFingerprint ()
                changePhase t Phase.PhaseTwo
                    (sprintf "EC certified after %d perturbation(s): σ_min(Φ̃_τ) ≥ %g, σ_max ≤ %g; readout step %s"
                        attempt cert.SigmaMinLower cert.SigmaMaxUpper (readoutStepDescription r))
            else
                phi.Dispose()
                restore original
                model.train ()
                changePhase t Phase.BaseUncertified
                    (sprintf "EC not certified after %d perturbation(s) (%O: %s); continuing as the base algorithm, no guarantee claimed"
                        attempt cert.Verdict cert.Reason)
            disposeAll original
        | _ -> ()

    /// The rank guard (SPEC §4.3): prove σ_min(Φ̃_t) ≥ κ·σ_min(Φ̃_τ), first by Weyl's inequality
    /// against the last Gram-certified Φ̃_ref (σ_min(Φ̃_t) ≥ s_ref − ‖Φ̃_t − Φ̃_ref‖_F, O(nm)), else by
    /// a new Gram certificate (which becomes Φ̃_ref). Proved: the current body becomes the last
    /// certified one and the readout's step cap follows the new σ_max bound. Not proved: the body
    /// is restored to the last certified one and frozen. Returns (σ_min lower, σ_max upper, route).
    member private _.Guard(t: int, r: RecipeConfig) : float * float * string =
        let threshold = r.GuardKappa * sigmaTau
        let phi = certificationFeatures ()
        let weyl =
            if isNull referenceFeatures then None
            else
                let delta = Perturbation.frobeniusDistanceUpper phi referenceFeatures
                let lower = Perturbation.sigmaMinLowerAfter referenceSigmaMin delta
                if lower >= threshold then Some (lower, Perturbation.sigmaMaxUpperAfter referenceSigmaMax delta) else None
        let accept (lower: float) (upper: float) =
            disposeAll lastCertifiedBody
            lastCertifiedBody <- snapshot ()
            lastCertifiedIteration <- t + 1
            lastCertifiedFingerprint <- bodyFingerprint ()
            readoutSigmaMaxUpper <- upper
        match weyl with
        | Some (lower, upper) ->
            phi.Dispose()
            accept lower upper
            lower, upper, "weyl"
        | None ->
            let cert = certifyFeatures phi
            if cert.IsCertified && cert.SigmaMinLower >= threshold then
                keepReference cert phi
                accept cert.SigmaMinLower cert.SigmaMaxUpper
            else
                phi.Dispose()
                restore lastCertifiedBody
                forgetPreviousBody ()
                guardTripped <- true
                observer.OnGuardTrip
                    { Iteration = t + 1; SigmaMinLower = cert.SigmaMinLower; Threshold = threshold; Verdict = cert.Verdict
                      RestoredBodyFingerprint = bodyFingerprint (); LastCertifiedIteration = lastCertifiedIteration }
            cert.SigmaMinLower, cert.SigmaMaxUpper, "certificate"

    /// One iteration t → t+1 (switching first when t = τ).
    member this.Step() =
        this.Switch()
        let t = iteration
        let lr = Optimizers.learningRate training.Schedule training.TotalIterations t
        let inPhaseTwo = phase = Phase.PhaseTwo
        let alpha = alphaAt t
        // α_t·(A's step) = A's step with η_t·α_t: SGD, momentum, Nesterov, Adam and AdamW steps are
        // linear in η given their state (buffers and moments do not depend on η). α_t = 1 outside Phase II.
        Optimizers.setLearningRate bodyOpt (if inPhaseTwo then lr * alpha else lr)
        if not (isNull outputOpt) then Optimizers.setLearningRate outputOpt lr
        let readoutLr = if isNull readoutOpt then nan else min lr (readoutStepCap ())
        if not (isNull readoutOpt) then Optimizers.setLearningRate readoutOpt readoutLr
        // the mode only changes at the switch (or after Predict/parametersBelowTaps restored it):
        // setting it walks the module tree, so only when it differs
        if inPhaseTwo then (if model.training then model.eval ()) elif not model.training then model.train ()
        let lossValue, movement, undamped =
            use scope = torch.NewDisposeScope()
            let idx = batchIndices t
            let xb = data.Inputs.index_select(0L, idx).``to``(device)
            let yb = data.Targets.index_select(0L, idx).``to``(device)
            bodyOpt.zero_grad ()
            if not (isNull outputOpt) then outputOpt.zero_grad ()
            if not (isNull readoutOpt) then readoutOpt.zero_grad ()
            // A frozen body (α_t = 0) takes no step: its forward pass runs without autograd, which
            // gives the same values and the same gradient of V at a third of the cost.
            let z = if alpha = 0.0 && inPhaseTwo then forwardFrozenBody xb else forward xb
            let loss = Losses.value training.Loss z yb
            loss.backward ()
            let lossValue = loss.ToDouble()
            if not (Double.IsFinite lossValue) then
                invalidOp (sprintf "training diverged at iteration %d: the loss is %g (lower the learning rate); no step was taken" t lossValue)
            if alpha = 0.0 then
                readoutOpt.step () |> ignore
                lossValue, 0.0, 0.0
            elif not inPhaseTwo then
                // Phase I / base: A's step as is; the body movement is only recorded in Phase II.
                bodyOpt.step () |> ignore
                if not (isNull outputOpt) then outputOpt.step () |> ignore
                lossValue, nan, nan
            else
                // ω_t as one vector: kept from the previous damped step (nothing else moves the body
                // in between; the guard's restore and a checkpoint load clear it), else copied now
                let before = if isNull previousBody then flatBody () else previousBody
                bodyOpt.step () |> ignore
                readoutOpt.step () |> ignore
                let after = flatBody ()
                let moved = (use d = after.sub(before) in d.norm().ToDouble())
                before.Dispose()
                previousBody <- after.DetachFromDisposeScope()
                lossValue, moved, moved / alpha
        iteration <- t + 1
        let sigmaMin, sigmaMax, guardRoute =
            match recipe with
            | Some r when inPhaseTwo && not guardTripped && r.Mode = PhaseTwoMode.Damped && r.CheckPeriod > 0
                          && (t - r.SwitchIteration + 1) % r.CheckPeriod = 0 -> this.Guard(t, r)
            | _ -> nan, nan, null
        let record =
            { Iteration = t; Phase = phase; Loss = lossValue; LossGap = lossValue - lossOptimum; Alpha = alpha
              BodyMovement = movement; UndampedBodyStep = undamped; SigmaMin = sigmaMin; SigmaMax = sigmaMax
              LearningRate = lr; ReadoutLearningRate = readoutLr; GuardRoute = guardRoute
              ParameterFingerprint = (if training.RecordFingerprints then allFingerprint () else null)
              BodyFingerprint = (if training.RecordFingerprints then bodyFingerprint () else null) }
        steps.Add record
        observer.OnStep record
        if training.CheckpointEvery > 0 && not (String.IsNullOrEmpty training.CheckpointDirectory)
           && iteration % training.CheckpointEvery = 0 then
            this.SaveCheckpoint(IO.Path.Combine(training.CheckpointDirectory, Checkpoint.fileName iteration))

    /// Runs the remaining iterations up to T (with τ = T there is no switch: Phase II is empty and the
    /// run is the base run, no guarantee claimed). On cancellation: checkpoint (when a directory is
    /// configured) and return with Completed = false.
    member this.Run(cancellationToken: CancellationToken) : RunResult =
        let mutable cancelled = false
        while not cancelled && iteration < training.TotalIterations do
            if cancellationToken.IsCancellationRequested then
                cancelled <- true
                if not (String.IsNullOrEmpty training.CheckpointDirectory) then
                    this.SaveCheckpoint(IO.Path.Combine(training.CheckpointDirectory, Checkpoint.fileName iteration))
            else this.Step()
        this.Result(not cancelled)

    /// Runs up to (not including) iteration `target` (≤ T).
    member this.RunTo(target: int) =
        while iteration < min target training.TotalIterations do this.Step()

    /// f̄(x) in evaluation mode, without gradients (the model's training flag is restored).
    member _.Predict(x: torch.Tensor) : torch.Tensor =
        let wasTraining = model.training
        model.eval ()
        try
            use _ = torch.no_grad ()
            use xd = x.``to``(device)
            forward xd
        finally
            if wasTraining then model.train ()

    member _.Result(completed: bool) : RunResult =
        let displacement =
            if isNull switchBody then nan
            else
                use _ = torch.no_grad ()
                let mutable sq = 0.0
                for i in 0 .. bodyParams.Length - 1 do
                    use d = bodyParams.[i].detach().sub(switchBody.[i])
                    use s = d.pow(scalar 2.0).sum()
                    sq <- sq + s.ToDouble()
                sqrt sq
        { Steps = steps.ToArray(); IterationsDone = iteration; Completed = completed
          Certificates = certificates.ToArray(); GuaranteeClaimed = (phase = Phase.PhaseTwo)
          GuardTripped = guardTripped; FinalParameterFingerprint = allFingerprint ()
          FinalBodyFingerprint = bodyFingerprint (); LossOptimum = lossOptimum
          BodyDisplacementSinceSwitch = displacement; LastCheckpoint = lastCheckpoint }

    /// Writes the full state before iteration `Iteration` to `path`, atomically (see `Checkpoint`).
    member _.SaveCheckpoint(path: string) =
        let header =
            { FormatVersion = 2; Iteration = iteration; Phase = phase; Switched = switched; SigmaTau = sigmaTau
              GuardTripped = guardTripped; LastCertifiedIteration = lastCertifiedIteration
              LastCertifiedFingerprint = lastCertifiedFingerprint
              ReadoutFeatures = (if isNull readout then 0 else int readout.weight.shape.[1])
              Seed = training.Seed; TotalIterations = training.TotalIterations
              SwitchIteration = (match recipe with Some r -> r.SwitchIteration | None -> -1)
              ArchitectureDescription = Networks.describe architecture; DatasetFingerprint = data.Fingerprint
              Certificates = certificates |> Seq.map CertificateJson.serialize |> Seq.toArray
              ReadoutSigmaMaxUpper = readoutSigmaMaxUpper; ReferenceSigmaMin = referenceSigmaMin; ReferenceSigmaMax = referenceSigmaMax
              Readout = (match recipe with Some rc -> int rc.Readout | None -> 0) }
        Checkpoint.writeAtomically path (fun w ->
            w.Write(Checkpoint.serializeHeader header)
            model.save(w) |> ignore
            Optimizers.saveState bodyOpt w
            if not (isNull outputOpt) then Optimizers.saveState outputOpt w
            if not (isNull readout) then
                readout.save(w) |> ignore
                Optimizers.saveState readoutOpt w
            Checkpoint.writeTensors w lastCertifiedBody
            Checkpoint.writeTensors w switchBody
            use rng = torch.random.get_rng_state ()
            Checkpoint.writeTensor w rng
            Checkpoint.writeTensors w (if isNull referenceFeatures then null else [| referenceFeatures |]))
        lastCheckpoint <- path
        observer.OnCheckpoint { Iteration = iteration; Path = path }

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
            forgetPreviousBody ()
            model.load(r, true) |> ignore
            Optimizers.loadState bodyOpt r
            if not (isNull outputOpt) then Optimizers.loadState outputOpt r
            if h.ReadoutFeatures > 0 then
                makeReadout h.ReadoutFeatures
                readout.load(r, true) |> ignore
                Optimizers.loadState readoutOpt r
            let toDevice (ts: torch.Tensor[]) =
                if isNull ts then null else ts |> Array.map (fun t -> let d = t.``to``(device) in (if not (obj.ReferenceEquals(d, t)) then t.Dispose()); d)
            lastCertifiedBody <- toDevice (Checkpoint.readTensors r)
            switchBody <- toDevice (Checkpoint.readTensors r)
            use rng = Checkpoint.readTensor r
            torch.random.set_rng_state rng
            if not (isNull referenceFeatures) then referenceFeatures.Dispose()
            referenceFeatures <- null
            if h.FormatVersion >= 2 then
                // the cap follows this run's rule from the saved σ̄ (resuming with another ReadoutStep rule applies it)
                readoutSigmaMaxUpper <- h.ReadoutSigmaMaxUpper
                referenceSigmaMin <- h.ReferenceSigmaMin
                referenceSigmaMax <- h.ReferenceSigmaMax
                match toDevice (Checkpoint.readTensors r) with
                | null -> ()
                | ts -> referenceFeatures <- ts.[0]
            else
                // format 1 (before the step cap and the Weyl route): the cap from the switch's
                // certificate; every later guard check is a Gram certificate.
                readoutSigmaMaxUpper <- (if h.Certificates.Length > 0 && h.Switched && h.ReadoutFeatures > 0
                                         then (h.Certificates |> Array.last |> CertificateJson.deserialize).SigmaMaxUpper
                                         else nan)
                referenceSigmaMin <- nan
                referenceSigmaMax <- nan
            iteration <- h.Iteration
            phase <- h.Phase
            switched <- h.Switched
            sigmaTau <- h.SigmaTau
            guardTripped <- h.GuardTripped
            lastCertifiedIteration <- h.LastCertifiedIteration
            lastCertifiedFingerprint <- h.LastCertifiedFingerprint
            certificates.Clear()
            for c in h.Certificates do certificates.Add(CertificateJson.deserialize c)
            if phase = Phase.PhaseTwo && not (isNull outputOpt) then readoutOpt <- outputOpt
            if phase = Phase.PhaseTwo then model.eval () else model.train ())
        lastCheckpoint <- path

    interface IDisposable with
        member _.Dispose() =
            disposeAll lastCertifiedBody
            disposeAll switchBody
            if not (isNull referenceFeatures) then referenceFeatures.Dispose()
            forgetPreviousBody ()
            if not (isNull permutation) then permutation.Dispose()
            if not (isNull readoutOpt) && not (obj.ReferenceEquals(readoutOpt, outputOpt)) then readoutOpt.Dispose()
            if not (isNull outputOpt) then outputOpt.Dispose()
            if not (isNull readout) then readout.Dispose()
            bodyOpt.Dispose()
            model.Dispose()
