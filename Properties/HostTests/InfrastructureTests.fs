/// Configuration validation, metrics, plots and progress lines.
module ResearchFramework.Properties.HostTests.InfrastructureTests

open System
open System.IO
open Expecto
open ResearchFramework.Host.Infrastructure.Configuration
open ResearchFramework.Host.Infrastructure.Runs
open ResearchFramework.Host.Infrastructure.Plotting
open ResearchFramework.Host.Infrastructure.Progress
open ResearchFramework.Properties.HostTests.HostTestSupport

let private load (overrides: string list) = RfOptions.Load(RfConfiguration.Build(ConfigurationInput(null, Array.ofList overrides)))

[<Tests>]
let configuration =
    testList "Host.Configuration" [
        test "defaults are valid and overrides apply" {
            let o = load [ "Training:LearningRate=0.25"; "Model:HiddenWidths:0=7"; "Model:HiddenWidths:1=9" ]
            Expect.equal o.Training.LearningRate 0.25 "override"
            Expect.sequenceEqual o.Model.HiddenWidths [ 7; 9 ] "array override"
            Expect.equal o.Data.Dataset "mnist" "default from appsettings.json"
            Expect.sequenceEqual (load []).Model.HiddenWidths [ 64 ] "default widths, not appended to"
            Expect.stringContains ((throwsT<ConfigurationException> (fun () -> load [ "Model:HiddenWidths:0=0" ] |> ignore)).Message) "Model:HiddenWidths" "width check"
        }
        test "bad values, unknown keys and unknown sections name the key" {
            let message overrides = (throwsT<ConfigurationException> (fun () -> load overrides |> ignore)).Message
            Expect.stringContains (message [ "Training:LearningRate=-1" ]) "Training:LearningRate" "range"
            Expect.stringContains (message [ "Model:Activation=gelu" ]) "Model:Activation: must be one of" "one-of"
            Expect.stringContains (message [ "Training:LerningRate=1" ]) "unknown key 'Training:LerningRate'" "unknown key"
            Expect.stringContains (message [ "Traning:LearningRate=1" ]) "unknown configuration section 'Traning'" "unknown section"
            Expect.stringContains (message [ "Training:BatchSize=many" ]) "Training:BatchSize" "conversion"
            Expect.stringContains (message [ "Run:RunName=a/b" ]) "Run:RunName" "regex"
        }
        test "every key of a --config file has exactly its type (arrays, objects, strings for numbers are refused naming the key); --set keys address exactly a key" {
            use dir = new TempDir()
            let message (json: string) =
                File.WriteAllText(dir.File "t.json", json)
                (throwsT<ConfigurationException> (fun () -> RfOptions.Load(RfConfiguration.Build(ConfigurationInput(dir.File "t.json", [||]))) |> ignore)).Message
            Expect.stringContains (message """{ "Training": { "LearningRate": [0.1, 0.2] } }""") "'Training:LearningRate' must be a number" "array for a number"
            Expect.stringContains (message """{ "Training": { "LearningRate": { "x": 0.1 } } }""") "'Training:LearningRate' must be a number" "object for a number"
            Expect.stringContains (message """{ "Training": { "BatchSize": "32" } }""") "'Training:BatchSize' must be an integer" "string for an integer"
            Expect.stringContains (message """{ "Training": { "BatchSize": 3.5 } }""") "'Training:BatchSize' must be an integer" "fraction for an integer"
            Expect.stringContains (message """{ "Recipe": { "Enabled": "yes" } }""") "'Recipe:Enabled' must be true or false" "string for a flag"
            Expect.stringContains (message """{ "Model": { "HiddenWidths": 64 } }""") "'Model:HiddenWidths' must be an array" "number for a list"
            Expect.stringContains (message """{ "Model": { "Activation": 3 } }""") "'Model:Activation' must be a string" "number for a name"
            Expect.stringContains (message """{ "Training": 5 }""") "section 'Training' must be an object" "scalar section"
            let set overrides = (throwsT<ConfigurationException> (fun () -> load overrides |> ignore)).Message
            Expect.stringContains (set [ "Training:LearningRate:0=0.1" ]) "a single value" "--set into a scalar"
            // Every configuration the repository ships passes.
            let root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../.."))
            for file in Directory.GetFiles(Path.Combine(root, "experiments"), "*.json", SearchOption.AllDirectories) do
                let node = Text.Json.Nodes.JsonNode.Parse(File.ReadAllText file).AsObject()
                node.Remove "Command" |> ignore
                node.Remove "Seeds" |> ignore
                File.WriteAllText(dir.File "shipped.json", node.ToJsonString())
                RfOptions.Load(RfConfiguration.Build(ConfigurationInput(dir.File "shipped.json", [||]))) |> ignore
        }
        test "section Certificate: Engine, TileSize, TileMemoryGB validated naming the key; mapped onto the trainer's engine (auto by rf certify's rule, tiles in the run directory) and under rf certify's flags" {
            let message overrides = (throwsT<ConfigurationException> (fun () -> load overrides |> ignore)).Message
            for key, value in [ "Certificate:Engine", "fast"; "Certificate:TileSize", "0"; "Certificate:TileMemoryGB", "-1"; "Certificate:TileMemoryGB", "0" ] do
                let m = message [ sprintf "%s=%s" key value ]
                Expect.stringContains m key (sprintf "%s=%s names the key: %s" key value m)
                Expect.isFalse (m.Trim().Contains "\n\n") "one error"
            Expect.stringContains (message [ "Certificate:Engin=tiled" ]) "unknown key 'Certificate:Engin'" "a misspelt key"
            let o = load [ "Certificate:Engine=tiled"; "Certificate:TileSize=64"; "Certificate:TileMemoryGB=0.5" ]
            let e = ResearchFramework.Host.Certification.CertificateEngineConfiguration.ForRun(o.Certificate, 100L, "/runs/r/tiles")
            Expect.equal (e.Kind, e.TileSize, e.MemoryBudgetBytes, e.WorkDirectory)
                         (ResearchFramework.MathCore.EngineKind.Tiled, 64, 500000000L, "/runs/r/tiles") "tiled, b, budget, tiles in the run directory"
            let recipe = ResearchFramework.Host.Training.RunSetup.Recipe(o.Recipe, o.Training, true, e)
            Expect.equal recipe.CertificateEngine e "the recipe carries it"
            let d = ResearchFramework.Host.Certification.CertificateEngineConfiguration.ForRun((load [ "Certificate:Engine=dense" ]).Certificate, 100L, "x")
            Expect.equal d.Kind ResearchFramework.MathCore.EngineKind.Dense "dense"
            let a = ResearchFramework.Host.Certification.CertificateEngineConfiguration.ForRun((load []).Certificate, 100L, "x")
            Expect.equal a.Kind ResearchFramework.MathCore.EngineKind.Dense "auto, 32·100² bytes fit: dense"
            let cli = ResearchFramework.Host.Certification.CertificateEngineOptions(ResearchFramework.Host.Certification.CertificateEngineKind.Dense, 16, null, System.Nullable())
            let merged = ResearchFramework.Host.Certification.CertificateEngineConfiguration.Merge(o.Certificate, cli, false, true)
            Expect.equal (merged.Kind, merged.TileSize, merged.MemoryBudgetBytes) (ResearchFramework.Host.Certification.CertificateEngineKind.Tiled, 16, System.Nullable 500000000L) "the configuration's kind and budget, the flag's tile size"
        }
        test "a --config file layers under --set" {
            use dir = new TempDir()
            File.WriteAllText(dir.File "c.json", """{ "Training": { "BatchSize": 32, "Seed": 5 } }""")
            let o = RfOptions.Load(RfConfiguration.Build(ConfigurationInput(dir.File "c.json", [| "Training:Seed=6" |])))
            Expect.equal (o.Training.BatchSize, o.Training.Seed) (32, 6) "file then override"
        }
    ]

let private writeMetrics (path: string) =
    use metrics = new MetricsWriter(path)
    for i in 0L..9L do
        metrics.Write("train", i * 10L, (if i < 5L then "1" else "2"), struct ("loss", 1.0 / float (i + 1L)), struct ("sigmaMin", 0.1 * float (i + 1L)))
    metrics.Write("eval", 100L, null, struct ("accuracy", Double.NaN))

[<Tests>]
let runs =
    testList "Host.Runs" [
        test "run directory, metrics.jsonl round trip, plots" {
            use dir = new TempDir()
            let o = load []
            let options = RfOptions(o.Data, o.Model, o.Training, o.Recipe, RunOptions(RunsDirectory = dir.Path, RunName = "t"))
            let run = RunDirectory.Create(options, DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero))
            Expect.stringEnds run.Path "t-20260102-030405" "name"
            Expect.isTrue (File.Exists run.EffectiveConfigPath && Directory.Exists run.CheckpointsPath && Directory.Exists run.CertificatesPath) "layout"
            writeMetrics run.MetricsPath
            let rows = MetricsReader.Read run.MetricsPath
            Expect.equal rows.Count 11 "rows"
            Expect.equal (rows[7].Phase, rows[7].Get "loss") ("2", Nullable (1.0 / 8.0)) "values"
            Expect.isTrue (Double.IsNaN (rows[10].Get "accuracy").Value) "NaN survives"
            MetricPlots.LossCurves(rows, run.PlotFile "loss", Nullable 50L)
            MetricPlots.SigmaMinOverTime(rows, run.PlotFile "sigma", Nullable 50L)
            MetricPlots.BarsWithErrors([| "a"; "b" |], [| 1.0; 2.0 |], [| 0.1; 0.3 |], run.PlotFile "bars", "t", "y")
            for name in [ "loss"; "sigma"; "bars" ] do
                Expect.isGreaterThan (FileInfo(run.PlotFile name).Length) 1000L name
        }
        test "progress line carries rate and ETA" {
            let p = ProgressReporter("train", 100L, TextWriter.Null, false)
            let line = p.Format(25L, TimeSpan.FromSeconds 5.0, "loss 0.5")
            Expect.equal line "train 25/100 (25.0%) 5.0 it/s, elapsed 00:05, ETA 00:15 | loss 0.5" "format"
        }
        test "progress: one rewritten line on a terminal, plain lines when redirected" {
            let terminal = new StringWriter()
            let p = ProgressReporter("t", 2L, terminal, true)
            p.Report(1L)
            p.Report(2L)
            Expect.stringStarts (terminal.ToString()) "\rt 1/2" "carriage return, no newline until the end"
            Expect.equal (terminal.ToString().Split('\n').Length) 2 "exactly one newline, at the end"
            let plain = new StringWriter()
            let q = ProgressReporter("t", 3L, plain, false, TimeSpan.Zero)
            for i in 1L..3L do q.Report i
            Expect.equal (plain.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Length) 3 "a line per report"
            Expect.isFalse (plain.ToString().Contains '\r') "no carriage returns"
        }
    ]
