/// Negative controls of Algorithm.Invariants: for every invariant a hand-built record that meets
/// it is accepted (positive control) and records that violate it, one clause at a time, are
/// rejected with a message naming that clause. Without these an invariant that always returns
/// Ok () would let every recipe property pass.
module ResearchFramework.Properties.AlgorithmTests.InvariantTests

open System
open Expecto
open ResearchFramework.MathCore
open ResearchFramework.Algorithm
open ResearchFramework.Properties.AlgorithmTests.Fixtures

/// Expect an invariant to reject, with a message containing `mentions`.
let private expectError (what: string) (mentions: string) (r: Result<unit, string>) =
    match r with
    | Ok () -> failtestf "%s: accepted, expected a violation (%s)" what mentions
    | Error e -> Expect.stringContains e mentions (sprintf "%s: the message names the violation" what)

/// The next double above x (1 ulp).
let private nextUp (x: float) = BitConverter.Int64BitsToDouble(BitConverter.DoubleToInt64Bits x + 1L)

let private step (t: int) (phase: Phase) (loss: float) : StepRecord =
    { Iteration = t; Phase = phase; Loss = loss; LossGap = loss; Alpha = 1.0; BodyMovement = nan
      UndampedBodyStep = nan; SigmaMin = nan; SigmaMax = nan; LearningRate = 0.1; ReadoutLearningRate = nan
      GuardRoute = null; ParameterFingerprint = sprintf "p%d" t; BodyFingerprint = sprintf "b%d" t }

let private result (steps: StepRecord[]) : RunResult =
    { Steps = steps; IterationsDone = steps.Length; Completed = true; Certificates = [||]; GuaranteeClaimed = false
      GuardTripped = false; FinalParameterFingerprint = "final"; FinalBodyFingerprint = "body"; LossOptimum = 0.0
      BodyDisplacementSinceSwitch = nan; LastCheckpoint = null }

let private certificate (verdict: Verdict) : Certificate =
    { Subject = ExpressivitySubject.OfMatrix("data", 4, 5, true); Verdict = verdict; Reason = "hand-built"
      Method = "none"; Precision = "float64"; Device = "cpu"; SigmaMinLower = (if verdict = Verdict.Certified then 1.0 else 0.0)
      SigmaMaxEstimate = 2.0; SigmaMaxUpper = 2.0; Terms = CertificateTerms.Empty; Route = CertificateRoute.Gram; ElapsedSeconds = 0.0
      CreatedUtc = DateTime.UnixEpoch; FormatVersion = 1 }

let private set (i: int) (value: 'a) (xs: 'a[]) = let c = Array.copy xs in c.[i] <- value; c

let negativeControls =
    testList "Invariants negative controls" [
        test "phaseOneMatchesBase: a loss 1 ulp off, another parameter fingerprint, a Phase II step before τ, too few steps" {
            let tau = 3
            let baseSteps = Array.init 5 (fun t -> step t Phase.Base (10.0 - float t))
            let recipeSteps = baseSteps |> Array.map (fun s -> { s with Phase = (if s.Iteration < tau then Phase.PhaseOne else Phase.PhaseTwo) })
            Invariants.phaseOneMatchesBase tau baseSteps recipeSteps |> expectOk "positive control"
            // after τ the runs may differ
            Invariants.phaseOneMatchesBase tau baseSteps (recipeSteps |> set 4 { recipeSteps.[4] with Loss = 0.0; ParameterFingerprint = "x" })
            |> expectOk "positive control: steps ≥ τ are not compared"
            Invariants.phaseOneMatchesBase tau baseSteps (recipeSteps |> set 1 { recipeSteps.[1] with Loss = nextUp recipeSteps.[1].Loss })
            |> expectError "loss 1 ulp off" "loss"
            Invariants.phaseOneMatchesBase tau baseSteps (recipeSteps |> set 2 { recipeSteps.[2] with ParameterFingerprint = "other" })
            |> expectError "parameters differ" "parameters differ"
            Invariants.phaseOneMatchesBase tau baseSteps (recipeSteps |> set 2 { recipeSteps.[2] with Phase = Phase.PhaseTwo })
            |> expectError "Phase II before τ" "expected PhaseOne"
            Invariants.phaseOneMatchesBase tau baseSteps recipeSteps.[.. 1] |> expectError "too few steps" "need 3 steps"
        }

        test "totalIterations / totalIterationsFrom: incomplete, wrong count, missing record, misnumbered record" {
            let r = result (Array.init 6 (fun t -> step t Phase.Base 1.0))
            Invariants.totalIterations 6 r |> expectOk "positive control"
            Invariants.totalIterations 6 { r with Completed = false } |> expectError "incomplete" "did not complete"
            Invariants.totalIterations 7 r |> expectError "T = 7" "ran 6 iterations"
            Invariants.totalIterations 6 { r with Steps = r.Steps.[.. 4] } |> expectError "a record missing" "step records"
            Invariants.totalIterations 6 { r with Steps = r.Steps |> set 3 { r.Steps.[3] with Iteration = 4 } } |> expectError "misnumbered" "record 3"
            let resumed = { r with Steps = r.Steps.[2 ..] }
            Invariants.totalIterationsFrom 2 6 resumed |> expectOk "positive control (resumed before iteration 2)"
            Invariants.totalIterationsFrom 1 6 resumed |> expectError "resumed from 1 but only steps 2..5" "step records"
            Invariants.totalIterationsFrom 2 6 { resumed with Steps = resumed.Steps |> Array.map (fun s -> { s with Iteration = s.Iteration - 2 }) }
            |> expectError "renumbered from 0" "expected 2"
        }

        test "functionUnchanged: one output 1 ulp off, another size, −0 for +0" {
            let before = [| 1.5; -2.0; 0.0; 1e-300 |]
            Invariants.functionUnchanged before (Array.copy before) |> expectOk "positive control"
            Invariants.functionUnchanged before (before |> set 3 (nextUp 1e-300)) |> expectError "1 ulp" "output 3 changed"
            Invariants.functionUnchanged before before.[.. 2] |> expectError "size" "sizes differ"
            Invariants.functionUnchanged before (before |> set 2 -0.0) |> expectError "−0" "output 2 changed"
        }

        test "objectiveNonIncreasing: a Phase II increase beyond the slack (Phase I increases are not its business)" {
            let steps = [| step 0 Phase.PhaseOne 1.0; step 1 Phase.PhaseOne 5.0; step 2 Phase.PhaseTwo 4.0
                           step 3 Phase.PhaseTwo 3.0; step 4 Phase.PhaseTwo 3.0; step 5 Phase.PhaseTwo 2.0 |]
            Invariants.objectiveNonIncreasing 0.0 steps |> expectOk "positive control"
            Invariants.objectiveNonIncreasing 0.0 (steps |> set 4 (step 4 Phase.PhaseTwo (nextUp 3.0))) |> expectError "1 ulp up" "objective increased"
            Invariants.objectiveNonIncreasing 1e-3 (steps |> set 4 (step 4 Phase.PhaseTwo 3.002)) |> expectOk "within a relative slack of 1e-3"
            Invariants.objectiveNonIncreasing 1e-3 (steps |> set 4 (step 4 Phase.PhaseTwo 3.004)) |> expectError "beyond the slack" "t=4"
        }

        test "readoutContracts: √L above (1 − ηs²/n)√L, a contraction factor outside [0, 1)" {
            // n = 4, s = 1, η = 2: factor 1/2, so √L may at most halve
            let two (eta: float) (losses: float[]) =
                losses |> Array.mapi (fun i l -> { step (i + 1) Phase.PhaseTwo l with ReadoutLearningRate = eta })
            Invariants.readoutContracts 4 1.0 0.0 (two 2.0 [| 1.0; 0.25; 0.0625 |]) |> expectOk "positive control (exactly the factor)"
            Invariants.readoutContracts 4 1.0 0.0 (two 2.0 [| 1.0; 0.25; 0.0626 |]) |> expectError "above the factor" "above the theorem"
            Invariants.readoutContracts 4 1.0 0.0 (two 0.0 [| 1.0; 0.25 |]) |> expectError "η = 0: factor 1" "outside [0, 1)"
            Invariants.readoutContracts 4 1.0 0.0 (two 5.0 [| 1.0; 0.0 |]) |> expectError "η too large: factor < 0" "outside [0, 1)"
        }

        test "zetaUpper bounds the partial sums of Σ j^(−p) for p > 1 and is +∞ for p ≤ 1 (where they diverge)" {
            for p in [ 1.05; 1.5; 2.0; 3.0 ] do
                let partial = Seq.sum (seq { for j in 1 .. 100000 -> float j ** -p })
                Expect.isLessThanOrEqual partial (Invariants.zetaUpper p) (sprintf "p = %g" p)
            Expect.equal (Invariants.zetaUpper 2.0) 2.0 "1 + 1/(p − 1) at p = 2"
            // p ≤ 1: any finite bound is exceeded by the partial sums (Σ_{j ≤ 10⁵} 1/j > 12)
            Expect.isGreaterThan (Seq.sum (seq { for j in 1 .. 100000 -> 1.0 / float j })) 12.0 "harmonic partial sum"
            Expect.equal (Invariants.zetaUpper 1.0) infinity "p = 1"
            Expect.equal (Invariants.zetaUpper 0.5) infinity "p = 1/2"
        }

        test "dampedMovementBounded: a wrong α_t, a movement that is not α_t‖Δω_t‖ (the undamped step), Σ above the bound, a displacement above Σ" {
            let tau, p = 2, 2.0
            let two =
                [| for t in 2 .. 5 ->
                    let alpha = Math.Pow(float (t - tau + 1), -p)
                    { step t Phase.PhaseTwo 1.0 with Alpha = alpha; UndampedBodyStep = 1.0; BodyMovement = alpha } |]
            let total = two |> Array.sumBy (fun s -> s.BodyMovement)
            let r = { result (Array.append [| step 0 Phase.PhaseOne 1.0; step 1 Phase.PhaseOne 1.0 |] two) with BodyDisplacementSinceSwitch = total }
            Invariants.dampedMovementBounded tau p 1e-12 r |> expectOk "positive control (displacement = Σ)"
            let withTwo (s: StepRecord[]) = { r with Steps = Array.append r.Steps.[.. 1] s }
            Invariants.dampedMovementBounded tau p 1e-12 (withTwo (two |> set 1 { two.[1] with Alpha = 0.5; BodyMovement = 0.5 }))
            |> expectError "α_3 = 1/2 instead of 2^(−2)" "α at t=3"
            Invariants.dampedMovementBounded tau p 1e-12 (withTwo (two |> set 2 { two.[2] with BodyMovement = 1.0 }))
            |> expectError "undamped movement" "not α‖Δω‖"
            Invariants.dampedMovementBounded tau p 1e-12 { r with BodyDisplacementSinceSwitch = total * 1.01 }
            |> expectError "displacement above Σ" "exceeds Σ"
            // records whose movements pass the per-step check only under a huge slack exceed max‖Δω‖·ζ(p)
            Invariants.dampedMovementBounded tau p 100.0 (withTwo (two |> Array.map (fun s -> { s with BodyMovement = 1.0 })))
            |> expectError "Σ above max‖Δω‖·ζ(p)" "exceeds its bound"
        }

        test "guardRestoresLastCertified: restored to the switch instead of the last passing check, the body moving after the trip, no certified switch" {
            let threshold = 0.5
            let switch = { Iteration = 2; From = Phase.PhaseOne; To = Phase.PhaseTwo; Reason = "certified"; BodyFingerprint = "switch" }
            // check after step 2 passes (body b2 becomes the last certified), the one after step 3 fails: restore b2, frozen
            let steps =
                [| step 0 Phase.PhaseOne 1.0; step 1 Phase.PhaseOne 1.0
                   { step 2 Phase.PhaseTwo 1.0 with SigmaMin = 1.0 }
                   { step 3 Phase.PhaseTwo 1.0 with SigmaMin = 0.1; BodyFingerprint = "b2" }
                   { step 4 Phase.PhaseTwo 1.0 with BodyFingerprint = "b2" } |]
            let trip = { Iteration = 4; SigmaMinLower = 0.1; Threshold = threshold; Verdict = Verdict.Certified
                         RestoredBodyFingerprint = "b2"; LastCertifiedIteration = 3 }
            Invariants.guardRestoresLastCertified switch threshold [| trip |] steps |> expectOk "positive control"
            Invariants.guardRestoresLastCertified switch threshold [||] steps |> expectOk "positive control: no trip"
            Invariants.guardRestoresLastCertified switch threshold [| { trip with RestoredBodyFingerprint = "switch" } |]
                (steps |> Array.map (fun s -> if s.Iteration >= 3 then { s with BodyFingerprint = "switch" } else s))
            |> expectError "restored the switch's body" "last certified body is b2"
            Invariants.guardRestoresLastCertified switch threshold [| trip |] (steps |> set 4 { steps.[4] with BodyFingerprint = "b4" })
            |> expectError "moved after the trip" "body moved after the trip"
            Invariants.guardRestoresLastCertified { switch with To = Phase.BaseUncertified } threshold [| trip |] steps
            |> expectError "no certified switch" "no certified switch"
            // a first check that fails restores the switch's body
            let failFirst = steps |> set 2 { steps.[2] with SigmaMin = 0.1; BodyFingerprint = "switch" }
                                  |> Array.map (fun s -> if s.Iteration >= 2 then { s with BodyFingerprint = "switch" } else s)
            let tripFirst = { trip with Iteration = 3; RestoredBodyFingerprint = "switch"; LastCertifiedIteration = 2 }
            Invariants.guardRestoresLastCertified switch threshold [| tripFirst |] failFirst |> expectOk "positive control: first check fails"
            Invariants.guardRestoresLastCertified switch threshold [| { tripFirst with RestoredBodyFingerprint = "b2" } |] failFirst
            |> expectError "restored a body never certified" "last certified body is switch"
        }

        test "claimOnlyWhenCertified: claimed without a Certified certificate, not claimed with one, claimed after a later non-certified attempt" {
            let r = result [||]
            let refuted, certified = certificate Verdict.Refuted, certificate Verdict.Certified
            Invariants.claimOnlyWhenCertified { r with Certificates = [| refuted; certified |]; GuaranteeClaimed = true } |> expectOk "positive control: claimed"
            Invariants.claimOnlyWhenCertified { r with Certificates = [| refuted |] } |> expectOk "positive control: not claimed"
            Invariants.claimOnlyWhenCertified { r with Certificates = [| refuted; certificate Verdict.Inconclusive |]; GuaranteeClaimed = true }
            |> expectError "claimed, nothing certified" "without a Certified certificate"
            Invariants.claimOnlyWhenCertified { r with Certificates = [| certified |] } |> expectError "certified, not claimed" "not claimed"
            Invariants.claimOnlyWhenCertified { r with Certificates = [| certified; refuted |]; GuaranteeClaimed = true }
            |> expectError "last attempt not certified" "last certificate"
        }

        test "bitIdentical: other final parameters" {
            let r = result [||]
            Invariants.bitIdentical r { r with Steps = [| step 0 Phase.Base 1.0 |] } |> expectOk "positive control (only the final parameters count)"
            Invariants.bitIdentical r { r with FinalParameterFingerprint = "other" } |> expectError "other parameters" "final parameters differ"
        }

        test "nonIncreasing: an increase beyond the slack, a NaN" {
            Invariants.nonIncreasing "d" 0.0 0.0 [| 3.0; 2.0; 2.0; 1.0 |] |> expectOk "positive control"
            Invariants.nonIncreasing "d" 0.0 0.0 [| 3.0; 2.0; nextUp 2.0 |] |> expectError "1 ulp up" "d increased"
            Invariants.nonIncreasing "d" 0.01 0.0 [| 3.0; 2.0; 2.005 |] |> expectOk "within the absolute slack"
            Invariants.nonIncreasing "d" 0.01 0.0 [| 3.0; 2.0; 2.02 |] |> expectError "beyond the absolute slack" "t=2"
            Invariants.nonIncreasing "d" 0.0 0.0 [| 3.0; nan; 1.0 |] |> expectError "NaN" "NaN"
        }

        test "readoutSufficientDecrease: ‖E_t+1‖² above ‖E_t‖² − 2ηL_B, mismatched lengths" {
            let eta = 0.5   // 2η = 1
            Invariants.readoutSufficientDecrease 0.0 0.0 eta [| 10.0; 9.0; 8.0 |] [| 1.0; 1.0 |] |> expectOk "positive control (equality)"
            Invariants.readoutSufficientDecrease 0.0 0.0 eta [| 10.0; 9.0; 8.5 |] [| 1.0; 1.0 |] |> expectError "short of the decrease" "‖E_2‖²"
            Invariants.readoutSufficientDecrease 0.0 0.0 eta [| 10.0; 9.0 |] [| 1.0; 1.0 |] |> expectError "lengths" "T + 1 distances"
        }

        test "nullComponentConstant: a component that drifts, a component of another size" {
            let c = [| 1.0; -2.0; 0.5 |]
            Invariants.nullComponentConstant 0.0 0.0 [| c; Array.copy c; Array.copy c |] |> expectOk "positive control"
            Invariants.nullComponentConstant 0.0 0.0 [||] |> expectOk "positive control: no components"
            Invariants.nullComponentConstant 1e-6 0.0 [| c; c |> set 1 -2.001 |] |> expectError "drift" "changed at t=1"
            Invariants.nullComponentConstant 0.0 0.0 [| c; c.[.. 1] |] |> expectError "size" "entries"
        }

        test "epochContractionFactor and readoutEpochProgress: a loss above the epoch's progress, ‖P E‖² above q·that, q = 1, inconsistent records" {
            // η = 1, b = 2, k = 3, s = 2: q = 1 − 2·1·4/(2·3·4) = 2/3, (k+1)/(4η) = 1
            let q = Invariants.epochContractionFactor 1.0 2 3 2.0
            Expect.floatClose Accuracy.veryHigh q (2.0 / 3.0) "q = 1 − 2ηs²/(b·k(k+1))"
            Expect.equal (Invariants.epochContractionFactor 1.0 2 3 0.0) 1.0 "s = 0: no contraction"
            let progress s losses distances rows = Invariants.readoutEpochProgress 0.0 0.0 1.0 2 3 s losses distances rows
            progress 2.0 [| 1.5 |] [| 5.0; 3.5 |] [| 3.0; 1.5 |] |> expectOk "positive control (equality in the progress inequality)"
            progress 2.0 [| 1.6 |] [| 5.0; 3.5 |] [| 3.0; 1.5 |] |> expectError "loss above progress" "epoch 0: L"
            progress 2.0 [| 1.5 |] [| 5.0; 3.5 |] [| 3.0; 2.01 |] |> expectError "row part above q·that" "‖P E‖²"
            progress 0.0 [| 0.0 |] [| 5.0; 5.0 |] [| 3.0; 3.0 |] |> expectError "s = 0" "not < 1"
            progress 2.0 [| 1.5 |] [| 5.0; 3.5 |] [| 3.0 |] |> expectError "inconsistent lengths" "inconsistent"
        }

        test "convexGradientDescentBound: a loss above L(W_ref) + ‖W_0 − W_ref‖²/(2ηt)" {
            // η = 1/2, L(W_ref) = 0.1, ‖W_0 − W_ref‖² = 1: bound 0.1 + 1/t
            let bound losses = Invariants.convexGradientDescentBound 0.0 0.0 0.5 losses 0.1 1.0
            bound [| 5.0; 1.1; 0.6; 0.4 |] |> expectOk "positive control (L_0 is not bounded; equalities at t = 1, 2)"
            bound [| 5.0; 1.1; 0.61; 0.4 |] |> expectError "t = 2 above" "t=2"
            bound [| 5.0; nextUp 1.1; 0.6; 0.4 |] |> expectError "t = 1, 1 ulp above" "t=1"
        }
    ]
