/// Certified full row rank of Φ̃ (SPEC §3): a verified positive-definiteness test of the
/// float64 Gram matrix after S. M. Rump, "Verification of positive definiteness", BIT 46
/// (2006), with Demmel's Cholesky backward-error bound (Higham, ch. 10). See docs/theory.md.
///
/// If floating-point Cholesky of Ã = fl(fl(G) − cI) succeeds, then RᵀR = Ã + ΔA with
/// ‖ΔA‖₂ ≤ γ'_{n+1} tr(Ã), γ' = γ/(1−γ), and RᵀR ⪰ 0, so
///   λ_min(fl G) ≥ c − u·max_i|G_ii − c| − γ'_{n+1} tr(Ã),
///   λ_min(G)    ≥ λ_min(fl G) − γ_{m'} Σ_i ‖φ̃_i‖².
/// A positive right-hand side proves rank Φ̃ = n and σ_min(Φ̃) ≥ √(that bound).
///
/// The same test bounds σ_max(Φ̃) from above: if Cholesky of Ã_t = fl(t·I − fl G) succeeds, then
/// t·I − fl G + D + ΔA ⪰ 0 (|D_ii| ≤ u·|t − G_ii|), so
///   λ_max(G) ≤ t + u·max_i|t − G_ii| + γ'_{n+1} tr(Ã_t) + γ_{m'} Σ_i ‖φ̃_i‖²,
/// and σ_max(Φ̃) ≤ √(that bound); the certificate reports the smaller of it and ‖Φ̃‖_F's bound.
///
/// Both tests run on the Gram of 2^(−e)·Φ̃ (bias column included), max_i ‖2^(−e)φ̃_i‖² ∈ [1/2, 2):
/// the σ bounds are multiplied back by 2^e exactly, so the verdict does not depend on the units of
/// Φ, and the recorded terms are the scaled matrix's (CertificateTerms.ScaleExponent = e).
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
      /// Krylov dimension (matrix–vector products) of the λ_max estimate (`estimateLambdaMax`).
      KrylovSteps: int
      /// Factors f of the Rayleigh–Ritz estimate λ̂_max tried, in order, as the trial t = f·λ̂_max
      /// of the verified upper bound on σ_max (SPEC §3, docs/theory.md §3): if floating-point
      /// Cholesky of Ã_t = fl(t·I − fl G) succeeds, then
      /// λ_max(G) ≤ t + u·max_i|t − G_ii| + γ'_{n+1}·tr(Ã_t) + γ_{m'}·Σ_i‖φ̃_i‖² and σ_max(Φ̃) ≤ √ of it.
      /// λ̂_max is a Rayleigh quotient (≤ λ_max), so factors near 1 may fail; the first success
      /// stops the list. Each failure costs one n×n Cholesky; the bound is ≈ √f·σ_max.
      LambdaMaxFactors: float list
      /// Columns per block when streaming an in-memory Φ.
      BlockColumns: int }

let defaults =
    { ShiftFractions = [ 0.75; 0.25; 1.0 / 16.0; 1.0 / 256.0 ]
      InverseIterations = 16
      KrylovSteps = 30
      LambdaMaxFactors = [ 1.0 + 1e-3; 1.01; 1.1; 1.5; 2.0 ]
      BlockColumns = 4096 }

/// Exact row access used to confirm a duplicate-row candidate: true iff rows i and j of Φ̃ are
/// bitwise equal. Sources that cannot re-read rows pass `None` (no refutation by duplicates).
type RowEquality = (int -> int -> bool) option

/// What the certificate needs of the scaled Gram fl(G_s) = 4^(−e)·fl(G), however it is held (one dense
/// tensor, or tiles in memory and files: `Tiled`): its bookkeeping, the duplicate-row candidates, the two
/// floating-point estimates and the two floating-point Cholesky tests. The verdict and every term are
/// computed from these by the same code (`certifyOperator`), so dense and tiled certificates differ only
/// in the rounding of fl G and of the factorisations, never in the bound.
type GramOperator =
    { Rows: int
      /// m' (bias column included).
      Columns: int
      /// Upper bound on Σ‖(φ̃_s)_i‖² of the scaled matrix.
      SquaredNormSumUpper: float
      /// Upper bound on ‖fl(G_s) − G_s‖₂ (accumulation and scaling).
      AccumulationErrorBound: float
      ZeroRows: int[]
      ScaleExponent: int
      /// Precision named in the certificate.
      Precision: string
      Device: torch.Device
      /// Method named in the certificate.
      Method: string
      /// Pairs (i, j), i < j, with ‖φ̃_i − φ̃_j‖² small enough to be equal rows (at most the given count).
      DuplicateCandidates: int -> (int * int) list
      /// λ̂_max(fl G_s) from a Krylov space of the given dimension.
      EstimateLambdaMax: int -> float
      /// λ̂_min(fl G_s) after the given number of inverse iterations.
      EstimateLambdaMin: int -> float
      /// diag(Ã) when floating-point Cholesky of Ã = fl(fl G_s − c·I) completed, None when it failed.
      ShiftedCholesky: float -> float[] option
      /// diag(Ã_t) when floating-point Cholesky of Ã_t = fl(t·I − fl G_s) completed, None when it failed.
      TrialCholesky: float -> float[] option }

/// The method named in dense certificates.
let denseMethod = "float64 Gram + Rump shifted-Cholesky positive-definiteness test (SPEC §3)"


/// Rayleigh quotient vᵀ·G·v after `iterations` steps of inverse iteration x ← L⁻ᵀL⁻¹v from a seeded
/// random start, for G = LLᵀ given by its two triangular solves and its matrix–vector product (n × 1
/// tensors in, n × 1 out; dense or tiled). Each iterate is divided by its largest entry before its norm
/// is taken, so ‖x‖ neither overflows nor underflows however small λ_min is.
let inverseIteration (iterations: int) (n: int64) (device: torch.Device) (solveLower: torch.Tensor -> torch.Tensor)
                     (solveUpper: torch.Tensor -> torch.Tensor) (matvec: torch.Tensor -> torch.Tensor) : float =
    use scope = torch.NewDisposeScope()
    use gen = new torch.Generator(20210405UL, device)
    let mutable v = torch.randn([| n; 1L |], dtype = torch.float64, device = device, generator = gen)
    v <- v.div(v.norm())
    for _ in 1 .. iterations do
        let y = solveLower v
        let x = solveUpper y
        let x = x.div(x.abs().max())
        v <- x.div(x.norm())
    v.t().mm(matvec v).item<float> ()

/// Floating-point estimate of λ_min(fl G): Rayleigh quotient after inverse iteration with the
/// Cholesky factor of fl(G) (never below λ_min(fl G)); eigvalsh when that Cholesky fails.
let estimateLambdaMin (iterations: int) (g: torch.Tensor) : float =
    use scope = torch.NewDisposeScope()
    let struct (l, info) = torch.linalg.cholesky_ex(g, false)
    if info.item<int> () <> 0 then
        torch.linalg.eigvalsh(g).[0].item<float> ()
    else
        inverseIteration iterations g.shape.[0] g.device
            (fun v -> torch.linalg.solve_triangular(l, v, upper = false))
            (fun y -> torch.linalg.solve_triangular(l.t(), y, upper = true))
            (fun v -> g.mm(v))

/// Rayleigh–Ritz estimate of λ_max(fl G) = σ_max(Φ̃)²: the largest eigenvalue of QᵀGQ for an
/// orthonormal basis Q of the Krylov subspace of dimension ≤ min(steps, n) from a seeded random
/// start (Lanczos with full reorthogonalisation: classical Gram–Schmidt twice, a third pass when
/// the second still removes more than half, Kahan–Parlett). The subspace stops growing when the
/// new direction's residual is ≤ √u times the largest ‖G q_j‖ seen (numerically invariant: its
/// Ritz values are eigenvalues to that accuracy); normalising a residual that is only rounding
/// noise would add a direction that is not orthogonal to Q and inflate the Ritz values (an identity
/// Gram once gave λ̂ ≈ 26). It is a Rayleigh quotient of an orthonormal basis, so ≤ λ_max(fl G)
/// up to rounding, and at least the Rayleigh quotient after k − 1 power iterations from the same
/// start; its convergence is Chebyshev-accelerated, so it stays close to λ_max where power
/// iteration lags (a crowded top of the spectrum, a start nearly orthogonal to the top eigenvector).
/// `estimateLambdaMax` for G given by its matrix–vector product (n × 1 in, n × 1 out; dense or tiled).
let lanczosLambdaMax (steps: int) (n: int64) (device: torch.Device) (matvec: torch.Tensor -> torch.Tensor) : float =
    use scope = torch.NewDisposeScope()
    let k = min (int64 (max 1 steps)) n
    let tolerance = sqrt FloatingPoint.unitRoundoff64
    use gen = new torch.Generator(20210405UL, device)
    let q = torch.zeros([| n; k |], dtype = torch.float64, device = device)
    let gq = torch.zeros([| n; k |], dtype = torch.float64, device = device)
    let mutable v = torch.randn([| n; 1L |], dtype = torch.float64, device = device, generator = gen)
    v <- v.div(v.norm())
    let mutable j = 0L
    let mutable grow = true
    let mutable scale = 0.0
    while grow && j < k do
        q.narrow(1L, j, 1L).copy_(v) |> ignore
        let w = matvec v
        gq.narrow(1L, j, 1L).copy_(w) |> ignore
        scale <- max scale (w.norm().item<float> ())
        j <- j + 1L
        if j < k then
            let basis = q.narrow(1L, 0L, j)
            let project (x: torch.Tensor) = x.sub(basis.mm(basis.t().mm(x)))
            let r1 = project w
            let r2 = project r1
            let n1, n2 = r1.norm().item<float> (), r2.norm().item<float> ()
            let r, norm = if n2 < 0.5 * n1 then (let r3 = project r2 in r3, r3.norm().item<float> ()) else r2, n2
            if norm > tolerance * scale && Double.IsFinite norm then v <- r.div(scalar norm) else grow <- false
    let basis = q.narrow(1L, 0L, j)
    let t = basis.t().mm(gq.narrow(1L, 0L, j))
    torch.linalg.eigvalsh(t.add(t.t()).mul(scalar 0.5)).max().item<float> ()

/// Rayleigh–Ritz estimate of λ_max(fl G) for a Gram held in memory (`lanczosLambdaMax` with G·v).
let estimateLambdaMax (steps: int) (g: torch.Tensor) : float =
    lanczosLambdaMax steps g.shape.[0] g.device (fun v -> g.mm(v))

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

/// γ'_{n+1} = γ_{n+1}/(1 − γ_{n+1}) of Demmel's Cholesky backward-error bound, rounded upward.
let private choleskyGamma (n: int) =
    let g = FloatingPoint.gamma FloatingPoint.unitRoundoff64 (n + 1)
    FloatingPoint.up (g / FloatingPoint.down (1.0 - g))

/// Verified upper bound on λ_max(G) = σ_max(Φ̃)² (SPEC §3, docs/theory.md §3): for t = f·λ̂_max,
/// f from `factors` in order, Ã_t = fl(t·I − fl G) (fl G negated exactly, t added on the diagonal:
/// Ã_t = t·I − fl G + D with |D_ii| ≤ u·|t − G_ii| ≤ u·Ã_ii/(1 − u)). If Cholesky of Ã_t succeeds,
/// RᵀR = Ã_t + ΔA ⪰ 0 with ‖ΔA‖₂ ≤ γ'_{n+1}·tr(Ã_t) (Demmel), so
/// λ_max(fl G) ≤ t + max|D_ii| + γ'_{n+1}·tr(Ã_t), and λ_max(G) ≤ λ_max(fl G) + ‖fl G − G‖₂ (Weyl).
/// The first success fills the LambdaMax* fields of `terms` (all sums rounded upward); trials with
/// t ≥ Σ‖φ̃_i‖²'s bound are skipped (they cannot beat the Frobenius bound). Only success and
/// tightness depend on λ̂_max and the factors, never soundness. The factorisation is the caller's:
/// `trialCholesky t` returns diag(Ã_t) when floating-point Cholesky of Ã_t completed (any order of
/// the inner products: LAPACK, tiles), None when it failed; the terms are the same for every route.
let lambdaMaxTermsBy (factors: float list) (n: int) (squaredNormSumUpper: float) (accumulationErrorBound: float)
                     (trialCholesky: float -> float[] option) (lambdaMaxEstimate: float) (terms: CertificateTerms) : CertificateTerms =
    let u = FloatingPoint.unitRoundoff64
    let cholGamma = choleskyGamma n
    let rec attempt (factors: float list) (tries: int) =
        match factors with
        | [] -> { terms with LambdaMaxTrialAttempts = tries }
        | f :: rest ->
            let t = f * lambdaMaxEstimate
            if not (t > 0.0 && Double.IsFinite t && t < squaredNormSumUpper) then attempt rest tries
            else
            let diag = match trialCholesky t with Some d -> d | None -> [||]
            // Successful Cholesky has positive pivots, hence a positive diagonal; checked anyway.
            if diag.Length = 0 || not (diag |> Array.forall (fun d -> d > 0.0 && Double.IsFinite d)) then attempt rest (tries + 1)
            else
                let maxD = FloatingPoint.mulUp u (FloatingPoint.inflate u (Array.max diag))
                let traceUpper = FloatingPoint.sumNonNegativeUpper (Array.sum diag) n
                let cholErr = FloatingPoint.mulUp cholGamma traceUpper
                let computedGramUpper = FloatingPoint.addUp (FloatingPoint.addUp t maxD) cholErr
                { terms with
                    CholeskyGamma = cholGamma; LambdaMaxTrial = t; LambdaMaxTrialRoundingError = maxD
                    LambdaMaxTrialTraceUpper = traceUpper; LambdaMaxCholeskyBackwardError = cholErr
                    LambdaMaxUpper = FloatingPoint.addUp computedGramUpper accumulationErrorBound
                    LambdaMaxTrialAttempts = tries + 1 }
    attempt factors 0

/// Floating-point Cholesky of Ã_t = fl(t·I − fl G) held in memory (LAPACK): diag(Ã_t) when it completed.
let private lambdaMaxTrialCholesky (gram: GramMatrix) (t: float) : float[] option =
    use scope = torch.NewDisposeScope()
    let trial = gram.Gram.neg()
    trial.diagonal().add_(scalar t) |> ignore
    let struct (_, info) = torch.linalg.cholesky_ex(trial, false)
    if info.item<int> () = 0 then Some (trial.diagonal().cpu().data<float>().ToArray()) else None

/// `lambdaMaxTermsBy` for a Gram held in memory: Ã_t = fl(t·I − fl G) factored by LAPACK.
let lambdaMaxTerms (factors: float list) (gram: GramMatrix) (lambdaMaxEstimate: float) (terms: CertificateTerms) : CertificateTerms =
    lambdaMaxTermsBy factors gram.Rows gram.SquaredNormSumUpper gram.AccumulationErrorBound (lambdaMaxTrialCholesky gram) lambdaMaxEstimate terms

/// Rigorous upper bound on σ_max(Φ̃): √ of the bound on Σ‖φ̃_i‖² (= ‖Φ̃‖_F ≥ σ_max), or √ of the
/// trial's λ_max bound when one succeeded and is smaller (sqrt is correctly rounded: one ulp up).
/// Both are bounds for 2^(−e)·Φ̃ (e = terms.ScaleExponent), so the result is multiplied by 2^e.
let sigmaMaxUpper (terms: CertificateTerms) : float =
    let frobenius = FloatingPoint.up (sqrt terms.SquaredNormSumUpper)
    let scaledBound = if terms.LambdaMaxUpper > 0.0 then min frobenius (FloatingPoint.up (sqrt terms.LambdaMaxUpper)) else frobenius
    FloatingPoint.scaleUp scaledBound terms.ScaleExponent

/// Rigorous upper bound on ‖Φ̃‖_F: 2^e·√ of the bound on Σ‖(2^(−e)φ̃)_i‖² (e = terms.ScaleExponent),
/// rounded upward. Use this, never √ terms.SquaredNormSumUpper, which is the scaled matrix's.
let frobeniusUpper (terms: CertificateTerms) : float =
    FloatingPoint.scaleUp (FloatingPoint.up (sqrt terms.SquaredNormSumUpper)) terms.ScaleExponent

let private certificateBy (method: string) (subject: ExpressivitySubject) verdict reason precision (device: torch.Device)
                          (terms: CertificateTerms) sigmaMin sigmaMaxEst sigmaMaxUpper (clock: Stopwatch) =
    { Subject = subject; Verdict = verdict; Reason = reason
      Method = method
      Precision = precision; Device = string device; SigmaMinLower = sigmaMin
      SigmaMaxEstimate = sigmaMaxEst; SigmaMaxUpper = sigmaMaxUpper; Terms = terms
      ElapsedSeconds = clock.Elapsed.TotalSeconds; CreatedUtc = DateTime.UtcNow; FormatVersion = 1 }

let private certificate subject verdict reason precision device terms sigmaMin sigmaMaxEst sigmaMaxUpper clock =
    certificateBy denseMethod subject verdict reason precision device terms sigmaMin sigmaMaxEst sigmaMaxUpper clock

/// Verified lower bound on λ_min(G) (SPEC §3, docs/theory.md §3): for each shift c in `shifts`, in
/// order (non-positive or non-finite ones skipped: they cannot prove λ_min > 0), Ã = fl(fl G − c·I)
/// (only the diagonal is rounded: Ã = fl G − c·I + D, |D_ii| ≤ u·|G_ii − c| ≤ u·|ã_ii|/(1 − u)).
/// The first c whose floating-point Cholesky succeeds (RᵀR = Ã + ΔA ⪰ 0, ‖ΔA‖₂ ≤ γ'_{n+1}·tr(Ã),
/// Demmel) fills Shift and the λ_min fields of `terms`:
///   λ_min(fl G) ≥ c − max|D_ii| − γ'_{n+1}·tr(Ã)   (LambdaMinComputedGramLower),
///   λ_min(G)    ≥ that − ‖fl G − G‖₂'s bound         (LambdaMinLower, Weyl),
/// every step rounded downward; the bound may be ≤ 0 (then nothing is proved). When no Cholesky
/// succeeds, Shift = 0 and the λ_min fields are left as they were. ShiftAttempts counts the
/// Cholesky factorisations tried. Only success depends on the shifts, never soundness.
/// `shiftedCholesky c` returns diag(Ã) when floating-point Cholesky of Ã completed (LAPACK or tiles:
/// Demmel's bound holds for any order of the inner products, docs/theory.md §3), None when it failed.
let lambdaMinTermsBy (shifts: float list) (n: int) (accumulationErrorBound: float)
                     (shiftedCholesky: float -> float[] option) (terms: CertificateTerms) : CertificateTerms =
    let u = FloatingPoint.unitRoundoff64
    let cholGamma = choleskyGamma n
    let e = accumulationErrorBound
    let rec attempt (shifts: float list) (tries: int) =
        match shifts with
        | [] -> { terms with ShiftAttempts = tries; CholeskyGamma = cholGamma }
        | c :: rest ->
            if not (c > 0.0 && Double.IsFinite c) then attempt rest tries
            else
            match shiftedCholesky c with
            | None -> attempt rest (tries + 1)
            | Some diag ->
                // |D_ii| ≤ u·|G_ii − c| ≤ u·|fl(G_ii − c)|/(1 − u)
                let maxD = FloatingPoint.mulUp u (FloatingPoint.inflate u (diag |> Array.map abs |> Array.max))
                let traceUpper = FloatingPoint.sumNonNegativeUpper (Array.sum diag) n
                let cholErr = FloatingPoint.mulUp cholGamma traceUpper
                let lamFl = FloatingPoint.subDown (FloatingPoint.subDown c maxD) cholErr
                let lam = FloatingPoint.subDown lamFl e
                { terms with
                    Shift = c; ShiftRoundingError = maxD; CholeskyGamma = cholGamma
                    ShiftedTraceUpper = traceUpper; CholeskyBackwardError = cholErr
                    LambdaMinComputedGramLower = lamFl; LambdaMinLower = lam; ShiftAttempts = tries + 1 }
    attempt shifts 0

/// Floating-point Cholesky of Ã = fl(fl G − c·I) held in memory (LAPACK): diag(Ã) when it completed.
let private lambdaMinShiftedCholesky (gram: GramMatrix) (c: float) : float[] option =
    use scope = torch.NewDisposeScope()
    let shifted = gram.Gram.clone()
    shifted.diagonal().sub_(scalar c) |> ignore
    let struct (_, info) = torch.linalg.cholesky_ex(shifted, false)
    if info.item<int> () <> 0 then None
    else Some (shifted.diagonal().cpu().data<float>().ToArray())

/// `lambdaMinTermsBy` for a Gram held in memory: Ã = fl(fl G − c·I) factored by LAPACK.
let lambdaMinTerms (shifts: float list) (gram: GramMatrix) (terms: CertificateTerms) : CertificateTerms =
    lambdaMinTermsBy shifts gram.Rows gram.AccumulationErrorBound (lambdaMinShiftedCholesky gram) terms

/// `certifyGram`, scaling a copy of the Gram (`inPlace` = false: the caller's Gram is untouched) or
/// the Gram itself (true: no n × n copy, for callers that own the Gram and drop it afterwards).
/// The verdict and every term from a (scaled) Gram operator (SPEC §3, docs/theory.md §3): refutations
/// by shape, zero rows and exactly confirmed duplicates; the σ_max estimate and trial; the λ_min estimate
/// and the shifted Cholesky test. Shared by the dense (`certifyGram`) and the tiled (`Tiled`) routes.
let certifyOperator (opts: Options) (subject: ExpressivitySubject) (rowsEqual: RowEquality)
                    (clock: Stopwatch) (gram: GramOperator) : Certificate =
    let n = gram.Rows
    if subject.Rows <> n then
        invalidArg "subject" (sprintf "subject says n = %d but the Gram matrix has %d rows" subject.Rows n)
    let precision = gram.Precision
    let device = gram.Device
    let scale = gram.ScaleExponent
    let certificate = certificateBy gram.Method
    let e = gram.AccumulationErrorBound
    let baseTerms =
        { CertificateTerms.Empty with
            AccumulationGamma = FloatingPoint.gamma FloatingPoint.unitRoundoff64 (max 1 gram.Columns)
            SquaredNormSumUpper = gram.SquaredNormSumUpper
            AccumulationError = e; ScaleExponent = scale }
    let refute reason = certificate subject Verdict.Refuted reason precision device baseTerms 0.0 nan (sigmaMaxUpper baseTerms) clock
    if gram.Columns < n then
        refute (sprintf "rank Φ̃ ≤ columns = %d < n = %d (the condition needs m%s ≥ n)" gram.Columns n (if subject.WithBias then " + 1" else ""))
    elif gram.ZeroRows.Length > 0 then
        refute (sprintf "row %d of Φ̃ is exactly zero" gram.ZeroRows.[0])
    else
    let duplicate =
        match rowsEqual with
        | None -> None
        | Some equal -> gram.DuplicateCandidates 10_000 |> List.tryFind (fun (i, j) -> equal i j)
    match duplicate with
    | Some (i, j) -> refute (sprintf "rows %d and %d of Φ̃ are identical (checked exactly)" i j)
    | None ->
    let lambdaMaxEst = gram.EstimateLambdaMax opts.KrylovSteps
    let sigmaMaxEst = Math.ScaleB(sqrt (max 0.0 lambdaMaxEst), scale)
    let baseTerms = lambdaMaxTermsBy opts.LambdaMaxFactors n gram.SquaredNormSumUpper e gram.TrialCholesky lambdaMaxEst baseTerms
    let sigmaMaxBound = sigmaMaxUpper baseTerms
    let lambdaEst = gram.EstimateLambdaMin opts.InverseIterations
    let inconclusive reason terms =
        certificate subject Verdict.Inconclusive reason precision device terms 0.0 sigmaMaxEst sigmaMaxBound clock
    let units = if scale = 0 then "G" else sprintf "G = 4^(%d)·Φ̃Φ̃ᵀ" (-scale)
    if not (lambdaEst > 0.0) then
        inconclusive (sprintf "the floating-point estimate of λ_min(fl G) is %g ≤ 0 (%s)" lambdaEst units) { baseTerms with LambdaMinEstimate = lambdaEst }
    else
    let shifts = opts.ShiftFractions |> List.map (fun fraction -> fraction * lambdaEst)
    let terms = lambdaMinTermsBy shifts n e gram.ShiftedCholesky { baseTerms with LambdaMinEstimate = lambdaEst }
    let c, lam = terms.Shift, terms.LambdaMinLower
    if c = 0.0 then
        inconclusive (sprintf "shifted Cholesky failed for every shift tried (λ_min estimate %g, %s)" lambdaEst units) terms
    elif lam > 0.0 then
        let sigma = FloatingPoint.scaleDown (FloatingPoint.down (sqrt lam)) scale
        certificate subject Verdict.Certified
            (sprintf "Cholesky of fl(G) − %.6g·I succeeded; λ_min(G) ≥ %.6g > 0 (%s), so rank Φ̃ = n = %d" c lam units n)
            precision device terms sigma sigmaMaxEst sigmaMaxBound clock
    else
        let errors = terms.ShiftRoundingError + terms.CholeskyBackwardError + terms.AccumulationError
        inconclusive (sprintf "Cholesky of fl(G) − %.6g·I succeeded but the error terms (%.3g) exceed the shift: bound %.3g ≤ 0 (%s)" c errors lam units) terms

/// `certifyGram`, scaling a copy of the Gram (`inPlace` = false: the caller's Gram is untouched) or
/// the Gram itself (true: no n × n copy, for callers that own the Gram and drop it afterwards).
let private certifyGramScaling (inPlace: bool) (opts: Options) (subject: ExpressivitySubject) (rowsEqual: RowEquality)
                               (clock: Stopwatch) (gram: GramMatrix) : Certificate =
    let n = gram.Rows
    if subject.Rows <> n then
        invalidArg "subject" (sprintf "subject says n = %d but the Gram matrix has %d rows" subject.Rows n)
    let precision = sprintf "features %s, Gram float64" gram.FeaturePrecision
    let scaledGram, scale = Gram.scaleBy inPlace gram
    use _ownedCopy = if inPlace then null else scaledGram.Gram
    let gram = scaledGram
    certifyOperator opts subject rowsEqual clock
        { Rows = n; Columns = gram.Columns; SquaredNormSumUpper = gram.SquaredNormSumUpper
          AccumulationErrorBound = gram.AccumulationErrorBound; ZeroRows = gram.ZeroRows; ScaleExponent = scale
          Precision = precision; Device = gram.Gram.device; Method = denseMethod
          DuplicateCandidates = duplicateCandidates gram
          EstimateLambdaMax = fun steps -> estimateLambdaMax steps gram.Gram
          EstimateLambdaMin = fun iterations -> estimateLambdaMin iterations gram.Gram
          ShiftedCholesky = fun c -> (lambdaMinShiftedCholesky gram c)
          TrialCholesky = fun t -> (lambdaMaxTrialCholesky gram t) }

/// The Rump test on an accumulated Gram matrix: Certified, Refuted or Inconclusive.
/// `precision` names the feature precision (the Gram is always float64). The test runs on the Gram
/// of 2^(−e)·Φ̃ (`Gram.scaled`: max_i ‖2^(−e)φ̃_i‖² in [1/2, 2)), whose terms the certificate records
/// with ScaleExponent = e; the σ bounds are multiplied back by 2^e, exactly (a power of two).
/// So the verdict does not depend on the units of Φ: certifying 2^k·Φ (no bias column) gives the
/// same verdict and terms and bounds multiplied by exactly 2^k.
let certifyGram (opts: Options) (subject: ExpressivitySubject) (rowsEqual: RowEquality)
                (clock: Stopwatch) (gram: GramMatrix) : Certificate =
    certifyGramScaling false opts subject rowsEqual clock gram

/// The certificate of a matrix refuted by its shape alone: Φ̃ has m' = m (+ 1 with the bias column)
/// < n columns, so rank Φ̃ ≤ m' < n, with no n × n Gram formed (O(n) memory: a streamed tall file
/// needs only its rows' squared norms). `rowSquares` are fl(‖φ_i‖²) of Φ's rows (bias excluded, it is
/// added here exactly); they bound σ_max through Σ‖φ̃_i‖² (Frobenius). A non-finite square raises
/// ArgumentException, as for a Gram; m' ≥ n is refused (there is nothing to refute by shape).
let refuteByShape (subject: ExpressivitySubject) (featurePrecision: string) (device: torch.Device)
                  (rowSquares: float[]) (clock: Stopwatch) : Certificate =
    let n = rowSquares.Length
    let columns = subject.Columns
    if subject.Rows <> n then
        invalidArg "subject" (sprintf "subject says n = %d but %d row norms were given" subject.Rows n)
    if not (columns < n) then
        invalidArg "subject" (sprintf "columns = %d ≥ n = %d: the shape refutes nothing" columns n)
    let squares = rowSquares |> Array.map (fun s -> if subject.WithBias then s + 1.0 else s)
    match squares |> Array.tryFindIndex (fun v -> not (Double.IsFinite v)) with
    | Some i -> invalidArg "features" (sprintf "row %d of Φ has a non-finite squared norm (NaN or ±Inf features, or values so large their squares overflow): no certificate can be given" i)
    | None -> ()
    let terms =
        { CertificateTerms.Empty with
            AccumulationGamma = FloatingPoint.gamma FloatingPoint.unitRoundoff64 columns
            SquaredNormSumUpper = Gram.squaredNormSumUpper columns squares }
    certificate subject Verdict.Refuted
        (sprintf "rank Φ̃ ≤ columns = %d < n = %d (the condition needs m%s ≥ n)" columns n (if subject.WithBias then " + 1" else ""))
        (sprintf "features %s (refuted by shape; no Gram formed)" featurePrecision) device terms 0.0 nan (sigmaMaxUpper terms) clock

/// `certifyGram` on a Gram the caller owns and drops afterwards: it is scaled in place (no n × n copy),
/// so it must not be used as unscaled afterwards. For Grams accumulated from a stream (a file read in
/// column blocks through `Gram.ColumnBlockAccumulator`).
let certifyAccumulated (opts: Options) (subject: ExpressivitySubject) (rowsEqual: RowEquality)
                       (clock: Stopwatch) (gram: GramMatrix) : Certificate =
    certifyGramScaling true opts subject rowsEqual clock gram

/// Certificate for an in-memory feature matrix Φ (n × m, without the bias column).
let certifyMatrix (opts: Options) (subject: ExpressivitySubject) (phi: torch.Tensor) : Certificate =
    let clock = Stopwatch.StartNew()
    if phi.dim () <> 2L then invalidArg "phi" (sprintf "Φ must be 2-D (rows × features), got shape %A" phi.shape)
    if int phi.shape.[1] <> subject.Features then
        invalidArg "subject" (sprintf "subject says m = %d but Φ has %d columns" subject.Features phi.shape.[1])
    let n = int phi.shape.[0]
    if subject.Rows <> n then invalidArg "subject" (sprintf "subject says n = %d but Φ has %d rows" subject.Rows n)
    let columns = subject.Features + (if subject.WithBias then 1 else 0)
    if columns < n && n > 0 then
        // Refuted by shape alone (rank Φ̃ ≤ m' < n), in O(n·m): no n × n Gram is formed for a tall matrix
        // (a 30 000 × 2 file would need 7 GB for nothing). Σ‖φ̃_i‖² still bounds σ_max (Frobenius).
        let squares =
            use scope = torch.NewDisposeScope()
            phi.detach().``to``(torch.float64).pow(scalar 2.0).sum(1L).cpu().data<float>().ToArray()
        refuteByShape subject (Gram.precisionName "phi" phi) phi.device squares clock
    else
    use gram = Gram.ofMatrix opts.BlockColumns subject.WithBias phi
    let equal i j =
        use a = phi.[int64 i]
        use b = phi.[int64 j]
        use same = a.eq(b).all()
        same.item<bool> ()
    certifyGramScaling true opts subject (Some equal) clock gram

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
    certifyGramScaling true opts subject (Some equal) clock gram
