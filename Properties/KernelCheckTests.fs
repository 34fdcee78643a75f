/// The convolution kernel self-check (MathCore.KernelCheck): the comparison catches broken kernels
/// (negative controls), accepts correct ones, the ladder picks the first passing path in every
/// outcome (stub checks), the native path really switches mkldnn off, and the suite's own kernels
/// passed their check at start-up (`suiteCases`, run by Main before any test).
module ResearchFramework.Properties.KernelCheckTests

open System
open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.MathCore.KernelCheck
open ResearchFramework.Algorithm
open ResearchFramework.Properties.AlgorithmTests

/// The convolution cases of the suite's conv nets: the tiny LeNet-5 (1×12×12, batches 4 and 8) and
/// the ResNet-18 k = 1/16 (3×8×8, batches 3 and 6) of the Algorithm tests, training and evaluation.
/// These are the shapes that went NaN on an AVX-512 (bf16/vnni) CPU with oneDNN's default kernels.
let suiteCases () =
    let lenet = Fixtures.lenet 1 12 3
    let resnet = { Name = "resnet18"; InputShape = [| 3; 8; 8 |]; Classes = 4; Widths = [||]; Activation = Activation.Relu
                   WidthMultiplier = 1.0 / 16.0; Precision = Precision.Float32; Taps = [||] }
    Networks.convolutionCases lenet [ 4; 8 ] [ 8; 3 ] @ Networks.convolutionCases resnet [ 3; 6 ] [ 6; 3 ]

/// Chooses the suite's kernel path at start-up (before any test): float32 and float64 on the test
/// device. Returns the environment line, or the refusal message.
let ensureForSuite () : Result<string, string> =
    let cases = suiteCases ()
    try
        for dtype in [ torch.float32; torch.float64 ] do ensure true (TestDevice.device ()) dtype cases
        Ok (environmentLine ())
    with :? KernelCheckException as e -> Error e.Message

let private case training =
    { Batch = 4L; InChannels = 2L; OutChannels = 3L; Height = 9L; Width = 7L; Kernel = (3L, 3L); Stride = (1L, 2L)
      Padding = (1L, 0L); Dilation = (1L, 1L); Groups = 1L; Bias = true; Training = training }

/// A stub report for the ladder tests.
let private report (path: KernelPath) (passed: bool) =
    { Path = path.Name; Device = "cpu"; DType = "Float32"; Cases = []; Passed = passed; Seconds = 0.0 }

[<Tests>]
let tests =
    testSequenced <| testList "MathCore.KernelCheck" [
        test "libtorch's convolutions pass on the path in effect (the suite's LeNet-5 and ResNet-18 shapes, float32 and float64)" {
            let cases = suiteCases ()
            Expect.isGreaterThanOrEqual cases.Length 10 "LeNet-5 and ResNet-18 cases found by the hooks"
            Expect.isTrue (cases |> List.exists (fun c -> c.Training)) "training cases"
            Expect.isTrue (cases |> List.exists (fun c -> not c.Training)) "inference cases"
            for dtype in [ torch.float32; torch.float64 ] do
                let r = check "in effect" (TestDevice.device ()) dtype cases
                Expect.isTrue r.Passed r.Summary
                Expect.equal r.Cases.Length cases.Length "every case checked"
        }

        test "start-up: Main chose a path, it is the one in effect, and the environment line names it" {
            match currentChoice () with
            | None -> failtest "Main did not run the kernel self-check"
            | Some (path, _, account) ->
                Expect.equal (mkldnnEnabled ()) (path <> Native) "mkldnn is off exactly on the native path"
                Expect.isFalse (nnpackEnabled ()) "NNPACK is off on every CPU path (outside the γ_K argument)"
                Expect.stringContains (environmentLine ()) ("convolution kernels: " + path.Name) "environment line names the path"
                Expect.stringContains account "self-check passed on" "and its account"
                Expect.isNull (Environment.GetEnvironmentVariable restartMarker) "the restart marker is not passed on to child processes"
        }

        test "oneDNN as in effect since start-up vs the float64 reference on the suite's shapes (float32): passes, or start-up rejected it" {
            // The minimal reproduction of the AVX-512 NaN: these exact shapes on the oneDNN path this process runs
            // (the detected ISA, or the cap a restart set). Where Main rejected it, the failure must show here too.
            let before = mkldnnEnabled ()
            try
                setMkldnnEnabled true
                let r = check "oneDNN (as started)" torch.CPU torch.float32 (suiteCases ())
                // The oneDNN path this process started on is the first float32 check of its ladder: "default" (the
                // detected ISA, or a cap the user set), or, in a process Main restarted, the AVX2-capped oneDNN
                // (on some AVX-512 CPUs that one fails too, and Main went on to the native path).
                let rejectedHere =
                    match currentChoice () with
                    | Some (_, reports, _) ->
                        match reports |> List.filter (fun q -> q.DType = string torch.float32) with
                        | first :: _ -> not first.Passed && not (first.Path.Contains rejectVariable)
                        | [] -> false
                    | None -> false
                if rejectedHere then Expect.isFalse r.Passed ("Main rejected oneDNN for float32; it still fails: " + r.Summary)
                else Expect.isTrue r.Passed r.Summary
            finally
                setMkldnnEnabled before
        }

        test "the native path switches mkldnn off in-process, and its kernels pass too" {
            let before = mkldnnEnabled ()
            try
                setMkldnnEnabled false
                Expect.isFalse (mkldnnEnabled ()) "mkldnn off"
                let r = check "native" torch.CPU torch.float32 (suiteCases ())
                Expect.isTrue r.Passed r.Summary
            finally
                setMkldnnEnabled before
            Expect.equal (mkldnnEnabled ()) before "restored"
        }

        test "negative controls: a NaN kernel, a kernel off by 1e-3 relative, and a kernel that drops one input channel all fail" {
            let nanKernel : Convolution = fun x w b c -> (libtorchConvolution x w b c).mul(scalar nan)
            let offKernel : Convolution = fun x w b c -> (libtorchConvolution x w b c).mul(scalar (1.0 + 1e-3))
            let dropKernel : Convolution = fun x w b c ->
                use mask = torch.ones_like(w)
                mask.narrow(1L, 0L, 1L).zero_() |> ignore
                libtorchConvolution x (w.mul(mask)) b c
            for training in [ true; false ] do
                for name, kernel in [ "NaN", nanKernel; "1e-3", offKernel; "dropped channel", dropKernel ] do
                    let r = checkWith kernel name torch.CPU torch.float32 [ case training ]
                    Expect.isFalse r.Passed (sprintf "%s kernel (training %b) must fail: %s" name training r.Summary)
            let nanCheck = checkCase nanKernel torch.CPU torch.float32 1UL (case false)
            Expect.isGreaterThan (nanCheck.Quantities.Head.NonFinite) 0L "NaN counted"
        }

        test "negative controls for the gradients alone: a correct forward with a wrong ∂w, or a wrong ∂x, fails; an error below the γ bound fails the exact integer pass" {
            // ∂w taken against x with its first row zeroed (a dropped border term), forward value unchanged.
            let wrongWeightGradient : Convolution = fun x w b c ->
                let xp = x.detach().clone()
                xp.narrow(2L, 0L, 1L).zero_() |> ignore
                (libtorchConvolution x (w.detach()) b c).add(libtorchConvolution xp w None c).sub(libtorchConvolution xp (w.detach()) None c)
            let wrongInputGradient : Convolution = fun x w b c ->
                let wp = w.detach().mul(scalar 1.5)
                (libtorchConvolution (x.detach()) w b c).add(libtorchConvolution x wp None c).sub(libtorchConvolution (x.detach()) wp None c)
            for name, kernel, quantity in [ "wrong ∂w", wrongWeightGradient, "∂w"; "wrong ∂x", wrongInputGradient, "∂x" ] do
                let r = checkCase kernel torch.CPU torch.float32 5UL (case true)
                Expect.isFalse r.Passed (sprintf "%s must fail: %s" name (r.Describe()))
                Expect.isTrue (r.Quantities |> List.exists (fun q -> q.Name.EndsWith quantity && not q.Passed)) (name + ": caught on " + quantity)
                Expect.isTrue (r.Quantities |> List.exists (fun q -> q.Name = "output" && q.Passed)) (name + ": the forward itself passes")
            // A relative error of 1e-7 hides inside the γ_K bound of the Gaussian pass, but not in the exact integer pass.
            let slightlyOff : Convolution = fun x w b c -> (libtorchConvolution x w b c).mul(scalar (1.0 + 1.2e-7))
            let r = checkCase slightlyOff torch.CPU torch.float32 7UL (case false)
            Expect.isTrue (r.Quantities |> List.exists (fun q -> q.Name = "output" && q.Passed)) ("within γ_K on Gaussian inputs: " + r.Describe())
            Expect.isFalse r.Passed ("the exact integer pass catches it: " + r.Describe())
        }

        test "positive controls: the float64 reference rounded to float32, and libtorch's float64 convolution, pass" {
            let rounded : Convolution = fun x w b c ->
                let wide (t: torch.Tensor) = t.detach().``to``(torch.float64)
                (referenceConvolution (wide x) (wide w) (b |> Option.map wide) c).``to``(torch.float32)
            let r = checkWith rounded "rounded reference" torch.CPU torch.float32 [ case false ]
            Expect.isTrue r.Passed r.Summary
            let r64 = check "libtorch float64" torch.CPU torch.float64 [ case true; case false; { case true with Groups = 1L; Dilation = (2L, 1L) } ]
            Expect.isTrue r64.Passed r64.Summary
            let grouped = { case true with InChannels = 4L; OutChannels = 6L; Groups = 2L }
            Expect.isTrue (check "grouped" torch.CPU torch.float32 [ grouped ]).Passed "grouped convolution"
        }

        test "the ladder, with stub checks: every outcome" {
            let paths = [ Default; OneDnnCapped "AVX2"; Native ]
            let entered = Collections.Generic.List<KernelPath>()
            let enterAll p = entered.Add p; Entered
            let passing (ok: Set<string>) p = report p (ok.Contains (key p))
            match select paths enterAll (passing (set [ "default"; "native" ])) with
            | Chosen (Default, [ r ]) -> Expect.isTrue r.Passed "default passes → default, one check"
            | other -> failtestf "all pass: %A" other
            entered.Clear()
            match select paths enterAll (passing (set [ "native" ])) with
            | Chosen (Native, [ a; b; c ]) -> Expect.equal [ a.Passed; b.Passed; c.Passed ] [ false; false; true ] "two failures, then native"
            | other -> failtestf "native only: %A" other
            Expect.equal (List.ofSeq entered) paths "entered in order"
            match select paths enterAll (passing Set.empty) with
            | Refused reports -> Expect.equal reports.Length 3 "every path's report"
            | other -> failtestf "none passes: %A" other
            let restartCapped p = if p = OneDnnCapped "AVX2" then NeedsRestart else Entered
            match select paths restartCapped (passing Set.empty) with
            | Restart (OneDnnCapped "AVX2", [ r ]) -> Expect.isFalse r.Passed "default failed, then restart for the capped path"
            | other -> failtestf "restart: %A" other
            let noRestart p = if p = OneDnnCapped "AVX2" then Unavailable "no restart" else Entered
            match select paths noRestart (passing (set [ "native" ])) with
            | Chosen (Native, reports) -> Expect.equal reports.Length 2 "the capped path is skipped where no restart is allowed"
            | other -> failtestf "no restart: %A" other
            let message = refusal [ report Default false; report Native false ]
            Expect.stringContains message "refusing to start" "clear refusal"
            Expect.stringContains message "DNNL_MAX_CPU_ISA" "says what to try"
        }
    ]

/// The defence in `rf` itself: before any training step, the real executable checks its kernels, falls
/// back (re-executing itself with a capped oneDNN ISA, or switching mkldnn off), records the path in
/// config.effective.json, and refuses when nothing passes. `RF_KERNEL_CHECK_REJECT` forces the failing
/// branches on a CPU where every path is sound. No data is needed: the check runs before loading it.
[<Tests>]
let hostTests =
    let lenetConfig (dir: HostTests.HostTestSupport.TempDir) =
        let json = """{ "Data": { "Dataset": "mnist", "DataDirectory": "no-data-here" },
                        "Model": { "Architecture": "lenet", "Precision": "float32" },
                        "Training": { "BatchSize": 16, "TotalIterations": 2, "Device": "cpu" },
                        "Recipe": { "Enabled": false }, "Run": { "RunsDirectory": "runs", "RunName": "kernels" } }"""
        IO.File.WriteAllText(dir.File "lenet.json", json)
        "lenet.json"
    let effective (dir: HostTests.HostTestSupport.TempDir) =
        let runs = IO.Directory.GetDirectories(dir.File "runs")
        Expect.equal runs.Length 1 "exactly one run directory (a restart happens before it exists)"
        Text.Json.Nodes.JsonNode.Parse(IO.File.ReadAllText(IO.Path.Combine(runs.[0], "config.effective.json")))
    // The child must not inherit a restart made by this test process (the suite's own fallback).
    let clean : (string * string) list = [ restartMarker, null; "DNNL_MAX_CPU_ISA", null; rejectVariable, null ]
    testSequenced <| testList "Host.KernelCheck" [
        test "rf train: the path chosen on this CPU (default where it passes, else the fallback it restarted for) is recorded in config.effective.json" {
            use dir = new HostTests.HostTestSupport.TempDir()
            let code, out, err = HostTests.CliProcessTests.runRfWith clean dir.Path [ "train"; "--config"; lenetConfig dir ]
            Expect.equal code 1 (sprintf "no data → exit 1 after the check: %s %s" out err)
            Expect.stringContains err "rf data fetch" "fails on the missing data, after the check"
            let env = (effective dir).["Environment"]
            let path = string env.["ConvolutionKernels"]
            Expect.stringContains (string env.["KernelSelfCheck"]) "passed on" "its check passed"
            if not (path.StartsWith "default") then
                // An AVX-512 CPU whose default oneDNN kernels fail: the fallback is chosen, and said.
                Expect.stringContains err "kernel self-check" ("a fallback is announced: " + path)
        }

        test "rf env checks the built-in conv nets and names the kernel path; with every path rejected it refuses (exit 1)" {
            use dir = new HostTests.HostTestSupport.TempDir()
            let code, out, err = HostTests.CliProcessTests.runRfWith clean dir.Path [ "env" ]
            Expect.equal code 0 (out + err)
            Expect.stringContains out "convolution kernels: " "the environment line names the path"
            Expect.stringContains out "self-check passed on" "and its check"
            let code2, _, err2 = HostTests.CliProcessTests.runRfWith (clean @ [ rejectVariable, "default,onednn-capped,native" ]) dir.Path [ "env" ]
            Expect.equal code2 1 ("refused: " + err2)
            Expect.stringContains err2 "refusing to start" "one clear line"
        }

        test "rf train: default rejected → restarts itself with DNNL_MAX_CPU_ISA=AVX2, says so, records it" {
            use dir = new HostTests.HostTestSupport.TempDir()
            let code, out, err = HostTests.CliProcessTests.runRfWith (clean @ [ rejectVariable, "default" ]) dir.Path [ "train"; "--config"; lenetConfig dir ]
            Expect.equal code 1 (sprintf "no data → exit 1 after the check: %s %s" out err)
            Expect.stringContains err "restarting with DNNL_MAX_CPU_ISA=AVX2" "says it restarts"
            let env = (effective dir).["Environment"]
            let kernels, account = string env.["ConvolutionKernels"], string env.["KernelSelfCheck"]
            Expect.stringContains account "rejected" "the failed default is in the account"
            if not (kernels.Contains "DNNL_MAX_CPU_ISA=AVX2") then
                // A CPU where oneDNN capped at AVX2 fails its own check too (seen on an AVX-512 AMD EPYC): the restarted
                // process goes on to the next rung, and its account says why.
                Expect.stringContains kernels "native" ("capped path, or else native: " + kernels)
                Expect.stringContains account "DNNL_MAX_CPU_ISA=AVX2: FAILED" ("the capped path's own failure is in the account: " + account)
        }

        test "rf train: default and capped rejected → mkldnn off (native), recorded" {
            use dir = new HostTests.HostTestSupport.TempDir()
            let code, out, err = HostTests.CliProcessTests.runRfWith (clean @ [ rejectVariable, "default,onednn-capped" ]) dir.Path [ "train"; "--config"; lenetConfig dir ]
            Expect.equal code 1 (sprintf "no data → exit 1 after the check: %s %s" out err)
            Expect.stringContains (string (effective dir).["Environment"].["ConvolutionKernels"]) "native" "native path"
        }

        test "rf train: every path rejected → refuses to start with a clear message, no run directory" {
            use dir = new HostTests.HostTestSupport.TempDir()
            let code, out, err = HostTests.CliProcessTests.runRfWith (clean @ [ rejectVariable, "default,onednn-capped,native" ]) dir.Path [ "train"; "--config"; lenetConfig dir ]
            Expect.equal code 1 (sprintf "exit 1: %s %s" out err)
            Expect.stringContains err "refusing to start" "clear refusal"
            Expect.stringContains err "native" "names the paths tried"
            Expect.isFalse (IO.Directory.Exists(dir.File "runs") && IO.Directory.GetDirectories(dir.File "runs").Length > 0) "nothing started"
        }
    ]
