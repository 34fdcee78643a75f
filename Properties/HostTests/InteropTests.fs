/// Interop of `rf certify --matrix` (#16 part 5): the streamed reader of .npy and .safetensors files gives the
/// in-memory certificate (Certify.certifyMatrix) bit for bit, over several blocks; --bias on|off; the .safetensors
/// reader's strict validation (exit 2, one line); peak memory well below the file's size.
module ResearchFramework.Properties.HostTests.InteropTests

open System
open System.Diagnostics
open System.Buffers.Binary
open System.IO
open System.Text
open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Host.Data
open ResearchFramework.Host.Certification
open ResearchFramework.Properties.HostTests.HostTestSupport
open ResearchFramework.Properties.HostTests.CliProcessTests

let private bits (x: float) = BitConverter.DoubleToInt64Bits x

/// The in-memory certificate of the same values (row-major n × m, float32 when `f4`), for the streamed subject, with fl G
/// as one product of every column, as `rf certify --matrix` makes it first (docs/theory.md §3 "One product first").
let private inMemory (subject: ExpressivitySubject) (values: float[]) (f4: bool) =
    use scope = torch.NewDisposeScope()
    let phi = torch.tensor(values, dtype = torch.float64).reshape(int64 subject.Rows, int64 subject.Features)
    let phi = if f4 then phi.``to``(torch.float32) else phi
    Certify.certifyMatrix { Certify.defaults with BlockColumns = MatrixCertification.OneProduct } subject phi

/// Same subject, verdict, precision and scale; the bounds and terms to 1e-12 relative: Certify.certifyMatrix itself is
/// not bit-reproducible from run to run in their last bits on this machine (BLAS/LAPACK thread splits follow the load:
/// the same in-memory call twice once differed by ~550 ulps in σ_min's bound on a 30 × 30 matrix), so "bit for bit" is
/// asserted where it holds: on fl(G) of integer matrices, whose sums are exact in any order (`sameGram`).
let private expectSame (what: string) (streamed: Certificate) (memory: Certificate) =
    Expect.equal streamed.Subject memory.Subject (what + ": subject")
    Expect.equal streamed.Verdict memory.Verdict (what + ": verdict")
    Expect.equal streamed.Precision memory.Precision (what + ": precision")
    Expect.equal streamed.Route memory.Route (what + ": route")
    let t, u = streamed.Terms, memory.Terms
    Expect.equal t.ScaleExponent u.ScaleExponent (what + ": scale exponent")
    for name, a, b in
        [ "Σ‖φ̃‖² upper", t.SquaredNormSumUpper, u.SquaredNormSumUpper
          "accumulation error", t.AccumulationError, u.AccumulationError
          "σ_min lower", streamed.SigmaMinLower, memory.SigmaMinLower
          "σ_max upper", streamed.SigmaMaxUpper, memory.SigmaMaxUpper
          "σ_max estimate", streamed.SigmaMaxEstimate, memory.SigmaMaxEstimate
          "shift", t.Shift, u.Shift
          "λ_min lower", t.LambdaMinLower, u.LambdaMinLower
          "λ_max upper", t.LambdaMaxUpper, u.LambdaMaxUpper
          "orthogonal route: σ_min lower (scaled)", t.QrSigmaMinLower, u.QrSigmaMinLower ] do
        if not (Double.IsNaN a && Double.IsNaN b) then
            Expect.floatClose { absolute = 0.0; relative = 1e-12 } a b (sprintf "%s: %s (%.17g vs %.17g)" what name a b)

/// fl(G) streamed from the file = Gram.ofMatrix (Math.Core's in-memory accumulation) on the same values, bit for bit.
let private sameGram (what: string) (layout: MatrixLayout) (bias: bool) (values: float[]) (f4: bool) =
    use scope = torch.NewDisposeScope()
    use reader = new MatrixFileReader(layout)
    use streamed = MatrixCertification.StreamGram(reader, bias, Certify.defaults.BlockColumns)
    let phi = torch.tensor(values, dtype = torch.float64).reshape(layout.Rows, layout.Columns)
    let phi = if f4 then phi.``to``(torch.float32) else phi
    use memory = Gram.ofMatrix Certify.defaults.BlockColumns bias phi
    let entries (g: torch.Tensor) = g.contiguous().data<float>().ToArray() |> Array.map bits
    let exact = values |> Array.forall (fun v -> v = Math.Round v && abs v <= 16.0)
    if exact then
        // Integer entries: every partial sum is exact, so fl(G) is the same in any summation order.
        Expect.equal (entries streamed.Gram) (entries memory.Gram) (what + ": fl(G) bit for bit")
    else
        // The same column blocks, but BLAS may split the inner products differently from call to call (its thread
        // count follows the machine's load): equal to well within the accumulation error bound γ_m'·Σ‖φ̃_i‖².
        let scale = memory.Gram.diagonal().max().item<float> ()
        let diff = streamed.Gram.sub(memory.Gram).abs().max().item<float> ()
        Expect.isLessThanOrEqual diff (1e-13 * scale) (sprintf "%s: fl(G) equal to rounding (max |Δ| %g, max G_ii %g)" what diff scale)
    Expect.equal (streamed.Columns, streamed.FeaturePrecision) (memory.Columns, memory.FeaturePrecision) (what + ": Gram bookkeeping")

let private randomValues (seed: int) (count: int) =
    let rng = Random seed
    Array.init count (fun _ -> rng.NextDouble() - 0.5)

/// Writes values as a .npy (<f8, or <f4 rounded) and returns them as read back (float32-rounded for <f4).
let private writeNpy (path: string) (rows: int) (cols: int) (values: float[]) (f4: bool) =
    if f4 then
        let v = values |> Array.map float32
        File.WriteAllBytes(path, npyBytes 1uy "<f4" false [ rows; cols ] (f4Bytes v))
        v |> Array.map float
    else
        File.WriteAllBytes(path, npyBytes 1uy "<f8" false [ rows; cols ] (f8Bytes values))
        values

/// A .safetensors file with the header JSON given verbatim and a raw data buffer.
let private rawSafetensors (header: string) (data: byte[]) =
    let h = Encoding.UTF8.GetBytes header
    Array.concat [ BitConverter.GetBytes(uint64 h.Length); h; data ]

let private withBlockBytes (bytes: int64) (f: unit -> unit) =
    let before = Environment.GetEnvironmentVariable "RF_MATRIX_BLOCK_BYTES"
    Environment.SetEnvironmentVariable("RF_MATRIX_BLOCK_BYTES", string bytes)
    try f () finally Environment.SetEnvironmentVariable("RF_MATRIX_BLOCK_BYTES", before)

/// A rows × cols <f8 .npy of uniform values in [−0.5, 0.5), written row by row (never whole in memory).
let private writeBig (path: string) (rows: int) (cols: int) =
    use f = File.Create path
    let header = npyBytes 1uy "<f8" false [ rows; cols ] [||]
    f.Write(header, 0, header.Length)
    let rng = Random 8
    let row = Array.zeroCreate<byte> (cols * 8)
    for _ in 1 .. rows do
        for j in 0 .. cols - 1 do BinaryPrimitives.WriteDoubleLittleEndian(row.AsSpan(8 * j), rng.NextDouble() - 0.5)
        f.Write(row, 0, row.Length)

[<Tests>]
let interop =
    testSequenced <| testList "Host.Interop" [
        test "streamed .npy certificate = Certify.certifyMatrix on the same data, fl(G) bit for bit on integers, to rounding otherwise (one and several column blocks, f4/f8, bias on/off, refuted by shape)" {
            use dir = new TempDir()
            let cases =
                [ // name, rows, cols, f4, bias
                  "wide", 12, 20, false, true
                  "wide-nobias", 12, 20, false, false
                  "three-blocks", 12, 10000, false, true      // 4096 + 4096 + 1808 columns
                  "three-blocks-f4", 12, 9000, true, true
                  "square-nobias", 30, 30, false, false
                  "integers", 12, 10000, false, true          // exact Gram: bit for bit
                  "integers-f4-nobias", 40, 5000, true, false
                  "tall", 500, 3, false, true                 // m + 1 < n: refuted by shape, no Gram
                  "tall-f4-nobias", 200, 7, true, false ]
            for name, rows, cols, f4, bias in cases do
                let path = dir.File(name + ".npy")
                let values =
                    if name.StartsWith "integers" then Array.init (rows * cols) (fun k -> float ((k * 7919 + k / cols * 104729) % 17 - 8))
                    else randomValues rows (rows * cols)
                let values = writeNpy path rows cols values f4
                let streamed = MatrixCertification.Certify(NpyReader.ReadLayout path, bias)
                Expect.equal streamed.Subject.WithBias bias (name + ": bias recorded")
                Expect.equal streamed.Subject.DatasetFingerprint (Fingerprint.ofBytes (File.ReadAllBytes path)) (name + ": fingerprint of the file's bytes")
                expectSame name streamed (inMemory streamed.Subject values f4)
                if streamed.Subject.Columns >= rows then sameGram name (NpyReader.ReadLayout path) bias values f4
            // The Gram route is Inconclusive (row 10 = row 0 + O(1e-9)): the streamed path reads the matrix whole for
            // the orthogonal route (Auto mode), as certifyMatrix does, and gets its certificate.
            let near = dir.File "near.npy"
            let rowsBase = randomValues 5 (11 * 40)
            let nearValues = Array.init (11 * 40) (fun k -> if k / 40 = 10 then rowsBase.[k % 40] + 1e-9 * float (k % 7 - 3) else rowsBase.[k])
            let nearValues = writeNpy near 11 40 nearValues false
            let nearStreamed = MatrixCertification.Certify(NpyReader.ReadLayout near, true)
            Expect.equal nearStreamed.Verdict Verdict.Certified nearStreamed.Reason
            Expect.equal nearStreamed.Route CertificateRoute.Orthogonal nearStreamed.Reason
            Expect.stringContains nearStreamed.Reason "float64 Gram route Inconclusive" "says why"
            expectSame "near-duplicate rows (orthogonal route)" nearStreamed (inMemory nearStreamed.Subject nearValues false)
            // The tiled engine too (row tiles of 4, tile files in the folder): the orthogonal route after its Gram route, the
            // same certificate (it used to stop at the tiled Gram route's Inconclusive).
            let tiledEngine = CertificateEngineOptions(CertificateEngineKind.Tiled, 4, dir.File "near-tiles", System.Nullable 100000000L, null, 256)
            let nearTiled = MatrixCertification.Certify(NpyReader.ReadLayout near, true, tiledEngine, dir.File "unused", fun _ -> ())
            Expect.equal nearTiled.Verdict Verdict.Certified nearTiled.Reason
            Expect.equal nearTiled.Route CertificateRoute.Orthogonal nearTiled.Reason
            Expect.equal nearTiled.SigmaMinLower nearStreamed.SigmaMinLower "the orthogonal route's bound, whichever engine ran the Gram route"
            Expect.equal (MatrixCertification.BlockColumns(12, 10000, 4096)) 4096 "n × 4096 fits 64 MiB: Math.Core's block"
            Expect.equal (MatrixCertification.BlockColumns(64, 400000, 4096)) 4096 "the 200 MB file: 4096 columns"
            Expect.equal (MatrixCertification.BlockColumns(4096, 100000, 4096)) 2048 "n = 4096: 64 MiB / (8 n) columns"
            Expect.equal (MatrixCertification.BlockColumns(1000000, 2000000, 4096)) 256 "never narrower than 256"
            Expect.equal (MatrixCertification.BlockColumns(5, 100, 4096)) 100 "never wider than m"
        }
        test "one product first: rf certify --matrix accumulates fl G as one product (h = m'); where that order's accumulation term alone leaves the bound ≤ 0 it accumulates again in the blocked order and certifies (h = c + ⌈m/c⌉ − 1), the certificate --gram-chunk gives; sound against the constructed σ_min" {
            // Φ = U·diag(σ)·Vᵀ, 40 × 12000 (three column blocks of 4096), σ = 1 except σ_min² = 350 000·u: the shift
            // (0.9 or 0.75 of λ_min) clears the Cholesky term (≈ 1 600·u) and the blocked order's γ_4098·Σ‖φ̃‖² ≈ 160 000·u,
            // not the one product's γ_12000·Σ‖φ̃‖² ≈ 468 000·u.
            use dir = new TempDir()
            let n, m = 40, 12000
            let values =
                use scope = torch.NewDisposeScope()
                let gaussian (seed: int) (r: int) (c: int) =
                    let rng = Random seed
                    torch.tensor(Array.init (r * c) (fun _ -> rng.NextDouble() - 0.5), dtype = torch.float64).reshape(int64 r, int64 c)
                let struct (u, _) = torch.linalg.qr(gaussian 61 n n)
                let struct (v, _) = torch.linalg.qr(gaussian 62 m n)
                let sMin = sqrt (350000.0 * FloatingPoint.unitRoundoff64)
                let sv = torch.tensor(Array.init n (fun i -> if i = n - 1 then sMin else 1.0), dtype = torch.float64)
                u.mul(sv.unsqueeze(0L)).mm(v.t()).contiguous().data<float>().ToArray()
            let path = dir.File "edge.npy"
            let values = writeNpy path n m values false
            let blockedDepth = Gram.accumulationDepth m false Certify.defaults.BlockColumns
            Expect.equal blockedDepth 4098 "4096 + 3 − 1"
            // the one product alone (in memory, the Gram route only): Inconclusive by its accumulation term
            let subject = ExpressivitySubject.OfMatrix("edge", n, m, false)
            let oneProduct =
                use phi = torch.tensor(values, dtype = torch.float64).reshape(int64 n, int64 m)
                Certify.certifyMatrix { Certify.defaults with BlockColumns = MatrixCertification.OneProduct; Route = Certify.RouteChoice.Gram } subject phi
            Expect.equal oneProduct.Verdict Verdict.Inconclusive ("one product: Inconclusive. " + oneProduct.Reason)
            Expect.equal oneProduct.Terms.AccumulationGammaIndex m "one product: h = m"
            Expect.isGreaterThan oneProduct.Terms.LambdaMinComputedGramLower 0.0 "its Cholesky proved λ_min(fl G) > 0"
            Expect.isTrue (Certify.blockedOrderMayCertify blockedDepth oneProduct) "the blocked order's term would not take the bound to ≤ 0"
            Expect.isFalse (Certify.blockedOrderMayCertify m oneProduct) "not when the blocked order is no smaller"
            Expect.isFalse (Certify.blockedOrderMayCertify 11000 oneProduct) "not when the blocked order's term (γ_11000·Σ‖φ̃‖² ≈ 429 000·u) too exceeds λ_min(fl G)'s bound"
            Expect.isFalse (Certify.blockedOrderMayCertify blockedDepth { oneProduct with Verdict = Verdict.Certified }) "not after Certified"
            Expect.isFalse (Certify.blockedOrderMayCertify blockedDepth { oneProduct with Terms = { oneProduct.Terms with Shift = 0.0 } }) "not when no shifted Cholesky succeeded"
            // the file route: one product, then the blocked order
            let lines = Collections.Generic.List<string>()
            let streamed = MatrixCertification.Certify(NpyReader.ReadLayout path, false, CertificateEngineOptions(CertificateEngineKind.Dense), "", fun line -> lines.Add line)
            Expect.equal streamed.Verdict Verdict.Certified ("Certified after the retry. " + streamed.Reason)
            Expect.equal streamed.Route CertificateRoute.Gram "by the Gram route (no orthogonal follow-up)"
            Expect.equal streamed.Terms.AccumulationGammaIndex blockedDepth "the blocked order's h recorded"
            Expect.isTrue (lines |> Seq.exists (fun l -> l.Contains "accumulating fl G again")) (sprintf "says it accumulates again: %A" (List.ofSeq lines))
            Expect.stringContains streamed.Reason "blocked order (h = 4098) after the one-product Gram" "the reason says it came second"
            Expect.isLessThanOrEqual streamed.SigmaMinLower (sqrt (350000.0 * FloatingPoint.unitRoundoff64)) "σ_min bound ≤ the constructed σ_min"
            // --gram-chunk 4096: the blocked order directly, the same certificate to rounding (the same fl G)
            let chunked = MatrixCertification.Certify(NpyReader.ReadLayout path, false, CertificateEngineOptions(CertificateEngineKind.Dense, GramChunkColumns = System.Nullable 4096), "", ignore)
            Expect.equal chunked.Terms.AccumulationGammaIndex blockedDepth "--gram-chunk: h of the blocked order"
            Expect.floatClose { absolute = 0.0; relative = 1e-12 } chunked.SigmaMinLower streamed.SigmaMinLower "the same fl G and the same estimates: the same bound"
            // --cholesky-panel alone asks for the blocked order too
            let paneled = MatrixCertification.Certify(NpyReader.ReadLayout path, false, CertificateEngineOptions(CertificateEngineKind.Dense, CholeskyPanel = System.Nullable 16), "", ignore)
            Expect.equal paneled.Terms.AccumulationGammaIndex blockedDepth "--cholesky-panel: the blocked Gram from the start"
            // the tensor stream (libtorch's kernels: no native route) takes the same two steps
            let onTorch = NativeBlas.useBackend NativeBlas.Backend.LibTorch (fun () ->
                MatrixCertification.Certify(NpyReader.ReadLayout path, false, CertificateEngineOptions(CertificateEngineKind.Dense), "", ignore))
            Expect.equal onTorch.Verdict Verdict.Certified ("tensor stream: Certified after the retry. " + onTorch.Reason)
            Expect.equal onTorch.Terms.AccumulationGammaIndex blockedDepth "tensor stream: the blocked order's h"
            Expect.stringContains onTorch.Reason "after the one-product Gram" "tensor stream: the reason says it came second"
            // a comfortable matrix of three blocks is certified from the one product: no second accumulation
            let wide = dir.File "wide3.npy"
            writeNpy wide 12 9000 (randomValues 3 (12 * 9000)) false |> ignore
            let quiet = Collections.Generic.List<string>()
            let w = MatrixCertification.Certify(NpyReader.ReadLayout wide, true, CertificateEngineOptions(CertificateEngineKind.Dense), "", fun line -> quiet.Add line)
            Expect.equal w.Verdict Verdict.Certified "Certified"
            Expect.equal w.Terms.AccumulationGammaIndex 9001 "one product: h = m'"
            Expect.isFalse (quiet |> Seq.exists (fun l -> l.Contains "again")) "no second accumulation"
        }
        test "RowSquares (a tall file's row norms, summed on the host in vector lanes) are the exact Σ x² of integer rows, every width mod the lane count, float32 and float64" {
            use dir = new TempDir()
            for m in [ 1; 3; 4; 5; 8; 9; 10; 11; 13; 37 ] do
                for f4 in [ false; true ] do
                    let n = m + 5
                    let values = Array.init (n * m) (fun k -> float ((k * 7919 + k / m * 104729) % 41 - 20))
                    let path = dir.File (sprintf "rows-%d-%b.npy" m f4)
                    writeNpy path n m values f4 |> ignore
                    use reader = new MatrixFileReader(NpyReader.ReadLayout path)
                    let squares = MatrixCertification.RowSquares reader
                    let exact = Array.init n (fun i -> Array.sumBy (fun j -> values.[i * m + j] * values.[i * m + j]) [| 0 .. m - 1 |])
                    Expect.sequenceEqual squares exact (sprintf "m = %d, f4 %b: exact integer sums" m f4)
        }
        test "several blocks by RF_MATRIX_BLOCK_BYTES: a tall file's norms over 30 row blocks = in memory to rounding; 256-column blocks give the same verdict and bounds to rounding" {
            use dir = new TempDir()
            withBlockBytes 4096L (fun () ->
                let tall = dir.File "tall.npy"
                let values = writeNpy tall 5000 3 (randomValues 1 15000) false
                let streamed = MatrixCertification.Certify(NpyReader.ReadLayout tall, true)
                Expect.equal streamed.Verdict Verdict.Refuted "refuted by shape"
                expectSame "tall, 4096-byte row blocks" streamed (inMemory streamed.Subject values false)
                Expect.equal (MatrixCertification.BlockColumns(12, 1000, 4096)) 256 "4096 bytes: 256-column blocks"
                let wide = dir.File "wide.npy"
                let values = writeNpy wide 12 1000 (randomValues 2 12000) false
                let streamed = MatrixCertification.Certify(NpyReader.ReadLayout wide, true)
                let memory = inMemory streamed.Subject values false
                Expect.equal streamed.Verdict Verdict.Certified "certified"
                Expect.equal streamed.Verdict memory.Verdict "same verdict over 4 blocks"
                Expect.floatClose { absolute = 0.0; relative = 1e-12 } streamed.SigmaMinLower memory.SigmaMinLower "σ_min bound to rounding"
                Expect.floatClose { absolute = 0.0; relative = 1e-12 } streamed.SigmaMaxUpper memory.SigmaMaxUpper "σ_max bound to rounding")
        }
        test "rf certify --matrix on OpenBLAS never loads libtorch (the dynamic loader's log), a tall file's refutation neither, and gives the libtorch route's certificate to rounding (RF_BLAS=torch loads it)" {
            if not (OperatingSystem.IsLinux ()) || not (DenseNative.available ()) then
                skiptest "needs Linux's dynamic loader log (LD_DEBUG) and OpenBLAS (apt-get install libopenblas0-pthread)"
            use dir = new TempDir()
            let values = writeNpy (dir.File "x.npy") 40 300 (randomValues 17 12000) true
            let loads (env: (string * string) list) (json: string) =
                let code, out, err = runRfWith (("LD_DEBUG", "libs") :: env) dir.Path [ "certify"; "--matrix"; "x.npy"; "--json"; json ]
                Expect.equal code 0 ("Certified: " + out)
                err.Contains "libtorch_cpu.so", CertificateJson.load (dir.File json)
            let nativeLoads, native = loads [] "native.json"
            Expect.isFalse nativeLoads "libtorch_cpu.so is never loaded on the native route"
            Expect.equal native.Device "cpu" "device recorded"
            let torchLoads, onTorch = loads [ "RF_BLAS", "torch" ] "torch.json"
            Expect.isTrue torchLoads "the loader's log names libtorch_cpu.so when the tensor route runs (the check can fail)"
            Expect.equal native.Verdict onTorch.Verdict "the same verdict"
            Expect.floatClose { absolute = 0.0; relative = 1e-9 } native.SigmaMinLower onTorch.SigmaMinLower "σ_min bound to rounding (other kernels)"
            Expect.floatClose { absolute = 0.0; relative = 1e-9 } native.SigmaMaxUpper onTorch.SigmaMaxUpper "σ_max bound to rounding"
            expectSame "rf certify, native" native (inMemory native.Subject values true)
            // a tall file (refuted by shape from its row norms, summed on the host): no libtorch either
            let tallValues = writeNpy (dir.File "tall.npy") 500 3 (randomValues 18 1500) true
            let code, out, err = runRfWith [ "LD_DEBUG", "libs" ] dir.Path [ "certify"; "--matrix"; "tall.npy"; "--json"; "tall.json" ]
            Expect.equal code 1 ("Refuted: exit 1. " + out)
            Expect.isFalse (err.Contains "libtorch_cpu.so") "a tall file is refuted without loading libtorch"
            let tall = CertificateJson.load (dir.File "tall.json")
            Expect.equal tall.Verdict Verdict.Refuted "refuted by shape"
            expectSame "rf certify, tall" tall (inMemory tall.Subject tallValues true)
        }
        test "rf certify --matrix with a bad RF_BLAS: exit 2 and one line naming it, no stack trace (the libtorch-free route's check runs before the command)" {
            use dir = new TempDir()
            writeNpy (dir.File "x.npy") 4 9 (randomValues 5 36) false |> ignore
            let code, out, err = runRfWith [ "RF_BLAS", "bogus" ] dir.Path [ "certify"; "--matrix"; "x.npy" ]
            Expect.equal code 2 ("exit 2: " + out + err)
            Expect.stringContains err "RF_BLAS=bogus" "names the variable and its value"
            Expect.isFalse (err.Contains "   at ") ("no stack trace: " + err)
        }
        test "rf certify --matrix (the executable) writes the in-memory certificate; --bias off certifies Φ, on [Φ, 1], recorded and printed" {
            use dir = new TempDir()
            let values = writeNpy (dir.File "m.npy") 12 10000 (randomValues 3 120000) false
            let code, out, err = runRf dir.Path [ "certify"; "--matrix"; "m.npy"; "--json"; "m.json" ]
            Expect.equal code 0 ("Certified: " + out + err)
            Expect.stringContains out "bias column: on" "the choice is printed"
            let written = CertificateJson.load (dir.File "m.json")
            Expect.isTrue written.Subject.WithBias "default on, recorded"
            expectSame "rf certify" written (inMemory written.Subject values false)
            // Φ = [[1,0],[0,1],[1,1]]: rank 2 < n = 3, refuted by shape without the bias column;
            // [Φ, 1] = [[1,0,1],[0,1,1],[1,1,1]] has determinant −1: certified with it.
            File.WriteAllBytes(dir.File "b.npy", npyBytes 1uy "<f8" false [ 3; 2 ] (f8Bytes [| 1.0; 0.0; 0.0; 1.0; 1.0; 1.0 |]))
            let codeOff, outOff, _ = runRf dir.Path [ "certify"; "--matrix"; "b.npy"; "--bias"; "off"; "--json"; "off.json" ]
            Expect.equal codeOff 1 ("without the bias column: refuted " + outOff)
            Expect.stringContains outOff "bias column: off" "printed"
            Expect.stringContains outOff "columns = 2 < n = 3" "why"
            let codeOn, outOn, _ = runRf dir.Path [ "certify"; "--matrix"; "b.npy"; "--bias"; "on"; "--json"; "on.json" ]
            Expect.equal codeOn 0 ("with the bias column: certified " + outOn)
            Expect.isFalse (CertificateJson.load (dir.File "off.json")).Subject.WithBias "off recorded"
            Expect.isTrue (CertificateJson.load (dir.File "on.json")).Subject.WithBias "on recorded"
            // Rows differing by a multiple of the bias direction only… are still distinct: the duplicate check is exact.
            let code3, _, err3 = runRf dir.Path [ "certify"; "--matrix"; "b.npy"; "--bias"; "maybe" ]
            Expect.notEqual code3 0 ("--bias takes on|off: " + err3)
            Expect.stringContains err3 "'maybe' not recognized" "says so"
            let code4, _, err4 = runRf dir.Path [ "certify"; "--config"; "x.json"; "--bias"; "off" ]
            Expect.notEqual code4 0 ("--bias goes with --matrix: " + err4)
            Expect.stringContains err4 "--bias and --tensor go with --matrix" "says so"
            // The dense n × n certificate must fit in memory (checked before any data is read); a tall matrix needs no
            // Gram; --engine auto (the default) then runs the tiled engine, tiles in files beyond the memory budget.
            let code6, _, err6 = runRfWith [ "RF_MEMORY_AVAILABLE_BYTES", "1000" ] dir.Path [ "certify"; "--matrix"; "m.npy"; "--engine"; "dense" ]
            Expect.equal code6 1 ("a Gram that cannot fit: " + err6)
            Expect.stringContains err6 "32·n² bytes" "with the numbers"
            let code6b, out6b, err6b = runRfWith [ "RF_MEMORY_AVAILABLE_BYTES", "1000" ] dir.Path [ "certify"; "--matrix"; "m.npy"; "--json"; "auto.json" ]
            Expect.equal code6b 0 ("auto: the tiled engine certifies what the dense one cannot hold: " + out6b + err6b)
            Expect.stringContains err6b "tiled certificate" "says which engine"
            Expect.stringContains (CertificateJson.load (dir.File "auto.json")).Method "tiles" "recorded"
            let code7, out7, err7 = runRfWith [ "RF_MEMORY_AVAILABLE_BYTES", "1000" ] dir.Path [ "certify"; "--matrix"; "b.npy"; "--bias"; "off" ]
            Expect.equal code7 1 ("tall: refuted by shape, no Gram needed: " + out7 + err7)
            Expect.stringContains out7 "refuted by shape" "no Gram"
            let code8, _, err8 = runRf dir.Path [ "certify"; "--matrix"; "m.npy"; "--tensor"; "x" ]
            Expect.equal code8 2 ("--tensor with a .npy: " + err8)
            // A non-finite entry is named, exit 2, found while streaming.
            let nanValues = Array.copy values
            nanValues.[5 * 10000 + 7777] <- nan
            File.WriteAllBytes(dir.File "nan.npy", npyBytes 1uy "<f8" false [ 12; 10000 ] (f8Bytes nanValues))
            let code5, _, err5 = runRf dir.Path [ "certify"; "--matrix"; "nan.npy" ]
            Expect.equal code5 2 ("NaN: " + err5)
            Expect.stringContains err5 "entry (5, 7777) is NaN" "names the entry"
            Expect.isFalse (err5.Contains "   at ") "one line"
        }
        test ".safetensors: written by SafetensorsWriter, read back exactly; rf certify picks the single 2-D tensor or --tensor NAME, same certificate as the .npy" {
            use dir = new TempDir()
            let values = randomValues 4 (12 * 20)
            let f32 = values |> Array.map float32
            let tensors =
                [| SafetensorsTensor("phi", "F64", [| 12L; 20L |], f8Bytes values)
                   SafetensorsTensor("bias", "F32", [| 20L |], f4Bytes f32.[.. 19]) |]
            SafetensorsWriter.Write(dir.File "one.safetensors", tensors, readOnlyDict [ "format", "pt" ])
            let struct (entries, metadata, dataStart) = SafetensorsReader.ReadHeader(dir.File "one.safetensors")
            Expect.equal (entries |> Seq.map (fun e -> e.Name, e.Dtype, List.ofArray e.Shape) |> List.ofSeq)
                [ "phi", "F64", [ 12L; 20L ]; "bias", "F32", [ 20L ] ] "entries in order"
            Expect.equal metadata.["format"] "pt" "metadata"
            Expect.equal (dataStart % 8L) 0L "header padded to 8 bytes"
            let bytes = File.ReadAllBytes(dir.File "one.safetensors")
            let e0 = entries.[0]
            Expect.equal bytes.[int (dataStart + e0.Begin) .. int (dataStart + e0.End) - 1] (f8Bytes values) "data bit for bit"
            let layout = MatrixFiles.Open(dir.File "one.safetensors", null)
            Expect.equal (layout.Tensor, layout.Rows, layout.Columns, layout.Dtype) ("phi", 12L, 20L, "<f8") "the single 2-D tensor"
            let streamed = MatrixCertification.Certify(layout, true)
            expectSame "safetensors" streamed (inMemory streamed.Subject values false)
            let code, out, err = runRf dir.Path [ "certify"; "--matrix"; "one.safetensors"; "--json"; "c.json" ]
            Expect.equal code 0 ("Certified: " + out + err)
            Expect.stringContains out "n = 12, columns = 21" "read"
            // Two 2-D tensors: --tensor needed, and then used.
            SafetensorsWriter.Write(dir.File "two.safetensors",
                [| SafetensorsTensor("a", "F64", [| 12L; 20L |], f8Bytes values)
                   SafetensorsTensor("b", "F32", [| 12L; 20L |], f4Bytes f32) |])
            let code2, _, err2 = runRf dir.Path [ "certify"; "--matrix"; "two.safetensors" ]
            Expect.equal code2 2 ("ambiguous: " + err2)
            Expect.stringContains err2 "--tensor NAME" "says what to do"
            Expect.stringContains err2 "a [12, 20] F64, b [12, 20] F32" "lists the tensors"
            let code3, out3, err3 = runRf dir.Path [ "certify"; "--matrix"; "two.safetensors"; "--tensor"; "b"; "--json"; "b.json" ]
            Expect.equal code3 0 ("--tensor b: " + out3 + err3)
            let b = CertificateJson.load (dir.File "b.json")
            Expect.stringContains b.Subject.CertificationSet "tensor \"b\"" "the tensor is named in the certificate"
            Expect.stringContains b.Precision "float32" "F32 read as float32"
            expectSame "F32 tensor" b (inMemory b.Subject (f32 |> Array.map float) true)
        }
        test ".safetensors defects are refused with one line naming the defect (exit 2 through rf)" {
            use dir = new TempDir()
            let ok = f8Bytes (Array.init 6 float)
            let tensor (dtype: string) (shape: string) (offsets: string) = sprintf """{"x":{"dtype":"%s","shape":%s,"data_offsets":%s}}""" dtype shape offsets
            let cases =
                [ "short", [| 1uy; 2uy; 3uy |], "too short"
                  "hugeheader", Array.append (BitConverter.GetBytes 200_000_000UL) (Array.zeroCreate 8), "implausible"
                  "truncheader", Array.append (BitConverter.GetBytes 64UL) (Encoding.UTF8.GetBytes "{}"), "truncated header"
                  "utf8", Array.concat [ BitConverter.GetBytes 7UL; [| byte '{'; byte '"'; 0xffuy; byte '"'; byte ':'; byte '1'; byte '}' |] ], "UTF-8"
                  "json", rawSafetensors "{\"x\": " [||], "not valid JSON"
                  "array", rawSafetensors "[1, 2]" [||], "expected an object"
                  "twice", rawSafetensors """{"x":{"dtype":"F64","shape":[2,3],"data_offsets":[0,48]},"x":{"dtype":"F64","shape":[2,3],"data_offsets":[0,48]}}""" ok, "appears twice"
                  "nooffsets", rawSafetensors """{"x":{"dtype":"F64","shape":[2,3]}}""" ok, "missing key"
                  "extrakey", rawSafetensors """{"x":{"dtype":"F64","shape":[2,3],"data_offsets":[0,48],"order":"C"}}""" ok, "unexpected key \"order\""
                  "dtype", rawSafetensors (tensor "F7" "[2,3]" "[0,48]") ok, "unknown dtype \"F7\""
                  "int", rawSafetensors (tensor "I64" "[2,3]" "[0,48]") ok, "dtype I64 (supported: F32, F64)"
                  "3d", rawSafetensors (tensor "F64" "[1,2,3]" "[0,48]") ok, "no 2-D tensor"
                  "overflow", rawSafetensors (tensor "F64" "[4611686018427387905,4]" "[0,48]") ok, "overflows 64 bits"
                  "size", rawSafetensors (tensor "F64" "[2,3]" "[0,40]") (Array.truncate 40 ok), "needs 48 bytes"
                  "pastend", rawSafetensors (tensor "F64" "[2,3]" "[0,48]") (Array.truncate 40 ok), "past the end"
                  "hole", rawSafetensors (tensor "F64" "[2,3]" "[8,56]") (Array.append (Array.zeroCreate 8) ok), "hole of 8 bytes"
                  "overlap", rawSafetensors """{"x":{"dtype":"F64","shape":[2,3],"data_offsets":[0,48]},"y":{"dtype":"F64","shape":[1],"data_offsets":[40,48]}}""" ok, "overlap"
                  "trailing", rawSafetensors (tensor "F64" "[2,3]" "[0,48]") (Array.append ok [| 0uy |]), "1 unexpected trailing bytes"
                  "backwards", rawSafetensors (tensor "F64" "[0,3]" "[48,0]") ok, "end before they begin"
                  "negative", rawSafetensors (tensor "F64" "[-2,3]" "[0,48]") ok, "non-negative"
                  "empty", rawSafetensors (tensor "F64" "[0,3]" "[0,0]") [||], "empty"
                  "metadata", rawSafetensors ("{\"__metadata__\":{\"n\":1}," + (tensor "F64" "[2,3]" "[0,48]").Substring(1)) ok, "not a string"
                  "nan", rawSafetensors (tensor "F64" "[2,3]" "[0,48]") (f8Bytes [| 1.0; 2.0; 3.0; 4.0; infinity; 6.0 |]), "entry (1, 1) is" ]
            for name, bytes, fragment in cases do
                let path = dir.File(name + ".safetensors")
                File.WriteAllBytes(path, bytes)
                let e = throwsT<MatrixFormatException> (fun () -> MatrixCertification.Certify(MatrixFiles.Open(path, null), true) |> ignore)
                Expect.stringContains e.Message fragment (name + ": " + e.Message)
                Expect.stringContains e.Message path (name + ": names the file")
                Expect.isFalse (e.Message.Contains "\n") (name + ": one line")
            File.WriteAllBytes(dir.File "ok.safetensors", rawSafetensors (tensor "F64" "[2,3]" "[0,48]") ok)
            let missing = throwsT<MatrixFormatException> (fun () -> MatrixFiles.Open(dir.File "ok.safetensors", "y") |> ignore)
            Expect.stringContains missing.Message "no tensor named \"y\" (tensors: x [2, 3] F64)" "unknown --tensor lists the tensors"
            for name in [ "overflow"; "hole"; "nan"; "twice" ] do
                let code, out, err = runRf dir.Path [ "certify"; "--matrix"; name + ".safetensors" ]
                Expect.equal code 2 (name + ": exit 2 " + out + err)
                Expect.stringStarts err "rf certify: bad input: " (name + ": one line")
                Expect.equal (err.Trim().Split('\n').Length) 1 (name + ": one line")
        }
        test "peak memory: a 64 × 400 000 float64 file (205 MB, Gram 32 KB) is certified with a peak RSS far below the file's size above rf's own" {
            let time = "/usr/bin/time"
            if not (File.Exists time) then skiptest "/usr/bin/time not installed: peak RSS not measured"
            use dir = new TempDir()
            let rows, cols = 64, 400000
            writeBig (dir.File "big.npy") rows cols
            File.WriteAllBytes(dir.File "small.npy", npyBytes 1uy "<f8" false [ 2; 2 ] (f8Bytes [| 1.0; 0.0; 0.0; 1.0 |]))
            let peakKb (file: string) =
                let info = ProcessStartInfo(time, WorkingDirectory = dir.Path, RedirectStandardOutput = true, RedirectStandardError = true)
                for a in [ "-v"; rfPath.Value; "certify"; "--matrix"; file ] do info.ArgumentList.Add a
                use p = Process.Start info
                let out = p.StandardOutput.ReadToEndAsync()
                let err = p.StandardError.ReadToEndAsync()
                if not (p.WaitForExit 60000) then p.Kill true; failtest "rf did not finish in 60 s"
                Expect.equal p.ExitCode 0 (file + ": Certified " + out.Result + err.Result)
                let m = Text.RegularExpressions.Regex.Match(err.Result, "Maximum resident set size \\(kbytes\\): (\\d+)")
                Expect.isTrue m.Success ("time -v reports the peak: " + err.Result)
                int64 m.Groups.[1].Value
            let fileBytes = FileInfo(dir.File "big.npy").Length
            let baseline, big = peakKb "small.npy", peakKb "big.npy"
            eprintfn "peak RSS: rf on a 2 × 2 matrix %d kB, on the %d-byte 64 × 400000 file %d kB (+%d kB)" baseline fileBytes big (big - baseline)
            Expect.isLessThan ((big - baseline) * 1024L) (fileBytes / 4L) "the file is streamed: its size never becomes resident"
        }
    ]
