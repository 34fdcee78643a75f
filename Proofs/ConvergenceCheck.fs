/// The SPEC §4 theorem as a checker over a recorded Phase II trajectory (squared loss,
/// full-batch readout steps):
///   √L_{t+1} ≤ (1 − η_t s_t²/n) √L_t + d_t,   d_t = Lip_t · α_t‖Δω_t‖ · ‖V_{t+1}‖₂ / √(2n),
/// with s_t a lower bound on σ_min(Φ̃_t) (κs under the guard) and η_t ≤ n/σ_max(Φ̃_t)², plus
/// evidence that Σ d_t < ∞. Pure functions over a record of arrays, so a trainer's output can be
/// fed to it. Derivation: docs/theory.md §4, "Theorem (convergence)".
module ResearchFramework.Proofs.ConvergenceCheck

open System
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Proofs.Network

/// A recorded Phase II trajectory of T steps. Per-step arrays have length T (index t is the
/// step θ_t → θ_{t+1}); Loss has length T + 1.
type Trajectory =
    { /// n, the number of training points of the full-batch loss.
      N: int
      /// L_t = (1/2n)‖Φ̃_t V_tᵀ − Y‖_F², t = 0..T.
      Loss: float[]
      /// s_t ≤ σ_min(Φ̃_t) (e.g. κ·s, guaranteed by the guard).
      SigmaMinLower: float[]
      /// An upper bound on σ_max(Φ̃_t).
      SigmaMaxUpper: float[]
      /// η_t, the readout's step size.
      StepSize: float[]
      /// ‖Δω_t‖: the base algorithm's (undamped) body step; the body moves by α_t·Δω_t.
      BodyMovement: float[]
      /// α_t, the body damping.
      Damping: float[]
      /// Lip_t: ‖Φ̃(ω') − Φ̃(ω)‖_F ≤ Lip_t‖ω' − ω‖ on the segment [ω_t, ω_{t+1}].
      FeatureLipschitz: float[]
      /// An upper bound on ‖V_{t+1}‖₂ (the Frobenius norm will do).
      ReadoutNorm: float[] }

    member tr.Steps = tr.StepSize.Length

type Options =
    { /// Allowed rounding in the per-step inequality: RelativeSlack·√L_t + AbsoluteSlack.
      RelativeSlack: float
      AbsoluteSlack: float
      /// p > 1 of the envelope d_t ≤ C (t + 1)^(−p) used for the infinite-horizon bound.
      Exponent: float
      /// Largest accepted Σ(last half of d) / Σ(all d) (a non-summable constant forcing gives ½).
      MaxTailRatio: float
      /// Optional budget: every partial sum of d must stay below it.
      ForcingBudget: float option }

let defaults =
    { RelativeSlack = 1e-10; AbsoluteSlack = 1e-14; Exponent = 2.0; MaxTailRatio = 0.25; ForcingBudget = None }

type StepViolation =
    { Step: int
      /// √L_{t+1}
      Lhs: float
      /// (1 − η s²/n)√L_t + d_t
      Rhs: float }

type Report =
    { Steps: int
      /// d_t for every step.
      Forcing: float[]
      /// 1 − η_t s_t²/n.
      Contraction: float[]
      /// Steps where the per-step inequality fails.
      Violations: StepViolation list
      /// Steps with η_t > n/σ_max,t² (the contraction argument does not apply).
      StepSizeViolations: int list
      /// Steps with malformed records (NaN, negative norms, s_t ≤ 0).
      InvalidSteps: int list
      /// Σ_{k ≤ t} d_k.
      PartialSums: float[]
      /// C = max_t d_t (t + 1)^p.
      ForcingEnvelope: float
      /// C·ζ(p) (upper bound of Σ_{t≥0} d_t under the envelope assumption), ∞ if p ≤ 1.
      InfiniteHorizonForcingBound: float
      /// Σ(last half of d) / Σ(all d); 0 when every d_t = 0.
      TailRatio: float
      Summable: bool
      /// b_T from b_0 = √L_0, b_{t+1} = c_t b_t + d_t: the bound the theorem gives for √L_T.
      FinalBound: float
      Ok: bool
      Reasons: string list }

/// d_t = Lip_t · α_t‖Δω_t‖ · ‖V_{t+1}‖₂ / √(2n).
let forcing (tr: Trajectory) : float[] =
    Array.init tr.Steps (fun t ->
        tr.FeatureLipschitz.[t] * tr.Damping.[t] * tr.BodyMovement.[t] * tr.ReadoutNorm.[t] / sqrt (2.0 * float tr.N))

/// ζ(p) upper bound: 1 + 1/(p − 1) (integral test).
let private zetaUpper (p: float) = if p <= 1.0 then infinity else 1.0 + 1.0 / (p - 1.0)

/// Check a trajectory against the theorem's per-step bound and the summability of d_t.
let check (opts: Options) (tr: Trajectory) : Report =
    let steps = tr.Steps
    let lengths =
        [ "Loss", tr.Loss.Length, steps + 1; "SigmaMinLower", tr.SigmaMinLower.Length, steps
          "SigmaMaxUpper", tr.SigmaMaxUpper.Length, steps; "BodyMovement", tr.BodyMovement.Length, steps
          "Damping", tr.Damping.Length, steps; "FeatureLipschitz", tr.FeatureLipschitz.Length, steps
          "ReadoutNorm", tr.ReadoutNorm.Length, steps ]
    match lengths |> List.tryFind (fun (_, l, e) -> l <> e) with
    | Some (name, l, e) -> invalidArg name (sprintf "%s has %d entries, expected %d (T = %d steps)" name l e steps)
    | None -> ()
    if tr.N <= 0 then invalidArg "N" "n must be positive"
    let n = float tr.N
    let d = forcing tr
    let valid t =
        let xs = [ tr.Loss.[t]; tr.Loss.[t + 1]; tr.SigmaMinLower.[t]; tr.SigmaMaxUpper.[t]; tr.StepSize.[t]
                   tr.BodyMovement.[t]; tr.Damping.[t]; tr.FeatureLipschitz.[t]; tr.ReadoutNorm.[t] ]
        xs |> List.forall (fun v -> Double.IsFinite v && v >= 0.0) && tr.SigmaMinLower.[t] > 0.0
    let invalid = [ for t in 0 .. steps - 1 do if not (valid t) then yield t ]
    let contraction = Array.init steps (fun t -> 1.0 - tr.StepSize.[t] * tr.SigmaMinLower.[t] ** 2.0 / n)
    let stepSize = [ for t in 0 .. steps - 1 do if tr.StepSize.[t] > n / (tr.SigmaMaxUpper.[t] ** 2.0) then yield t ]
    let violations =
        [ for t in 0 .. steps - 1 do
              let a, b = sqrt tr.Loss.[t], sqrt tr.Loss.[t + 1]
              let rhs = contraction.[t] * a + d.[t]
              if not (b <= rhs + opts.RelativeSlack * a + opts.AbsoluteSlack) then yield { Step = t; Lhs = b; Rhs = rhs } ]
    let partial = Array.scan (+) 0.0 d |> Array.tail
    let envelope = d |> Array.mapi (fun t v -> v * float (t + 1) ** opts.Exponent) |> Array.fold max 0.0
    let total = Array.sum d
    let tail = if total = 0.0 then 0.0 else (d |> Array.skip (steps / 2) |> Array.sum) / total
    let horizon = if envelope = 0.0 then 0.0 else envelope * zetaUpper opts.Exponent
    let budgetOk = match opts.ForcingBudget with Some b -> partial |> Array.forall (fun s -> s <= b) | None -> true
    let summable = Double.IsFinite horizon && tail <= opts.MaxTailRatio && budgetOk
    let finalBound = Array.fold2 (fun b c f -> c * b + f) (if tr.Loss.Length > 0 then sqrt tr.Loss.[0] else 0.0) contraction d
    let reasons =
        [ if not invalid.IsEmpty then yield sprintf "%d malformed step(s), first %d" invalid.Length invalid.Head
          if not stepSize.IsEmpty then yield sprintf "η_t > n/σ_max² at %d step(s), first %d" stepSize.Length stepSize.Head
          if not violations.IsEmpty then
              let v = violations.Head
              yield sprintf "per-step bound fails at %d step(s), first t = %d: √L_{t+1} = %g > %g" violations.Length v.Step v.Lhs v.Rhs
          if not summable then yield sprintf "forcing not shown summable: tail ratio %g (max %g), envelope bound %g%s" tail opts.MaxTailRatio horizon (if budgetOk then "" else ", budget exceeded") ]
    { Steps = steps; Forcing = d; Contraction = contraction; Violations = violations; StepSizeViolations = stepSize
      InvalidSteps = invalid; PartialSums = partial; ForcingEnvelope = envelope; InfiniteHorizonForcingBound = horizon
      TailRatio = tail; Summable = summable; FinalBound = finalBound; Ok = reasons.IsEmpty; Reasons = reasons }

let private toTensor (a: float[,]) =
    let r, c = Array2D.length1 a, Array2D.length2 a
    use flat = torch.tensor(Array.init (r * c) (fun k -> a.[k / c, k % c]), dtype = torch.float64)
    flat.reshape(int64 r, int64 c)

/// A synthetic Phase II run in TorchSharp: full-batch gradient descent on the readout V of the
/// squared loss over Φ̃_t, with a "body" that is Φ (without its bias column) itself, so that
/// Lip_t = 1 exactly. Each step: R_t = Φ̃_t V_tᵀ − Y, V_{t+1} = V_t − (η/n) R_tᵀ Φ̃_t, and
/// Φ_{t+1} = Φ_t + α_t Δ_t with ‖Δ_t‖_F = bodyStep (a seeded Gaussian direction; 0 = frozen body).
/// `sigmaMinLower` must bound σ_min(Φ̃_0) below; the recorded s_t is
/// sigmaMinLower − Σ_{k<t} α_k·bodyStep (Weyl), σ_max likewise; α_t = (t + 1)^(−2).
let readoutGradientDescent (phiTilde: float[,]) (targets: float[,]) (sigmaMinLower: float) (sigmaMaxUpper: float)
                           (etaFraction: float) (bodyStep: float) (steps: int) (seed: int) : Trajectory =
    let n, cols = Array2D.length1 phiTilde, Array2D.length2 phiTilde
    let c = Array2D.length2 targets
    let g = Gaussian seed
    let movedBefore = Array.scan (+) 0.0 (Array.init steps (fun t -> bodyStep / float (t + 1) ** 2.0))
    let sMin = Array.init steps (fun t -> sigmaMinLower - movedBefore.[t])
    let sMax = Array.init steps (fun t -> sigmaMaxUpper + movedBefore.[t])
    let eta = Array.init steps (fun t -> etaFraction * float n / sMax.[t] ** 2.0)
    let y = toTensor targets
    let mutable phi = toTensor phiTilde
    let mutable v = torch.zeros([| int64 c; int64 cols |], dtype = torch.float64)
    let loss () =
        use pred = phi.mm(v.t())
        use r = pred.sub(y)
        let s = r.norm().item<float> ()
        s * s / (2.0 * float n)
    let losses = Array.zeroCreate (steps + 1)
    let vNorms = Array.zeroCreate steps
    losses.[0] <- loss ()
    for t in 0 .. steps - 1 do
        use pred = phi.mm(v.t())
        use r = pred.sub(y)
        use gradRaw = r.t().mm(phi)
        use grad = gradRaw.mul(scalar (eta.[t] / float n))
        let vNext = v.sub(grad)
        let alpha = 1.0 / float (t + 1) ** 2.0
        let phiNext =
            if bodyStep = 0.0 then phi.clone()
            else
                let dir = Array2D.init n cols (fun _ j -> if j = cols - 1 then 0.0 else g.Next())
                let norm = sqrt (dir |> Seq.cast<float> |> Seq.sumBy (fun a -> a * a))
                use delta = toTensor (dir |> Array2D.map (fun a -> a * bodyStep / norm))
                use step = delta.mul(scalar alpha)
                phi.add(step, one)
        v.Dispose()
        phi.Dispose()
        v <- vNext
        phi <- phiNext
        vNorms.[t] <- v.norm().item<float> ()
        losses.[t + 1] <- loss ()
    v.Dispose()
    phi.Dispose()
    y.Dispose()
    { N = n; Loss = losses; SigmaMinLower = sMin; SigmaMaxUpper = sMax; StepSize = eta
      BodyMovement = Array.create steps bodyStep
      Damping = Array.init steps (fun t -> 1.0 / float (t + 1) ** 2.0)
      FeatureLipschitz = Array.create steps 1.0
      ReadoutNorm = vNorms }
