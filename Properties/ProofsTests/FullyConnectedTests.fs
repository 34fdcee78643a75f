/// Properties of the executable FC theorem (SPEC §5): the construction is always Certified, its
/// slope satisfies the proof's inequality, the certified σ_min is sound against MathNet's SVD,
/// and deliberately wrong witnesses are rejected by the checker.
module ResearchFramework.Properties.ProofsTests.FullyConnectedTests

open Expecto
open ResearchFramework.MathCore
open ResearchFramework.Proofs.Network
open ResearchFramework.Proofs.FullyConnected
open ResearchFramework.Properties

/// A random instance: n, input dim, 1–3 narrow widths (1–4, width 1 included), m ≥ n − 1.
let instance (seed: int) =
    let rng = System.Random seed
    let act = [| Tanh; Sigmoid; Softplus |].[rng.Next 3]
    // softplus witnesses are ramps: κ(Φ̃) grows like range/δ, so the float64 Gram test is
    // kept to n ≤ 40 for them (see docs/theory.md §4, "Limits")
    let n = if act = Softplus then rng.Next(2, 41) else rng.Next(2, 201)
    let d = rng.Next(1, 6)
    let depth = rng.Next(1, 4)
    let narrow = List.init depth (fun _ -> rng.Next(1, 5))
    let m = n - 1 + rng.Next(0, 6)
    act, randomInputs seed n d, narrow @ [ m ], seed

/// The sound-comparison slack of an SVD-computed σ_min (backward stable: O(u·σ_max)).
let svdSlack (phiTilde: float[,]) =
    let a = MathNet.Numerics.LinearAlgebra.Matrix<float>.Build.DenseOfArray phiTilde
    64.0 * Tolerance.epsilon Tolerance.Float64 * a.FrobeniusNorm()

/// Softplus witnesses with range(z)/δ above `softplusCertifiableSpread` may be Inconclusive
/// (never Refuted); everything else must be Certified.
let mustCertify (r: FcResult) =
    match r.Activation, r.Witness with
    | Softplus, Some w -> spread w <= softplusCertifiableSpread
    | _ -> true

let expectSoundAndCertified (r: FcResult) =
    let what = sprintf "%s n=%d widths=%A seed=%d" r.Activation.Name r.Inputs r.Widths r.Seed
    Expect.isEmpty r.HypothesisFailures (what + ": hypotheses")
    let w = Option.get r.Witness
    if mustCertify r then
        Expect.equal r.Certificate.Verdict Verdict.Certified (sprintf "%s: verdict (%s)" what r.Certificate.Reason)
    else
        Expect.notEqual r.Certificate.Verdict Verdict.Refuted (sprintf "%s (spread %g): never Refuted" what (spread w))
    let q = Option.get r.Inequality
    Expect.isTrue q.Holds (sprintf "%s: lhs %g ≤ β/2 = %g" what q.ErrorBound (q.LimitSigmaMinLower / 2.0))
    Expect.isTrue (q.EffectiveSlope >= q.SufficientEffectiveSlope) (what + ": a_eff ≥ a*")
    Expect.isTrue (q.MeasuredError <= q.ErrorBound * (1.0 + 1e-9) + 1e-12)
        (sprintf "%s: measured ‖E‖ %g ≤ bound %g" what q.MeasuredError q.ErrorBound)
    let svd = svdSigmaMin r.PhiTilde
    let slack = svdSlack r.PhiTilde
    Expect.isTrue (r.CertifiedSigmaMinLower > 0.0 || not (mustCertify r)) (what + ": certified bound positive")
    Expect.isTrue (r.CertifiedSigmaMinLower <= svd + slack)
        (sprintf "%s: certified %g ≤ SVD σ_min %g (+%g)" what r.CertifiedSigmaMinLower svd slack)
    Expect.isTrue (q.TheoremSigmaMinLower > 0.0 && q.TheoremSigmaMinLower <= svd + slack)
        (sprintf "%s: theorem bound %g ≤ SVD σ_min %g" what q.TheoremSigmaMinLower svd)
    w

/// PROOFS_MAX_TESTS sets the number of cases of every Proofs property (a stress run); the
/// defaults keep the whole suite well under the ~40 s budget.
let stressTests (defaultCount: int) =
    match System.Environment.GetEnvironmentVariable "PROOFS_MAX_TESTS" with
    | null | "" -> defaultCount
    | s -> int s

let private config = ResearchFramework.Properties.Seeds.config (stressTests 25)

/// A certified tanh witness on 40 points for the wrong-variant tests.
let private baseCase () =
    let x = randomInputs 11 40 3
    let r = prove Tanh x [ 2; 3; 40 ] 11
    x, Option.get r.Witness

let private withThresholds (w: FcWitness) (t: float[]) =
    { w with Thresholds = t; Wide = wideLayer w.Wide.Outputs w.Direction w.Slope t (w.SortedZ.[0] - 1.0) }

let private withSlope (w: FcWitness) (a: float) =
    { w with Slope = a; Wide = wideLayer w.Wide.Outputs w.Direction a w.Thresholds (w.SortedZ.[0] - 1.0) }

let private hasFailure (fragment: string) (failures: string list) =
    failures |> List.exists (fun f -> f.Contains fragment)

[<Tests>]
let tests =
    testSequenced <| testList "Proofs.FC" [
        testPropertyWithConfig config "construction is Certified, satisfies its inequality and is sound vs SVD" <| fun (seed: int) ->
            let act, x, widths, s = instance seed
            let r = prove act x widths s
            let w = expectSoundAndCertified r
            let failures = check x w
            Expect.isEmpty failures (sprintf "checker accepts the construction: %A" failures)

        test "rf prove fc --n 200 --widths 3,3,200 is Certified" {
            let r = runFc 200 [ 3; 3; 200 ] 1
            let w = expectSoundAndCertified r
            Expect.isEmpty (check (randomInputs 1 200 defaultInputDim) w) "checker"
            Expect.stringContains (report r) "Certified" "report"
        }

        test "parseWidths reads --widths and rejects bad input" {
            Expect.equal (parseWidths "3,3,200") [ 3; 3; 200 ] "3,3,200"
            Expect.equal (parseWidths " 1 , 40 ") [ 1; 40 ] "spaces"
            Expect.throwsT<System.ArgumentException> (fun () -> parseWidths "3,0,200" |> ignore) "zero"
            Expect.throwsT<System.ArgumentException> (fun () -> parseWidths "3,x" |> ignore) "not a number"
        }

        test "width-1 narrow layers and every activation" {
            for act in [ Tanh; Sigmoid; Softplus ] do
                let x = randomInputs 5 60 2
                let r = prove act x [ 1; 2; 59 ] 5
                let w = expectSoundAndCertified r
                Expect.isEmpty (check x w) (act.Name + ": checker")
        }

        test "no narrow layers (depth 0): the wide layer reads the inputs" {
            let x = randomInputs 6 50 3
            let r = prove Sigmoid x [ 49 ] 6
            let w = expectSoundAndCertified r
            Expect.isEmpty w.Narrow "no narrow layers"
            Expect.isEmpty (check x w) "checker"
        }

        test "checker rejects thresholds that are not between consecutive sorted z" {
            let x, w = baseCase ()
            Expect.isEmpty (check x w) "the genuine witness passes"
            // thresholds on the points themselves
            let onPoints = withThresholds w (Array.init w.Thresholds.Length (fun j -> w.SortedZ.[j + 1]))
            Expect.isTrue (check x onPoints |> hasFailure "not between") "t_j = z_(j) rejected"
            // thresholds shifted past the next point
            let shifted = withThresholds w (w.Thresholds |> Array.mapi (fun j t -> if j = 5 then w.SortedZ.[j + 1] + 0.25 * w.MinGap else t))
            Expect.isTrue (check x shifted |> hasFailure "not between") "shifted t_6 rejected"
            // thresholds all below the data: the limit matrix is singular
            let below = withThresholds w (Array.create w.Thresholds.Length (w.SortedZ.[0] - 1.0))
            Expect.isTrue (check x below |> hasFailure "not between") "thresholds below the data rejected"
            let fake = { w with Thresholds = below.Thresholds }
            Expect.isFalse (check x fake).IsEmpty "inconsistent wide layer rejected"
        }

        test "checker rejects a slope below the proof's sufficient slope" {
            let x, w = baseCase ()
            let small = withSlope w (w.Slope / 8.0)
            let failures = check x small
            Expect.isTrue (failures |> hasFailure "slope too small") "a/8 rejected"
            Expect.isTrue (failures |> hasFailure "inequality fails") "the inequality fails at a/8"
            let q = inequalityOf small (features small.Network x)
            Expect.isFalse q.Holds "lhs > β/2"
        }

        test "duplicate inputs are Refuted" {
            let x = randomInputs 3 30 2
            x.[17, *] <- x.[4, *]
            let r = prove Tanh x [ 3; 40 ] 3
            Expect.isNonEmpty r.HypothesisFailures "hypothesis failure reported"
            Expect.isNone r.Witness "no witness"
            Expect.equal r.Certificate.Verdict Verdict.Refuted r.Certificate.Reason
        }

        test "ReLU is outside the theorem: no witness is claimed" {
            let r = prove Relu (randomInputs 4 20 2) [ 3; 25 ] 4
            Expect.isNonEmpty r.HypothesisFailures "not analytic"
            Expect.isNone r.Witness "no witness"
        }

        test "malformed widths are argument errors" {
            let x = randomInputs 4 10 2
            Expect.throwsT<System.ArgumentException> (fun () -> prove Tanh x [] 1 |> ignore) "no layers"
            Expect.throwsT<System.ArgumentException> (fun () -> prove Tanh x [ 0; 10 ] 1 |> ignore) "zero width"
        }

        test "m + 1 < n is Refuted" {
            let r = runFc 50 [ 3; 40 ] 2
            Expect.isNonEmpty r.HypothesisFailures "hypothesis failure reported"
            Expect.equal r.Certificate.Verdict Verdict.Refuted r.Certificate.Reason
        }
    ]
