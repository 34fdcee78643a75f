/// Lemma 2 (genericity), executable: perturbations ω + εξ of a certified analytic network stay
/// certified; for ReLU, an open parameter region (positive measure) where rank Φ̃ < n is proved
/// exactly — why the lemma assumes analyticity. See docs/theory.md §4, "Lemma 2".
module ResearchFramework.Proofs.Genericity

open ResearchFramework.MathCore
open ResearchFramework.Proofs.Network

/// Root mean square of a tensor's entries (0 for an empty one).
let private rms (xs: float seq) =
    let a = Array.ofSeq xs
    if a.Length = 0 then 0.0 else sqrt (Array.averageBy (fun v -> v * v) a)

/// ω + ε·ξ with ξ standard Gaussian scaled per tensor by the tensor's RMS (SPEC §4, switch);
/// a tensor with RMS 0 is perturbed at scale ε.
let perturb (g: Gaussian) (epsilon: float) (net: Network) : Network =
    let layer (l: Layer) =
        let sw = let r = rms (Seq.cast<float> l.Weight) in if r > 0.0 then r else 1.0
        let sb = let r = rms l.Bias in if r > 0.0 then r else 1.0
        { Weight = l.Weight |> Array2D.map (fun w -> w + epsilon * sw * g.Next())
          Bias = l.Bias |> Array.map (fun b -> b + epsilon * sb * g.Next()) }
    { net with Layers = net.Layers |> List.map layer }

/// ε₀ = δ / (4·2^L·max(max_j |t_j|, ‖u‖₁·max(1, max|h|))), L = number of narrow layers: the
/// relative separation of the witness on inputs x. A relative perturbation ε ≲ ε₀ moves every
/// z_i and t_j by about ε·scale ≲ δ/4, so the witness keeps its triangular pattern; much larger ε
/// still gives rank n almost surely (Lemma 2) but can saturate units into bitwise-equal float64
/// columns, or leave σ_min below what a float64 Gram test resolves.
let relativeSeparation (x: float[,]) (w: ResearchFramework.Proofs.FullyConnected.FcWitness) : float =
    let h = features { Activation = w.Activation; Layers = w.Narrow } x
    let hMax = h |> Seq.cast<float> |> Seq.fold (fun a v -> max a (abs v)) 1.0
    let uNorm = w.Direction |> Array.sumBy abs
    let tMax = w.Thresholds |> Array.fold (fun a v -> max a (abs v)) 0.0
    let scale = (2.0 ** float w.Narrow.Length) * max tMax (uNorm * hMax)
    if w.SortedZ.Length < 2 || scale = 0.0 then 1.0 else min 1.0 (w.MinGap / (4.0 * scale))

/// One perturbation trial.
type Trial =
    { Epsilon: float
      Trial: int
      Certificate: Certificate
      /// σ_min lower bound after the flush correction (0 unless Certified).
      SigmaMinLower: float
      /// MathNet SVD σ_min of the perturbed Φ̃ (cross-check).
      SvdSigmaMin: float }

/// Certify Φ̃(ω + εξ) for every ε and `trials` draws of ξ (deterministic from the seed).
let perturbationTrials (x: float[,]) (net: Network) (epsilons: float list) (trials: int) (seed: int) : Trial list =
    let g = Gaussian seed
    [ for eps in epsilons do
          for k in 1 .. trials do
              let p = perturb g eps net
              let phi = features p x
              let fc = certifyFeatures (subjectOf (sprintf "perturbed ω + %g·ξ" eps) p x (Array2D.length2 phi)) phi
              yield { Epsilon = eps; Trial = k; Certificate = fc.Certificate; SigmaMinLower = fc.SigmaMinLower
                      SvdSigmaMin = svdSigmaMin (withBias phi) } ]

/// An exact (integer) upper bound on rank Φ̃ and why: rank ≤ #columns that are not identically
/// zero, and rank ≤ #distinct rows. Both counts are exact comparisons of the computed matrix.
type RankUpperBound =
    { NonZeroColumns: int
      DistinctRows: int
      RankUpper: int
      Reason: string }

let rankUpperBound (phiTilde: float[,]) : RankUpperBound =
    let n, c = Array2D.length1 phiTilde, Array2D.length2 phiTilde
    let nonZero = [ 0 .. c - 1 ] |> List.filter (fun j -> [ 0 .. n - 1 ] |> List.exists (fun i -> phiTilde.[i, j] <> 0.0)) |> List.length
    let distinct = rows phiTilde |> Array.distinct |> Array.length
    let upper = min nonZero distinct
    { NonZeroColumns = nonZero; DistinctRows = distinct; RankUpper = upper
      Reason = sprintf "rank Φ̃ ≤ min(%d non-zero columns, %d distinct rows) = %d" nonZero distinct upper }

/// A ReLU network, its inputs, the exact rank deficiency and the margin of the open region
/// around ω where the deficiency persists.
type ReluCounterexample =
    { Description: string
      Inputs: float[,]
      Network: Network
      Certificate: Certificate
      Rank: RankUpperBound
      /// μ > 0: every perturbation with |Δ pre-activation| < μ on every input keeps the dead units
      /// dead (their pre-activations stay < 0), so the rank bound holds on an open set of ω.
      Margin: float
      /// (layer, unit) of the dead units.
      DeadUnits: (int * int) list }

/// The dead units of a ReLU network on x (pre-activation < 0 on every input) and the margin
/// min over dead units and inputs of −pre.
let deadUnits (net: Network) (x: float[,]) : (int * int) list * float =
    let states = hiddenStates net x
    let mutable margin = infinity
    let dead =
        [ for l, layer in List.indexed net.Layers do
              let pre = preActivation layer states.[l]
              for j in 0 .. layer.Outputs - 1 do
                  let col = Array.init (Array2D.length1 pre) (fun i -> pre.[i, j])
                  if col |> Array.forall (fun v -> v < 0.0) then
                      margin <- min margin (-(Array.max col))
                      yield l, j ]
    dead, margin

let private counterexample (description: string) (x: float[,]) (net: Network) =
    let phi = features net x
    let cert = (certifyFeatures (subjectOf ("relu: " + description) net x (Array2D.length2 phi)) phi).Certificate
    let dead, margin = deadUnits net x
    { Description = description; Inputs = x; Network = net; Certificate = cert
      Rank = rankUpperBound (withBias phi); Margin = margin; DeadUnits = dead }

/// Width-1 ReLU bottleneck with bias b = −(max_i |w·x_i| + 1): the unit is dead on every input,
/// h ≡ 0, every row of Φ̃ equals [σ(b₂), 1]: rank Φ̃ = 1 < n, Refuted by duplicate rows,
/// whatever the wide width. The region {b < −max|w·x_i|} is open, so it has positive measure.
let deadBottleneck (n: int) (d: int) (m: int) (seed: int) : ReluCounterexample =
    let g = Gaussian seed
    let x = g.Matrix(n, d)
    let first = randomLayer g d 1
    let maxPre = Array.init n (fun i -> abs (Array.fold (+) 0.0 (Array.init d (fun q -> first.Weight.[0, q] * x.[i, q])))) |> Array.max
    let first = { first with Bias = [| -(maxPre + 1.0) |] }
    let wide = randomLayer g 1 m
    counterexample "dead width-1 bottleneck" x { Activation = Relu; Layers = [ first; wide ] }

/// A wide ReLU layer of width m = n − 1 (enough for EC) where the units j ≥ alive have biases
/// below −max_i |w_j·h_i| − 1: those columns of Φ are exactly 0 on every input, so
/// rank Φ̃ ≤ alive + 1 < n although m + 1 ≥ n.
let deadWideUnits (n: int) (d: int) (alive: int) (seed: int) : ReluCounterexample =
    let g = Gaussian seed
    let x = g.Matrix(n, d)
    let narrow = randomLayer g d 3
    let h = layerForward Relu narrow x
    let wide = randomLayer g 3 (n - 1)
    let bias =
        Array.init (n - 1) (fun j ->
            if j < alive then wide.Bias.[j]
            else
                let maxPre = Array.init n (fun i -> abs (Array.fold (+) 0.0 (Array.init 3 (fun q -> wide.Weight.[j, q] * h.[i, q])))) |> Array.max
                -(maxPre + 1.0))
    counterexample (sprintf "%d of %d wide units dead" (n - 1 - alive) (n - 1)) x
        { Activation = Relu; Layers = [ narrow; { wide with Bias = bias } ] }

/// Perturb only inside the margin: every weight and bias moves by at most η, with η a small
/// fraction of μ over the input and weight scales, so that no dead unit's pre-activation can reach
/// 0; returns the perturbed counterexamples (the tests re-check that the dead units stay dead).
let perturbWithinMargin (c: ReluCounterexample) (trials: int) (seed: int) : ReluCounterexample list =
    let g = Gaussian seed
    // |Δpre| ≤ Σ_q |ΔW_jq||h_q| + |Δb_j| ≤ η (Σ_q |h_q| + 1) for entries |Δ| ≤ η; h bounded by the
    // largest hidden activation seen on x along a perturbed path (use a factor 2 of the current).
    let states = hiddenStates c.Network c.Inputs
    let hMax = states |> List.map (fun s -> s |> Seq.cast<float> |> Seq.fold (fun a v -> max a (abs v)) 0.0) |> List.max
    let width = c.Network.Layers |> List.map (fun l -> l.Inputs) |> List.max
    let wMax = c.Network.Layers |> List.map (fun l -> l.Weight |> Seq.cast<float> |> Seq.fold (fun a v -> max a (abs v)) 0.0) |> List.max
    let eta = c.Margin / (4.0 * (2.0 * hMax * float width + 1.0) * (1.0 + wMax * float width)) / (float c.Network.Layers.Length + 1.0)
    [ for _ in 1 .. trials do
          let clip v = max -1.0 (min 1.0 v)
          let layer (l: Layer) =
              { Weight = l.Weight |> Array2D.map (fun w -> w + eta * clip (g.Next()))
                Bias = l.Bias |> Array.map (fun b -> b + eta * clip (g.Next())) }
          let net = { c.Network with Layers = c.Network.Layers |> List.map layer }
          yield counterexample (c.Description + " (perturbed within the margin)") c.Inputs net ]
