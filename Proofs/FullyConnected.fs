/// The fully-connected theorem (SPEC §5), executable: for n distinct inputs, narrow hidden
/// layers and a last hidden layer of width m ≥ n − 1 with a strictly increasing, real-analytic,
/// non-polynomial activation, build a parameter ω with rank Φ̃(ω) = n, prove it with an explicit
/// perturbation inequality, and certify the computed Φ̃ with Math.Core (SPEC §3).
/// The derivation is in docs/theory.md §4, "Theorem FC".
module ResearchFramework.Proofs.FullyConnected

open System
open ResearchFramework.MathCore
open ResearchFramework.Proofs.Network

/// The constructed witness ω and the quantities its proof uses.
type FcWitness =
    { Activation: Activation
      /// Narrow layers (possibly none); the wide layer is `Wide`.
      Narrow: Layer list
      /// The direction u (rescaled so that the minimum gap of the z_i is about 1).
      Direction: float[]
      /// Permutation sorting z ascending: z[Order[0]] < z[Order[1]] < ….
      Order: int[]
      /// z_(0) < … < z_(n−1), with z_i = uᵀh(x_i) as computed.
      SortedZ: float[]
      /// δ = min_k (z_(k) − z_(k−1)) (+∞ when n = 1).
      MinGap: float
      /// θ: t_j = z_(j−1) + θ·(z_(j) − z_(j−1)); ½ for tanh/sigmoid, ¼ for softplus.
      ThresholdPosition: float
      /// t_1 < … < t_{n−1}.
      Thresholds: float[]
      /// a: wide unit k is σ(a·(uᵀh − t_{k mod (n−1)})).
      Slope: float
      /// The wide layer: row k = a·u, bias k = −a·t_{k mod (n−1)}.
      Wide: Layer
      /// Draws of the narrow layers until they were injective with a usable z.
      NarrowDraws: int
      /// Draws of u (total) until the z_i were distinct.
      DirectionDraws: int }

    member w.Network = { Activation = w.Activation; Layers = w.Narrow @ [ w.Wide ] }

/// The proof's inequality. With N = Φ̃_sub·M the normalised feature matrix (rows sorted by z,
/// columns: bias and the first n − 1 wide units) and T its limit as a → ∞:
///   ‖N − T‖_F ≤ ErrorBound(a, δ, n)  (lhs)   and   σ_min(T) ≥ β (rhs),
/// the slope is sufficient when lhs ≤ β/2; then σ_min(Φ̃) ≥ (β − lhs)/‖M‖₂ > 0.
type Inequality =
    { /// lhs: explicit upper bound on ‖N − T‖_F from δ, a, n and the activation's tail.
      ErrorBound: float
      /// rhs: explicit lower bound β on σ_min(T).
      LimitSigmaMinLower: float
      /// ‖N − T‖_F measured on the computed matrix (must be ≤ lhs).
      MeasuredError: float
      /// Upper bound on ‖M‖₂.
      NormalisationNorm: float
      /// a_eff: a for sigmoid and softplus, 2a for tanh ((1 + tanh(ay))/2 = sigmoid(2ay)).
      EffectiveSlope: float
      /// a*_eff: the proof's sufficient effective slope.
      SufficientEffectiveSlope: float
      /// (β − lhs)/‖M‖₂: the theorem's own lower bound on σ_min(Φ̃).
      TheoremSigmaMinLower: float
      /// lhs ≤ rhs/2.
      Holds: bool }

type FcResult =
    { Activation: Activation
      Inputs: int
      InputDim: int
      Widths: int list
      Seed: int
      /// Hypotheses of SPEC §5 that fail (empty when all hold).
      HypothesisFailures: string list
      /// The witness (None when a hypothesis fails).
      Witness: FcWitness option
      /// a (nan when there is no witness).
      Slope: float
      Inequality: Inequality option
      /// The network whose Φ̃ was certified (the witness, or a random one when hypotheses fail).
      Network: Network
      /// Φ̃ = [Φ, 1] in input order; null when Φ was streamed (`streamsFeatures`: the tiled engine, Φ never held
      /// whole, docs/theory.md §4 "Theorem FC"): recompute rows with `featureRows Network x` if needed.
      PhiTilde: float[,]
      Certificate: Certificate
      /// Math.Core's bound corrected for flushed entries.
      CertifiedSigmaMinLower: float
      FlushedEntries: int64 }

/// θ (threshold position between consecutive sorted z).
let thresholdPosition (act: Activation) =
    match act with
    | Softplus -> 0.25
    | _ -> 0.5

/// β: explicit lower bound on σ_min(T).
///  * tanh/sigmoid: T = lower-triangular matrix of ones L (bias first), L⁻¹ = I − S, so
///    σ_min(T) ≥ 1/‖I − S‖₂ ≥ 1/2.
///  * softplus: T = [1, (z_i − t_j)_+] = D⁻¹ Γ T₀ with D the row-difference matrix (‖D‖₂ ≤ 2),
///    Γ = diag(1, gaps) (σ_min ≥ min(1, δ)), T₀ = diag(1, L − θI) and
///    L − θI = L((1 − θ)I + θS), ‖((1−θ)I + θS)⁻¹‖₂ ≤ 1/(1 − 2θ): σ_min(T) ≥ min(1,δ)(1 − 2θ)/4.
let limitSigmaMinLower (act: Activation) (theta: float) (delta: float) =
    match act with
    | Softplus -> min 1.0 delta * (1.0 - 2.0 * theta) / 4.0
    | _ -> 0.5

/// lhs(a_eff): row i sees thresholds at distances ≥ θ'δ + kδ (k = 0, 1, …) on each side,
/// θ' = min(θ, 1 − θ), and each error entry is ≤ e^{−a_eff·dist} (sigmoid(−y) ≤ e^{−y},
/// softplus(−y)/a ≤ e^{−y}/a), so ‖E‖_F² ≤ 2n·e^{−2 a θ' δ}/(1 − e^{−2aδ}) (· 1/a² for softplus).
let errorBound (act: Activation) (n: int) (theta: float) (delta: float) (aEff: float) =
    if n <= 1 then 0.0
    else
        let t' = min theta (1.0 - theta)
        let sq = 2.0 * float n * exp (-2.0 * aEff * t' * delta) / (1.0 - exp (-2.0 * aEff * delta))
        let e = sqrt sq
        match act with
        | Softplus -> e / aEff
        | _ -> e

/// a*_eff: with e^{−2aδ} ≤ 1/4 (aδ ≥ ln 2) the bound is ≤ (8n/3) e^{−2aθ'δ} (÷ a² ≤ 1 for
/// softplus, a ≥ 1), which is ≤ (β/2)² once 2aθ'δ ≥ ln(32n/(3β²)).
let sufficientEffectiveSlope (act: Activation) (n: int) (theta: float) (delta: float) =
    let beta = limitSigmaMinLower act theta delta
    let t' = min theta (1.0 - theta)
    let a = max (log 2.0 / delta) (log (32.0 * float (max n 1) / (3.0 * beta * beta)) / (2.0 * t' * delta))
    match act with
    | Softplus -> max 1.0 a
    | _ -> a

/// ‖M‖₂ bound: 1 (sigmoid), ‖M‖_F = √(1 + (n−1)/2) (tanh: N_j = (φ_j + 1)/2),
/// max(1, 1/a) (softplus: N_j = φ_j / a).
let normalisationNorm (act: Activation) (n: int) (slope: float) =
    match act with
    | Sigmoid -> 1.0
    | Tanh -> sqrt (1.0 + float (n - 1) / 2.0)
    | Softplus -> max 1.0 (1.0 / slope)
    | Relu -> nan

let effectiveSlope (act: Activation) (a: float) = (match act with Tanh -> 2.0 * a | _ -> a)

/// The limit entry T_ij for sorted row i and threshold t.
let private limitEntry (act: Activation) (z: float) (t: float) =
    match act with
    | Softplus -> max 0.0 (z - t)
    | _ -> if z > t then 1.0 else 0.0

/// The normalised entry N_ij from a feature value φ of a wide unit.
let private normalised (act: Activation) (slope: float) (phi: float) =
    match act with
    | Tanh -> (phi + 1.0) / 2.0
    | Softplus -> phi / slope
    | _ -> phi

/// ‖N − T‖_F of a witness measured on Φ given in row blocks (any order, each row once): `Add(r0, block)` takes rows
/// r0 … of Φ (input order) and keeps each row's Σ_j (N_ij − T_ij)² over the n − 1 threshold columns; `Value` sums them
/// in sorted order (z ascending) and takes the root. The sum does not depend on how Φ was cut into blocks, so the
/// streamed witness (Φ never whole) measures bitwise what `measuredError` measures on the whole Φ.
type MeasuredError(w: FcWitness) =
    let n = w.SortedZ.Length
    // the sorted position r of input i: Order[r] = i
    let position = Array.zeroCreate<int> n
    do w.Order |> Array.iteri (fun r i -> position.[i] <- r)
    let rowSquares = Array.create n nan
    /// Rows r0 … r0 + rows − 1 of Φ (input order).
    member _.Add(r0: int, block: float[,]) =
        for k in 0 .. Array2D.length1 block - 1 do
            let i = r0 + k
            let r = position.[i]
            let mutable s = 0.0
            for j in 0 .. n - 2 do
                let e = normalised w.Activation w.Slope block.[k, j] - limitEntry w.Activation w.SortedZ.[r] w.Thresholds.[j]
                s <- s + e * e
            rowSquares.[i] <- s
    /// ‖N − T‖_F (NaN while a row is missing).
    member _.Value =
        let mutable s = 0.0
        for r in 0 .. n - 1 do
            s <- s + rowSquares.[w.Order.[r]]
        sqrt s

/// ‖N − T‖_F measured on Φ (features, input order) of the witness.
let measuredError (w: FcWitness) (phi: float[,]) =
    let e = MeasuredError w
    e.Add(0, phi)
    e.Value

/// The inequality for a witness whose ‖N − T‖_F measured `measured`.
let inequalityMeasured (w: FcWitness) (measured: float) : Inequality =
    let n = w.SortedZ.Length
    let aEff = effectiveSlope w.Activation w.Slope
    let beta = limitSigmaMinLower w.Activation w.ThresholdPosition w.MinGap
    let lhs = errorBound w.Activation n w.ThresholdPosition w.MinGap aEff
    let mNorm = normalisationNorm w.Activation n w.Slope
    { ErrorBound = lhs
      LimitSigmaMinLower = beta
      MeasuredError = measured
      NormalisationNorm = mNorm
      EffectiveSlope = aEff
      SufficientEffectiveSlope = sufficientEffectiveSlope w.Activation n w.ThresholdPosition w.MinGap
      TheoremSigmaMinLower = (beta - lhs) / mNorm
      Holds = lhs <= beta / 2.0 }

/// The inequality for a witness and its Φ.
let inequalityOf (w: FcWitness) (phi: float[,]) : Inequality = inequalityMeasured w (measuredError w phi)

/// z = h·u.
let project (h: float[,]) (u: float[]) : float[] =
    Array.init (Array2D.length1 h) (fun i ->
        let mutable s = 0.0
        for k in 0 .. u.Length - 1 do
            s <- s + u.[k] * h.[i, k]
        s)

let private sortedWithGap (z: float[]) =
    let order = Array.init z.Length id |> Array.sortBy (fun i -> z.[i])
    let sorted = order |> Array.map (fun i -> z.[i])
    let gap = if sorted.Length < 2 then infinity else sorted |> Array.pairwise |> Array.map (fun (a, b) -> b - a) |> Array.min
    order, sorted, gap

/// The wide layer for slope a, direction u and thresholds (unit k uses t_{k mod (n−1)}).
let wideLayer (m: int) (u: float[]) (slope: float) (thresholds: float[]) (fallback: float) : Layer =
    let t k = if thresholds.Length = 0 then fallback else thresholds.[k % thresholds.Length]
    { Weight = Array2D.init m u.Length (fun _ q -> slope * u.[q])
      Bias = Array.init m (fun k -> -slope * t k) }

/// Maximum draws of narrow layers, and directions drawn per narrow draw.
let maxNarrowDraws = 20
let directionCandidates = 8

/// The hypotheses of SPEC §5 that fail.
let hypothesisFailures (act: Activation) (x: float[,]) (widths: int list) : string list =
    let n = Array2D.length1 x
    [ match duplicateRows x with
      | Some (i, j) -> sprintf "inputs %d and %d are identical (the theorem needs distinct inputs)" i j
      | None -> ()
      match List.tryLast widths with
      | Some m when m + 1 < n -> sprintf "wide width m = %d but m + 1 < n = %d (rank Φ̃ ≤ m + 1)" m n
      | _ -> ()
      if not act.IsAnalytic then sprintf "%s is not real analytic (the theorem assumes tanh, sigmoid or softplus)" act.Name ]

let private architectureName (act: Activation) (d: int) (widths: int list) =
    sprintf "fc %s %s (wide last layer, readout with bias)" act.Name (String.Join("-", d :: widths))

/// Bytes the whole-matrix route holds for Φ (n × m) besides the engine: Φ, its flushed copy, the tensor handed to
/// the engine and Φ̃ kept in the result, four float64 n × m matrices.
let wholeFeatureBytes (n: int) (m: int) : int64 = 4L * 8L * int64 n * int64 m

/// Whether the witness's Φ is streamed in row blocks to the tiled engine (`certifyFeatureRowsOn`) instead of being
/// built whole: the engine is tiled for n rows once the whole route's Φ is counted against its memory budget
/// (`CertificateEngine.UsesTiled(n, budget − wholeFeatureBytes n m)`: Tiled always, Dense never, Auto when the dense
/// Gram's 32·n² and Φ's four copies together exceed the budget; n = 60,000 needs ≈ 115 GB + 115 GB whole).
let streamsFeatures (engine: CertificateEngine) (n: int) (m: int) : bool =
    engine.UsesTiled(n, engine.MemoryBudgetBytes - wholeFeatureBytes n m)

/// Build the witness deterministically from the seed and certify it on the engine `engine` picks (`CertificateEngine`):
/// Φ whole for the dense engine, streamed in row blocks for the tiled one (`streamsFeatures`; PhiTilde is then null).
/// `log` (may be null) receives the tiled engine's phase lines on the streamed route.
let proveOnLogged (engine: CertificateEngine) (log: Action<string>) (act: Activation) (x: float[,]) (widths: int list) (seed: int) : FcResult =
    let n = Array2D.length1 x
    let d = Array2D.length2 x
    if n < 1 || d < 1 then invalidArg "x" (sprintf "need at least one input of dimension ≥ 1, got %d × %d" n d)
    if widths.IsEmpty then invalidArg "widths" "no layers: the widths must end with the wide width m"
    if widths |> List.exists (fun w -> w < 1) then invalidArg "widths" (sprintf "every width must be ≥ 1, got %A" widths)
    let failures = hypothesisFailures act x widths
    let g = Gaussian seed
    let finish (net: Network) (witness: FcWitness option) =
        let m = List.last widths
        let subject = subjectOf (architectureName act d widths) net x m
        let fc, inequality, phiTilde =
            if streamsFeatures engine n m then
                // Φ in row blocks, never whole: the certificate on tiles, ‖N − T‖_F and the flushes block by block
                let measured = witness |> Option.map MeasuredError
                let fc = certifyFeatureRowsOn engine log subject (featureRows net x) (fun r0 block -> measured |> Option.iter (fun e -> e.Add(r0, block)))
                fc, Option.map2 (fun w (e: MeasuredError) -> inequalityMeasured w e.Value) witness measured, null
            else
                let phi = features net x
                certifyFeaturesOn engine subject phi, witness |> Option.map (fun w -> inequalityOf w phi), withBias phi
        { Activation = act; Inputs = n; InputDim = d; Widths = widths; Seed = seed
          HypothesisFailures = failures; Witness = witness
          Slope = (match witness with Some w -> w.Slope | None -> nan)
          Inequality = inequality
          Network = net; PhiTilde = phiTilde; Certificate = fc.Certificate
          CertifiedSigmaMinLower = fc.SigmaMinLower; FlushedEntries = fc.FlushedEntries }
    let narrowWidths = if widths.IsEmpty then [] else List.take (widths.Length - 1) widths
    let drawNarrow () =
        narrowWidths
        |> List.fold (fun (layers, inputs) w -> layers @ [ randomLayer g inputs w ], w) ([], d)
        |> fst
    if not failures.IsEmpty then
        // No witness exists (or the theorem does not apply): certify a generic network anyway,
        // so the certificate shows what can be proved (Refuted for duplicates or m + 1 < n).
        let narrow = drawNarrow ()
        let last = narrowWidths |> List.tryLast |> Option.defaultValue d
        finish { Activation = act; Layers = narrow @ [ randomLayer g last (List.last widths) ] } None
    else
    let m = List.last widths
    let theta = thresholdPosition act
    let mutable directionDraws = 0
    let rec attempt draw =
        if draw > maxNarrowDraws then
            failwithf "no injective narrow layers with distinct projections in %d draws (seed %d)" maxNarrowDraws seed
        let narrow = drawNarrow ()
        let states = hiddenStates { Activation = act; Layers = narrow } x
        let injective = states |> List.forall (fun h -> (duplicateRows h).IsNone)
        if not injective then attempt (draw + 1)
        else
        let h = List.last states
        let width = Array2D.length2 h
        // Draw `directionCandidates` generic directions and keep the one with the largest
        // relative gap δ/range (better conditioning of Φ̃; any of them proves the theorem).
        let candidates =
            [ for _ in 1 .. directionCandidates do
                  directionDraws <- directionDraws + 1
                  let u = g.Vector width
                  let _, sorted, gap = sortedWithGap (project h u)
                  let scale = sorted |> Array.map abs |> Array.fold max 0.0
                  let range = if sorted.Length = 0 then 0.0 else sorted.[sorted.Length - 1] - sorted.[0]
                  // distinct, and separated well above the rounding of the projection
                  if n < 2 then yield u, 1.0
                  elif gap > 1e-10 * max scale 1e-300 then yield u, gap / range ]
        let direction =
            match candidates with
            | [] -> None
            | cs ->
                let u, _ = cs |> List.maxBy snd
                let gap = let _, _, g0 = sortedWithGap (project h u) in g0
                let u' = if n < 2 then u else u |> Array.map (fun v -> v / gap)
                let order, sorted', gap' = sortedWithGap (project h u')
                if n < 2 || gap' > 0.0 then Some (u', order, sorted', gap') else None
        match direction with
        | None -> attempt (draw + 1)
        | Some (u, order, sorted, delta) ->
            let thresholds = Array.init (max 0 (n - 1)) (fun j -> sorted.[j] + theta * (sorted.[j + 1] - sorted.[j]))
            let aEff = sufficientEffectiveSlope act n theta (if n < 2 then 1.0 else delta)
            let slope = match act with Tanh -> aEff / 2.0 | _ -> aEff
            let fallback = if n = 0 then 0.0 else sorted.[0] - 1.0
            let w =
                { Activation = act; Narrow = narrow; Direction = u; Order = order; SortedZ = sorted
                  MinGap = delta; ThresholdPosition = theta; Thresholds = thresholds; Slope = slope
                  Wide = wideLayer m u slope thresholds fallback
                  NarrowDraws = draw; DirectionDraws = directionDraws }
            finish w.Network (Some w)
    attempt 1

/// `proveOnLogged` without a log.
let proveOn (engine: CertificateEngine) (act: Activation) (x: float[,]) (widths: int list) (seed: int) : FcResult =
    proveOnLogged engine null act x widths seed

/// `proveOn` with `CertificateEngine.Default`.
let prove (act: Activation) (x: float[,]) (widths: int list) (seed: int) : FcResult = proveOn CertificateEngine.Default act x widths seed

/// Everything the checker rejects about a witness (empty: the proof's hypotheses and its
/// inequality hold for this witness on these inputs).
let check (x: float[,]) (w: FcWitness) : string list =
    let n = Array2D.length1 x
    let states = hiddenStates { Activation = w.Activation; Layers = w.Narrow } x
    let h = List.last states
    let z = project h w.Direction
    let sorted = w.Order |> Array.map (fun i -> z.[i])
    let theta' = min w.ThresholdPosition (1.0 - w.ThresholdPosition)
    [ if not w.Activation.IsAnalytic then yield sprintf "activation %s is not real analytic" w.Activation.Name
      for l in 1 .. states.Length - 1 do
          match duplicateRows states.[l] with
          | Some (i, j) -> yield sprintf "layer %d is not injective: rows %d and %d coincide" l i j
          | None -> ()
      if w.Order.Length <> n || (Array.sort (Array.copy w.Order)) <> Array.init n id then yield "Order is not a permutation of the inputs"
      elif sorted <> w.SortedZ then yield "SortedZ is not uᵀh(x) in the recorded order"
      else
          for k in 1 .. n - 1 do
              if not (sorted.[k] > sorted.[k - 1]) then yield sprintf "z is not strictly increasing at position %d" k
              elif sorted.[k] - sorted.[k - 1] < w.MinGap then yield sprintf "gap %g at position %d is below the recorded δ = %g" (sorted.[k] - sorted.[k - 1]) k w.MinGap
          if w.Thresholds.Length <> max 0 (n - 1) then yield sprintf "%d thresholds for n = %d (need n − 1)" w.Thresholds.Length n
          else
              for j in 0 .. n - 2 do
                  let lo, hi, t = sorted.[j], sorted.[j + 1], w.Thresholds.[j]
                  if not (lo < t && t < hi) then yield sprintf "threshold t_%d = %g is not between z_(%d) = %g and z_(%d) = %g" (j + 1) t j lo (j + 1) hi
                  // the distances are computed in float64: allow their rounding, 8u·max(|lo|, |hi|)
                  elif min (t - lo) (hi - t) < theta' * (hi - lo) - 8.0 * FloatingPoint.unitRoundoff64 * max (abs lo) (abs hi) then
                      yield sprintf "threshold t_%d is closer than θ'·gap to a neighbour" (j + 1)
      let m = w.Wide.Outputs
      if m + 1 < n then yield sprintf "wide width %d < n − 1 = %d" m (n - 1)
      let expected = wideLayer m w.Direction w.Slope w.Thresholds (if n = 0 then 0.0 else w.SortedZ.[0] - 1.0)
      if expected.Weight <> w.Wide.Weight || expected.Bias <> w.Wide.Bias then yield "the wide layer is not σ(a(uᵀh − t_j))"
      let aEff = effectiveSlope w.Activation w.Slope
      let aStar = sufficientEffectiveSlope w.Activation n w.ThresholdPosition w.MinGap
      if n >= 2 && aEff < aStar then yield sprintf "slope too small: a_eff = %g < a* = %g" aEff aStar
      if n >= 2 && w.Thresholds.Length = n - 1 then
          let ineq = inequalityOf w (features w.Network x)
          if not ineq.Holds then yield sprintf "inequality fails: ‖E‖ bound %g > β/2 = %g" ineq.ErrorBound (ineq.LimitSigmaMinLower / 2.0)
          if not (ineq.MeasuredError <= ineq.ErrorBound * (1.0 + 1e-9) + 1e-12) then
              yield sprintf "measured ‖N − T‖_F = %g exceeds the bound %g" ineq.MeasuredError ineq.ErrorBound ]

/// Standard normal inputs (n × d) from a seed.
let randomInputs (seed: int) (n: int) (d: int) : float[,] =
    let g = Gaussian(seed * 7919 + 17)
    g.Matrix(n, d)

/// range(z)/δ of a witness (1 when n < 2). For softplus, κ(Φ̃) grows with it (ramps at
/// neighbouring thresholds are nearly collinear), and the float64 Gram test may be Inconclusive
/// once it is large (we certify reliably up to about 1e4 for n ≤ 40).
let spread (w: FcWitness) : float =
    let n = w.SortedZ.Length
    if n < 2 then 1.0 else (w.SortedZ.[n - 1] - w.SortedZ.[0]) / w.MinGap

/// The spread up to which the tests require softplus witnesses to be Certified.
let softplusCertifiableSpread = 1e4

/// Parse `--widths 3,3,200` (comma-separated positive integers; the last is the wide layer).
let parseWidths (text: string) : int list =
    if System.String.IsNullOrWhiteSpace text then invalidArg "widths" "expected comma-separated widths, e.g. 3,3,200"
    text.Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
    |> Array.map (fun w ->
        match Int32.TryParse w with
        | true, v when v >= 1 -> v
        | _ -> invalidArg "widths" (sprintf "width '%s' is not a positive integer" w))
    |> List.ofArray

/// Input dimension used by `runFc`.
let defaultInputDim = 4

/// `rf prove fc --n N --widths w1,…,m [--seed S] [--activation tanh]`: n Gaussian inputs in
/// R^4 (seeded), the given widths (the last is the wide layer), certified on `engine`.
/// The tiled engine's phase lines go to `log` (may be null).
let runFcOnLogged (engine: CertificateEngine) (log: Action<string>) (act: Activation) (n: int) (widths: int list) (seed: int) : FcResult =
    proveOnLogged engine log act (randomInputs seed n defaultInputDim) widths seed

/// `runFcOnLogged` without a log.
let runFcOn (engine: CertificateEngine) (act: Activation) (n: int) (widths: int list) (seed: int) : FcResult =
    runFcOnLogged engine null act n widths seed

/// `runFcOn` with `CertificateEngine.Default`.
let runFcWith (act: Activation) (n: int) (widths: int list) (seed: int) : FcResult = runFcOn CertificateEngine.Default act n widths seed

/// `rf prove fc --n N --widths w1,…,m --seed S` with tanh.
let runFc (n: int) (widths: int list) (seed: int) : FcResult = runFcWith Tanh n widths seed

/// The lines `rf prove fc` prints.
let report (r: FcResult) : string =
    let sb = Text.StringBuilder()
    let line (s: string) = sb.AppendLine s |> ignore
    line (sprintf "FC theorem (SPEC §5): n = %d inputs in R^%d, widths %s, activation %s, seed %d"
              r.Inputs r.InputDim (String.Join(",", r.Widths)) r.Activation.Name r.Seed)
    for f in r.HypothesisFailures do line (sprintf "  hypothesis fails: %s" f)
    match r.Witness, r.Inequality with
    | Some w, Some q ->
        line (sprintf "  witness: %d narrow draw(s), %d direction draw(s); δ = %.6g (min gap of sorted z), θ = %g"
                  w.NarrowDraws w.DirectionDraws w.MinGap w.ThresholdPosition)
        line (sprintf "  slope a = %.6g (a_eff = %.6g ≥ a* = %.6g)" w.Slope q.EffectiveSlope q.SufficientEffectiveSlope)
        line (sprintf "  inequality: ‖N − T‖_F ≤ %.6g (measured %.6g) ≤ β/2 = %.6g: %s"
                  q.ErrorBound q.MeasuredError (q.LimitSigmaMinLower / 2.0) (if q.Holds then "holds" else "FAILS"))
        line (sprintf "  theorem bound: σ_min(Φ̃) ≥ (β − lhs)/‖M‖ = %.6g" q.TheoremSigmaMinLower)
    | _ -> ()
    let c = r.Certificate
    line (sprintf "  certificate: %O; σ_min(Φ̃) ≥ %.6g; σ_max ≤ %.6g; %s" c.Verdict r.CertifiedSigmaMinLower c.SigmaMaxUpper c.Reason)
    if isNull r.PhiTilde then line "  (Φ̃ streamed in row blocks to the tiled engine, never held whole)"
    if r.FlushedEntries > 0L then line (sprintf "  (%d entries below 1e-150 flushed to 0 before the Gram test; bound corrected)" r.FlushedEntries)
    line (sprintf "  time %.3f s" c.ElapsedSeconds)
    sb.ToString()

/// Exit status for `rf prove fc`: 0 Certified, 1 Refuted, 2 Inconclusive.
let exitCode (r: FcResult) : int =
    match r.Certificate.Verdict with
    | Verdict.Certified -> 0
    | Verdict.Refuted -> 1
    | _ -> 2
