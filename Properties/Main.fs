/// Test runner: Expecto with every torch-touching test sequenced, then the plain
/// "N passed, N failed, N skipped" line that CI reads (Expecto's own summary is not recognised).
/// Started by `dotnet test` (Microsoft.Testing.Platform), the same tests run through TestingPlatform.run instead,
/// after the same kernel self-check.
/// `--verify …` / `--verify-replay FILE`: the verification mode behind `rf verify` (Verify/Runner.fs).
module ResearchFramework.Properties.Main

open Expecto
open Expecto.Impl

[<EntryPoint>]
let main argv =
    // libtorch's large buffers on huge pages, asked for before anything loads libtorch (Environment.fs `HugePages`)
    ResearchFramework.MathCore.HugePages.request ()
    // Trust before the first test: the convolution kernels the suite uses pass their numerical
    // self-check, or the runner switches kernel path (and may restart itself), or refuses to run.
    // A device that is not there (RF_TEST_DEVICE=cuda without CUDA) is said in one line, not a stack trace.
    match (try KernelCheckTests.ensureForSuite () with :? System.ArgumentException as e -> Result.Error ("RF_TEST_DEVICE: " + e.Message)) with
    | Result.Error message ->
        eprintfn "%s" message
        exit 2
    | Result.Ok line -> printfn "environment: %s" line
    match List.ofArray argv with
    | "--verify" :: rest -> exit (Verify.Runner.main rest)
    | [ "--verify-replay"; file ] -> exit (Verify.Runner.replayMain file)
    | _ -> ()
    if TestingPlatform.isPlatformInvocation argv then TestingPlatform.run argv else
    let mutable counts = (0, 0, 0)
    let printer =
        let inner = TestPrinters.defaultPrinter
        { inner with
            summary = fun config summary ->
                counts <- (summary.passed.Length, summary.failed.Length + summary.errored.Length, summary.ignored.Length)
                inner.summary config summary }
    let exitCode =
        Tests.runTestsInAssemblyWithCLIArgs [ CLIArguments.Sequenced; CLIArguments.Printer printer ] (Array.append [| "--no-spinner" |] argv)
    let passed, failed, skipped = counts
    // Expecto wraps Console.Out in a padding ANSI writer; write the line to raw stdout.
    use stdout = new System.IO.StreamWriter(System.Console.OpenStandardOutput())
    stdout.Write(sprintf "\n%d passed, %d failed, %d skipped\n" passed failed skipped)
    exitCode
