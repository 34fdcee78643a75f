/// The composition root with a run directory, and (opt-in) the real fetched datasets.
module ResearchFramework.Properties.HostTests.ApplicationTests

open System
open System.IO
open Expecto
open Microsoft.Extensions.Logging
open ResearchFramework.Host.Data
open ResearchFramework.Host.Infrastructure
open ResearchFramework.Host.Infrastructure.Configuration
open ResearchFramework.Properties.HostTests.HostTestSupport

[<Tests>]
let application =
    testList "Host.Application" [
        test "RfApplication with a run directory writes config, log.jsonl, metrics.jsonl and TensorBoard events" {
            use dir = new TempDir()
            let input = ConfigurationInput(null, [| $"Run:RunsDirectory={dir.Path}"; "Run:RunName=app"; "Training:Seed=11" |])
            let runPath =
                use app = RfApplication.Start(input, true)
                app.Logger<TempDir>().LogInformation("hello {Value}", 42)
                app.Metrics.Write("train", 1L, "1", struct ("loss", 0.5))
                app.Metrics.Write("train", 2L, "1", struct ("loss", 0.25))
                app.Run.Path
            let effective = File.ReadAllText(Path.Combine(runPath, "config.effective.json"))
            Expect.stringContains effective "\"Seed\": 11" "effective config"
            Expect.stringContains (File.ReadAllText(Path.Combine(runPath, "log.jsonl"))) "\"@mt\":\"hello {Value}\"" "compact JSON log"
            Expect.equal (File.ReadAllLines(Path.Combine(runPath, "metrics.jsonl")).Length) 2 "metrics lines"
            let events = Directory.GetFiles(Path.Combine(runPath, "tensorboard"), "events.out.tfevents.*", SearchOption.AllDirectories)
            Expect.isNonEmpty events "TensorBoard event file"
        }
        test "RfApplication refuses a bad configuration before creating a run directory" {
            use dir = new TempDir()
            let input = ConfigurationInput(null, [| $"Run:RunsDirectory={dir.Path}"; "Training:BatchSize=0" |])
            let e = throwsT<ConfigurationException> (fun () -> (RfApplication.Start(input, true) :> IDisposable).Dispose())
            Expect.stringContains e.Message "Training:BatchSize" "names the key"
            Expect.isEmpty (Directory.GetDirectories dir.Path) "no run directory"
        }
        // Opt-in (RF_REAL_DATA=<data directory>): the fetched MNIST / Fashion-MNIST load with full counts.
        (match Environment.GetEnvironmentVariable "RF_REAL_DATA" with
         | null | "" -> ptest "real MNIST / Fashion-MNIST (set RF_REAL_DATA=<data dir>)" { () }
         | dataDir ->
             test "real MNIST / Fashion-MNIST load with 60000/10000 images" {
                 for name in [ "mnist"; "fashion-mnist" ] do
                     let struct (train, test) = DatasetCatalog.Load(name, dataDir)
                     Expect.equal (train.Count, test.Count, train.Height, train.Width) (60000, 10000, 28, 28) name
                     if name = "mnist" then
                         Expect.sequenceEqual (test.ClassCounts()) [ 980; 1135; 1032; 1010; 982; 892; 958; 1028; 974; 1009 ] "MNIST test class counts"
             })
    ]
