/// End-to-end tests of the wired commands, driving the real `rf` executable on tiny IDX data written by the test:
/// train → SIGTERM after the first checkpoint → resume = the uninterrupted run (bit-identical parameters); worker with a
/// good and a bad job; corrupt IDX named; compare and certify --config on the tiny data.
module ResearchFramework.Properties.HostTests.EndToEndTests

open System
open System.Diagnostics
open System.IO
open System.Text.RegularExpressions
open System.Text.Json
open Expecto
open ResearchFramework.Properties.HostTests.HostTestSupport
open ResearchFramework.Properties.HostTests.CliProcessTests

let private rows, cols = tinyImageRows, tinyImageCols

let private summary (runDir: string) =
    use doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(runDir, "summary.json")))
    let r = doc.RootElement
    let loss = r.GetProperty("FinalTrainLoss")
    r.GetProperty("FinalParameterFingerprint").GetString(), r.GetProperty("Completed").GetBoolean(), r.GetProperty("Iterations").GetInt32(),
    (if loss.ValueKind = JsonValueKind.Number then loss.GetDouble() else nan), r.GetProperty("Verdict").GetString()

/// Starts rf without waiting (stdout/stderr drained asynchronously).
let private startRf (environment: (string * string) list) (workingDirectory: string) (args: string list) =
    let info = ProcessStartInfo(rfPath.Value, WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true)
    for a in args do info.ArgumentList.Add a
    for (k, v) in environment do info.Environment[k] <- v
    let p = Process.Start info
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    p, out, err

let private sigterm (p: Process) =
    use kill = Process.Start("kill", [ "-TERM"; string p.Id ])
    kill.WaitForExit()

/// Checkpoint files of the runs named `runName-*` under the test's runs/ folder (none while it does not exist).
let private checkpointFiles (dir: TempDir) (runName: string) =
    let runs = Path.Combine(dir.Path, "runs")
    if not (Directory.Exists runs) then [||]
    else Directory.GetDirectories(runs, runName + "-*") |> Array.collect (fun d -> Directory.GetFiles(d, "checkpoint-*.bin", SearchOption.AllDirectories))

/// A lease file of a worker that is provably gone: this host and machine identity, a PID that does not exist.
let private deadLease (pid: int) =
    sprintf "{\"host\":\"%s\",\"machine\":\"%s\",\"pid\":%d,\"startTicks\":1,\"heartbeatUtc\":\"%s\"}"
        Environment.MachineName ResearchFramework.Host.Worker.WorkerLease.ThisMachine pid (DateTime.UtcNow.ToString "O")

/// Waits until `probe` holds (polling every 20 ms) or the timeout passes.
let private waitFor (timeoutMs: int) (probe: unit -> bool) =
    let clock = Stopwatch.StartNew()
    while not (probe ()) && clock.ElapsedMilliseconds < int64 timeoutMs do Threading.Thread.Sleep 20
    probe ()

[<Tests>]
let endToEnd =
    testList "Host.EndToEnd" [
        test "train, SIGTERM after the first checkpoint, resume: the same final parameters as an uninterrupted run" {
            use dir = new TempDir()
            writeTinyMnist dir 40 20
            File.WriteAllText(dir.File "cfg.json", tinyConfig dir "run" 60 30 48 true)
            let code, out, err = runRf dir.Path [ "train"; "--config"; "cfg.json"; "--set"; "Run:RunName=full" ]
            Expect.equal code 0 (sprintf "uninterrupted run: %s %s" out err)
            let full = runDirOf dir "full"
            let fpFull, completedFull, itFull, lossFull, verdictFull = summary full
            Expect.isTrue completedFull "completed"
            Expect.equal itFull 60 "T iterations"
            Expect.equal verdictFull "Certified" "certified at the switch (m + 1 = 49 ≥ n = 40)"
            Expect.isTrue (File.Exists(Path.Combine(full, "plots", "loss.png"))) "loss plot"
            Expect.isTrue (File.Exists(Path.Combine(full, "plots", "sigma-min.png"))) "σ_min plot"
            Expect.isNonEmpty (Directory.GetFiles(Path.Combine(full, "certificates"), "*.json")) "certificate JSON"
            let metrics = File.ReadAllLines(Path.Combine(full, "metrics.jsonl"))
            Expect.isTrue (metrics |> Array.exists (fun l -> l.Contains "\"sigmaMin\"" && l.Contains "\"phase\":\"2\"")) "σ_min rows in Phase II"

            let p, _, errCut = startRf [ "RF_TEST_STEP_DELAY_MS", "40" ] dir.Path [ "train"; "--config"; "cfg.json"; "--set"; "Run:RunName=cut" ]
            let checkpointed = waitFor 20000 (fun () -> (checkpointFiles dir "cut").Length > 0)
            Expect.isTrue checkpointed "a checkpoint appeared"
            sigterm p
            Expect.isTrue (p.WaitForExit 20000) "stopped after SIGTERM"
            Expect.equal p.ExitCode 130 ("interrupted exit code: " + errCut.Result)
            let cut = runDirOf dir "cut"
            let _, completedCut, itCut, _, _ = summary cut
            Expect.isFalse completedCut "summary says interrupted"
            Expect.isLessThan itCut 60 "stopped before T"
            // --resume without --config: the run's config.effective.json
            let code2, out2, err2 = runRf dir.Path [ "train"; "--resume"; cut ]
            Expect.equal code2 0 (sprintf "resumed run: %s %s" out2 err2)
            let fpCut, completedResumed, itResumed, lossResumed, _ = summary cut
            Expect.isTrue completedResumed "completed after the resume"
            Expect.equal itResumed 60 "T iterations"
            Expect.equal fpCut fpFull "bit-identical final parameters"
            // The parameters are bit-identical (above); the evaluation's float32 reductions may round differently across
            // processes (observed: last-digit differences of the loss under load), so the loss is compared to 1e-6 relative.
            Expect.floatClose { absolute = 0.0; relative = 1e-6 } lossResumed lossFull "same final train loss"
            // A resume that would change the trajectory is refused naming the key; the file on disk stays the one that ran.
            let effective = File.ReadAllText(Path.Combine(cut, "config.effective.json"))
            for key, value in [ "Training:LearningRate", "0.123"; "Training:BatchSize", "7"; "Recipe:DampingPower", "3"; "Training:Optimizer", "adam" ] do
                let code3, _, err3 = runRf dir.Path [ "train"; "--resume"; cut; "--set"; sprintf "%s=%s" key value ]
                Expect.equal code3 2 (sprintf "changing %s on resume: exit 2 (%s)" key err3)
                Expect.stringContains err3 key "names the key"
                Expect.stringContains err3 "refusing to change" "says why"
            Expect.equal (File.ReadAllText(Path.Combine(cut, "config.effective.json"))) effective "config.effective.json unchanged"
            let code4, _, err4 = runRf dir.Path [ "train"; "--resume"; cut; "--set"; "Training:LogEvery=7" ]
            Expect.equal code4 0 ("an allowed key (logging) may change: " + err4)
        }
        test "a certificate that cannot fit is refused before any training step, with the numbers and the key that makes it fit" {
            use dir = new TempDir()
            writeTinyMnist dir 3000 10
            File.WriteAllText(dir.File "cfg.json", tinyConfig dir "mem" 20 10 40 true)
            // 100 MB available: training fits (well under 1 MB here), the dense certificate of n = 3000 (288 MB) does not; n ≈ 1760 would.
            let code, out, err = runRfWith [ "RF_MEMORY_AVAILABLE_BYTES", "100000000" ] dir.Path [ "train"; "--config"; "cfg.json"; "--set"; "Certificate:Engine=dense" ]
            Expect.equal code 1 (sprintf "refused: %s %s" out err)
            Expect.stringContains err "the certificate of n = 3000 points 0.29 GB" "names n and the estimate"
            Expect.stringContains err "Recipe:CertificationSubset" "the key"
            let fits = Text.RegularExpressions.Regex.Match(err, "at most (\\d+)")
            Expect.isTrue fits.Success "the largest n that fits"
            Expect.isTrue (abs (int fits.Groups.[1].Value - 1767) < 20) ("≈ √(10⁸/32) less the resident part: " + fits.Value)
            Expect.isEmpty (Directory.GetFiles(runDirOf dir "mem", "metrics.jsonl") |> Array.filter (fun f -> FileInfo(f).Length > 0L)) "nothing trained"
            Expect.stringContains err "Certificate:Engine=tiled" "the other way out"
            let code2, out2, err2 = runRfWith [ "RF_MEMORY_AVAILABLE_BYTES", "1000000000" ] dir.Path [ "train"; "--config"; "cfg.json"; "--set"; "Run:RunName=fits" ]
            Expect.equal code2 0 (sprintf "fits with 1 GB: %s %s" out2 err2)
            // Certificate:Engine = auto (the default) with 100 MB: not refused, the switch certifies on tiles (files in the run's tiles/)
            let code2b, out2b, err2b = runRfWith [ "RF_MEMORY_AVAILABLE_BYTES", "100000000" ] dir.Path [ "train"; "--config"; "cfg.json"; "--set"; "Run:RunName=tiled" ]
            Expect.equal code2b 0 (sprintf "auto → tiled with 100 MB: %s %s" out2b err2b)
            // (m + 1 = 41 < n: refuted by shape, on the tiled engine without a Gram; the tiled switch itself: Algorithm.TiledEngine)
            Expect.isNonEmpty (Directory.GetFiles(Path.Combine(runDirOf dir "tiled", "certificates"), "switch-*.json")) "the switch's certificate"
            let tiles = Path.Combine(runDirOf dir "tiled", "tiles")
            if Directory.Exists tiles then
                Expect.isEmpty (Directory.GetFiles(tiles, "*.tile", SearchOption.AllDirectories)) "no tile file left once certified"
            // A network that cannot even be built (a hidden width of 10⁸: 78.5 G parameters) is refused, not allocated.
            let code3, _, err3 = runRf dir.Path [ "train"; "--config"; "cfg.json"; "--set"; "Model:HiddenWidths:0=100000000"; "--set"; "Run:RunName=huge" ]
            Expect.equal code3 1 ("refused: " + err3)
            Expect.stringContains err3 "parameters and optimiser state" "the breakdown"
            Expect.stringContains err3 "Model:HiddenWidths" "what to reduce"
        }
        test "a second SIGTERM terminates at once (exit 130) instead of waiting for the step and the checkpoint" {
            use dir = new TempDir()
            writeTinyMnist dir 30 10
            File.WriteAllText(dir.File "cfg.json", tinyConfig dir "twice" 400 300 40 true)
            // Each step takes 3 s: the first signal's graceful stop has to wait for the step in progress.
            let p, _, err = startRf [ "RF_TEST_STEP_DELAY_MS", "3000" ] dir.Path [ "train"; "--config"; "cfg.json" ]
            let training = waitFor 20000 (fun () -> Directory.Exists(Path.Combine(dir.Path, "runs")) && Directory.GetDirectories(Path.Combine(dir.Path, "runs"), "twice-*").Length > 0)
            Expect.isTrue training "the run started"
            Threading.Thread.Sleep 1500
            sigterm p
            Threading.Thread.Sleep 50
            let clock = Stopwatch.StartNew()
            sigterm p
            Expect.isTrue (p.WaitForExit 10000) "terminated"
            Expect.isLessThan clock.Elapsed.TotalSeconds 1.5 ("at once after the second signal, not after the step: " + err.Result)
            Expect.equal p.ExitCode 130 ("exit code 130: " + err.Result)
            Expect.stringContains err.Result "terminating at once" "says so"
            let run = runDirOf dir "twice"
            let _, refused = ResearchFramework.Algorithm.Checkpoint.latestValid (Path.Combine(run, "checkpoints"))
            Expect.isEmpty refused "no half-written checkpoint"
        }
        test "worker --once: a bad job goes to failed/ with its error, a good one to done/ with its run directory" {
            use dir = new TempDir()
            writeTinyMnist dir 30 10
            let inbox = Path.Combine(dir.Path, "spool", "inbox")
            Directory.CreateDirectory inbox |> ignore
            let good = (tinyConfig dir "job" 20 10 40 true).TrimStart().Substring(1)
            File.WriteAllText(Path.Combine(inbox, "a-good.json"), "{ \"Command\": \"train\"," + good)
            File.WriteAllText(Path.Combine(inbox, "b-bad.json"), "{ \"Command\": \"train\", \"Training\": { \"LearningRat\": 0.1 } }")
            let cmp = (tinyConfig dir "cjob" 10 5 40 false).TrimStart().Substring(1)
            File.WriteAllText(Path.Combine(inbox, "c-compare.json"), "{ \"Command\": \"compare\", \"Seeds\": 1," + cmp)
            let code, out, err = runRf dir.Path [ "worker"; "--spool"; "spool"; "--once" ]
            Expect.equal code 1 (sprintf "a failed job → exit 1: %s %s" out err)
            let spool name = Path.Combine(dir.Path, "spool", name)
            Expect.isTrue (File.Exists(spool "done/a-good.json")) "good job done"
            Expect.isTrue (File.Exists(spool "failed/b-bad.json")) "bad job failed"
            Expect.stringContains (File.ReadAllText(spool "failed/b-bad.error.txt")) "Training:LearningRat" "error names the key"
            use result = JsonDocument.Parse(File.ReadAllText(spool "done/a-good.result.json"))
            let runDir = result.RootElement.GetProperty("runDirectory").GetString()
            Expect.isTrue (File.Exists(Path.Combine(runDir, "summary.json"))) "run directory recorded, summary written"
            use cresult = JsonDocument.Parse(File.ReadAllText(spool "done/c-compare.result.json"))
            let cmpDir = cresult.RootElement.GetProperty("runDirectory").GetString()
            Expect.isTrue (File.Exists(Path.Combine(cmpDir, "compare.csv"))) "compare job wrote its table"
            Expect.isEmpty (Directory.GetFiles(spool "inbox")) "inbox empty"
            Expect.isEmpty (Directory.GetFiles(spool "running")) "nothing left running"
        }
        test "worker: SIGTERM mid-job checkpoints and leaves the job in running/; the next start resumes and finishes it" {
            use dir = new TempDir()
            writeTinyMnist dir 30 10
            let inbox = Path.Combine(dir.Path, "spool", "inbox")
            Directory.CreateDirectory inbox |> ignore
            let body = (tinyConfig dir "job" 60 30 40 true).TrimStart().Substring(1)
            File.WriteAllText(Path.Combine(inbox, "job.json"), "{ \"Command\": \"train\"," + body)
            let p, _, err = startRf [ "RF_TEST_STEP_DELAY_MS", "40" ] dir.Path [ "worker"; "--spool"; "spool" ]
            let checkpointed = waitFor 20000 (fun () -> (checkpointFiles dir "job").Length > 0)
            Expect.isTrue checkpointed "a checkpoint appeared"
            sigterm p
            Expect.isTrue (p.WaitForExit 20000) "worker stopped after SIGTERM"
            Expect.equal p.ExitCode 0 ("graceful stop: " + err.Result)
            let spool name = Path.Combine(dir.Path, "spool", name)
            let left = Directory.GetFiles(spool "running", "job.json", SearchOption.AllDirectories)
            Expect.equal left.Length 1 ("job stays in running/<owner>/: " + err.Result)
            let run = runDirOf dir "job"
            let _, completed, _, _, _ = summary run
            Expect.isFalse completed "interrupted summary"
            let code, out, err2 = runRf dir.Path [ "worker"; "--spool"; "spool"; "--once" ]
            Expect.equal code 0 (sprintf "restart: %s %s" out err2)
            Expect.isTrue (File.Exists(spool "done/job.json")) "resumed job done"
            let _, completed2, iterations, _, _ = summary run
            Expect.isTrue completed2 "completed in the same run directory"
            Expect.equal iterations 60 "T iterations"
            Expect.stringContains err2 "resumed from" "resumed from the checkpoint"
            Expect.stringContains err2 "took over interrupted job job.json" "the new worker took the job over from the stopped one"
        }
        test "fencing: a worker whose running job was taken over exits at once (75) and writes nothing more into the run" {
            use dir = new TempDir()
            writeTinyMnist dir 30 10
            let spool name = Path.Combine(dir.Path, "spool", name)
            Directory.CreateDirectory(spool "inbox") |> ignore
            File.WriteAllText(spool "inbox/job.json", "{ \"Command\": \"train\"," + (tinyConfig dir "fenced" 400 300 40 true).TrimStart().Substring(1))
            // Steps of 1 s and a checkpoint every 5 steps: the next regular checkpoint is ~5 s after the takeover, far beyond
            // the fence's latency (a heartbeat, 0.5 s); a graceful stop would write one at once (the defect this guards).
            let p, _, err = startRf [ "RF_TEST_STEP_DELAY_MS", "1000"; "RF_WORKER_HEARTBEAT_SECONDS", "0.5" ] dir.Path [ "worker"; "--spool"; "spool" ]
            let running () = Directory.GetFiles(spool "running", "job.json", SearchOption.AllDirectories)
            let checkpoints () = checkpointFiles dir "fenced"
            Expect.isTrue (waitFor 30000 (fun () -> (checkpoints ()).Length > 0)) "the job runs and checkpoints"
            // Another worker takes the job over (as a takeover does: one rename out of this worker's folder).
            let claimed = (running ()) |> Array.exactlyOne
            let thief = spool "running/other-host-1-1-x"
            Directory.CreateDirectory thief |> ignore
            File.Move(claimed, Path.Combine(thief, "job.json"))
            let before = checkpoints () |> Array.map (fun f -> f, File.GetLastWriteTimeUtc f) |> Map.ofArray
            Expect.isTrue (p.WaitForExit 10000) "the fenced worker exits within a few heartbeats"
            Expect.equal p.ExitCode 75 ("exit 75: " + err.Result)
            Expect.stringContains err.Result "taken over by another worker" "says why"
            let after = checkpoints () |> Array.map (fun f -> f, File.GetLastWriteTimeUtc f) |> Map.ofArray
            Expect.equal after before "no checkpoint written or rewritten after the takeover"
            Expect.isFalse (File.Exists(spool "done/job.result.json")) "no result"
        }
        test "poison jobs never block the queue: a FIFO named *.json is skipped, a 250-character name still gets its error file, a job killed 3 times is failed, exit 1" {
            use dir = new TempDir()
            let spool name = Path.Combine(dir.Path, "spool", name)
            Directory.CreateDirectory(spool "inbox") |> ignore
            let mkfifo = ProcessStartInfo("/usr/bin/mkfifo", spool "inbox/fifo.json")
            use m = Process.Start mkfifo
            m.WaitForExit()
            writeTinyMnist dir 30 10
            let goodLong = String('g', 248)
            File.WriteAllText(spool ("inbox/" + goodLong + ".json"), "{ \"Command\": \"train\"," + (tinyConfig dir "long" 6 3 40 false).TrimStart().Substring(1))
            File.WriteAllText(spool "inbox/UPPER.JSON", "{}")
            Directory.CreateDirectory(spool "inbox/folder.json") |> ignore
            let longName = String('j', 250)
            File.WriteAllText(spool ("inbox/" + longName + ".json"), "{ \"Command\": \"train\", \"Training\": { \"LearningRat\": 1 } }")
            // A job whose worker was killed 3 times (its attempt counter says so), left by a worker that is gone.
            let dead = spool (sprintf "running/%s-999999998-1" Environment.MachineName)
            Directory.CreateDirectory dead |> ignore
            File.WriteAllText(Path.Combine(dead, "lease.json"), deadLease 999999998)
            File.WriteAllText(Path.Combine(dead, "oom.json"), "{ \"Command\": \"train\" }")
            File.WriteAllText(Path.Combine(dead, "oom.attempts"), "3")
            // Two more killed 3 times, each with a run directory holding a checkpoint: one made progress since its last start
            // (a signature that differs: its counter starts afresh and it runs), one did not (the same signature: failed).
            for job, progressed in [ "moved", true; "stuck", false ] do
                let run = Path.Combine(dir.Path, "runs-" + job)
                Directory.CreateDirectory(Path.Combine(run, "checkpoints")) |> ignore
                File.WriteAllText(Path.Combine(run, "checkpoints", "checkpoint-00000004.bin"), "not a checkpoint")
                let signature = if progressed then "0000000000000000" else ResearchFramework.Host.Worker.SpoolWorker.ProgressSignature run
                File.WriteAllText(Path.Combine(dead, job + ".json"), "{ \"Command\": \"train\"," + (tinyConfig dir job 6 3 40 false).TrimStart().Substring(1))
                File.WriteAllText(Path.Combine(dead, job + ".run"), run)
                File.WriteAllText(Path.Combine(dead, job + ".attempts"), sprintf "3 progress=%s\n" signature)
            let clock = Stopwatch.StartNew()
            let code, out, err = runRf dir.Path [ "worker"; "--spool"; "spool"; "--once" ]
            Expect.isLessThan clock.Elapsed.TotalSeconds 40.0 "finishes (never hangs on the FIFO)"
            Expect.equal code 1 (sprintf "failed jobs → exit 1: %s %s" out err)
            Expect.isTrue (File.Exists(spool "failed/oom.json")) "the job killed 3 times is failed"
            let oomError = File.ReadAllText(spool "failed/oom.error.txt")
            Expect.stringContains oomError "started 3 times" "with the reason"
            let stuckError = File.ReadAllText(spool "failed/stuck.error.txt")
            Expect.stringContains stuckError "started 3 times without finishing or progress" "no progress since its last start: failed"
            Expect.stringContains stuckError (Path.Combine(dir.Path, "runs-stuck")) "naming the run directory that keeps its work"
            Expect.stringContains (out + err) "moved made progress since its last start" "progress resets the counter"
            Expect.isFalse (File.Exists(spool "failed/moved.error.txt") && File.ReadAllText(spool "failed/moved.error.txt").Contains "started 3 times")
                "the job that made progress was started again (its fake checkpoint is then refused, another reason)"
            Expect.isTrue (File.Exists(spool ("failed/" + longName + ".json"))) "the long-named job failed (bad key)"
            let errors = Directory.GetFiles(spool "failed", "*.error.txt") |> Array.filter (fun f -> Path.GetFileName(f).StartsWith "jjjj")
            Expect.equal errors.Length 1 "its error file exists (name shortened with a hash)"
            Expect.stringContains (File.ReadAllText errors.[0]) "Training:LearningRat" "and names the key"
            Expect.isTrue (File.Exists(spool "inbox/fifo.json")) "the FIFO is left alone"
            Expect.isTrue (File.Exists(spool ("done/" + goodLong + ".json"))) "a 248-character job that succeeds is done"
            Expect.equal (Directory.GetFiles(spool "done", "gggg*.result.json").Length) 1 "with its (shortened) result file"
            let said = out + err
            for entry, why in [ "fifo.json", "not a regular file"; "UPPER.JSON", "lower case"; "folder.json", "a folder" ] do
                Expect.stringContains said (sprintf "inbox/%s ignored" entry) (entry + " is reported")
                Expect.stringContains said why (entry + ": with the reason")
        }
        test "two workers on one spool run each job exactly once; owners provably gone are taken over, live leases are not" {
            use dir = new TempDir()
            writeTinyMnist dir 30 10
            let spool name = Path.Combine(dir.Path, "spool", name)
            Directory.CreateDirectory(spool "inbox") |> ignore
            let body = (tinyConfig dir "job" 12 6 40 false).TrimStart().Substring(1)
            for k in 1 .. 6 do
                File.WriteAllText(spool (sprintf "inbox/job%d.json" k), "{ \"Command\": \"train\"," + body)
            // An interrupted job of a worker that is provably gone (this host, a PID that does not exist) ...
            let dead = spool (sprintf "running/%s-999999999-1" Environment.MachineName)
            Directory.CreateDirectory dead |> ignore
            File.WriteAllText(Path.Combine(dead, "lease.json"), deadLease 999999999)
            File.WriteAllText(Path.Combine(dead, "orphan.json"), "{ \"Command\": \"train\"," + body)
            // ... and one of a live worker on another host (fresh heartbeat): never touched.
            let live = spool "running/other-host-42-7"
            Directory.CreateDirectory live |> ignore
            File.WriteAllText(Path.Combine(live, "lease.json"),
                              sprintf "{\"host\":\"other-host\",\"pid\":42,\"startTicks\":7,\"heartbeatUtc\":\"%s\"}" (DateTime.UtcNow.ToString "O"))
            File.WriteAllText(Path.Combine(live, "theirs.json"), "{ \"Command\": \"train\"," + body)
            let p1, out1, err1 = startRf [] dir.Path [ "worker"; "--spool"; "spool"; "--once" ]
            Threading.Thread.Sleep 500
            let p2, out2, err2 = startRf [] dir.Path [ "worker"; "--spool"; "spool"; "--once" ]
            Expect.isTrue (p1.WaitForExit 120000 && p2.WaitForExit 120000) "both workers finish"
            Expect.equal (p1.ExitCode, p2.ExitCode) (0, 0) (sprintf "exit codes: %s | %s" err1.Result err2.Result)
            for k in 1 .. 6 do
                Expect.isTrue (File.Exists(spool (sprintf "done/job%d.result.json" k))) (sprintf "job%d done" k)
            Expect.isTrue (File.Exists(spool "done/orphan.result.json")) "the dead worker's job was taken over and finished"
            Expect.isEmpty (Directory.GetFiles(spool "failed")) ("nothing failed: " + String.Join(", ", Directory.GetFiles(spool "failed")))
            Expect.isTrue (File.Exists(Path.Combine(live, "theirs.json"))) "a live lease is respected"
            let runs = Directory.GetDirectories(Path.Combine(dir.Path, "runs"), "job-*")
            Expect.equal runs.Length 7 "one run directory per job (6 + the orphan), none shared or doubled"
            let runDirs = [ for k in 1 .. 6 -> (JsonDocument.Parse(File.ReadAllText(spool (sprintf "done/job%d.result.json" k)))).RootElement.GetProperty("runDirectory").GetString() ]
            Expect.equal (List.distinct runDirs).Length 6 "distinct run directories"
            let claimed = (out1.Result + out2.Result + err1.Result + err2.Result)
            for k in 1 .. 6 do
                Expect.equal (Regex.Matches(claimed, sprintf "claimed job%d.json" k).Count) 1 (sprintf "job%d claimed exactly once" k)
            let logs = Directory.GetFiles(spool "logs")
            Expect.equal logs.Length 2 "one log file per worker"
            for log in logs do
                for line in File.ReadAllLines log do JsonDocument.Parse(line).Dispose() // every line parses
        }
        test "the recipe's damping must be summable: DampingPower ≤ 1 in damped mode fails at start-up naming the key" {
            let load overrides =
                ResearchFramework.Host.Infrastructure.Configuration.RfOptions.Load(
                    ResearchFramework.Host.Infrastructure.Configuration.RfConfiguration.Build(
                        ResearchFramework.Host.Infrastructure.Configuration.ConfigurationInput(null, overrides)))
            let e = throwsT<ResearchFramework.Host.Infrastructure.Configuration.ConfigurationException> (fun () ->
                        load [| "Recipe:Enabled=true"; "Recipe:DampingPower=1" |] |> ignore)
            Expect.stringContains e.Message "DampingPower" "names the key"
            let ok = load [| "Recipe:Enabled=true"; "Recipe:PhaseTwoMode=frozen"; "Recipe:DampingPower=1" |]
            Expect.equal ok.Recipe.PhaseTwoMode "frozen" "frozen mode needs no damping"
            let mapped = ResearchFramework.Host.Training.RunSetup.Recipe((load [| "Recipe:Enabled=true"; "Recipe:Kappa=0.5" |]).Recipe,
                                                                         (load [||]).Training, true)
            Expect.equal mapped.DampingPower 2.0 "default p = 2 (SPEC §4.3)"
            Expect.equal mapped.GuardKappa 0.5 "κ mapped"
            Expect.equal mapped.ReadoutStep ResearchFramework.Algorithm.ReadoutStepRule.Theorem "default readout step: the theorem's cap"
            let schedule = ResearchFramework.Host.Training.RunSetup.Recipe((load [| "Recipe:Enabled=true"; "Recipe:ReadoutStep=schedule" |]).Recipe,
                                                                           (load [||]).Training, true)
            Expect.equal schedule.ReadoutStep ResearchFramework.Algorithm.ReadoutStepRule.Schedule "Recipe:ReadoutStep=schedule mapped"
            Expect.equal mapped.Readout ResearchFramework.Algorithm.ReadoutChoice.Separate "default readout: separate"
            let outputLayer = ResearchFramework.Host.Training.RunSetup.Recipe((load [| "Recipe:Enabled=true"; "Recipe:Readout=output-layer" |]).Recipe,
                                                                              (load [||]).Training, true)
            Expect.equal outputLayer.Readout ResearchFramework.Algorithm.ReadoutChoice.OutputLayer "Recipe:Readout=output-layer mapped"
            let bad = throwsT<ResearchFramework.Host.Infrastructure.Configuration.ConfigurationException> (fun () ->
                        load [| "Recipe:Enabled=true"; "Recipe:ReadoutStep=fast" |] |> ignore)
            Expect.stringContains bad.Message "ReadoutStep" "an unknown rule names the key"
        }
        test "data for the Algorithm: MLP inputs flattened, one-hot targets for squared loss, labels for cross-entropy" {
            let rng = Random 3
            let mk n name = ResearchFramework.Host.Data.Dataset(name, Array.init (n * 2 * 3 * 3) (fun _ -> float32 (rng.NextDouble())), Array.init n (fun i -> i % 4), 4, 2, 3, 3)
            let load overrides =
                ResearchFramework.Host.Infrastructure.Configuration.RfOptions.Load(
                    ResearchFramework.Host.Infrastructure.Configuration.RfConfiguration.Build(
                        ResearchFramework.Host.Infrastructure.Configuration.ConfigurationInput(null, overrides)))
            let squared = load [| "Training:Loss=squared"; "Model:HiddenWidths:0=5"; "Model:WideWidth=30"; "Model:Precision=float64" |]
            use t = ResearchFramework.Host.Training.RunSetup.ToTensors(mk 8 "train", mk 3 "test", squared)
            Expect.sequenceEqual t.Train.Inputs.shape [| 8L; 18L |] "flattened C×H×W"
            Expect.equal t.Train.Inputs.dtype TorchSharp.torch.ScalarType.Float64 "model dtype"
            Expect.sequenceEqual t.Train.Targets.shape [| 8L; 4L |] "one-hot rows"
            Expect.equal (t.Train.Targets.sum().item<float> ()) 8.0 "one 1 per row"
            let arch = ResearchFramework.Host.Training.RunSetup.Architecture(squared, t)
            Expect.sequenceEqual arch.Widths [| 5; 30 |] "narrow widths, then the wide layer"
            Expect.sequenceEqual arch.InputShape [| 18 |] "MLP input dimension"
            let ce = load [| "Training:Loss=crossentropy"; "Model:Architecture=lenet" |]
            use t2 = ResearchFramework.Host.Training.RunSetup.ToTensors(mk 8 "train", mk 3 "test", ce)
            Expect.sequenceEqual t2.Train.Inputs.shape [| 8L; 2L; 3L; 3L |] "images kept for a conv net"
            Expect.equal t2.Train.Targets.dtype TorchSharp.torch.ScalarType.Int64 "labels"
            Expect.sequenceEqual (t2.Train.Targets.data<int64>().ToArray()) [| 0L; 1L; 2L; 3L; 0L; 1L; 2L; 3L |] "label values"
        }
        test "a corrupt IDX file is named in the error" {
            use dir = new TempDir()
            let target = Path.Combine(dir.Path, "data", "mnist")
            Directory.CreateDirectory target |> ignore
            File.WriteAllBytes(Path.Combine(target, "train-images-idx3-ubyte"), idxBytes 0x803 [ 10; rows; cols ] (Array.zeroCreate 50))
            File.WriteAllBytes(Path.Combine(target, "train-labels-idx1-ubyte"), idxBytes 0x801 [ 10 ] (syntheticLabels 10))
            File.WriteAllBytes(Path.Combine(target, "t10k-images-idx3-ubyte"), idxBytes 0x803 [ 2; rows; cols ] (Array.zeroCreate 72))
            File.WriteAllBytes(Path.Combine(target, "t10k-labels-idx1-ubyte"), idxBytes 0x801 [ 2 ] (syntheticLabels 2))
            let code, _, err = runRf dir.Path [ "data"; "fetch"; "mnist"; "--data-dir"; "data"; "--own" ]
            Expect.equal code 1 "exit code"
            Expect.stringContains err "train-images-idx3-ubyte" "names the file"
        }
        test "compare (1 seed) writes the table and plots; certify --config exits 0 Certified / 1 when too narrow" {
            use dir = new TempDir()
            writeTinyMnist dir 30 10
            File.WriteAllText(dir.File "cfg.json", tinyConfig dir "cmp" 20 10 40 false)
            let code, out, err = runRf dir.Path [ "compare"; "--config"; "cfg.json"; "--seeds"; "1" ]
            Expect.equal code 0 (sprintf "compare: %s %s" out err)
            Expect.stringContains out "| two-phase | 1 |" "table printed"
            Expect.stringContains out "Certified: 1" "verdict counts"
            let cmp = runDirOf dir "cmp"
            for f in [ "compare.md"; "compare.csv"; "plots/loss-all-runs.png"; "plots/test-error.png"; "runs/base-seed1/summary.json"; "runs/two-phase-seed1/summary.json" ] do
                Expect.isTrue (File.Exists(Path.Combine(cmp, f))) f
            Expect.equal (File.ReadAllLines(Path.Combine(cmp, "compare.csv")).Length) 3 "header + 2 runs"
            let code2, out2, _ = runRf dir.Path [ "certify"; "--config"; "cfg.json" ]
            Expect.equal code2 0 ("Certified at init: " + out2)
            Expect.stringContains out2 "verdict: Certified" "verdict"
            let code3, out3, _ = runRf dir.Path [ "certify"; "--config"; "cfg.json"; "--set"; "Model:WideWidth=8" ]
            Expect.equal code3 1 "m + 1 < n is refuted"
            Expect.stringContains out3 "Refuted" "verdict"
            let code4, out4, _ = runRf dir.Path [ "certify"; "--config"; "cfg.json"; "--checkpoint"; Path.Combine(cmp, "runs", "two-phase-seed1"); "--subset"; "12" ]
            Expect.equal code4 0 ("checkpoint certificate: " + out4)
            Expect.stringContains out4 "n = 12" "subset"
            // The same certificate through the tiled engine (7-row tiles): same verdict and σ_min bound, progress on stderr.
            let code5, out5, err5 = runRf dir.Path [ "certify"; "--config"; "cfg.json"; "--engine"; "tiled"; "--tile-size"; "7" ]
            Expect.equal code5 0 ("tiled: Certified at init: " + out5 + err5)
            Expect.stringContains err5 "tiles: gram 15/15" "progress: 5 tile rows, 15 Gram tiles"
            let sigma (s: string) = float (Text.RegularExpressions.Regex.Match(s, "σ_min ≥ ([0-9.eE+-]+)").Groups.[1].Value)
            Expect.isLessThanOrEqual (abs (sigma out5 - sigma out2)) (1e-4 * sigma out2) ("the dense engine's σ_min bound: " + out2 + out5)
            Expect.isEmpty (Directory.GetDirectories(Path.Combine(dir.Path, "runs"), "tiles-*")) "tile files removed after the certificate is saved"
        }
        test "rf certify --matrix --engine tiled killed (SIGKILL) mid-run: the same command resumes from the tile files, the dense verdict and bound" {
            use dir = new TempDir()
            let rng = Random 13
            let n, m = 60, 90
            File.WriteAllBytes(dir.File "x.npy", npyBytes 1uy "<f8" false [ n; m ] (f8Bytes (Array.init (n * m) (fun _ -> rng.NextDouble() - 0.5))))
            let args = [ "certify"; "--matrix"; "x.npy"; "--engine"; "tiled"; "--tile-size"; "6"; "--json"; "t.json" ]
            // 30 ms per tile (test hook): the kill lands among the Gram's 55 tiles, after more than 20 are on disk.
            let p, _, _ = startRf [ "RF_TEST_TILE_DELAY_MS", "30" ] dir.Path args
            let manifest = dir.File "t.tiles/manifest.txt"
            let tilesDone () =
                try File.ReadAllLines manifest |> Array.filter (fun l -> l.StartsWith "entry tile:") |> Array.length with _ -> 0
            Expect.isTrue (waitFor 60000 (fun () -> tilesDone () > 20)) "tiles being written"
            p.Kill true
            p.WaitForExit()
            Expect.isFalse (File.Exists(dir.File "t.json")) "killed before the certificate"
            let code, out, err = runRf dir.Path args
            Expect.equal code 0 ("resumed: Certified: " + out + err)
            let readBack = Regex.Match(err, @"gram: 55 tiles \((\d+) computed, (\d+) read back\)")
            Expect.isTrue readBack.Success ("the Gram phase reports its tiles: " + err)
            Expect.isGreaterThan (int readBack.Groups.[2].Value) 20 ("tiles read back from the killed run's files: " + err)
            Expect.isFalse (err.Contains "refused") ("a SIGKILL leaves no bad file (atomic renames): " + err)
            let code2, out2, _ = runRf dir.Path [ "certify"; "--matrix"; "x.npy"; "--engine"; "dense"; "--json"; "d.json" ]
            Expect.equal code2 0 ("dense: " + out2)
            let t = ResearchFramework.MathCore.CertificateJson.load (dir.File "t.json")
            let d = ResearchFramework.MathCore.CertificateJson.load (dir.File "d.json")
            Expect.equal t.Verdict d.Verdict "same verdict"
            Expect.isLessThanOrEqual (abs (t.SigmaMinLower - d.SigmaMinLower)) (1e-6 * d.SigmaMinLower) "same σ_min bound up to rounding"
            Expect.isFalse (Directory.Exists(dir.File "t.tiles")) "tile files removed after the certificate is saved"
        }
        test "rf export: a finished run's final parameters as .safetensors and PyTorch .pt, read back bit for bit equal to the checkpoint's model; not a run: exit 2" {
            use dir = new TempDir()
            writeTinyMnist dir 30 10
            File.WriteAllText(dir.File "cfg.json", tinyConfig dir "exp" 10 5 40 false)
            let code, out, err = runRf dir.Path [ "train"; "--config"; "cfg.json" ]
            Expect.equal code 0 (sprintf "train: %s %s" out err)
            let run = runDirOf dir "exp"
            let fingerprint, completed, _, _, _ = summary run
            Expect.isTrue completed "finished"
            let code2, out2, err2 = runRf dir.Path [ "export"; "--run"; run; "--out"; "final.safetensors" ]
            Expect.equal code2 0 (sprintf "export: %s %s" out2 err2)
            Expect.stringContains out2 "exported:" "says where"
            // Read back with the reader of rf certify.
            let file = dir.File "final.safetensors"
            let struct (entries, metadata, dataStart) = ResearchFramework.Host.Data.SafetensorsReader.ReadHeader file
            let bytes = File.ReadAllBytes file
            Expect.equal metadata.["fingerprint"] fingerprint "the final parameters of the run (summary.json's fingerprint)"
            // The same network, loaded from the latest verified checkpoint the trainer's way.
            let options = ResearchFramework.Host.Certification.ModelExport.RunOptions run
            let struct (checkpoint, _) = ResearchFramework.Host.Certification.ModelExport.LatestCheckpoint run
            let struct (model, header) = ResearchFramework.Host.Certification.ModelExport.LoadModel(options, 1, rows, cols, 10, checkpoint)
            use model = model
            Expect.equal metadata.["iteration"] (string header.Iteration) "checkpoint iteration recorded"
            let parameters = [ for struct (name, p) in model.named_parameters () -> name, p ]
            Expect.equal (entries |> Seq.map (fun e -> e.Name) |> List.ofSeq) (parameters |> List.map fst) "tensor names = the module's parameter names, in order"
            for (name, p), e in Seq.zip parameters entries do
                use cpu = p.detach().cpu().contiguous()
                Expect.equal (List.ofArray e.Shape) (List.ofArray cpu.shape) (name + ": shape")
                Expect.equal e.Dtype "F32" (name + ": dtype")
                Expect.equal bytes.[int (dataStart + e.Begin) .. int (dataStart + e.End) - 1] (cpu.bytes.ToArray()) (name + ": bytes bit for bit")
            // The first layer's weight is a 2-D tensor: certify reads it by name.
            let first = (Seq.head entries).Name
            let code3, out3, err3 = runRf dir.Path [ "certify"; "--matrix"; "final.safetensors"; "--tensor"; first; "--bias"; "off" ]
            Expect.contains [ 0; 1 ] code3 (sprintf "certify reads the export: %s %s" out3 err3)
            // A two-phase run: the readout V after the switch is exported too; the fingerprint is the run's final one.
            File.WriteAllText(dir.File "cfg2.json", tinyConfig dir "exp2" 10 5 40 true)
            let codeT, outT, errT = runRf dir.Path [ "train"; "--config"; "cfg2.json" ]
            Expect.equal codeT 0 (sprintf "two-phase train: %s %s" outT errT)
            let run2 = runDirOf dir "exp2"
            let fingerprint2, _, _, _, verdict2 = summary run2
            let codeE, outE, errE = runRf dir.Path [ "export"; "--run"; run2 ]
            Expect.equal codeE 0 (sprintf "export two-phase: %s %s" outE errE)
            let struct (entries2, metadata2, _) = ResearchFramework.Host.Data.SafetensorsReader.ReadHeader(Path.Combine(run2, "export", "final.safetensors"))
            Expect.equal metadata2.["fingerprint"] fingerprint2 ("body and readout: the run's final parameters (" + verdict2 + ")")
            let names2 = entries2 |> Seq.map (fun e -> e.Name) |> List.ofSeq
            Expect.equal (names2 |> List.filter (fun n -> not (n.StartsWith "readout."))) (parameters |> List.map fst) "the model's parameter names first"
            if verdict2 = "Certified" then Expect.contains names2 "readout.weight" "the readout V of the switched run"
            // ... and as a PyTorch state dict beside it (the default writes both): read back three ways.
            let pt = Path.Combine(run2, "export", "final.pt")
            Expect.stringContains outE pt "says where the .pt went"
            let safetensorsBytes =
                let all = File.ReadAllBytes(Path.Combine(run2, "export", "final.safetensors"))
                let struct (_, _, start2) = ResearchFramework.Host.Data.SafetensorsReader.ReadHeader(Path.Combine(run2, "export", "final.safetensors"))
                [ for e in entries2 -> e.Name, all.[int (start2 + e.Begin) .. int (start2 + e.End) - 1] ]
            // (1) as a zip, without the pickler: one raw storage per tensor, in order, bytes equal; data.pkl names them
            do
                use zip = IO.Compression.ZipFile.OpenRead pt
                let entry (suffix: string) = zip.Entries |> Seq.find (fun e -> e.FullName.EndsWith suffix)
                let read (e: IO.Compression.ZipArchiveEntry) =
                    use s = e.Open()
                    use m = new MemoryStream()
                    s.CopyTo m
                    m.ToArray()
                safetensorsBytes |> List.iteri (fun k (name, bytes) ->
                    Expect.equal (read (entry (sprintf "/data/%d" k))) bytes (sprintf "storage %d = %s's bytes" k name))
                let pickle = Text.Encoding.Latin1.GetString(read (entry "/data.pkl"))
                for name, _ in safetensorsBytes do Expect.stringContains pickle name "data.pkl names every tensor"
                Expect.stringContains pickle "_rebuild_tensor_v2" "tensors rebuilt as torch.save writes them"
            // (2) through the unpickler: names, dtypes, shapes and bytes
            let back = ResearchFramework.Host.Certification.PyTorchStateDict.Read pt
            Expect.equal (set [ for struct (n, _) in back -> n ]) (set names2) "the same names (the unpickler's table has no order)"
            let exported = dict safetensorsBytes
            for struct (name, t) in back do
                use t = t
                Expect.equal (t.bytes.ToArray()) exported.[name] (name + ": bytes bit for bit")
            // (3) with PyTorch itself where it is installed (not on CI machines): torch.load gives the same bytes
            let pythonTorch =
                [ "python3"; "/usr/bin/python3" ] |> List.tryPick (fun python ->
                try
                    let info = Diagnostics.ProcessStartInfo(python, RedirectStandardOutput = true, RedirectStandardError = true)
                    for a in [ "-c"; "import hashlib,sys,torch; d=torch.load(sys.argv[1]); print(';'.join(k+'='+hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest() for k,v in d.items()))"; pt ] do info.ArgumentList.Add a
                    use p = Diagnostics.Process.Start info
                    let out = p.StandardOutput.ReadToEnd()
                    p.WaitForExit()
                    if p.ExitCode = 0 then Some (out.Trim()) else None
                with _ -> None)
            match pythonTorch with
            | Some printed ->
                printfn "rf export: torch.load checked the .pt"
                let expected = safetensorsBytes |> List.map (fun (n, b) -> n + "=" + Convert.ToHexStringLower(Security.Cryptography.SHA256.HashData(b: byte[]))) |> String.concat ";"
                Expect.equal printed expected "torch.load reads the same tensors, bit for bit"
            | None -> ()
            let code4, _, err4 = runRf dir.Path [ "export"; "--run"; dir.Path ]
            Expect.equal code4 2 ("not a run: " + err4)
            Expect.stringContains err4 "not a run directory" "says why"
        }
        test "a German locale prints no decimal comma (train, certify --matrix, worker and its log); worker --once exits 1 when any job failed, 0 when none did" {
            // The test means something only where .NET honours the locale: ICU present, invariant globalization off.
            let german = Globalization.CultureInfo.GetCultureInfo "de-DE"
            if (1.5).ToString german <> "1,5" then
                skiptestf "de-DE formats 1.5 as %s here (no ICU, or DOTNET_SYSTEM_GLOBALIZATION_INVARIANT): nothing to check" ((1.5).ToString german)
            let locale = [ "LANG", "de_DE.UTF-8"; "LC_ALL", "de_DE.UTF-8"; "LC_NUMERIC", "de_DE.UTF-8"; "DOTNET_SYSTEM_GLOBALIZATION_INVARIANT", null ]
            // A digit, a comma, a digit: 0,139; integer lists in brackets ("widths=[4,40]") are no decimals and are left out.
            let decimalComma = Regex(@"\d,\d")
            let noComma (what: string) (raw: string) =
                let text = Regex.Replace(raw, @"\[[\d,\s]*\]", "[…]")
                let m = decimalComma.Match text
                let around = if m.Success then text.Substring(max 0 (m.Index - 60), min 120 (text.Length - max 0 (m.Index - 60))) else ""
                Expect.isFalse m.Success (sprintf "%s: a decimal comma under de_DE: …%s…" what around)
            use dir = new TempDir()
            writeTinyMnist dir 30 10
            File.WriteAllText(dir.File "cfg.json", tinyConfig dir "de" 10 5 40 true)
            let code, out, err = runRfWith locale dir.Path [ "train"; "--config"; "cfg.json" ]
            Expect.equal code 0 (sprintf "train: %s %s" out err)
            Expect.isMatch out @"final train loss: \d+\.\d+" "the loss printed with a decimal point"
            noComma "rf train" (out + err)
            let rng = Random 7
            File.WriteAllBytes(dir.File "m.npy", npyBytes 1uy "<f8" false [ 12; 20 ] (f8Bytes (Array.init 240 (fun _ -> rng.NextDouble() - 0.5))))
            let code2, out2, err2 = runRfWith locale dir.Path [ "certify"; "--matrix"; "m.npy" ]
            Expect.equal code2 0 (sprintf "certify: %s %s" out2 err2)
            Expect.isMatch out2 @"σ_min ≥ \d\.\d+" "σ_min printed with a decimal point"
            noComma "rf certify --matrix" (out2 + err2 + File.ReadAllText(dir.File "m.certificate.json"))
            // The worker: a good and a bad job → exit 1; then only a good job → exit 0. Its log and outputs: no comma.
            let spool name = Path.Combine(dir.Path, "spool", name)
            Directory.CreateDirectory(spool "inbox") |> ignore
            File.WriteAllText(spool "inbox/good.json", "{ \"Command\": \"train\"," + (tinyConfig dir "wgood" 10 5 40 true).TrimStart().Substring(1))
            File.WriteAllText(spool "inbox/bad.json", "{ \"Command\": \"train\", \"Training\": { \"LearningRat\": 0.1 } }")
            let code3, out3, err3 = runRfWith locale dir.Path [ "worker"; "--spool"; "spool"; "--once" ]
            Expect.equal code3 1 (sprintf "a failed job → exit 1: %s %s" out3 err3)
            Expect.isTrue (File.Exists(spool "failed/bad.json")) "the bad job failed"
            Expect.isTrue (File.Exists(spool "done/good.json")) "the good job is done"
            File.WriteAllText(spool "inbox/good2.json", "{ \"Command\": \"train\"," + (tinyConfig dir "wgood2" 10 5 40 false).TrimStart().Substring(1))
            let code4, out4, err4 = runRfWith locale dir.Path [ "worker"; "--spool"; "spool"; "--once" ]
            Expect.equal code4 0 (sprintf "no job failed in this run → exit 0: %s %s" out4 err4)
            noComma "rf worker" (out3 + err3 + out4 + err4)
            for log in Directory.GetFiles(spool "logs") do noComma log (File.ReadAllText log)
            for run in Directory.GetDirectories(Path.Combine(dir.Path, "runs")) do
                for file in Directory.GetFiles(run, "*", SearchOption.AllDirectories) do
                    if [ ".json"; ".jsonl"; ".csv"; ".md"; ".txt" ] |> List.contains (Path.GetExtension file) then noComma file (File.ReadAllText file)
        }
    ]
