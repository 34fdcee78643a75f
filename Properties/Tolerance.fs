/// The one tolerance policy of the test suite, indexed by precision (after neural-tangents'
/// dtype-indexed table and Expecto's Accuracy levels). Every numeric comparison in Properties
/// goes through `close` / `expectClose`, which print both error terms when they fail.
module ResearchFramework.Properties.Tolerance

open Expecto

/// Floating-point precision of a computation under test.
type Precision =
    | Float32
    | Float64

/// |a − b| ≤ absolute + relative · max(|a|, |b|).
type Accuracy = { absolute: float; relative: float }

/// Tolerance for quantities computed by two independent, backward-stable routes
/// (SVD vs SVD, Gram vs SVD, autograd vs autograd) at a precision.
let stable =
    function
    | Float32 -> { absolute = 1e-5; relative = 1e-4 }
    | Float64 -> { absolute = 1e-12; relative = 1e-9 }

/// Tolerance for central finite differences vs autograd (truncation O(h²) + rounding O(u/h)).
let finiteDifference =
    function
    | Float32 -> { absolute = 1e-3; relative = 1e-2 }
    | Float64 -> { absolute = 1e-7; relative = 1e-6 }

/// Tolerance for a loss trajectory of T ≲ 20 small steps (η ≤ 0.01) computed in a precision against the float64 CPU
/// run from the same rounded start (`DifferentialTests`): each step's loss carries a forward error of a few units in
/// the last place of the precision and the parameters drift apart by η times the gradients' rounding per step. A
/// policy, not a derived bound: 10⁻⁴ relative for float32 on these well-scaled problems (about 800 ulps of float32);
/// float64 on another device 10⁻¹⁰ (reduction order only).
let trajectory =
    function
    | Float32 -> { absolute = 1e-6; relative = 1e-4 }
    | Float64 -> { absolute = 1e-13; relative = 1e-10 }

/// Machine epsilon of a precision.
let epsilon =
    function
    | Float32 -> 1.1920928955078125e-07
    | Float64 -> 2.220446049250313e-16

/// Backward error of a float64 SVD's singular values, |σ̂_i − σ_i| ≤ c·max(rows, cols)·u·σ_max
/// (Higham Thm 19.x; c = 10, generous for the sizes tested): how far a proved bound may sit on the
/// wrong side of an SVD-computed singular value.
let svdSlack (rows: int64) (cols: int64) (sigmaMax: float) =
    10.0 * float (max rows cols) * (epsilon Float64 / 2.0) * sigmaMax

/// True when a and b agree under the accuracy.
let close (acc: Accuracy) (a: float) (b: float) =
    abs (a - b) <= acc.absolute + acc.relative * max (abs a) (abs b)

/// Expect a ≈ b under the accuracy; the failure message shows both terms of the bound.
let expectClose (acc: Accuracy) (actual: float) (expected: float) (what: string) =
    if not (close acc actual expected) then
        failtestf "%s: actual %.17g vs expected %.17g: |diff| = %.3e > abs %.1e + rel %.1e·max = %.3e"
            what actual expected (abs (actual - expected)) acc.absolute acc.relative
            (acc.absolute + acc.relative * max (abs actual) (abs expected))

/// Expect every entry of two equal-length arrays to agree under the accuracy.
let expectAllClose (acc: Accuracy) (actual: float[]) (expected: float[]) (what: string) =
    Expect.equal actual.Length expected.Length (what + ": lengths")
    Array.iteri2 (fun i a e -> expectClose acc a e (sprintf "%s[%d]" what i)) actual expected

/// Relative slack for comparing two recorded losses computed in a precision whose longest sum has k terms: each loss
/// carries about (k + 2)·ε of relative rounding (γ_k of its sums, the residual's subtraction and the square), two
/// losses twice that. A policy, not a bound (a residual that cancels has no relative bound): the one for invariants
/// such as "the objective never increases" when the loss itself is computed in that precision.
let lossRounding (p: Precision) (k: int) = 2.0 * float (k + 2) * epsilon p
