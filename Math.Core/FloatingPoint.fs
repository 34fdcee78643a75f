/// Rigorous floating-point bookkeeping for certificates (SPEC §3; Higham, *Accuracy and
/// Stability of Numerical Algorithms*, ch. 3). Every IEEE-754 binary64 operation is correctly
/// rounded, so the exact result of one operation lies within one ulp of the computed one:
/// stepping one ulp outward (`up`/`down`) after each operation yields a safe bound without
/// switching the hardware rounding mode.
module ResearchFramework.MathCore.FloatingPoint

open System

/// Unit roundoff of binary64, u = 2⁻⁵³.
let unitRoundoff64 = Math.Pow(2.0, -53.0)

/// Unit roundoff of binary32, u = 2⁻²⁴.
let unitRoundoff32 = Math.Pow(2.0, -24.0)

/// Next float64 towards +∞: an upper bound on the exact value of a correctly rounded result.
let up (x: float) = Math.BitIncrement x

/// Next float64 towards −∞: a lower bound on the exact value of a correctly rounded result.
let down (x: float) = Math.BitDecrement x

/// a + b rounded upward (upper bound on the exact sum).
let addUp a b = up (a + b)
/// a · b rounded upward, for a, b ≥ 0.
let mulUp a b = up (a * b)
/// a − b rounded downward (lower bound on the exact difference).
let subDown a b = down (a - b)

/// γ_k = k·u / (1 − k·u) (Higham §3.1), rounded upward; requires k·u < 1.
let gamma (u: float) (k: int) : float =
    if k < 0 then invalidArg "k" "gamma: k must be non-negative"
    let ku = mulUp (float k) u
    if ku >= 1.0 then invalidArg "k" (sprintf "gamma: k·u = %g ≥ 1, no error bound exists" ku)
    up (ku / down (1.0 - ku))

/// Upper bound on the exact sum of non-negative numbers summed in float64 in any order:
/// |fl(Σ xᵢ) − Σ xᵢ| ≤ γ_{k−1} Σ xᵢ, so Σ xᵢ ≤ fl(Σ)/(1 − γ_{k−1}).
let sumNonNegativeUpper (computedSum: float) (terms: int) : float =
    if terms <= 1 then computedSum
    else up (computedSum / down (1.0 - gamma unitRoundoff64 (terms - 1)))

/// Upper bound on an exact non-negative quantity s from its float64 value fl(s) when
/// |fl(s) − s| ≤ γ·s: s ≤ fl(s)/(1 − γ), rounded upward.
let inflate (gammaBound: float) (computed: float) : float =
    if gammaBound >= 1.0 then infinity else up (computed / down (1.0 - gammaBound))

/// x·2^k for a lower bound x: exact unless the result leaves the normal range; then one ulp
/// down from the rounded result, so it stays a lower bound on the exact x·2^k.
let scaleDown (x: float) (k: int) : float =
    let y = Math.ScaleB(x, k)
    if Math.ScaleB(y, -k) = x then y else down y

/// x·2^k for an upper bound x: exact unless the result leaves the normal range; then one ulp up.
let scaleUp (x: float) (k: int) : float =
    let y = Math.ScaleB(x, k)
    if Math.ScaleB(y, -k) = x then y else up y

/// Smallest magnitude of a non-zero input accepted by the certificates (underflow guard).
let underflowGuard = 1e-150
