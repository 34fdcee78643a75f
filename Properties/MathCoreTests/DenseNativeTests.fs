/// The dense certificate on native buffers (`DenseNative`: what `rf certify --matrix` runs on OpenBLAS, without
/// libtorch) against the tensor route it stands in for: fl G bit for bit (the same products and additions), the panel
/// Cholesky kernel for kernel, and the certificate on every path (the Ritz shift, inverse iteration, panels, LAPACK's
/// order, duplicates, zero rows, rank deficiency): the same verdict, bounds within the stated error terms, and each
/// Certified bound checked against MathNet's singular values (an oracle outside both routes).
module ResearchFramework.Properties.MathCoreTests.DenseNativeTests

open System
open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Properties
open ResearchFramework.Properties.MathCoreTests.Generators

/// Φ's entries as a native row-major buffer of its own dtype (float32 or float64), and whether it is float32.
let private bufferOf (phi: torch.Tensor) : DenseNative.Buffer * bool =
    let n, m = int phi.shape.[0], int phi.shape.[1]
    use c = phi.contiguous()
    if phi.dtype = torch.float32 then
        let b = new DenseNative.Buffer(4L * int64 (max 1 (n * m)))
        c.data<float32>().ToArray().AsSpan().CopyTo(b.Floats(n * m))
        b, true
    else
        let b = DenseNative.Buffer.OfDoubles(int64 (max 1 (n * m)))
        c.data<float>().ToArray().AsSpan().CopyTo(b.Doubles(n * m))
        b, false

/// The native Gram of Φ given in column blocks of the widths `cuts` (summing to m), each a view into the whole matrix
/// (leading dimension m), with or without the bias column, in products of `chunk` columns.
let private nativeGram (chunk: int) (cuts: int list) (withBias: bool) (phi: torch.Tensor) : DenseNative.NativeGram =
    let n, m = int phi.shape.[0], int phi.shape.[1]
    let buffer, isFloat32 = bufferOf phi
    use _b = buffer
    use acc = new DenseNative.Accumulator(n, chunk)
    let item = if isFloat32 then 4L else 8L
    let mutable start = 0
    for w in cuts do
        acc.Add(buffer.Pointer + nativeint (item * int64 start), w, m, isFloat32)
        start <- start + w
    if withBias then acc.AddBiasColumn()
    acc.Finish()

/// Widths of consecutive blocks of `width` columns covering m.
let private blocksOf (width: int) (m: int) = [ for s in 0 .. width .. m - 1 -> min width (m - s) ]

/// Random widths ≥ 1 covering m.
let private randomCuts (rng: Random) (m: int) =
    let rec go left acc = if left = 0 then List.rev acc else (let w = rng.Next(1, left + 1) in go (left - w) (w :: acc))
    go m []

let private entries (g: DenseNative.NativeGram) : float[] =
    let n = g.Rows
    let values = Array.zeroCreate<float> (n * n)
    g.Buffer.Doubles(n * n).CopyTo(values.AsSpan())
    values

let private tensorEntries (t: torch.Tensor) : float[] = (use c = t.contiguous() in c.data<float>().ToArray())

let private bits (x: float) = BitConverter.DoubleToInt64Bits x

/// Φ̃ = [Φ, 1] (or Φ) in float64, for the MathNet oracle.
let private tilde (withBias: bool) (phi: torch.Tensor) =
    let p = phi.``to``(torch.float64)
    if withBias then torch.cat([| p; torch.ones([| p.shape.[0]; 1L |], dtype = torch.float64) |], 1L) else p

/// Exact row equality of Φ (the duplicate scan's confirmation, as the file route's).
let private rowEquality (phi: torch.Tensor) : Certify.RowEquality =
    let n, m = int phi.shape.[0], int phi.shape.[1]
    let values = tensorEntries (phi.``to``(torch.float64))
    Some (fun i j -> Seq.forall (fun k -> bits values.[i * m + k] = bits values.[j * m + k]) (seq { 0 .. m - 1 }))

/// Runs f, expecting an ArgumentException; returns it.
let private argumentError (what: string) (f: unit -> unit) : ArgumentException =
    let outcome = try f (); None with :? ArgumentException as e -> Some e
    match outcome with
    | Some e -> e
    | None -> failtestf "%s: expected an ArgumentException, nothing was thrown" what

let private config = Seeds.config 30

[<Tests>]
let tests =
    testList "MathCore.DenseNative" [
        testPropertyWithConfig config "the native Gram is the tensor route's bit for bit for any cut of the columns into blocks, within 2E of one block per product; same bookkeeping" <| fun (seed: int) ->
            if DenseNative.available () then
                let rng = Random seed
                let n, m = rng.Next(1, Seeds.scaled 60), rng.Next(1, Seeds.scaled 90)
                let chunk = rng.Next(1, m + 4)
                let withBias = rng.Next 2 = 0
                use phi64 = gaussian seed n m
                // a zero row now and then (ZeroRows), float32 on half the seeds
                if n > 1 && seed % 5 = 0 then phi64.narrow(0L, int64 (rng.Next n), 1L).zero_() |> ignore
                use phi = if seed % 2 = 0 then phi64.``to``(torch.float32) else phi64.clone()
                let what = sprintf "n=%d m=%d chunk=%d bias=%b %O" n m chunk withBias phi.dtype
                use reference = NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () -> Gram.ofMatrix chunk withBias phi)
                use same = nativeGram chunk (blocksOf chunk m) withBias phi
                let r, s = tensorEntries reference.Gram, entries same
                for k in 0 .. r.Length - 1 do
                    if bits r.[k] <> bits s.[k] then failtestf "%s: entry (%d, %d) = %.17g, the tensor route's %.17g" what (k / n) (k % n) s.[k] r.[k]
                Expect.equal same.Columns reference.Columns ("m'. " + what)
                Expect.equal same.AccumulationDepth reference.AccumulationDepth ("h. " + what)
                Expect.equal (bits same.SquaredNormSumUpper) (bits reference.SquaredNormSumUpper) ("Σ‖φ̃‖² bound. " + what)
                Expect.equal same.ZeroRows reference.ZeroRows ("zero rows. " + what)
                Expect.equal same.FeaturePrecision reference.FeaturePrecision ("precision. " + what)
                // any cut of the stream (the Host reads blocks whose width need not divide the product's): the tensor
                // accumulator fed the same cuts, bit for bit; and within 2E of the one-block-per-product Gram
                let cuts = randomCuts rng m
                use cut = nativeGram chunk cuts withBias phi
                use tensorCut =
                    NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () ->
                        let acc = Gram.ColumnBlockAccumulator(n, torch.CPU, chunk)
                        let mutable start = 0
                        for w in cuts do
                            use block = phi.narrow(1L, int64 start, int64 w)
                            acc.Add block
                            start <- start + w
                        if withBias then acc.AddBiasColumn()
                        acc.Finish())
                let c, tc = entries cut, tensorEntries tensorCut.Gram
                for k in 0 .. r.Length - 1 do
                    if bits c.[k] <> bits tc.[k] then failtestf "%s, cuts %A: entry (%d, %d) = %.17g, the tensor route's %.17g" what cuts (k / n) (k % n) c.[k] tc.[k]
                Expect.equal cut.AccumulationDepth tensorCut.AccumulationDepth ("h, random cut. " + what)
                Expect.equal (bits cut.SquaredNormSumUpper) (bits tensorCut.SquaredNormSumUpper) ("Σ‖φ̃‖² bound, random cut. " + what)
                let e = reference.AccumulationErrorBound
                for k in 0 .. r.Length - 1 do
                    if abs (c.[k] - r.[k]) > 2.0 * e then failtestf "%s, random cut: entry %d off by %g > 2E = %g" what k (abs (c.[k] - r.[k])) (2.0 * e)
                Expect.equal cut.AccumulationDepth reference.AccumulationDepth ("h, random cut. " + what)

        testPropertyWithConfig config "the native Cholesky is TileCholesky.factorInPlace kernel for kernel: the same factor bit for bit in panels and in LAPACK's order, the same failures" <| fun (seed: int) ->
            if DenseNative.available () then
                let rng = Random seed
                let n = rng.Next(1, Seeds.scaled 90)
                let panel = if seed % 4 = 0 then 0 else rng.Next(1, n + 3)
                use b = gaussian seed n (n + 2)
                use spd = b.mm(b.t())
                // an indefinite matrix on some seeds: a negative diagonal entry somewhere
                if seed % 3 = 0 then (let i = int64 (rng.Next n) in spd.[i, i] <- torch.tensor(-1.0, dtype = torch.float64))
                let what = sprintf "n=%d panel=%d indefinite=%b" n panel (seed % 3 = 0)
                use t = spd.clone()
                let okTensor = NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () -> TileCholesky.factorInPlace panel t)
                use native = DenseNative.Buffer.OfDoubles(int64 (n * n))
                (tensorEntries spd).AsSpan().CopyTo(native.Doubles(n * n))
                let okNative = DenseNative.factorInPlace panel n native.Pointer
                Expect.equal okNative okTensor ("the same success. " + what)
                if okTensor then
                    let r = tensorEntries t
                    let s = native.Doubles(n * n).ToArray()
                    for i in 0 .. n - 1 do
                        for j in 0 .. i do
                            if bits r.[i * n + j] <> bits s.[i * n + j] then failtestf "%s: L(%d, %d) = %.17g, the tensor route's %.17g" what i j s.[i * n + j] r.[i * n + j]

        testPropertyWithConfig config "the native operator is the tensor route's: the shifted test and the σ_max trial succeed exactly where the eigenvalues say (the same diagonals, bit for bit), the same duplicate candidates, the λ_min estimate to rounding" <| fun (seed: int) ->
            if DenseNative.available () then
                let rng = Random seed
                let n = rng.Next(2, Seeds.scaled 50)
                let m = n + rng.Next(0, 40)
                use phi = gaussian seed n m
                // a duplicated row on some seeds (candidates), else distinct rows
                if seed % 4 = 0 then phi.[int64 (n - 1)] <- phi.[0L].clone()
                let panel = if seed % 3 = 0 then 0 else rng.Next(1, n + 2)
                let opts = { Certify.defaults with CholeskyPanel = panel }
                use tensorGram = NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () -> Gram.ofMatrix 4096 false phi)
                let scaledTensor, scale = Gram.scaleBy false tensorGram
                use _s = scaledTensor.Gram
                use work = torch.empty_like(scaledTensor.Gram)
                use nativeG = nativeGram 4096 [ m ] false phi
                let scaledNative, scaleNative = DenseNative.scaleInPlace nativeG
                use nativeWork = DenseNative.Buffer.OfDoubles(int64 (n * n))
                Expect.equal scaleNative scale "the same scale"
                let t = NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () -> Certify.denseOperator opts "x" scale work scaledTensor)
                let d0 = DenseNative.denseOperator opts "x" scale nativeWork scaledNative
                // the work matrix filled with NaN before every factorisation: the native operator forms and reads its lower
                // triangle only, so nothing left in the upper triangle can reach a result
                let poisoned (f: 'a -> 'b) = fun (x: 'a) -> nativeWork.Doubles(n * n).Fill(nan); f x
                let d =
                    { d0 with
                        ShiftedCholesky = poisoned d0.ShiftedCholesky; TrialCholesky = poisoned d0.TrialCholesky
                        EstimateLambdaMin = poisoned d0.EstimateLambdaMin
                        AnyOrderCholesky = d0.AnyOrderCholesky |> Option.map (fun a -> { Shifted = poisoned a.Shifted; Trial = poisoned a.Trial }) }
                // the oracle: eigenvalues of the scaled fl G (MathNet, outside both routes)
                let values = tensorEntries scaledTensor.Gram
                let eig = MathNet.Numerics.LinearAlgebra.Matrix<float>.Build.Dense(n, n, fun i j -> values.[i * n + j]).Evd(MathNet.Numerics.LinearAlgebra.Symmetricity.Symmetric).EigenValues
                let lambdas = eig |> Seq.map (fun c -> c.Real) |> Array.ofSeq |> Array.sort
                let lo, hi = lambdas.[0], lambdas.[n - 1]
                let what = sprintf "n=%d m=%d panel=%d λ ∈ [%g, %g]" n m panel lo hi
                let same (name: string) (a: float[] option) (b: float[] option) =
                    match a, b with
                    | None, None -> ()
                    | Some x, Some y -> Expect.sequenceEqual (Array.map bits y) (Array.map bits x) (sprintf "%s: the same diagonal. %s" name what)
                    | _ -> failtestf "%s: tensor %b, native %b. %s" name a.IsSome b.IsSome what
                let orders = [ "panels", t.ShiftedCholesky, t.TrialCholesky, d.ShiftedCholesky, d.TrialCholesky ] @
                             (match t.AnyOrderCholesky, d.AnyOrderCholesky with
                              | Some ta, Some da -> [ "LAPACK's order", ta.Shifted, ta.Trial, da.Shifted, da.Trial ]
                              | None, None -> []
                              | _ -> failtestf "AnyOrderCholesky on one route only. %s" what)
                for name, tShift, tTrial, dShift, dTrial in orders do
                    let gap = 0.05 * (hi - lo) + 1e-6 * hi
                    for c in [ lo - gap; lo + gap; lo * 0.5 ] do
                        if c > 0.0 then
                            let r = dShift c
                            same (sprintf "%s shifted c=%g" name c) (NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () -> tShift c)) r
                            // fl G − cI is positive definite iff c < λ_min (away from it by the gap: far beyond rounding)
                            if c < lo - 0.5 * gap then Expect.isSome r (sprintf "%s: c = %g < λ_min factors. %s" name c what)
                            elif c > lo + 0.5 * gap then Expect.isNone r (sprintf "%s: c = %g > λ_min fails. %s" name c what)
                    for tt in [ hi + gap; hi - gap; 2.0 * hi ] do
                        let r = dTrial tt
                        same (sprintf "%s trial t=%g" name tt) (NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () -> tTrial tt)) r
                        if tt > hi + 0.5 * gap then Expect.isSome r (sprintf "%s: t = %g > λ_max factors. %s" name tt what)
                        elif tt < hi - 0.5 * gap then Expect.isNone r (sprintf "%s: t = %g < λ_max fails. %s" name tt what)
                Expect.equal (d.DuplicateCandidates 100) (t.DuplicateCandidates 100) ("the same candidates. " + what)
                if seed % 4 = 0 then Expect.contains (d.DuplicateCandidates 100) (0, n - 1) ("the duplicated pair is a candidate. " + what)
                if lo > 1e-8 * hi then
                    let a, b = d.EstimateLambdaMin 16, NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () -> t.EstimateLambdaMin 16)
                    Expect.floatClose { absolute = 1e-12 * hi; relative = 1e-9 } a b ("λ_min estimates (the same start). " + what)
                    Expect.isGreaterThanOrEqual a (lo * (1.0 - 1e-9)) ("a Rayleigh quotient: ≥ λ_min. " + what)

        testPropertyWithConfig (Seeds.config 40) "the native certificate and the tensor route's: same verdict, same Gram terms, bounds within the error terms on every path; Certified bounds hold against MathNet's σ; DenseNative.certifyMatrix (CertificateEngine's dense route) and Certify.certifyMatrix likewise" <| fun (seed: int) ->
            if DenseNative.available () then
                let n, m, k = shape seed
                let rng = Random(seed + 11)
                let withBias = seed % 2 = 0
                let path = abs seed % 6
                use phi64 = ofRank seed n m k
                if path = 3 && n >= 2 then phi64.[int64 (n - 1)] <- phi64.[0L].clone()      // duplicate rows
                if path = 4 then phi64.narrow(0L, int64 (rng.Next n), 1L).zero_() |> ignore   // a zero row
                use phi = if seed % 3 = 0 then phi64.``to``(torch.float32) else phi64.clone()
                let opts =
                    match path with
                    | 1 -> Certify.withBlockedOrder (rng.Next(1, m + 2)) (rng.Next(1, max 2 (n / 2))) Certify.defaults   // panels
                    | 2 -> { Certify.defaults with RitzShiftTolerance = 0.0 }                                             // inverse iteration
                    | 5 -> Certify.withGramChunk (rng.Next(1, m + 2)) Certify.defaults
                    | _ -> Certify.defaults
                let what = sprintf "path %d n=%d m=%d k=%d bias=%b %O" path n m k withBias phi.dtype
                let equal = rowEquality phi
                let subjectOf = subject phi withBias
                let onTensor =
                    NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () ->
                        let gram = Gram.ofMatrix opts.BlockColumns withBias phi
                        Certify.certifyAccumulated opts subjectOf equal (Diagnostics.Stopwatch.StartNew()) gram)
                let onNative =
                    use gram = nativeGram opts.BlockColumns (blocksOf opts.BlockColumns m) withBias phi
                    DenseNative.certifyAccumulated opts subjectOf equal (Diagnostics.Stopwatch.StartNew()) gram
                let info = sprintf "%s: tensor %O (%s); native %O (%s)" what onTensor.Verdict onTensor.Reason onNative.Verdict onNative.Reason
                Expect.equal onNative.Verdict onTensor.Verdict ("same verdict. " + info)
                let d, t = onTensor.Terms, onNative.Terms
                Expect.equal t.ScaleExponent d.ScaleExponent ("same scale. " + info)
                Expect.equal (bits t.SquaredNormSumUpper) (bits d.SquaredNormSumUpper) ("the same Σ‖φ̃‖² bound (the same fl G). " + info)
                Expect.equal (bits t.AccumulationError) (bits d.AccumulationError) ("the same E. " + info)
                Expect.equal t.CholeskyGammaIndex d.CholeskyGammaIndex ("the same factorisation order. " + info)
                Expect.equal onNative.Precision onTensor.Precision ("precision. " + info)
                Expect.equal onNative.Device "cpu" ("device. " + info)
                TiledTests.expectBoundsWithinErrorTerms info onTensor onNative
                if d.LambdaMaxUpper > 0.0 && t.LambdaMaxUpper > 0.0 then
                    // the same Lanczos from the same start on other kernels: the same estimate to rounding
                    Expect.isLessThanOrEqual (abs (onNative.SigmaMaxEstimate - onTensor.SigmaMaxEstimate)) (1e-9 * onTensor.SigmaMaxEstimate + 1e-300) ("σ_max estimates. " + info)
                // the oracle outside both routes
                use tl = tilde withBias phi
                let sMin, sMax = mathNetSigmaMin tl, mathNetSigmaMax tl
                if onNative.IsCertified then
                    Expect.isLessThanOrEqual onNative.SigmaMinLower (sMin * (1.0 + 1e-12)) ("σ_min bound ≤ MathNet's σ_min. " + info)
                Expect.isGreaterThanOrEqual onNative.SigmaMaxUpper (sMax * (1.0 - 1e-12)) ("σ_max bound ≥ MathNet's σ_max. " + info)
                // the path asked for was the path taken
                match path with
                | 1 when onNative.IsCertified -> Expect.equal t.CholeskyGammaIndex (TileCholesky.depth n n opts.CholeskyPanel) ("panels: their h_C. " + info)
                | 2 when onNative.IsCertified -> Expect.isFalse (onNative.Reason.Contains "Ritz") ("inverse iteration, not the Ritz shift. " + info)
                | 3 when n >= 2 -> Expect.stringContains onNative.Reason "identical" ("refuted by the duplicate rows. " + info)
                | 4 when not withBias -> Expect.stringContains onNative.Reason "exactly zero" ("refuted by the zero row. " + info)
                | _ -> ()
                // the in-memory certificate (CertificateEngine.Certify's dense route: the trainer's, rf prove fc's) on native
                // buffers, Φ's own memory read in column blocks, against Certify.certifyMatrix: the same fl G, verdict and route
                let viaNative = DenseNative.certifyMatrix opts subjectOf phi
                let viaTensor = NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () -> Certify.certifyMatrix opts subjectOf phi)
                let info2 = sprintf "%s: certifyMatrix %O/%O (%s); native %O/%O (%s)" what viaTensor.Verdict viaTensor.Route viaTensor.Reason viaNative.Verdict viaNative.Route viaNative.Reason
                Expect.equal viaNative.Verdict viaTensor.Verdict ("certifyMatrix: same verdict. " + info2)
                Expect.equal viaNative.Route viaTensor.Route ("certifyMatrix: same route. " + info2)
                Expect.equal (bits viaNative.Terms.SquaredNormSumUpper) (bits viaTensor.Terms.SquaredNormSumUpper) ("certifyMatrix: the same Σ‖φ̃‖² bound. " + info2)
                Expect.equal (bits viaNative.Terms.AccumulationError) (bits viaTensor.Terms.AccumulationError) ("certifyMatrix: the same E. " + info2)
                if viaNative.Route = CertificateRoute.Gram then TiledTests.expectBoundsWithinErrorTerms info2 viaTensor viaNative
                // and it is the native route that ran: the certificate of the native Gram above, bit for bit (the same blocks,
                // leading dimension and kernels), where the tensor route's estimates differ in their last bits
                if viaNative.Route = CertificateRoute.Gram && onNative.Route = CertificateRoute.Gram && n <= subjectOf.Columns then
                    Expect.equal (bits viaNative.SigmaMaxEstimate) (bits onNative.SigmaMaxEstimate) ("certifyMatrix on native buffers: the native estimate, bit for bit. " + info2)
                    Expect.equal (bits viaNative.SigmaMinLower) (bits onNative.SigmaMinLower) ("certifyMatrix on native buffers: the native bound, bit for bit. " + info2)
                if viaNative.IsCertified then
                    Expect.isLessThanOrEqual viaNative.SigmaMinLower (sMin * (1.0 + 1e-12)) ("certifyMatrix on native buffers: σ_min bound ≤ MathNet's σ_min. " + info2)
                Expect.isGreaterThanOrEqual viaNative.SigmaMaxUpper (sMax * (1.0 - 1e-12)) ("certifyMatrix on native buffers: σ_max bound ≥ MathNet's σ_max. " + info2)

        testCase "DenseNative.certifyMatrix where its Gram cannot be formed natively (no feature column, only the bias: n = 1, m = 0) is Certify.certifyMatrix's certificate" <| fun () ->
            use phi = torch.zeros([| 1L; 0L |], dtype = torch.float64)
            let subject = ExpressivitySubject.OfMatrix("sha256:bias-only", 1, 0, true)
            let a = DenseNative.certifyMatrix Certify.defaults subject phi
            let b = Certify.certifyMatrix Certify.defaults subject phi
            Expect.equal a.Verdict b.Verdict "the same verdict"
            Expect.equal a.SigmaMinLower b.SigmaMinLower "the same bound"

        testCase "the native Gram refuses what the tensor route refuses: float64 entries below the underflow guard, a NaN or an overflowing square (naming the row), no columns" <| fun () ->
            if DenseNative.available () then
                let refuses (what: string) (values: float[]) (n: int) (m: int) (expected: string) =
                    use phi = torch.tensor(values, dtype = torch.float64).reshape(int64 n, int64 m)
                    let e = argumentError what (fun () -> (nativeGram 4096 [ m ] false phi :> IDisposable).Dispose())
                    Expect.stringContains e.Message expected what
                    // the tensor route refuses the same input
                    argumentError ("tensor route: " + what) (fun () -> (Gram.ofMatrix 4096 false phi :> IDisposable).Dispose()) |> ignore
                refuses "an entry of 1e-200" [| 1.0; 1e-200; 0.0; 2.0 |] 2 2 "below"
                refuses "a NaN" [| 1.0; 0.0; nan; 2.0 |] 2 2 "row 1"
                refuses "a square that overflows" [| 1e200; 0.0; 0.0; 2.0 |] 2 2 "row 0"
                use acc = new DenseNative.Accumulator(3, 8)
                argumentError "no columns" (fun () -> acc.Finish() |> ignore) |> ignore

        testPropertyWithConfig config "tridiagonalTop (the native Lanczos's stopping rule) is the largest eigenvalue of a symmetric tridiagonal matrix, as MathNet's eigensolver says: random, graded, repeated, split (zero couplings) and 1 × 1, each also scaled to the ends of the float64 range; NaN for a non-finite entry" <| fun (seed: int) ->
            let rng = Random seed
            let j = 1 + rng.Next 80
            let kind = rng.Next 5
            // kinds: 0 random signs; 1 graded over 12 decades; 2 a repeated top (every α equal, tiny couplings); 3 split
            // (zero couplings: the top is the largest α); 4 the shape of a Lanczos Ritz matrix (positive α, β ≥ 0)
            let alpha = Array.init j (fun i ->
                match kind with
                | 0 -> rng.NextDouble() * 2.0 - 1.0
                | 1 -> Math.Pow(10.0, -6.0 + 12.0 * rng.NextDouble()) * (if rng.Next 2 = 0 then 1.0 else -1.0)
                | 2 -> 3.0
                | 3 -> rng.NextDouble() * 10.0
                | _ -> 1.0 + rng.NextDouble())
            let beta = Array.init j (fun i ->
                if i = 0 then 0.0
                else
                    match kind with
                    | 2 -> 1e-12 * rng.NextDouble()
                    | 3 -> (if rng.Next 3 = 0 then 0.0 else rng.NextDouble())
                    | 1 -> Math.Pow(10.0, -6.0 + 12.0 * rng.NextDouble())
                    | 4 -> 0.3 * rng.NextDouble()
                    | _ -> rng.NextDouble() * 2.0 - 1.0)
            let dense = MathNet.Numerics.LinearAlgebra.Matrix<float>.Build.Dense(j, j, fun a b ->
                if a = b then alpha.[a] elif abs (a - b) = 1 then beta.[max a b] else 0.0)
            let expected = dense.Evd(MathNet.Numerics.LinearAlgebra.Symmetricity.Symmetric).EigenValues |> Seq.map (fun z -> z.Real) |> Seq.max
            let top = DenseNative.tridiagonalTop alpha beta j
            let scale = dense.L2Norm()
            Expect.floatClose { absolute = 1e-13 * scale; relative = 1e-13 } top expected (sprintf "λ_max, j = %d, kind %d" j kind)
            // the same matrix times 2^±k at the ends of the range (β² would overflow or underflow unscaled): the top times 2^±k
            let largest = Seq.append alpha beta |> Seq.map abs |> Seq.max
            for target in [ 1020; 900; -900; -1020 ] do
                // the largest entry scaled to 2^target (β² alone would overflow above 2^512 and underflow below 2^−537)
                let k = if largest > 0.0 then target - Math.ILogB largest else target
                // entry by entry (2^k alone may overflow when the largest entry is small)
                let scaled = DenseNative.tridiagonalTop (alpha |> Array.map (fun x -> Math.ScaleB(x, k))) (beta |> Array.map (fun x -> Math.ScaleB(x, k))) j
                let want = Math.ScaleB(top, k)
                let floor = if k < 0 then Math.ScaleB(float j, -1060) else 0.0   // entries pushed below the normal range
                Expect.floatClose { absolute = 1e-13 * Math.ScaleB(scale, k) + floor; relative = 1e-13 } scaled want (sprintf "λ_max of 2^%d·T, j = %d, kind %d" k j kind)
            if j > 1 then
                let broken = Array.copy alpha
                broken.[j - 1] <- nan
                Expect.isTrue (Double.IsNaN (DenseNative.tridiagonalTop broken beta j)) "NaN for a NaN entry"
                let infinite = Array.copy beta
                infinite.[1] <- infinity
                Expect.isTrue (Double.IsNaN (DenseNative.tridiagonalTop alpha infinite j)) "NaN for an infinite entry"
        testCase "the native Lanczos finds λ_max of a known spectrum, and the tensor route's Ritz values to rounding (the same start)" <| fun () ->
            if DenseNative.available () then
                for seed in [ 1; 2; 3 ] do
                    let n = 120
                    // G = Q diag(λ) Qᵀ with λ spread in [1, 50] and a gap at the top: Lanczos converges at both ends
                    use q = (let struct (q, _) = torch.linalg.qr(gaussian seed n n) in q)
                    let lambdas = Array.init n (fun i -> if i = n - 1 then 80.0 else 1.0 + 49.0 * float i / float n)
                    use g = q.mul(torch.tensor(lambdas, dtype = torch.float64).unsqueeze(0L)).mm(q.t())
                    use gs = g.add(g.t()).mul(scalar 0.5)
                    let values = tensorEntries gs
                    let matvec (x: float[]) = Array.init n (fun i -> Seq.sum (seq { for j in 0 .. n - 1 -> values.[i * n + j] * x.[j] }))
                    let native = DenseNative.lanczosRitz 90 n matvec
                    let tensor = Certify.estimateRitz 90 gs
                    Expect.floatClose { absolute = 0.0; relative = 1e-6 } native.LambdaMax 80.0 (sprintf "θ_max (seed %d)" seed)
                    Expect.isGreaterThanOrEqual native.LambdaMinRitz (1.0 - 1e-9) (sprintf "θ_min ≥ λ_min (seed %d)" seed)
                    // the same start (Certify.startVector) and the same steps on other kernels: the same Ritz values to rounding
                    Expect.floatClose { absolute = 0.0; relative = 1e-12 } native.LambdaMax tensor.LambdaMax (sprintf "θ_max as the tensor route's (seed %d)" seed)
                    Expect.floatClose { absolute = 0.0; relative = 1e-10 } native.LambdaMinRitz tensor.LambdaMinRitz (sprintf "θ_min as the tensor route's (seed %d)" seed)
                    // θ_min's change over the last product, NaN exactly where the tensor route's is (no Ritz values formed one
                    // dimension before: fewer than lanczosMinSteps products), at every Krylov dimension the loop can end on
                    for k in [ 1; 2; 8; 9; 10; 11; 12; 40; 90 ] do
                        let a, b = DenseNative.lanczosRitz k n matvec, Certify.estimateRitz k gs
                        Expect.equal (Double.IsNaN a.LambdaMinRitzChange) (Double.IsNaN b.LambdaMinRitzChange) (sprintf "k = %d: θ_min's change NaN on both or neither (seed %d): %g vs %g" k seed a.LambdaMinRitzChange b.LambdaMinRitzChange)
                        if not (Double.IsNaN b.LambdaMinRitzChange) then
                            Expect.floatClose { absolute = 1e-9; relative = 1e-6 } a.LambdaMinRitzChange b.LambdaMinRitzChange (sprintf "k = %d: θ_min's change (seed %d)" k seed)
                        Expect.floatClose { absolute = 0.0; relative = 1e-10 } a.LambdaMax b.LambdaMax (sprintf "k = %d: θ_max (seed %d)" k seed)
                // an invariant start (G = 3·I): one product, then the residual is rounding and the loop stops on both routes
                let identity = Array.init (30 * 30) (fun k -> if k / 30 = k % 30 then 3.0 else 0.0)
                use gi = torch.tensor(identity, dtype = torch.float64).reshape(30L, 30L)
                let a = DenseNative.lanczosRitz 90 30 (fun x -> Array.map (fun v -> 3.0 * v) x)
                let b = Certify.estimateRitz 90 gi
                Expect.floatClose { absolute = 0.0; relative = 1e-12 } a.LambdaMax 3.0 "G = 3·I: θ_max = 3"
                Expect.equal (Double.IsNaN a.LambdaMinRitzChange) (Double.IsNaN b.LambdaMinRitzChange) "G = 3·I: θ_min's change NaN on both or neither"
    ]
