/// Properties of the certificate (SPEC §3): known-rank matrices, soundness against SVD,
/// usefulness, invariances, exact refutations, agreement of the three routes, bad input.
module ResearchFramework.Properties.MathCoreTests.CertifyTests

open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Properties
open ResearchFramework.Properties.MathCoreTests.Generators

let private config = Seeds.config 40

/// A certified bound may exceed the float64 SVD's σ_min only by the SVD's own error (`Tolerance.svdSlack`).
let private svdSlack (phi: torch.Tensor) (sigmaMax: float) = Tolerance.svdSlack phi.shape.[0] phi.shape.[1] sigmaMax

/// Exact rational arithmetic for checking σ_max bounds without rounding: every float64 is a dyadic
/// rational, so G = ΦΦᵀ and b·I − G are exact, and b·I − G ≻ 0 (all pivots of Gaussian elimination
/// without pivoting > 0, Sylvester) proves λ_max(G) < b for the float64 matrix Φ itself.
module Exact =
    open System.Numerics

    type Q = { N: BigInteger; D: BigInteger }

    let private make (n: BigInteger) (d: BigInteger) =
        let g = BigInteger.GreatestCommonDivisor(n, d)
        let g = if g.IsZero then BigInteger.One else g
        let g = if d.Sign < 0 then -g else g
        { N = n / g; D = d / g }

    let zero = { N = BigInteger.Zero; D = BigInteger.One }
    let add a b = make (a.N * b.D + b.N * a.D) (a.D * b.D)
    let sub a b = make (a.N * b.D - b.N * a.D) (a.D * b.D)
    let mul a b = make (a.N * b.N) (a.D * b.D)
    let div a b = make (a.N * b.D) (a.D * b.N)

    /// x = ±mantissa·2^e exactly (finite x).
    let ofFloat (x: float) : Q =
        if x = 0.0 then zero
        else
            let bits = System.BitConverter.DoubleToInt64Bits x
            let biased = int ((bits >>> 52) &&& 0x7FFL)
            let fraction = bits &&& 0xFFFFFFFFFFFFFL
            let mantissa, e = if biased = 0 then fraction, -1074 else (fraction ||| (1L <<< 52)), biased - 1075
            let m = BigInteger mantissa * (if x < 0.0 then BigInteger.MinusOne else BigInteger.One)
            if e >= 0 then make (m * BigInteger.Pow(BigInteger 2, e)) BigInteger.One
            else make m (BigInteger.Pow(BigInteger 2, -e))

    let private positiveDefinite (a: Q[,]) =
        let n = Array2D.length1 a
        let a = Array2D.copy a
        let mutable ok = true
        let mutable j = 0
        while ok && j < n do
            let p = a.[j, j]
            if p.N.Sign <= 0 then ok <- false
            else
                for i in j + 1 .. n - 1 do
                    let f = div a.[i, j] p
                    for l in j + 1 .. n - 1 do a.[i, l] <- sub a.[i, l] (mul f a.[j, l])
            j <- j + 1
        ok

    let ofInt (k: int) = make (BigInteger k) BigInteger.One
    /// q·2^k exactly.
    let scale2 (q: Q) (k: int) =
        if k >= 0 then make (q.N * BigInteger.Pow(BigInteger 2, k)) q.D else make q.N (q.D * BigInteger.Pow(BigInteger 2, -k))
    /// a ≤ b (denominators are kept positive).
    let le a b = a.N * b.D <= b.N * a.D
    let lt a b = a.N * b.D < b.N * a.D
    let abs (q: Q) = { N = BigInteger.Abs q.N; D = q.D }
    /// u = 2⁻⁵³.
    let u = scale2 (ofInt 1) -53
    /// γ_k = k·u/(1 − k·u) from its definition.
    let gamma (k: int) = let ku = mul (ofInt k) u in div ku (sub (ofInt 1) ku)
    /// γ'_k = γ_k/(1 − γ_k) (Demmel's Cholesky constant).
    let gammaPrime (k: int) = let g = gamma k in div g (sub (ofInt 1) g)
    /// a·(1 + r) for a float r, exactly.
    let relax (a: Q) (r: float) = mul a (add (ofInt 1) (ofFloat r))
    /// A float near q (for messages).
    let approx (q: Q) = if q.N.IsZero then 0.0 else System.Math.Exp(BigInteger.Log(BigInteger.Abs q.N) - BigInteger.Log q.D) * float q.N.Sign

    /// The exact Φ̃Φ̃ᵀ of the float64 matrix Φ (CPU or not), with the bias column of ones when asked.
    let gram (phi: torch.Tensor) (withBias: bool) : Q[,] =
        use c = phi.contiguous().cpu()
        let n, m = int phi.shape.[0], int phi.shape.[1]
        let x = c.data<float>().ToArray() |> Array.map ofFloat
        let bias = if withBias then ofInt 1 else zero
        Array2D.init n n (fun i j -> Seq.fold (fun acc k -> add acc (mul x.[i * m + k] x.[j * m + k])) bias (seq { 0 .. m - 1 }))

    /// The float64 matrix itself as exact rationals (e.g. a computed Gram).
    let ofMatrix (a: torch.Tensor) : Q[,] =
        use c = a.contiguous().cpu()
        let n, m = int a.shape.[0], int a.shape.[1]
        let x = c.data<float>().ToArray()
        Array2D.init n m (fun i j -> ofFloat x.[i * m + j])

    /// A − b·I ≻ 0 exactly.
    let shiftedPositiveDefinite (a: Q[,]) (b: Q) =
        positiveDefinite (Array2D.mapi (fun i j v -> if i = j then sub v b else v) a)

    /// b·I − ΦΦᵀ ≻ 0 exactly, i.e. λ_max(ΦΦᵀ) < b, for the float64 matrix Φ.
    let boundsLambdaMax (phi: torch.Tensor) (b: Q) =
        positiveDefinite (Array2D.mapi (fun i j v -> sub (if i = j then b else zero) v) (gram phi false))

    /// b·I − Φ̃Φ̃ᵀ ≻ 0 exactly (bias column included when asked).
    let boundsLambdaMaxTilde (phi: torch.Tensor) (withBias: bool) (b: Q) =
        positiveDefinite (Array2D.mapi (fun i j v -> sub (if i = j then b else zero) v) (gram phi withBias))

    /// Φ̃Φ̃ᵀ − b·I ≻ 0 exactly, i.e. λ_min(Φ̃Φ̃ᵀ) > b (σ_min(Φ̃) > √b for b ≥ 0), for the float64
    /// matrix Φ with the bias column of ones when asked: all pivots of exact elimination positive.
    let boundsLambdaMinBelow (phi: torch.Tensor) (withBias: bool) (b: Q) = shiftedPositiveDefinite (gram phi withBias) b

/// √ of the certificate's bound on Σ‖φ̃_i‖²: the Frobenius bound, the σ_max bound before the Cholesky trial
/// (terms are of 2^(−e)·Φ̃, e = ScaleExponent; the bound is in Φ̃'s units).
let private frobeniusBound (c: Certificate) = Certify.frobeniusUpper c.Terms

/// Soundness and usefulness of SigmaMaxUpper on one matrix, whatever the verdict (the bound is
/// computed whenever the Gram estimate is): ≥ MathNet σ_max up to the SVD's slack, never above
/// the Frobenius bound, and ≤ 1.05·σ_max (from a trial, or from Frobenius when the trials cannot
/// beat it, e.g. rank 1).
let private expectSigmaMaxBound (what: string) (withBias: bool) (phi: torch.Tensor) =
    let c = certify withBias phi
    use tilde = if withBias then HeuristicRank.withBiasColumn phi else phi.clone()
    let sigmaMax = mathNetSigmaMax tilde
    let info = sprintf "%s: bound %.17g, SVD σ_max %.17g, Frobenius %.17g, trial %g after %d attempt(s), verdict %O"
                       what c.SigmaMaxUpper sigmaMax (frobeniusBound c) c.Terms.LambdaMaxTrial c.Terms.LambdaMaxTrialAttempts c.Verdict
    Expect.isGreaterThanOrEqual c.SigmaMaxUpper (sigmaMax - svdSlack tilde sigmaMax) ("σ_max bound ≥ SVD σ_max (soundness). " + info)
    Expect.isLessThanOrEqual c.SigmaMaxUpper (frobeniusBound c) ("never worse than Frobenius. " + info)
    Expect.isLessThanOrEqual c.SigmaMaxUpper (1.05 * sigmaMax) ("σ_max bound ≤ 1.05·σ_max (usefulness). " + info)
    Expect.isGreaterThanOrEqual c.SigmaMaxUpper c.SigmaMaxEstimate ("σ_max upper ≥ estimate. " + info)
    c


/// Every term of a certificate recomputed independently in exact rationals from Φ (a CPU float64
/// matrix; the certificate may come from another device) and compared with the recorded term:
/// recorded ≥ the exact value it bounds (≤ for lower bounds), and not absurdly far from it.
/// γ_k and γ'_{n+1} from their definitions; Σ‖φ̃_i‖² exactly; tr(Ã) = 4^(−e)Σ‖φ̃_i‖² − n·c up to
/// the accumulation error; u·max|G_ii − c| from the exact diagonal; the bounds re-subtracted exactly.
/// `accumulationIndex` and `choleskyIndex` are the h the route's order of operations allows (γ_h, γ'_h):
/// m' and n + 1 for any order (`expectTermsExact`), smaller for the tiled engine's blocked order.
let expectTermsExactWith (accumulationIndex: int) (choleskyIndex: int) (what: string) (withBias: bool) (phi: torch.Tensor) (c: Certificate) =
    let t = c.Terms
    let n = int phi.shape.[0]
    let columns = int phi.shape.[1] + (if withBias then 1 else 0)
    Expect.equal t.AccumulationGammaIndex accumulationIndex (sprintf "%s: AccumulationGammaIndex" what)
    if t.Shift > 0.0 || t.LambdaMaxTrial > 0.0 then
        Expect.equal t.CholeskyGammaIndex choleskyIndex (sprintf "%s: CholeskyGammaIndex" what)
    let e = t.ScaleExponent
    let q = Exact.ofFloat
    let info = sprintf "%s: verdict %O, e = %d, shift %.17g, terms %A" what c.Verdict e t.Shift t
    let expectAtLeast (recorded: float) (exact: Exact.Q) (slack: float) (name: string) =
        Expect.isTrue (Exact.le exact (q recorded)) (sprintf "%s recorded %.17g ≥ its exact value. %s" name recorded info)
        // tight: relative slack, plus an absolute one at the underflow threshold for an exact value of 0 (an all-zero Φ:
        // Σ‖φ̃_i‖² = 0 is recorded as 2^−1074 by the upward rounding, E as 4·2^−1022 by the scaling's error term; found
        // at 500× the CI cases, seed −1677600969)
        let ceiling = Exact.add (Exact.relax exact slack) (q (16.0 * 2.2250738585072014e-308))
        Expect.isTrue (Exact.le (q recorded) ceiling) (sprintf "%s recorded %.17g ≤ exact %.17g·(1 + %g) + 16·2^−1022. %s" name recorded (Exact.approx exact) slack info)
    let g = Exact.gram phi withBias
    let diag = Array.init n (fun i -> Exact.scale2 g.[i, i] (-2 * e))
    let trace = Array.fold Exact.add Exact.zero diag
    let gammaM = Exact.gamma accumulationIndex
    // Σ‖φ̃_i‖² is bounded through fl(‖φ̃_i‖²) (relative error γ_{m'}) and a sum of n terms (γ_{n−1}).
    let normSlack = (4.0 * float (columns + n) + 32.0) * FloatingPoint.unitRoundoff64
    expectAtLeast t.AccumulationGamma gammaM 1e-12 "AccumulationGamma = γ_{m'}"
    expectAtLeast t.SquaredNormSumUpper trace normSlack "SquaredNormSumUpper ≥ 4^(−e)·Σ‖φ̃_i‖²"
    expectAtLeast t.AccumulationError (Exact.mul gammaM trace) normSlack "AccumulationError ≥ γ_{m'}·Σ‖φ̃_i‖²"
    if c.Verdict <> Verdict.Refuted then
        Expect.isTrue (t.ShiftAttempts >= 1 || t.Shift = 0.0) ("attempts counted. " + info)
    if t.Shift > 0.0 then
        let shift = q t.Shift
        expectAtLeast t.CholeskyGamma (Exact.gammaPrime choleskyIndex) 1e-12 "CholeskyGamma = γ'_h"
        // Ã's diagonal is fl(fl(G_ii) − c); fl(G_ii) is within γ_{m'}·G_ii of the exact G_ii.
        let shiftedTrace = Exact.sub trace (Exact.mul (Exact.ofInt n) shift)
        let traceSlack = Exact.mul (Exact.ofFloat (2.0 * FloatingPoint.gamma FloatingPoint.unitRoundoff64 (columns + n + 2))) trace
        Expect.isTrue (Exact.le (Exact.sub shiftedTrace traceSlack) (q t.ShiftedTraceUpper)
                       && Exact.le (q t.ShiftedTraceUpper) (Exact.add shiftedTrace traceSlack))
            (sprintf "ShiftedTraceUpper %.17g = tr(4^(−e)G − c·I) up to the accumulation error. %s" t.ShiftedTraceUpper info)
        let maxDiag = diag |> Array.map (fun d -> Exact.abs (Exact.sub d shift)) |> Array.reduce (fun a b -> if Exact.le a b then b else a)
        let roundingExact = Exact.mul Exact.u maxDiag
        Expect.isTrue (Exact.le (Exact.relax roundingExact (-normSlack)) (q t.ShiftRoundingError)
                       && Exact.le (q t.ShiftRoundingError) (Exact.relax roundingExact normSlack))
            (sprintf "ShiftRoundingError %.17g = u·max|G_ii − c| up to rounding. %s" t.ShiftRoundingError info)
        expectAtLeast t.CholeskyBackwardError (Exact.mul (q t.CholeskyGamma) (q t.ShiftedTraceUpper)) 1e-12 "CholeskyBackwardError ≥ γ'·tr(Ã)"
        let computed = Exact.sub (Exact.sub shift (q t.ShiftRoundingError)) (q t.CholeskyBackwardError)
        // "Rounded down": at most a few ulps of the largest operand below the exact value. Relative to the shift alone
        // was too tight when the shift is far below the error terms (found twice by full-range seeds: rf verify at 10× CI,
        // seed −1214111338, shift 3e−20 against 1e−15; the CI suite, seed 163083038, shift 7e−21 against 4e−16).
        let slackOf (operands: float list) = Exact.mul (Exact.ofFloat 1e-12) (Exact.ofFloat (operands |> List.map abs |> List.max))
        let slackAbs = slackOf [ t.Shift; t.ShiftRoundingError; t.CholeskyBackwardError ]
        Expect.isTrue (Exact.le (q t.LambdaMinComputedGramLower) computed && Exact.le (Exact.sub computed slackAbs) (q t.LambdaMinComputedGramLower))
            (sprintf "LambdaMinComputedGramLower %.17g = c − max|D| − γ'tr(Ã), rounded down. %s" t.LambdaMinComputedGramLower info)
        let lower = Exact.sub (q t.LambdaMinComputedGramLower) (q t.AccumulationError)
        let slackAbs = slackOf [ t.LambdaMinComputedGramLower; t.AccumulationError ]
        Expect.isTrue (Exact.le (q t.LambdaMinLower) lower && Exact.le (Exact.sub lower slackAbs) (q t.LambdaMinLower))
            (sprintf "LambdaMinLower %.17g = that − E, rounded down. %s" t.LambdaMinLower info)
    if c.Verdict = Verdict.Certified && c.Route = CertificateRoute.Gram then
        Expect.isTrue (t.Shift > 0.0 && t.LambdaMinLower > 0.0) ("Certified needs a shift and a positive bound. " + info)
        let s = q c.SigmaMinLower
        let lam = Exact.scale2 (q t.LambdaMinLower) (2 * e)
        Expect.isTrue (Exact.le (Exact.mul s s) lam) (sprintf "SigmaMinLower² %.17g² ≤ 4^e·LambdaMinLower exactly. %s" c.SigmaMinLower info)
        let sqrtLam = System.Math.ScaleB(sqrt t.LambdaMinLower, e)
        Expect.isGreaterThanOrEqual c.SigmaMinLower (sqrtLam * (1.0 - 1e-12)) ("SigmaMinLower ≈ 2^e·√LambdaMinLower. " + info)
    elif c.Verdict <> Verdict.Certified then Expect.equal c.SigmaMinLower 0.0 ("no σ_min bound unless Certified. " + info)

/// CholeskyGamma recorded ≥ the exact γ'_h and within 10⁻¹² of it.
let expectAtLeast' (exact: Exact.Q) (recorded: float) (what: string) =
    Expect.isTrue (Exact.le exact (Exact.ofFloat recorded) && Exact.le (Exact.ofFloat recorded) (Exact.relax exact 1e-12))
        (sprintf "CholeskyGamma %.17g = γ'_h rounded up. %s" recorded what)

/// `expectTermsExactWith` for a route whose inner products may be summed in any order: γ_{m'} and γ'_{n+1}.
let expectTermsExact (what: string) (withBias: bool) (phi: torch.Tensor) (c: Certificate) =
    expectTermsExactWith (int phi.shape.[1] + (if withBias then 1 else 0)) (int phi.shape.[0] + 1) what withBias phi c

/// Soundness of one certificate decided in exact rationals on Φ̃ itself: a Certified σ_min bound s
/// satisfies Φ̃Φ̃ᵀ − s²I ≻ 0, the σ_max bound S satisfies S²I − Φ̃Φ̃ᵀ ≻ 0; never Refuted at full
/// rank, never Certified below it (rank decided exactly: Φ̃Φ̃ᵀ ≻ 0).
let expectSoundExact (what: string) (withBias: bool) (phi: torch.Tensor) (c: Certificate) =
    let fullRank = Exact.boundsLambdaMinBelow phi withBias Exact.zero
    let info = sprintf "%s: verdict %O (%s), σ_min ≥ %.17g, σ_max ≤ %.17g, exact full rank %b" what c.Verdict c.Reason c.SigmaMinLower c.SigmaMaxUpper fullRank
    if c.IsCertified then
        Expect.isTrue fullRank ("Certified only at full rank. " + info)
        let s = Exact.ofFloat c.SigmaMinLower
        Expect.isTrue (Exact.boundsLambdaMinBelow phi withBias (Exact.mul s s)) ("Φ̃Φ̃ᵀ − s²I ≻ 0 exactly. " + info)
    if c.Verdict = Verdict.Refuted then Expect.isFalse fullRank ("Refuted only below full rank. " + info)
    let b = Exact.ofFloat c.SigmaMaxUpper
    Expect.isTrue (Exact.boundsLambdaMaxTilde phi withBias (Exact.mul b b)) ("SigmaMaxUpper²·I − Φ̃Φ̃ᵀ ≻ 0 exactly. " + info)
    let f = Exact.ofFloat (Certify.frobeniusUpper c.Terms)
    let g = Exact.gram phi withBias
    let trace = Seq.fold (fun acc i -> Exact.add acc g.[i, i]) Exact.zero (seq { 0 .. Array2D.length1 g - 1 })
    Expect.isTrue (Exact.le trace (Exact.mul f f)) ("frobeniusUpper² ≥ ‖Φ̃‖_F² exactly (in Φ̃'s units). " + info)

/// Small random matrices for the exact tests (n ≤ 8): Gaussian, ReLU-like, known rank, nearly singular.
let smallCase (seed: int) =
    let rng = System.Random seed
    let n = rng.Next(2, 9)
    let m = rng.Next(n, 13)
    let withBias = rng.Next 2 = 0
    let phi =
        match abs seed % 4 with
        | 0 -> gaussian seed n m
        | 1 -> reluLike seed n m
        | 2 -> ofRank seed n m (rng.Next(1, n + 1))
        | _ ->
            use a = gaussian seed n m
            use w = gaussian (seed + 1) n 1
            use wn = w.div(w.norm())
            use p = wn.mm(wn.t())
            a.sub(p.mm(a).mul(scalar (1.0 - 10.0 ** -(float (rng.Next(2, 9))))))
    n, m, withBias, phi

/// Exponents k with 2^k·Φ inside the certificate's range: non-zero |entries| ≥ the underflow guard
/// (2^k·min|φ_ij| ≥ 1e−150) and a finite Gram (2^2k·max‖φ̃_i‖² ≤ 1e300).
let private exponentRange (phi: torch.Tensor) =
    use a = phi.abs()
    use nonzero = a.masked_select(a.gt(scalar 0.0))
    let smallest = nonzero.min().item<float> ()
    use rows = a.pow(scalar 2.0).sum(1L)
    let largest = rows.max().item<float> ()
    let lo = int (ceil (System.Math.Log2(FloatingPoint.underflowGuard / smallest)))
    let hi = int (floor (0.5 * System.Math.Log2(1e300 / largest)))
    lo, hi

/// One case of the exact-rational term check: a small random Φ from the seed, certified, every term recomputed.
let private termsExactCase (seed: int) =
    let n, m, withBias, phi = smallCase seed
    use phi = phi
    let c = certify withBias phi
    let what = sprintf "n=%d m=%d bias=%b" n m withBias
    expectTermsExact what withBias phi c
    expectSoundExact what withBias phi c

[<Tests>]
let tests =
    testList "MathCore.Certify" [
        test "refuteByShape: m' < n is Refuted with the Frobenius bound of Σ(‖φ_i‖² + 1); non-finite squares and m' ≥ n are refused" {
            let subject bias = ExpressivitySubject.OfMatrix("sha256:x", 5, 2, bias)
            let squares = [| 1.0; 4.0; 0.0; 2.5; 9.0 |]
            let c = Certify.refuteByShape (subject true) "float64" torch.CPU squares (System.Diagnostics.Stopwatch.StartNew())
            Expect.equal c.Verdict Verdict.Refuted "refuted"
            Expect.stringContains c.Reason "columns = 3 < n = 5 (the condition needs m + 1 ≥ n)" "why, with the bias column"
            Expect.stringContains c.Precision "refuted by shape; no Gram formed" "no Gram"
            Expect.equal c.SigmaMinLower 0.0 "no σ_min"
            Expect.isGreaterThanOrEqual c.Terms.SquaredNormSumUpper 21.5 "Σ(‖φ_i‖² + 1) = 16.5 + 5, bounded above"
            Expect.isLessThan c.Terms.SquaredNormSumUpper (21.5 * (1.0 + 1e-12)) "tightly"
            Expect.isGreaterThanOrEqual c.SigmaMaxUpper (sqrt 21.5) "σ_max ≤ ‖Φ̃‖_F"
            let off = Certify.refuteByShape (subject false) "float32" torch.CPU squares (System.Diagnostics.Stopwatch.StartNew())
            Expect.stringContains off.Reason "columns = 2 < n = 5 (the condition needs m ≥ n)" "without the bias column"
            Expect.isLessThan off.Terms.SquaredNormSumUpper 21.5 "no +1 per row"
            Expect.throwsT<System.ArgumentException> (fun () -> Certify.refuteByShape (subject true) "float64" torch.CPU [| 1.0; nan; 0.0; 1.0; 1.0 |] (System.Diagnostics.Stopwatch.StartNew()) |> ignore) "NaN square"
            let wide = ExpressivitySubject.OfMatrix("sha256:x", 3, 2, true)
            Expect.throwsT<System.ArgumentException> (fun () -> Certify.refuteByShape wide "float64" torch.CPU [| 1.0; 1.0; 1.0 |] (System.Diagnostics.Stopwatch.StartNew()) |> ignore) "m' = 3 ≥ n = 3: nothing to refute"
        }
        test "underflowing squares (float64 entries ≈ 2^−537, no underflow guard on these paths): the σ_max bound of a refutation by shape and of the orthogonal route still bounds the true σ_max (rank one: ‖Φ‖_F)" {
            let x = sqrt 1.49 * System.Math.ScaleB(1.0, -537)
            // tall, n = 1000 × m = 3, every entry x: refuted by shape; σ_max = ‖Φ‖_F = √3000·x
            use tall = torch.ones([| 1000L; 3L |], dtype = torch.float64).mul(torch.tensor(x, dtype = torch.float64))
            let t = Certify.certifyMatrix Certify.defaults (ExpressivitySubject.OfMatrix("sha256:tiny", 1000, 3, false)) tall
            Expect.equal t.Verdict Verdict.Refuted "refuted by shape"
            Expect.isGreaterThanOrEqual t.SigmaMaxUpper (sqrt 3000.0 * x) (sprintf "tall: σ_max bound %g ≥ ‖Φ‖_F = %g" t.SigmaMaxUpper (sqrt 3000.0 * x))
            // 10 × 100, every entry x, the orthogonal route asked for: refuted by its duplicate rows; σ_max = √1000·x
            use wide = torch.ones([| 10L; 100L |], dtype = torch.float64).mul(torch.tensor(x, dtype = torch.float64))
            let o = Certify.certifyMatrix { Certify.defaults with Route = Certify.RouteChoice.Orthogonal } (ExpressivitySubject.OfMatrix("sha256:tiny", 10, 100, false)) wide
            Expect.equal o.Verdict Verdict.Refuted ("refuted: " + o.Reason)
            Expect.isGreaterThanOrEqual o.SigmaMaxUpper (sqrt 1000.0 * x) (sprintf "orthogonal route: σ_max bound %g ≥ ‖Φ‖_F = %g" o.SigmaMaxUpper (sqrt 1000.0 * x))
        }
        testPropertyWithConfig config "known rank k: heuristic routes give k; Certified iff k = n" <| fun (seed: int) ->
            let n, m, k = shape seed
            use phi = ofRank seed n m k
            let c = certify false phi
            let mathNet = HeuristicRank.rankMathNet (HeuristicRank.toMathNet phi)
            let torch64 = HeuristicRank.rankTorch torch.float64 phi
            let torch32 = HeuristicRank.rankTorch torch.float32 phi
            Expect.equal mathNet k "MathNet float64 rank"
            Expect.equal torch64 k "torch float64 rank"
            Expect.equal torch32 k "torch float32 rank (σ in [1, 10]: well conditioned)"
            if k = n then Expect.equal c.Verdict Verdict.Certified (sprintf "full rank must certify: %s" c.Reason)
            else Expect.notEqual c.Verdict Verdict.Certified (sprintf "rank %d < n = %d must never certify" k n)

        testPropertyWithConfig config "soundness: certified σ_min bound ≤ MathNet SVD σ_min; usefulness: ≥ σ_min/2" <| fun (seed: int) ->
            let n, m, _ = shape seed
            use phi = ofRank seed n m n
            let c = certify false phi
            let sigmaMin = mathNetSigmaMin phi
            Expect.equal c.Verdict Verdict.Certified c.Reason
            Expect.isLessThanOrEqual c.SigmaMinLower (sigmaMin + svdSlack phi c.SigmaMaxUpper) "bound ≤ σ_min (soundness)"
            Expect.isGreaterThanOrEqual c.SigmaMinLower (0.5 * sigmaMin) "bound ≥ σ_min / 2 (usefulness)"
            Expect.isGreaterThanOrEqual c.SigmaMaxUpper c.SigmaMaxEstimate "σ_max upper ≥ estimate"

        testPropertyWithConfig config "soundness on nearly singular Gaussian products (error terms matter)" <| fun (seed: int) ->
            let n, _, _ = shape seed
            let m = n + abs seed % 3
            use a = gaussian seed n m
            // Scale one direction down to σ ≈ 1e-7·σ_max: close to where rounding decides.
            use w = gaussian (seed + 1) n 1
            use wn = w.div(w.norm())
            use p = wn.mm(wn.t())
            use squeezed = a.sub(p.mm(a).mul(scalar (1.0 - 1e-7)))
            let c = certify false squeezed
            let sigmaMin = mathNetSigmaMin squeezed
            if c.IsCertified then
                Expect.isLessThanOrEqual c.SigmaMinLower (sigmaMin + svdSlack squeezed c.SigmaMaxUpper) "sound near singularity"

        testPropertyWithConfig config "σ_max bound: sound and within 5 % on known rank k ≤ n (rank-deficient included)" <| fun (seed: int) ->
            let n, m, k = shape seed
            use phi = ofRank seed n m k
            expectSigmaMaxBound (sprintf "n=%d m=%d k=%d" n m k) (seed % 2 = 0) phi |> ignore

        testPropertyWithConfig config "σ_max bound: sound and within 5 % on nearly singular Gaussian products" <| fun (seed: int) ->
            let n, _, _ = shape seed
            let m = n + abs seed % 3
            use a = gaussian seed n m
            use w = gaussian (seed + 1) n 1
            use wn = w.div(w.norm())
            use p = wn.mm(wn.t())
            use squeezed = a.sub(p.mm(a).mul(scalar (1.0 - 1e-7)))
            expectSigmaMaxBound (sprintf "n=%d m=%d" n m) false squeezed |> ignore

        testPropertyWithConfig config "σ_max bound: sound and within 5 % with a dominant mean direction (ReLU-like, entries ≥ 0)" <| fun (seed: int) ->
            let n, m, _ = shape seed
            use phi = reluLike seed n m
            expectSigmaMaxBound (sprintf "n=%d m=%d" n m) true phi |> ignore

        testPropertyWithConfig config "σ_max bound proved in exact rational arithmetic, trials walked across λ_max in ulp steps (error terms matter)" <| fun (seed: int) ->
            let rng = System.Random seed
            let n = rng.Next(2, 9)
            let m = rng.Next(n, 13)
            use phi =
                match abs seed % 3 with
                | 0 -> gaussian seed n m
                | 1 -> reluLike seed n m
                | _ -> ofRank seed n m (rng.Next(2, n + 1))
            use onDevice = TestDevice.onDevice phi
            use gram = Gram.ofMatrix Certify.defaults.BlockColumns false onDevice
            let lambda = (use e = torch.linalg.eigvalsh(gram.Gram) in e.max().item<float> ())
            // t = λ·(1 + k·2⁻⁵²), k = −64 … 64: the first success sits at the boundary of Cholesky's
            // success, where t alone may be below λ_max(G) and only the error terms make it a bound.
            let walk = [ for k in -64 .. 64 -> 1.0 + float k * System.Math.Pow(2.0, -52.0) ]
            let terms = Certify.lambdaMaxTerms walk gram lambda CertificateTerms.Empty
            let info = sprintf "n=%d m=%d: trial %.17g (λ̂ %.17g) after %d attempt(s), bound %.17g" n m terms.LambdaMaxTrial lambda terms.LambdaMaxTrialAttempts terms.LambdaMaxUpper
            Expect.isGreaterThan terms.LambdaMaxTrial 0.0 ("the walk crosses the boundary. " + info)
            Expect.isTrue (Exact.boundsLambdaMax phi (Exact.ofFloat terms.LambdaMaxUpper)) ("λ_max(G) < LambdaMaxUpper exactly. " + info)
            let c = certify false phi
            let s = Exact.ofFloat c.SigmaMaxUpper
            Expect.isTrue (Exact.boundsLambdaMax phi (Exact.mul s s)) (sprintf "σ_max(Φ)² < SigmaMaxUpper² = %.17g² exactly" c.SigmaMaxUpper)

        test "σ_max bound: Frobenius > 3·σ_max, the Cholesky bound within 5 % (Gaussian 64 × 256)" {
            use phi = gaussian 2024 64 256
            let c = expectSigmaMaxBound "Gaussian 64 × 256" false phi
            Expect.isGreaterThan (frobeniusBound c) (3.0 * mathNetSigmaMax phi) "Frobenius is loose here"
        }

        test "σ_max bound: refutations keep the Frobenius bound and record no trial" {
            use phi = ofRank 5 6 9 6
            use dup = phi.clone()
            dup.[3L] <- phi.[1L]
            let c = certify true dup
            Expect.equal c.Verdict Verdict.Refuted c.Reason
            Expect.equal c.SigmaMaxUpper (frobeniusBound c) "Frobenius"
            Expect.equal c.Terms.LambdaMaxTrial 0.0 "no trial"
            Expect.equal c.Terms.LambdaMaxUpper 0.0 "no λ_max bound"
        }

        test "σ_max bound: the recorded terms re-add to LambdaMaxUpper and SigmaMaxUpper" {
            use phi = ofRank 17 12 30 12
            let c = certify false phi
            let t = c.Terms
            let up = FloatingPoint.addUp
            let lam = up (up (up t.LambdaMaxTrial t.LambdaMaxTrialRoundingError) t.LambdaMaxCholeskyBackwardError) t.AccumulationError
            Expect.equal t.LambdaMaxUpper lam "λ_max(G) ≤ t + max|D| + γ' tr(Ã_t) + E"
            Expect.equal t.LambdaMaxCholeskyBackwardError (FloatingPoint.mulUp t.CholeskyGamma t.LambdaMaxTrialTraceUpper) "γ' tr(Ã_t)"
            Expect.equal c.SigmaMaxUpper (FloatingPoint.scaleUp (FloatingPoint.up (sqrt t.LambdaMaxUpper)) t.ScaleExponent) "σ_max ≤ 2^e·√ of it (tighter than Frobenius here)"
            Expect.isLessThanOrEqual t.LambdaMaxTrialAttempts (List.length Certify.defaults.LambdaMaxFactors) "attempts"
        }

        test "σ_max bound: no factor succeeds (all below 1) → Frobenius, attempts counted" {
            use phi = ofRank 19 10 20 10
            let opts = { Certify.defaults with LambdaMaxFactors = [ 0.5; 0.9 ] }
            let c = certifyWith opts false phi
            Expect.equal c.Terms.LambdaMaxTrial 0.0 "no trial succeeded"
            Expect.equal c.Terms.LambdaMaxTrialAttempts 2 "both tried"
            Expect.equal c.SigmaMaxUpper (frobeniusBound c) "Frobenius"
        }

        testPropertyWithConfig config "rank < n: exact duplicates and m + 1 < n are Refuted" <| fun (seed: int) ->
            let n, m, _ = shape seed
            use phi = ofRank seed n m n
            let i, j = abs seed % n, (abs seed / 7 + 1) % n
            if i <> j then
                use dup = phi.clone()
                dup.[int64 i] <- phi.[int64 j]
                let c = certify true dup
                Expect.equal c.Verdict Verdict.Refuted c.Reason
                Expect.stringContains c.Reason "identical" "names the duplicate"
            if n >= 3 then
                use narrow = phi.narrow(1L, 0L, int64 (n - 2))
                let c2 = certify true narrow
                Expect.equal c2.Verdict Verdict.Refuted c2.Reason
                Expect.stringContains c2.Reason "< n" "names the count"

        test "duplicate rows across and inside the scan's 256-row panels are found, the first in row-major order named (n = 700)" {
            use phi = gaussian 77 700 760
            // alone in a later panel (rows 256 … 511, 512 … 699), across a panel boundary, and two at once (the first named)
            for pairs, first in [ [ (600, 640) ], (600, 640); [ (299, 300) ], (299, 300); [ (255, 256) ], (255, 256)
                                  [ (3, 650); (299, 300) ], (3, 650); [ (511, 699); (10, 20) ], (10, 20) ] do
                use dup = phi.clone()
                for i, j in pairs do dup.[int64 j] <- phi.[int64 i]
                let c = certifyWith { Certify.defaults with Route = Certify.RouteChoice.Gram } false dup
                Expect.equal c.Verdict Verdict.Refuted c.Reason
                Expect.stringContains c.Reason (sprintf "rows %d and %d of Φ̃ are identical" (fst first) (snd first)) "the first pair in row-major order"
        }

        testPropertyWithConfig config "invariances: permuting rows, scaling a row, adding columns keep Certified; so do subsets" <| fun (seed: int) ->
            let n, m, _ = shape seed
            use phi = ofRank seed n m n
            Expect.equal (certify true phi).Verdict Verdict.Certified "base"
            use gen = new torch.Generator(uint64 (abs seed) + 3UL)
            use perm = torch.randperm(int64 n, generator = gen)
            use permuted = phi.index_select(0L, perm)
            Expect.equal (certify true permuted).Verdict Verdict.Certified "row permutation"
            use scaled = phi.clone()
            let r = int64 (abs seed % n)
            scaled.[r] <- phi.[r].mul(scalar (if seed % 2 = 0 then 3.5 else -0.25))
            Expect.equal (certify true scaled).Verdict Verdict.Certified "row scaling"
            use extra = torch.cat([| phi; gaussian (seed + 5) n 3 |], 1L)
            Expect.equal (certify true extra).Verdict Verdict.Certified "appended columns"
            if n > 2 then
                use subset = phi.narrow(0L, 1L, int64 (n - 2))
                Expect.equal (certify true subset).Verdict Verdict.Certified "subset of rows"

        testPropertyWithConfig config "the three routes agree whenever the certificate says Certified" <| fun (seed: int) ->
            let n, m, _ = shape seed
            use phi = gaussian seed n (m + 1)
            let c = certify true phi
            if c.IsCertified then
                use tilde = HeuristicRank.withBiasColumn phi
                Expect.equal (HeuristicRank.rankMathNet (HeuristicRank.toMathNet tilde)) n "MathNet rank = n"
                Expect.equal (HeuristicRank.rankTorch torch.float64 tilde) n "torch rank = n"
                let torchMin = HeuristicRank.torchSingularValues torch.float64 tilde |> Array.min
                Tolerance.expectClose (Tolerance.stable Tolerance.Float64) torchMin (mathNetSigmaMin tilde) "σ_min torch vs MathNet"

        testPropertyWithConfig config "float32 features certify the float32 matrix exactly as float64 input" <| fun (seed: int) ->
            let n, m, _ = shape seed
            use phi64 = ofRank seed n m n
            use phi32 = phi64.``to``(torch.float32)
            use widened = phi32.``to``(torch.float64)
            let c32 = certify false phi32
            let c64 = certify false widened
            Expect.equal c32.Verdict c64.Verdict "same verdict"
            Expect.equal c32.SigmaMinLower c64.SigmaMinLower "same bound (float32 → float64 is exact)"
            Expect.stringContains c32.Precision "float32" "records the feature precision"

        test "certificate JSON round trip keeps every field" {
            use phi = ofRank 11 8 12 8
            let c = certify true phi
            let back = CertificateJson.deserialize (CertificateJson.serialize c)
            Expect.equal back.Verdict c.Verdict "verdict"
            Expect.equal back.Subject c.Subject "subject"
            Expect.equal back.SigmaMinLower c.SigmaMinLower "σ_min bound"
            Expect.equal back.Terms.AccumulationError c.Terms.AccumulationError "error term"
            Expect.equal (CertificateJson.serialize back) (CertificateJson.serialize c) "same JSON"
            Expect.throwsT<System.Text.Json.JsonException> (fun () -> CertificateJson.deserialize "{\"Verdict\": 3" |> ignore) "malformed JSON"
        }

        test "certificate JSON written before the σ_max trial terms still reads (missing terms → 0)" {
            use phi = ofRank 13 8 12 8
            let c = certify true phi
            Expect.isGreaterThan c.Terms.LambdaMaxTrial 0.0 "the new terms are set"
            let node = System.Text.Json.Nodes.JsonNode.Parse(CertificateJson.serialize c)
            let terms = node.["Terms"].AsObject()
            for name in [ "LambdaMaxTrial"; "LambdaMaxTrialRoundingError"; "LambdaMaxTrialTraceUpper"
                          "LambdaMaxCholeskyBackwardError"; "LambdaMaxUpper"; "LambdaMaxTrialAttempts"; "ScaleExponent" ] do
                Expect.isTrue (terms.Remove name) (sprintf "%s was serialised" name)
            let old = CertificateJson.deserialize (node.ToJsonString())
            let expected =
                { c with Terms = { c.Terms with LambdaMaxTrial = 0.0; LambdaMaxTrialRoundingError = 0.0; LambdaMaxTrialTraceUpper = 0.0
                                                LambdaMaxCholeskyBackwardError = 0.0; LambdaMaxUpper = 0.0; LambdaMaxTrialAttempts = 0
                                                ScaleExponent = 0 } }
            Expect.equal (CertificateJson.serialize old) (CertificateJson.serialize expected) "every old field read back, new ones 0"
            Expect.equal old.SigmaMaxUpper c.SigmaMaxUpper "the stored σ_max bound is kept as written"
        }

        test "bad input: mismatched subject, non-2-D features" {
            use phi = ofRank 3 4 6 4
            let wrong = { subject phi false with Features = 7 }
            Expect.throwsT<System.ArgumentException> (fun () -> Certify.certifyMatrix Certify.defaults wrong phi |> ignore) "m mismatch"
            use flat = torch.ones([| 5L |], dtype = torch.float64)
            Expect.throwsT<System.ArgumentException> (fun () -> Certify.certifyMatrix Certify.defaults (subject phi false) flat |> ignore) "1-D"
        }

        testPropertyWithConfig config "every certificate term recomputed in exact rationals (γ's from their definitions, Σ‖φ̃_i‖², tr(Ã), u·max|G_ii − c|, the subtractions)" <| fun (seed: int) ->
            termsExactCase seed

        // Found by a full-range seed (2026-12-02): a shift of 7e−21 under error terms of 4e−16; the product was right,
        // the oracle's tolerance was scaled by c alone.
        test "regression: every certificate term in exact rationals when the error terms dwarf the shift (seed 163083038)" {
            termsExactCase 163083038
        }

        testPropertyWithConfig (Seeds.config 15) "λ_min bound proved in exact rational arithmetic, shifts walked down across λ_min in ulp steps (error terms matter)" <| fun (seed: int) ->
            let rng = System.Random seed
            let n = rng.Next(2, 9)
            let m = rng.Next(n + 2, 15)
            let withBias = rng.Next 2 = 0
            use phi = if seed % 2 = 0 then ofRank seed n m n else gaussian seed n m
            use onDevice = TestDevice.onDevice phi
            use gram = Gram.ofMatrix Certify.defaults.BlockColumns withBias onDevice
            let lambda = (use e = torch.linalg.eigvalsh(gram.Gram) in e.min().item<float> ())
            // c = λ·(1 + k·2⁻⁵²), k = 2048 … −2048, from above: the first success sits at the boundary of
            // Cholesky's success, where c itself may exceed λ_min and only the error terms make a bound.
            let walk = [ for k in 2048 .. -1 .. -2048 -> lambda * (1.0 + float k * System.Math.Pow(2.0, -52.0)) ]
            let terms = Certify.lambdaMinTerms walk gram CertificateTerms.Empty
            let info = sprintf "n=%d m=%d bias=%b: shift %.17g (λ̂ %.17g, k = %.1f) after %d attempt(s), fl-G bound %.17g, bound %.17g"
                               n m withBias terms.Shift lambda ((terms.Shift / lambda - 1.0) * 2.0 ** 52.0) terms.ShiftAttempts terms.LambdaMinComputedGramLower terms.LambdaMinLower
            Expect.isGreaterThan terms.Shift 0.0 ("the walk reaches a success. " + info)
            Expect.isGreaterThan terms.ShiftAttempts 1 ("the walk starts where Cholesky fails (it crosses the boundary). " + info)
            Expect.isLessThan terms.LambdaMinLower terms.Shift ("the bound is below the shift. " + info)
            // On the computed Gram: fl(G) − bound·I ≻ 0 exactly (the shift and Cholesky terms alone) …
            let flGram = Exact.ofMatrix gram.Gram
            Expect.isTrue (Exact.shiftedPositiveDefinite flGram (Exact.ofFloat terms.LambdaMinComputedGramLower)) ("λ_min(fl G) > LambdaMinComputedGramLower exactly. " + info)
            // … and on the exact Φ̃Φ̃ᵀ of the float64 entries (the accumulation term too).
            Expect.isTrue (Exact.boundsLambdaMinBelow phi withBias (Exact.ofFloat terms.LambdaMinLower)) ("λ_min(Φ̃Φ̃ᵀ) > LambdaMinLower exactly. " + info)
            let c = certify withBias phi
            expectSoundExact info withBias phi c

        testPropertyWithConfig config "adversarial options (shift fractions ≥ 1, no inverse iteration, one shift, factors ≤ 1): never Certified above the exact truth" <| fun (seed: int) ->
            let n, m, withBias, phi = smallCase seed
            use phi = phi
            let rng = System.Random(seed + 17)
            let fractions = [| [ 1.5 ]; [ 1.0 ]; [ 1.0 + 1e-12 ]; [ 2.0; 1.01; 1.0 ]; [ 0.999999 ]; [ 4.0; 0.5 ] |]
            let factors = [| [ 1.0 ]; [ 0.9; 0.99; 1.0 ]; [ 1.0 + 1e-15 ]; [ 0.5 ] |]
            let opts =
                { Certify.defaults with
                    ShiftFractions = fractions.[rng.Next fractions.Length]
                    InverseIterations = rng.Next(0, 3)
                    KrylovSteps = rng.Next(1, 4)
                    LambdaMaxFactors = factors.[rng.Next factors.Length] }
            let c = certifyWith opts withBias phi
            let what = sprintf "n=%d m=%d bias=%b, %A" n m withBias opts
            expectSoundExact what withBias phi c
            expectTermsExact what withBias phi c

        testPropertyWithConfig config "dense Gram summed in products of 1 … m + 1 columns and factorised in panels of 0 … n + 1 columns (the blocked orders): every term recomputed exactly with h_G = c + ⌈m/c⌉ − 1 (+1) and h_C = min(n + 1, 2s + ⌈n/s⌉ + 1), sound in exact arithmetic" <| fun (seed: int) ->
            let n, m, withBias, phi = smallCase seed
            use phi = phi
            let rng = System.Random(seed + 31)
            let chunk = rng.Next(1, m + 2)
            let panel = rng.Next(0, n + 2)
            // the panel order always (no switch to LAPACK's: that choice has its own test below)
            let opts = { Certify.defaults with BlockColumns = chunk; CholeskyPanel = panel; Route = Certify.RouteChoice.Gram; AnyOrderTolerance = 0.0 }
            let c = certifyWith opts withBias phi
            let bias = if withBias then 1 else 0
            // from the definition, independently of Gram.accumulationDepth: c' = min(c, m) columns per product
            let perProduct = min chunk m
            let accumulationIndex = min (m + bias) (perProduct + (m + perProduct - 1) / perProduct - 1 + bias)
            // and of TileCholesky.depth: panels of s (whole matrix when 0 or ≥ n), ⌈n/s⌉ of them
            let s = if panel = 0 || panel >= n then n else panel
            let choleskyIndex = min (n + 1) (2 * s + (n + s - 1) / s + 1)
            let what = sprintf "n=%d m=%d chunk=%d panel=%d bias=%b" n m chunk panel withBias
            expectSoundExact what withBias phi c
            expectTermsExactWith accumulationIndex choleskyIndex what withBias phi c

        test "the dense route's factorisation (Certify.choleskyDiagonal) leaves the factor of the panel order bit for bit (TileCholesky.factorInPlace), not LAPACK's whole-matrix potrf, and returns diag(A)" {
            let n = 700
            let rng = System.Random 23
            use m = torch.tensor(Array2D.init n (n + 5) (fun _ _ -> rng.NextDouble() - 0.5), dtype = torch.float64)
            use g = m.mm(m.t()).add(torch.eye(int64 n, dtype = torch.float64))
            use a = g.clone()
            let diagonal = Certify.choleskyDiagonal 256 a
            Expect.equal diagonal (Some (g.diagonal().data<float>().ToArray())) "diag(A), read before the factorisation"
            use reference = g.clone()
            Expect.isTrue (TileCholesky.factorInPlace 256 reference) "panel order"
            use lapack = g.clone()
            Expect.equal (NativeBlas.potrfLower lapack) 0 "LAPACK"
            lapack.tril_() |> ignore
            Expect.isTrue (use same = a.eq(reference).all() in same.item<bool> ()) "the dense route's factor is the panel order's, bit for bit"
            Expect.isFalse (use same = a.eq(lapack).all() in same.item<bool> ()) "and not LAPACK's (the comparison can see the order)"
            use l = torch.linalg.cholesky g
            Expect.isLessThan (a.sub(l).abs().max().item<float> ()) 1e-9 "right"
        }
        test "the dense route's factorisations in panels certify where LAPACK's any-order constant cannot (ill-conditioned Φ, n = 512): h_C = 2s + ⌈n/s⌉ + 1 recorded, Certified, sound against MathNet's σ_min; whole-matrix potrf Inconclusive" {
            // Φ = U·diag(σ)·Vᵀ, n = 512, m = 1024, σ = 1 except σ_min² = 300·u·tr(G). Products of 32 columns: h_G = 63.
            // Panels of 16: h_C = 32 + 32 + 1 = 65, errors ≈ (63 + 65)·u·tr(G) below the shift ¾·λ_min = 225·u·tr(G);
            // LAPACK on the whole matrix: h_C = n + 1 = 513, errors ≈ 576·u·tr(G) above it.
            let n, m = 512, 1024
            use q1 = (use a = gaussian 51 n n in let struct (q, _) = torch.linalg.qr a in q)
            use q2 = (use a = gaussian 52 m n in let struct (q, _) = torch.linalg.qr a in q)
            let sMin = sqrt (300.0 * FloatingPoint.unitRoundoff64 * float (n - 1))
            use sv = torch.tensor(Array.init n (fun i -> if i = n - 1 then sMin else 1.0), dtype = torch.float64)
            use phi = q1.mul(sv.unsqueeze(0L)).mm(q2.t())
            let gramOnly = { Certify.defaults with Route = Certify.RouteChoice.Gram; BlockColumns = 32 }
            let paneled = certifyWith { gramOnly with CholeskyPanel = 16 } false phi
            let whole = certifyWith { gramOnly with CholeskyPanel = 0 } false phi
            let info = sprintf "panels: %O (%s), indices %d/%d; whole: %O (%s), indices %d/%d" paneled.Verdict paneled.Reason
                               paneled.Terms.AccumulationGammaIndex paneled.Terms.CholeskyGammaIndex whole.Verdict whole.Reason
                               whole.Terms.AccumulationGammaIndex whole.Terms.CholeskyGammaIndex
            Expect.equal (paneled.Terms.AccumulationGammaIndex, paneled.Terms.CholeskyGammaIndex) (63, 65) ("indices in panels. " + info)
            Expect.equal whole.Terms.CholeskyGammaIndex (n + 1) ("LAPACK: n + 1. " + info)
            Expect.equal whole.Verdict Verdict.Inconclusive ("the any-order Cholesky constant is too large. " + info)
            Expect.equal paneled.Verdict Verdict.Certified ("panels certify. " + info)
            let sigma = mathNetSigmaMin phi
            Expect.isLessThanOrEqual paneled.SigmaMinLower (sigma * (1.0 + 1e-6)) (sprintf "sound: bound %.6g ≤ σ_min %.6g. %s" paneled.SigmaMinLower sigma info)
            Expect.isGreaterThan paneled.SigmaMinLower (0.5 * sigma) (sprintf "useful: bound %.6g > σ_min/2 = %.6g. %s" paneled.SigmaMinLower (sigma / 2.0) info)
        }

        test "the dense route factorises in LAPACK's any order exactly when OpenBLAS runs it and γ'_{n+1}·Σ‖φ̃_i‖² ≤ δ·c_min (c_min = λ̂_min/256, its smallest shift), and then records h_C = n + 1; else in its panels with their h_C; every term recomputed exactly (docs/theory.md §3 \"Which order factorises\")" {
            // n = 20 … 40 in panels of 4: h_C = 8 + ⌈n/4⌉ + 1 < n + 1, so both orders are there to choose; δ = 10⁻ᵏ, k = 0 … 16,
            // and Φ Gaussian or with one direction shrunk by 10⁻ʲ (small λ_min: the panel order is needed), so both choices
            // occur on OpenBLAS; on libtorch (MKL's slow dpotrf) the panels always. (Without OpenBLAS only the libtorch half
            // runs: NativeBlasTests fails under CI when OpenBLAS is missing.)
            for backend in availableBackends () do
                let mutable anyOrder, panels = 0, 0
                for seed in 1 .. 40 do
                    let rng = System.Random(seed * 7919)
                    let n = rng.Next(20, 41)
                    let m = rng.Next(n, 2 * n + 1)
                    let withBias = rng.Next 2 = 0
                    let delta = 10.0 ** -(float (rng.Next(0, 17)))
                    use a = gaussian seed n m
                    use phi =
                        if seed % 2 = 0 then a.clone()
                        else
                            use w = gaussian (seed + 1) n 1
                            use wn = w.div(w.norm())
                            use p = wn.mm(wn.t())
                            a.sub(p.mm(a).mul(scalar (1.0 - 10.0 ** -(float (rng.Next(1, 7))))))
                    let opts = { Certify.defaults with CholeskyPanel = 4; AnyOrderTolerance = delta; Route = Certify.RouteChoice.Gram }
                    let c = NativeBlas.useBackend backend (fun () -> certifyWith opts withBias phi)
                    let t = c.Terms
                    let what = sprintf "%O, seed %d: n=%d m=%d bias=%b δ=%g, %O (%s), h_C %d" backend seed n m withBias delta c.Verdict c.Reason t.CholeskyGammaIndex
                    if t.LambdaMinEstimate > 0.0 && (t.Shift > 0.0 || t.LambdaMaxTrial > 0.0) then
                        // the rule from its definition, in exact rationals: γ'_{n+1}·S ≤ δ·(λ̂_min/256), 1/256 the least shift fraction
                        Expect.equal (List.min Certify.defaults.ShiftFractions) (1.0 / 256.0) "the shifts tried go down to λ̂_min/256"
                        let lhs = Exact.mul (Exact.gammaPrime (n + 1)) (Exact.ofFloat t.SquaredNormSumUpper)
                        let rhs = Exact.mul (Exact.ofFloat delta) (Exact.mul (Exact.ofFloat (1.0 / 256.0)) (Exact.ofFloat t.LambdaMinEstimate))
                        let ratio = Exact.approx lhs / Exact.approx rhs
                        if abs (ratio - 1.0) > 1e-9 then   // off the boundary, where float and exact comparisons could differ
                            let chooseAny = backend = NativeBlas.Backend.OpenBlas && Exact.le lhs rhs
                            let panelIndex = min (n + 1) (2 * 4 + (n + 3) / 4 + 1)
                            let expected = if chooseAny then n + 1 else panelIndex
                            if chooseAny then anyOrder <- anyOrder + 1 else panels <- panels + 1
                            expectTermsExactWith (m + (if withBias then 1 else 0)) expected what withBias phi c
                            // the σ_max side's term too: γ'_h·tr(Ã_t) with the same h
                            if t.LambdaMaxTrial > 0.0 then
                                Expect.isTrue (Exact.le (Exact.mul (Exact.gammaPrime expected) (Exact.ofFloat t.LambdaMaxTrialTraceUpper)) (Exact.ofFloat t.LambdaMaxCholeskyBackwardError))
                                    ("σ_max trial's Cholesky term ≥ γ'_h·tr(Ã_t). " + what)
                            if c.IsCertified then
                                use ones = torch.ones(int64 n, 1L, dtype = torch.float64)
                                use tilde = if withBias then torch.cat([| phi; ones |], 1L) else phi.clone()
                                let sigma = mathNetSigmaMin tilde
                                Expect.isLessThanOrEqual c.SigmaMinLower (sigma * (1.0 + 1e-9)) ("sound against MathNet. " + what)
                let counts = sprintf "%O: LAPACK's order chosen in %d cases, the panels in %d" backend anyOrder panels
                if backend = NativeBlas.Backend.OpenBlas then Expect.isGreaterThanOrEqual anyOrder 5 counts
                else Expect.equal anyOrder 0 counts
                Expect.isGreaterThanOrEqual panels 5 counts
        }

        test "the dense operator's factorisations run in the order their constant states: its shifted test and σ_max trial leave the panel order's factor bit for bit, its AnyOrderCholesky LAPACK's (Certify.denseOperator)" {
            let n, panel = 700, 64
            let rng = System.Random 29
            use m = torch.tensor(Array2D.init n (n + 5) (fun _ _ -> rng.NextDouble() - 0.5), dtype = torch.float64)
            use g = m.mm(m.t()).add(torch.eye(int64 n, dtype = torch.float64))
            let gram : Gram.GramMatrix =
                { Gram = g; Rows = n; Columns = n + 5; SquaredNormSumUpper = g.trace().item<float> () * 2.0
                  AccumulationDepth = n + 5; ZeroRows = [||]; FeaturePrecision = "float64"; ScalingError = 0.0 }
            use work = torch.empty_like(g)
            let opts = { Certify.defaults with CholeskyPanel = panel }
            NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () ->
                let op = Certify.denseOperator opts "float64" 0 work gram
                Expect.equal op.CholeskyDepth (TileCholesky.depth n n panel) "the panels' h"
                Expect.isSome op.AnyOrderCholesky "LAPACK's order offered on OpenBLAS"
                let c, t = 0.5, 4.0 * g.diagonal().max().item<float> () * float n
                let lowerOf (x: torch.Tensor) = x.tril()
                let expectFactor (what: string) (reference: torch.Tensor) (other: torch.Tensor) =
                    use got = lowerOf work
                    use ref' = lowerOf reference
                    use alt = lowerOf other
                    Expect.isTrue (use same = got.eq(ref').all() in same.item<bool> ()) (what + ": the stated order's factor, bit for bit")
                    Expect.isFalse (use same = got.eq(alt).all() in same.item<bool> ()) (what + ": and not the other order's (the comparison can see the order)")
                use shifted = g.clone()
                (use d = shifted.diagonal() in d.sub_(scalar c)) |> ignore
                use trial = g.neg()
                (use d = trial.diagonal() in d.add_(scalar t)) |> ignore
                let factors (a: torch.Tensor) =
                    let inPanels = a.clone()
                    Expect.isTrue (TileCholesky.factorInPlace panel inPanels) "panels"
                    let lapack = a.clone()
                    Expect.equal (NativeBlas.potrfLower lapack) 0 "LAPACK"
                    inPanels, lapack
                let shiftedPanels, shiftedLapack = factors shifted
                let trialPanels, trialLapack = factors trial
                use _a = shiftedPanels
                use _b = shiftedLapack
                use _c = trialPanels
                use _d = trialLapack
                Expect.isSome (op.ShiftedCholesky c) "shifted test in panels"
                expectFactor "shifted test (panels)" shiftedPanels shiftedLapack
                Expect.isSome (op.AnyOrderCholesky.Value.Shifted c) "shifted test in LAPACK's order"
                expectFactor "shifted test (any order)" shiftedLapack shiftedPanels
                Expect.isSome (op.TrialCholesky t) "σ_max trial in panels"
                expectFactor "σ_max trial (panels)" trialPanels trialLapack
                Expect.isSome (op.AnyOrderCholesky.Value.Trial t) "σ_max trial in LAPACK's order"
                expectFactor "σ_max trial (any order)" trialLapack trialPanels)
            NativeBlas.useBackend NativeBlas.Backend.LibTorch (fun () ->
                Expect.isNone (Certify.denseOperator opts "float64" 0 work gram).AnyOrderCholesky "not offered on libtorch (MKL's slow dpotrf)")
            Expect.isNone (Certify.denseOperator { opts with CholeskyPanel = 0 } "float64" 0 work gram).AnyOrderCholesky "not offered when the panels are LAPACK's order already"
        }

        test "certifyOperator records the h of the factorisations it ran: a spy on the operator's two orders sees only LAPACK's with h = n + 1 or only the panels with their h, on both choices, a warm shift (panels) and an estimate λ̂_min ≤ 0 (panels)" {
            let n = 48
            let panel = 4
            let mutable seen = Set.empty
            for seed in 1 .. 12 do
                use phi = gaussian (seed + 100) n (2 * n)
                use fullGram = Gram.ofMatrix Certify.defaults.BlockColumns false phi
                let scaled, scale = Gram.scaleBy false fullGram
                use _scaledGram = scaled.Gram
                use work = torch.empty_like(scaled.Gram)
                let delta = if seed % 3 = 0 then 1e-12 else 1e-3
                let warm = seed % 4 = 1
                let negativeEstimate = seed % 5 = 2
                let opts = { Certify.defaults with CholeskyPanel = panel; AnyOrderTolerance = delta; Route = Certify.RouteChoice.Gram }
                // the warm shift: ¼ of λ_min of the unscaled Gram (proves itself, at least the floor 0)
                let lambdaMin = torch.linalg.eigvalsh(fullGram.Gram).[0].item<float> ()
                let opts = if warm then Certify.withWarmShift (lambdaMin / 4.0) 0.0 opts else opts
                // λ̂_min ≤ 0 is inverse iteration's: the Ritz shift, tried before it, is off in those cases
                let opts = if negativeEstimate then { opts with RitzShiftTolerance = 0.0 } else opts
                NativeBlas.useBackend NativeBlas.Backend.OpenBlas (fun () ->
                    let op = Certify.denseOperator opts "features float64, Gram float64" scale work scaled
                    let log = ResizeArray<string>()
                    let spy =
                        { op with
                            EstimateLambdaMin = (if negativeEstimate then (fun _ -> -1.0) else op.EstimateLambdaMin)
                            ShiftedCholesky = (fun c -> log.Add "panels"; op.ShiftedCholesky c)
                            TrialCholesky = (fun t -> log.Add "panels"; op.TrialCholesky t)
                            AnyOrderCholesky =
                                op.AnyOrderCholesky |> Option.map (fun a ->
                                    { Certify.Shifted = (fun c -> log.Add "any"; a.Shifted c)
                                      Certify.Trial = (fun t -> log.Add "any"; a.Trial t) }) }
                    let c = Certify.certifyOperator opts (subject phi false) None (System.Diagnostics.Stopwatch.StartNew()) spy
                    let kinds = Set.ofSeq log
                    let what = sprintf "seed %d δ=%g warm=%b λ̂≤0=%b: %O (%s), h_C %d, calls %A" seed delta warm negativeEstimate c.Verdict c.Reason c.Terms.CholeskyGammaIndex (List.ofSeq log)
                    Expect.isGreaterThan log.Count 0 ("factorisations ran. " + what)
                    Expect.equal kinds.Count 1 ("one order per certificate. " + what)
                    let expectedH = if kinds.Contains "any" then n + 1 else op.CholeskyDepth
                    Expect.equal c.Terms.CholeskyGammaIndex expectedH ("the recorded h is the order's that ran. " + what)
                    if c.Terms.Shift > 0.0 then
                        expectAtLeast' (Exact.gammaPrime expectedH) c.Terms.CholeskyGamma what
                    if warm || negativeEstimate then Expect.isFalse (kinds.Contains "any") ("a warm shift or λ̂ ≤ 0 keeps the panels. " + what)
                    seen <- seen.Add((kinds.Contains "any", warm, negativeEstimate)))
            Expect.isTrue (seen.Contains (true, false, false)) (sprintf "LAPACK's order chosen at least once: %A" seen)
            Expect.isTrue (seen.Contains (false, false, false)) (sprintf "the panels chosen at least once without a warm shift: %A" seen)
            Expect.isTrue (seen |> Set.exists (fun (_, w, _) -> w)) (sprintf "a warm shift: %A" seen)
            Expect.isTrue (seen |> Set.exists (fun (_, _, e) -> e)) (sprintf "an estimate ≤ 0: %A" seen)
        }

        testPropertyWithConfig (Seeds.config 10) "scale equivariance: 2^k·Φ gives the same verdict and terms, bounds exactly 2^k·bounds, across the representable range" <| fun (seed: int) ->
            let rng = System.Random seed
            let n = rng.Next(2, 11)
            let m = rng.Next(n, 21)
            use phi = if seed % 2 = 0 then ofRank seed n m (if seed % 3 = 0 then n - 1 else n) else gaussian seed n m
            let baseline = certify false phi
            let lo, hi = exponentRange phi
            let ks = [ lo; hi; 0; 1; -1 ] @ [ for _ in 1 .. 6 -> rng.Next(lo, hi + 1) ]
            for k in ks do
                use scaled = phi.mul(scalar (System.Math.ScaleB(1.0, k)))
                let c = certify false scaled
                let what = sprintf "n=%d m=%d k=%d (range %d..%d): %s | %s" n m k lo hi c.Reason baseline.Reason
                Expect.equal c.Verdict baseline.Verdict ("same verdict. " + what)
                Expect.equal c.SigmaMinLower (System.Math.ScaleB(baseline.SigmaMinLower, k)) ("σ_min bound × 2^k exactly. " + what)
                Expect.equal c.SigmaMaxUpper (System.Math.ScaleB(baseline.SigmaMaxUpper, k)) ("σ_max bound × 2^k exactly. " + what)
                Expect.equal c.SigmaMaxEstimate (System.Math.ScaleB(baseline.SigmaMaxEstimate, k)) ("σ_max estimate × 2^k exactly. " + what)
                Expect.equal c.Terms.ScaleExponent (baseline.Terms.ScaleExponent + k) ("scale exponent + k. " + what)
                Expect.equal { c.Terms with ScaleExponent = 0 } { baseline.Terms with ScaleExponent = 0 } ("the same terms (of the scaled matrix). " + what)

        test "scale: a well-conditioned 10 × 20 matrix is Certified, with a Krylov σ_max bound, at every decade from 1e−140 to 1e150" {
            use phi = ofRank 2026 10 20 10
            let sigmaMax = mathNetSigmaMax phi
            let sigmaMin = mathNetSigmaMin phi
            for d in -140 .. 10 .. 150 do
                let scale = 10.0 ** float d
                use scaled = phi.mul(scalar scale)
                let c = certify false scaled
                let what = sprintf "scale 1e%d: %s" d c.Reason
                Expect.equal c.Verdict Verdict.Certified what
                do
                    Expect.isGreaterThanOrEqual c.SigmaMinLower (0.5 * sigmaMin * scale) ("useful σ_min bound. " + what)
                    Expect.isLessThanOrEqual c.SigmaMinLower (sigmaMin * scale * (1.0 + 1e-9)) ("sound σ_min bound. " + what)
                    Expect.isLessThanOrEqual c.SigmaMaxUpper (1.01 * sigmaMax * scale) ("σ_max bound from the Cholesky trial, not Frobenius. " + what)
                    Expect.isGreaterThan c.Terms.LambdaMaxTrial 0.0 ("the trial succeeded. " + what)
                    Tolerance.expectClose { absolute = 0.0; relative = 1e-8 } c.SigmaMaxEstimate (sigmaMax * scale) ("σ_max estimate. " + what)
        }

        test "σ_max estimate with repeated singular values: identity, orthonormal rows, two distinct values (≤ λ_max·(1 + 1e-8) and within 1e-8)" {
            let expectEstimate (what: string) (phi: torch.Tensor) (sigmaMax: float) =
                let c = certify false phi
                let info = sprintf "%s: estimate %.17g, true %.17g, bound %.17g" what c.SigmaMaxEstimate sigmaMax c.SigmaMaxUpper
                Expect.isLessThanOrEqual c.SigmaMaxEstimate (sigmaMax * (1.0 + 1e-8)) ("estimate ≤ σ_max(1 + 1e-8). " + info)
                Expect.isGreaterThanOrEqual c.SigmaMaxEstimate (sigmaMax * (1.0 - 1e-8)) ("estimate ≥ σ_max(1 − 1e-8). " + info)
                Expect.isLessThanOrEqual c.SigmaMaxUpper (sigmaMax * 1.01) ("bound from a trial near the estimate. " + info)
                use onDevice = TestDevice.onDevice phi
                use gram = Gram.ofMatrix 4096 false onDevice
                let lam = Certify.estimateLambdaMax 30 gram.Gram
                Expect.isLessThanOrEqual lam (sigmaMax * sigmaMax * (1.0 + 1e-8)) ("λ̂_max ≤ λ_max(1 + 1e-8). " + info)
            use identity = torch.eye(40L, dtype = torch.float64)
            expectEstimate "identity 40 × 40" identity 1.0
            use g = gaussian 7 60 20
            let struct (q, _) = torch.linalg.qr(g)
            use q = q
            use rows = q.t().contiguous()
            expectEstimate "orthonormal rows 20 × 60" rows 1.0
            use two = withSingularValues 11 30 (Array.init 20 (fun i -> if i < 10 then 1.0 else 3.0))
            expectEstimate "two distinct values (1 and 3) 20 × 30" two 3.0
            use three = withSingularValues 13 50 (Array.init 40 (fun i -> float (1 + i % 3)))
            expectEstimate "three distinct values 40 × 50" three 3.0
        }

        test "the λ_max Lanczos stops on convergence: about ten products for a dominant top eigenvalue, as many as needed (≤ the cap) for a crowded one" {
            // oracle: eigvalsh of the same float64 matrix; the products are counted through the matvec
            let run (g: torch.Tensor) =
                let mutable products = 0
                let lam = Certify.lanczosLambdaMax Certify.defaults.KrylovSteps g.shape.[0] g.device (fun v -> products <- products + 1; g.mm(v))
                let top = (use e = torch.linalg.eigvalsh(g) in use m = e.max() in m.item<float> ())
                lam, top, products
            // dominant: a rank-one spike over a small Wishart part (as the ResNet taps' mean direction)
            use phi = gaussian 5 300 600
            use spike = torch.ones([| 300L; 600L |], dtype = torch.float64)
            use features = phi.mul(scalar 0.05).add(spike)
            use dominant = features.mm(features.t())
            let lam, top, products = run dominant
            Expect.isLessThanOrEqual products (Certify.lanczosMinSteps + 2) (sprintf "dominant: %d products" products)
            Expect.isLessThanOrEqual (abs (top - lam)) (1e-9 * top) (sprintf "dominant: λ̂ %.17g, λ_max %.17g" lam top)
            // crowded: a square-ish Gaussian Wishart top (Marchenko–Pastur edge), where 30 products leave λ̂ 0.1 % low
            use gaussianPhi = gaussian 6 2048 8192
            use crowded = gaussianPhi.mm(gaussianPhi.t())
            let lam, top, products = run crowded
            let lam30 = Certify.lanczosLambdaMax 30 crowded.shape.[0] crowded.device (fun v -> crowded.mm(v))
            Expect.isGreaterThan (top / lam30 - 1.0) 1e-4 (sprintf "the case is crowded: 30 products leave λ̂ %.3g low" (top / lam30 - 1.0))
            Expect.isGreaterThan products 30 (sprintf "crowded: %d products" products)
            Expect.isLessThanOrEqual (top / lam - 1.0) 1e-4 (sprintf "crowded: λ̂ within 10⁻⁴ (the first trial's margin is 10⁻³): λ̂ %.17g, λ_max %.17g, %d products" lam top products)
        }

        test "the Ritz shift: a settled θ_min (Gaussian Φ̃) decides with one factorisation and no inverse iteration, sound and tighter; an unsettled one (graded Φ̃) is never tried; a failed one is counted and falls back" {
            // oracle: eigvalsh of fl G (the Ritz value's interlacing), the certificate with the Ritz shift off (a second
            // route to the same verdict), and a spy counting the operator's calls
            let certifyWith (opts: Certify.Options) (phi: torch.Tensor) (tamper: Certify.GramOperator -> Certify.GramOperator) =
                use fullGram = Gram.ofMatrix opts.BlockColumns false phi
                let scaled, scale = Gram.scaleBy false fullGram
                use _scaledGram = scaled.Gram
                use work = torch.empty_like(scaled.Gram)
                let lambdaMinFl = (use e = torch.linalg.eigvalsh(scaled.Gram) in e.[0].item<float> ())
                let mutable estimates, shifted = 0, []
                let op = Certify.denseOperator opts "features float64, Gram float64" scale work scaled
                let spy =
                    tamper { op with
                               EstimateLambdaMin = (fun k -> estimates <- estimates + 1; op.EstimateLambdaMin k)
                               AnyOrderCholesky = None
                               ShiftedCholesky = (fun c -> shifted <- shifted @ [ c ]; op.ShiftedCholesky c) }
                let krylov = op.EstimateLambdaMax opts.KrylovSteps
                let c = Certify.certifyOperator opts (subject phi false) None (System.Diagnostics.Stopwatch.StartNew()) spy
                c, krylov, lambdaMinFl, estimates, shifted
            // settled: a Gaussian 512 × 2048 (crowded bottom edge, κ ≈ 9). At this size θ_min's last change is near the
            // 10⁻³ threshold (from `Certify.startVector`: 1.3·10⁻³ for seed 41, 3.2·10⁻³ for 44): this seed is one that settled
            // (measured 2026-12-04)
            use phi = gaussian 42 512 2048
            let c, krylov, lambdaMinFl, estimates, shifted = certifyWith Certify.defaults phi id
            let what = sprintf "Gaussian: %O %s %A; θ_min %.17g change %.3g, λ_min(fl G) %.17g, shifts %A" c.Verdict c.Reason c.Terms krylov.LambdaMinRitz krylov.LambdaMinRitzChange lambdaMinFl shifted
            Expect.isLessThanOrEqual krylov.LambdaMinRitzChange 1e-3 ("settled. " + what)
            Expect.isGreaterThanOrEqual krylov.LambdaMinRitz (lambdaMinFl * (1.0 - 1e-12)) ("θ_min ≥ λ_min(fl G) (interlacing). " + what)
            Expect.isLessThanOrEqual krylov.LambdaMinRitz (lambdaMinFl * 1.01) ("θ_min within 1 % of λ_min. " + what)
            Expect.equal c.Verdict Verdict.Certified what
            Expect.stringContains c.Reason "smallest Ritz value" what
            Expect.equal (estimates, c.Terms.ShiftAttempts) (0, 1) ("no inverse iteration, one factorisation. " + what)
            Expect.equal shifted [ 0.9 * krylov.LambdaMinRitz ] ("the shift 0.9·θ_min, alone. " + what)
            Expect.equal c.Terms.LambdaMinEstimate krylov.LambdaMinRitz ("θ_min recorded as the estimate. " + what)
            let sigmaMin = (use s = torch.linalg.svdvals(phi) in s.min().item<float> ())
            Expect.isLessThanOrEqual c.SigmaMinLower sigmaMin ("sound against the SVD. " + what)
            let off, _, _, offEstimates, _ = certifyWith { Certify.defaults with RitzShiftTolerance = 0.0 } phi id
            Expect.equal (off.Verdict, offEstimates) (Verdict.Certified, 1) ("off: inverse iteration decides. " + off.Reason)
            Expect.isGreaterThan c.SigmaMinLower off.SigmaMinLower (sprintf "tighter than 0.75·λ̂ of inverse iteration: %.6g vs %.6g" c.SigmaMinLower off.SigmaMinLower)
            // failed: the spy fails the Ritz shift's Cholesky; the certificate counts it and goes on as without it
            let failFirst (op: Certify.GramOperator) =
                let mutable first = true
                { op with ShiftedCholesky = fun c -> (if first then (first <- false; None) else op.ShiftedCholesky c) }
            let f, _, _, fEstimates, fShifted = certifyWith Certify.defaults phi failFirst
            Expect.equal (f.Verdict, fEstimates, f.Terms.ShiftAttempts) (Verdict.Certified, 1, 2) (sprintf "fallback: %s %A" f.Reason fShifted)
            Expect.equal (f.SigmaMinLower, f.Terms.Shift) (off.SigmaMinLower, off.Terms.Shift) "the fallback's bound is the one without the Ritz shift"
            // unsettled: rows graded over four decades (κ ≈ 10⁴): θ_min still moves by % per product, never tried
            use graded = gaussian 42 256 512
            use weights = torch.logspace(0.0, -4.0, 256L, dtype = torch.float64).unsqueeze(1L)
            use gradedPhi = graded.mul(weights)
            let g, gk, _, gEstimates, gShifted = certifyWith Certify.defaults gradedPhi id
            let gwhat = sprintf "graded: %O %s; θ_min change %.3g, shifts %A" g.Verdict g.Reason gk.LambdaMinRitzChange gShifted
            Expect.isGreaterThan gk.LambdaMinRitzChange 1e-3 ("unsettled. " + gwhat)
            Expect.equal gEstimates 1 ("inverse iteration ran. " + gwhat)
            Expect.isFalse (g.Reason.Contains "Ritz") gwhat
            Expect.equal g.Terms.ShiftAttempts (List.length gShifted) ("no shift beyond the estimate's. " + gwhat)
            Expect.floatClose Accuracy.veryHigh (List.head gShifted) (0.75 * g.Terms.LambdaMinEstimate) ("its first shift is 0.75·λ̂ of inverse iteration. " + gwhat)
        }

        test "certifyGram leaves the caller's Gram unscaled and agrees with certifyMatrix (which scales its own Gram in place)" {
            use phi = ofRank 31 9 14 9
            use scaledPhi = phi.mul(scalar 1e40)
            use onDevice = TestDevice.onDevice scaledPhi
            use gram = Gram.ofMatrix Certify.defaults.BlockColumns true onDevice
            use before = gram.Gram.clone()
            let viaGram = Certify.certifyGram Certify.defaults (subject scaledPhi true) None (System.Diagnostics.Stopwatch.StartNew()) gram
            Expect.isTrue (use same = gram.Gram.eq(before).all() in same.item<bool> ()) "the caller's Gram is untouched"
            let viaMatrix = certify true scaledPhi
            Expect.equal viaGram.Verdict Verdict.Certified viaGram.Reason
            Expect.equal viaGram.Terms viaMatrix.Terms "same terms"
            Expect.equal viaGram.SigmaMinLower viaMatrix.SigmaMinLower "same σ_min bound"
            Expect.isGreaterThan viaGram.Terms.ScaleExponent 100 "scaled (e ≈ log₂ 1e40)"
        }

        test "λ_min estimate stays finite when λ_min is tiny (inverse iterates of size 1e200 are normalised without overflow)" {
            for tiny in [ 1e-200; 1e-300; 1e-100 ] do
                use g = torch.diag(torch.tensor([| 1.0; 0.5; tiny |], dtype = torch.float64))
                use onDevice = TestDevice.onDevice g
                let lam = Certify.estimateLambdaMin 16 onDevice
                Tolerance.expectClose { absolute = 0.0; relative = 1e-6 } lam tiny (sprintf "λ̂_min of diag(1, 1/2, %g)" tiny)
        }

        testPropertyWithConfig config "σ_max estimate ≤ σ_max·(1 + 1e-8) on known-rank matrices (a Rayleigh–Ritz value never overshoots)" <| fun (seed: int) ->
            let n, m, k = shape seed
            use phi = ofRank seed n m k
            let c = certify false phi
            let sigmaMax = mathNetSigmaMax phi
            Expect.isLessThanOrEqual c.SigmaMaxEstimate (sigmaMax * (1.0 + 1e-8)) (sprintf "estimate %.17g vs σ_max %.17g" c.SigmaMaxEstimate sigmaMax)
            Expect.isGreaterThanOrEqual c.SigmaMaxEstimate (sigmaMax * (1.0 - 1e-6)) (sprintf "estimate %.17g close to σ_max %.17g" c.SigmaMaxEstimate sigmaMax)

        test "hard matrices with known σ_min (Kahan, Hilbert ≤ 12, Vandermonde, prescribed σ down to 1e−12, rank n − 1, scales 1e150 and 1e−120): sound in exact arithmetic" {
            let battery =
                [ for n in [ 4; 7; 10 ] -> sprintf "Kahan %d" n, kahan n 1.2, true
                  for n in 2 .. 12 -> sprintf "Hilbert %d" n, hilbert n, n <= 4
                  for n in [ 3; 5; 8 ] -> sprintf "Vandermonde %d × 10" n, vandermonde n 10, n <= 5
                  for p in [ 2; 4; 6; 8; 10; 12 ] ->
                      sprintf "σ from 1 to 1e−%d, 6 × 9" p, withSingularValues (100 + p) 9 (Array.init 6 (fun i -> 10.0 ** (-(float p) * float i / 5.0))), p <= 6
                  for seed in [ 1; 2 ] -> sprintf "rank n − 1 (row 5 = 2·row 0 − row 1), 6 × 8, seed %d" seed, rankDeficientByOne seed 6 8, false ]
            for name, phi, mustCertify in battery do
                use phi = phi
                let mutable baseline = None
                for scale in [ 1.0; 1e150; 1e-120; System.Math.ScaleB(1.0, 400); System.Math.ScaleB(1.0, -390) ] do
                    use scaled = phi.mul(scalar scale)
                    for withBias in [ false; true ] do
                        let c = certify withBias scaled
                        let what = sprintf "%s × %g, bias %b" name scale withBias
                        expectSoundExact what withBias scaled c
                        expectTermsExact what withBias scaled c
                        // With the bias column, scaling Φ is not scaling Φ̃: at 1e−120 the ones dominate.
                        if mustCertify && (not withBias || (scale = 1.0 && not (name.StartsWith "Kahan"))) then
                            Expect.equal c.Verdict Verdict.Certified (sprintf "%s must certify: %s" what c.Reason)
                        if name.StartsWith "rank" then Expect.notEqual c.Verdict Verdict.Certified (what + ": rank n − 1")
                        if not withBias && (scale = 1.0 || System.Math.Log2 scale = floor (System.Math.Log2 scale)) then
                            match baseline with
                            | None -> baseline <- Some c
                            | Some (b: Certificate) ->
                                let k = int (System.Math.Log2 scale)
                                Expect.equal c.Verdict b.Verdict (what + ": same verdict at a power-of-two scale")
                                Expect.equal c.SigmaMinLower (System.Math.ScaleB(b.SigmaMinLower, k)) (what + ": σ_min bound × 2^k")
        }
    ]
