/// The tiled certificate engine (`Tiled`, docs/theory.md §3 "Tiles"): the same verdict and bounds as the
/// dense route within the stated error terms, sound in exact rationals for every tile size, never
/// Certified below full rank, resumable after a kill at any tile, and never trusting a bad tile file.
module ResearchFramework.Properties.MathCoreTests.TiledTests

open System
open System.IO
open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Properties
open ResearchFramework.Properties.MathCoreTests.Generators
open ResearchFramework.Properties.MathCoreTests.CertifyTests

/// Raised by a progress callback to simulate a kill after some tiles.
exception Killed

/// A temporary work directory, deleted afterwards.
type WorkDir() =
    let path = Directory.CreateTempSubdirectory("rf-tiled-").FullName
    member _.Path = path
    interface IDisposable with
        member _.Dispose() = try Directory.Delete(path, true) with _ -> ()

/// Settings with tile size b, in memory (no work directory) unless one is given; the log collected.
let private settingsWith (b: int) (workDir: string) (log: Collections.Generic.List<string>) =
    { Tiled.defaults with
        TileSize = b; WorkDirectory = workDir; RunFingerprint = "test"
        Log = (fun line -> lock log (fun () -> log.Add line)) }

let private tiled (opts: Certify.Options) (b: int) (withBias: bool) (phi: torch.Tensor) =
    Tiled.certifyMatrix opts (settingsWith b null (Collections.Generic.List())) (subject phi withBias) phi

/// The tile Cholesky's panel width for a seed and tile size b: 0 (whole tiles) or 1 … b.
let private panelFor (seed: int) (b: int) = Random(seed + 5).Next(0, b + 1)

/// `tiled` with the tile Cholesky in panels of `panel` columns.
let private tiledPanels (opts: Certify.Options) (b: int) (panel: int) (withBias: bool) (phi: torch.Tensor) =
    Tiled.certifyMatrix opts { settingsWith b null (Collections.Generic.List()) with CholeskyPanel = panel } (subject phi withBias) phi

/// The certificate without its clock: what must be identical between runs.
let essence (c: Certificate) = c.Verdict, c.Reason, c.Method, c.Precision, c.SigmaMinLower, c.SigmaMaxEstimate, c.SigmaMaxUpper, c.Terms

/// The fields in which two certificates differ, with every float printed exactly (for messages).
let differences (a: Certificate) (b: Certificate) =
    let fields (c: Certificate) =
        [ "SigmaMinLower", box c.SigmaMinLower; "SigmaMaxEstimate", box c.SigmaMaxEstimate; "SigmaMaxUpper", box c.SigmaMaxUpper
          "Reason", box c.Reason; "Verdict", box c.Verdict ]
        @ [ for p in typeof<CertificateTerms>.GetProperties() -> p.Name, p.GetValue c.Terms ]
    List.zip (fields a) (fields b)
    |> List.choose (fun ((name, x), (_, y)) ->
        if x = y then None
        else Some (sprintf "%s: %s vs %s" name (match x with :? float as f -> f.ToString "R" | o -> string o) (match y with :? float as f -> f.ToString "R" | o -> string o)))
    |> String.concat "; "

/// Tiled and dense agree: the same verdict where the margin is not at rounding level, estimates within
/// 1e−8 relative, and the λ_min / λ_max bounds within the two routes' stated error terms plus the
/// shift's difference (the shift is a fraction of an estimate that rounding moves).
/// The λ_min bounds (both Certified) and the λ_max bounds (both formed) of two certificates of the same matrix differ by at
/// most the difference of their shifts (trials) plus both certificates' stated error terms.
let expectBoundsWithinErrorTerms (info: string) (dense: Certificate) (other: Certificate) =
    let d, t = dense.Terms, other.Terms
    if dense.IsCertified && other.IsCertified then
        let errors (x: CertificateTerms) = x.ShiftRoundingError + x.CholeskyBackwardError + x.AccumulationError
        let allowed = abs (t.Shift - d.Shift) + errors d + errors t
        Expect.isLessThanOrEqual (abs (t.LambdaMinLower - d.LambdaMinLower)) (allowed * (1.0 + 1e-12)) ("λ_min bounds within the error terms. " + info)
    if d.LambdaMaxUpper > 0.0 && t.LambdaMaxUpper > 0.0 then
        let errors (x: CertificateTerms) = x.LambdaMaxTrialRoundingError + x.LambdaMaxCholeskyBackwardError + x.AccumulationError
        let allowed = abs (t.LambdaMaxTrial - d.LambdaMaxTrial) + errors d + errors t
        Expect.isLessThanOrEqual (abs (t.LambdaMaxUpper - d.LambdaMaxUpper)) (allowed * (1.0 + 1e-12)) ("λ_max bounds within the error terms. " + info)

let expectAgree (what: string) (dense: Certificate) (tiledC: Certificate) (sameVerdict: bool) =
    let info = sprintf "%s: dense %O (%s) %A; tiled %O (%s) %A" what dense.Verdict dense.Reason dense.Terms tiledC.Verdict tiledC.Reason tiledC.Terms
    if sameVerdict then Expect.equal tiledC.Verdict dense.Verdict ("same verdict. " + info)
    let d, t = dense.Terms, tiledC.Terms
    Expect.equal t.ScaleExponent d.ScaleExponent ("same scale. " + info)
    Expect.isLessThanOrEqual (abs (t.SquaredNormSumUpper - d.SquaredNormSumUpper)) (2.0 * (d.AccumulationError + 1e-300)) ("Σ‖φ̃‖² within E. " + info)
    let close (a: float) (b: float) = abs (a - b) <= 1e-8 * max (abs a) (abs b) + 4.0 * d.AccumulationError
    if d.LambdaMinEstimate > 0.0 && t.LambdaMinEstimate > 0.0 then
        Expect.isTrue (close t.LambdaMinEstimate d.LambdaMinEstimate) ("λ_min estimates agree. " + info)
    if d.LambdaMaxTrial > 0.0 && t.LambdaMaxTrial > 0.0 then
        Expect.isTrue (close (tiledC.SigmaMaxEstimate ** 2.0) (dense.SigmaMaxEstimate ** 2.0)) ("λ_max estimates agree. " + info)
    expectBoundsWithinErrorTerms info dense tiledC

/// Φ, tile size and bias for a seed: known rank k ≤ n (n ≤ 40), tiles of 1 … n + 3 rows (non-divisible and
/// n < b included).
let private tiledCase (seed: int) =
    let n, m, k = shape seed
    let rng = Random(seed + 3)
    let b = rng.Next(1, n + 4)
    n, m, k, b, rng.Next 2 = 0

/// Runs `run` until it has made `k` progress reports, then throws `Killed` from the callback.
let private killAfter (k: int) (s: Tiled.Settings) =
    let mutable reports = 0
    { s with Progress = fun _ -> (reports <- reports + 1; if reports >= k then raise Killed) }

let private config = Seeds.config 25

/// Runs `f` on tile (i, j) of `a` (rows and columns `offset`…, `size`) held in a tensor over a fresh managed array
/// (`torch.from_array`: the tensor's storage pins the array until the storage is freed), disposes the tensor, and returns
/// whether the array is still pinned after a full collection: true iff something (a view left in a dispose scope) still
/// holds the storage, as a view of a tile read back from its file would hold 32 MiB at n = 60,000.
/// A 2-D tensor's values as a managed array (one copy, not an interop call per entry).
let private toArray2D (t: torch.Tensor) : float[,] =
    let v = (use c = t.contiguous() in c.data<float>().ToArray())
    let cols = int t.shape.[1]
    Array2D.init (int t.shape.[0]) cols (fun r c -> v.[r * cols + c])

let private tileHeldAfterUse (a: float[,]) (offset: int -> int) (size: int -> int) (i: int) (j: int) (f: torch.Tensor -> unit) : bool =
    let weak =
        let tile = Array2D.init (size i) (size j) (fun r c -> a.[offset i + r, offset j + c])
        let t = torch.from_array tile
        f t
        t.Dispose()
        WeakReference tile
    GC.Collect()
    GC.WaitForPendingFinalizers()
    GC.Collect()
    weak.IsAlive

[<Tests>]
let tests =
    testList "MathCore.Tiled" [
        testPropertyWithConfig config "the warm shift (the guard's s_ref²), dense and tiled: c₀ = σ_min²/2 certifies with that one Cholesky and no λ_min estimate, the bound sound against MathNet and ≥ 0.7·σ_min, the σ_max side unchanged; c₀ = 1.5·σ_min² (not positive definite): the certificate without a warm shift, one attempt more; a floor c₀ cannot prove (above c₀, or c₀ itself: the error terms): not tried; scaled by 2^40 (the scaled Gram's units)" <| fun (seed: int) ->
            let n, m, _ = shape seed
            use unit = ofRank seed n m n
            use phi = if seed % 2 = 0 then unit.mul(scalar (Math.ScaleB(1.0, 40))) else unit.alias()
            let s = mathNetSigmaMin phi
            let slack = Tolerance.svdSlack phi.shape.[0] phi.shape.[1] (mathNetSigmaMax phi)
            let b = max 1 (n / 3)
            for route, certifyBy in [ "dense", (fun (o: Certify.Options) -> certifyWith o false phi); "tiled", (fun o -> tiled o b false phi) ] do
                let plain = certifyBy Certify.defaults
                let info what (c: Certificate) = sprintf "%s, %s (n = %d, m = %d, σ_min %g): %O, attempts %d, estimate %g: %s" route what n m s c.Verdict c.Terms.ShiftAttempts c.Terms.LambdaMinEstimate c.Reason
                Expect.equal plain.Verdict Verdict.Certified (info "no warm shift" plain)
                let warm = certifyBy { Certify.defaults with WarmShift = 0.5 * s * s }
                Expect.equal warm.Verdict Verdict.Certified (info "warm σ²/2" warm)
                Expect.equal warm.Terms.ShiftAttempts 1 (info "one Cholesky" warm)
                Expect.isTrue (Double.IsNaN warm.Terms.LambdaMinEstimate) (info "no λ_min estimate" warm)
                Expect.stringContains warm.Reason "warm shift" (info "the reason says so" warm)
                Expect.isLessThanOrEqual warm.SigmaMinLower (s + slack) (info "sound" warm)
                Expect.isGreaterThanOrEqual warm.SigmaMinLower (0.7 * s) (info "≈ σ_min/√2" warm)
                Expect.equal (warm.SigmaMaxUpper, warm.SigmaMaxEstimate) (plain.SigmaMaxUpper, plain.SigmaMaxEstimate) (info "σ_max side unchanged" warm)
                let kept = certifyBy { Certify.defaults with WarmShift = 0.5 * s * s; WarmShiftFloor = 0.49 * s * s }
                Expect.equal (kept.SigmaMinLower, kept.Terms.ShiftAttempts) (warm.SigmaMinLower, 1) (info "a floor below what it proves: kept" kept)
                let fallBack what (c: Certificate) =
                    Expect.equal (c.Verdict, c.SigmaMinLower, c.SigmaMaxUpper, c.Terms.LambdaMinEstimate) (plain.Verdict, plain.SigmaMinLower, plain.SigmaMaxUpper, plain.Terms.LambdaMinEstimate) (info what c)
                    Expect.equal c.Terms.ShiftAttempts (plain.Terms.ShiftAttempts + 1) (info (what + ": one attempt more") c)
                fallBack "warm 1.5σ² (G − c₀I indefinite)" (certifyBy { Certify.defaults with WarmShift = 1.5 * s * s })
                for floor, why in [ 0.6, "a warm shift below its floor"; 0.5, "a warm shift whose error terms would put its bound under the floor (= c₀)" ] do
                    let notTried = certifyBy { Certify.defaults with WarmShift = 0.5 * s * s; WarmShiftFloor = floor * s * s }
                    Expect.equal (notTried.SigmaMinLower, notTried.Terms.ShiftAttempts, notTried.Terms.LambdaMinEstimate)
                                 (plain.SigmaMinLower, plain.Terms.ShiftAttempts, plain.Terms.LambdaMinEstimate) (info (why + " is not tried") notTried)

        test "blocked constants: h = c + ⌈m/c⌉ − 1 (+1 bias) for Gram tiles in chunks of c, h = 2s + P + 1 for the tile Cholesky in panels of s (P panels in all; whole tiles: 2b + ⌈n/b⌉ + 1), never above the any-order m' and n + 1" {
            // The whole-training-set case: ResNet-18 k = 1 taps (m = 96,000 + bias) in chunks of 2048, n = 60,000 in tiles of 2048.
            Expect.equal (Gram.accumulationDepth 96000 true 2048) 2095 "2048 + 47 − 1 + 1"
            Expect.equal (TileCholesky.depth 60000 2048 0) 4127 "whole tiles: 2·2048 + 30 + 1"
            Expect.equal (TileCholesky.depth 60000 2048 4096) 4127 "a panel wider than the tile: whole tiles"
            Expect.equal (TileCholesky.depth 60000 2048 2048) 4127 "a panel of the tile's width: whole tiles"
            // panels of 256: 29 tiles of 2048 (8 panels each) and a last tile of 608 (3 panels)
            Expect.equal (TileCholesky.depth 60000 2048 256) 748 "2·256 + (29·8 + 3) + 1"
            Expect.equal (TileCholesky.depth 1000 10 3) 407 "2·3 + 100·4 + 1"
            Expect.equal (TileCholesky.depth 8 2 1) 9 "min(9, 2 + 8 + 1)"
            Expect.equal (Gram.accumulationDepth 96000 true 0) 96001 "one product: m'"
            Expect.equal (Gram.accumulationDepth 96000 false 96000) 96000 "one product: m"
            Expect.equal (Gram.accumulationDepth 10 false 3) 6 "3 + 4 − 1"
            Expect.equal (Gram.accumulationDepth 10 true 1) 11 "1 + 10 − 1 + 1 = m'"
            // one product of a file wider than 2³⁰ columns (rf certify --matrix's default order): m', no int32 overflow
            Expect.equal (Gram.accumulationDepth ((1 <<< 30) + 1) false Int32.MaxValue) ((1 <<< 30) + 1) "one product of 2³⁰ + 1 columns: m"
            Expect.equal (Gram.accumulationDepth (Int32.MaxValue - 1) true Int32.MaxValue) Int32.MaxValue "one product of 2³¹ − 2 columns and the bias: m'"
            Expect.equal (Gram.accumulationDepth (Int32.MaxValue - 1) false 4096) (4096 + (Int32.MaxValue - 2) / 4096) "c + ⌈m/c⌉ − 1 near the top of int32"
            let rng = Random 7
            for _ in 1 .. 2000 do
                let m = 1 + rng.Next 100000
                let c = 1 + rng.Next 120000
                let bias = rng.Next 2 = 1
                let b = if bias then 1L else 0L
                let exact = min (int64 m + b) (int64 (min c m) + (int64 m + int64 (min c m) - 1L) / int64 (min c m) - 1L + b)
                Expect.equal (int64 (Gram.accumulationDepth m bias c)) exact (sprintf "m = %d, c = %d, bias %b: min(m', c + ⌈m/c⌉ − 1 + bias) in int64" m c bias)
            Expect.equal (TileCholesky.depth 8 2 0) 9 "min(9, 4 + 4 + 1)"
            Expect.equal (TileCholesky.depth 8 3 0) 9 "min(9, 6 + 3 + 1)"
            Expect.equal (TileCholesky.depth 1000 10 0) 121 "20 + 100 + 1"
            // recorded where both are below the any-order ones: n = 40 in tiles of 4, m = 60 (+ bias) in chunks of 16
            use phi = gaussian 5 40 60
            let c = Tiled.certifyMatrix Certify.defaults { settingsWith 4 null (Collections.Generic.List()) with GramChunkColumns = 16 } (subject phi true) phi
            Expect.equal (c.Terms.AccumulationGammaIndex, c.Terms.CholeskyGammaIndex) (20, 19) "recorded: 16 + 4 − 1 + 1 < 61, 8 + 10 + 1 < 41"
        }
        test "a Gram tile made by gramTile is within γ_h·|Φ_I||Φ_J|ᵀ of the exact Gram on sums built so that a sequential kernel loses u per term (h = accumulationDepth), and is bit for bit the chunk products formed apart and added in order (diagonal and off-diagonal, bias, a short last chunk)" {
            // Sums a sequential kernel rounds once per term (`adversarialRows`): in the first chunk every product after
            // the first is half an ulp of the running sum 1, each later chunk holds one product u, lost again when added
            // to the tile's 1. The exact G_xy = 1 + (c − 1 + ⌈m/c⌉ − 1)·u; Σ|x_k y_k| is the same sum.
            let c, chunks = 64, 40
            let m = c * chunks
            let rows, lost = adversarialRows c chunks
            use rows = rows
            use ri = rows.narrow(0L, 0L, 1L)
            use rj = rows.narrow(0L, 1L, 1L)
            let h = Gram.accumulationDepth m false c
            Expect.equal h (c + chunks - 1) "h"
            let backends = availableBackends ()
            for backend in backends do
                use g = NativeBlas.useBackend backend (fun () -> Tiled.gramTile c false ri rj false)
                let value = g.[0L, 0L].item<float> ()
                // exact: 1 + lost·u; |value − 1| is exact (Sterbenz), so the error is computed exactly in float64
                let error = abs ((value - 1.0) - float lost * FloatingPoint.unitRoundoff64)
                let absSum = 1.0 + float lost * FloatingPoint.unitRoundoff64
                let bound = FloatingPoint.gamma FloatingPoint.unitRoundoff64 h * absSum
                Expect.isLessThanOrEqual error bound (sprintf "%A: |fl G_xy − G_xy| = %.3g·u ≤ γ_%d·Σ|x_k y_k|" backend (error / FloatingPoint.unitRoundoff64) h)
                use gd = NativeBlas.useBackend backend (fun () -> Tiled.gramTile c true rows rows true)
                let diag = Gram.diagonalValues gd
                Expect.equal (gd.[0L, 1L].item<float> ()) (gd.[1L, 0L].item<float> ()) (sprintf "%A: the diagonal tile is exactly symmetric" backend)
                for r in [ 0; 1 ] do
                    // Σ_k row_k² + 1 (bias) = 2 + lost·2^−52 (row x: whole ulps of 1, exact in any order) or 2 + lost·2^−54
                    // (row y: quarter ulps, lost by a sequential sum); diag − 2 is exact (Sterbenz), so is the error.
                    let excess = float lost * Math.ScaleB(1.0, (if r = 0 then -52 else -54))
                    let error = abs ((diag.[r] - 2.0) - excess)
                    let hb = Gram.accumulationDepth m true c
                    Expect.isLessThanOrEqual error (FloatingPoint.gamma FloatingPoint.unitRoundoff64 hb * (2.0 + excess))
                        (sprintf "%A: squared norm of row %d within γ_%d (bias included)" backend r hb)
            // The order h counts, structurally: the tile is bit for bit the first chunk's product plus each later chunk's
            // product formed apart, added in order, then the bias (a single product of length m, chunks accumulated inside
            // the BLAS with β = 1 beyond its panel depth, or chunks ignored on diagonal tiles would round differently; no
            // bound on |error| could tell). Chunks of 600 (beyond OpenBLAS's panel depth), a short last chunk of 137.
            let c2 = 600
            let m2 = 4 * c2 + 137
            use a = gaussian 3 6 m2
            use b2 = gaussian 4 6 m2
            for backend in backends do
                NativeBlas.useBackend backend (fun () ->
                    for diagonal in [ false; true ] do
                        use g = Tiled.gramTile c2 true a b2 diagonal
                        use reference = torch.zeros([| 6L; 6L |], dtype = torch.float64)
                        use part = torch.zeros([| 6L; 6L |], dtype = torch.float64)
                        for start in 0 .. c2 .. m2 - 1 do
                            let width = min c2 (m2 - start)
                            use ac = a.narrow(1L, int64 start, int64 width)
                            use bc = b2.narrow(1L, int64 start, int64 width)
                            if diagonal then NativeBlas.syrkLower 1.0 ac 0.0 part else NativeBlas.gemmNT 1.0 ac bc 0.0 part
                            reference.add_(part) |> ignore
                        if diagonal then NativeBlas.mirrorLower reference
                        reference.add_(scalar 1.0) |> ignore
                        Expect.isTrue (use same = g.eq(reference).all() in same.item<bool> ())
                            (sprintf "%A, %s: gramTile = Σ_q (chunk products formed apart), added in order, + bias, bit for bit" backend (if diagonal then "diagonal (syrk)" else "gemm")))
        }
        test "the blocked constants certify where the any-order constants cannot (ill-conditioned Φ, m' = 16,384): the tiled route Certified, sound against MathNet's σ_min, the dense Gram route Inconclusive" {
            // Φ = U·diag(s)·Vᵀ, n = 256, m = 16,384, s = 1 except s_min² = 1000·u·tr(G): the dense Gram route's error terms
            // ≈ (m' + n + 1)·u·tr(G) ≈ 16,600·u·tr(G) exceed λ_min; the tiled route's (chunks of 128, tiles of 32):
            // (255 + 73)·u·tr(G), a fiftieth.
            let n, m = 256, 16384
            use q1 = (use a = gaussian 41 n n in let struct (q, _) = torch.linalg.qr a in q)
            use q2 = (use a = gaussian 42 m n in let struct (q, _) = torch.linalg.qr a in q)
            let trace = float (n - 1)
            let sMin = sqrt (1000.0 * FloatingPoint.unitRoundoff64 * trace)
            use s = torch.tensor(Array.init n (fun i -> if i = n - 1 then sMin else 1.0), dtype = torch.float64)
            use phi = q1.mul(s.unsqueeze(0L)).mm(q2.t())
            let gramOnly = { Certify.defaults with Route = Certify.RouteChoice.Gram }
            let dense = certifyWith gramOnly false phi
            let settings = { settingsWith 32 null (Collections.Generic.List()) with GramChunkColumns = 128 }
            let t = Tiled.certifyMatrix gramOnly settings (subject phi false) phi
            let info = sprintf "dense %O (%s); tiled %O (%s), indices %d/%d" dense.Verdict dense.Reason t.Verdict t.Reason t.Terms.AccumulationGammaIndex t.Terms.CholeskyGammaIndex
            Expect.equal dense.Verdict Verdict.Inconclusive ("the any-order constants are too large. " + info)
            Expect.equal t.Verdict Verdict.Certified ("the blocked constants certify. " + info)
            Expect.equal (t.Terms.AccumulationGammaIndex, t.Terms.CholeskyGammaIndex) (255, 73) ("indices. " + info)
            let sigma = mathNetSigmaMin phi
            Expect.isLessThanOrEqual t.SigmaMinLower (sigma * (1.0 + 1e-6)) (sprintf "sound: bound %.6g ≤ σ_min %.6g. %s" t.SigmaMinLower sigma info)
            Expect.isGreaterThan t.SigmaMinLower (0.5 * sigma) (sprintf "useful: bound %.6g > σ_min/2 = %.6g. %s" t.SigmaMinLower (sigma / 2.0) info)
            // Tiles of 128 in panels of 16: h_C = 2·16 + 16 + 1 = 49 (whole tiles of 128: min(n + 1, 2·128 + 2 + 1) = 257).
            let paneled = Tiled.certifyMatrix gramOnly { settings with TileSize = 128; CholeskyPanel = 16 } (subject phi false) phi
            let info = sprintf "paneled %O (%s), indices %d/%d" paneled.Verdict paneled.Reason paneled.Terms.AccumulationGammaIndex paneled.Terms.CholeskyGammaIndex
            Expect.equal (paneled.Terms.AccumulationGammaIndex, paneled.Terms.CholeskyGammaIndex) (255, 49) ("indices in panels. " + info)
            Expect.equal paneled.Verdict Verdict.Certified ("panels of 16 certify. " + info)
            Expect.isLessThanOrEqual paneled.SigmaMinLower (sigma * (1.0 + 1e-6)) (sprintf "sound: bound %.6g ≤ σ_min %.6g. %s" paneled.SigmaMinLower sigma info)
            Expect.isGreaterThan paneled.SigmaMinLower (0.5 * sigma) (sprintf "useful: bound %.6g > σ_min/2 = %.6g. %s" paneled.SigmaMinLower (sigma / 2.0) info)
            // Where only the panels certify: σ_min² = 500·u·tr(G), shift ≈ 375·u·tr(G); errors ≈ (255 + 49)·u·tr(G) in
            // panels of 16, ≈ (255 + 257)·u·tr(G) in whole tiles of 128.
            let sMin2 = sqrt (500.0 * FloatingPoint.unitRoundoff64 * trace)
            use s2 = torch.tensor(Array.init n (fun i -> if i = n - 1 then sMin2 else 1.0), dtype = torch.float64)
            use phi2 = q1.mul(s2.unsqueeze(0L)).mm(q2.t())
            let inPanels = Tiled.certifyMatrix gramOnly { settings with TileSize = 128; CholeskyPanel = 16 } (subject phi2 false) phi2
            let inTiles = Tiled.certifyMatrix gramOnly { settings with TileSize = 128; CholeskyPanel = 0 } (subject phi2 false) phi2
            let info2 = sprintf "panels %O (%s) h_C %d; whole tiles %O (%s) h_C %d" inPanels.Verdict inPanels.Reason inPanels.Terms.CholeskyGammaIndex
                                inTiles.Verdict inTiles.Reason inTiles.Terms.CholeskyGammaIndex
            Expect.equal (inPanels.Terms.CholeskyGammaIndex, inTiles.Terms.CholeskyGammaIndex) (49, 257) ("indices. " + info2)
            Expect.equal inPanels.Verdict Verdict.Certified ("panels of 16 certify. " + info2)
            Expect.equal inTiles.Verdict Verdict.Inconclusive ("whole tiles of 128 cannot. " + info2)
            let sigma2 = mathNetSigmaMin phi2
            Expect.isLessThanOrEqual inPanels.SigmaMinLower (sigma2 * (1.0 + 1e-6)) (sprintf "sound: bound %.6g ≤ σ_min %.6g. %s" inPanels.SigmaMinLower sigma2 info2)
        }
        test "a tile Cholesky step releases each factor tile it reads (tiles of 600 > the fallbacks' 512-row block: blocked syrk, gemm, trsm), on both BLAS backends, and is right" {
            let n, b = 1300, 600
            let size i = min b (n - i * b)
            let offset i = i * b
            let rng = Random 11
            use m = torch.tensor(Array2D.init n (n + 3) (fun _ _ -> rng.NextDouble() - 0.5), dtype = torch.float64)
            use g = m.mm(m.t()).add(torch.eye(int64 n, dtype = torch.float64))
            use l = torch.linalg.cholesky g
            let lArr = toArray2D l
            let backends = availableBackends ()
            for backend in backends do
                let held = ResizeArray<string>()
                let withFactor i j (f: torch.Tensor -> unit) =
                    if tileHeldAfterUse lArr offset size i j f then held.Add(sprintf "L(%d, %d)" i j)
                for i, k in [ 1, 1; 2, 1 ] do
                    use scope = torch.NewDisposeScope()
                    let a = g.narrow(0L, int64 (offset i), int64 (size i)).narrow(1L, int64 (offset k), int64 (size k)).clone()
                    let ok = NativeBlas.useBackend backend (fun () -> TileCholesky.step 0 withFactor i k a)
                    Expect.isTrue ok (sprintf "%A: step (%d, %d) succeeds" backend i k)
                    let expected = l.narrow(0L, int64 (offset i), int64 (size i)).narrow(1L, int64 (offset k), int64 (size k))
                    Expect.isLessThan (a.sub(expected).abs().max().item<float> ()) 1e-9 (sprintf "%A: step (%d, %d) gives L_ik" backend i k)
                Expect.equal (List.ofSeq held) [] (sprintf "%A: factor tiles still held by a view after their use" backend)
        }
        test "a tile Cholesky step is bit for bit its updates formed apart (β = 0) and subtracted in order, then potrf or trsm (the order TileCholesky.depth counts), with tiles of 600 beyond OpenBLAS's panel depth, on both BLAS backends" {
            let n, b = 1300, 600
            let size i = min b (n - i * b)
            let offset i = i * b
            let rng = Random 13
            use m = torch.tensor(Array2D.init n (n + 3) (fun _ _ -> rng.NextDouble() - 0.5), dtype = torch.float64)
            use g = m.mm(m.t()).add(torch.eye(int64 n, dtype = torch.float64))
            use l = torch.linalg.cholesky g
            let tile (t: torch.Tensor) i k = t.narrow(0L, int64 (offset i), int64 (size i)).narrow(1L, int64 (offset k), int64 (size k))
            let backends = availableBackends ()
            for backend in backends do
                NativeBlas.useBackend backend (fun () ->
                    for i, k in [ 2, 2; 2, 1 ] do
                        use scope = torch.NewDisposeScope()
                        let withFactor i j (f: torch.Tensor -> unit) = f ((tile l i j).contiguous())
                        let a = (tile g i k).clone()
                        Expect.isTrue (TileCholesky.step 0 withFactor i k a) (sprintf "%A: step (%d, %d) succeeds" backend i k)
                        let reference = (tile g i k).clone()
                        for j in 0 .. k - 1 do
                            let update = torch.zeros_like(reference)
                            if i = k then NativeBlas.syrkLower 1.0 ((tile l i j).contiguous()) 0.0 update
                            else NativeBlas.gemmNT 1.0 ((tile l i j).contiguous()) ((tile l k j).contiguous()) 0.0 update
                            reference.sub_(update) |> ignore
                        if i = k then
                            Expect.equal (NativeBlas.potrfLower reference) 0 "reference potrf"
                            reference.tril_() |> ignore
                        else NativeBlas.trsmRightLowerTranspose ((tile l k k).contiguous()) reference
                        Expect.isTrue (use same = a.eq(reference).all() in same.item<bool> ())
                            (sprintf "%A: step (%d, %d) = updates formed apart and subtracted in order, bit for bit" backend i k))
        }
        test "a tile Cholesky step in panels of s is bit for bit each panel's update formed apart (β = 0) and subtracted in order, then the tile worked panel by panel (updates formed apart, potrf of s × s blocks, trsm), on both BLAS backends, and is right" {
            // Tiles 600, 600, 100 in panels of 256 (600 = 256 + 256 + 88; the last tile narrower than a panel).
            let n, b, panel = 1300, 600, 256
            let size i = min b (n - i * b)
            let offset i = i * b
            let rng = Random 17
            use m = torch.tensor(Array2D.init n (n + 3) (fun _ _ -> rng.NextDouble() - 0.5), dtype = torch.float64)
            use g = m.mm(m.t()).add(torch.eye(int64 n, dtype = torch.float64))
            use l = torch.linalg.cholesky g
            let tile (t: torch.Tensor) i k = t.narrow(0L, int64 (offset i), int64 (size i)).narrow(1L, int64 (offset k), int64 (size k))
            let panels width = [ for p in 0 .. panel .. width - 1 -> p, min panel (width - p) ]
            let cols (t: torch.Tensor) p w = t.narrow(1L, int64 p, int64 w)
            // The order written out call by call: the reference of the order `TileCholesky.depth` counts.
            let reference (factors: int -> int -> torch.Tensor) i k =
                let r = (tile g i k).clone()
                for j in 0 .. k - 1 do
                    for p, w in panels (size j) do
                        let update = torch.zeros_like(r)
                        if i = k then NativeBlas.syrkLower 1.0 (cols (factors i j) p w) 0.0 update
                        else NativeBlas.gemmNT 1.0 (cols (factors i j) p w) (cols (factors k j) p w) 0.0 update
                        r.sub_(update) |> ignore
                if i = k then
                    for p, w in panels (size k) do
                        for q, wq in panels p do
                            let u = torch.zeros([| int64 (size k - p); int64 w |], dtype = torch.float64)
                            NativeBlas.gemmNT 1.0 ((cols r q wq).narrow(0L, int64 p, int64 (size k - p))) ((cols r q wq).narrow(0L, int64 p, int64 w)) 0.0 u
                            (cols r p w).narrow(0L, int64 p, int64 (size k - p)).sub_(u) |> ignore
                        let d = (cols r p w).narrow(0L, int64 p, int64 w)
                        Expect.equal (NativeBlas.potrfLower d) 0 "reference potrf"
                        d.tril_() |> ignore
                        NativeBlas.trsmRightLowerTranspose d ((cols r p w).narrow(0L, int64 (p + w), int64 (size k - p - w)))
                    r.tril_() |> ignore
                else
                    let lkk = factors k k
                    for p, w in panels (size k) do
                        for q, wq in panels p do
                            let u = torch.zeros([| int64 (size i); int64 w |], dtype = torch.float64)
                            NativeBlas.gemmNT 1.0 (cols r q wq) ((cols lkk q wq).narrow(0L, int64 p, int64 w)) 0.0 u
                            (cols r p w).sub_(u) |> ignore
                        NativeBlas.trsmRightLowerTranspose ((cols lkk p w).narrow(0L, int64 p, int64 w)) (cols r p w)
                r
            for backend in availableBackends () do
                NativeBlas.useBackend backend (fun () ->
                    for i, k in [ 0, 0; 1, 0; 1, 1; 2, 1; 2, 2 ] do
                        use scope = torch.NewDisposeScope()
                        let factors i j = (tile l i j).contiguous()
                        let a = (tile g i k).clone()
                        Expect.isTrue (TileCholesky.step panel (fun i j f -> f (factors i j)) i k a) (sprintf "%A: step (%d, %d) succeeds" backend i k)
                        let expected = tile l i k
                        Expect.isLessThan (a.sub(expected).abs().max().item<float> ()) 1e-9 (sprintf "%A: step (%d, %d) gives L_ik" backend i k)
                        let r = reference factors i k
                        Expect.isTrue (use same = a.eq(r).all() in same.item<bool> ())
                            (sprintf "%A: step (%d, %d) = the panel order, bit for bit" backend i k)
                        let whole = (tile g i k).clone()
                        Expect.isTrue (TileCholesky.step 0 (fun i j f -> f (factors i j)) i k whole) "whole-tile step"
                        if k > 0 then   // (without earlier tile columns the tile's own trsm may coincide with OpenBLAS's blocking)
                            Expect.isFalse (use same = a.eq(whole).all() in same.item<bool> ())
                                (sprintf "%A: step (%d, %d): the panel order differs from whole tiles somewhere (the comparison can see an order)" backend i k))
        }
        test "tile solves and the symmetric product release each tile when it has been used (no view outlives it), and are right" {
            let n, b = 21, 8
            let tiles = (n + b - 1) / b
            let size i = min b (n - i * b)
            let offset i = i * b
            let rng = Random 7
            let m = Array2D.init n (n + 3) (fun _ _ -> rng.NextDouble() - 0.5)
            use mt = torch.tensor(m, dtype = torch.float64)
            use g = mt.mm(mt.t()).add(torch.eye(int64 n, dtype = torch.float64))
            use l = torch.linalg.cholesky g
            let gArr = toArray2D g
            let lArr = toArray2D l
            use v = torch.tensor(Array2D.init n 2 (fun _ _ -> rng.NextDouble() - 0.5), dtype = torch.float64)
            let held = ResizeArray<string>()
            let withTile (name: string) (arr: float[,]) i j (f: torch.Tensor -> unit) =
                if tileHeldAfterUse arr offset size i j f then held.Add(sprintf "%s(%d, %d)" name i j)
            // Inside a dispose scope, as in the engine: a view registered in it (not only one left to the finaliser)
            // would keep its tile.
            let y, x, gv =
                use scope = torch.NewDisposeScope()
                let y = Tiled.solveLowerTiles tiles size offset (withTile "solveLower L" lArr) v
                let x = Tiled.solveUpperTiles tiles size offset (withTile "solveUpper L" lArr) y
                let gv = Tiled.symmetricMatvecTiles tiles size offset (withTile "matvec G" gArr) v
                y.MoveToOuterDisposeScope(), x.MoveToOuterDisposeScope(), gv.MoveToOuterDisposeScope()
            use y = y
            use x = x
            use gv = gv
            Expect.equal (List.ofSeq held) [] "tiles still held by a view after their use"
            use ly = l.mm(y)
            use ltx = l.t().mm(x)
            use dense = g.mm(v)
            Expect.isLessThan (ly.sub(v).abs().max().item<float> ()) 1e-12 "L·y = v"
            Expect.isLessThan (ltx.sub(y).abs().max().item<float> ()) 1e-12 "Lᵀ·x = y"
            Expect.isLessThan (gv.sub(dense).abs().max().item<float> ()) 1e-12 "tiled G·v = dense G·v"
        }
        test "a progress line: phase, tiles, rate and ETA once known (invariant culture, TimeSpan's c format); throttled lines keep each phase's last tile" {
            let line = Tiled.describeProgress { Phase = "gram"; TilesDone = 3; TilesTotal = 10; GflopsPerSecond = 12.345; EtaSeconds = 93725.4 }
            Expect.equal line "tiles: gram 3/10, 12.3 GFLOP/s, ETA 1.02:02:05" "known rate and ETA"
            let early = Tiled.describeProgress { Phase = "cholesky"; TilesDone = 0; TilesTotal = 6; GflopsPerSecond = nan; EtaSeconds = nan }
            Expect.equal early "tiles: cholesky 0/6" "no rate or ETA before the first computed tile"
            let lines = ResizeArray<string>()
            let progress = Tiled.throttledProgress 3600.0 lines.Add
            for k in 1 .. 5 do progress { Phase = "gram"; TilesDone = k; TilesTotal = 5; GflopsPerSecond = 1.0; EtaSeconds = 1.0 }
            Expect.equal (List.ofSeq lines) [ "tiles: gram 1/5, 1.0 GFLOP/s, ETA 00:00:01"; "tiles: gram 5/5, 1.0 GFLOP/s, ETA 00:00:01" ]
                "the first line, then nothing for an hour but the phase's last tile"
        }
        testPropertyWithConfig config "tiled = dense on known rank k ≤ n: same verdict, estimates within 1e−8, bounds within the error terms (every tile size, n < b included, the tile Cholesky in panels of 1 … b)" <| fun (seed: int) ->
            let n, m, k, b, withBias = tiledCase seed
            use phi = ofRank seed n m k
            let dense = certify withBias phi
            let panel = panelFor seed b
            let t = tiledPanels Certify.defaults b panel withBias phi
            let what = sprintf "n=%d m=%d k=%d b=%d panel=%d bias=%b" n m k b panel withBias
            expectAgree what dense t true
            if k < n && not withBias then Expect.notEqual t.Verdict Verdict.Certified ("rank < n never Certified. " + what)

        testPropertyWithConfig config "tiled = dense on nearly singular Gaussian products and ReLU-like features: both sound, bounds within the error terms (the tile Cholesky in panels of 1 … b)" <| fun (seed: int) ->
            let n, _, _, b, withBias = tiledCase seed
            let m = n + abs seed % 3
            use a = gaussian seed n m
            use w = gaussian (seed + 1) n 1
            use wn = w.div(w.norm())
            use p = wn.mm(wn.t())
            let eps = 10.0 ** -(float (2 + abs seed % 7))
            use phi = if seed % 5 = 0 then reluLike seed n m else a.sub(p.mm(a).mul(scalar (1.0 - eps)))
            let dense = certify withBias phi
            let panel = panelFor seed b
            let t = tiledPanels Certify.defaults b panel withBias phi
            let what = sprintf "n=%d m=%d b=%d panel=%d bias=%b eps=%g" n m b panel withBias eps
            expectAgree what dense t false
            if t.IsCertified then
                Expect.isLessThanOrEqual t.SigmaMinLower (mathNetSigmaMin (if withBias then HeuristicRank.withBiasColumn phi else phi.clone()) * (1.0 + 1e-6) + 1e-12) ("sound. " + what)

        testPropertyWithConfig config "tiled certificates are sound in exact rational arithmetic and every term is recomputed exactly (n ≤ 8, every tile size, adversarial options)" <| fun (seed: int) ->
            let n, m, withBias, phi = smallCase seed
            use phi = phi
            let rng = Random(seed + 29)
            let b = rng.Next(1, n + 2)
            let opts =
                if rng.Next 2 = 0 then Certify.defaults
                else
                    let fractions = [| [ 1.5 ]; [ 1.0 ]; [ 1.0 + 1e-12 ]; [ 2.0; 1.01; 1.0 ]; [ 0.999999 ]; [ 4.0; 0.5 ] |]
                    { Certify.defaults with
                        ShiftFractions = fractions.[rng.Next fractions.Length]
                        InverseIterations = rng.Next(0, 3)
                        KrylovSteps = rng.Next(1, 4)
                        LambdaMaxFactors = [ [ 1.0 ]; [ 0.9; 0.99; 1.0 ]; [ 0.5 ] ].[rng.Next 3] }
            // Gram tiles accumulated in chunks of 1 … m + 1 columns: the blocked accumulation constant (γ_h, h < m' for
            // most chunks) is what the exact check holds the terms to, computed here from its definition. (At n ≤ 8 the
            // tile Cholesky's 2b + ⌈n/b⌉ + 1 is never below n + 1: its blocked constant is exercised by the
            // ill-conditioned test above and the tiled = dense properties.)
            let chunk = rng.Next(1, m + 2)
            let panel = rng.Next(0, b + 2)
            let c = Tiled.certifyMatrix opts { settingsWith b null (Collections.Generic.List()) with GramChunkColumns = chunk; CholeskyPanel = panel } (subject phi withBias) phi
            let bias = if withBias then 1 else 0
            let chunks = (m + chunk - 1) / chunk
            let accumulationIndex = min (m + bias) (min chunk m + chunks - 1 + bias)
            // panels of s (whole tiles when the panel is 0 or ≥ b): 2s + P + 1, P the panels of all tile columns
            let s = if panel = 0 || panel >= b then b else panel
            let panelCount = Seq.sum (seq { for t in 0 .. (n + b - 1) / b - 1 -> (min b (n - t * b) + s - 1) / s })
            let choleskyIndex = min (n + 1) (2 * s + panelCount + 1)
            let what = sprintf "n=%d m=%d b=%d chunk=%d panel=%d bias=%b %A" n m b chunk panel withBias opts
            expectSoundExact what withBias phi c
            expectTermsExactWith accumulationIndex choleskyIndex what withBias phi c

        testPropertyWithConfig config "exactly singular and duplicate-row matrices are never Certified; duplicates, zero rows and m' < n are Refuted" <| fun (seed: int) ->
            let rng = Random seed
            let n = rng.Next(3, 30)
            let m = rng.Next(n, 50)
            let b = rng.Next(1, n + 3)
            use base' = gaussian seed n m
            let i, j = rng.Next n, rng.Next n
            let j = if i = j then (i + 1) % n else j
            base'.[int64 j].copy_(base'.[int64 i]) |> ignore
            let c = tiled Certify.defaults b true base'
            Expect.equal c.Verdict Verdict.Refuted (sprintf "duplicate rows %d, %d with b = %d: %s" i j b c.Reason)
            Expect.stringContains c.Reason "identical" "named as duplicates"
            // In a work directory the scan's candidates are recorded; a second run takes them from the manifest.
            use work = new WorkDir()
            let first = Tiled.certifyMatrix Certify.defaults (settingsWith b work.Path (Collections.Generic.List())) (subject base' true) base'
            let log = Collections.Generic.List<string>()
            let again = Tiled.certifyMatrix Certify.defaults (settingsWith b work.Path log) (subject base' true) base'
            Expect.equal (again.Verdict, again.Reason, again.SigmaMaxUpper) (first.Verdict, first.Reason, first.SigmaMaxUpper) "the same certificate from the recorded scan"
            Expect.equal again.Reason c.Reason "the same refutation as without files"
            Expect.isTrue (log |> Seq.exists (fun l -> l.Contains "candidate(s), as recorded in the manifest")) (sprintf "scan taken from the manifest: %A" (List.ofSeq log))
            use rankLess = rankDeficientByOne seed n m
            let r = tiled Certify.defaults b false rankLess
            Expect.notEqual r.Verdict Verdict.Certified (sprintf "rank n − 1, b = %d: %s" b r.Reason)
            use zero = gaussian (seed + 1) n m
            zero.[int64 i].zero_() |> ignore
            let z = tiled Certify.defaults b false zero
            Expect.equal z.Verdict Verdict.Refuted (sprintf "zero row %d: %s" i z.Reason)
            use tall = gaussian (seed + 2) n (n / 2)
            let s = tiled Certify.defaults b true tall
            Expect.equal s.Verdict Verdict.Refuted "m' < n refuted by shape"

        testPropertyWithConfig (Seeds.config 6) "killed after k tiles (any phase), the rerun reuses the tile files and gives the identical certificate" <| fun (seed: int) ->
            let rng = Random seed
            let n = rng.Next(5, 40)
            let m = n + rng.Next(0, 20)
            let b = rng.Next(2, 12)
            use phi = ofRank seed n m n
            use reference = new WorkDir()
            let log0 = Collections.Generic.List<string>()
            let mutable reports = 0
            let counting = { settingsWith b reference.Path log0 with Progress = fun _ -> reports <- reports + 1 }
            let expected = Tiled.certifyMatrix Certify.defaults counting (subject phi true) phi
            Expect.equal expected.Verdict Verdict.Certified expected.Reason
            let k = rng.Next(1, reports)
            use work = new WorkDir()
            let log = Collections.Generic.List<string>()
            let killed = killAfter k (settingsWith b work.Path log)
            Expect.throwsT<Killed> (fun () -> Tiled.certifyMatrix Certify.defaults killed (subject phi true) phi |> ignore) (sprintf "killed after %d of %d reports" k reports)
            let log2 = Collections.Generic.List<string>()
            let resumed = Tiled.certifyMatrix Certify.defaults (settingsWith b work.Path log2) (subject phi true) phi
            Expect.equal (essence resumed) (essence expected) (sprintf "identical certificate after a kill at report %d of %d: %s" k reports (differences resumed expected))
            let readBack = log2 |> Seq.sumBy (fun l -> let i = l.IndexOf " read back" in if i < 0 then 0 else (let p = l.LastIndexOf(", ", i) in int (l.Substring(p + 2, i - p - 2))))
            if k > 1 then Expect.isGreaterThan readBack 0 (sprintf "tiles read back from the files (log: %A)" (List.ofSeq log2))
            Expect.isFalse (log2 |> Seq.exists (fun l -> l.Contains "refused")) (sprintf "nothing refused after a clean kill: %A" (List.ofSeq log2))
            // A third run finds everything done: no tile computed, the same certificate.
            let log3 = Collections.Generic.List<string>()
            let again = Tiled.certifyMatrix Certify.defaults (settingsWith b work.Path log3) (subject phi true) phi
            Expect.equal (essence again) (essence expected) "identical on a finished work directory"
            Expect.isTrue (log3 |> Seq.forall (fun l -> not (l.Contains " computed,") || l.Contains "(0 computed")) (sprintf "nothing recomputed: %A" (List.ofSeq log3))
            Expect.isTrue (log3 |> Seq.exists (fun l -> l.Contains "duplicate scan: 0 candidate(s), as recorded in the manifest")) (sprintf "the duplicate scan not repeated: %A" (List.ofSeq log3))

        test "a corrupted, a truncated and a foreign tile file, and a foreign manifest, are refused with the file named and recomputed" {
            let n, m, b = 23, 31, 5
            use phi = ofRank 77 n m n
            use other = ofRank 78 n m n
            use work = new WorkDir()
            use foreign = new WorkDir()
            let run (dir: string) (matrix: torch.Tensor) fingerprint =
                let log = Collections.Generic.List<string>()
                let c = Tiled.certifyMatrix Certify.defaults { settingsWith b dir log with RunFingerprint = fingerprint } (subject matrix true) matrix
                c, List.ofSeq log
            let expected, _ = run work.Path phi "A"
            run foreign.Path other "B" |> ignore
            let tile name = Path.Combine(work.Path, name + ".tile")
            // flip one payload byte, truncate another, replace a third by the same tile of another run
            let bytes = File.ReadAllBytes(tile "G-1-0")
            bytes.[bytes.Length / 2] <- bytes.[bytes.Length / 2] ^^^ 1uy
            File.WriteAllBytes(tile "G-1-0", bytes)
            let t = File.ReadAllBytes(tile "G-2-2")
            File.WriteAllBytes(tile "G-2-2", t.[0 .. t.Length - 9])
            File.Copy(Path.Combine(foreign.Path, "G-3-1.tile"), tile "G-3-1", true)
            let again, log = run work.Path phi "A"
            Expect.equal (essence again) (essence expected) "identical certificate after recomputing the refused tiles"
            for name, why in [ "G-1-0", "checksum"; "G-2-2", "bytes, expected"; "G-3-1", "fingerprint mismatch" ] do
                Expect.isTrue (log |> List.exists (fun l -> l.Contains(tile name) && l.Contains "refused" && l.Contains why))
                    (sprintf "%s refused (%s), named in the log: %A" name why log)
            let _, clean = run work.Path phi "A"
            Expect.isFalse (clean |> List.exists (fun l -> l.Contains "refused")) (sprintf "the recomputed files verify: %A" clean)
            // the same work directory used for another run: its manifest is refused, everything recomputed
            let c, log = run work.Path phi "another fingerprint"
            Expect.isTrue (log |> List.exists (fun l -> l.Contains "manifest" && l.Contains "refused")) (sprintf "foreign manifest refused: %A" log)
            Expect.equal c.Verdict expected.Verdict "same verdict"
        }

        test "the tiled engine factorises in the panel order it records: the λ_min estimate (inverse iteration on the factor of fl G) differs in its bits between panels of 16 and whole tiles, and is the same for whole tiles however the panel says so (0, b)" {
            use phi = ofRank 37 200 260 200
            let estimate panel =
                let c = Tiled.certifyMatrix Certify.defaults { settingsWith 64 null (Collections.Generic.List()) with CholeskyPanel = panel } (subject phi true) phi
                c.Terms.LambdaMinEstimate, c.Terms.CholeskyGammaIndex
            let whole, hWhole = estimate 0
            let wholeAgain, hWholeAgain = estimate 64
            let paneled, hPaneled = estimate 16
            Expect.equal (wholeAgain, hWholeAgain) (whole, hWhole) "panel 0 and panel = b: the same order, the same bits"
            Expect.equal hPaneled (TileCholesky.depth 200 64 16) "the paneled constant recorded"
            Expect.notEqual (BitConverter.DoubleToInt64Bits paneled) (BitConverter.DoubleToInt64Bits whole)
                (sprintf "panels of 16 factorise in another order (estimates %.17g and %.17g)" paneled whole)
            Expect.isLessThan (abs (paneled - whole)) (1e-8 * abs whole) "and agree to rounding"
        }
        test "a work directory resumed with another Cholesky panel width factorises again (its recorded outcomes are of another order) and records the new constant; the Gram tiles are reused" {
            use phi = ofRank 31 24 40 24
            use work = new WorkDir()
            let run panel =
                let log = Collections.Generic.List<string>()
                let c = Tiled.certifyMatrix Certify.defaults { settingsWith 8 work.Path log with CholeskyPanel = panel } (subject phi true) phi
                c, List.ofSeq log
            let whole, _ = run 0
            let paneled, log = run 2
            let info = sprintf "%A" log
            Expect.equal whole.Verdict Verdict.Certified whole.Reason
            Expect.equal paneled.Verdict Verdict.Certified paneled.Reason
            Expect.equal (whole.Terms.CholeskyGammaIndex, paneled.Terms.CholeskyGammaIndex)
                (TileCholesky.depth 24 8 0, TileCholesky.depth 24 8 2) "each run records its own order's constant"
            Expect.isTrue (log |> List.exists (fun l -> l.StartsWith "gram:" && l.Contains "(0 computed")) ("Gram tiles read back. " + info)
            Expect.isTrue (log |> List.exists (fun l -> l.StartsWith "cholesky fl G −" && not (l.Contains "(0 computed"))) ("the shifted factorisation computed again in panels. " + info)
        }
        test "memory budget: everything in files (budget 0) gives the certificate of everything in memory; no work directory and too small a budget is refused" {
            use phi = ofRank 5 30 45 30
            let inMemory = tiled Certify.defaults 7 true phi
            let inMemory2 = tiled Certify.defaults 7 true phi
            Expect.equal (essence inMemory2) (essence inMemory) ("in memory twice, bitwise: " + differences inMemory2 inMemory)
            use w2 = new WorkDir()
            let big = Tiled.certifyMatrix Certify.defaults { settingsWith 7 w2.Path (Collections.Generic.List()) with MemoryBudgetBytes = 1L <<< 30 } (subject phi true) phi
            Expect.equal (essence big) (essence inMemory) ("files and memory: " + differences big inMemory)
            use work = new WorkDir()
            let spilled = Tiled.certifyMatrix Certify.defaults { settingsWith 7 work.Path (Collections.Generic.List()) with MemoryBudgetBytes = 0L } (subject phi true) phi
            Expect.equal (essence spilled) (essence inMemory) ("same certificate from files: " + differences spilled inMemory)
            Expect.throwsT<ArgumentException> (fun () ->
                Tiled.certifyMatrix Certify.defaults { settingsWith 7 null (Collections.Generic.List()) with MemoryBudgetBytes = 1000L } (subject phi true) phi |> ignore)
                "refused without a work directory"
        }

        test "progress: tiles done up to the total in each phase, a rate and an ETA" {
            use phi = ofRank 9 20 30 20
            let reports = Collections.Generic.List<Tiled.TiledProgress>()
            let s = { settingsWith 6 null (Collections.Generic.List()) with Progress = reports.Add }
            Tiled.certifyMatrix Certify.defaults s (subject phi true) phi |> ignore
            let gram = reports |> Seq.filter (fun p -> p.Phase = "gram") |> List.ofSeq
            Expect.equal gram.Length 10 "4 tile rows: 10 Gram tiles"
            Expect.equal (List.last gram).TilesDone 10 "all done"
            Expect.isTrue (gram |> List.forall (fun p -> p.TilesTotal = 10 && p.GflopsPerSecond > 0.0 && p.EtaSeconds >= 0.0)) (sprintf "rates and ETAs: %A" gram)
            Expect.isTrue (reports |> Seq.exists (fun p -> p.Phase.StartsWith "cholesky")) "factorisation phases reported"
            let lanczos = reports |> Seq.filter (fun p -> p.Phase = "λ_max estimate, Lanczos products") |> List.ofSeq
            Expect.isNonEmpty lanczos "the Lanczos products are reported"
            Expect.isTrue (lanczos |> List.forall (fun p -> p.TilesTotal = 20 && p.TilesDone <= 20 && p.EtaSeconds >= 0.0)) (sprintf "min(30 steps, n = 20): %A" lanczos)
            let inverse = reports |> Seq.filter (fun p -> p.Phase = "λ_min estimate, inverse iterations") |> List.ofSeq
            Expect.equal (inverse |> List.map (fun p -> p.TilesDone)) [ 1 .. Certify.defaults.InverseIterations ] "one report per inverse iteration"
        }
    
        testPropertyWithConfig (Seeds.config 4) "features larger than the cache are spilled: each row block produced once, the certificate bit for bit the unspilled one, spill files removed, a bad one refused and its rows produced again" <| fun (seed: int) ->
            let rng = Random seed
            let n = rng.Next(10, 40)
            let m = n + rng.Next(1, 20)
            let b = rng.Next(2, 9)
            use phi64 = ofRank seed n m n
            // float32 features (spilled as float32, exact) on even seeds, float64 on odd ones
            use phi = if seed % 2 = 0 then phi64.``to``(torch.float32) else phi64.clone()
            let blocks = (n + b - 1) / b
            let counts = Array.zeroCreate<int> blocks
            let source (s: int) =
                counts.[s] <- counts.[s] + 1
                phi.narrow(0L, int64 (s * b), int64 (min b (n - s * b)))
            let run (dir: string) (cacheBytes: int64) (spill: bool) (s: Tiled.Settings -> Tiled.Settings) (log: Collections.Generic.List<string>) =
                let settings = s { settingsWith b dir log with FeatureCacheBytes = cacheBytes; SpillFeatures = spill }
                Tiled.certifyRowBlocks Certify.defaults settings (subject phi true) None b blocks source
            let what = sprintf "n=%d m=%d b=%d %O" n m b phi.dtype
            let reference = run null (1L <<< 30) false id (Collections.Generic.List())
            Array.fill counts 0 blocks 0
            use w1 = new WorkDir()
            let log1 = Collections.Generic.List<string>()
            let spilled = run w1.Path 0L true id log1
            Expect.equal (essence spilled) (essence reference) (sprintf "spilled = in memory, bitwise (%s): %s" what (differences spilled reference))
            Expect.equal counts (Array.create blocks 1) (sprintf "each row block produced once (%s): %A" what (List.ofSeq log1))
            Expect.isEmpty (Directory.GetFiles(w1.Path, "F-*.tile")) "spill files removed after the Gram"
            let rowTileBytes = int64 b * int64 m * 8L
            let onePanelRow (s: Tiled.Settings) = { s with MemoryBudgetBytes = 2L * rowTileBytes - 1L }
            let readBack (log: Collections.Generic.List<string>) =
                log |> Seq.tryPick (fun l ->
                    let m = Text.RegularExpressions.Regex.Match(l, @"features: (\d+) row tiles produced, (\d+) read back")
                    if m.Success then Some (int m.Groups.[1].Value, int m.Groups.[2].Value) else None)
            // The default budget holds every row tile in one panel: nothing is read back.
            Expect.equal (readBack log1) (Some (blocks, 0)) (sprintf "one panel: produced once, none read back (%s): %A" what (List.ofSeq log1))
            // A budget of one row tile (panels of one row): row tile J is read back once for each later row I > J,
            // T(T − 1)/2 in all (a fetch per tile product, as before the panels, is T(T − 1)).
            Array.fill counts 0 blocks 0
            use w4 = new WorkDir()
            let log4 = Collections.Generic.List<string>()
            let narrow = run w4.Path 0L true onePanelRow log4
            Expect.equal (essence narrow) (essence reference) (sprintf "panels of one row = in memory, bitwise (%s)" what)
            Expect.equal counts (Array.create blocks 1) (sprintf "panels of one row: each row block produced once (%s)" what)
            Expect.equal (readBack log4) (Some (blocks, blocks * (blocks - 1) / 2)) (sprintf "panels of one row: T(T − 1)/2 read back (%s): %A" what (List.ofSeq log4))
            // Negative control: the same cache without spilling, in panels of one row, produces row blocks again.
            Array.fill counts 0 blocks 0
            use w2 = new WorkDir()
            let unspilled = run w2.Path 0L false onePanelRow (Collections.Generic.List())
            Expect.equal (essence unspilled) (essence reference) ("unspilled = in memory. " + what)
            if blocks > 1 then Expect.isGreaterThan (Array.sum counts) blocks ("without spilling, rows are produced again. " + what)
            // Killed after the first tile (F-0 spilled), F-0 corrupted: refused, named, its rows produced again.
            use w3 = new WorkDir()
            Expect.throwsT<Killed> (fun () -> run w3.Path 0L true (killAfter 1) (Collections.Generic.List()) |> ignore) "killed"
            let spillFile = Path.Combine(w3.Path, "F-0.tile")
            Expect.isTrue (File.Exists spillFile) "row tile 0 spilled before the kill"
            let bytes = File.ReadAllBytes spillFile
            bytes.[bytes.Length - 40] <- bytes.[bytes.Length - 40] ^^^ 4uy
            File.WriteAllBytes(spillFile, bytes)
            Array.fill counts 0 blocks 0
            let log3 = Collections.Generic.List<string>()
            let resumed = run w3.Path 0L true id log3
            Expect.equal (essence resumed) (essence reference) ("after a corrupted spill file, the same certificate. " + what)
            Expect.isTrue (log3 |> Seq.exists (fun l -> l.Contains spillFile && l.Contains "refused" && l.Contains "checksum")) (sprintf "refused and named: %A" (List.ofSeq log3))
            Expect.equal counts.[0] 1 "row block 0 produced again (once)"
    ]
