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

/// Which certificate route `certifyMatrix` runs (docs/theory.md §3).
type RouteChoice =
    /// The float64 Gram route; when it is Inconclusive and Φ̃ fits `OrthogonalMaxBytes`, the orthogonal route.
    | Auto = 0
    /// The float64 Gram route only (Rump shifted Cholesky).
    | Gram = 1
    /// The orthogonal-factorisation route only (QR of Φ̃ᵀ; no Gram is formed).
    | Orthogonal = 2

/// Tunables of the certificate; none of them affects soundness, only success and speed.
type Options =
    { /// Fractions of the λ_min estimate tried as the shift c, in order.
      ShiftFractions: float list
      /// Inverse-iteration steps for the λ_min estimate.
      InverseIterations: int
      /// Largest Krylov dimension (matrix–vector products) of the λ_max estimate (`estimateLambdaMax`); it stops earlier
      /// once its Ritz value has converged (`lanczosLambdaMax`).
      KrylovSteps: int
      /// Factors f of the Rayleigh–Ritz estimate λ̂_max tried, in order, as the trial t = f·λ̂_max
      /// of the verified upper bound on σ_max (SPEC §3, docs/theory.md §3): if floating-point
      /// Cholesky of Ã_t = fl(t·I − fl G) succeeds, then
      /// λ_max(G) ≤ t + u·max_i|t − G_ii| + γ'_{n+1}·tr(Ã_t) + γ_{m'}·Σ_i‖φ̃_i‖² and σ_max(Φ̃) ≤ √ of it.
      /// λ̂_max is a Rayleigh quotient (≤ λ_max), so factors near 1 may fail; the first success
      /// stops the list. Each failure costs one n×n Cholesky; the bound is ≈ √f·σ_max.
      LambdaMaxFactors: float list
      /// Columns per block when streaming an in-memory Φ, and per product of the Gram's blocked order
      /// (`Gram.accumulationDepth`: h = c + ⌈m/c⌉ − 1 (+1) instead of m').
      BlockColumns: int
      /// s: columns per panel of the dense route's factorisations (the shifted test and the σ_max trial,
      /// `TileCholesky.factorInPlace`): every update formed apart one panel at a time, so the Cholesky constant is
      /// γ'_h with h = min(n + 1, 2s + ⌈n/s⌉ + 1) (`TileCholesky.depth n n s`) instead of LAPACK's any-order n + 1.
      /// ≤ 0 or ≥ n: LAPACK's potrf on the whole matrix. Only the bound's constant depends on it.
      CholeskyPanel: int
      /// Route of `certifyMatrix` (default Auto: Gram, then the orthogonal route when Gram is Inconclusive).
      Route: RouteChoice
      /// Largest working memory (bytes, ≈ 6·8·n·m') the orthogonal route may take in Auto mode.
      OrthogonalMaxBytes: int64
      /// A shift c₀ (in units of λ(G) of the unscaled Gram; NaN: none) tried first, e.g. the rank guard's last
      /// certified σ_min² (SPEC §4.3: the body moved little since). When the Cholesky of fl(G) − c₀·I proves
      /// λ_min(G) ≥ max(`WarmShiftFloor`, a positive number), the certificate stops there: no duplicate-row scan (rank n:
      /// no equal rows) and no λ_min estimate (a Cholesky of fl G and inverse iteration). Otherwise it continues as
      /// without it (the failed attempt counted in ShiftAttempts). Like the shifts, it affects cost, never soundness.
      WarmShift: float
      /// The least λ_min(G) lower bound (unscaled units) a warm shift must prove to be kept (NaN or ≤ 0: any positive
      /// bound), e.g. the guard's (κσ_τ)²: below it the certificate goes on to the estimate's shifts.
      WarmShiftFloor: float
      /// δ of the factorisations' order on the dense route (docs/theory.md §3 "Which order factorises"): its shifted test
      /// and σ_max trial use LAPACK's potrf on the whole matrix (any order: γ'_{n+1}, about 2.5× faster than panels of
      /// 512 at n = 4096) instead of the panel order of `CholeskyPanel` when the any-order Cholesky term on the λ_min
      /// side, γ'_{n+1}·Σ‖φ̃_i‖² ≥ γ'_{n+1}·tr(Ã), is at most δ times the smallest shift it may try (`ShiftFractions`'
      /// least × λ̂_min): the λ_min bound then loses at most δ·c to the weaker constant (c the shift that succeeds; a
      /// fraction ≤ 2δ of the bound, ≈ δ of σ_min's, when the other terms take at most half of c). ≤ 0 or NaN: always the panel order
      /// (`withBlockedOrder` sets it so: an order asked for is the order used). Cost and tightness, never soundness.
      AnyOrderTolerance: float
      /// τ of the Ritz shift (docs/theory.md §3 "The λ_min estimate"): when the λ_max Lanczos's smallest Ritz value θ_min
      /// fell by at most τ relative over its last product (`KrylovEstimate.LambdaMinRitzChange`), the first shift tried is
      /// `RitzShiftFraction` × θ_min, before any λ_min estimate of its own (a Cholesky of fl G and inverse iteration):
      /// when it succeeds, that factorisation and its 2·`InverseIterations` triangular solves are saved; when it fails,
      /// one factorisation is lost and the certificate goes on as without it. ≤ 0 or NaN: never. Cost and tightness,
      /// never soundness.
      RitzShiftTolerance: float
      /// The fraction of a settled θ_min tried as the Ritz shift. θ_min ≥ λ_min(fl G), and once it moves by ≤ 10⁻³ per
      /// product it is within ≈ 1 % of it on the spectra measured (a Gaussian Φ̃: 1.0004·λ_min when the top has
      /// converged), where inverse iteration's Rayleigh quotient, on a crowded bottom, stays a few % above (1.03·λ_min at
      /// 2048 × 8192): so 0.9 of θ_min, not the 0.75 of `ShiftFractions` (a bound ≈ 8 % tighter on σ_min there).
      RitzShiftFraction: float }

/// The default options: Auto route, orthogonal route up to 8 GiB of working memory.
let defaults =
    { ShiftFractions = [ 0.75; 0.25; 1.0 / 16.0; 1.0 / 256.0 ]
      InverseIterations = 16
      KrylovSteps = 90
      LambdaMaxFactors = [ 1.0 + 1e-3; 1.01; 1.1; 1.5; 2.0 ]
      BlockColumns = Gram.defaultChunkColumns
      CholeskyPanel = 512
      Route = RouteChoice.Auto
      OrthogonalMaxBytes = 8L <<< 30
      WarmShift = nan
      WarmShiftFloor = nan
      AnyOrderTolerance = 1e-3
      RitzShiftTolerance = 1e-3
      RitzShiftFraction = 0.9 }

/// These options with the dense route's Gram products of `blockColumns` columns and its factorisations in panels of
/// `choleskyPanel`, always (no switch to LAPACK's order: `AnyOrderTolerance` = 0; C#: `rf certify --gram-chunk`,
/// `--cholesky-panel`). Only the bound's constants depend on them.
let withBlockedOrder (blockColumns: int) (choleskyPanel: int) (o: Options) : Options =
    if blockColumns < 1 then invalidArg "blockColumns" (sprintf "Gram products of %d columns: at least 1 is needed" blockColumns)
    { o with BlockColumns = blockColumns; CholeskyPanel = choleskyPanel; AnyOrderTolerance = 0.0 }

/// These options with the dense route's Gram products of `blockColumns` columns (C#: `rf certify --gram-chunk` without
/// `--cholesky-panel`); the factorisations' order stays the options' own.
let withGramChunk (blockColumns: int) (o: Options) : Options =
    if blockColumns < 1 then invalidArg "blockColumns" (sprintf "Gram products of %d columns: at least 1 is needed" blockColumns)
    { o with BlockColumns = blockColumns }

/// These options with the warm shift c₀ = `shift` tried first and kept when it proves at least `floor` (units of λ(G);
/// docs/theory.md §3 "the warm shift"; C#: the rank guard's route for callers of their own). Cost, never soundness.
let withWarmShift (shift: float) (floor: float) (o: Options) : Options =
    { o with WarmShift = shift; WarmShiftFloor = floor }

/// Exact row access used to confirm a duplicate-row candidate: true iff rows i and j of Φ̃ are
/// bitwise equal. Sources that cannot re-read rows pass `None` (no refutation by duplicates).
type RowEquality = (int -> int -> bool) option

/// `RowEquality` of an in-memory Φ: rows i and j compared entry by entry (`eq`, then `all`), exactly, on Φ's device.
let rowEqualityOf (phi: torch.Tensor) : RowEquality =
    Some (fun (i: int) (j: int) ->
        use a = phi.[int64 i]
        use b = phi.[int64 j]
        use same = a.eq(b).all()
        same.item<bool> ())

/// What the λ_max Lanczos (`lanczosRitz`) found: its largest and smallest Ritz values. Both are Rayleigh quotients of an
/// orthonormal basis, so λ_min(fl G) ≤ LambdaMinRitz and LambdaMax ≤ λ_max(fl G) up to rounding (Cauchy interlacing):
/// estimates, never bounds in the direction a certificate needs.
type KrylovEstimate =
    { /// θ_max = λ̂_max(fl G), the σ_max trial's estimate.
      LambdaMax: float
      /// θ_min, an estimate of λ_min(fl G) from above (NaN when not formed).
      LambdaMinRitz: float
      /// |θ_min before the last product − θ_min| / θ_min: how far it still moved (NaN when θ_min was formed at one
      /// dimension only). Small on a settled bottom of the spectrum (a Gaussian Φ̃: ≈ 10⁻⁴ when the top has converged),
      /// large where Lanczos has not reached λ_min (an ill-conditioned Φ̃: 2–6 % per product after 90).
      LambdaMinRitzChange: float }

    /// A λ_max estimate without the bottom of the spectrum.
    static member TopOnly(lambdaMax: float) = { LambdaMax = lambdaMax; LambdaMinRitz = nan; LambdaMinRitzChange = nan }

/// The two floating-point Cholesky tests of a Gram operator by LAPACK's potrf on the whole matrix, in any order of the
/// inner products (Demmel's γ'_{n+1}): the shifted test and the σ_max trial, as `GramOperator`'s.
type AnyOrderCholesky =
    { /// diag(Ã) when floating-point Cholesky of Ã = fl(fl G_s − c·I) completed, None when it failed.
      Shifted: float -> float[] option
      /// diag(Ã_t) when floating-point Cholesky of Ã_t = fl(t·I − fl G_s) completed, None when it failed.
      Trial: float -> float[] option }

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
      /// h of the accumulation bound γ_h·Σ‖φ̃_i‖² behind AccumulationErrorBound: m' for a Gram whose inner products
      /// are summed in any order (ScaLAPACK); smaller for the blocked accumulation of the dense and the tiled Gram
      /// (`Gram.accumulationDepth`).
      AccumulationDepth: int
      /// h of the Cholesky backward error γ'_h·tr(Ã) of this operator's factorisations: n + 1 (Demmel, any order);
      /// smaller for the tile Cholesky's blocked order (`TileCholesky.depth`, docs/theory.md §3).
      CholeskyDepth: int
      ZeroRows: int[]
      ScaleExponent: int
      /// Precision named in the certificate.
      Precision: string
      /// The device named in the certificate ("cpu", "cuda:0").
      Device: string
      /// Method named in the certificate.
      Method: string
      /// Pairs (i, j), i < j, with ‖φ̃_i − φ̃_j‖² small enough to be equal rows (at most the given count).
      DuplicateCandidates: int -> (int * int) list
      /// λ̂_max(fl G_s) from a Krylov space of at most the given dimension, with its smallest Ritz value (`lanczosRitz`).
      EstimateLambdaMax: int -> KrylovEstimate
      /// λ̂_min(fl G_s) after the given number of inverse iterations.
      EstimateLambdaMin: int -> float
      /// diag(Ã) when floating-point Cholesky of Ã = fl(fl G_s − c·I) completed, None when it failed.
      ShiftedCholesky: float -> float[] option
      /// diag(Ã_t) when floating-point Cholesky of Ã_t = fl(t·I − fl G_s) completed, None when it failed.
      TrialCholesky: float -> float[] option
      /// The same two tests in LAPACK's any order (h = n + 1), where the operator has them and CholeskyDepth is
      /// smaller (the dense route in panels); None elsewhere (tiles, ScaLAPACK). `certifyOperator` picks
      /// (`Options.AnyOrderTolerance`).
      AnyOrderCholesky: AnyOrderCholesky option }

/// The method named in dense certificates.
let denseMethod = "float64 Gram + Rump shifted-Cholesky positive-definiteness test (SPEC §3)"


/// The estimates' start vector (the λ_max Lanczos's and inverse iteration's): n standard normal entries from a seeded
/// SplitMix64 stream (Box–Muller), the same in every run and on every route. Host memory, so the dense route without
/// libtorch (`DenseNative`) starts from the same vector as the tensor routes, and their estimates agree to rounding.
let startVector (n: int) : float[] =
    let mutable state = 20210405UL
    let next () =
        state <- state + 0x9E3779B97F4A7C15UL
        let mutable z = state
        z <- (z ^^^ (z >>> 30)) * 0xBF58476D1CE4E5B9UL
        z <- (z ^^^ (z >>> 27)) * 0x94D049BB133111EBUL
        z <- z ^^^ (z >>> 31)
        (float (z >>> 11) + 0.5) * Math.ScaleB(1.0, -53)   // in (0, 1)
    Array.init n (fun _ -> sqrt (-2.0 * log (next ())) * cos (2.0 * Math.PI * next ()))

/// `startVector` as an n × 1 float64 tensor on `device`.
let private startTensor (n: int64) (device: torch.Device) : torch.Tensor =
    use host = torch.tensor(startVector (int n), dtype = torch.float64)
    use column = host.reshape(n, 1L)
    column.``to``(device).clone()

/// Rayleigh quotient vᵀ·G·v after `iterations` steps of inverse iteration x ← L⁻ᵀL⁻¹v from a seeded
/// random start, for G = LLᵀ given by its two triangular solves and its matrix–vector product (n × 1
/// tensors in, n × 1 out; dense or tiled). Each iterate is divided by its largest entry before its norm
/// is taken, so ‖x‖ neither overflows nor underflows however small λ_min is.
let inverseIteration (iterations: int) (n: int64) (device: torch.Device) (solveLower: torch.Tensor -> torch.Tensor)
                     (solveUpper: torch.Tensor -> torch.Tensor) (matvec: torch.Tensor -> torch.Tensor) : float =
    use scope = torch.NewDisposeScope()
    let mutable v = startTensor n device
    v <- v.div(v.norm())
    for _ in 1 .. iterations do
        let y = solveLower v
        let x = solveUpper y
        let x = x.div(x.abs().max())
        v <- x.div(x.norm())
    v.t().mm(matvec v).item<float> ()

/// `estimateLambdaMin` with the factor formed in `work` (an n × n tensor like g, overwritten): the dense certificate
/// passes one work matrix to its three factorisations instead of allocating n × n three times.
let estimateLambdaMinIn (work: torch.Tensor) (iterations: int) (g: torch.Tensor) : float =
    use scope = torch.NewDisposeScope()
    let l = work.copy_(g)
    if NativeBlas.potrfLower l <> 0 then
        torch.linalg.eigvalsh(g).[0].item<float> ()
    else
        // the solves read only the lower triangle (upper = false; upper = true on the transposed view): no tril_ pass
        inverseIteration iterations g.shape.[0] g.device
            (fun v -> torch.linalg.solve_triangular(l, v, upper = false))
            (fun y -> torch.linalg.solve_triangular(l.t(), y, upper = true))
            (fun v -> g.mm(v))

/// Floating-point estimate of λ_min(fl G): Rayleigh quotient after inverse iteration with the
/// Cholesky factor of fl(G) (never below λ_min(fl G)); eigvalsh when that Cholesky fails.
let estimateLambdaMin (iterations: int) (g: torch.Tensor) : float =
    use work = torch.empty_like(g)
    estimateLambdaMinIn work iterations g

/// Products after which `lanczosLambdaMax` may stop on a converged Ritz value.
let lanczosMinSteps = 10
/// Relative rise of the top Ritz value under which `lanczosLambdaMax` stops (10⁻⁶, three orders under the first σ_max
/// trial's margin 1.001).
let lanczosTolerance = 1e-6

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
/// iteration lags (a crowded top of the spectrum, a start nearly orthogonal to the top eigenvector). Start: `startVector`.
/// It also stops once the top Ritz value has converged: from `lanczosMinSteps` products on, when one more product
/// raised it by at most `lanczosTolerance` (10⁻⁶) relative. A dominant top eigenvalue (the test's rank-one spike: at most
/// 12 products; the SPEC §5 witness at n = 60,000: 10–12, by its log; the ResNet taps, not measured) converges in a few
/// products, each a pass over every tile on the tiled engine; a crowded top (a Gaussian Φ̃) needs
/// 45–60 at n = 2048–4096, where 30 left λ̂ 0.1–0.35 % low, so the σ_max trial at 1.001·λ̂ failed and cost a whole
/// wasted factorisation (docs/BENCHMARKS.md). Only the trials' success depends on it, never soundness.
/// The same subspace's smallest Ritz value θ_min, and how far it moved over the last product, come with it
/// (`KrylovEstimate`; the Ritz shift of `certifyOperator`). For G given by its matrix–vector product (n × 1 in,
/// n × 1 out; dense, tiled or distributed).
let lanczosRitz (steps: int) (n: int64) (device: torch.Device) (matvec: torch.Tensor -> torch.Tensor) : KrylovEstimate =
    use scope = torch.NewDisposeScope()
    let k = min (int64 (max 1 steps)) n
    let tolerance = sqrt FloatingPoint.unitRoundoff64
    let q = torch.zeros([| n; k |], dtype = torch.float64, device = device)
    let gq = torch.zeros([| n; k |], dtype = torch.float64, device = device)
    let mutable v = startTensor n device
    v <- v.div(v.norm())
    let mutable j = 0L
    let mutable grow = true
    let mutable scale = 0.0
    // the extreme eigenvalues of QᵀGQ at dimension `ritzStep`, and θ_min at the dimension before when it was formed
    let mutable ritzStep, ritzTop, ritzBottom, ritzBottomBefore = 0L, nan, nan, nan
    let ritz (j: int64) =
        if j <> ritzStep then
            use inner = torch.NewDisposeScope()
            let basis = q.narrow(1L, 0L, j)
            let t = basis.t().mm(gq.narrow(1L, 0L, j))
            let values = torch.linalg.eigvalsh(t.add(t.t()).mul(scalar 0.5))
            ritzBottomBefore <- (if ritzStep = j - 1L then ritzBottom else nan)
            ritzStep <- j
            ritzTop <- values.max().item<float> ()
            ritzBottom <- values.min().item<float> ()
        ritzTop
    let mutable previous = nan
    while grow && j < k do
        q.narrow(1L, j, 1L).copy_(v) |> ignore
        let w = matvec v
        gq.narrow(1L, j, 1L).copy_(w) |> ignore
        scale <- max scale (w.norm().item<float> ())
        j <- j + 1L
        if j >= int64 lanczosMinSteps && j < k then
            let theta = ritz j
            if theta - previous <= lanczosTolerance * abs theta then grow <- false
            previous <- theta
        elif j = int64 lanczosMinSteps - 1L then previous <- ritz j
        if grow && j < k then
            let basis = q.narrow(1L, 0L, j)
            let project (x: torch.Tensor) = x.sub(basis.mm(basis.t().mm(x)))
            let r1 = project w
            let r2 = project r1
            let n1, n2 = r1.norm().item<float> (), r2.norm().item<float> ()
            let r, norm = if n2 < 0.5 * n1 then (let r3 = project r2 in r3, r3.norm().item<float> ()) else r2, n2
            if norm > tolerance * scale && Double.IsFinite norm then v <- r.div(scalar norm) else grow <- false
    let top = ritz j
    { LambdaMax = top; LambdaMinRitz = ritzBottom; LambdaMinRitzChange = abs (ritzBottomBefore - ritzBottom) / abs ritzBottom }

/// `lanczosRitz`'s θ_max alone.
let lanczosLambdaMax (steps: int) (n: int64) (device: torch.Device) (matvec: torch.Tensor -> torch.Tensor) : float =
    (lanczosRitz steps n device matvec).LambdaMax

/// Rayleigh–Ritz estimate of λ_max(fl G) for a Gram held in memory (`lanczosLambdaMax` with G·v).
let estimateLambdaMax (steps: int) (g: torch.Tensor) : float =
    lanczosLambdaMax steps g.shape.[0] g.device (fun v -> g.mm(v))

/// `lanczosRitz` for a Gram held in memory.
let estimateRitz (steps: int) (g: torch.Tensor) : KrylovEstimate =
    lanczosRitz steps g.shape.[0] g.device (fun v -> g.mm(v))

/// Duplicate-row candidates read off fl(G): equal rows have ‖φ̃_i − φ̃_j‖² = G_ii + G_jj − 2G_ij = 0,
/// and each computed entry is within E of the exact one, so candidates satisfy d_ij ≤ 8E. Pairs i < j in
/// row-major order (the first `maxCandidates`), scanned in panels of 256 rows against the columns j ≥ the panel's
/// first row: O(256·n) temporaries instead of several n × n ones (at n = 16,384 each is 2 GiB).
let private duplicateCandidates (gram: GramMatrix) (maxCandidates: int) : (int * int) list =
    use scope = torch.NewDisposeScope()
    let g = gram.Gram
    let n = g.shape.[0]
    let d = g.diagonal()
    let tol = 8.0 * gram.AccumulationErrorBound
    let found = ResizeArray<int * int>()
    let panel = 256L
    let mutable r0 = 0L
    while r0 < n && found.Count < maxCandidates do
        use _panel = torch.NewDisposeScope()
        let rows = min panel (n - r0)
        let columns = n - r0
        // d_ij = (G_ii + G_jj) − 2G_ij entry by entry as for the whole matrix; j > i is j′ > i′ in panel coordinates
        let gp = g.narrow(0L, r0, rows).narrow(1L, r0, columns)
        let dist = d.narrow(0L, r0, rows).unsqueeze(1L).add(d.narrow(0L, r0, columns).unsqueeze(0L)).sub(gp.mul(scalar 2.0))
        let idx : torch.Tensor = dist.le(scalar tol).triu(1L).nonzero().cpu()
        let count = min (int idx.shape.[0]) (maxCandidates - found.Count)
        for k in 0 .. count - 1 do
            found.Add(int (r0 + idx.[int64 k, 0L].item<int64> ()), int (r0 + idx.[int64 k, 1L].item<int64> ()))
        r0 <- r0 + rows
    List.ofSeq found

/// γ'_h = γ_h/(1 − γ_h) of Demmel's Cholesky backward-error bound, rounded upward: h = n + 1 for any order of
/// the inner products, smaller for a known blocked order (`GramOperator.CholeskyDepth`).
let private choleskyGamma (depth: int) =
    let g = FloatingPoint.gamma FloatingPoint.unitRoundoff64 depth
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
let lambdaMaxTermsBy (factors: float list) (n: int) (choleskyDepth: int) (squaredNormSumUpper: float) (accumulationErrorBound: float)
                     (trialCholesky: float -> float[] option) (lambdaMaxEstimate: float) (terms: CertificateTerms) : CertificateTerms =
    let u = FloatingPoint.unitRoundoff64
    let cholGamma = choleskyGamma choleskyDepth
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

/// diag(a) when floating-point Cholesky of the matrix `a` completes, None when it fails: the diagonal is read before the
/// factorisation, as Demmel's term needs the factored matrix's trace. In column panels of `panel`
/// (`TileCholesky.factorInPlace`: the factor in a's lower triangle, zeros above) or, for `panel` ≤ 0 or ≥ n, LAPACK's
/// potrf on the whole matrix in any order (the factor in a's lower triangle, the strict upper triangle left as potrf
/// leaves it: only success is used).
let choleskyDiagonal (panel: int) (a: torch.Tensor) : float[] option =
    let diagonal = diagonalValues a
    let n = int a.shape.[0]
    // LAPACK's order: only success is used, so the factor's strict upper triangle is left as potrf leaves it
    let completed = if panel <= 0 || panel >= n then NativeBlas.potrfLower a = 0 else TileCholesky.factorInPlace panel a
    if completed then Some diagonal else None

/// Floating-point Cholesky of Ã_t = fl(t·I − fl G) held in memory, formed in `work` (n × n, overwritten), in panels of
/// `panel`: diag(Ã_t) when it completed.
let private lambdaMaxTrialCholesky (work: torch.Tensor) (panel: int) (gram: GramMatrix) (t: float) : float[] option =
    use scope = torch.NewDisposeScope()
    let trial = work.copy_(gram.Gram).neg_()
    trial.diagonal().add_(scalar t) |> ignore
    choleskyDiagonal panel trial

/// `lambdaMaxTermsBy` for a Gram held in memory: Ã_t = fl(t·I − fl G) factored by LAPACK (any order: γ'_{n+1}).
let lambdaMaxTerms (factors: float list) (gram: GramMatrix) (lambdaMaxEstimate: float) (terms: CertificateTerms) : CertificateTerms =
    use work = torch.empty_like(gram.Gram)
    lambdaMaxTermsBy factors gram.Rows (gram.Rows + 1) gram.SquaredNormSumUpper gram.AccumulationErrorBound (lambdaMaxTrialCholesky work 0 gram) lambdaMaxEstimate terms

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

let private certificateBy (method: string) (subject: ExpressivitySubject) verdict reason precision (device: string)
                          (terms: CertificateTerms) sigmaMin sigmaMaxEst sigmaMaxUpper (clock: Stopwatch) =
    { Subject = subject; Verdict = verdict; Reason = reason
      Method = method
      Precision = precision; Device = device; SigmaMinLower = sigmaMin
      SigmaMaxEstimate = sigmaMaxEst; SigmaMaxUpper = sigmaMaxUpper; Terms = terms; Route = CertificateRoute.Gram
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
let lambdaMinTermsBy (shifts: float list) (n: int) (choleskyDepth: int) (accumulationErrorBound: float)
                     (shiftedCholesky: float -> float[] option) (terms: CertificateTerms) : CertificateTerms =
    let u = FloatingPoint.unitRoundoff64
    let cholGamma = choleskyGamma choleskyDepth
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

/// Floating-point Cholesky of Ã = fl(fl G − c·I) held in memory, formed in `work` (n × n, overwritten), in panels of
/// `panel`: diag(Ã) when it completed.
let private lambdaMinShiftedCholesky (work: torch.Tensor) (panel: int) (gram: GramMatrix) (c: float) : float[] option =
    use scope = torch.NewDisposeScope()
    let shifted = work.copy_(gram.Gram)
    shifted.diagonal().sub_(scalar c) |> ignore
    choleskyDiagonal panel shifted

/// `lambdaMinTermsBy` for a Gram held in memory: Ã = fl(fl G − c·I) factored by LAPACK.
let lambdaMinTerms (shifts: float list) (gram: GramMatrix) (terms: CertificateTerms) : CertificateTerms =
    use work = torch.empty_like(gram.Gram)
    lambdaMinTermsBy shifts gram.Rows (gram.Rows + 1) gram.AccumulationErrorBound (lambdaMinShiftedCholesky work 0 gram) terms

/// Whether the certificate's shifted test and σ_max trial may factorise in any order (Demmel's γ'_{n+1}) instead of
/// the operator's blocked order (docs/theory.md §3 "Which order factorises"): when the any-order term on the λ_min
/// side, γ'_{n+1}·Σ‖φ̃_i‖² (≥ γ'_{n+1}·tr(Ã), tr(Ã) ≤ tr(fl G_s) ≤ Σ‖φ̃_i‖² up to rounding), is at most
/// `AnyOrderTolerance` times the smallest shift the certificate may try (`ShiftFractions`' least × λ̂_min), so at most that
/// fraction of whichever shift succeeds. The σ_max side needs no test: there tr(Ã_t) ≤ n·t(1 + u), so the any-order term
/// is at most γ'_{n+1}·n ≈ (n + 1)·n·u of t (≤ 1.2·10⁻⁶ for n ≤ 10⁵). Each
/// order's bound is proved (§3), and the choice is made before either factorisation from quantities the certificate
/// records; it affects cost and tightness, never soundness.
let anyOrderSuffices (opts: Options) (n: int) (squaredNormSumUpper: float) (lambdaMinEstimate: float) : bool =
    let lastShift = match opts.ShiftFractions with [] -> nan | fractions -> List.min fractions * lambdaMinEstimate
    opts.AnyOrderTolerance > 0.0 && lastShift > 0.0 && Double.IsFinite lastShift
    && choleskyGamma (n + 1) * squaredNormSumUpper <= opts.AnyOrderTolerance * lastShift

/// Whether `certifyOperator` tries the Ritz shift first (`Options.RitzShiftTolerance`): a positive θ_min that moved by at
/// most the tolerance, relative, over the Lanczos's last product, and a positive fraction to take of it.
let ritzShiftApplies (opts: Options) (krylov: KrylovEstimate) : bool =
    opts.RitzShiftTolerance > 0.0 && opts.RitzShiftFraction > 0.0 && Double.IsFinite opts.RitzShiftFraction
    && krylov.LambdaMinRitz > 0.0 && Double.IsFinite krylov.LambdaMinRitz
    && krylov.LambdaMinRitzChange <= opts.RitzShiftTolerance

/// The verdict and every term from a (scaled) Gram operator (SPEC §3, docs/theory.md §3): refutations
/// by shape, zero rows and exactly confirmed duplicates; the σ_max estimate and trial; the λ_min estimate
/// and the shifted Cholesky test. The λ_min estimate is the caller's warm shift when it proves enough, else the
/// Lanczos's settled θ_min when its first shift's Cholesky completes (the Ritz shift), else inverse iteration's. Shared by the dense (`certifyGram`) and the tiled (`Tiled`) routes.
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
            AccumulationGamma = FloatingPoint.gamma FloatingPoint.unitRoundoff64 (max 1 gram.AccumulationDepth)
            AccumulationGammaIndex = max 1 gram.AccumulationDepth; CholeskyGammaIndex = gram.CholeskyDepth
            SquaredNormSumUpper = gram.SquaredNormSumUpper
            AccumulationError = e; ScaleExponent = scale }
    let refute reason = certificate subject Verdict.Refuted reason precision device baseTerms 0.0 nan (sigmaMaxUpper baseTerms) clock
    if gram.Columns < n then
        refute (sprintf "rank Φ̃ ≤ columns = %d < n = %d (the condition needs m%s ≥ n)" gram.Columns n (if subject.WithBias then " + 1" else ""))
    elif gram.ZeroRows.Length > 0 then
        refute (sprintf "row %d of Φ̃ is exactly zero" gram.ZeroRows.[0])
    else
    // the caller's warm shift, in the scaled Gram's units (G_s = 4^(−e)·G): tried first; a success that proves at least
    // the floor makes the duplicate scan (rank n: no equal rows) and the λ_min estimate unnecessary. It is not tried when
    // the error terms it would carry, γ'_h·tr(fl G_s − c₀I) + E (tr fl G_s ≤ SquaredNormSumUpper up to rounding), already
    // put its bound under the floor (a Cholesky that could only be wasted: at n = 60,000 those terms are most of s_ref²).
    let warm, warmAttempts =
        let c0 = Math.ScaleB(opts.WarmShift, -2 * scale)
        let floor = if opts.WarmShiftFloor > 0.0 then Math.ScaleB(opts.WarmShiftFloor, -2 * scale) else 0.0
        let predictedErrors = choleskyGamma gram.CholeskyDepth * max 0.0 (gram.SquaredNormSumUpper - float n * c0) + e
        if not (c0 > 0.0 && Double.IsFinite c0 && c0 >= floor && c0 - predictedErrors > floor) then None, 0
        else
            // the factorisation's diagonal kept: the terms are formed again below on the σ_max side's terms, same arithmetic
            let diag = gram.ShiftedCholesky c0
            let terms = lambdaMinTermsBy [ c0 ] n gram.CholeskyDepth e (fun _ -> diag) baseTerms
            (if terms.Shift > 0.0 && terms.LambdaMinLower > 0.0 && terms.LambdaMinLower >= floor then Some (c0, diag) else None), terms.ShiftAttempts
    let duplicate =
        match rowsEqual, warm with
        | Some equal, None -> gram.DuplicateCandidates 10_000 |> List.tryFind (fun (i, j) -> equal i j)
        | _ -> None
    match duplicate with
    | Some (i, j) -> refute (sprintf "rows %d and %d of Φ̃ are identical (checked exactly)" i j)
    | None ->
    let krylov = gram.EstimateLambdaMax opts.KrylovSteps
    let lambdaMaxEst = krylov.LambdaMax
    let sigmaMaxEst = Math.ScaleB(sqrt (max 0.0 lambdaMaxEst), scale)
    // the order of both factorisations, chosen with the λ_min estimate (docs/theory.md §3 "Which order factorises")
    let orderFor (estimate: float) =
        match gram.AnyOrderCholesky with
        | Some anyOrder when warm.IsNone && anyOrderSuffices opts n gram.SquaredNormSumUpper estimate ->
            n + 1, anyOrder.Shifted, anyOrder.Trial
        | _ -> gram.CholeskyDepth, gram.ShiftedCholesky, gram.TrialCholesky
    // the Ritz shift (docs/theory.md §3 "The λ_min estimate"): the Lanczos's θ_min as the λ_min estimate when it has
    // settled, its first shift tried before any estimate of the certificate's own; Some (shift, diag(Ã), order) when that
    // Cholesky completed, and whether it was tried
    let ritzShift, ritzTried =
        if warm.IsSome || not (ritzShiftApplies opts krylov) then None, false
        else
            let order = orderFor krylov.LambdaMinRitz
            let _, shifted, _ = order
            let c = opts.RitzShiftFraction * krylov.LambdaMinRitz
            (shifted c |> Option.map (fun diag -> c, diag, order)), true
    // the λ_min estimate comes before the σ_max trial: with it the order of both factorisations is chosen
    let lambdaEst =
        match warm, ritzShift with
        | Some (c0, _), _ -> c0
        | None, Some _ -> krylov.LambdaMinRitz
        | None, None -> gram.EstimateLambdaMin opts.InverseIterations
    // a Ritz shift that failed is one factorisation more, counted with the shifts
    let ritzAttempts = if ritzTried && ritzShift.IsNone then 1 else 0
    let choleskyDepth, shiftedCholesky, trialCholesky =
        match ritzShift with
        | Some (_, _, order) -> order
        | None -> orderFor lambdaEst
    let baseTerms = { baseTerms with CholeskyGammaIndex = choleskyDepth }
    let baseTerms = lambdaMaxTermsBy opts.LambdaMaxFactors n choleskyDepth gram.SquaredNormSumUpper e trialCholesky lambdaMaxEst baseTerms
    let sigmaMaxBound = sigmaMaxUpper baseTerms
    let inconclusive reason terms =
        certificate subject Verdict.Inconclusive reason precision device terms 0.0 sigmaMaxEst sigmaMaxBound clock
    let units = if scale = 0 then "G" else sprintf "G = 4^(%d)·Φ̃Φ̃ᵀ" (-scale)
    let terms =
        match warm, ritzShift with
        | Some (c0, diag), _ ->
            // the σ_max side of this certificate, the λ_min side from the warm shift's factorisation (no estimate:
            // LambdaMinEstimate stays NaN)
            lambdaMinTermsBy [ c0 ] n choleskyDepth e (fun _ -> diag) baseTerms
        | None, Some (c, diag, _) ->
            // the λ_min side from the Ritz shift's factorisation; the estimate is θ_min. A warm shift tried before it
            // (one that failed or proved too little) was a factorisation too: counted
            let t = lambdaMinTermsBy [ c ] n choleskyDepth e (fun _ -> Some diag) { baseTerms with LambdaMinEstimate = lambdaEst }
            { t with ShiftAttempts = t.ShiftAttempts + warmAttempts }
        | None, None -> baseTerms
    if not (lambdaEst > 0.0) then
        inconclusive (sprintf "the floating-point estimate of λ_min(fl G) is %g ≤ 0 (%s)" lambdaEst units)
                     { baseTerms with LambdaMinEstimate = lambdaEst; ShiftAttempts = warmAttempts + ritzAttempts }
    else
    let terms =
        if warm.IsSome || ritzShift.IsSome then terms
        else
            // the attempts of a warm shift that did not prove enough and of a Ritz shift that failed count too (a Cholesky each)
            let t = lambdaMinTermsBy (opts.ShiftFractions |> List.map (fun fraction -> fraction * lambdaEst)) n choleskyDepth e shiftedCholesky
                                     { terms with LambdaMinEstimate = lambdaEst }
            { t with ShiftAttempts = t.ShiftAttempts + warmAttempts + ritzAttempts }
    let c, lam = terms.Shift, terms.LambdaMinLower
    if c = 0.0 then
        inconclusive (sprintf "shifted Cholesky failed for every shift tried (λ_min estimate %g, %s)" lambdaEst units) terms
    elif lam > 0.0 then
        let sigma = FloatingPoint.scaleDown (FloatingPoint.down (sqrt lam)) scale
        certificate subject Verdict.Certified
            (sprintf "Cholesky of fl(G) − %.6g·I succeeded%s; λ_min(G) ≥ %.6g > 0 (%s), so rank Φ̃ = n = %d"
                c (if warm.IsSome then " (the caller's warm shift)"
                   elif ritzShift.IsSome then " (the shift from the Lanczos's smallest Ritz value)"
                   else "") lam units n)
            precision device terms sigma sigmaMaxEst sigmaMaxBound clock
    else
        let errors = terms.ShiftRoundingError + terms.CholeskyBackwardError + terms.AccumulationError
        inconclusive (sprintf "Cholesky of fl(G) − %.6g·I succeeded but the error terms (%.3g) exceed the shift: bound %.3g ≤ 0 (%s)" c errors lam units) terms

/// Whether accumulating fl G again in a blocked order of depth `blockedDepth` (`Gram.accumulationDepth`, smaller than the
/// certificate's own h) could turn `certificate`, Inconclusive, into Certified (docs/theory.md §3 "One product first"):
/// its shifted Cholesky succeeded and proved λ_min(fl G_s) ≥ LambdaMinComputedGramLower > 0, but the accumulation term
/// γ_h·Σ‖φ̃_i‖² took the bound on λ_min(G) to ≤ 0, while the blocked order's γ_{blockedDepth}·Σ‖φ̃_i‖² would not. The
/// blocked fl G differs from this one by rounding only, so this predicts the retry's outcome; it decides whether a
/// caller that made fl G as one product (h = m', the fastest order) pays for a second accumulation, and is never part of
/// a bound: the retried certificate is made from its own Gram, every term anew.
let blockedOrderMayCertify (blockedDepth: int) (certificate: Certificate) : bool =
    let t = certificate.Terms
    certificate.Verdict = Verdict.Inconclusive && certificate.Route = CertificateRoute.Gram
    && blockedDepth >= 1 && blockedDepth < t.AccumulationGammaIndex
    && t.Shift > 0.0 && t.LambdaMinLower <= 0.0
    && t.LambdaMinComputedGramLower > Gram.GramMatrix.ErrorBound blockedDepth t.SquaredNormSumUpper 0.0

/// The certificate `blocked`, made from the Gram accumulated again in the blocked order after `oneProduct` (its
/// one-product certificate, Inconclusive: `blockedOrderMayCertify`), with a sentence saying so appended to its reason;
/// its terms and bounds are `blocked`'s own, and its time the whole (both accumulations: the caller's clock).
let afterOneProduct (oneProduct: Certificate) (blocked: Certificate) : Certificate =
    { blocked with
        Reason =
            blocked.Reason
            + sprintf "; fl G accumulated in the blocked order (h = %d) after the one-product Gram's accumulation term (h = %d) left its bound ≤ 0"
                blocked.Terms.AccumulationGammaIndex oneProduct.Terms.AccumulationGammaIndex }

/// The dense route's `GramOperator` on the scaled Gram `gram` (4^(−scale)·fl G) held in memory: every factorisation
/// (the λ_min estimate's, the shifted test's, the σ_max trial's) formed in `work` (n × n like the Gram, overwritten, the
/// caller's), the shifted test and the trial in panels of `opts.CholeskyPanel` (CholeskyDepth = `TileCholesky.depth`),
/// and the same two in LAPACK's order (`AnyOrderCholesky`, h = n + 1) where that is another order and the faster one:
/// OpenBLAS's dpotrf (libtorch's, MKL's on this AMD CPU, runs at 15.6 GFLOP/s against its gemm's 47, slower than the
/// panels built on that gemm; docs/BENCHMARKS.md).
let denseOperator (opts: Options) (precision: string) (scale: int) (work: torch.Tensor) (gram: GramMatrix) : GramOperator =
    let n = gram.Rows
    { Rows = n; Columns = gram.Columns; SquaredNormSumUpper = gram.SquaredNormSumUpper
      AccumulationErrorBound = gram.AccumulationErrorBound; AccumulationDepth = gram.AccumulationDepth
      CholeskyDepth = TileCholesky.depth n n opts.CholeskyPanel
      ZeroRows = gram.ZeroRows; ScaleExponent = scale
      Precision = precision; Device = string gram.Gram.device; Method = denseMethod
      DuplicateCandidates = duplicateCandidates gram
      EstimateLambdaMax = fun steps -> estimateRitz steps gram.Gram
      EstimateLambdaMin = fun iterations -> estimateLambdaMinIn work iterations gram.Gram
      ShiftedCholesky = fun c -> lambdaMinShiftedCholesky work opts.CholeskyPanel gram c
      TrialCholesky = fun t -> lambdaMaxTrialCholesky work opts.CholeskyPanel gram t
      AnyOrderCholesky =
        if TileCholesky.depth n n opts.CholeskyPanel > n || NativeBlas.current () <> NativeBlas.Backend.OpenBlas then None
        else Some { Shifted = lambdaMinShiftedCholesky work 0 gram; Trial = lambdaMaxTrialCholesky work 0 gram } }

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
    // one n × n work matrix for the three factorisations (the estimate's, the shifted test's, the σ_max trial's): its
    // pages are touched once, not three times (≈ 0.1 s per fresh 128 MiB at n = 4096)
    use work = torch.empty_like(gram.Gram)
    certifyOperator opts subject rowsEqual clock (denseOperator opts precision scale work gram)

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
/// ArgumentException, as for a Gram; m' ≥ n is refused (there is nothing to refute by shape). `device` names where
/// the squares were computed ("cpu"); a string, so a caller without tensors (`rf certify --matrix` on a tall file)
/// never loads libtorch.
let refuteByShapeOn (subject: ExpressivitySubject) (featurePrecision: string) (device: string)
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
            AccumulationGamma = FloatingPoint.gamma FloatingPoint.unitRoundoff64 columns; AccumulationGammaIndex = columns
            // no underflow guard on this path (float64 entries below 1e−150 are accepted): their squares' underflow added
            SquaredNormSumUpper = FloatingPoint.addUp (Gram.squaredNormSumUpper columns squares) (Gram.underflowAllowance n columns 0) }
    certificate subject Verdict.Refuted
        (sprintf "rank Φ̃ ≤ columns = %d < n = %d (the condition needs m%s ≥ n)" columns n (if subject.WithBias then " + 1" else ""))
        (sprintf "features %s (refuted by shape; no Gram formed)" featurePrecision) device terms 0.0 nan (sigmaMaxUpper terms) clock

/// `refuteByShapeOn` with the squares computed on `device` (a tensor's).
let refuteByShape (subject: ExpressivitySubject) (featurePrecision: string) (device: torch.Device)
                  (rowSquares: float[]) (clock: Stopwatch) : Certificate =
    refuteByShapeOn subject featurePrecision (string device) rowSquares clock

/// `certifyGram` on a Gram the caller owns and drops afterwards: it is scaled in place (no n × n copy),
/// so it must not be used as unscaled afterwards. For Grams accumulated from a stream (a file read in
/// column blocks through `Gram.ColumnBlockAccumulator`).
let certifyAccumulated (opts: Options) (subject: ExpressivitySubject) (rowsEqual: RowEquality)
                       (clock: Stopwatch) (gram: GramMatrix) : Certificate =
    certifyGramScaling true opts subject rowsEqual clock gram


// ---------------------------------------------------------------------------------------------
// The orthogonal route (docs/theory.md §3, "Orthogonal route"): a float64 thin QR of A = Φ̃_sᵀ
// (m' × n, Φ̃_s = 2^(−e)·Φ̃), A ≈ Q̂R̂, and rigorous a-posteriori bounds
//   σ_min(Φ̃_s) = σ_n(A) ≥ σ_min(Q̂)·σ_min(R̂) − ‖A − Q̂R̂‖₂                       (Weyl)
//   σ_min(Q̂) ≥ √(1 − ‖Q̂ᵀQ̂ − I‖₂)
//   σ_min(R̂) ≥ (1 − ‖R̂X − I‖₂)/‖X‖₂     (X ≈ R̂⁻¹; R̂⁻¹ = X(I + N)⁻¹, N = R̂X − I)
// every 2-norm bounded by a Frobenius norm of a float64-computed residual plus its rounding bound.
// The condition number is not squared: the route decides down to σ_min/σ_max ≈ n·u·(a modest factor).
// ---------------------------------------------------------------------------------------------

/// Entries of Q̂, R̂ and X below this magnitude (2^(−490) ≈ 3e−148, above the 1e−150 guard of `Gram`) are set to zero before any product is formed (the
/// bounds hold for whatever matrices are used, as long as the same ones are used throughout): so no
/// input is subnormal (flush-to-zero / denormals-are-zero cannot change an input) and no non-zero
/// product of two inputs underflows (≥ 2^(−980)).
let private tinyEntry = Math.ScaleB(1.0, -490)

/// Absolute rounding term per entry of a residual fl(fl(P·Q) − C) with inner dimension k, from
/// underflow alone: the subtraction's η and up to k partial sums flushed to zero, each < 2^(−1022),
/// and as much again for fl(|P||Q|): (k + 2)·2^(−1021) covers all of them.
let private underflowPerEntry (k: int) = FloatingPoint.mulUp (float (k + 2)) (Math.ScaleB(1.0, -1021))

/// Upper bound on ‖T‖_F² for a computed float64 tensor T (any device): fl(Σ fl(t²)) bounded by
/// (fl(Σ)/(1 − γ_{N−1}) + 2N·2^(−1022))/(1 − u) (each square one rounding, a square or partial sum
/// flushed below 2^(−1022) at most N times each); +∞ when the sum is not finite.
let private frobeniusSquaredUpperOf (t: torch.Tensor) : float =
    use scope = torch.NewDisposeScope()
    let count = int t.NumberOfElements
    let s = t.square().sum().item<float> ()
    if not (Double.IsFinite s) then infinity
    else
        let withUnderflow = FloatingPoint.addUp (FloatingPoint.sumNonNegativeUpper s count) (FloatingPoint.mulUp (float count) (Math.ScaleB(1.0, -1021)))
        FloatingPoint.inflate FloatingPoint.unitRoundoff64 withUnderflow

/// Upper bound on ‖T‖_F for a computed float64 tensor T (√ of `frobeniusSquaredUpperOf`, one ulp up).
let private frobeniusUpperOf (t: torch.Tensor) : float = FloatingPoint.up (sqrt (frobeniusSquaredUpperOf t))

/// Upper bound on ‖X‖₂ for a float64 matrix X (n × n, entries 0 or ≥ 1e−150 in magnitude): √ of the verified
/// λ_max bound of the Gram route (`lambdaMaxTerms`, shifted Cholesky of t·I − fl(XXᵀ), Krylov estimate,
/// factors `defaults.LambdaMaxFactors`) on the Gram of X, one ulp up; +∞ when no trial succeeds or X is not finite.
/// Tighter than ‖X‖_F by up to √n when many singular values of X are comparable.
let private spectralUpperOf (x: torch.Tensor) : float =
    let finite = (use f = x.isfinite().all() in f.item<bool> ())
    if not finite then infinity
    else
    try
        use gram = Gram.ofMatrix defaults.BlockColumns false x
        let estimate = estimateLambdaMax defaults.KrylovSteps gram.Gram
        let terms = lambdaMaxTerms defaults.LambdaMaxFactors gram estimate CertificateTerms.Empty
        if terms.LambdaMaxUpper > 0.0 && Double.IsFinite terms.LambdaMaxUpper then FloatingPoint.up (sqrt terms.LambdaMaxUpper) else infinity
    with :? ArgumentException -> infinity // a row's squared norm overflows: Frobenius (also +∞) decides

/// γ_k/(1 − γ_k), rounded upward.
let private gammaRatio (k: int) =
    let g = FloatingPoint.gamma FloatingPoint.unitRoundoff64 k
    FloatingPoint.up (g / FloatingPoint.down (1.0 - g))

/// Upper bound on ‖C − P·Q‖_F (exact) from the float64 residual R = fl(fl(P·Q) − C), with inner dimension k:
/// |C − PQ| ≤ (|R| + 2^(−1022))/(1 − u) + γ_k|P||Q| + k·2^(−1022) and |P||Q| ≤ (fl(|P||Q|) + k·2^(−1022))/(1 − γ_k)
/// entrywise, so ‖C − PQ‖_F ≤ ‖R‖_F/(1 − u) + γ_k/(1 − γ_k)·‖fl(|P||Q|)‖_F + (rows·cols)·(k + 2)·2^(−1021).
/// `absProductFrobenius` is an upper bound on ‖fl(|P||Q|)‖_F (or any upper bound on ‖|P||Q|‖_F, e.g. ‖P‖_F‖Q‖_F,
/// then without the 1/(1 − γ_k) the bound only loosens).
let private residualUpper (residual: torch.Tensor) (k: int) (absProductFrobenius: float) : float =
    let entries = float residual.NumberOfElements
    let r = FloatingPoint.inflate FloatingPoint.unitRoundoff64 (frobeniusUpperOf residual)
    let p = FloatingPoint.mulUp (gammaRatio k) absProductFrobenius
    FloatingPoint.addUp (FloatingPoint.addUp r p) (FloatingPoint.mulUp entries (underflowPerEntry k))

/// The float64 factors of the orthogonal route for A (m' × n, m' ≥ n): Q̂, R̂ from a thin Householder QR
/// (`torch.linalg.qr`, reduced) and X from the triangular solve R̂X = I (`solve_triangular`), each with
/// its entries below 2^(−490) in magnitude set to zero. Any matrices would do: the bounds of
/// `orthogonalTermsOf` hold for whatever Q̂, R̂, X they are given.
let orthogonalFactors (a: torch.Tensor) : torch.Tensor * torch.Tensor * torch.Tensor =
    use scope = torch.NewDisposeScope()
    let rows, n = int a.shape.[0], int a.shape.[1]
    if rows < n then invalidArg "a" (sprintf "the orthogonal route needs m' ≥ n (got %d × %d)" rows n)
    let clean (t: torch.Tensor) = t.masked_fill(t.abs().lt(scalar tinyEntry), scalar 0.0)
    let struct (q0, r0) = torch.linalg.qr(a)
    let q, r = clean q0, clean r0
    let eye = torch.eye(int64 n, dtype = torch.float64, device = a.device)
    let x = clean (torch.linalg.solve_triangular(r, eye, upper = true))
    q.MoveToOuterDisposeScope(), r.MoveToOuterDisposeScope(), x.MoveToOuterDisposeScope()

/// The orthogonal-route terms of A (m' × n float64, m' ≥ n, on any device; A = 2^(−e)·Φ̃ᵀ exactly) for
/// given Q̂ (m' × n), R̂ (n × n), X (n × n) with no subnormal entries (`orthogonalFactors`): fills the Qr*
/// fields of `terms` (docs/theory.md §3, "Orthogonal route"). QrSigmaMinLower > 0 proves
/// σ_min(A) ≥ QrSigmaMinLower, so rank Φ̃ = n. Only success depends on Q̂, R̂, X, never soundness.
let orthogonalTermsOf (a: torch.Tensor) (q: torch.Tensor) (r: torch.Tensor) (x: torch.Tensor) (terms: CertificateTerms) : CertificateTerms =
    use scope = torch.NewDisposeScope()
    let rows, n = int a.shape.[0], int a.shape.[1]
    let eye = torch.eye(int64 n, dtype = torch.float64, device = a.device)
    // E = A − Q̂R̂, inner dimension n, |Q̂||R̂| formed in float64.
    let eUpper = residualUpper (a.sub(q.mm(r))) n (frobeniusUpperOf (q.abs().mm(r.abs())))
    // F = Q̂ᵀQ̂ − I, inner dimension m', ‖|Q̂|ᵀ|Q̂|‖_F ≤ ‖Q̂‖_F² (no second product; γ/(1 − γ) ≥ γ).
    let fUpper = residualUpper (q.t().mm(q).sub(eye)) rows (frobeniusSquaredUpperOf q)
    // N = R̂X − I, inner dimension n, |R̂||X| formed in float64.
    let nUpper = residualUpper (r.mm(x).sub(eye)) n (frobeniusUpperOf (r.abs().mm(x.abs())))
    let xUpper = min (frobeniusUpperOf x) (spectralUpperOf x)
    let qLower = if fUpper < 1.0 then FloatingPoint.down (sqrt (FloatingPoint.subDown 1.0 fUpper)) else 0.0
    let rLower = if nUpper < 1.0 && xUpper > 0.0 && Double.IsFinite xUpper then FloatingPoint.down (FloatingPoint.subDown 1.0 nUpper / xUpper) else 0.0
    let product = FloatingPoint.down (qLower * rLower)
    let sigma = if Double.IsFinite eUpper then FloatingPoint.subDown product eUpper else -infinity
    { terms with
        QrResidualUpper = eUpper; QrOrthogonalityUpper = fUpper; QrQSigmaMinLower = qLower
        QrInverseNormUpper = xUpper; QrInverseResidualUpper = nUpper; QrRSigmaMinLower = rLower
        QrSigmaMinLower = sigma }

/// `orthogonalTermsOf` for the factors `orthogonalFactors a`.
let orthogonalTerms (a: torch.Tensor) (terms: CertificateTerms) : CertificateTerms =
    let q, r, x = orthogonalFactors a
    use q = q
    use r = r
    use x = x
    orthogonalTermsOf a q r x terms

/// Estimate of σ_max(A) by `steps` power iterations on AᵀA from a seeded start (≤ σ_max up to rounding;
/// an estimate, never used in a bound).
let private powerSigmaMax (steps: int) (a: torch.Tensor) : float =
    use scope = torch.NewDisposeScope()
    use gen = new torch.Generator(20210405UL, a.device)
    let mutable v = torch.randn([| a.shape.[1]; 1L |], dtype = torch.float64, device = a.device, generator = gen)
    v <- v.div(v.norm())
    for _ in 1 .. steps do
        let w = a.t().mm(a.mm(v))
        let norm = w.norm().item<float> ()
        if norm > 0.0 && Double.IsFinite norm then v <- w.div(scalar norm)
    a.mm(v).norm().item<float> ()

/// Φ̃ (n × m') in float64 on Φ's device, with the bias column of ones when asked.
let private tildeOf (withBias: bool) (phi: torch.Tensor) : torch.Tensor =
    use scope = torch.NewDisposeScope()
    let p = phi.detach().``to``(torch.float64)
    let t = if withBias then torch.cat([| p; torch.ones([| p.shape.[0]; 1L |], dtype = torch.float64, device = p.device) |], 1L) else p.clone()
    t.MoveToOuterDisposeScope()

/// A = 2^(−e)·Φ̃ᵀ (m' × n), or None when some entry does not scale exactly (2^(−e)·x·2^e ≠ x: it
/// would fall below the normal range); |e| ≤ 1000.
let private scaledTranspose (tilde: torch.Tensor) (e: int) : torch.Tensor option =
    if abs e > 1000 then None
    else
    use scope = torch.NewDisposeScope()
    let a = tilde.mul(scalar (Math.ScaleB(1.0, -e)))
    let exact = (use back = a.mul(scalar (Math.ScaleB(1.0, e))) in use same = back.eq(tilde).all() in same.item<bool> ())
    if exact then Some (a.t().contiguous().MoveToOuterDisposeScope()) else None

/// Working memory of the orthogonal route for n × m' (A, Q̂, the E residual and |Q̂||R̂|, and slack), bytes.
let orthogonalBytes (n: int) (columns: int) = 6L * 8L * int64 n * int64 columns + 6L * 8L * int64 n * int64 n

/// Method string of orthogonal-route certificates.
let orthogonalMethod =
    "float64 Householder QR of Φ̃ᵀ + a-posteriori bound σ_min ≥ σ_min(Q̂)·σ_min(R̂) − ‖Φ̃ᵀ − Q̂R̂‖ (docs/theory.md §3, orthogonal route)"

/// Exact duplicate rows of Φ̃ (n × m', any device): rows hashed on the CPU, candidates compared exactly
/// (−0 = +0, as `eq` does). The first pair found, if any.
let private duplicateRowsExact (tilde: torch.Tensor) : (int * int) option =
    let n, m = int tilde.shape.[0], int tilde.shape.[1]
    let data = (use c = tilde.contiguous().cpu() in c.data<float>().ToArray())
    let row i = Array.init m (fun k -> data.[i * m + k] + 0.0)
    let rows = Array.init n row
    rows
    |> Array.indexed
    |> Array.groupBy (fun (_, r) -> r |> Array.fold (fun h v -> h * 1099511628211L ^^^ BitConverter.DoubleToInt64Bits v) 17L)
    |> Array.tryPick (fun (_, group) ->
        seq { for a in 0 .. group.Length - 1 do
                for b in a + 1 .. group.Length - 1 do
                    let (i, ri), (j, rj) = group.[a], group.[b]
                    if ri = rj then yield (min i j, max i j) } |> Seq.tryHead)

/// The orthogonal route on an in-memory Φ (n × m, m' ≥ n). `gramCertificate`: the Inconclusive Gram
/// certificate of the same Φ (Auto mode): its terms, scale exponent and σ_max bounds are kept and the
/// Qr* terms added; None (Route = Orthogonal): the refutations (zero rows, exact duplicates) and the
/// Frobenius σ_max bound are computed here, without a Gram.
let private certifyOrthogonal (subject: ExpressivitySubject) (phi: torch.Tensor) (gramCertificate: Certificate option) (clock: Stopwatch) : Certificate =
    let n = subject.Rows
    let columns = subject.Columns
    use tilde = tildeOf subject.WithBias phi
    let precision =
        match gramCertificate with
        | Some g -> g.Precision + ", QR float64"
        | None -> sprintf "features %s, QR float64" (Gram.precisionName "phi" phi)
    let finish verdict reason sigma sigmaMaxEst sigmaMaxBound terms =
        { Subject = subject; Verdict = verdict; Reason = reason; Method = orthogonalMethod; Precision = precision
          Device = string phi.device; SigmaMinLower = sigma; SigmaMaxEstimate = sigmaMaxEst; SigmaMaxUpper = sigmaMaxBound
          Terms = terms; Route = CertificateRoute.Orthogonal; ElapsedSeconds = clock.Elapsed.TotalSeconds
          CreatedUtc = DateTime.UtcNow; FormatVersion = 1 }
    let squares = (use s = tilde.square().sum(1L).cpu() in s.data<float>().ToArray())
    match squares |> Array.tryFindIndex (fun v -> not (Double.IsFinite v)) with
    | Some i -> invalidArg "features" (sprintf "row %d of Φ has a non-finite squared norm (NaN or ±Inf features, or values so large their squares overflow): no certificate can be given" i)
    | None -> ()
    let top = Array.max squares
    let e, baseTerms, prefix, sigmaMaxEst, sigmaMaxBound, refutation =
        match gramCertificate with
        | Some g -> g.Terms.ScaleExponent, g.Terms, sprintf "float64 Gram route Inconclusive (%s); " g.Reason, g.SigmaMaxEstimate, g.SigmaMaxUpper, None
        | None ->
            let e = if top > 0.0 then (Math.ILogB top + 1) >>> 1 else 0
            let scaledSquares = squares |> Array.map (fun s -> Math.ScaleB(s, -2 * e))
            let terms =
                { CertificateTerms.Empty with
                    AccumulationGamma = FloatingPoint.gamma FloatingPoint.unitRoundoff64 (max 1 columns); AccumulationGammaIndex = max 1 columns
                    // the squares were formed unscaled: their underflow, scaled by 4^(−e) too, is added
                    SquaredNormSumUpper =
                        FloatingPoint.addUp (FloatingPoint.addUp (Gram.squaredNormSumUpper columns scaledSquares) (FloatingPoint.mulUp (float n) (Math.ScaleB(1.0, -1021))))
                                            (Gram.underflowAllowance n columns e)
                    ScaleExponent = e }
            let refutation =
                match squares |> Array.tryFindIndex (fun v -> v = 0.0) with
                | Some i -> Some (sprintf "row %d of Φ̃ is exactly zero" i)
                | None -> duplicateRowsExact tilde |> Option.map (fun (i, j) -> sprintf "rows %d and %d of Φ̃ are identical (checked exactly)" i j)
            e, terms, "", nan, sigmaMaxUpper terms, refutation
    match refutation with
    | Some reason -> finish Verdict.Refuted reason 0.0 sigmaMaxEst sigmaMaxBound baseTerms
    | None ->
    match scaledTranspose tilde e with
    | None -> finish Verdict.Inconclusive (prefix + sprintf "orthogonal route: 2^(%d)·Φ̃ is not exact in float64 (entries leave the normal range)" (-e)) 0.0 sigmaMaxEst sigmaMaxBound baseTerms
    | Some a ->
    use a = a
    let terms = orthogonalTerms a baseTerms
    let sigmaMaxEst = if Double.IsNaN sigmaMaxEst then FloatingPoint.scaleUp (powerSigmaMax 30 a) e else sigmaMaxEst
    let units = if e = 0 then "Φ̃" else sprintf "2^(%d)·Φ̃" (-e)
    let s = terms.QrSigmaMinLower
    if s > 0.0 then
        let sigma = FloatingPoint.scaleDown s e
        finish Verdict.Certified
            (prefix + sprintf "orthogonal route: σ_min(%s) ≥ σ_min(Q̂)·σ_min(R̂) − ‖E‖ ≥ %.6g·%.6g − %.3g = %.6g > 0, so rank Φ̃ = n = %d"
                               units terms.QrQSigmaMinLower terms.QrRSigmaMinLower terms.QrResidualUpper s n)
            sigma sigmaMaxEst sigmaMaxBound terms
    else
        let why =
            if not (terms.QrOrthogonalityUpper < 1.0) then sprintf "‖Q̂ᵀQ̂ − I‖ bound %.3g ≥ 1" terms.QrOrthogonalityUpper
            elif not (terms.QrInverseResidualUpper < 1.0) then sprintf "‖R̂X − I‖ bound %.3g ≥ 1 (R̂ numerically singular; ‖X‖_F ≤ %.3g)" terms.QrInverseResidualUpper terms.QrInverseNormUpper
            else sprintf "σ_min(Q̂)·σ_min(R̂) ≥ %.3g does not exceed the residual bound ‖E‖ ≤ %.3g" (terms.QrQSigmaMinLower * terms.QrRSigmaMinLower) terms.QrResidualUpper
        finish Verdict.Inconclusive (prefix + sprintf "orthogonal route Inconclusive: %s (%s)" why units) 0.0 sigmaMaxEst sigmaMaxBound terms

/// Whether Auto mode tries the orthogonal route after `gramCertificate` (Route = Auto and the Gram route
/// Inconclusive), and whether n × m' fits `opts.OrthogonalMaxBytes` (`orthogonalBytes`).
let wantsOrthogonal (opts: Options) (gramCertificate: Certificate) : bool * bool =
    let wanted = opts.Route = RouteChoice.Auto && gramCertificate.Verdict = Verdict.Inconclusive && gramCertificate.Route = CertificateRoute.Gram
    wanted, orthogonalBytes gramCertificate.Subject.Rows gramCertificate.Subject.Columns <= opts.OrthogonalMaxBytes

/// `opts` for the orthogonal follow-up of a certificate made on the tiled engine: its working memory (it cannot spill)
/// is held to the engine's tile memory budget as well as to `OrthogonalMaxBytes`.
let withinTileBudget (memoryBudgetBytes: int64) (opts: Options) : Options =
    { opts with OrthogonalMaxBytes = min opts.OrthogonalMaxBytes (max 0L memoryBudgetBytes) }

/// Why the orthogonal route was not tried for an n × m' Φ̃ that does not fit `opts.OrthogonalMaxBytes`.
let orthogonalTooLarge (opts: Options) (rows: int) (columns: int) : string =
    let size (bytes: int64) = if bytes >= (1L <<< 20) then sprintf "%d MiB" (bytes >>> 20) else sprintf "%d bytes" bytes
    sprintf "it needs about %s, above the route's limit of %s (Options.OrthogonalMaxBytes; on the tiled engine also the tile memory budget)"
        (size (orthogonalBytes rows columns)) (size opts.OrthogonalMaxBytes)

/// `gramCertificate` with the reason why the orthogonal route was not tried appended (Auto mode, Φ̃ too
/// large for `opts.OrthogonalMaxBytes`, or not in memory: `why`).
let orthogonalNotTried (gramCertificate: Certificate) (why: string) : Certificate =
    { gramCertificate with Reason = gramCertificate.Reason + sprintf "; the orthogonal route was not tried (%s)" why }

/// Auto mode after the Gram route on the same in-memory Φ (n × m, no bias column): `gramCertificate` itself
/// unless `wantsOrthogonal`; then the orthogonal route (its certificate keeps the Gram route's terms and
/// σ_max bounds, Route = Orthogonal), or `gramCertificate` with the reason when Φ̃ is too large.
/// For callers that computed the Gram route themselves (a streamed file that fits in memory).
let certifyAfterGram (opts: Options) (subject: ExpressivitySubject) (phi: torch.Tensor) (clock: Stopwatch) (gramCertificate: Certificate) : Certificate =
    match wantsOrthogonal opts gramCertificate with
    | false, _ -> gramCertificate
    | true, false ->
        orthogonalNotTried gramCertificate (orthogonalTooLarge opts subject.Rows subject.Columns)
    | true, true -> certifyOrthogonal subject phi (Some gramCertificate) clock

/// `certifyAfterGram` for Φ given as row blocks `rowBlock 0 … blockCount − 1` (the streamed and tiled model paths): the
/// blocks are produced once more and joined (float64; the blocks and their copies die before the QR) only when the
/// orthogonal route is wanted and Φ̃ fits `opts.OrthogonalMaxBytes`; otherwise Φ is not read (the Gram certificate, with
/// the reason when Φ̃ is too large). `clock` is the whole certificate's, started before the Gram route.
let certifyAfterGramOfRowBlocks (opts: Options) (subject: ExpressivitySubject) (blockCount: int) (rowBlock: int -> torch.Tensor)
                                (clock: Stopwatch) (gramCertificate: Certificate) : Certificate =
    match wantsOrthogonal opts gramCertificate with
    | true, true ->
        use phi =
            use scope = torch.NewDisposeScope()
            torch.cat([| for b in 0 .. blockCount - 1 -> (rowBlock b).detach().``to``(torch.float64) |], 0L).MoveToOuterDisposeScope()
        certifyAfterGram opts subject phi clock gramCertificate
    | _ -> certifyAfterGram opts subject null clock gramCertificate

/// Certificate for an in-memory feature matrix Φ (n × m, without the bias column), by `opts.Route`:
/// Auto (the float64 Gram route, then the orthogonal route when it is Inconclusive and fits
/// `opts.OrthogonalMaxBytes`), Gram, or Orthogonal (QR of Φ̃ᵀ only). Certificate.Route names the route
/// whose verdict stands; in Auto mode an orthogonal-route certificate keeps the Gram route's terms.
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
    if opts.Route = RouteChoice.Orthogonal then certifyOrthogonal subject phi None clock
    else
    let gramCertificate =
        use gram = Gram.ofMatrix opts.BlockColumns subject.WithBias phi
        certifyGramScaling true opts subject (rowEqualityOf phi) clock gram
    certifyAfterGram opts subject phi clock gramCertificate

/// Certificate for Φ streamed as row blocks that can be produced again (e.g. forward passes of a
/// network in evaluation mode). In Auto mode, when the Gram route is Inconclusive and Φ̃ fits
/// `opts.OrthogonalMaxBytes`, the blocks are produced once more and joined for the orthogonal route. Every block has `blockRows` rows except possibly the last;
/// `cacheBytes` bounds the memory spent keeping blocks instead of recomputing them.
let certifyRowBlocks (opts: Options) (subject: ExpressivitySubject) (cacheBytes: int64)
                     (blockRows: int) (blockCount: int) (rowBlock: int -> torch.Tensor) : Certificate =
    let clock = Stopwatch.StartNew()
    let gramCertificate =
        use gram = Gram.ofRowBlocks cacheBytes subject.WithBias opts.BlockColumns blockRows blockCount rowBlock
        let row (i: int) =
            use block = rowBlock (i / blockRows)
            use r = block.[int64 (i % blockRows)]
            r.clone()
        let equal i j =
            use a = row i
            use b = row j
            a.eq(b).all().item<bool> ()
        certifyGramScaling true opts subject (Some equal) clock gram
    // Auto mode, Gram route Inconclusive, Φ̃ small enough: the row blocks once more, whole, for the orthogonal route.
    certifyAfterGramOfRowBlocks opts subject blockCount rowBlock clock gramCertificate
