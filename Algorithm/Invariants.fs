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

/// Both runs take exactly T iterations, numbered 0..T−1 (SPEC §4: same total iterations).
let totalIterations (total: int) (result: RunResult) : Result<unit, string> =
    if not result.Completed then Error "run did not complete"
    elif result.IterationsDone <> total then Error (sprintf "ran %d iterations, T = %d" result.IterationsDone total)
    elif result.Steps.Length <> total then Error (sprintf "%d step records, T = %d" result.Steps.Length total)
    else
        match result.Steps |> Array.indexed |> Array.tryFindIndex (fun (i, s) -> s.Iteration <> i) with
        | Some i -> Error (sprintf "record %d has iteration %d" i result.Steps.[i].Iteration)
        | None -> Ok ()

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
