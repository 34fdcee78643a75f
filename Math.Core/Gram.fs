/// Gram matrices G = Φ̃ Φ̃ᵀ accumulated in float64 by streaming blocks of Φ (SPEC §3 step 1,
/// §6): memory O(n²), never O(n·m). Float32 features are exact in float64, so the only
/// error is the accumulation's: |fl(G) − G| ≤ γ_h |Φ̃||Φ̃|ᵀ entrywise, hence
/// ‖fl(G) − G‖₂ ≤ γ_h Σ_i ‖φ̃_i‖², with h = m' for inner products of length m' in any order (BLAS blocking
/// and FMA included) and h = c + ⌈m/c⌉ − 1 (+1 bias) for the blocked order every Gram here is summed in:
/// products of c columns, each formed apart, added in order (`accumulationDepth`, docs/theory.md §3
/// "Blocked accumulation").
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
      /// h of the accumulation bound γ_h·Σ‖φ̃_i‖²: at most m', smaller for the blocked order
      /// (`accumulationDepth`: products of c columns formed apart and added in order).
      AccumulationDepth: int
      /// Precision of the features as given ("float32" or "float64"); the Gram is float64.
      FeaturePrecision: string
      /// Upper bound on ‖Gram − 4^(−e)·fl(G)‖₂ from rounding the entries that `scaled` pushes below
      /// the normal range (0 for an accumulated, unscaled Gram).
      ScalingError: float }

    /// Upper bound on ‖fl(G) − G‖₂ = γ_h · Σ‖φ̃_i‖² (h = AccumulationDepth; + ScalingError for a scaled Gram),
    /// rounded upward.
    member g.AccumulationErrorBound = GramMatrix.ErrorBound g.AccumulationDepth g.SquaredNormSumUpper g.ScalingError

    /// γ_h·S (+ H when H > 0), rounded upward: the accumulation bound for inner products whose terms are rounded at
    /// most h = `depth` times (h = m' = columns of Φ̃ in any order, as in the ScaLAPACK Gram; smaller for the blocked
    /// order of the dense and the tiled Gram, `accumulationDepth`), S ≥ Σ‖φ̃_i‖² and scaling error H.
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

/// The row squared norms ‖φ̃_i‖² = fl(G)_ii (each an inner product of length m', with the same γ_{m'} bound as every
/// entry) given as diag(fl G), after checking they are all finite (a NaN or ±Inf feature, or a square that overflows,
/// makes its diagonal entry non-finite).
let checkedSquares (squares: float[]) : float[] =
    match squares |> Array.tryFindIndex (fun v -> not (Double.IsFinite v)) with
    | Some i ->
        invalidArg "features" (sprintf "row %d of Φ has a non-finite squared norm (NaN or ±Inf features, or values so large their squares overflow): no certificate can be given" i)
    | None -> squares

let private squaredNorms (gram: torch.Tensor) : float[] = checkedSquares (diagonalValues gram)

/// Σ‖φ̃_i‖² bounded above in exact arithmetic: fl(‖φ̃_i‖²) has relative error ≤ γ_h (h = `depth`: m' = columns in
/// any order, smaller for a blocked order), and the sum over rows adds γ_{n−1}.
let squaredNormSumUpper (depth: int) (squares: float[]) =
    let perRowGamma = FloatingPoint.gamma FloatingPoint.unitRoundoff64 (max 1 depth)
    FloatingPoint.inflate perRowGamma (FloatingPoint.sumNonNegativeUpper (Array.sum squares) squares.Length)

/// The rows of Φ̃ that are exactly zero, read off diag(fl G) (a zero row's squared norm is an exact 0; every route's Gram
/// record takes its ZeroRows from here).
let zeroRowsOf (squares: float[]) : int[] =
    squares |> Array.indexed |> Array.filter (fun (_, s) -> s = 0.0) |> Array.map fst

/// The finished Gram record: row squared norms from diag(fl G), their bound (γ_h, h = `depth`), the zero rows.
let private complete (gram: torch.Tensor) (columns: int) (depth: int) (precision: string) : GramMatrix =
    let squares = squaredNorms gram
    let depth = max 1 (min columns depth)
    { Gram = gram; Rows = squares.Length; Columns = columns
      SquaredNormSumUpper = squaredNormSumUpper depth squares
      ZeroRows = zeroRowsOf squares
      AccumulationDepth = depth; FeaturePrecision = precision; ScalingError = 0.0 }

/// Upper bound on what underflow adds to Σ_i fl(‖φ̃_i‖²) for n rows of m' columns whose squares are summed without an
/// underflow guard (the refutation by shape, the orthogonal route's Frobenius bound), for squares multiplied afterwards
/// by 4^(−e): a product x·x rounded in the subnormal range errs by at most 2^(−1075) absolutely, on top of the relative
/// γ_{m'} (additions whose result is subnormal are exact), so n·m'·2^(−1074)·4^(−e) covers every row with a factor 2,
/// rounded upward. Zero for n or m' = 0.
let underflowAllowance (rows: int) (columns: int) (scaleExponent: int) : float =
    FloatingPoint.scaleUp (FloatingPoint.mulUp (float (max 0 rows)) (float (max 0 columns))) (-1074 - 2 * scaleExponent)

/// h of the accumulation bound |fl(G) − G| ≤ γ_h·|Φ̃||Φ̃|ᵀ of a Gram (or a Gram tile) summed in the blocked order
/// (docs/theory.md §3 "Blocked accumulation"): m = columns of Φ (bias excluded), c = `chunk` columns per product.
/// Each exact term φ_ik·φ_jk is rounded at most c times in its product (one multiplication, at most c − 1 additions,
/// in whatever order and blocking the BLAS uses: any summation tree over c leaves has depth ≤ c − 1), then at most
/// ⌈m/c⌉ − 1 times by the additions of the later products, formed apart, to the running sum, and once more by the
/// bias's 1·1: h = c + ⌈m/c⌉ − 1 (+ 1). One product (c ≥ m, or c ≤ 0) gives m' = m (+ 1), the any-order length;
/// h ≤ m' always (the min is taken).
let accumulationDepth (features: int) (withBias: bool) (chunk: int) : int =
    let bias = if withBias then 1 else 0
    let m = max 1 features
    let c = if chunk <= 0 then m else min chunk m
    // ⌈m/c⌉ − 1 = (m − 1)/c for m ≥ 1: no m + c − 1, which overflows int32 for c = m > 2³⁰ (one product of a wide file)
    min (m + bias) (c + (m - 1) / c + bias)

/// target ← fl(Φ_I Φ_Jᵀ) for two float64 row blocks Φ_I (p × m) and Φ_J (q × m) (I = J: `diagonal`, the syrk of
/// ri on target's lower triangle, whose strict upper triangle is then unspecified), summed in the order
/// `accumulationDepth` counts: the first product of `chunk` columns is written into target (β = 0), each later one
/// is formed apart (β = 0) and added to target (one rounding per entry). `target` (p × q) may be a view.
let accumulateProductInto (chunk: int) (ri: torch.Tensor) (rj: torch.Tensor) (diagonal: bool) (target: torch.Tensor) : unit =
    let m = ri.shape.[1]
    if m = 0L then target.zero_() |> ignore
    else
        let c = if chunk <= 0 then m else min (int64 chunk) m
        use part = if c < m then torch.zeros(target.shape, dtype = torch.float64, device = target.device) else null
        let mutable start = 0L
        while start < m do
            let width = min c (m - start)
            let into = if start = 0L then target else part
            use a = ri.narrow(1L, start, width)
            if diagonal then NativeBlas.syrkLower 1.0 a 0.0 into
            else
                use b = rj.narrow(1L, start, width)
                NativeBlas.gemmNT 1.0 a b 0.0 into
            if start > 0L then target.add_(part) |> ignore
            start <- start + width

/// The exponent e with 4^(−e)·max_i fl(G)_ii in [1/2, 2) (0 when that maximum is 0 or not finite):
/// certifying 2^(−e)·Φ̃ instead of Φ̃ makes the certificate independent of the units of Φ
/// (docs/theory.md §3, "Scaling"). Scaling Φ by 2^k (no bias column) adds exactly k.
let scaleExponentOf (maxDiagonal: float) : int =
    if maxDiagonal > 0.0 && Double.IsFinite maxDiagonal then (Math.ILogB maxDiagonal + 1) >>> 1 else 0

/// `scaleExponentOf` max_i fl(G)_ii of the Gram held in memory.
let scaleExponent (gram: GramMatrix) : int =
    let d = (use diag = gram.Gram.diagonal() in use top = diag.max() in top.item<float> ())
    scaleExponentOf d

/// The factors (f₁, f₂) by which every entry x of fl(G) is multiplied, in this order, to scale it by 4^(−e) (`scaleBy`):
/// (4^(−e), 1) when 4^(−e) is a normal number, else (2^(−e), 2^(−e)). Multiplying by 1 is exact, so x·f₁·f₂ is the one
/// operation of every route (tensors, tiles, ScaLAPACK's local blocks, `DenseNative`'s memory), bit for bit.
let scaleFactors (e: int) : float * float =
    if abs (2 * e) <= 1022 then Math.ScaleB(1.0, -2 * e), 1.0
    else Math.ScaleB(1.0, -e), Math.ScaleB(1.0, -e)

/// One entry of fl(G) scaled by 4^(−e): x·f₁·f₂ (`scaleFactors`).
let scaleEntry (e: int) : float -> float =
    let f1, f2 = scaleFactors e
    fun x -> x * f1 * f2

/// Multiplies `t` in place by 4^(−e), entry by entry as `scaleEntry` (the second factor only when it is not 1).
let scaleInPlace (e: int) (t: torch.Tensor) : unit =
    let f1, f2 = scaleFactors e
    t.mul_(scalar f1) |> ignore
    if f2 <> 1.0 then t.mul_(scalar f2) |> ignore

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

/// Columns per product of the dense Gram's blocked order (`Certify.defaults.BlockColumns`): h = 4096 + ⌈m/4096⌉ − 1
/// (+ 1) instead of m' (4,120 at m' = 96,001). Each later product costs one n²/2 addition more than a single
/// accumulation inside the BLAS.
let defaultChunkColumns = 4096

/// Adds the lower triangle of `part` to that of `gram` (both n × n), in row panels (each entry once; entries of the
/// upper triangle next to the diagonal too, which `NativeBlas.mirrorLower` overwrites).
let private addLower (part: torch.Tensor) (gram: torch.Tensor) =
    let n = gram.shape.[0]
    let panel = 512L
    use scope = torch.NewDisposeScope()
    let mutable r0 = 0L
    while r0 < n do
        let rows = min panel (n - r0)
        gram.narrow(0L, r0, rows).narrow(1L, 0L, r0 + rows).add_(part.narrow(0L, r0, rows).narrow(1L, 0L, r0 + rows)) |> ignore
        r0 <- r0 + rows

/// Accumulates fl(G) = Σ_q P_q, P_q = Φ_q Φ_qᵀ over the products q of `chunk` consecutive columns of Φ (columns
/// [q·c, (q + 1)·c) of the whole stream, however `Add` cuts it into blocks), in float64, in the blocked order of
/// `accumulationDepth` (docs/theory.md §3 "Blocked accumulation"): P_0 is summed in the Gram itself, every later P_q
/// apart (blocks inside one product are added with β = 1: any order inside a product is allowed), then added to the
/// Gram once (one rounding per entry). Each product runs on the lower triangle (`NativeBlas.syrkLower`: half a gemm's
/// flops); the upper triangle is its mirror (Finish), so fl(G) is exactly symmetric. Memory: the n × n Gram and, from
/// the second product on, one n × n product buffer (freed by Finish).
type ColumnBlockAccumulator(rows: int, device: torch.Device, chunk: int) =
    do if rows <= 0 then invalidArg "rows" "a Gram matrix needs at least one row (n = 0)"
    do if chunk <= 0 then invalidArg "chunk" (sprintf "columns per product must be positive, got %d" chunk)
    let gram = torch.zeros([| int64 rows; int64 rows |], dtype = torch.float64, device = device)
    let mutable part : torch.Tensor = null
    let mutable pending = false
    let mutable columns = 0
    let mutable features = 0L
    let mutable blocks = 0
    let mutable biasAdded = false
    let mutable precision = "float32"

    let flush () =
        if pending then
            addLower part gram
            pending <- false

    /// Products of `defaultChunkColumns` columns.
    new(rows: int, device: torch.Device) = ColumnBlockAccumulator(rows, device, defaultChunkColumns)

    /// Adds the columns of one block (n × b, float32 or float64, any device).
    member _.Add(block: torch.Tensor) =
        validateBlock (sprintf "feature block %d" blocks) block
        if int block.shape.[0] <> rows then
            invalidArg "block" (sprintf "feature block %d has %d rows, expected n = %d" blocks block.shape.[0] rows)
        if biasAdded then invalidOp "the bias column comes after every feature block"
        if block.dtype = torch.float64 then precision <- "float64"
        use scope = torch.NewDisposeScope()
        let b = block.detach().``to``(torch.float64, device)
        let width = b.shape.[1]
        let c = int64 chunk
        let mutable start = 0L
        while start < width do
            // the segment of this block inside product q = (features + start) / c
            let position = features + start
            let q = position / c
            let take = min (width - start) ((q + 1L) * c - position)
            let segment = b.narrow(1L, start, take)
            if q = 0L then NativeBlas.syrkLower 1.0 segment (if position = 0L then 0.0 else 1.0) gram
            else
                if isNull part then
                    part <- (use s = torch.NewDisposeScope() in torch.zeros([| int64 rows; int64 rows |], dtype = torch.float64, device = device).DetachFromDisposeScope())
                if position % c = 0L then   // product q starts: product q − 1 is added to the Gram first
                    flush ()
                    NativeBlas.syrkLower 1.0 segment 0.0 part
                    pending <- true
                else NativeBlas.syrkLower 1.0 segment 1.0 part
            start <- start + take
        features <- features + width
        columns <- columns + int width
        blocks <- blocks + 1

    /// Adds the bias column of ones (Φ̃ = [Φ, 1]), after every feature block: exact in float64 for the column's own
    /// product 1·1, one rounding when added to the Gram.
    member _.AddBiasColumn() =
        if biasAdded then invalidOp "the bias column was already added"
        flush ()
        gram.add_(scalar 1.0) |> ignore
        biasAdded <- true
        columns <- columns + 1

    member _.Columns = columns

    /// h of the accumulation bound (`accumulationDepth` of the columns added so far, in products of `chunk`).
    member _.AccumulationDepth = accumulationDepth (int features) biasAdded chunk

    /// Finishes the accumulation; the accumulator must not be used afterwards.
    member this.Finish() : GramMatrix =
        if columns = 0 then invalidArg "blocks" "no feature columns were accumulated (empty taps or empty blocks)"
        flush ()
        if not (isNull part) then part.Dispose()
        NativeBlas.mirrorLower gram
        complete gram columns this.AccumulationDepth precision

/// Gram of an in-memory matrix Φ (n × m), streamed in column blocks of `blockColumns`, each one product of the
/// blocked order (h = `accumulationDepth` m bias blockColumns).
let ofMatrix (blockColumns: int) (withBias: bool) (phi: torch.Tensor) : GramMatrix =
    if phi.dim () <> 2L then invalidArg "phi" (sprintf "Φ must be 2-D (rows × features), got shape %A" phi.shape)
    if phi.shape.[0] = 0L then invalidArg "phi" "Φ has no rows (n = 0)"
    if blockColumns <= 0 then invalidArg "blockColumns" "block size must be positive"
    let acc = ColumnBlockAccumulator(int phi.shape.[0], phi.device, blockColumns)
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
/// otherwise recomputed; Φ is never held whole unless it fits the cache. Each G_IJ is summed in products of `chunk`
/// columns (`accumulateProductInto`; h = `accumulationDepth` m bias chunk).
let ofRowBlocks (cacheBytes: int64) (withBias: bool) (chunk: int) (blockRows: int) (blockCount: int) (rowBlock: int -> torch.Tensor) : GramMatrix =
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
                    accumulateProductInto chunk bi bj (j = i) target
                if ownJ then bj.Dispose()
            if ownI then bi.Dispose()
        NativeBlas.mirrorLower gram
        if withBias then gram.add_(scalar 1.0) |> ignore
        complete gram (int features + (if withBias then 1 else 0)) (accumulationDepth (int features) withBias chunk) precision
    finally
        for t in cache.Values do t.Dispose()
