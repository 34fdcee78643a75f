/// The NuGet packages: `dotnet pack` of the solution yields ResearchFramework.MathCore, .Algorithm and .Proofs (one
/// version, each with its README), and a consumer outside the repository, restored from those packages out of a local
/// folder feed plus the machine's configured NuGet source, builds and runs the C# example (examples/CertifyYourModel).
module ResearchFramework.Properties.PackageTests

open System
open System.Diagnostics
open System.IO
open System.IO.Compression
open System.Text.RegularExpressions
open Expecto
open ResearchFramework.Properties.HostTests.HostTestSupport

/// The repository root and this run's configuration.
let private repository () = TestSupport.repositoryRoot (), TestSupport.buildConfiguration ()

/// Runs `dotnet ARGS` in a folder (MSBuild variables of a parent `dotnet run`/`dotnet test` removed, so the child
/// resolves its own SDK); returns exit code and the combined output. Fails the test after `timeoutMs`.
let private dotnet (workingDirectory: string) (timeoutMs: int) (args: string list) =
    let msbuild =
        [ for k in Environment.GetEnvironmentVariables().Keys |> Seq.cast<string> do
            if k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) || k = "MSBUILD_EXE_PATH" then yield k, null ]
    let code, out, err =
        TestSupport.runProcess "dotnet" args workingDirectory (msbuild @ [ "DOTNET_CLI_TELEMETRY_OPTOUT", "1"; "DOTNET_NOLOGO", "1" ]) timeoutMs
    code, out + err

/// The nuspec inside a .nupkg, as text.
let private nuspec (package: string) =
    use zip = ZipFile.OpenRead package
    let entry = zip.Entries |> Seq.find (fun e -> e.FullName.EndsWith ".nuspec")
    use reader = new StreamReader(entry.Open())
    reader.ReadToEnd()

[<Tests>]
let packages =
    testList "Packages" [
        test "dotnet pack → ResearchFramework.MathCore/.Algorithm/.Proofs; a consumer restored from the folder feed builds and runs the C# example" {
            let root, configuration = repository ()
            use dir = new TempDir()
            let feed = dir.File "feed"
            // A version of this run only: the global packages folder (a fallback below) can never hold a stale copy.
            let version = sprintf "0.1.0-test.%s" (DateTime.UtcNow.ToString "yyyyMMddHHmmssfff")
            let clock = Stopwatch.StartNew()
            let code, output =
                dotnet root 300000 [ "pack"; "ResearchFramework.sln"; "-c"; configuration; "--no-restore"; "--no-build"; "-o"; feed; "-p:Version=" + version ]
            Expect.equal code 0 ("dotnet pack: " + output)
            let ids = [ "ResearchFramework.MathCore"; "ResearchFramework.Algorithm"; "ResearchFramework.Proofs" ]
            let produced = Directory.GetFiles(feed, "*.nupkg") |> Array.map Path.GetFileName |> Array.sort
            Expect.equal produced (ids |> List.map (fun id -> sprintf "%s.%s.nupkg" id version) |> List.sort |> Array.ofList)
                "exactly the three library packages, of this version (Host, tests, benchmarks and examples are not packed)"
            for id in ids do
                let package = Path.Combine(feed, sprintf "%s.%s.nupkg" id version)
                let spec = nuspec package
                Expect.stringContains spec (sprintf "<id>%s</id>" id) (id + ": package id")
                Expect.stringContains spec "<readme>README.md</readme>" (id + ": package README declared")
                use zip = ZipFile.OpenRead package
                Expect.isTrue (zip.Entries |> Seq.exists (fun e -> e.FullName = "README.md")) (id + ": README.md packed")
                for dependency in [ "FSharp.Core"; "TorchSharp"; "MathNet.Numerics" ] do
                    Expect.stringContains spec (sprintf "<dependency id=\"%s\"" dependency) (sprintf "%s depends on %s" id dependency)
                if id <> "ResearchFramework.MathCore" then
                    Expect.stringContains spec (sprintf "<dependency id=\"ResearchFramework.MathCore\" version=\"%s\"" version)
                        (id + " depends on the MathCore package (its PackageId, not the project name)")
                Expect.isFalse (Regex.IsMatch(spec, "<dependency id=\"(Math\\.Core|Algorithm|Proofs)\"")) (id + ": no dependency on a project name")
            // The consumer: the example's Program.cs, referencing Algorithm and Proofs only (MathCore must come through
            // their dependencies), restored from the feed plus the configured source, into packages of its own with
            // the global packages folder as a read-only fallback (TorchSharp's natives are not copied again).
            let consumer = dir.File "consumer"
            Directory.CreateDirectory consumer |> ignore
            File.Copy(Path.Combine(root, "examples", "CertifyYourModel", "Program.cs"), Path.Combine(consumer, "Program.cs"))
            File.WriteAllText(Path.Combine(consumer, "Consumer.csproj"), sprintf """<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
    <Nullable>enable</Nullable>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="ResearchFramework.Algorithm" Version="%s" />
    <PackageReference Include="ResearchFramework.Proofs" Version="%s" />
  </ItemGroup>
</Project>""" version version)
            File.WriteAllText(Path.Combine(consumer, "NuGet.config"), sprintf """<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="research-framework-local" value="%s" />
  </packageSources>
</configuration>""" feed)
            let globalPackages =
                match Environment.GetEnvironmentVariable "NUGET_PACKAGES" with
                | null | "" -> Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.UserProfile, ".nuget", "packages")
                | p -> p
            let restoreCode, restoreOutput =
                dotnet consumer 300000 [ "restore"; "--packages"; dir.File "packages"; "-p:RestoreFallbackFolders=" + globalPackages ]
            Expect.equal restoreCode 0 ("restore from the feed: " + restoreOutput)
            Expect.isTrue (Directory.Exists(Path.Combine(dir.File "packages", "researchframework.mathcore", version)))
                "ResearchFramework.MathCore came from the feed, as a dependency of the other two"
            let buildCode, buildOutput = dotnet consumer 300000 [ "build"; "-c"; "Release"; "--no-restore" ]
            Expect.equal buildCode 0 ("consumer build: " + buildOutput)
            let exe = Path.Combine(consumer, "bin", "Release", "net10.0", "Consumer")
            let code, out, err = TestSupport.runProcess exe [] consumer [] 120000
            Expect.equal code 0 (out + err)
            Expect.stringContains out "verdict: Certified" "the packaged library certifies the user's network"
            Expect.stringContains out "Jacobian form (P = output layer): Certified" "and in Jacobian form"
            printfn "packages: pack + restore + build + run of the consumer in %.1f s" clock.Elapsed.TotalSeconds
        }
    ]
