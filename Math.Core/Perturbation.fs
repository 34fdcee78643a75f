/// Singular values of a perturbed feature matrix (SPEC §4.3, the rank guard): Weyl's inequality
/// |σ_i(A) − σ_i(B)| ≤ ‖A − B‖₂ ≤ ‖A − B‖_F, so a certified σ_min(Φ̃_ref) ≥ s and a rigorous
/// upper bound δ ≥ ‖Φ̃_t − Φ̃_ref‖_F give σ_min(Φ̃_t) ≥ s − δ and σ_max(Φ̃_t) ≤ σ̄_ref + δ
/// without a new Gram matrix (O(nm) work instead of O(n²m + n³)). The bias columns of Φ̃_t and
/// Φ̃_ref are equal, so δ is the distance of the feature parts Φ_t, Φ_ref. See docs/theory.md §3.
module ResearchFramework.MathCore.Perturbation

open TorchSharp
open ResearchFramework.MathCore.FloatingPoint

/// Rigorous upper bound on ‖A − B‖²_F for one block of rows (see `frobeniusDistanceUpper`).
let private squaredDistanceUpper (a: torch.Tensor) (b: torch.Tensor) : float =
    use scope = torch.NewDisposeScope()
    let d = a.to_type(torch.float64).sub(b.to_type(torch.float64).``to``(a.device))
    let computed = d.mul(d).sum().cpu().item<float> ()
    let terms = a.NumberOfElements
    if terms = 0L then 0.0
    elif terms >= int64 System.Int32.MaxValue || not (System.Double.IsFinite computed) then infinity
    else
        let u = unitRoundoff64
        let sumUpper = sumNonNegativeUpper computed (int terms) |> inflate u |> inflate u |> inflate u
        addUp sumUpper (mulUp (float terms) System.Double.Epsilon)

/// Rigorous upper bound on ‖A − B‖_F for equally shaped matrices (any float dtype; values are
/// widened exactly to float64). Each float64 difference and square carries one rounding,
/// |fl(x)| ≥ |x|(1 − u), and an N-term sum is bounded by `sumNonNegativeUpper`:
///   ‖A − B‖_F² ≤ fl(Σ fl(fl(a − b)²)) / ((1 − γ_{N−1})(1 − u)³) + N·2⁻¹⁰⁷⁴ (underflow of tiny squares).
/// Rows are processed in blocks of about 2²² entries (bounded temporary memory); the blocks'
/// bounds are added rounding upward, and the square root is rounded upward.
let frobeniusDistanceUpper (a: torch.Tensor) (b: torch.Tensor) : float =
    if a.shape <> b.shape then
        invalidArg "b" (sprintf "shapes differ: %A vs %A" a.shape b.shape)
    if a.dim () <> 2L then invalidArg "a" (sprintf "expected a matrix, got shape %A" a.shape)
    let rows = a.shape.[0]
    let blockRows = max 1L ((1L <<< 22) / max 1L a.shape.[1])
    let mutable total = 0.0
    let mutable start = 0L
    while start < rows do
        let count = min blockRows (rows - start)
        use ab = a.narrow(0L, start, count)
        use bb = b.narrow(0L, start, count)
        total <- addUp total (squaredDistanceUpper ab bb)
        start <- start + count
    if System.Double.IsFinite total then up (sqrt total) else infinity

/// Weyl lower bound σ_min(Φ̃_t) ≥ s − δ, rounded downward (may be ≤ 0: then nothing is proved).
let sigmaMinLowerAfter (sigmaMinLower: float) (distanceUpper: float) : float = subDown sigmaMinLower distanceUpper

/// Weyl upper bound σ_max(Φ̃_t) ≤ σ̄ + δ, rounded upward.
let sigmaMaxUpperAfter (sigmaMaxUpper: float) (distanceUpper: float) : float = addUp sigmaMaxUpper distanceUpper
