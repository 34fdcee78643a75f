/// Foundation checks: the patched native library loads under the stock dotnet, and TorchSharp's
/// rank agrees with MathNet's on random matrices of known rank.
module ResearchFramework.Properties.SmokeTests

open Expecto
open TorchSharp
open MathNet.Numerics.LinearAlgebra
open ResearchFramework.MathCore

/// A random n×m matrix of rank exactly k (with probability 1): A·B, inner size k.
let lowRankProduct (seed: int) (n: int) (m: int) (k: int) : Matrix<float> =
    let rng = System.Random seed
    let a = Matrix<float>.Build.Dense(n, k, fun _ _ -> rng.NextDouble() * 2.0 - 1.0)
    let b = Matrix<float>.Build.Dense(k, m, fun _ _ -> rng.NextDouble() * 2.0 - 1.0)
    a * b

let private config = Seeds.config 40

[<Tests>]
let tests =
    testSequenced <| testList "Foundation" [
        test "torch initialises under the stock dotnet (patched libLibTorchSharp.so)" {
            let description = TorchEnvironment.describe ()
            Expect.stringContains description "TorchSharp" "environment line"
            use t = torch.arange(6L, dtype = torch.float64).reshape(2L, 3L)
            Expect.equal (t.sum().item<float> ()) 15.0 "0+1+…+5"
        }

        test "libtorch's large buffers are on huge pages (THP_MEM_ALLOC_ENABLE set before libtorch loaded)" {
            // The runner asks for them first thing (Main.fs, HugePages.request); a kernel without THP cannot give them.
            match HugePages.kernelMode (), HugePages.nativeValue () with
            | (None | Some "never"), _ -> skiptest "the kernel has no transparent huge pages (THP never or no sysfs file)"
            | _, Some v when v <> "1" -> skiptest (sprintf "THP_MEM_ALLOC_ENABLE=%s was given in the environment" v)
            | _, value ->
                Expect.equal value (Some "1") "THP_MEM_ALLOC_ENABLE in the native environment (what c10 reads)"
                let anonHuge () =
                    System.IO.File.ReadAllLines "/proc/self/smaps_rollup"
                    |> Array.tryFind (fun l -> l.StartsWith "AnonHugePages:")
                    |> Option.map (fun l -> int64 (l.Split(' ', System.StringSplitOptions.RemoveEmptyEntries).[1]))
                    |> Option.defaultValue 0L
                let before = anonHuge ()
                // 64 MiB, touched: 32 huge pages when c10 madvised it (its alignment makes every one of them whole)
                use t = torch.ones([| 8L <<< 20 |], dtype = torch.float64)
                let after = anonHuge ()
                Expect.isGreaterThan after before
                    (sprintf "AnonHugePages %d kB -> %d kB around a 64 MiB tensor: libtorch did not madvise it (read the variable before it was set?)" before after)
        }

        test "ld.so accepts the patched libLibTorchSharp.so with the system libstdc++ (no hard missing version)" {
            let native = System.IO.Path.Combine(System.AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so")
            if System.OperatingSystem.IsLinux() && System.IO.File.Exists native then
                let psi = System.Diagnostics.ProcessStartInfo("ldd", native, RedirectStandardOutput = true, RedirectStandardError = true)
                use p = System.Diagnostics.Process.Start psi
                let output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd()
                p.WaitForExit()
                let hardMissing =
                    output.Split('\n') |> Array.filter (fun l -> l.Contains "not found" && not (l.Contains "weak version"))
                Expect.isEmpty hardMissing (sprintf "ldd reports missing versions or libraries:\n%s" output)
        }

        test "device selection falls back to CPU and rejects unknown names" {
            let d = TorchEnvironment.selectDevice "cpu"
            Expect.equal d.``type`` DeviceType.CPU "cpu"
            if not (torch.cuda.is_available ()) then
                Expect.equal (TorchEnvironment.selectDevice "auto").``type`` DeviceType.CPU "auto without CUDA"
                Expect.throwsT<System.ArgumentException> (fun () -> TorchEnvironment.selectDevice "cuda" |> ignore) "cuda absent"
            Expect.throwsT<System.ArgumentException> (fun () -> TorchEnvironment.selectDevice "tpu" |> ignore) "unknown"
        }

        testPropertyWithConfig config "torch matrix_rank = MathNet rank = k on random A·B" <| fun (seed: int) ->
            let rng = System.Random seed
            let n = rng.Next(2, 24)
            let m = rng.Next(2, 40)
            let k = rng.Next(1, min n m + 1)
            let a = lowRankProduct seed n m k
            use flat = torch.tensor(a.ToRowMajorArray(), dtype = torch.float64)
            use t = flat.reshape(int64 n, int64 m)
            let torchRank = torch.linalg.matrix_rank(t).item<int64> () |> int
            let mathNetRank = a.Svd(false).Rank
            Expect.isTrue (torchRank = k && mathNetRank = k)
                (sprintf "n=%d m=%d k=%d: torch rank %d, MathNet rank %d" n m k torchRank mathNetRank)
    ]
