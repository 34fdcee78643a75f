/// What the test groups share: the repository root above the test binaries, a child process run to completion
/// under a watchdog, and the small network of the "your own model" tests.
module ResearchFramework.Properties.TestSupport

open System
open System.Diagnostics
open System.IO
open Expecto
open TorchSharp

/// The folder holding ResearchFramework.sln above the test binaries.
let repositoryRoot () =
    let rec up (d: DirectoryInfo) =
        if isNull d then failwith "ResearchFramework.sln not found above the test binaries"
        elif File.Exists(Path.Combine(d.FullName, "ResearchFramework.sln")) then d.FullName
        else up d.Parent
    up (DirectoryInfo AppContext.BaseDirectory)

/// This test run's build configuration (Release/Debug) and target folder (net10.0): where sibling projects' outputs are.
let buildConfiguration () = (DirectoryInfo AppContext.BaseDirectory).Parent.Name
let targetFolder () = (DirectoryInfo AppContext.BaseDirectory).Name

/// Runs `file` with `args` in `workingDirectory` (null: this process's), with environment changes (a null value
/// removes the variable); waits at most `timeoutMs` (a watchdog against a hang, not a speed limit), then kills the
/// process tree and fails the test naming it. Returns exit code, stdout, stderr.
let runProcess (file: string) (args: string list) (workingDirectory: string) (environment: (string * string) list) (timeoutMs: int) =
    let info = ProcessStartInfo(file, RedirectStandardOutput = true, RedirectStandardError = true)
    if not (isNull workingDirectory) then info.WorkingDirectory <- workingDirectory
    for a in args do info.ArgumentList.Add a
    for (k, v) in environment do
        if isNull v then info.Environment.Remove k |> ignore else info.Environment[k] <- v
    use p = Process.Start info
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    if not (p.WaitForExit timeoutMs) then
        p.Kill true
        failtestf "%s %s did not finish in %d s" (Path.GetFileName file) (String.Join(" ", args)) (timeoutMs / 1000)
    p.ExitCode, out.Result, err.Result

type private Net = torch.nn.Module<torch.Tensor, torch.Tensor>

/// A user's own network, not one of the repository's: input 3 → fc1 → 40 (tanh, the tap "hidden") → fc2 → 2,
/// float64, initialised from `seed`.
let tanhNetwork (seed: int) =
    torch.random.manual_seed (int64 seed) |> ignore
    torch.nn.Sequential(
        [| struct ("fc1", torch.nn.Linear(3L, 40L, true, dtype = torch.float64) :> Net)
           struct ("hidden", torch.nn.Tanh() :> Net)
           struct ("fc2", torch.nn.Linear(40L, 2L, true, dtype = torch.float64) :> Net) |])

/// Counts the cases of a property whose guarded expectations actually ran (the case met the
/// precondition), so that a property whose precondition fails in every case cannot pass silently.
type NonVacuous() =
    let mutable count = 0
    /// Cases counted so far in this run of the property.
    member _.Count = count
    /// Marks the current case as non-vacuous: its guarded expectations ran.
    member _.Hit() = count <- count + 1
    member internal _.Reset() = count <- 0

/// The minimum number of non-vacuous cases among `cases`: ⌈fraction·cases⌉, at least 1.
let minimumCases (fraction: float) (cases: int) = max 1 (int (ceil (fraction * float cases)))

/// `testPropertyWithConfig` for a property whose expectations are guarded by a precondition: the
/// property calls `counter.Hit()` in each case where the guarded expectations ran, and after FsCheck
/// passes every case the test fails unless at least `minimumCases fraction maxTest` cases did (a
/// failing case reports its own failure and seed first; the count is checked only after a pass).
let testPropertyCounting (config: FsCheckConfig) (fraction: float) (name: string) (property: NonVacuous -> int -> unit) : Test =
    let counter = NonVacuous()
    let rec wrap (t: Test) =
        match t with
        | TestLabel (label, inner, focus) -> TestLabel (label, wrap inner, focus)
        | TestCase (AsyncFsCheck (testConfig, stressConfig, runProperty), focus) ->
            let counted (cfg: FsCheckConfig) =
                async {
                    counter.Reset()
                    do! runProperty cfg
                    ResearchFramework.Properties.Seeds.Observe.counted counter.Count fraction
                    let minimum = minimumCases fraction cfg.maxTest
                    // A verification run judges the count over all its batches (its report), not per batch; a replay
                    // (RF_REPLAY_SEED: one saved case) has no count to judge.
                    if counter.Count < minimum && not ResearchFramework.Properties.Seeds.Observe.verifying
                       && ResearchFramework.Properties.Seeds.replay.IsNone then
                        failtestf "vacuous: the precondition held in %d of %d cases, the property needs at least %d (%g of the cases)"
                            counter.Count cfg.maxTest minimum fraction
                }
            TestCase (AsyncFsCheck (testConfig, stressConfig, counted), focus)
        | other -> failwithf "testPropertyCounting: expected an FsCheck property, got %A" other
    wrap (testPropertyWithConfig config name (fun (seed: int) -> property counter seed))
