/// The certificate's float64 kernels (`NativeBlas`: OpenBLAS or libtorch; docs/theory.md §3 "Which BLAS"):
/// each kernel against an oracle that does not use it (integer arithmetic where every float64 operation is
/// exact, Demmel's componentwise bound for Cholesky), on views with a leading dimension larger than the
/// width, on both backends; and the certificate computed on each backend: same verdict, bounds within the
/// stated error terms (the differential test of the choice of BLAS).
module ResearchFramework.Properties.MathCoreTests.NativeBlasTests

open System
open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Properties
open ResearchFramework.Properties.MathCoreTests.Generators

/// The backends this machine has (libtorch always; OpenBLAS when it loads).
let private backends () =
    [ yield NativeBlas.Backend.LibTorch
      if NativeBlas.openBlasAvailable () then yield NativeBlas.Backend.OpenBlas ]

/// An integer matrix with entries in [−bound, bound] (exact in float64; every product and partial sum of the
/// sizes used here stays far below 2^53, so every order of operations gives the exact value).
let private integers (rng: Random) (rows: int) (cols: int) (bound: int) : int64[,] =
    Array2D.init rows cols (fun _ _ -> int64 (rng.Next(-bound, bound + 1)))

let private tensorOf (a: int64[,]) = torch.tensor(Array2D.map float a, dtype = torch.float64)

/// Reads a 2-D float64 tensor (any strides) into an array.
let private arrayOf (t: torch.Tensor) : float[,] =
    use c = t.contiguous()
    let data = c.data<float>().ToArray()
    let cols = int t.shape.[1]
    Array2D.init (int t.shape.[0]) cols (fun i j -> data.[i * cols + j])

/// A p × q window at (r0, c0) of a larger matrix filled with a sentinel, so a kernel writing outside its
/// view, or using the wrong leading dimension, is seen.
let private windowed (rng: Random) (p: int) (q: int) (init: int64[,]) =
    let r0, c0 = rng.Next 3, rng.Next 3
    let outer : torch.Tensor = torch.full([| int64 (p + r0 + rng.Next 3); int64 (q + c0 + 1 + rng.Next 3) |], scalar 777.0, dtype = torch.float64)
    let view = outer.narrow(0L, int64 r0, int64 p).narrow(1L, int64 c0, int64 q)
    if p > 0 && q > 0 then view.copy_(tensorOf init) |> ignore
    outer, view, r0, c0

let private expectOutsideUntouched (outer: torch.Tensor) r0 c0 p q (what: string) =
    let all = arrayOf outer
    for i in 0 .. Array2D.length1 all - 1 do
        for j in 0 .. Array2D.length2 all - 1 do
            let inside = i >= r0 && i < r0 + p && j >= c0 && j < c0 + q
            if not inside && all.[i, j] <> 777.0 then failtestf "%s: entry (%d, %d) outside the view was written (%g)" what i j all.[i, j]

let private config = Seeds.config 30

[<Tests>]
let tests =
    testList "MathCore.NativeBlas" [
        testCase "OpenBLAS is loaded where CI installs it (and named by describe)" <| fun () ->
            let ci = not (String.IsNullOrEmpty(Environment.GetEnvironmentVariable "CI"))
            if NativeBlas.openBlasAvailable () then
                Expect.stringContains (NativeBlas.useBackend NativeBlas.Backend.OpenBlas NativeBlas.describe) "OpenBLAS" "describe names OpenBLAS"
            elif ci then failtest "CI installs libopenblas0-pthread (.ci/run) but OpenBLAS could not be loaded: the fast kernels are untested"
            else skiptest "OpenBLAS (libopenblas.so.0) is not installed here: only the libtorch kernels are tested (apt-get install libopenblas0-pthread)"

        testPropertyWithConfig config "gemmNT and syrkLower are exact on integer matrices, on views, for α = ±1, β ∈ {0, 1}, every backend" <| fun (seed: int) ->
            let rng = Random seed
            // n up to 600 on some seeds: the libtorch syrk fallback's lower-block path (n > 512).
            let big = seed % 7 = 0
            let p = if big then rng.Next(513, 601) else rng.Next(1, 40)
            let q = rng.Next(1, 40)
            let k = if big then rng.Next(1, 6) else rng.Next(1, 50)
            let alpha = if rng.Next 2 = 0 then 1.0 else -1.0
            let beta = if rng.Next 2 = 0 then 0.0 else 1.0
            let a = integers rng p k 9
            let b = integers rng q k 9
            let c0 = integers rng p q 50
            let s0 = integers rng p p 50
            for backend in backends () do
                let what = sprintf "%O p=%d q=%d k=%d α=%g β=%g" backend p q k alpha beta
                use scope = torch.NewDisposeScope()
                // gemm: C ← βC + α·A·Bᵀ
                let outer, view, r0, cc0 = windowed rng p q c0
                NativeBlas.useBackend backend (fun () -> NativeBlas.gemmNT alpha (tensorOf a) (tensorOf b) beta view)
                let got = arrayOf view
                for i in 0 .. p - 1 do
                    for j in 0 .. q - 1 do
                        let exact = int64 beta * c0.[i, j] + int64 alpha * Seq.sum (seq { for l in 0 .. k - 1 -> a.[i, l] * b.[j, l] })
                        if got.[i, j] <> float exact then failtestf "gemm %s: (%d, %d) = %g, exact %d" what i j got.[i, j] exact
                expectOutsideUntouched outer r0 cc0 p q ("gemm " + what)
                // syrk: lower triangle of C ← βC + α·A·Aᵀ
                let outerS, viewS, rs, cs = windowed rng p p s0
                NativeBlas.useBackend backend (fun () -> NativeBlas.syrkLower alpha (tensorOf a) beta viewS)
                let gotS = arrayOf viewS
                for i in 0 .. p - 1 do
                    for j in 0 .. i do
                        let exact = int64 beta * s0.[i, j] + int64 alpha * Seq.sum (seq { for l in 0 .. k - 1 -> a.[i, l] * a.[j, l] })
                        if gotS.[i, j] <> float exact then failtestf "syrk %s: (%d, %d) = %g, exact %d" what i j gotS.[i, j] exact
                expectOutsideUntouched outerS rs cs p p ("syrk " + what)

        testPropertyWithConfig config "mirrorLower makes the matrix (or a view of one, rows of stride > n) symmetric from its lower triangle, bit for bit, nothing else changes" <| fun (seed: int) ->
            let rng = Random seed
            let n = if seed % 5 = 0 then rng.Next(500, 1100) else rng.Next(1, 140)
            let asView = seed % 2 = 1
            use outer = gaussian seed (n + 3) (n + 5)
            let r0, c0 = (if asView then 1 else 0), (if asView then 2 else 0)
            use t = if asView then outer.narrow(0L, int64 r0, int64 n).narrow(1L, int64 c0, int64 n) else gaussian seed n n
            let before = arrayOf t
            let outerBefore = arrayOf outer
            NativeBlas.mirrorLower t
            let after = arrayOf t
            for i in 0 .. n - 1 do
                for j in 0 .. n - 1 do
                    let expected = if j <= i then before.[i, j] else before.[j, i]
                    if BitConverter.DoubleToInt64Bits after.[i, j] <> BitConverter.DoubleToInt64Bits expected then
                        failtestf "n=%d (view %b): (%d, %d) = %g, expected %g" n asView i j after.[i, j] expected
            if asView then
                let outerAfter = arrayOf outer
                for i in 0 .. n + 2 do
                    for j in 0 .. n + 4 do
                        let inside = i >= r0 && i < r0 + n && j >= c0 && j < c0 + n
                        if not inside && outerAfter.[i, j] <> outerBefore.[i, j] then failtestf "n=%d: entry (%d, %d) outside the view was written" n i j

        testPropertyWithConfig config "potrfLower: L·Lᵀ = A within Demmel's componentwise bound γ_{n+1}|L||Lᵀ|, on views; info = k at the first non-positive pivot" <| fun (seed: int) ->
            let rng = Random seed
            let n = rng.Next(1, 80)
            use b = gaussian seed n (n + 3)
            use a = b.mm(b.t())
            let gamma = FloatingPoint.gamma FloatingPoint.unitRoundoff64 (n + 1)
            let exactA = arrayOf a
            for backend in backends () do
                let what = sprintf "%O n=%d" backend n
                use scope = torch.NewDisposeScope()
                let outer, (view: torch.Tensor), r0, c0 = windowed rng n n (Array2D.zeroCreate<int64> n n)
                view.copy_(a) |> ignore
                let info = NativeBlas.useBackend backend (fun () -> NativeBlas.potrfLower view)
                Expect.equal info 0 ("SPD factors. " + what)
                expectOutsideUntouched outer r0 c0 n n ("potrf " + what)
                let l = arrayOf (view.tril())
                for i in 0 .. n - 1 do
                    for j in 0 .. i do
                        // (L·Lᵀ)_ij and (|L||Lᵀ|)_ij summed in extended care: float64 with the error of the check's own
                        // sum (≤ γ_n of |L||Lᵀ|) added to the allowance.
                        let prod = Seq.sum (seq { for t in 0 .. j -> l.[i, t] * l.[j, t] })
                        let absProd = Seq.sum (seq { for t in 0 .. j -> abs (l.[i, t] * l.[j, t]) })
                        let allowed = (gamma + FloatingPoint.gamma FloatingPoint.unitRoundoff64 (n + 1)) * absProd * 1.01
                        if abs (prod - exactA.[i, j]) > allowed then
                            failtestf "%s: |(LLᵀ − A)_(%d,%d)| = %g > %g" what i j (abs (prod - exactA.[i, j])) allowed
                // Not positive definite: a diagonal matrix with a non-positive entry at position k (1-based) → info = k.
                let d = Array.init n (fun i -> float (1 + i % 3))
                let k = rng.Next(1, n + 1)
                d.[k - 1] <- (if rng.Next 2 = 0 then 0.0 else -1.0)
                use diag = torch.diag(torch.tensor(d, dtype = torch.float64))
                let infoBad = NativeBlas.useBackend backend (fun () -> NativeBlas.potrfLower diag)
                Expect.equal infoBad k ("info names the first failing pivot. " + what)

        testPropertyWithConfig config "trsmRightLowerTranspose: X·Lᵀ = B exactly for unit-diagonal integer L (X integer), on views" <| fun (seed: int) ->
            let rng = Random seed
            let q = rng.Next(1, 12)
            let p = rng.Next(1, 30)
            let l = Array2D.init q q (fun i j -> if i = j then 1L elif j < i then int64 (rng.Next(-1, 2)) else int64 (rng.Next(-5, 6)))
            let bInit = integers rng p q 20
            for backend in backends () do
                let what = sprintf "%O p=%d q=%d" backend p q
                use scope = torch.NewDisposeScope()
                let outer, view, r0, c0 = windowed rng p q bInit
                // L's strict upper triangle holds garbage: only the lower triangle may be read.
                NativeBlas.useBackend backend (fun () -> NativeBlas.trsmRightLowerTranspose (tensorOf l) view)
                let x = arrayOf view
                for i in 0 .. p - 1 do
                    for j in 0 .. q - 1 do
                        // (X·Lᵀ)_ij = Σ_t X_it L_jt over t ≤ j
                        let back = Seq.sum (seq { for t in 0 .. j -> x.[i, t] * float l.[j, t] })
                        if back <> float bInit.[i, j] then failtestf "%s: (XLᵀ)_(%d,%d) = %g, B = %d" what i j back bInit.[i, j]
                expectOutsideUntouched outer r0 c0 p q ("trsm " + what)

        testPropertyWithConfig (Seeds.config 20) "the certificate on OpenBLAS and on libtorch: same verdict on known rank, bounds within the stated error terms (dense and tiled)" <| fun (seed: int) ->
            if not (NativeBlas.openBlasAvailable ()) then () else
            let n, m, k = shape seed
            let withBias = seed % 2 = 0
            use phi = ofRank seed n m k
            let opts = Certify.defaults
            let onTorch = NativeBlas.useBackend NativeBlas.Backend.LibTorch (fun () -> Certify.certifyMatrix opts (subject phi withBias) phi)
            let onOpenBlas = NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () -> Certify.certifyMatrix opts (subject phi withBias) phi)
            let what = sprintf "n=%d m=%d k=%d bias=%b" n m k withBias
            TiledTests.expectAgree ("dense, libtorch vs OpenBLAS " + what) onTorch onOpenBlas true
            let b = 1 + abs seed % (n + 2)
            let settings = { Tiled.defaults with TileSize = b; RunFingerprint = "test" }
            let tiledTorch = NativeBlas.useBackend NativeBlas.Backend.LibTorch (fun () -> Tiled.certifyMatrix opts settings (subject phi withBias) phi)
            let tiledOpen = NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () -> Tiled.certifyMatrix opts settings (subject phi withBias) phi)
            TiledTests.expectAgree (sprintf "tiled b=%d, libtorch vs OpenBLAS %s" b what) tiledTorch tiledOpen true
            TiledTests.expectAgree (sprintf "dense libtorch vs tiled OpenBLAS b=%d %s" b what) onTorch tiledOpen true
    ]
