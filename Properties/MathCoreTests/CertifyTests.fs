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
module private Exact =
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

    /// b·I − ΦΦᵀ ≻ 0 exactly, i.e. λ_max(ΦΦᵀ) < b, for the float64 matrix Φ.
    let boundsLambdaMax (phi: torch.Tensor) (b: Q) =
        use c = phi.contiguous().cpu()
        let n, m = int phi.shape.[0], int phi.shape.[1]
        let x = c.data<float>().ToArray() |> Array.map ofFloat
        let entry i j =
            let g = Seq.fold (fun acc k -> add acc (mul x.[i * m + k] x.[j * m + k])) zero (seq { 0 .. m - 1 })
            sub (if i = j then b else zero) g
        positiveDefinite (Array2D.init n n entry)

/// √ of the certificate's bound on Σ‖φ̃_i‖²: the Frobenius bound, the σ_max bound before the Cholesky trial.
let private frobeniusBound (c: Certificate) = FloatingPoint.up (sqrt c.Terms.SquaredNormSumUpper)

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

[<Tests>]
let tests =
    testList "MathCore.Certify" [
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
            use gram = Gram.ofMatrix Certify.defaults.BlockColumns false phi
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
            Expect.equal c.SigmaMaxUpper (FloatingPoint.up (sqrt t.LambdaMaxUpper)) "σ_max ≤ √ of it (tighter than Frobenius here)"
            Expect.isLessThanOrEqual t.LambdaMaxTrialAttempts (List.length Certify.defaults.LambdaMaxFactors) "attempts"
        }

        test "σ_max bound: no factor succeeds (all below 1) → Frobenius, attempts counted" {
            use phi = ofRank 19 10 20 10
            let opts = { Certify.defaults with LambdaMaxFactors = [ 0.5; 0.9 ] }
            let c = Certify.certifyMatrix opts (subject phi false) phi
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
                          "LambdaMaxCholeskyBackwardError"; "LambdaMaxUpper"; "LambdaMaxTrialAttempts" ] do
                Expect.isTrue (terms.Remove name) (sprintf "%s was serialised" name)
            let old = CertificateJson.deserialize (node.ToJsonString())
            let expected =
                { c with Terms = { c.Terms with LambdaMaxTrial = 0.0; LambdaMaxTrialRoundingError = 0.0; LambdaMaxTrialTraceUpper = 0.0
                                                LambdaMaxCholeskyBackwardError = 0.0; LambdaMaxUpper = 0.0; LambdaMaxTrialAttempts = 0 } }
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
    ]
