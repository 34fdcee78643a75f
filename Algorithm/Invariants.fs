/// The recipe's invariants (SPEC §4) as executable checks on recorded runs: each returns
/// Ok () or Error with a message naming the first violation.
module ResearchFramework.Algorithm.Invariants

open System

let private bitsEqual (a: float) (b: float) = BitConverter.DoubleToInt64Bits a = BitConverter.DoubleToInt64Bits b

let private firstError (checks: seq<unit -> Result<unit, string>>) =
    checks |> Seq.tryPick (fun c -> match c () with Error e -> Some e | Ok () -> None)
    |> function Some e -> Error e | None -> Ok ()

/// SPEC §4.1: for t < τ the two-phase run is the base run bit for bit: same loss bits, same
/// parameter fingerprints (when recorded), phase PhaseOne.
let phaseOneMatchesBase (tau: int) (baseSteps: StepRecord[]) (recipeSteps: StepRecord[]) : Result<unit, string> =
    if baseSteps.Length < tau || recipeSteps.Length < tau then
        Error (sprintf "need %d steps of each run, have base %d, recipe %d" tau baseSteps.Length recipeSteps.Length)
    else
        firstError [ for t in 0 .. tau - 1 -> fun () ->
                        let b, r = baseSteps.[t], recipeSteps.[t]
                        if r.Phase <> Phase.PhaseOne then Error (sprintf "step %d of the recipe run is %O, expected PhaseOne" t r.Phase)
                        elif not (bitsEqual b.Loss r.Loss) then Error (sprintf "step %d: loss %.17g (base) ≠ %.17g (recipe)" t b.Loss r.Loss)
                        elif b.ParameterFingerprint <> r.ParameterFingerprint then
                            Error (sprintf "step %d: parameters differ (%s vs %s)" t b.ParameterFingerprint r.ParameterFingerprint)
                        else Ok () ]

/// A run resumed before iteration `start` completes T iterations in total and records exactly
/// the steps start..T−1, in order (its step records are this process's steps).
let totalIterationsFrom (start: int) (total: int) (result: RunResult) : Result<unit, string> =
    if not result.Completed then Error "run did not complete"
    elif result.IterationsDone <> total then Error (sprintf "ran %d iterations, T = %d" result.IterationsDone total)
    elif result.Steps.Length <> total - start then
        Error (sprintf "%d step records, expected T − start = %d − %d = %d" result.Steps.Length total start (total - start))
    else
        match result.Steps |> Array.indexed |> Array.tryFindIndex (fun (i, s) -> s.Iteration <> start + i) with
        | Some i -> Error (sprintf "record %d has iteration %d, expected %d" i result.Steps.[i].Iteration (start + i))
        | None -> Ok ()

/// Both runs take exactly T iterations, numbered 0..T−1 (SPEC §4: same total iterations).
let totalIterations (total: int) (result: RunResult) : Result<unit, string> = totalIterationsFrom 0 total result

/// SPEC §4.2: with V = 0 the function is unchanged at the switch: outputs before and after are
/// equal bit for bit (0·h + 0 = 0 exactly for finite h).
let functionUnchanged (before: float[]) (after: float[]) : Result<unit, string> =
    if before.Length <> after.Length then Error (sprintf "output sizes differ: %d vs %d" before.Length after.Length)
    else
        match Array.tryFindIndex id (Array.map2 (fun a b -> not (bitsEqual a b)) before after) with
        | Some i -> Error (sprintf "output %d changed at the switch: %.17g → %.17g" i before.[i] after.[i])
        | None -> Ok ()

/// SPEC §4 Theorem: frozen body, squared loss, full batch, readout step η ≤ n/σ_max(Φ̃)²: the
/// Phase II objective never increases (up to `relativeSlack`·L for floating-point rounding).
let objectiveNonIncreasing (relativeSlack: float) (steps: StepRecord[]) : Result<unit, string> =
    let two = steps |> Array.filter (fun s -> s.Phase = Phase.PhaseTwo)
    firstError [ for i in 1 .. two.Length - 1 -> fun () ->
                    let a, b = two.[i - 1], two.[i]
                    if b.Loss > a.Loss + relativeSlack * abs a.Loss then
                        Error (sprintf "objective increased from %.17g (t=%d) to %.17g (t=%d)" a.Loss a.Iteration b.Loss b.Iteration)
                    else Ok () ]

/// SPEC §4 Theorem with a frozen body (d_t = 0): a full-batch gradient step of the readout with
/// η_t ≤ n/σ_max(Φ̃)² on a Φ̃ with σ_min(Φ̃) ≥ s contracts the residual,
/// √L_{t+1} ≤ (1 − η_t s²/n)·√L_t, with η_t the recorded `ReadoutLearningRate`. Checked on
/// consecutive Phase II records (L before each step); `relativeSlack` covers rounding of L.
let readoutContracts (n: int) (sigmaMinLower: float) (relativeSlack: float) (steps: StepRecord[]) : Result<unit, string> =
    let two = steps |> Array.filter (fun s -> s.Phase = Phase.PhaseTwo)
    firstError [ for i in 1 .. two.Length - 1 -> fun () ->
                    let a, b = two.[i - 1], two.[i]
                    let rate = 1.0 - a.ReadoutLearningRate * sigmaMinLower * sigmaMinLower / float n
                    if not (rate >= 0.0 && rate < 1.0) then
                        Error (sprintf "t=%d: contraction factor %g outside [0, 1) (η = %g, s = %g, n = %d)" a.Iteration rate a.ReadoutLearningRate sigmaMinLower n)
                    elif sqrt b.Loss > rate * sqrt a.Loss * (1.0 + relativeSlack) then
                        Error (sprintf "t=%d: √L went from %.17g to %.17g, above the theorem's (1 − ηs²/n)·√L = %.17g"
                                   a.Iteration (sqrt a.Loss) (sqrt b.Loss) (rate * sqrt a.Loss))
                    else Ok () ]

/// Σ_{j≥1} j^(−p) ≤ 1 + 1/(p − 1) for p > 1 (integral test); +∞ for p ≤ 1.
let zetaUpper (p: float) = if p > 1.0 then 1.0 + 1.0 / (p - 1.0) else infinity

/// SPEC §4.3: in Phase II each body movement is α_t‖Δω_t‖ with α_t = (t − τ + 1)^(−p) (or 0),
/// Σ_t α_t‖Δω_t‖ ≤ max_t‖Δω_t‖·ζ(p) ≤ max‖Δω‖·(1 + 1/(p − 1)), and the displacement ‖ω_T − ω_τ‖
/// is at most Σ_t α_t‖Δω_t‖ (triangle inequality). The movement is measured (the body steps with η_t·α_t)
/// and ‖Δω_t‖ derived from it, so they agree to `relativeSlack`, as does the displacement bound.
/// The records are the trainer's own (UndampedBodyStep = BodyMovement/α_t), so the per-step clause
/// holds by construction: that the body really steps by α_t·(A's step) is tested on the parameters
/// themselves (Properties, "damping measured on ω itself": damped vs undamped step from one state).
let dampedMovementBounded (tau: int) (p: float) (relativeSlack: float) (result: RunResult) : Result<unit, string> =
    let two = result.Steps |> Array.filter (fun s -> s.Phase = Phase.PhaseTwo)
    let total = two |> Array.sumBy (fun s -> s.BodyMovement)
    let maxStep = if two.Length = 0 then 0.0 else two |> Array.map (fun s -> s.UndampedBodyStep) |> Array.max
    let bound = maxStep * zetaUpper p
    firstError [
        for s in two -> fun () ->
            let expected = Math.Pow(float (s.Iteration - tau + 1), -p)
            if s.Alpha <> 0.0 && not (bitsEqual s.Alpha expected) then Error (sprintf "α at t=%d is %.17g, expected %.17g" s.Iteration s.Alpha expected)
            elif abs (s.BodyMovement - s.Alpha * s.UndampedBodyStep) > relativeSlack * s.BodyMovement then
                Error (sprintf "movement at t=%d is %.17g, not α‖Δω‖ = %.17g" s.Iteration s.BodyMovement (s.Alpha * s.UndampedBodyStep))
            else Ok ()
        yield fun () -> if total <= bound then Ok () else Error (sprintf "Σ α‖Δω‖ = %g exceeds its bound %g" total bound)
        yield fun () ->
            if Double.IsNaN result.BodyDisplacementSinceSwitch || result.BodyDisplacementSinceSwitch <= total * (1.0 + relativeSlack) + 1e-300 then Ok ()
            else Error (sprintf "‖ω_T − ω_τ‖ = %g exceeds Σ α‖Δω‖ = %g" result.BodyDisplacementSinceSwitch total) ]

/// SPEC §4.3 guard: each trip restores exactly the last certified body (the switch's ω_τ or the
/// body after the last passing check), and the body stays there (frozen) for every later step.
/// Needs step records with body fingerprints and the switch's PhaseChange.
let guardRestoresLastCertified (switch: PhaseChange) (kappaSigmaTau: float) (trips: GuardTrip[]) (steps: StepRecord[]) : Result<unit, string> =
    if switch.To <> Phase.PhaseTwo then Error "no certified switch"
    else
        firstError [ for trip in trips -> fun () ->
                        // certified states before the trip: the switch, and steps whose check passed
                        let passed =
                            steps |> Array.filter (fun s -> s.Phase = Phase.PhaseTwo && s.Iteration + 1 < trip.Iteration
                                                            && not (Double.IsNaN s.SigmaMin) && s.SigmaMin >= kappaSigmaTau)
                        let expected = if passed.Length = 0 then switch.BodyFingerprint else (Array.last passed).BodyFingerprint
                        let later = steps |> Array.filter (fun s -> s.Iteration + 1 >= trip.Iteration)
                        if trip.RestoredBodyFingerprint <> expected then
                            Error (sprintf "trip at %d restored %s, last certified body is %s" trip.Iteration trip.RestoredBodyFingerprint expected)
                        else
                            match later |> Array.tryFind (fun s -> s.BodyFingerprint <> expected) with
                            | Some s -> Error (sprintf "body moved after the trip (step %d)" s.Iteration)
                            | None -> Ok () ]

/// SPEC §4.2: the guarantee is claimed only after a Certified certificate; when every attempt
/// is Refuted (e.g. duplicate inputs) it is never claimed.
let claimOnlyWhenCertified (result: RunResult) : Result<unit, string> =
    let certified = result.Certificates |> Array.exists (fun c -> c.IsCertified)
    if result.GuaranteeClaimed && not certified then Error "guarantee claimed without a Certified certificate"
    elif not result.GuaranteeClaimed && certified then Error "a certificate was Certified but the guarantee is not claimed"
    elif result.GuaranteeClaimed && not (Array.last result.Certificates).IsCertified then Error "the last certificate is not the certified one"
    else Ok ()

/// Two runs end with bit-identical parameters (checkpoint-resume, base vs uncertified recipe).
let bitIdentical (a: RunResult) (b: RunResult) : Result<unit, string> =
    if a.FinalParameterFingerprint = b.FinalParameterFingerprint then Ok ()
    else Error (sprintf "final parameters differ: %s vs %s" a.FinalParameterFingerprint b.FinalParameterFingerprint)

// ---------------------------------------------------------------------------------------------
// SPEC §4, "for mini-batch steps the project states, and tests, exactly what it proves":
// readout steps with a FROZEN body (α_t = 0), plain SGD (no momentum, no weight decay, constant
// step η). Notation: Φ̃ = [Φ, 1] (n × (m+1)) at the switch, W the readout's (m+1) × c parameters
// (weights and bias), f̄(X) = f(X) + Φ̃W, W_0 = 0. Proofs: docs/theory.md, "Mini-batch and
// cross-entropy readout steps". Every comparison `a ≤ b` below is read with the caller's
// rounding slack: a ≤ b + absoluteSlack + relativeSlack·max(|a|, |b|).
// ---------------------------------------------------------------------------------------------

let private atMost (absoluteSlack: float) (relativeSlack: float) (a: float) (b: float) =
    a <= b + absoluteSlack + relativeSlack * max (abs a) (abs b)

/// A sequence never increases (up to the slack): values.[t+1] ≤ values.[t] for every t. Used for
/// ‖W_t − W*‖_F (SPEC §4, mini-batch squared loss: each step applies I − (η/b)Φ̃_BᵀΦ̃_B, symmetric
/// with spectrum in [0, 1] when η ≤ b/σ_max(Φ̃)², to W_t − W*, for every interpolating W*) and for
/// the full-batch cross-entropy objective (η ≤ 2n/σ_max(Φ̃)²: the descent lemma).
let nonIncreasing (what: string) (absoluteSlack: float) (relativeSlack: float) (values: float[]) : Result<unit, string> =
    firstError [ for t in 0 .. values.Length - 2 -> fun () ->
                    if Double.IsNaN values.[t] || Double.IsNaN values.[t + 1] then Error (sprintf "%s is NaN at t=%d" what t)
                    elif atMost absoluteSlack relativeSlack values.[t + 1] values.[t] then Ok ()
                    else Error (sprintf "%s increased from %.17g (t=%d) to %.17g (t=%d)" what values.[t] t values.[t + 1] (t + 1)) ]

/// SPEC §4, mini-batch squared loss, frozen body, η ≤ b/σ_max(Φ̃)²: with E_t = W_t − W* and
/// A_t = (η/b)Φ̃_BᵀΦ̃_B (0 ⪯ A_t ⪯ I, so A_t² ⪯ A_t),
/// ‖E_{t+1}‖² = ‖E_t‖² − tr(E_tᵀ(2A_t − A_t²)E_t) ≤ ‖E_t‖² − tr(E_tᵀA_tE_t) = ‖E_t‖² − 2η·L_{B_t}(W_t),
/// L_B(W) = (1/2b)‖Φ̃_B(W − W*)‖_F² the loss on step t's batch before the step (what the trainer
/// records). `squaredDistances.[t]` = ‖E_t‖², t = 0..T; `batchLosses.[t]` = L_{B_t}(W_t), t < T.
let readoutSufficientDecrease (absoluteSlack: float) (relativeSlack: float) (eta: float)
                              (squaredDistances: float[]) (batchLosses: float[]) : Result<unit, string> =
    if squaredDistances.Length <> batchLosses.Length + 1 then
        Error (sprintf "need T + 1 distances for T losses, have %d and %d" squaredDistances.Length batchLosses.Length)
    else
        firstError [ for t in 0 .. batchLosses.Length - 1 -> fun () ->
                        let bound = squaredDistances.[t] - 2.0 * eta * batchLosses.[t]
                        if atMost absoluteSlack relativeSlack squaredDistances.[t + 1] bound then Ok ()
                        else Error (sprintf "‖E_%d‖² = %.17g > ‖E_%d‖² − 2ηL_B = %.17g − 2·%g·%.17g = %.17g"
                                        (t + 1) squaredDistances.[t + 1] t squaredDistances.[t] eta batchLosses.[t] bound) ]

/// SPEC §4, mini-batch squared loss, frozen body: every step changes W by (η/b)Φ̃_BᵀR_B, a vector
/// of row(Φ̃_B) ⊆ row(Φ̃) = null(Φ̃)^⊥, so the component of W_t − W* in null(Φ̃) never changes.
/// `components.[t]` is that component (flattened) after t steps; each must equal components.[0]
/// normwise: ‖c_t − c_0‖ ≤ absoluteSlack + relativeSlack·max(‖c_t‖, ‖c_0‖).
let nullComponentConstant (absoluteSlack: float) (relativeSlack: float) (components: float[][]) : Result<unit, string> =
    let norm (v: float[]) = sqrt (Array.sumBy (fun x -> x * x) v)
    if components.Length = 0 then Ok ()
    else
        let c0 = components.[0]
        firstError [ for t in 1 .. components.Length - 1 -> fun () ->
                        let c = components.[t]
                        if c.Length <> c0.Length then Error (sprintf "component %d has %d entries, expected %d" t c.Length c0.Length)
                        else
                            let diff = norm (Array.map2 (-) c c0)
                            if diff <= absoluteSlack + relativeSlack * max (norm c) (norm c0) then Ok ()
                            else Error (sprintf "null-space component changed at t=%d: ‖c_t − c_0‖ = %.3e (‖c_0‖ = %.17g)" t diff (norm c0)) ]

/// SPEC §4, mini-batch squared loss, frozen body, η ≤ b/σ_max(Φ̃)², an epoch of k steps whose
/// batches (size b) together cover all n points (b·k = n): the per-epoch contraction factor
/// q = 1 − 2ηs²/(b·k(k+1)) with s ≤ σ_min(Φ̃), an a-priori bound (every ordering) on
/// ‖P(W_{(e+1)k} − W*)‖² / ‖P(W_{ek} − W*)‖², P the orthogonal projector onto row(Φ̃).
let epochContractionFactor (eta: float) (batch: int) (stepsPerEpoch: int) (sigmaMinLower: float) : float =
    let k = float stepsPerEpoch
    1.0 - 2.0 * eta * sigmaMinLower * sigmaMinLower / (float batch * k * (k + 1.0))

/// SPEC §4, mini-batch squared loss, frozen body, η ≤ b/σ_max(Φ̃)², epochs of k = n/b steps that
/// cover all n points. With E_e = W_{ek} − W* (epoch starts, e = 0..),
/// (i)  L(W_{ek}) ≤ ((k+1)/(4η))·(‖E_e‖² − ‖E_{e+1}‖²), L the full-data loss (1/2n)‖Φ̃(W − W*)‖²;
/// (ii) ‖P E_{e+1}‖² ≤ q·‖P E_e‖², q = `epochContractionFactor` η b k s < 1.
/// `epochLosses.[e]` = L(W_{ek}), `squaredDistances.[e]` = ‖E_e‖², `rowSquaredNorms.[e]` = ‖P E_e‖².
let readoutEpochProgress (absoluteSlack: float) (relativeSlack: float) (eta: float) (batch: int) (stepsPerEpoch: int)
                         (sigmaMinLower: float) (epochLosses: float[]) (squaredDistances: float[])
                         (rowSquaredNorms: float[]) : Result<unit, string> =
    let k = float stepsPerEpoch
    let q = epochContractionFactor eta batch stepsPerEpoch sigmaMinLower
    if squaredDistances.Length <> rowSquaredNorms.Length || epochLosses.Length + 1 > squaredDistances.Length then
        Error (sprintf "inconsistent epoch records: %d losses, %d distances, %d row norms"
                   epochLosses.Length squaredDistances.Length rowSquaredNorms.Length)
    elif not (q < 1.0) then Error (sprintf "contraction factor q = %g is not < 1 (s = %g)" q sigmaMinLower)
    else
        firstError [
            for e in 0 .. epochLosses.Length - 1 -> fun () ->
                let progress = (k + 1.0) / (4.0 * eta) * (squaredDistances.[e] - squaredDistances.[e + 1])
                if atMost absoluteSlack relativeSlack epochLosses.[e] progress then Ok ()
                else Error (sprintf "epoch %d: L(W_ek) = %.17g > ((k+1)/4η)(‖E_e‖² − ‖E_e+1‖²) = %.17g" e epochLosses.[e] progress)
            for e in 0 .. rowSquaredNorms.Length - 2 -> fun () ->
                if atMost absoluteSlack relativeSlack rowSquaredNorms.[e + 1] (q * rowSquaredNorms.[e]) then Ok ()
                else Error (sprintf "epoch %d: ‖P E‖² went from %.17g to %.17g > q·that, q = %.17g"
                                e rowSquaredNorms.[e] rowSquaredNorms.[e + 1] q) ]

/// SPEC §4, cross-entropy, full batch, frozen body, plain gradient descent with η ≤ 2n/σ_max(Φ̃)²:
/// L is convex and (σ_max²/(2n))-smooth in W (diag(p) − ppᵀ ⪯ ½I), hence for every reference W_ref
/// and t ≥ 1, L(W_t) ≤ L(W_ref) + ‖W_0 − W_ref‖_F²/(2ηt). `losses.[t]` = L(W_t), t = 0..T.
let convexGradientDescentBound (absoluteSlack: float) (relativeSlack: float) (eta: float) (losses: float[])
                               (referenceLoss: float) (referenceSquaredDistance: float) : Result<unit, string> =
    firstError [ for t in 1 .. losses.Length - 1 -> fun () ->
                    let bound = referenceLoss + referenceSquaredDistance / (2.0 * eta * float t)
                    if atMost absoluteSlack relativeSlack losses.[t] bound then Ok ()
                    else Error (sprintf "t=%d: L(W_t) = %.17g > L(W_ref) + ‖W_0 − W_ref‖²/(2ηt) = %.17g + %.17g/(2·%g·%d) = %.17g"
                                    t losses.[t] referenceLoss referenceSquaredDistance eta t bound) ]
