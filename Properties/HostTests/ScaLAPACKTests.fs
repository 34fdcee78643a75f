/// `mpirun -np P rf certify --matrix FILE --engine scalapack` (Math.Core/ScaLAPACK.fs, docs/theory.md §3 "ScaLAPACK")
/// on localhost with P = 2 and 4: the verdict of the in-process dense engine (Gram route), the bounds within the
/// stated error terms of the dense ones, each term of the same size as the dense one, the σ bounds sound against
/// MathNet's SVD, and every rank reporting the same verdict and bounds. Needs `mpirun` and Debian's
/// `libscalapack-openmpi.so` (`.ci/install-scalapack.sh`): when they are missing the tests fail if
/// RF_REQUIRE_SCALAPACK=1 (set by .ci/run) and are skipped naming what is missing otherwise — never a silent pass.
module ResearchFramework.Properties.HostTests.ScaLAPACKTests

open System
open System.IO
open System.Text.RegularExpressions
open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Properties.HostTests.HostTestSupport
open ResearchFramework.Properties.MathCoreTests.Generators

/// What is missing for the engine on this machine (None: mpirun on PATH and the library loads).
let private missing =
    lazy (
        let mpirun =
            (Environment.GetEnvironmentVariable "PATH").Split(':', StringSplitOptions.RemoveEmptyEntries)
            |> Array.exists (fun dir -> Path.IsPathRooted dir && File.Exists(Path.Combine(dir, "mpirun")))
        match mpirun, ScaLAPACK.available () with
        | true, Ok () -> None
        | false, Ok () -> Some "mpirun is not on PATH (apt-get install openmpi-bin)"
        | true, Error why -> Some why
        | false, Error why -> Some ("mpirun is not on PATH; " + why))

/// Fails (RF_REQUIRE_SCALAPACK=1, as in CI) or skips with the reason when the engine cannot run here.
let private requireEngine () =
    match missing.Value with
    | None -> ()
    | Some why when Environment.GetEnvironmentVariable "RF_REQUIRE_SCALAPACK" = "1" ->
        failtestf "RF_REQUIRE_SCALAPACK=1 but %s (.ci/install-scalapack.sh installs it)" why
    | Some why ->
        // Printed as well as recorded: Expecto's summary counts skipped tests without their reasons.
        let reason = sprintf "ScaLAPACK engine not testable here: %s (.ci/run installs it and then requires these tests)" why
        eprintfn "MathCore.ScaLAPACK: skipped: %s" reason
        skiptest reason

/// `mpirun -np ranks rf certify …` in `dir`, one BLAS thread per rank, `environment` exported to every rank.
let private mpirunWith (environment: (string * string) list) (timeoutMs: int) (dir: string) (ranks: int) (args: string list) =
    let environment = ("OPENBLAS_NUM_THREADS", "1") :: environment
    ResearchFramework.Properties.TestSupport.runProcess "mpirun"
        ([ "--allow-run-as-root"; "--oversubscribe"; "-np"; string ranks ]
         @ (environment |> List.collect (fun (k, v) -> [ "-x"; k + "=" + v ]))
         @ [ CliProcessTests.rfPath.Value; "certify" ] @ args)
        dir environment timeoutMs

let private mpirunWithin = mpirunWith []

let private mpirun = mpirunWithin 300000

/// The per-rank lines "rank r of P: verdict V, σ_min ≥ a, σ_max ≤ b" of stderr: (r, P, V, a, b).
let private rankLines (stderr: string) =
    [ for m in Regex.Matches(stderr, @"rank (\d+) of (\d+): verdict (\w+), σ_min ≥ (\S+), σ_max ≤ (\S+)") ->
        int m.Groups.[1].Value, int m.Groups.[2].Value, m.Groups.[3].Value,
        Double.Parse(m.Groups.[4].Value, Globalization.CultureInfo.InvariantCulture),
        Double.Parse(m.Groups.[5].Value.TrimEnd(','), Globalization.CultureInfo.InvariantCulture) ]

/// Writes Φ (float64 tensor) as a C-order .npy of float32 (`f32`) or float64; returns the tensor the file holds.
let private writeNpy (path: string) (f32: bool) (phi: torch.Tensor) : torch.Tensor =
    let n, m = int phi.shape.[0], int phi.shape.[1]
    if f32 then
        let t = phi.to_type(torch.float32)
        File.WriteAllBytes(path, npyBytes 1uy "<f4" false [ n; m ] (f4Bytes (t.data<float32>().ToArray())))
        t
    else
        File.WriteAllBytes(path, npyBytes 1uy "<f8" false [ n; m ] (f8Bytes (phi.data<float>().ToArray())))
        phi.clone()

/// The ScaLAPACK certificate agrees with the dense one: same verdict, same scale, Σ‖φ̃‖² and the accumulation bound
/// within E, each Cholesky backward-error term and rounding term within 1e−6 relative of the dense one (the traces
/// differ only by the shifts and fl G's rounding), the λ_min and λ_max bounds within the two routes' stated error terms
/// plus the shifts' difference.
let private expectTermsAgree (what: string) (dense: Certificate) (distributed: Certificate) =
    let info = sprintf "%s: dense %O (%s) %A; scalapack %O (%s) %A" what dense.Verdict dense.Reason dense.Terms distributed.Verdict distributed.Reason distributed.Terms
    Expect.equal distributed.Verdict dense.Verdict ("same verdict. " + info)
    let d, t = dense.Terms, distributed.Terms
    Expect.equal t.ScaleExponent d.ScaleExponent ("same scale. " + info)
    let e = max d.AccumulationError 1e-300
    Expect.isLessThanOrEqual (abs (t.SquaredNormSumUpper - d.SquaredNormSumUpper)) (2.0 * e) ("Σ‖φ̃‖² within E. " + info)
    // the same E when both count the same h (the dense Gram's blocked h_G is below ScaLAPACK's m' once m' > BlockColumns)
    if t.AccumulationGammaIndex = d.AccumulationGammaIndex then
        Expect.isLessThanOrEqual (abs (t.AccumulationError - d.AccumulationError)) (1e-9 * e) ("the same accumulation bound E. " + info)
    else
        Expect.isGreaterThan t.AccumulationGammaIndex d.AccumulationGammaIndex ("ScaLAPACK counts the any-order m'. " + info)
        Expect.isGreaterThanOrEqual t.AccumulationError d.AccumulationError ("so its E is the larger. " + info)
    let relative (a: float) (b: float) = abs (a - b) <= 1e-6 * max (abs a) (abs b)
    if dense.IsCertified then
        Expect.isTrue (relative t.CholeskyBackwardError d.CholeskyBackwardError) ("the same Demmel backward-error term γ'·tr(Ã). " + info)
        Expect.isTrue (relative t.ShiftRoundingError d.ShiftRoundingError) ("the same shift rounding term. " + info)
        let errors (x: CertificateTerms) = x.ShiftRoundingError + x.CholeskyBackwardError + x.AccumulationError
        let allowed = abs (t.Shift - d.Shift) + errors d + errors t
        Expect.isLessThanOrEqual (abs (t.LambdaMinLower - d.LambdaMinLower)) (allowed * (1.0 + 1e-12)) ("λ_min bounds within the error terms. " + info)
    Expect.equal (t.LambdaMaxUpper > 0.0) (d.LambdaMaxUpper > 0.0) ("a σ_max trial succeeded on both or neither. " + info)
    if d.LambdaMaxUpper > 0.0 then
        Expect.isTrue (relative t.LambdaMaxCholeskyBackwardError d.LambdaMaxCholeskyBackwardError) ("the same σ_max-side backward-error term. " + info)
        let errors (x: CertificateTerms) = x.LambdaMaxTrialRoundingError + x.LambdaMaxCholeskyBackwardError + x.AccumulationError
        let allowed = abs (t.LambdaMaxTrial - d.LambdaMaxTrial) + errors d + errors t
        Expect.isLessThanOrEqual (abs (t.LambdaMaxUpper - d.LambdaMaxUpper)) (allowed * (1.0 + 1e-12)) ("λ_max bounds within the error terms. " + info)

/// `expectTermsAgree`, and the σ bounds sound against MathNet's SVD of Φ̃.
let private expectAgree (what: string) (dense: Certificate) (distributed: Certificate) (tilde: torch.Tensor) =
    expectTermsAgree what dense distributed
    let info = sprintf "%s: scalapack %O (%s)" what distributed.Verdict distributed.Reason
    let sigmaMax = mathNetSigmaMax tilde
    let slack = ResearchFramework.Properties.Tolerance.svdSlack tilde.shape.[0] tilde.shape.[1] sigmaMax
    Expect.isGreaterThanOrEqual distributed.SigmaMaxUpper (sigmaMax - slack) ("σ_max bound ≥ SVD σ_max (soundness). " + info)
    if distributed.IsCertified then
        Expect.isLessThanOrEqual distributed.SigmaMinLower (mathNetSigmaMin tilde + slack) ("σ_min bound ≤ SVD σ_min (soundness). " + info)

/// Every rank printed its line, with rank 0's verdict and bounds (those of `distributed`, rank 0's JSON).
let private expectRanksAgree (name: string) (ranks: int) (err: string) (distributed: Certificate) =
    let lines = rankLines err
    Expect.equal (lines |> List.map (fun (r, _, _, _, _) -> r) |> List.sort) [ 0 .. ranks - 1 ] (sprintf "%s: one line per rank. %s" name err)
    for (r, p, verdict, sigmaMin, sigmaMax) in lines do
        Expect.equal p ranks "rank count"
        Expect.equal verdict (string distributed.Verdict) (sprintf "%s: rank %d's verdict is rank 0's" name r)
        Expect.equal sigmaMin distributed.SigmaMinLower (sprintf "%s: rank %d's σ_min bound is rank 0's" name r)
        Expect.equal sigmaMax distributed.SigmaMaxUpper (sprintf "%s: rank %d's σ_max bound is rank 0's" name r)

/// Runs one case: Φ written to a file, certified in process (dense, Gram route: the ScaLAPACK engine has no
/// orthogonal route) and under mpirun with `ranks` ranks; every rank's line checked against rank 0's JSON.
let private runCase (name: string) (f32: bool) (ranks: int) (extra: string list) (phi: torch.Tensor) =
    requireEngine ()
    use dir = new TempDir()
    use held = writeNpy (dir.File "x.npy") f32 phi
    let dense = Certify.certifyMatrix { Certify.defaults with Route = Certify.RouteChoice.Gram } (subject held true) held
    let code, out, err = mpirun dir.Path ranks ([ "--matrix"; "x.npy"; "--engine"; "scalapack"; "--json"; "s.json" ] @ extra)
    let expectedCode = if dense.IsCertified then 0 else 1
    Expect.equal code expectedCode (sprintf "%s: mpirun exit code (dense %O). stdout: %s stderr: %s" name dense.Verdict out err)
    let distributed = CertificateJson.load (dir.File "s.json")
    if not (distributed.Precision.Contains "no Gram formed") then
        Expect.stringContains distributed.Method "ScaLAPACK" "the ScaLAPACK engine ran"
    expectRanksAgree name ranks err distributed
    use tilde = HeuristicRank.withBiasColumn (held.to_type(torch.float64))
    expectAgree name dense distributed tilde
    dense, distributed

[<Tests>]
let tests =
    testSequenced <| testList "MathCore.ScaLAPACK" [
        test "300 × 700 Gaussian (float32 file), 4 ranks on a 2 × 2 grid, NB = 64 (n = 4·64 + 44): Certified as the dense engine, bounds within the error terms, every rank agrees" {
            use phi = gaussian 20261202 300 700
            let dense, _ = runCase "gaussian" true 4 [ "--block"; "64" ] phi
            Expect.isTrue dense.IsCertified "the dense engine certifies it"
        }
        test "300 × 700 Gaussian, 2 ranks (1 × 2 grid) and a 2 × 1 grid: the same" {
            use phi = gaussian 20261203 300 700
            runCase "gaussian, 1 × 2" false 2 [ "--block"; "64" ] phi |> ignore
            runCase "gaussian, 2 × 1" false 2 [ "--block"; "48"; "--grid"; "2x1" ] phi |> ignore
        }
        test "rank-deficient (rank 40 of 200 × 300): Inconclusive on both, 2 ranks" {
            use phi = ofRank 77 200 300 40
            let dense, distributed = runCase "rank 40" false 2 [ "--block"; "32" ] phi
            Expect.equal dense.Verdict Verdict.Inconclusive "never Certified below full rank"
            Expect.equal distributed.SigmaMinLower 0.0 "no σ_min bound"
        }
        test "nearly singular (row 199 = row 0 + 3e−5·noise, 200 × 260, NB = 24): Certified on both with a small σ_min, 4 ranks" {
            use phi =
                use scope = torch.NewDisposeScope()
                let g = gaussian 91 200 260
                g.[199L].copy_(g.[0L].add(gaussian 92 1 260 |> fun t -> t.[0L].mul(scalar 3e-5))) |> ignore
                g.MoveToOuterDisposeScope()
            let dense, distributed = runCase "nearly singular" false 4 [ "--block"; "24" ] phi
            Expect.isTrue dense.IsCertified ("dense certifies it: " + dense.Reason)
            Expect.isLessThan distributed.SigmaMinLower 1e-3 "σ_min is small"
        }
        test "an exact duplicate row: Refuted (rows confirmed on the file), 2 ranks" {
            use phi =
                use scope = torch.NewDisposeScope()
                let g = gaussian 5 120 200
                g.[97L].copy_(g.[13L]) |> ignore
                g.MoveToOuterDisposeScope()
            let _, distributed = runCase "duplicate" false 2 [ "--block"; "16" ] phi
            Expect.equal distributed.Verdict Verdict.Refuted "Refuted"
            Expect.stringContains distributed.Reason "rows 13 and 97" "names the rows"
        }
        test "n = 10 < NB = 256 on a 2 × 2 grid: three of the four ranks hold no part of fl G, the same certificate" {
            use phi = gaussian 3 10 20
            runCase "one block" false 4 [] phi |> ignore
        }
        test "tall (60 × 40, m + 1 < n): Refuted by shape without a Gram, as the dense engine, 2 ranks" {
            use phi = gaussian 8 60 40
            let _, distributed = runCase "tall" false 2 [ "--block"; "16" ] phi
            Expect.equal distributed.Verdict Verdict.Refuted "Refuted"
            Expect.stringContains distributed.Reason "columns = 41 < n = 60" "by shape"
        }
        test "--grid and --block without --engine scalapack are refused (a command-line error, exit ≠ 0)" {
            use dir = new TempDir()
            let code, _, err = CliProcessTests.runRf dir.Path [ "certify"; "--matrix"; "x.npy"; "--grid"; "2x2" ]
            Expect.notEqual code 0 ("refused: " + err)
            Expect.stringContains err "--grid and --block go with --engine scalapack" "says so"
        }
        test "--config (a model's features, each rank computing its own rows): 4 ranks on a 2 × 2 grid, and 2 ranks reading Φ in 5 column panels from rank files: the dense engine's verdict and bounds (to 1e−4: each engine runs its own forward passes), every rank agrees, rows computed once, no file left" {
            requireEngine ()
            use dir = new TempDir()
            CliProcessTests.writeTinyMnist dir 30 10
            File.WriteAllText(dir.File "cfg.json", CliProcessTests.tinyConfig dir "m" 20 10 40 false)
            let certificateOf (runDir: string) = CertificateJson.load (Path.Combine(runDir, "certificates", "init-seed1.json"))
            // Two forward passes over the same batch need not give the same float32 bits (measured here: the same
            // command with NB = 8 and NB = 64 certifies features whose Σ‖φ̃‖² differ by 2·10⁻¹⁰ relative, one ulp of
            // one feature; the CPU BLAS's results depend on its buffers' alignment), so each engine certifies the Φ it
            // computed: the verdict is the same and the bounds agree to 1e−4 (as the tiled engine's model test), while
            // the agreement within the error terms for one Φ is the matrix tests' above. The reference runs under
            // mpirun as well (one rank, the dense engine), in the ranks' environment.
            let code, out, err = mpirunWith [] 300000 dir.Path 1 [ "--config"; "cfg.json"; "--engine"; "dense" ]
            Expect.equal code 0 (sprintf "dense: Certified. %s %s" out err)
            let denseRun = CliProcessTests.runDirOf dir "m"
            let dense = certificateOf denseRun
            Directory.Delete(denseRun, true)
            let check (name: string) (ranks: int) (environment: (string * string) list) (args: string list) =
                let code, out, err = mpirunWith environment 300000 dir.Path ranks ([ "--config"; "cfg.json"; "--engine"; "scalapack" ] @ args)
                Expect.equal code 0 (sprintf "%s: Certified, exit 0. stdout: %s stderr: %s" name out err)
                let run = CliProcessTests.runDirOf dir "m"
                let distributed = certificateOf run
                Expect.stringContains distributed.Method "ScaLAPACK" "the ScaLAPACK engine ran"
                Expect.equal distributed.Subject dense.Subject (name + ": the same subject (data, set, model, parameters, taps)")
                expectRanksAgree name ranks err distributed
                Expect.equal distributed.Verdict dense.Verdict (name + ": the dense engine's verdict")
                let close (a: float) (b: float) = abs (a - b) <= 1e-4 * abs b
                Expect.isTrue (close distributed.SigmaMinLower dense.SigmaMinLower)
                    (sprintf "%s: σ_min bound %g vs dense %g" name distributed.SigmaMinLower dense.SigmaMinLower)
                Expect.isTrue (close distributed.SigmaMaxUpper dense.SigmaMaxUpper)
                    (sprintf "%s: σ_max bound %g vs dense %g" name distributed.SigmaMaxUpper dense.SigmaMaxUpper)
                Directory.Delete(run, true)
                err
            check "2 × 2, NB = 8" 4 [] [ "--block"; "8" ] |> ignore
            // 2 × 1 grid, NB = 8: a rank holds ≤ 16 rows, so 1 KiB panels are 8 columns wide: 5 panels of Φ (m = 40).
            let err = check "2 × 1, 5 panels" 2 [ "RF_TEST_SCALAPACK_PANEL_BYTES", "1024" ] [ "--grid"; "2x1"; "--block"; "8"; "--work-dir"; "rank-files" ]
            Expect.stringContains err "on 2 ranks" "the model path logged"
            // rank 0 holds rows 0–7, 16–23 (2 blocks): computed once each, read back for each of the 4 later panels
            Expect.stringContains err "rank 0's rows: 2 row blocks computed once, 8 reads from its feature file" "rows computed once, then read back"
            Expect.isFalse (Directory.Exists(dir.File "rank-files")) "the rank feature files and their folder are removed"
        }
        test "--config with a training image duplicated across ranks (rows 3 and 12 on a 2 × 1 grid, NB = 8): Refuted, the rows named, on every rank" {
            requireEngine ()
            use dir = new TempDir()
            CliProcessTests.writeTinyMnist dir 30 10
            // Image 12 := image 3 (rank 0 owns rows 0–7 and 16–23, rank 1 rows 8–15 and 24–29), adopted again as own data.
            let images = Path.Combine(dir.Path, "data", "mnist", "train-images-idx3-ubyte")
            let bytes = File.ReadAllBytes images
            let size = CliProcessTests.tinyImageRows * CliProcessTests.tinyImageCols
            Array.blit bytes (16 + 3 * size) bytes (16 + 12 * size) size
            File.WriteAllBytes(images, bytes)
            File.Delete(Path.Combine(dir.Path, "data", "mnist", "manifest.json"))
            let adopted, _, why = CliProcessTests.runRf dir.Path [ "data"; "fetch"; "mnist"; "--data-dir"; "data"; "--own" ]
            Expect.equal adopted 0 ("the edited data adopted: " + why)
            File.WriteAllText(dir.File "cfg.json", CliProcessTests.tinyConfig dir "d" 20 10 40 false)
            let code, out, err = mpirunWith [ "RF_TEST_SCALAPACK_PANEL_BYTES", "1024" ] 300000 dir.Path 2
                                     [ "--config"; "cfg.json"; "--engine"; "scalapack"; "--grid"; "2x1"; "--block"; "8" ]
            Expect.equal code 1 (sprintf "Refuted, exit 1. stdout: %s stderr: %s" out err)
            let c = CertificateJson.load (Path.Combine(CliProcessTests.runDirOf dir "d", "certificates", "init-seed1.json"))
            Expect.equal c.Verdict Verdict.Refuted c.Reason
            Expect.stringContains c.Reason "rows 3 and 12" "the duplicated rows named"
            expectRanksAgree "duplicate" 2 err c
        }
        test "bad input seen by one rank only (an entry below the underflow guard in a row only rank 1 reads): every rank exits 2, the row named, no rank left waiting" {
            requireEngine ()
            use dir = new TempDir()
            use phi = gaussian 4 40 60
            phi.[20L, 7L].fill_(scalar 1e-200) |> ignore
            writeNpy (dir.File "x.npy") false phi |> ignore
            // 2 × 1 grid, NB = 16: rank 0 reads rows 0–15 and 32–39, rank 1 rows 16–31. The watchdog (90 s) fails the
            // test if the ranks deadlock (rank 1 stopping while rank 0 waits in pdsyrk).
            let code, _, err = mpirunWithin 90000 dir.Path 2 [ "--matrix"; "x.npy"; "--engine"; "scalapack"; "--grid"; "2x1"; "--block"; "16" ]
            Expect.equal code 2 ("exit 2: " + err)
            Expect.stringContains err "feature row 20 has non-zero entries below 1e-150" "names the row"
        }
        test "bad input: a grid that does not match the ranks exits 2 on every rank, saying so once" {
            requireEngine ()
            use dir = new TempDir()
            use phi = gaussian 1 10 20
            writeNpy (dir.File "x.npy") false phi |> ignore
            let code, _, err = mpirun dir.Path 2 [ "--matrix"; "x.npy"; "--engine"; "scalapack"; "--grid"; "3x1" ]
            Expect.equal code 2 ("exit 2: " + err)
            Expect.stringContains err "--grid 3x1 has 3 processes but mpirun started 2 ranks" "names the mismatch"
        }
    ]
