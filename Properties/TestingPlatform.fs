/// The suite as a Microsoft.Testing.Platform (MTP) application, for `dotnet test` (global.json selects the MTP runner):
/// the same Expecto tests, run sequenced as in `dotnet run`, each reported to the platform as passed, failed (an
/// expectation or an exception) or skipped, so `dotnet test` lists every failure and exits non-zero (MTP's exit code 2)
/// when any test failed, and 8 when no test ran. Expecto's `--filter`, `--filter-test-list` and `--filter-test-case` are
/// accepted (`dotnet test -- --filter-test-case NAME`). `dotnet run --project Properties` does not go through here.
module ResearchFramework.Properties.TestingPlatform

open System
open System.Reflection
open System.Threading.Tasks
open Expecto
open Expecto.Impl
open Microsoft.Testing.Platform.Builder
open Microsoft.Testing.Platform.Capabilities.TestFramework
open Microsoft.Testing.Platform.CommandLine
open Microsoft.Testing.Platform.Extensions
open Microsoft.Testing.Platform.Extensions.CommandLine
open Microsoft.Testing.Platform.Extensions.Messages
open Microsoft.Testing.Platform.Extensions.TestFramework
open Microsoft.Testing.Platform.Requests
open Microsoft.Testing.Platform.Services

/// Expecto's filter options, passed to Expecto unchanged (each takes one argument).
let private expectoFilters = [ "filter"; "filter-test-list"; "filter-test-case" ]

/// True when the platform started this process: `dotnet test` runs the test application with `--server` and
/// `--dotnet-test-pipe`; `--mtp` (removed before the platform sees it) asks for MTP's own console mode by hand.
let isPlatformInvocation (argv: string[]) =
    argv |> Array.exists (fun a -> a = "--server" || a = "--dotnet-test-pipe" || a = "--mtp")

type private ExpectoFilterOptions() =
    interface IExtension with
        member _.Uid = "ResearchFramework.ExpectoFilters"
        member _.Version = "1.0.0"
        member _.DisplayName = "Expecto filters"
        member _.Description = "Expecto's --filter, --filter-test-list and --filter-test-case"
        member _.IsEnabledAsync() = Task.FromResult true
    interface ICommandLineOptionsProvider with
        member _.GetCommandLineOptions() =
            [| for name in expectoFilters ->
                CommandLineOption(name, sprintf "Expecto's --%s: run only the tests it selects" name, ArgumentArity.ExactlyOne, false) |]
            :> Collections.Generic.IReadOnlyCollection<_>
        member _.ValidateOptionArgumentsAsync(_, _) = ValidationResult.ValidTask
        member _.ValidateCommandLineOptionsAsync _ = ValidationResult.ValidTask

/// The test framework extension: discovery lists Expecto's tests; a run runs them through Expecto (sequenced, as
/// `dotnet run` does) with a printer that publishes each result as it arrives.
type private ExpectoFramework(services: IServiceProvider) =
    let options = services.GetCommandLineOptions()
    let expectoArgs () =
        [| yield "--no-spinner"
           for name in expectoFilters do
               match options.TryGetOptionArgumentList name with
               | true, values -> for v in values do yield "--" + name; yield v
               | _ -> () |]
    let allTests () =
        match testFromAssembly (Assembly.GetEntryAssembly()) with
        | Some t -> t
        | None -> TestList([], Normal)

    member private this.Publish (context: ExecuteRequestContext) (session: Microsoft.Testing.Platform.TestHost.SessionUid)
                                (name: string) (state: IProperty) =
        context.MessageBus.PublishAsync(this, TestNodeUpdateMessage(session, TestNode(Uid = TestNodeUid name, DisplayName = name, Properties = PropertyBag [| state |])))
        |> Async.AwaitTask

    interface IExtension with
        member _.Uid = "ResearchFramework.Expecto"
        member _.Version = "1.0.0"
        member _.DisplayName = "Expecto (ResearchFramework properties)"
        member _.Description = "Runs the Expecto + FsCheck property suite and reports each test"
        member _.IsEnabledAsync() = Task.FromResult true

    interface IDataProducer with
        member _.DataTypesProduced = [| typeof<TestNodeUpdateMessage> |]

    interface ITestFramework with
        member _.CreateTestSessionAsync _ = Task.FromResult(CreateTestSessionResult(IsSuccess = true))
        member _.CloseTestSessionAsync _ = Task.FromResult(CloseTestSessionResult(IsSuccess = true))
        member this.ExecuteRequestAsync context =
            task {
                try
                    match context.Request with
                    | :? DiscoverTestExecutionRequest as request ->
                        for t in Test.toTestCodeList (allTests ()) do
                            do! this.Publish context request.Session.SessionUid (t.fullName ".") (DiscoveredTestNodeStateProperty.CachedInstance :> IProperty)
                    | :? RunTestExecutionRequest as request ->
                        let session = request.Session.SessionUid
                        let publish = this.Publish context session
                        let mutable reportedFailures = 0
                        let printer =
                            let inner = TestPrinters.defaultPrinter
                            { inner with
                                passed = fun name d -> async { do! inner.passed name d
                                                               do! publish name (PassedTestNodeStateProperty.CachedInstance :> IProperty) }
                                ignored = fun name why -> async { do! inner.ignored name why
                                                                  do! publish name (SkippedTestNodeStateProperty why :> IProperty) }
                                failed = fun name message d -> async { do! inner.failed name message d
                                                                       reportedFailures <- reportedFailures + 1
                                                                       do! publish name (FailedTestNodeStateProperty message :> IProperty) }
                                exn = fun name e d -> async { do! inner.exn name e d
                                                              reportedFailures <- reportedFailures + 1
                                                              do! publish name (ErrorTestNodeStateProperty(e, e.Message) :> IProperty) } }
                        let code =
                            Tests.runTestsInAssemblyWithCLIArgs [ CLIArguments.Sequenced; CLIArguments.Printer printer ] (expectoArgs ())
                        // Expecto failing without a failed test (a bad filter, focused tests): never a silent pass.
                        if code <> 0 && reportedFailures = 0 then
                            do! publish "Expecto run" (FailedTestNodeStateProperty(sprintf "Expecto exited with code %d without a failed test" code) :> IProperty)
                    | other ->
                        failwithf "unsupported request %s" (other.GetType().Name)
                finally
                    context.Complete()
            }
            :> Task

/// Builds and runs the MTP test application (the kernel self-check has already run in Main); returns its exit code.
let run (argv: string[]) : int =
    task {
        let args = argv |> Array.filter (fun a -> a <> "--mtp")
        let! builder = TestApplication.CreateBuilderAsync args
        builder.CommandLine.AddProvider(Func<ICommandLineOptionsProvider>(fun () -> ExpectoFilterOptions() :> ICommandLineOptionsProvider)) |> ignore
        builder.RegisterTestFramework(
            Func<IServiceProvider, ITestFrameworkCapabilities>(fun _ -> TestFrameworkCapabilities() :> ITestFrameworkCapabilities),
            Func<ITestFrameworkCapabilities, IServiceProvider, ITestFramework>(fun _ services -> ExpectoFramework services :> ITestFramework))
        |> ignore
        use! app = builder.BuildAsync()
        return! app.RunAsync()
    }
    |> fun t -> t.GetAwaiter().GetResult()
