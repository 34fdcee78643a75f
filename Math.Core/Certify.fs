/// Certified full row rank of Φ̃ (SPEC §3): a verified positive-definiteness test of the
/// float64 Gram matrix after S. M. Rump, "Verification of positive definiteness", BIT 46
/// (2006), with Demmel's Cholesky backward-error bound (Higham, ch. 10). See docs/theory.md.
///
/// If floating-point Cholesky of Ã = fl(fl(G) − cI) succeeds, then RᵀR = Ã + ΔA with
/// ‖ΔA‖₂ ≤ γ'_{n+1} tr(Ã), γ' = γ/(1−γ), and RᵀR ⪰ 0, so
///   λ_min(fl G) ≥ c − u·max_i|G_ii − c| − γ'_{n+1} tr(Ã),
///   λ_min(G)    ≥ λ_min(fl G) − γ_{m'} Σ_i ‖φ̃_i‖².
/// A positive right-hand side proves rank Φ̃ = n and σ_min(Φ̃) ≥ √(that bound).
module ResearchFramework.MathCore.Certify

open System
open System.Diagnostics
open TorchSharp
open ResearchFramework.MathCore.Gram

/// Tunables of the certificate; none of them affects soundness, only success and speed.
type Options =
    { /// Fractions of the λ_min estimate tried as the shift c, in order.
      ShiftFractions: float list
      /// Inverse-iteration steps for the λ_min estimate.
      InverseIterations: int
      /// Power-iteration steps for the σ_max estimate.
      PowerIterations: int
      /// Columns per block when streaming an in-memory Φ.
      BlockColumns: int }

let defaults =
    { ShiftFractions = [ 0.75; 0.25; 1.0 / 16.0; 1.0 / 256.0 ]
      InverseIterations = 16
      PowerIterations = 30
      BlockColumns = 4096 }

/// Exact row access used to confirm a duplicate-row candidate: true iff rows i and j of Φ̃ are
/// bitwise equal. Sources that cannot re-read rows pass `None` (no refutation by duplicates).
type RowEquality = (int -> int -> bool) option


/// Floating-point estimate of λ_min(fl G): Rayleigh quotient after inverse iteration with the
/// Cholesky factor of fl(G) (never below λ_min(fl G)); eigvalsh when that Cholesky fails.
let estimateLambdaMin (iterations: int) (g: torch.Tensor) : float =
    use scope = torch.NewDisposeScope()
    let struct (l, info) = torch.linalg.cholesky_ex(g, false)
    if info.item<int> () <> 0 then
        torch.linalg.eigvalsh(g).[0].item<float> ()
    else
        let n = g.shape.[0]
        let gen = new torch.Generator(20210405UL, g.device)
        let mutable v = torch.randn([| n; 1L |], dtype = torch.float64, device = g.device, generator = gen)
        v <- v.div(v.norm())
        for _ in 1 .. iterations do
            let y = torch.linalg.solve_triangular(l, v, upper = false)
            let x = torch.linalg.solve_triangular(l.t(), y, upper = true)
            v <- x.div(x.norm())
        v.t().mm(g.mm(v)).item<float> ()

/// Power-iteration estimate of λ_max(fl G) = σ_max(Φ̃)².
let estimateLambdaMax (iterations: int) (g: torch.Tensor) : float =
    use scope = torch.NewDisposeScope()
    let n = g.shape.[0]
    let mutable v = torch.ones([| n; 1L |], dtype = torch.float64, device = g.device).div(scalar (sqrt (float n)))
    for _ in 1 .. iterations do
        let w = g.mm(v)
        let norm = w.norm().item<float> ()
        v <- if norm > 0.0 then w.div(scalar norm) else w
    v.t().mm(g.mm(v)).item<float> ()

/// Duplicate-row candidates read off fl(G): equal rows have ‖φ̃_i − φ̃_j‖² = G_ii + G_jj − 2G_ij = 0,
/// and each computed entry is within E of the exact one, so candidates satisfy d_ij ≤ 8E.
let private duplicateCandidates (gram: GramMatrix) (maxCandidates: int) : (int * int) list =
    use scope = torch.NewDisposeScope()
    let g = gram.Gram
    let d = g.diagonal()
    let dist : torch.Tensor = d.unsqueeze(1L).add(d.unsqueeze(0L)).sub(g.mul(scalar 2.0))
    let tol = 8.0 * gram.AccumulationErrorBound
    let mask = dist.le(scalar tol).triu(1L)
    let idx : torch.Tensor = mask.nonzero().cpu()
    let count = min (int idx.shape.[0]) maxCandidates
    [ for k in 0 .. count - 1 -> int (idx.[int64 k, 0L].item<int64> ()), int (idx.[int64 k, 1L].item<int64> ()) ]

let private certificate (subject: ExpressivitySubject) verdict reason precision (device: torch.Device)
                        (terms: CertificateTerms) sigmaMin sigmaMaxEst sigmaMaxUpper (clock: Stopwatch) =
    { Subject = subject; Verdict = verdict; Reason = reason
      Method = "float64 Gram + Rump shifted-Cholesky positive-definiteness test (SPEC §3)"
      Precision = precision; Device = string device; SigmaMinLower = sigmaMin
      SigmaMaxEstimate = sigmaMaxEst; SigmaMaxUpper = sigmaMaxUpper; Terms = terms
      ElapsedSeconds = clock.Elapsed.TotalSeconds; CreatedUtc = DateTime.UtcNow; FormatVersion = 1 }

/// The Rump test on an accumulated Gram matrix: Certified, Refuted or Inconclusive.
/// `precision` names the feature precision (the Gram is always float64).
let certifyGram (opts: Options) (subject: ExpressivitySubject) (rowsEqual: RowEquality)
                (clock: Stopwatch) (gram: GramMatrix) : Certificate =
    let n = gram.Rows
    if subject.Rows <> n then
        invalidArg "subject" (sprintf "subject says n = %d but the Gram matrix has %d rows" subject.Rows n)
    let precision = sprintf "features %s, Gram float64" gram.FeaturePrecision
    let device = gram.Gram.device
    let u = FloatingPoint.unitRoundoff64
    let e = gram.AccumulationErrorBound
    let sigmaMaxUpper = FloatingPoint.up (sqrt gram.SquaredNormSumUpper)
    let baseTerms =
        { CertificateTerms.Empty with
            AccumulationGamma = FloatingPoint.gamma u (max 1 gram.Columns)
            SquaredNormSumUpper = gram.SquaredNormSumUpper
            AccumulationError = e }
    let refute reason = certificate subject Verdict.Refuted reason precision device baseTerms 0.0 nan sigmaMaxUpper clock
    if gram.Columns < n then
        refute (sprintf "rank Φ̃ ≤ columns = %d < n = %d (the condition needs m%s ≥ n)" gram.Columns n (if subject.WithBias then " + 1" else ""))
    elif gram.ZeroRows.Length > 0 then
        refute (sprintf "row %d of Φ̃ is exactly zero" gram.ZeroRows.[0])
    else
    let duplicate =
        match rowsEqual with
        | None -> None
        | Some equal -> duplicateCandidates gram 10_000 |> List.tryFind (fun (i, j) -> equal i j)
    match duplicate with
    | Some (i, j) -> refute (sprintf "rows %d and %d of Φ̃ are identical (checked exactly)" i j)
    | None ->
    let sigmaMaxEst = sqrt (max 0.0 (estimateLambdaMax opts.PowerIterations gram.Gram))
    let lambdaEst = estimateLambdaMin opts.InverseIterations gram.Gram
    let inconclusive reason terms =
        certificate subject Verdict.Inconclusive reason precision device terms 0.0 sigmaMaxEst sigmaMaxUpper clock
    if not (lambdaEst > 0.0) then
        inconclusive (sprintf "the floating-point estimate of λ_min(fl G) is %g ≤ 0" lambdaEst) { baseTerms with LambdaMinEstimate = lambdaEst }
    else
    let cholGamma =
        let g = FloatingPoint.gamma u (n + 1)
        FloatingPoint.up (g / FloatingPoint.down (1.0 - g))
    let rec attempt (fractions: float list) (tries: int) =
        match fractions with
        | [] ->
            inconclusive (sprintf "shifted Cholesky failed for every shift tried (λ_min estimate %g)" lambdaEst)
                { baseTerms with LambdaMinEstimate = lambdaEst; ShiftAttempts = tries; CholeskyGamma = cholGamma }
        | fraction :: rest ->
            let c = fraction * lambdaEst
            use scope = torch.NewDisposeScope()
            let shifted = gram.Gram.clone()
            shifted.diagonal().sub_(scalar c) |> ignore
            let struct (_, info) = torch.linalg.cholesky_ex(shifted, false)
            if info.item<int> () <> 0 then attempt rest (tries + 1)
            else
                let diag = shifted.diagonal().cpu().data<float>().ToArray()
                // |D_ii| ≤ u·|G_ii − c| ≤ u·|fl(G_ii − c)|/(1 − u)
                let maxD = FloatingPoint.mulUp u (FloatingPoint.inflate u (diag |> Array.map abs |> Array.max))
                let traceUpper = FloatingPoint.sumNonNegativeUpper (Array.sum diag) n
                let cholErr = FloatingPoint.mulUp cholGamma traceUpper
                let lamFl = FloatingPoint.subDown (FloatingPoint.subDown c maxD) cholErr
                let lam = FloatingPoint.subDown lamFl e
                let terms =
                    { baseTerms with
                        Shift = c; ShiftRoundingError = maxD; CholeskyGamma = cholGamma
                        ShiftedTraceUpper = traceUpper; CholeskyBackwardError = cholErr
                        LambdaMinComputedGramLower = lamFl; LambdaMinLower = lam
                        LambdaMinEstimate = lambdaEst; ShiftAttempts = tries + 1 }
                if lam > 0.0 then
                    let sigma = FloatingPoint.down (sqrt lam)
                    certificate subject Verdict.Certified
                        (sprintf "Cholesky of fl(G) − %.6g·I succeeded; λ_min(G) ≥ %.6g > 0, so rank Φ̃ = n = %d" c lam n)
                        precision device terms sigma sigmaMaxEst sigmaMaxUpper clock
                else
                    inconclusive (sprintf "Cholesky of fl(G) − %.6g·I succeeded but the error terms (%.3g) exceed the shift: bound %.3g ≤ 0" c (maxD + cholErr + e) lam) terms
    attempt opts.ShiftFractions 0

/// Certificate for an in-memory feature matrix Φ (n × m, without the bias column).
let certifyMatrix (opts: Options) (subject: ExpressivitySubject) (phi: torch.Tensor) : Certificate =
    let clock = Stopwatch.StartNew()
    if phi.dim () <> 2L then invalidArg "phi" (sprintf "Φ must be 2-D (rows × features), got shape %A" phi.shape)
    if int phi.shape.[1] <> subject.Features then
        invalidArg "subject" (sprintf "subject says m = %d but Φ has %d columns" subject.Features phi.shape.[1])
    use gram = Gram.ofMatrix opts.BlockColumns subject.WithBias phi
    let equal i j =
        use a = phi.[int64 i]
        use b = phi.[int64 j]
        use same = a.eq(b).all()
        same.item<bool> ()
    certifyGram opts subject (Some equal) clock gram

/// Certificate for Φ streamed as row blocks that can be produced again (e.g. forward passes of a
/// network in evaluation mode). Every block has `blockRows` rows except possibly the last;
/// `cacheBytes` bounds the memory spent keeping blocks instead of recomputing them.
let certifyRowBlocks (opts: Options) (subject: ExpressivitySubject) (cacheBytes: int64)
                     (blockRows: int) (blockCount: int) (rowBlock: int -> torch.Tensor) : Certificate =
    let clock = Stopwatch.StartNew()
    use gram = Gram.ofRowBlocks cacheBytes subject.WithBias blockRows blockCount rowBlock
    let row (i: int) =
        use block = rowBlock (i / blockRows)
        use r = block.[int64 (i % blockRows)]
        r.clone()
    let equal i j =
        use a = row i
        use b = row j
        a.eq(b).all().item<bool> ()
    certifyGram opts subject (Some equal) clock gram
