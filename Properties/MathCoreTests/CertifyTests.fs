/// Properties of the certificate (SPEC §3): known-rank matrices, soundness against SVD,
/// usefulness, invariances, exact refutations, agreement of the three routes, bad input.
module ResearchFramework.Properties.MathCoreTests.CertifyTests

open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Properties
open ResearchFramework.Properties.MathCoreTests.Generators

let private config = { FsCheckConfig.defaultConfig with maxTest = 40 }

/// A certified bound may exceed the float64 SVD's σ_min only by the SVD's own error,
/// |σ̂_i − σ_i| ≤ c·n·u·σ_max (backward stability, Higham Thm 19.x; c = 10 here, generous for n ≤ 60).
let private svdSlack (phi: torch.Tensor) (sigmaMax: float) =
    10.0 * float (max phi.shape.[0] phi.shape.[1]) * FloatingPoint.unitRoundoff64 * sigmaMax

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

        test "bad input: mismatched subject, non-2-D features" {
            use phi = ofRank 3 4 6 4
            let wrong = { subject phi false with Features = 7 }
            Expect.throwsT<System.ArgumentException> (fun () -> Certify.certifyMatrix Certify.defaults wrong phi |> ignore) "m mismatch"
            use flat = torch.ones([| 5L |], dtype = torch.float64)
            Expect.throwsT<System.ArgumentException> (fun () -> Certify.certifyMatrix Certify.defaults (subject phi false) flat |> ignore) "1-D"
        }
    ]
