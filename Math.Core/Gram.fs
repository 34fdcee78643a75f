/// Gram matrices G = Φ̃ Φ̃ᵀ accumulated in float64 by streaming blocks of Φ (SPEC §3 step 1,
/// §6): memory O(n²), never O(n·m). Float32 features are exact in float64, so the only
/// error is the accumulation's: |fl(G) − G| ≤ γ_{m'} |Φ̃||Φ̃|ᵀ entrywise for inner products of
/// length m' in any order (BLAS blocking and FMA included), hence
/// ‖fl(G) − G‖₂ ≤ γ_{m'} Σ_i ‖φ̃_i‖².
module ResearchFramework.MathCore.Gram

open System
open TorchSharp

/// A Gram matrix in float64 with the bookkeeping its error bound needs.
type GramMatrix =
    { /// fl(G), n×n float64 (symmetric).
      Gram: torch.Tensor
      Rows: int
      /// m' = columns of Φ̃ accumulated (bias column included).
      Columns: int
      /// Upper bound on Σ_i ‖φ̃_i‖² in exact arithmetic.
      SquaredNormSumUpper: float
      /// Rows of Φ̃ that are exactly zero (each proves rank < n).
      ZeroRows: int[]
      /// Precision of the features as given ("float32" or "float64"); the Gram is float64.
      FeaturePrecision: string
      /// Upper bound on ‖Gram − 4^(−e)·fl(G)‖₂ from rounding the entries that `scaled` pushes below
      /// the normal range (0 for an accumulated, unscaled Gram).
      ScalingError: float }

    /// Upper bound on ‖fl(G) − G‖₂ = γ_{m'} · Σ‖φ̃_i‖² (+ ScalingError for a scaled Gram), rounded upward.
    member g.AccumulationErrorBound = GramMatrix.ErrorBound g.Columns g.SquaredNormSumUpper g.ScalingError

    /// γ_h·S (+ H when H > 0), rounded upward: the accumulation bound for inner products whose terms are rounded at
    /// most h = `depth` times (h = m' = columns of Φ̃ in any order; the tiled engine's blocked accumulation has a
    /// smaller h, `Tiled.accumulationDepth`), S ≥ Σ‖φ̃_i‖² and scaling error H (shared by the dense, the tiled and
    /// the ScaLAPACK Gram).
    static member ErrorBound (depth: int) (squaredNormSumUpper: float) (scalingError: float) =
        let accumulation = FloatingPoint.mulUp (FloatingPoint.gamma FloatingPoint.unitRoundoff64 (max 1 depth)) squaredNormSumUpper
        if scalingError > 0.0 then FloatingPoint.addUp accumulation scalingError else accumulation

    interface IDisposable with
        member g.Dispose() = g.Gram.Dispose()

/// Name of a feature dtype; only float32 and float64 features are certified.
let precisionName (what: string) (t: torch.Tensor) =
    if t.dtype = torch.float32 then "float32"
    elif t.dtype = torch.float64 then "float64"
    else invalidArg what (sprintf "%s must be float32 or float64, got %O" what t.dtype)

/// Checks one block of features: float32/float64, 2-D, and (for float64) no non-zero entry below
/// the underflow guard. Float32 needs no scan: its smallest non-zero magnitude (1.4e-45) squares
/// to 2e-90, far from float64 underflow. Finiteness is checked once on diag(fl G) (`checkFinite`):
/// a NaN or ±Inf feature, or a squared norm that overflows, makes its diagonal entry non-finite.
let validateBlock (what: string) (block: torch.Tensor) =
    precisionName what block |> ignore
    if block.dim () <> 2L then
        invalidArg what (sprintf "%s must be 2-D (rows × features), got shape %A" what block.shape)
    if block.dtype = torch.float64 then
        use scope = torch.NewDisposeScope()
        let absBlock = block.abs ()
        let tiny = absBlock.gt(scalar 0.0).logical_and(absBlock.lt(scalar FloatingPoint.underflowGuard)).any()
        if tiny.item<bool> () then
            invalidArg what (sprintf "%s has non-zero entries below %g in magnitude: rescale the features (the error analysis assumes no underflow)" what FloatingPoint.underflowGuard)

/// The diagonal of a square tensor as a float64 array. The diagonal view and its CPU wrapper (`cpu()` returns a new
/// wrapper even on the CPU) are both disposed here: an undisposed view keeps the whole matrix's storage alive (a 32 MiB
/// tile read back from its file, until a garbage collection or the caller's dispose scope ends).
let diagonalValues (t: torch.Tensor) : float[] =
    use view = t.diagonal()
    use d = view.cpu()
    d.data<float>().ToArray()

/// The row squared norms ‖φ̃_i‖² = fl(G)_ii (each an inner product of length m', with the same
/// γ_{m'} bound as every entry), after checking they are all finite.
let private squaredNorms (gram: torch.Tensor) : float[] =
    let squares = diagonalValues gram
    match squares |> Array.tryFindIndex (fun v -> not (Double.IsFinite v)) with
    | Some i ->
        invalidArg "features" (sprintf "row %d of Φ has a non-finite squared norm (NaN or ±Inf features, or values so large their squares overflow): no certificate can be given" i)
    | None -> squares

/// Σ‖φ̃_i‖² bounded above in exact arithmetic: fl(‖φ̃_i‖²) has relative error ≤ γ_h (h = `depth`: m' = columns in
/// any order, smaller for a blocked order), and the sum over rows adds γ_{n−1}.
let squaredNormSumUpper (depth: int) (squares: float[]) =
    let perRowGamma = FloatingPoint.gamma FloatingPoint.unitRoundoff64 (max 1 depth)
    FloatingPoint.inflate perRowGamma (FloatingPoint.sumNonNegativeUpper (Array.sum squares) squares.Length)

/// The finished Gram record: row squared norms from diag(fl G), their bound, the zero rows.
let private complete (gram: torch.Tensor) (columns: int) (precision: string) : GramMatrix =
    let squares = squaredNorms gram
    { Gram = gram; Rows = squares.Length; Columns = columns
      SquaredNormSumUpper = squaredNormSumUpper columns squares
      ZeroRows = squares |> Array.indexed |> Array.filter (fun (_, s) -> s = 0.0) |> Array.map fst
      FeaturePrecision = precision; ScalingError = 0.0 }

/// The exponent e with 4^(−e)·max_i fl(G)_ii in [1/2, 2) (0 when that maximum is 0 or not finite):
/// certifying 2^(−e)·Φ̃ instead of Φ̃ makes the certificate independent of the units of Φ
/// (docs/theory.md §3, "Scaling"). Scaling Φ by 2^k (no bias column) adds exactly k.
let scaleExponentOf (maxDiagonal: float) : int =
    if maxDiagonal > 0.0 && Double.IsFinite maxDiagonal then (Math.ILogB maxDiagonal + 1) >>> 1 else 0

/// `scaleExponentOf` max_i fl(G)_ii of the Gram held in memory.
let scaleExponent (gram: GramMatrix) : int =
    let d = (use diag = gram.Gram.diagonal() in use top = diag.max() in top.item<float> ())
    scaleExponentOf d

/// Multiplies `t` in place by 4^(−e), as `scaleBy` does every entry of fl(G) (one factor 4^(−e), or two
/// factors 2^(−e) when 4^(−e) is not a normal number).
let scaleInPlace (e: int) (t: torch.Tensor) : unit =
    if abs (2 * e) <= 1022 then t.mul_(scalar (Math.ScaleB(1.0, -2 * e))) |> ignore
    else t.mul_(scalar (Math.ScaleB(1.0, -e))).mul_(scalar (Math.ScaleB(1.0, -e))) |> ignore

/// ScalingError of a scaled n × n Gram: n·2^(−1021), rounded upward (see `scaleBy`).
let scalingErrorBound (rows: int) : float = FloatingPoint.up (float rows * Math.ScaleB(1.0, -1021))

/// The Gram of 2^(−e)·Φ̃ for e = `scaleExponent gram`, and e: every entry of fl(G) multiplied by the
/// power of two 4^(−e) (exact, except for entries pushed below the normal range, each then off by
/// less than 2^(−1022) even with flush-to-zero, hence ScalingError = n·2^(−1021) ≥ the 2-norm of two
/// such roundings per entry), Σ‖φ̃_i‖²'s bound scaled likewise. `inPlace`: scale gram.Gram itself
/// (no n × n copy; the result shares it, and `gram` must not be used as unscaled afterwards);
/// otherwise the result owns a new tensor, which the caller disposes.
let scaleBy (inPlace: bool) (gram: GramMatrix) : GramMatrix * int =
    let e = scaleExponent gram
    let g = if inPlace then gram.Gram else gram.Gram.clone()
    scaleInPlace e g
    { gram with
        Gram = g
        SquaredNormSumUpper = FloatingPoint.scaleUp gram.SquaredNormSumUpper (-2 * e)
        ScalingError = scalingErrorBound gram.Rows }, e

/// `scaleBy false`: a scaled copy, which the caller disposes.
let scaled (gram: GramMatrix) : GramMatrix * int = scaleBy false gram

/// Accumulates fl(G) = Σ_blocks B Bᵀ over column blocks B (n × b) of Φ, in float64: each block's
/// product on the lower triangle (`NativeBlas.syrkLower`), the upper triangle its mirror (Finish), so
/// fl(G) is exactly symmetric and every entry one inner product of length m' (in the BLAS's order).
type ColumnBlockAccumulator(rows: int, device: torch.Device) =
    do if rows <= 0 then invalidArg "rows" "a Gram matrix needs at least one row (n = 0)"
    let gram = torch.zeros([| int64 rows; int64 rows |], dtype = torch.float64, device = device)
    let mutable columns = 0
    let mutable blocks = 0
    let mutable precision = "float32"

    /// Adds the columns of one block (n × b, float32 or float64, any device).
    member _.Add(block: torch.Tensor) =
        validateBlock (sprintf "feature block %d" blocks) block
        if int block.shape.[0] <> rows then
            invalidArg "block" (sprintf "feature block %d has %d rows, expected n = %d" blocks block.shape.[0] rows)
        if block.dtype = torch.float64 then precision <- "float64"
        use scope = torch.NewDisposeScope()
        let b = block.detach().``to``(torch.float64, device)
        // The lower triangle only (syrk: half a gemm's flops); mirrored once in Finish.
        NativeBlas.syrkLower 1.0 b 1.0 gram
        columns <- columns + int block.shape.[1]
        blocks <- blocks + 1

    /// Adds the bias column of ones (Φ̃ = [Φ, 1]): exact in float64.
    member _.AddBiasColumn() =
        gram.add_(scalar 1.0) |> ignore
        columns <- columns + 1

    member _.Columns = columns

    /// Finishes the accumulation; the accumulator must not be used afterwards.
    member _.Finish() : GramMatrix =
        if columns = 0 then invalidArg "blocks" "no feature columns were accumulated (empty taps or empty blocks)"
        NativeBlas.mirrorLower gram
        complete gram columns precision

/// Gram of an in-memory matrix Φ (n × m), streamed in column blocks of `blockColumns`.
let ofMatrix (blockColumns: int) (withBias: bool) (phi: torch.Tensor) : GramMatrix =
    if phi.dim () <> 2L then invalidArg "phi" (sprintf "Φ must be 2-D (rows × features), got shape %A" phi.shape)
    if phi.shape.[0] = 0L then invalidArg "phi" "Φ has no rows (n = 0)"
    if blockColumns <= 0 then invalidArg "blockColumns" "block size must be positive"
    let acc = ColumnBlockAccumulator(int phi.shape.[0], phi.device)
    let m = int phi.shape.[1]
    let mutable start = 0
    while start < m do
        let width = min blockColumns (m - start)
        use block = phi.narrow(1L, int64 start, int64 width)
        acc.Add block
        start <- start + width
    if withBias then acc.AddBiasColumn()
    acc.Finish()

/// Gram of Φ given as row blocks Φ_I (b_I × m) that can be produced again on demand (for
/// example by re-running a network's forward pass): G_IJ = Φ_I Φ_Jᵀ for J ≤ I. Every block has
/// `blockRows` rows except possibly the last, so n is known from the last block alone and no
/// block is computed just to learn its size. Row blocks are kept in memory up to `cacheBytes`,
/// otherwise recomputed; Φ is never held whole unless it fits the cache.
let ofRowBlocks (cacheBytes: int64) (withBias: bool) (blockRows: int) (blockCount: int) (rowBlock: int -> torch.Tensor) : GramMatrix =
    if blockCount <= 0 then invalidArg "blockCount" "no row blocks (n = 0)"
    if blockRows <= 0 then invalidArg "blockRows" "rows per block must be positive"
    let cache = Collections.Generic.Dictionary<int, torch.Tensor>()
    let mutable cached = 0L
    let mutable precision = "float32"
    let mutable features = -1L
    let fetch (i: int) : torch.Tensor * bool =
        match cache.TryGetValue i with
        | true, t -> t, false
        | _ ->
            let t = rowBlock i
            validateBlock (sprintf "feature row block %d" i) t
            if i < blockCount - 1 && t.shape.[0] <> int64 blockRows then
                invalidArg "rowBlock" (sprintf "row block %d has %d rows; every block but the last must have %d" i t.shape.[0] blockRows)
            if t.shape.[0] = 0L || t.shape.[0] > int64 blockRows then
                invalidArg "rowBlock" (sprintf "row block %d has %d rows; expected 1..%d" i t.shape.[0] blockRows)
            if features < 0L then features <- t.shape.[1]
            elif t.shape.[1] <> features then
                invalidArg "rowBlock" (sprintf "row block %d has %d features, the others have %d" i t.shape.[1] features)
            if t.dtype = torch.float64 then precision <- "float64"
            // Owned here (outside any dispose scope): the detached alias would otherwise keep the
            // block's storage alive after `t` is disposed, leaking every recomputed block.
            let t64 =
                use scope = torch.NewDisposeScope()
                t.detach().``to``(torch.float64).DetachFromDisposeScope()
            t.Dispose()
            let bytes = t64.NumberOfElements * 8L
            if cached + bytes <= cacheBytes then
                cache.[i] <- t64
                cached <- cached + bytes
                t64, false
            else t64, true
    try
        let last, lastOwned = fetch (blockCount - 1)
        let lastRows = last.shape.[0]
        let device = last.device
        if lastOwned then last.Dispose()
        let sizes = Array.init blockCount (fun i -> if i = blockCount - 1 then lastRows else int64 blockRows)
        let offsets = Array.scan (+) 0L sizes
        let n = offsets.[blockCount]
        let gram = torch.zeros([| n; n |], dtype = torch.float64, device = device)
        for i in 0 .. blockCount - 1 do
            let bi, ownI = fetch i
            for j in 0 .. i do
                let bj, ownJ = if j = i then bi, false else fetch j
                do
                    // Every view and alias (bj.t(), g.t(), the narrows) dies here, so a recomputed
                    // block's storage is freed when bj is disposed, not when the GC gets to it.
                    use scope = torch.NewDisposeScope()
                    let target = gram.narrow(0L, offsets.[i], sizes.[i]).narrow(1L, offsets.[j], sizes.[j])
                    if j = i then NativeBlas.syrkLower 1.0 bi 0.0 target else NativeBlas.gemmNT 1.0 bi bj 0.0 target
                if ownJ then bj.Dispose()
            if ownI then bi.Dispose()
        NativeBlas.mirrorLower gram
        if withBias then gram.add_(scalar 1.0) |> ignore
        complete gram (int features + (if withBias then 1 else 0)) precision
    finally
        for t in cache.Values do t.Dispose()
