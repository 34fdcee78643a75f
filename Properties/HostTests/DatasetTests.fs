/// Dataset operations: split, subsets, normalisation, augmentation, tensor batches; manifest verification.
module ResearchFramework.Properties.HostTests.DatasetTests

open System.IO
open Expecto
open Microsoft.Extensions.Logging.Abstractions
open ResearchFramework.Host.Data
open ResearchFramework.Host.Data.Fetch
open ResearchFramework.Properties.HostTests.HostTestSupport

/// n images of c×h×w, value of image i = i + pixel/1000, labels i % classes.
let synthetic n classes c h w =
    let size = c * h * w
    let images = Array.init (n * size) (fun k -> float32 (k / size) + float32 (k % size) / 1000.0f)
    Dataset("synthetic", images, Array.init n (fun i -> i % classes), classes, c, h, w)

/// Image ids (integer part of the first pixel) of a synthetic dataset.
let ids (d: Dataset) = Array.init d.Count (fun i -> int d.Images[i * d.SampleSize])

[<Tests>]
let dataset =
    testList "Host.Data.Dataset" [
        test "split is deterministic by seed, disjoint and complete" {
            let d = synthetic 50 5 1 2 2
            let struct (a1, b1) = d.Split(10, 42)
            let struct (a2, b2) = d.Split(10, 42)
            let struct (_, b3) = d.Split(10, 7)
            Expect.sequenceEqual (ids b1) (ids b2) "same seed, same split"
            Expect.sequenceEqual (ids a1) (ids a2) "same seed, same rest"
            Expect.notEqual (ids b1) (ids b3) "another seed, another split"
            Expect.equal (Array.append (ids a1) (ids b1) |> Array.sort) [| 0..49 |] "disjoint and complete"
            Expect.sequenceEqual b1.Labels (ids b1 |> Array.map (fun i -> i % 5)) "labels travel with images"
        }
        test "Take and stratified subset" {
            let d = synthetic 100 4 1 1 1
            Expect.sequenceEqual (ids (d.Take 3)) [ 0; 1; 2 ] "first K"
            let s = d.StratifiedSubset(20, 3)
            Expect.sequenceEqual (s.ClassCounts()) [ 5; 5; 5; 5 ] "proportional per class"
            Expect.sequenceEqual (ids s) (ids (d.StratifiedSubset(20, 3))) "deterministic"
        }
        test "normalisation uses train statistics per channel" {
            let d = synthetic 30 3 3 2 2
            let stats = ChannelStatistics.Compute d
            let n = stats.Apply d
            let s2 = ChannelStatistics.Compute n
            for c in 0..2 do
                Expect.floatClose { absolute = 1e-5; relative = 1e-4 } (float s2.Mean[c]) 0.0 "mean 0"
                Expect.floatClose { absolute = 1e-5; relative = 1e-4 } (float s2.Std[c]) 1.0 "std 1"
        }
        test "augmentation is deterministic by seed and keeps the shape" {
            let d = synthetic 8 2 3 8 8
            let run seed =
                let buffer = Array.copy d.Images
                CifarAugmentation(seed).ApplyInPlace(System.Span<float32>(buffer), d.Count, 3, 8, 8)
                buffer
            Expect.sequenceEqual (run 1) (run 1) "same seed, same images"
            Expect.notEqual (run 1) (run 2) "another seed, other crops/flips"
            Expect.notEqual (run 1) d.Images "something changed"
        }
        test "preparation: stratified train subset, first-K test subset, train statistics, augmentation on request" {
            let options = ResearchFramework.Host.Infrastructure.Configuration.DataOptions(TrainSubset = 20, TestSubset = 5, SplitSeed = 1, Normalize = true, Augment = true)
            let p = DatasetPreparation.Prepare(synthetic 40 4 1 2 2, synthetic 10 4 1 2 2, options, 3)
            Expect.equal (p.Train.Count, p.Test.Count) (20, 5) "subsets"
            Expect.sequenceEqual (p.Train.ClassCounts()) [ 5; 5; 5; 5 ] "stratified"
            Expect.floatClose { absolute = 1e-5; relative = 1e-4 } (float (ChannelStatistics.Compute p.Train).Mean[0]) 0.0 "train normalised"
            Expect.isNotNull p.Augmentation "augmentation"
        }
        test "tensor batches cover the dataset with the right shapes" {
            let d = synthetic 10 2 1 3 3
            let shapes =
                [ for b in TensorBatches.Enumerate(d, 4, shuffleSeed = 5) do
                      use b = b
                      yield b.Images.shape, b.Labels.shape, b.Labels.sum().item<int64>() ]
            Expect.equal (shapes |> List.map (fun (s, _, _) -> s)) [ [| 4L; 1L; 3L; 3L |]; [| 4L; 1L; 3L; 3L |]; [| 2L; 1L; 3L; 3L |] ] "shapes"
            Expect.equal (shapes |> List.sumBy (fun (_, _, s) -> s)) 5L "every label once (five 1s)"
        }
    ]

let private writeMiniMnist (directory: string) =
    Directory.CreateDirectory directory |> ignore
    let layout = IdxDatasetLayout.Mnist
    File.WriteAllBytes(Path.Combine(directory, layout.TrainImages), idxBytes 2051 [ 20; 4; 4 ] (syntheticImages 20 4 4))
    File.WriteAllBytes(Path.Combine(directory, layout.TrainLabels), idxBytes 2049 [ 20 ] (syntheticLabels 20))
    File.WriteAllBytes(Path.Combine(directory, layout.TestImages), idxBytes 2051 [ 10; 4; 4 ] (syntheticImages 10 4 4))
    File.WriteAllBytes(Path.Combine(directory, layout.TestLabels), idxBytes 2049 [ 10 ] (syntheticLabels 10))

[<Tests>]
let manifest =
    testList "Host.Data.Manifest" [
        test "hand-placed files get a manifest; loading verifies it and fails on a modified file" {
            use dir = new TempDir()
            let mnist = Path.Combine(dir.Path, "mnist")
            writeMiniMnist mnist
            let fetcher = DatasetFetcher(NullLogger<DatasetFetcher>.Instance)
            let pinned = throwsT<DataManifestException> (fun () -> fetcher.Fetch("mnist", dir.Path) |> ignore)
            Expect.stringContains pinned.Message "is not the original mnist file" "hand-made files are not adopted as MNIST"
            Expect.isFalse (File.Exists(Path.Combine(mnist, DataManifest.FileName))) "no manifest written"
            Expect.equal (fetcher.Fetch("mnist", dir.Path, true)) FetchOutcome.AdoptedLocalFiles "adopted as own data"
            Expect.equal (fetcher.Fetch("mnist", dir.Path)) FetchOutcome.AlreadyPresent "idempotent"
            Expect.isTrue (DataManifest.TryRead mnist).Own "the manifest says own data"
            let m = DataManifest.TryRead mnist
            Expect.equal m.Train.ClassCounts [| 2; 2; 2; 2; 2; 2; 2; 2; 2; 2 |] "per-class counts"
            let struct (train, test) = DatasetCatalog.Load("mnist", dir.Path)
            Expect.equal (train.Count, test.Count) (20, 10) "counts"
            let target = Path.Combine(mnist, "t10k-labels-idx1-ubyte")
            let bytes = File.ReadAllBytes target
            let original = Array.copy bytes
            bytes[9] <- bytes[9] ^^^ 1uy
            File.WriteAllBytes(target, bytes)
            let e = throwsT<DataManifestException> (fun () -> DatasetCatalog.Load("mnist", dir.Path) |> ignore)
            Expect.stringContains e.Message target "names the file"
            Expect.stringContains e.Message "SHA-256" "says why"
            File.WriteAllBytes(target, bytes[.. 5])
            let e2 = throwsT<DataManifestException> (fun () -> DatasetCatalog.Load("mnist", dir.Path) |> ignore)
            Expect.stringContains e2.Message "size 6 bytes" "size mismatch"
            // A manifest that lists no files (or omits one) vouches for nothing: refused, naming what is missing.
            File.WriteAllBytes(target, original)
            let manifestPath = Path.Combine(mnist, DataManifest.FileName)
            let good = File.ReadAllText manifestPath
            let node = System.Text.Json.Nodes.JsonNode.Parse(good)
            node.["files"] <- System.Text.Json.Nodes.JsonArray()
            File.WriteAllText(manifestPath, node.ToJsonString())
            let e3 = throwsT<DataManifestException> (fun () -> DatasetCatalog.Load("mnist", dir.Path) |> ignore)
            Expect.stringContains e3.Message "does not list" "empty file list refused"
            Expect.stringContains e3.Message "t10k-labels-idx1-ubyte" "names the unlisted file"
            // An own-data manifest edited to claim the original: the pinned hashes refuse it.
            File.WriteAllText(manifestPath, good.Replace("\"own\": true", "\"own\": false"))
            let e5 = throwsT<DataManifestException> (fun () -> DatasetCatalog.Load("mnist", dir.Path) |> ignore)
            Expect.stringContains e5.Message "is not the original mnist file" "claiming the original is refused"
            File.WriteAllText(manifestPath, "{}")
            let e4 = throwsT<DataManifestException> (fun () -> DatasetCatalog.Load("mnist", dir.Path) |> ignore)
            Expect.stringContains e4.Message "incomplete manifest" "{} refused with one line"
        }
        test "training and test images of different shapes are refused at load, naming both shapes (not after training)" {
            use dir = new TempDir()
            let mnist = Path.Combine(dir.Path, "mnist")
            writeMiniMnist mnist
            let layout = IdxDatasetLayout.Mnist
            File.WriteAllBytes(Path.Combine(mnist, layout.TestImages), idxBytes 2051 [ 10; 5; 5 ] (syntheticImages 10 5 5))
            DatasetFetcher(NullLogger<DatasetFetcher>.Instance).Fetch("mnist", dir.Path, true) |> ignore
            let options = ResearchFramework.Host.Infrastructure.Configuration.DataOptions(Dataset = "mnist", DataDirectory = dir.Path)
            let e = throwsT<InvalidDataException> (fun () -> DatasetPreparation.Load(options, 0) |> ignore)
            Expect.stringContains e.Message "1×4×4" "training shape"
            Expect.stringContains e.Message "1×5×5" "test shape"
        }
        test "unknown dataset names are refused with the list of known ones" {
            use dir = new TempDir()
            let e = throwsT<DataFetchException> (fun () -> DatasetFetcher(NullLogger<DatasetFetcher>.Instance).Fetch("bogus", dir.Path) |> ignore)
            Expect.stringContains e.Message "mnist, fashion-mnist" "known names"
        }
    ]
