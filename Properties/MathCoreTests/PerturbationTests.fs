/// Properties of the guard's perturbation bounds (Math.Core/Perturbation.fs, SPEC §4.3): the
/// rigorous ‖A − B‖_F bound against exact integer arithmetic, Weyl's bounds against MathNet's SVD,
/// and tightness (an aligned rank-one perturbation attains s − δ).
module ResearchFramework.Properties.MathCoreTests.PerturbationTests

open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Properties
open ResearchFramework.Properties.MathCoreTests.Generators

let private config = Seeds.config 30

let private singularValues (a: torch.Tensor) = HeuristicRank.toMathNet a |> HeuristicRank.mathNetSingularValues

/// The SVD's own error (`Tolerance.svdSlack`).
let private svdSlack (a: torch.Tensor) (sigmaMax: float) = Tolerance.svdSlack a.shape.[0] a.shape.[1] sigmaMax

[<Tests>]
let tests =
    testList "MathCore.Perturbation" [
        testPropertyWithConfig config "‖A − B‖_F bound ≥ the exact value (integer matrices: exact sums) and within 1e-12 of it" <| fun (seed: int) ->
            let n, m, _ = shape seed
            use ga = gaussian seed n m
            use gb = gaussian (seed + 1) n m
            // integers up to 2^20: differences and their squares (< 2^42), and sums of < 2^11 of them, are exact in float64
            use a = ga.mul(scalar 1e5).round()
            use b = gb.mul(scalar 1e5).round()
            let exactSquares = (a.sub(b).pow(scalar 2.0).sum().item<float> ())
            let bound = Perturbation.frobeniusDistanceUpper a b
            Expect.isGreaterThanOrEqual (bound * bound) exactSquares "bound² ≥ Σ (a − b)² (exact here)"
            Expect.isLessThanOrEqual bound (sqrt exactSquares * (1.0 + 1e-12)) "tight"
            use a32 = a.to_type(torch.float32)
            use b32 = b.to_type(torch.float32)
            Expect.isGreaterThanOrEqual (Perturbation.frobeniusDistanceUpper a32 b32) (sqrt exactSquares) "float32 inputs (widened exactly)"

        test "‖A − B‖_F bound over several row blocks (5000 × 1000: two blocks of the 2²²-entry limit) ≥ the exact value" {
            use ga = gaussian 5 5000 1000
            use gb = gaussian 6 5000 1000
            // integers up to 2^10: squares < 2^22 and their sum over 5·10⁶ entries < 2^45 are exact in float64
            use a = ga.mul(scalar 200.0).round()
            use b = gb.mul(scalar 200.0).round()
            let exactSquares = (a.sub(b).pow(scalar 2.0).sum().item<float> ())
            let bound = Perturbation.frobeniusDistanceUpper a b
            Expect.isGreaterThanOrEqual (bound * bound) exactSquares "bound² ≥ Σ (a − b)²"
            Expect.isLessThanOrEqual bound (sqrt exactSquares * (1.0 + 1e-9)) "tight across blocks"
        }

        testPropertyWithConfig config "Weyl: σ_min(A + E) ≥ s − δ and σ_max(A + E) ≤ σ̄ + δ (certified s, σ̄; MathNet SVD of A + E)" <| fun (seed: int) ->
            let n, m, _ = shape seed
            use a = ofRank seed n m n
            let c = certify false a
            Expect.isTrue c.IsCertified c.Reason
            let scale = [| 1e-3; 1e-1; 0.5; 2.0 |].[abs seed % 4]
            use e = (gaussian (seed + 3) n m).mul(scalar (scale / sqrt (float (n * m))))
            use b = a.add(e)
            let delta = Perturbation.frobeniusDistanceUpper b a
            let sv = singularValues b
            let slack = svdSlack b sv.[0]
            let lower = Perturbation.sigmaMinLowerAfter c.SigmaMinLower delta
            let upper = Perturbation.sigmaMaxUpperAfter c.SigmaMaxUpper delta
            Expect.isLessThanOrEqual lower (Array.min sv + slack) "σ_min lower bound is sound"
            Expect.isGreaterThanOrEqual (upper + slack) (Array.max sv) "σ_max upper bound is sound"

        testPropertyWithConfig config "Weyl is tight: E = −δ·u_min v_minᵀ lowers σ_min by exactly δ (so s − δ/2 would be unsound)" <| fun (seed: int) ->
            let n, m, _ = shape seed
            use a = ofRank seed n m n
            let struct (u, s, vh) = torch.linalg.svd(a, false)
            let sMin = s.[int64 (n - 1)].item<float> ()
            let d = 0.5 * sMin
            use uMin = u.narrow(1L, int64 (n - 1), 1L)
            use vMin = vh.narrow(0L, int64 (n - 1), 1L)
            use e = uMin.mm(vMin).mul(scalar (-d))
            use b = a.add(e)
            let delta = Perturbation.frobeniusDistanceUpper b a
            let sigmaMinB = singularValues b |> Array.min
            Tolerance.expectClose (Tolerance.stable Tolerance.Float64) sigmaMinB (sMin - d) "σ_min(A + E) = σ_min(A) − ‖E‖"
            Expect.isLessThanOrEqual (Perturbation.sigmaMinLowerAfter sMin delta) (sigmaMinB + svdSlack b sMin + 1e-12) "s − δ is attained"
            Expect.isGreaterThan (sMin - delta / 2.0) (sigmaMinB + svdSlack b 10.0) "a halved δ would claim too much"
            for t in [ u; s; vh ] do t.Dispose()
    ]
