/// Verified checkpoints: a byte flipped anywhere (magic, header, every tensor section, the hash trailer)
/// or a truncated file is refused on load with the file's name, and a resume falls back to the newest
/// checkpoint that verifies, which still reproduces the uninterrupted run bit for bit.
module ResearchFramework.Properties.AlgorithmTests.CheckpointTests

open System
open System.IO
open System.Threading
open Expecto
open TorchSharp
open ResearchFramework.Algorithm
open ResearchFramework.Properties.AlgorithmTests.Fixtures

[<Tests>]
let tests =
    testSequenced <| testList "Algorithm.Checkpoints" [
        test "a flipped byte in every section, or a truncation, is refused naming the file; resume falls back to the previous good checkpoint, bit for bit" {
            let n = 12
            let data = regression 6 n 3 2 torch.float64
            let arch = mlp 3 [| 3; 16 |] 2 Activation.Tanh Precision.Float64
            use temp = new ResearchFramework.Properties.HostTests.HostTestSupport.TempDir()
            let dir = temp.Path
            do
                let cfg = { training 6 n 24 OptimizerSpec.Sgd 0.02 LossKind.Squared with CheckpointEvery = 8; CheckpointDirectory = dir }
                let rc = { recipe 4 PhaseTwoMode.Damped with MaxTries = 3 }
                let full = Trainer.Run(arch, cfg, rc, data, NullObserver(), CancellationToken.None)
                let files = Directory.GetFiles(dir, "checkpoint-*.bin") |> Array.sort
                Expect.isGreaterThanOrEqual files.Length 2 "at least two checkpoints"
                let newest, previous = files.[files.Length - 1], files.[files.Length - 2]
                for f in files do Expect.equal (Checkpoint.verify f) (Ok ()) (f + " verifies as written")
                let original = File.ReadAllBytes newest
                let length = original.Length
                // Positions across the whole file: the magic, the header, every 1/64 of the tensor data, the hash, the tag.
                let positions =
                    [ 1; 5; 45; 80 ] @ [ for k in 1 .. 63 -> k * (length - 40) / 64 ] @ [ length - 40; length - 20; length - 1 ]
                    |> List.distinct |> List.filter (fun p -> p >= 0 && p < length)
                let cfgNo = { cfg with CheckpointDirectory = null }
                for p in positions do
                    let bytes = Array.copy original
                    bytes.[p] <- bytes.[p] ^^^ 0x10uy
                    File.WriteAllBytes(newest, bytes)
                    match Checkpoint.verify newest with
                    | Ok () -> failtestf "flip at byte %d of %d verified" p length
                    | Error _ -> ()
                    let e = Expect.throwsC (fun () -> Trainer.Resume(newest, arch, cfgNo, rc, data, NullObserver(), CancellationToken.None) |> ignore) id
                    Expect.isTrue (e :? InvalidDataException) (sprintf "flip at %d: InvalidDataException, got %s" p (e.GetType().Name))
                    Expect.stringContains e.Message newest (sprintf "flip at %d: names the file" p)
                    let chosen, refused = Checkpoint.latestValid dir
                    Expect.equal chosen previous (sprintf "flip at %d: falls back to the previous checkpoint" p)
                    Expect.equal (refused |> List.map fst) [ newest ] "the corrupted one is reported"
                File.WriteAllBytes(newest, original.[.. length / 2])
                let e = Expect.throwsC (fun () -> Trainer.Resume(newest, arch, cfgNo, rc, data, NullObserver(), CancellationToken.None) |> ignore) id
                Expect.stringContains e.Message newest "truncation: names the file"
                let chosen, _ = Checkpoint.latestValid dir
                let resumed = Trainer.Resume(chosen, arch, cfgNo, rc, data, NullObserver(), CancellationToken.None)
                Invariants.bitIdentical full resumed |> expectOk "resumed from the fallback = uninterrupted run"
        }
    ]
