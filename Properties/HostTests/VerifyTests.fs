/// `rf verify` end to end: the real rf launching the real property runner on tiny selections (the hidden self-test
/// properties of Verify/SelfTest.fs, enabled by RF_VERIFY_SELFTEST=1, and one cheap MathCore property): the report, a
/// saved failure that `--replay` reproduces, kill-and-resume equal to an uninterrupted run, the worker's verify job.
module ResearchFramework.Properties.HostTests.VerifyTests

open System
open System.Diagnostics
open System.IO
open System.Text.Json.Nodes
open Expecto
open ResearchFramework.Properties
open ResearchFramework.Properties.HostTests.HostTestSupport
open ResearchFramework.Properties.HostTests.CliProcessTests
open ResearchFramework.Properties.Verify

let private selfTest = [ "RF_VERIFY_SELFTEST", "1"; "RF_VERIFY_SELFTEST_FAIL", null; "RF_VERIFY_SELFTEST_DELAY_MS", null ]
let private cheapMathCore = "MathCore.Gram/the squared-norm bound covers tr G"

let private json (path: string) = JsonNode.Parse(File.ReadAllText path)

/// The lines of batches.jsonl without the wall time (everything that must be identical between two runs of a plan).
let private batchIdentities (runDir: string) =
    Runner.readRecords (Path.Combine(runDir, "batches.jsonl"))
    |> List.map (fun r -> { r with WallSeconds = 0.0 })
    |> List.sortBy (fun r -> r.Property, r.Batch)

/// Processes whose command line mentions `marker` (the runner of a run directory).
let private processesMentioning (marker: string) =
    Directory.GetDirectories "/proc"
    |> Array.choose (fun d ->
        match Int32.TryParse(Path.GetFileName d) with
        | true, pid when pid <> Environment.ProcessId ->
            try
                let cmd = File.ReadAllText(Path.Combine(d, "cmdline")).Replace('\000', ' ')
                if cmd.Contains marker then Some pid else None
            with _ -> None
        | _ -> None)

let private waitFor (timeoutMs: int) (probe: unit -> bool) =
    let clock = Stopwatch.StartNew()
    while not (probe ()) && clock.ElapsedMilliseconds < int64 timeoutMs do Threading.Thread.Sleep 20
    probe ()

[<Tests>]
let tests =
    testSequenced <| testList "Host.Verify" [
        test "batch seeds depend on the master seed, the property and the batch index only; budgets parse" {
            let a = Runner.batchSeed 1L "P" 3
            Expect.equal (Runner.batchSeed 1L "P" 3) a "deterministic"
            Expect.notEqual (Runner.batchSeed 1L "P" 4) a "another batch"
            Expect.notEqual (Runner.batchSeed 2L "P" 3) a "another master seed"
            Expect.notEqual (Runner.batchSeed 1L "Q" 3) a "another property"
            Expect.equal (snd a % 2UL) 1UL "gamma odd"
            Expect.equal (Runner.parseCases "10x") (Ok (Runner.Multiple 10.0)) "multiple"
            Expect.equal (Runner.parseCases "500") (Ok (Runner.Absolute 500)) "absolute"
            Expect.isError (Runner.parseCases "0x") "zero refused"
            Expect.equal (Runner.parseDuration "8h") (Ok 28800.0) "hours"
            Expect.isTrue (Runner.selected [ "MathCore" ] "MathCore.Certify/x") "group"
            Expect.isTrue (Runner.selected [ "Algorithm" ] "ReadoutTheorem/x") "the Algorithm group holds the readout theorem"
            Expect.isFalse (Runner.selected [ "MathCore" ] "Algorithm/x") "other group"
            let mathCore = Regressions.properties () |> List.filter (fun p -> Runner.selected [ "MathCore" ] p.Name)
            Expect.isGreaterThan mathCore.Length 20 "MathCore has its properties"
        }
        test "a regression line runs the suite's own property on the saved case" {
            let run (t: Test) =
                match t with
                | TestLabel (_, TestCase (Sync f, _), _) -> f ()
                | other -> failtestf "unexpected test shape %A" other
            run (Regressions.seed (cheapMathCore + " = Σ‖φ̃_i‖²") 123456)
            run (Regressions.case "MathCore.Gram/streamed in any block size = one-shot, bit for bit, on integer inputs" (12345UL, 6789UL, 7))
            Expect.throws (fun () -> run (Regressions.seed "no such property" 1)) "an unknown name fails"
        }
        test "rf verify on a small selection writes summary.md and summary.json: cases, non-vacuous, wall time, shapes" {
            use dir = new TempDir()
            let code, out, err =
                runRfWith selfTest dir.Path [ "verify"; "--filter"; "VerifySelfTest/passes"; "--filter"; cheapMathCore; "--cases"; "2x"; "--out"; "run" ]
            Expect.equal code 0 (sprintf "exit 0: %s %s" out err)
            Expect.stringContains out "VerifySelfTest/passes batch 1/2" "progress per batch"
            let summary = json (dir.File "run/summary.json")
            let props = summary["properties"].AsArray() |> Seq.toList
            Expect.equal props.Length 2 "two properties"
            let byName (prefix: string) = props |> List.find (fun p -> p["property"].GetValue<string>().StartsWith prefix)
            let selfTestRow = byName "VerifySelfTest/passes"
            Expect.equal (selfTestRow["cases"].GetValue<int>()) 20 "2 × CI count 10"
            Expect.equal (selfTestRow["status"].GetValue<string>()) "passed" "passed"
            Expect.isGreaterThan (selfTestRow["nonVacuous"].GetValue<int>()) 0 "non-vacuous cases counted"
            Expect.isNotNull selfTestRow["wallSeconds"] "wall time"
            let gram = byName cheapMathCore
            Expect.equal (gram["cases"].GetValue<int>()) 60 "2 × CI count 30"
            let shapes = gram["largestShapes"].AsObject()
            let largestN = shapes["n"].GetValue<int>()
            Expect.isLessThanOrEqual largestN 40 "largest n reported, within the CI bound"
            Expect.isTrue (summary["complete"].GetValue<bool>()) "every planned batch ran"
            let md = File.ReadAllText(dir.File "run/summary.md")
            Expect.stringContains md "VerifySelfTest/passes" "summary.md lists the property"
            Expect.stringContains md "rf verify --filter" "summary.md gives the command"
            Expect.equal (File.ReadAllLines(dir.File "run/batches.jsonl")).Length 4 "one record per batch"
        }
        test "a failing property is saved with its seeds; --replay reproduces it bit for bit; the file gives the regression line" {
            use dir = new TempDir()
            let failing = [ "RF_VERIFY_SELFTEST", "1"; "RF_VERIFY_SELFTEST_FAIL", "1" ]
            let code, out, err = runRfWith failing dir.Path [ "verify"; "--filter"; "VerifySelfTest/fails"; "--cases"; "3x"; "--seed"; "7"; "--out"; "run" ]
            Expect.equal code 1 (sprintf "exit 1 on a failure: %s %s" out err)
            let file = Directory.GetFiles(dir.File "run/failures", "*.json") |> Array.exactlyOne
            let failure = json file
            Expect.equal (failure["property"].GetValue<string>()) "VerifySelfTest/fails" "property name"
            let original = failure["original"].GetValue<string>()
            Expect.equal (int64 original % 5L) 0L "the failing case is a seed divisible by 5"
            Expect.equal (failure["regressionLine"].GetValue<string>()) (sprintf "seed \"VerifySelfTest/fails\" %s" original) "one line to paste"
            Expect.stringContains (failure["replay"].GetValue<string>()) "rf verify --replay" "replay command"
            Expect.stringContains (File.ReadAllText(dir.File "run/summary.md")) (sprintf "seed \"VerifySelfTest/fails\" %s" original)
                "summary.md shows the line as it is pasted"
            Expect.stringContains out (sprintf "regression line for Properties/Verify/Regressions.fs: seed \"VerifySelfTest/fails\" %s" original)
                "and so does the progress output"
            Expect.stringContains (failure["ciReplay"].GetValue<string>()) ("RF_REPLAY_SEED=" + original) "the CI runner's replay"
            Expect.isNotNull failure["case"] "FsCheck's seed and size of the failing case"
            let summary = json (dir.File "run/summary.json")
            Expect.equal (summary["failureCount"].GetValue<int>()) 1 "one failure in the summary"
            let first = summary["properties"].AsArray()[0]
            Expect.equal (first["batchesDone"].GetValue<int>()) (failure["batch"].GetValue<int>() + 1) "a failing property stops after its failing batch"
            let code2, out2, err2 = runRfWith failing dir.Path [ "verify"; "--replay"; file ]
            Expect.equal code2 1 (sprintf "the replay fails again: %s %s" out2 err2)
            Expect.stringContains out2 "reproduced bit for bit" "same cases, same failing case"
            Expect.stringContains out2 "fails again, the same arguments" "the failing case alone"
            let code3, out3, _ = runRfWith selfTest dir.Path [ "verify"; "--replay"; file ]
            Expect.equal code3 0 "once the property is fixed, the replay passes"
            Expect.stringContains out3 "does not reproduce" "and says so"
        }
        test "kill -9 of rf verify mid-run, then --resume: the same batches, seeds and cases as an uninterrupted run" {
            use dir = new TempDir()
            let slow = [ "RF_VERIFY_SELFTEST", "1"; "RF_VERIFY_SELFTEST_DELAY_MS", "100" ]
            let args (out: string) = [ "verify"; "--filter"; "VerifySelfTest/passes"; "--cases"; "30"; "--batch"; "5"; "--seed"; "3"; "--out"; out ]
            // The uninterrupted run without the delay: the delay changes the wall time only, never a case.
            let code, out, err = runRfWith selfTest dir.Path (args "full")
            Expect.equal code 0 (sprintf "uninterrupted: %s %s" out err)
            let info = ProcessStartInfo(rfPath.Value, WorkingDirectory = dir.Path, RedirectStandardOutput = true, RedirectStandardError = true)
            for a in args "cut" do info.ArgumentList.Add a
            for k, v in slow do info.Environment[k] <- v
            use p = Process.Start info
            let _ = p.StandardOutput.ReadToEndAsync()
            let _ = p.StandardError.ReadToEndAsync()
            let records () = try File.ReadAllLines(dir.File "cut/batches.jsonl").Length with _ -> 0
            Expect.isTrue (waitFor 60000 (fun () -> records () >= 2)) "two batches finished"
            p.Kill false // SIGKILL of rf alone: its runner must notice and stop by itself
            p.WaitForExit()
            Expect.isTrue (waitFor 10000 (fun () -> (processesMentioning (dir.File "cut")).Length = 0)) "no runner left behind"
            let before = records ()
            Expect.isLessThan before 6 "killed before the end"
            let code2, out2, err2 = runRfWith slow dir.Path [ "verify"; "--resume"; dir.File "cut" ]
            Expect.equal code2 0 (sprintf "resumed: %s %s" out2 err2)
            Expect.stringContains out2 (sprintf "resuming: %d batches already done" before) "continues after the last finished batch"
            Expect.equal (batchIdentities (dir.File "cut")) (batchIdentities (dir.File "full")) "identical batches (seeds, cases digest, counts, shapes)"
        }
        test "--time alone: batches until the budget is spent, then a summary that says how to continue" {
            use dir = new TempDir()
            let slow = [ "RF_VERIFY_SELFTEST", "1"; "RF_VERIFY_SELFTEST_DELAY_MS", "100" ]
            let code, out, err = runRfWith slow dir.Path [ "verify"; "--filter"; "VerifySelfTest/passes"; "--time"; "2s"; "--batch"; "5"; "--out"; "run" ]
            Expect.equal code 0 (sprintf "exit 0: %s %s" out err)
            Expect.stringContains out "time budget spent" "stopped by the budget"
            let summary = json (dir.File "run/summary.json")
            Expect.isFalse (summary["complete"].GetValue<bool>()) "no case limit: never complete"
            Expect.isGreaterThanOrEqual (summary["totalCases"].GetValue<int>()) 10 "several batches ran"
            Expect.stringContains (File.ReadAllText(dir.File "run/summary.md")) "rf verify --resume" "how to continue"
            let code2, _, err2 = runRfWith slow dir.Path [ "verify"; "--resume"; dir.File "run" ]
            Expect.equal code2 2 "a plan without a case limit needs --time again"
            Expect.stringContains err2 "give --time" "and says so"
        }
        test "refusals in one line: no runner built, another plan in --out, --resume of a non-run, --replay with plan options" {
            use dir = new TempDir()
            let code, _, err = runRf dir.Path [ "verify"; "--properties"; dir.File "nope/Properties.dll" ]
            Expect.equal code 1 "a missing runner"
            Expect.stringContains err "nope/Properties.dll does not exist" "named"
            // rf in a checkout whose Properties is not built: a hard-linked copy of rf's folder under a bare ResearchFramework.sln.
            let rfDir = Path.GetDirectoryName rfPath.Value
            let copy = Path.Combine(dir.Path, "checkout", "Host", "bin", Path.GetFileName(Path.GetDirectoryName rfDir), Path.GetFileName rfDir)
            Directory.CreateDirectory(Path.GetDirectoryName copy) |> ignore
            use cp = Process.Start("cp", [ "-al"; rfDir; copy ])
            cp.WaitForExit()
            File.WriteAllText(Path.Combine(dir.Path, "checkout", "ResearchFramework.sln"), "")
            let info = ProcessStartInfo(Path.Combine(copy, "rf"), WorkingDirectory = dir.Path, RedirectStandardOutput = true, RedirectStandardError = true)
            for a in [ "verify"; "--filter"; "MathCore" ] do info.ArgumentList.Add a
            info.Environment.Remove "RF_PROPERTIES_DLL" |> ignore
            use p = Process.Start info
            let err2 = p.StandardError.ReadToEnd()
            p.WaitForExit()
            Expect.equal p.ExitCode 1 "not built"
            Expect.stringContains err2 "./build.sh setup" "says how to build it"
            let code3, _, err3 = runRfWith selfTest dir.Path [ "verify"; "--filter"; "VerifySelfTest/passes"; "--cases"; "10"; "--out"; "run" ]
            Expect.equal code3 0 ("first run: " + err3)
            let code4, _, err4 = runRfWith selfTest dir.Path [ "verify"; "--filter"; "VerifySelfTest/passes"; "--cases"; "20"; "--out"; "run" ]
            Expect.equal code4 2 "another plan in the same directory"
            Expect.stringContains err4 "holds another plan" "says so"
            let code5, _, err5 = runRf dir.Path [ "verify"; "--resume"; dir.Path ]
            Expect.equal code5 2 "not a verification run"
            Expect.stringContains err5 "not a verification run" "says so"
            let code6, _, err6 = runRf dir.Path [ "verify"; "--replay"; "x.json"; "--cases"; "10x" ]
            Expect.notEqual code6 0 "--replay takes no plan options (a command-line error, as for every rf command)"
            Expect.stringContains err6 "--replay FILE takes no other option" "says so"
        }
        test "a verify job of the spool worker runs to done/ with its report; after SIGTERM the next worker continues it" {
            use dir = new TempDir()
            Directory.CreateDirectory(dir.File "spool/inbox") |> ignore
            File.WriteAllText(dir.File "spool/inbox/v.json",
                sprintf """{ "Command": "verify", "Verify": { "Filters": ["VerifySelfTest/passes"], "Cases": "10", "Seed": 5, "RunsDirectory": "%s" } }"""
                    (dir.File "runs"))
            let code, out, err = runRfWith selfTest dir.Path [ "worker"; "--spool"; "spool"; "--once" ]
            Expect.equal code 0 (sprintf "worker: %s %s" out err)
            let result = json (dir.File "spool/done/v.result.json")
            Expect.equal (result["exitCode"].GetValue<int>()) 0 "job passed"
            let runDir = result["runDirectory"].GetValue<string>()
            Expect.isTrue (File.Exists(Path.Combine(runDir, "summary.md"))) "report in the job's run directory"
            let jobSummary = json (Path.Combine(runDir, "summary.json"))
            Expect.equal (jobSummary["totalCases"].GetValue<int>()) 10 "10 cases"
            // SIGTERM while a verify job runs: the job stays in running/ and the next worker continues its run directory.
            File.WriteAllText(dir.File "spool/inbox/slow.json",
                sprintf """{ "Command": "verify", "Verify": { "Filters": ["VerifySelfTest/passes"], "Cases": "30", "Batch": 5, "Seed": 3, "RunsDirectory": "%s" } }"""
                    (dir.File "runs"))
            let info = ProcessStartInfo(rfPath.Value, WorkingDirectory = dir.Path, RedirectStandardOutput = true, RedirectStandardError = true)
            for a in [ "worker"; "--spool"; "spool" ] do info.ArgumentList.Add a
            info.Environment["RF_VERIFY_SELFTEST"] <- "1"
            info.Environment["RF_VERIFY_SELFTEST_DELAY_MS"] <- "100"
            use worker = Process.Start info
            let _ = worker.StandardOutput.ReadToEndAsync()
            let _ = worker.StandardError.ReadToEndAsync()
            let slowRecords () =
                Directory.GetDirectories(dir.File "runs", "verify-slow-*")
                |> Array.sumBy (fun d -> try File.ReadAllLines(Path.Combine(d, "batches.jsonl")).Length with _ -> 0)
            Expect.isTrue (waitFor 60000 (fun () -> slowRecords () >= 2)) "two batches of the job finished"
            use term = Process.Start("kill", [ "-TERM"; string worker.Id ])
            term.WaitForExit()
            Expect.isTrue (worker.WaitForExit 30000) "the worker stops on SIGTERM"
            Expect.isNonEmpty (Directory.GetFiles(dir.File "spool/running", "slow.json", SearchOption.AllDirectories)) "the job stays in running/"
            let before = slowRecords ()
            Expect.isLessThan before 6 "stopped before the end"
            let codeResumed, outResumed, errResumed = runRfWith selfTest dir.Path [ "worker"; "--spool"; "spool"; "--once" ]
            Expect.equal codeResumed 0 (sprintf "resumed worker: %s %s" outResumed errResumed)
            let slowResult = json (dir.File "spool/done/slow.result.json")
            let slowRun = slowResult["runDirectory"].GetValue<string>()
            let records = Runner.readRecords (Path.Combine(slowRun, "batches.jsonl"))
            Expect.equal (records |> List.map (fun r -> r.Batch) |> List.sort) [ 0 .. 5 ] "every batch exactly once"
            for r in records do
                Expect.equal (r.Seed, r.Gamma) (Runner.batchSeed 3L "VerifySelfTest/passes" r.Batch) "each batch from its own seed"
            File.WriteAllText(dir.File "spool/inbox/bad.json", """{ "Command": "verify", "Verify": { "Cases": "10", "Bogus": 1 } }""")
            let code2, _, _ = runRfWith selfTest dir.Path [ "worker"; "--spool"; "spool"; "--once" ]
            Expect.equal code2 1 "a bad verify job fails"
            Expect.stringContains (File.ReadAllText(dir.File "spool/failed/bad.error.txt")) "Verify:Bogus" "naming the key"
        }
    ]
