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

/// The tiled engine with b-row tiles, a memory budget of four tiles (Gram and factor tiles go to files, the feature
/// cache of `CertificateEngine.CertifyRowBlocks` is one tile: feature row tiles spill too) and a work directory.
let private spillingEngine (b: int) (directory: string) =
    { CertificateEngine.Default with Kind = EngineKind.Tiled; TileSize = b; MemoryBudgetBytes = int64 (4 * b * b * 8); WorkDirectory = directory }

let private denseEngine = { CertificateEngine.Default with Kind = EngineKind.Dense }

/// Bitwise equality of two float matrices (0.0 and −0.0 differ, NaN equals itself).
let private bitwiseEqual (a: float[,]) (b: float[,]) =
    Array2D.length1 a = Array2D.length1 b && Array2D.length2 a = Array2D.length2 b
    && Seq.forall (fun (i, j) -> System.BitConverter.DoubleToInt64Bits a.[i, j] = System.BitConverter.DoubleToInt64Bits b.[i, j])
           (seq { for i in 0 .. Array2D.length1 a - 1 do for j in 0 .. Array2D.length2 a - 1 -> i, j })

/// The count in a tiled log line "… N read back from spill files" / "(N computed, M read back)".
let private logCount (pattern: string) (log: seq<string>) =
    log |> Seq.tryPick (fun l -> let m = System.Text.RegularExpressions.Regex.Match(l, pattern) in if m.Success then Some (int m.Groups.[1].Value) else None)

/// A streamed instance: activation, n ∈ [30, 200] (softplus ≤ 40), inputs, narrow widths and m ≥ n − 1, tile size b
/// ∈ [12, 40].
let private streamedInstance (seed: int) =
    let rng = System.Random seed
    let act = [| Tanh; Sigmoid; Softplus |].[rng.Next 3]
    let n = if act = Softplus then rng.Next(30, 41) else rng.Next(30, 201)
    let d = rng.Next(1, 5)
    let widths = List.init (rng.Next(1, 3)) (fun _ -> rng.Next(1, 5)) @ [ n - 1 + rng.Next(0, 4) ]
    // b ≥ 12: at most 17 tile rows. Many tiny tiles make ~10⁵ torch calls with implicitly created Scalars (`add_(t)`
    // is `add_(t, 1)`), and TorchSharp 0.107 may finalize such a Scalar during its native call (a GC from another
    // thread): a rare use-after-free ("toDouble … Expected false to be true") seen on the whole route too.
    act, randomInputs seed n d, widths, rng.Next(12, 41)

[<Tests>]
let streamedTests =
    testSequenced <| testList "Proofs.FC.Streamed" [
        testPropertyWithConfig config "featureRows: every row block is bitwise those rows of features net x; ‖N − T‖_F from blocks in any cut and order is bitwise measuredError of the whole Φ" <| fun (seed: int) ->
            let act, x, widths, s = instance seed
            let r = prove act x widths s
            let w = Option.get r.Witness
            let n = Array2D.length1 x
            let phi = features r.Network x
            let rng = System.Random(seed + 1)
            let cuts = 0 :: (List.init (rng.Next(0, 6)) (fun _ -> rng.Next(1, n)) |> List.distinct |> List.sort) @ [ n ]
            let blocks = cuts |> List.pairwise
            for r0, r1 in blocks do
                Expect.isTrue (bitwiseEqual (featureRows r.Network x r0 r1) phi.[r0 .. r1 - 1, *]) (sprintf "rows %d … %d of n = %d" r0 (r1 - 1) n)
            let e = MeasuredError w
            for r0, r1 in blocks |> List.sortBy (fun _ -> rng.Next()) do
                e.Add(r0, featureRows r.Network x r0 r1)
            Expect.equal (System.BitConverter.DoubleToInt64Bits e.Value) (System.BitConverter.DoubleToInt64Bits (measuredError w phi))
                (sprintf "‖N − T‖_F over %d blocks: %g vs %g" blocks.Length e.Value (measuredError w phi))
            Expect.equal (inequalityMeasured w e.Value) (inequalityOf w phi) "the inequality"

        test "featureBlockRows: the largest divisor of b whose rows fit featureBlockBytes" {
            Expect.equal (featureBlockRows 2048 59999) 128 "n = 60,000: 64 MiB / 480 kB = 139 rows → 128 (divides 2048)"
            Expect.equal (featureBlockRows 16 200) 16 "small m: a whole tile"
            Expect.equal (featureBlockRows 7 (1 <<< 22)) 1 "rows of 32 MiB: two do not fit, one row"
            for b in [ 1; 6; 7; 12; 2048 ] do
                for m in [ 1; 1000; 100000; 10000000 ] do
                    let rows = featureBlockRows b m
                    Expect.isTrue (rows >= 1 && b % rows = 0) (sprintf "b = %d, m = %d: %d rows divide b" b m rows)
                    Expect.isTrue (rows = 1 || int64 rows * int64 m * 8L <= featureBlockBytes) (sprintf "b = %d, m = %d: %d rows fit" b m rows)
        }

        testPropertyWithConfig (Seeds.config 6) "streamed witness on the tiled engine (small tiles, tiles and feature rows spilled): certificate bitwise the tiled certificate of the whole Φ̃, inequality and flush count those of the whole-matrix route, PhiTilde null" <| fun (seed: int) ->
            let act, x, widths, b = streamedInstance seed
            let n = Array2D.length1 x
            let what = sprintf "%s n = %d widths %A b = %d" act.Name n widths b
            let whole = proveOn denseEngine act x widths seed
            use work = new MathCoreTests.TiledTests.WorkDir()
            let engine = spillingEngine b work.Path
            Expect.isTrue (streamsFeatures engine n (List.last widths)) "the tiled engine streams"
            Expect.isFalse (streamsFeatures denseEngine n (List.last widths)) "the dense engine does not"
            let log = System.Collections.Generic.List<string>()
            let streamed = proveOnLogged engine (System.Action<string>(fun l -> log.Add l)) act x widths seed
            Expect.isNull streamed.PhiTilde (what + ": no Φ̃ kept on the streamed route")
            Expect.isNotNull whole.PhiTilde (what + ": Φ̃ kept on the whole route")
            Expect.equal (parameterFingerprint streamed.Network) (parameterFingerprint whole.Network) (what + ": the same witness")
            Expect.equal streamed.Inequality whole.Inequality (what + ": the inequality of the whole Φ")
            Expect.equal streamed.FlushedEntries whole.FlushedEntries (what + ": flushed entries counted across blocks")
            // (the Gram route on tiles; Auto falls back to the orthogonal route on the joined blocks when it is Inconclusive)
            if streamed.Certificate.Route = CertificateRoute.Gram then Expect.stringContains streamed.Certificate.Method "tiles" (what + ": the tiled engine ran")
            if n > b then
                // Each row tile is produced once and spilled to a file; whether one is read back depends on the Gram's
                // panels (a panel that holds every row tile reads none back: n = 35, b = 34, seed −17911584), which the
                // MathCore.Tiled spill property covers. Here: produced once each, spilled, the spill files removed.
                Expect.equal (logCount @"features: (\d+) row tiles produced" log) (Some ((n + b - 1) / b)) (sprintf "%s: each row tile produced once: %A" what (List.ofSeq log))
                Expect.exists log (fun l -> l.Contains "(spill files removed)") (sprintf "%s: feature rows spilled: %A" what (List.ofSeq log))
            Expect.isEmpty (System.IO.Directory.GetFileSystemEntries work.Path) (what + ": tile folder removed")
            let tiledWhole = certifyFeaturesOn engine streamed.Certificate.Subject (features streamed.Network x)
            Expect.equal (MathCoreTests.TiledTests.essence streamed.Certificate) (MathCoreTests.TiledTests.essence tiledWhole.Certificate)
                (sprintf "%s: %s" what (MathCoreTests.TiledTests.differences streamed.Certificate tiledWhole.Certificate))
            Expect.equal streamed.CertifiedSigmaMinLower tiledWhole.SigmaMinLower (what + ": the flush-corrected bound")
            Expect.equal streamed.FlushedEntries tiledWhole.FlushedEntries (what + ": the flush count of the tiled whole route")
            if mustCertify whole then Expect.equal streamed.Certificate.Verdict Verdict.Certified (sprintf "%s: %s" what streamed.Certificate.Reason)

        test "sigmoid witness n = 150 streamed (b = 16): the entries below 1e-150 are flushed and counted across blocks as on the whole Φ" {
            let x = randomInputs 8 150 3
            let whole = proveOn denseEngine Sigmoid x [ 3; 149 ] 8
            use work = new MathCoreTests.TiledTests.WorkDir()
            let streamed = proveOn (spillingEngine 16 work.Path) Sigmoid x [ 3; 149 ] 8
            Expect.isGreaterThan whole.FlushedEntries 0L "saturated sigmoids below 1e-150"
            Expect.equal streamed.FlushedEntries whole.FlushedEntries "the same count"
            Expect.equal streamed.Certificate.Verdict Verdict.Certified streamed.Certificate.Reason
            Expect.isLessThanOrEqual streamed.CertifiedSigmaMinLower (svdSigmaMin whole.PhiTilde + svdSlack whole.PhiTilde) "sound vs the SVD of the whole Φ̃"
            Expect.stringContains (report streamed) "streamed" "the report says Φ̃ was streamed"
        }

        test "a killed streamed certificate resumes from its work directory: the rerun reads the tiles back and gives the identical certificate" {
            let x = randomInputs 12 90 4
            let r = prove Tanh x [ 3; 3; 89 ] 12
            let rows = featureRows r.Network x
            let subject = r.Certificate.Subject
            use reference = new MathCoreTests.TiledTests.WorkDir()
            let expected = certifyFeatureRowsOn (spillingEngine 8 reference.Path) null subject rows (fun _ _ -> ())
            Expect.equal expected.Certificate.Verdict Verdict.Certified expected.Certificate.Reason
            use work = new MathCoreTests.TiledTests.WorkDir()
            let engine = spillingEngine 8 work.Path
            // the flush pass produces each of the 12 blocks once; the kill comes at the 7th row tile of the Gram
            let mutable calls = 0
            let killing r0 r1 =
                calls <- calls + 1
                if calls > 12 + 6 then raise (System.OperationCanceledException "killed")
                rows r0 r1
            Expect.throwsT<System.OperationCanceledException> (fun () -> certifyFeatureRowsOn engine null subject killing (fun _ _ -> ()) |> ignore) "killed mid-Gram"
            Expect.isNonEmpty (System.IO.Directory.GetDirectories work.Path) "the killed run's tiles wait in the work directory"
            let log = System.Collections.Generic.List<string>()
            let resumed = certifyFeatureRowsOn engine (System.Action<string>(fun l -> log.Add l)) subject rows (fun _ _ -> ())
            Expect.isGreaterThan (defaultArg (logCount @"^gram:.*\(\d+ computed, (\d+) read back\)" log) 0) 0
                (sprintf "Gram tiles read back: %A" (List.ofSeq log))
            Expect.equal (MathCoreTests.TiledTests.essence resumed.Certificate) (MathCoreTests.TiledTests.essence expected.Certificate)
                (MathCoreTests.TiledTests.differences resumed.Certificate expected.Certificate)
            Expect.equal resumed.FlushedEntries expected.FlushedEntries "flush count"
            Expect.isEmpty (System.IO.Directory.GetFileSystemEntries work.Path) "tile folder removed once the certificate is made"
        }
    ]

