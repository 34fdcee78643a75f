/// The dense certificate (SPEC §3, docs/theory.md §3) on host memory and OpenBLAS alone: the float64 Gram accumulated
/// from float32 or float64 column blocks in the blocked order of `Gram.accumulationDepth`, and every step of
/// `Certify.certifyOperator` (the duplicate-row scan, the λ_max Lanczos with its Ritz shift, inverse iteration, the
/// shifted test and the σ_max trial in LAPACK's order or in panels) on raw row-major buffers through `NativeBlas.Raw`.
/// No tensor is made, so a process that certifies this way never loads libtorch (≈ 0.4 s of `dlopen` on one core,
/// docs/BENCHMARKS.md): `rf certify --matrix` on the dense engine runs here whenever OpenBLAS is the kernels' backend.
///
/// The bound is the same code as the tensor route's (`certifyOperator` on a `GramOperator`); what differs is only where
/// the numbers live. fl G is bit for bit the tensor route's `Gram.ColumnBlockAccumulator` on OpenBLAS (the same syrk
/// calls on the same float64 blocks, the same additions), and so are the factorisations (the same potrf, and the panel
/// order of `TileCholesky.factorInPlace` kernel for kernel). The floating-point estimates (the Lanczos and inverse
/// iteration) start from the tensor route's vector (`Certify.startVector`) but their products and small eigenproblems
/// run on other kernels, so the shifts tried, and the bounds' last digits, agree with the tensor route's to rounding,
/// not bit for bit; the verdict and the bounds' soundness do not depend on them (tests: MathCore.DenseNative).
module ResearchFramework.MathCore.DenseNative

#nowarn "9" // native pointers: the buffers are native memory
open System
open System.Diagnostics
open System.Runtime.InteropServices
open Microsoft.FSharp.NativeInterop
open ResearchFramework.MathCore.Certify

module private Libc =
    [<DllImport("libc", EntryPoint = "madvise")>]
    extern int madvise(nativeint address, unativeint length, int advice)

/// Whether this route runs in this process: OpenBLAS is loaded and is the kernels' backend (`RF_BLAS` unset, auto or
/// openblas; `RF_BLAS=torch` keeps every certificate on libtorch).
let available () : bool =
    NativeBlas.openBlasAvailable () && NativeBlas.current () = NativeBlas.Backend.OpenBlas

/// Native memory of `bytes` bytes (at least 8), aligned to 2 MiB and, from 2 MiB on, asked for transparent huge pages
/// (madvise MADV_HUGEPAGE: a 4 KiB page fault costs ≈ 10 µs on this project's machines; docs/BENCHMARKS.md "Page
/// faults"). Its contents are unspecified until written. Freed by Dispose.
[<AllowNullLiteral>]
type Buffer(bytes: int64) =
    static let alignment = 2L <<< 20
    let size = max 8L bytes
    let origin : nativeint =
        let p = NativeMemory.AlignedAlloc(unativeint size, unativeint alignment)
        NativePtr.toNativeInt (NativePtr.ofVoidPtr<byte> p)
    do if OperatingSystem.IsLinux () && size >= alignment then
        Libc.madvise (origin, unativeint ((size + alignment - 1L) / alignment * alignment), 14) |> ignore   // MADV_HUGEPAGE
    let mutable freed = false

    /// A buffer of `count` float64 entries.
    static member OfDoubles(count: int64) = new Buffer(8L * count)

    member _.Pointer = if freed then raise (ObjectDisposedException "DenseNative.Buffer") else origin
    member _.Bytes = size

    /// The address of float64 entry `index`.
    member b.At(index: int64) : nativeint = b.Pointer + nativeint (8L * index)

    /// The first `count` entries as float32 (count·4 ≤ Bytes).
    member b.Floats(count: int) : Span<float32> =
        if 4L * int64 count > size then invalidArg "count" "beyond the buffer"
        Span<float32>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<float32> b.Pointer), count)

    /// The first `count` entries as float64 (count·8 ≤ Bytes).
    member b.Doubles(count: int) : Span<float> =
        if 8L * int64 count > size then invalidArg "count" "beyond the buffer"
        Span<float>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<float> b.Pointer), count)

    interface IDisposable with
        member _.Dispose() =
            if not freed then
                freed <- true
                NativeMemory.AlignedFree(NativePtr.toVoidPtr (NativePtr.ofNativeInt<byte> origin))

let inline private get (p: nativeint) (index: int64) : float = NativePtr.read (NativePtr.ofNativeInt<float> (p + nativeint (8L * index)))
let inline private set (p: nativeint) (index: int64) (value: float) = NativePtr.write (NativePtr.ofNativeInt<float> (p + nativeint (8L * index))) value

/// The diagonal of the n × n row-major matrix at `p`.
let private diagonalOf (p: nativeint) (n: int) : float[] = Array.init n (fun i -> get p (int64 i * int64 n + int64 i))

/// fl(G) of Φ̃ in a native n × n row-major buffer (symmetric: the lower triangle mirrored), with the bookkeeping of its
/// error bound: the fields of `Gram.GramMatrix` (same meaning), the matrix in `Buffer`.
type NativeGram =
    { Buffer: Buffer
      Rows: int
      Columns: int
      SquaredNormSumUpper: float
      ZeroRows: int[]
      AccumulationDepth: int
      FeaturePrecision: string
      ScalingError: float }

    /// Upper bound on ‖fl(G) − G‖₂ (`Gram.GramMatrix.ErrorBound`).
    member g.AccumulationErrorBound = Gram.GramMatrix.ErrorBound g.AccumulationDepth g.SquaredNormSumUpper g.ScalingError

    /// diag(fl G).
    member g.Diagonal() : float[] = diagonalOf g.Buffer.Pointer g.Rows

    interface IDisposable with
        member g.Dispose() = (g.Buffer :> IDisposable).Dispose()

/// target[i, j] += part[i, j] on the lower triangle (j ≤ i) of two n × n row-major buffers: one rounding per entry.
let private addLower (n: int) (part: nativeint) (target: nativeint) =
    for i in 0 .. n - 1 do
        let offset = nativeint (8L * int64 i * int64 n)
        let t = Span<float>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<float> (target + offset)), i + 1)
        let p = ReadOnlySpan<float>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<float> (part + offset)), i + 1)
        let vt = MemoryMarshal.Cast<float, Numerics.Vector<float>> t
        let vp = MemoryMarshal.Cast<float, Numerics.Vector<float>> p
        for k in 0 .. vt.Length - 1 do vt.[k] <- vt.[k] + vp.[k]
        for k in vt.Length * Numerics.Vector<float>.Count .. i do t.[k] <- t.[k] + p.[k]

/// target[0, k) ← the float32 entries at `source`, widened (exact), in vector lanes.
let private widen (source: nativeint) (target: nativeint) (count: int) =
    let s = ReadOnlySpan<float32>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<float32> source), count)
    let t = Span<float>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<float> target), count)
    let vs = MemoryMarshal.Cast<float32, Numerics.Vector<float32>> s
    let vt = MemoryMarshal.Cast<float, Numerics.Vector<float>> t
    for k in 0 .. vs.Length - 1 do
        let mutable low = Numerics.Vector<float>.Zero
        let mutable high = Numerics.Vector<float>.Zero
        Numerics.Vector.Widen(vs.[k], &low, &high)
        vt.[2 * k] <- low
        vt.[2 * k + 1] <- high
    for k in vs.Length * Numerics.Vector<float32>.Count .. count - 1 do t.[k] <- float s.[k]

/// `Gram.ColumnBlockAccumulator` on native memory: fl(G) = Σ_q P_q over the products q of `chunk` consecutive columns
/// (the blocked order of `Gram.accumulationDepth`, docs/theory.md §3 "Blocked accumulation"): P_0 summed in the Gram
/// itself, every later P_q formed apart (blocks inside one product added with β = 1) and then added to the Gram once;
/// each product a syrk on the lower triangle; the upper triangle its mirror (Finish). Blocks are row-major n × width
/// float32 or float64 at a native address (a `Buffer`): float32 entries are exact in float64; float64 ones are checked
/// for entries below the underflow guard, as `Gram.validateBlock` does. Memory: the n × n Gram, from the second product
/// on one n × n product buffer (freed by Finish; or the caller's `spare`, n × n, which it keeps: the certificate's work
/// matrix, so that its pages are touched once), and one n × width float64 copy of the widest block.
type Accumulator(rows: int, chunk: int, spare: Buffer) =
    do if rows <= 0 then invalidArg "rows" "a Gram matrix needs at least one row (n = 0)"
    do if chunk <= 0 then invalidArg "chunk" (sprintf "columns per product must be positive, got %d" chunk)
    let n = int64 rows
    do if not (isNull spare) && spare.Bytes < 8L * n * n then invalidArg "spare" (sprintf "a spare product buffer needs n² = %d float64 entries" (n * n))
    let gram = Buffer.OfDoubles(n * n)
    let mutable part : Buffer = null
    let mutable wide : Buffer = null
    let mutable pending = false
    let mutable features = 0L
    let mutable blocks = 0
    let mutable biasAdded = false
    let mutable finished = false
    let mutable precision = "float32"

    let flush () =
        if pending then
            addLower rows part.Pointer gram.Pointer
            pending <- false

    let release () =
        for b in [ part; wide ] do if not (isNull b) && not (obj.ReferenceEquals(b, spare)) then (b :> IDisposable).Dispose()
        part <- null
        wide <- null

    /// Products of `chunk` columns, a product buffer of its own.
    new(rows: int, chunk: int) = new Accumulator(rows, chunk, null)

    /// Adds the columns of one block: n × `width` entries, row-major, float32 (`isFloat32`) or float64, at `block`.
    member this.Add(block: nativeint, width: int, isFloat32: bool) = this.Add(block, width, width, isFloat32)

    /// Adds the columns of one block: n × `width` entries, row-major with `leading` entries from one row to the next
    /// (≥ width: a block of columns inside a wider matrix), float32 (`isFloat32`) or float64, at `block`.
    member _.Add(block: nativeint, width: int, leading: int, isFloat32: bool) =
        if finished then invalidOp "the accumulator was finished"
        if biasAdded then invalidOp "the bias column comes after every feature block"
        if width < 0 || leading < width then invalidArg "width" (sprintf "a block of %d columns with %d entries per row" width leading)
        if width > 0 then
            let count = n * int64 width
            if isNull wide || wide.Bytes < 8L * count then
                if not (isNull wide) then (wide :> IDisposable).Dispose()
                wide <- Buffer.OfDoubles count
            let b = wide.Pointer
            let ld = int64 leading
            if isFloat32 then
                for r in 0L .. n - 1L do
                    widen (block + nativeint (4L * r * ld)) (b + nativeint (8L * r * int64 width)) width
            else
                precision <- "float64"
                for r in 0L .. n - 1L do
                    let source = block + nativeint (8L * r * ld)
                    let target = r * int64 width
                    for c in 0L .. int64 width - 1L do
                        let x = get source c
                        let a = abs x
                        if a > 0.0 && a < FloatingPoint.underflowGuard then
                            invalidArg "block" (sprintf "feature block %d has non-zero entries below %g in magnitude: rescale the features (the error analysis assumes no underflow)" blocks FloatingPoint.underflowGuard)
                        set b (target + c) x
            let c = int64 chunk
            let mutable start = 0L
            while start < int64 width do
                // the segment of this block inside product q = (features + start) / c
                let position = features + start
                let q = position / c
                let take = min (int64 width - start) ((q + 1L) * c - position)
                let segment = b + nativeint (8L * start)
                if q = 0L then NativeBlas.Raw.syrkLower rows (int take) 1.0 segment width (if position = 0L then 0.0 else 1.0) gram.Pointer rows
                else
                    if isNull part then part <- (if isNull spare then Buffer.OfDoubles(n * n) else spare)
                    if position % c = 0L then   // product q starts: product q − 1 is added to the Gram first
                        flush ()
                        NativeBlas.Raw.syrkLower rows (int take) 1.0 segment width 0.0 part.Pointer rows
                        pending <- true
                    else NativeBlas.Raw.syrkLower rows (int take) 1.0 segment width 1.0 part.Pointer rows
                start <- start + take
            features <- features + int64 width
        blocks <- blocks + 1

    /// Adds the bias column of ones (Φ̃ = [Φ, 1]) after every feature block: one rounding per entry of the Gram.
    member _.AddBiasColumn() =
        if biasAdded then invalidOp "the bias column was already added"
        if features = 0L then invalidArg "blocks" "no feature columns were accumulated (empty taps or empty blocks)"
        flush ()
        let g = gram.Pointer
        for i in 0 .. rows - 1 do
            let row = int64 i * n
            for j in 0 .. i do set g (row + int64 j) (get g (row + int64 j) + 1.0)
        biasAdded <- true

    /// h of the accumulation bound (`Gram.accumulationDepth`).
    member _.AccumulationDepth = Gram.accumulationDepth (int features) biasAdded chunk

    /// The finished Gram (owning the buffer); the accumulator must not be used afterwards.
    member this.Finish() : NativeGram =
        if features = 0L then invalidArg "blocks" "no feature columns were accumulated (empty taps or empty blocks)"
        flush ()
        release ()
        NativeBlas.Raw.mirrorLower gram.Pointer n rows
        let columns = int features + (if biasAdded then 1 else 0)
        let depth = max 1 (min columns this.AccumulationDepth)
        // raises for a non-finite square; the Gram is then still the accumulator's, freed by its Dispose
        let squares = Gram.checkedSquares (diagonalOf gram.Pointer rows)
        let result =
            { Buffer = gram; Rows = rows; Columns = columns
              SquaredNormSumUpper = Gram.squaredNormSumUpper depth squares
              ZeroRows = Gram.zeroRowsOf squares
              AccumulationDepth = depth; FeaturePrecision = precision; ScalingError = 0.0 }
        finished <- true
        result

    interface IDisposable with
        member _.Dispose() =
            release ()
            if not finished then (gram :> IDisposable).Dispose()

/// The Gram of 2^(−e)·Φ̃, in place (`Gram.scaleBy true`: every entry x·f₁·f₂, `Gram.scaleFactors`; ScalingError
/// n·2^(−1021)), and e.
let scaleInPlace (gram: NativeGram) : NativeGram * int =
    let e = Gram.scaleExponentOf (Array.max (gram.Diagonal()))
    let f1, f2 = Gram.scaleFactors e
    if f1 <> 1.0 || f2 <> 1.0 then
        // row by row in vector lanes: (x·f₁)·f₂, the same two roundings per entry
        let n = gram.Rows
        let v1, v2 = Numerics.Vector<float>(f1), Numerics.Vector<float>(f2)
        for i in 0 .. n - 1 do
            let row = Span<float>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<float> (gram.Buffer.At(int64 i * int64 n))), n)
            let lanes = MemoryMarshal.Cast<float, Numerics.Vector<float>> row
            for k in 0 .. lanes.Length - 1 do lanes.[k] <- lanes.[k] * v1 * v2
            for k in lanes.Length * Numerics.Vector<float>.Count .. n - 1 do row.[k] <- row.[k] * f1 * f2
    { gram with
        SquaredNormSumUpper = FloatingPoint.scaleUp gram.SquaredNormSumUpper (-2 * e)
        ScalingError = Gram.scalingErrorBound gram.Rows }, e

/// Σ_k a_k·b_k over the n entries at `a` (native) and in `b`, in Vector<float> lanes (the Lanczos's small products:
/// on OpenBLAS each would wake its threads for a few microseconds of work).
let private dotAt (a: nativeint) (b: float[]) (n: int) : float =
    let sa = ReadOnlySpan<float>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<float> a), n)
    let sb = ReadOnlySpan<float>(b, 0, n)
    let va = MemoryMarshal.Cast<float, Numerics.Vector<float>> sa
    let vb = MemoryMarshal.Cast<float, Numerics.Vector<float>> sb
    let mutable acc = Numerics.Vector<float>.Zero
    for i in 0 .. va.Length - 1 do acc <- acc + va.[i] * vb.[i]
    let mutable sum = Numerics.Vector.Dot(acc, Numerics.Vector<float>.One)
    for i in va.Length * Numerics.Vector<float>.Count .. n - 1 do sum <- sum + sa.[i] * sb.[i]
    sum

/// r ← r − c·a over the n entries at `a` (native) and in `r`.
let private subtractScaledAt (r: float[]) (c: float) (a: nativeint) (n: int) : unit =
    let sa = ReadOnlySpan<float>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<float> a), n)
    let sr = Span<float>(r, 0, n)
    let va = MemoryMarshal.Cast<float, Numerics.Vector<float>> sa
    let vr = MemoryMarshal.Cast<float, Numerics.Vector<float>> sr
    let vc = Numerics.Vector<float>(c)
    for i in 0 .. va.Length - 1 do vr.[i] <- vr.[i] - vc * va.[i]
    for i in va.Length * Numerics.Vector<float>.Count .. n - 1 do sr.[i] <- sr.[i] - c * sa.[i]

let private norm (x: float[]) =
    let h = GCHandle.Alloc(x, GCHandleType.Pinned)
    try sqrt (dotAt (h.AddrOfPinnedObject()) x x.Length) finally h.Free()

/// `Certify.startVector` normalised: the estimates' first vector.
let private unitStart (n: int) : float[] =
    let s0 = startVector n
    let s = norm s0
    s0 |> Array.map (fun x -> x / s)

/// The largest eigenvalue of the symmetric tridiagonal matrix with diagonal α_0 … α_{j−1} and off-diagonal β_1 … β_{j−1}
/// (β_i joins i − 1 and i): bisection on Sturm counts (the number of eigenvalues below x is the number of negative
/// pivots of LDLᵀ of T − x·I) inside the Gershgorin interval, to the last bits (≤ 200 halvings). O(j) per halving. The
/// entries are first scaled by a power of two that brings the largest magnitude to [1, 2) (exact, unless an entry falls
/// below the normal range: then it moves by at most 2^(−1074) of the largest), so β² neither overflows nor underflows;
/// NaN when an entry is not finite.
let tridiagonalTop (alpha: float[]) (beta: float[]) (j: int) : float =
    let mutable largest = 0.0
    let mutable finite = true
    for i in 0 .. j - 1 do
        if not (Double.IsFinite alpha.[i]) || (i > 0 && not (Double.IsFinite beta.[i])) then finite <- false
        largest <- max largest (abs alpha.[i])
        if i > 0 then largest <- max largest (abs beta.[i])
    if not finite then nan
    elif largest = 0.0 then 0.0
    else
    let e = Math.ILogB largest
    let a = Array.init j (fun i -> Math.ScaleB(alpha.[i], -e))
    let b = Array.init j (fun i -> if i > 0 then Math.ScaleB(beta.[i], -e) else 0.0)
    let mutable lo = infinity
    let mutable hi = -infinity
    for i in 0 .. j - 1 do
        let radius = (if i > 0 then abs b.[i] else 0.0) + (if i + 1 < j then abs b.[i + 1] else 0.0)
        lo <- min lo (a.[i] - radius)
        hi <- max hi (a.[i] + radius)
    let below (x: float) =
        let mutable count = 0
        let mutable d = 1.0
        for i in 0 .. j - 1 do
            d <- a.[i] - x - (if i > 0 then b.[i] * b.[i] / d else 0.0)
            // a zero pivot is replaced by a tiny negative one (Double.Epsilon is the smallest subnormal, 2^(−1074)):
            // the count stays that of a matrix perturbed by that much, and the next pivot stays finite
            if d = 0.0 then d <- -Double.Epsilon
            if d < 0.0 then count <- count + 1
        count
    let mutable halvings = 0
    while halvings < 200 && hi - lo > 2.0 * FloatingPoint.unitRoundoff64 * max (abs lo) (abs hi) do
        let mid = 0.5 * (lo + hi)
        if mid <= lo || mid >= hi then halvings <- 200
        elif below mid < j then lo <- mid else hi <- mid
        halvings <- halvings + 1
    Math.ScaleB(hi, e)

/// `Certify.lanczosRitz` on host memory: the Rayleigh–Ritz estimate of λ_max of the symmetric operator `matvec`
/// (x → G·x on n-vectors), Lanczos with full reorthogonalisation (classical Gram–Schmidt twice, a third pass when the
/// second still removes more than half), the same stopping rules (`lanczosMinSteps`, `lanczosTolerance`, a residual
/// ≤ √u of the largest ‖G q_j‖ seen), the same KrylovEstimate (θ_max, θ_min and θ_min's change over the last
/// product). The Ritz matrix QᵀGQ is grown by one column per product, t[a, j] = q_aᵀ·(G q_j) for a ≤ j, and read as
/// symmetric; those j + 1 inner products are also the first Gram–Schmidt pass's coefficients of G q_j (the same numbers:
/// computed once). The tensor route forms QᵀGQ whole and symmetrises it, (T + Tᵀ)/2: its entries below the diagonal
/// differ from these by rounding only (q_bᵀGq_a = q_aᵀGq_b for symmetric G). The stopping rule reads the top eigenvalue
/// of QᵀGQ's tridiagonal part (`tridiagonalTop`, O(j) per halving instead of an O(j³) eigensolver per product): with
/// full reorthogonalisation G·q_b lies in span(q_{b−1}, q_b, q_{b+1}) up to rounding, so the entries outside the three
/// diagonals are rounding, and so is the difference. The values returned are QᵀGQ's whole (LAPACK dsyev, at the last
/// dimension and, for θ_min's change, the one before). So the two routes' Ritz values agree to rounding when they stop
/// at the same dimension; where the top's rise lies within rounding of the 10⁻⁶ threshold, one may take a product more
/// (the estimates then differ by that product's gain, and only the shifts tried depend on them). Start:
/// `Certify.startVector`, the tensor route's.
let lanczosRitz (steps: int) (n: int) (matvec: float[] -> float[]) : KrylovEstimate =
    let k = min (max 1 steps) n
    let tolerance = sqrt FloatingPoint.unitRoundoff64
    use q = Buffer.OfDoubles(int64 k * int64 n)     // row i: q_i
    let t = Array2D.zeroCreate<float> k k           // t[a, b] = q_aᵀ·G·q_b for a ≤ b
    let alpha = Array.zeroCreate<float> k          // t[a, a]
    let beta = Array.zeroCreate<float> k           // beta[a] = t[a − 1, a]
    use ritzWork = Buffer.OfDoubles(int64 k * int64 k)
    // the extreme eigenvalues of the j × j Ritz matrix (its lower triangle row-major: entry [a, b], b ≤ a, is t[b, a])
    let ritz (j: int) =
        let w = ritzWork.Pointer
        for a in 0 .. j - 1 do
            for b in 0 .. a do set w (int64 a * int64 j + int64 b) t.[b, a]
        let values = NativeBlas.Raw.symmetricEigenvalues j w j
        values.[j - 1], values.[0]
    let mutable v = unitStart n
    let mutable j = 0
    let mutable grow = true
    let mutable scale = 0.0
    let copyRow (buffer: Buffer) (row: int) (x: float[]) = Marshal.Copy(x, 0, buffer.At(int64 row * int64 n), n)
    let rowAt (buffer: Buffer) (row: int) = buffer.At(int64 row * int64 n)
    // x − Q_jᵀ·c over the j basis vectors so far, for the coefficients c = Q_j·x (classical Gram–Schmidt)
    let subtract (j: int) (c: float[]) (x: float[]) =
        let r = Array.copy x
        for a in 0 .. j - 1 do subtractScaledAt r c.[a] (rowAt q a) n
        r
    let project (j: int) (x: float[]) = subtract j (Array.init j (fun a -> dotAt (rowAt q a) x n)) x
    let mutable previous = nan
    while grow && j < k do
        copyRow q j v
        let w = matvec v
        scale <- max scale (norm w)
        // the new column t[·, j] = Q_{j+1}·(G q_j): also the first pass's coefficients below
        let column = Array.init (j + 1) (fun a -> dotAt (rowAt q a) w n)
        for a in 0 .. j do t.[a, j] <- column.[a]
        alpha.[j] <- column.[j]
        if j > 0 then beta.[j] <- column.[j - 1]
        j <- j + 1
        if j >= lanczosMinSteps && j < k then
            let theta = tridiagonalTop alpha beta j
            if theta - previous <= lanczosTolerance * abs theta then grow <- false
            previous <- theta
        elif j = lanczosMinSteps - 1 then previous <- tridiagonalTop alpha beta j
        if grow && j < k then
            let r1 = subtract j column w
            let r2 = project j r1
            let n1, n2 = norm r1, norm r2
            let r, nr = if n2 < 0.5 * n1 then (let r3 = project j r2 in r3, norm r3) else r2, n2
            if nr > tolerance * scale && Double.IsFinite nr then v <- r |> Array.map (fun x -> x / nr) else grow <- false
    let top, bottom = ritz j
    // θ_min one dimension before, where the loop read the Ritz values there (from lanczosMinSteps − 1 on)
    let bottomBefore = if j - 1 >= max 1 (lanczosMinSteps - 1) then snd (ritz (j - 1)) else nan
    { LambdaMax = top; LambdaMinRitz = bottom; LambdaMinRitzChange = abs (bottomBefore - bottom) / abs bottom }

/// y = G·x for the symmetric n × n matrix at `g`, stored whole (the Gram is mirrored: its upper triangle read,
/// `NativeBlas.Raw.symvUpper`, the faster kernel with OpenBLAS's AVX-512 kernels, within 3 % of the other with its
/// Haswell ones).
let private symmetricProduct (n: int) (g: nativeint) (x: float[]) : float[] =
    let y = Array.zeroCreate<float> n
    let hx = GCHandle.Alloc(x, GCHandleType.Pinned)
    let hy = GCHandle.Alloc(y, GCHandleType.Pinned)
    try NativeBlas.Raw.symvUpper n g n (hx.AddrOfPinnedObject()) (hy.AddrOfPinnedObject())
    finally
        hx.Free()
        hy.Free()
    y

/// `Certify.inverseIteration` with the Cholesky factor L (lower triangle of the n × n matrix at `l`) of G (at `g`):
/// the Rayleigh quotient vᵀGv after `iterations` steps x ← L⁻ᵀL⁻¹v from `Certify.startVector`, each iterate divided by its
/// largest entry before its norm is taken.
let private inverseIteration (iterations: int) (n: int) (l: nativeint) (g: nativeint) : float =
    let mutable v = unitStart n
    for _ in 1 .. iterations do
        let x = Array.copy v
        let h = GCHandle.Alloc(x, GCHandleType.Pinned)
        try
            NativeBlas.Raw.trsvLower false n l n (h.AddrOfPinnedObject())
            NativeBlas.Raw.trsvLower true n l n (h.AddrOfPinnedObject())
        finally h.Free()
        let top = x |> Array.map abs |> Array.max
        let x = x |> Array.map (fun e -> e / top)
        let s = norm x
        v <- x |> Array.map (fun e -> e / s)
    let gv = symmetricProduct n g v
    Array.fold2 (fun acc a b -> acc + a * b) 0.0 v gv

/// Cholesky of the n × n row-major lower triangle at `a` in column panels of `panel` (`TileCholesky.factorInPlace` on
/// one tile, kernel for kernel: each earlier panel's update of a panel formed apart in `buffer` (n × s, β = 0) and
/// subtracted in order, then potrf of the s × s diagonal block and trsm of the rows below; constant
/// `TileCholesky.depth n n panel`), or LAPACK's potrf on the whole matrix for `panel` ≤ 0 or ≥ n. True when every pivot
/// succeeded (the factor in the lower triangle; the strict upper triangle is not zeroed: only success is used).
let factorInPlace (panel: int) (n: int) (a: nativeint) : bool =
    let s = TileCholesky.panelWidth n panel
    if s >= n then NativeBlas.Raw.potrfLower n a n = 0
    else
    use buffer = Buffer.OfDoubles(int64 n * int64 s)
    let at (r: int) (c: int) = a + nativeint (8L * (int64 r * int64 n + int64 c))
    let mutable ok = true
    let mutable p = 0
    while ok && p < n do
        let w = min s (n - p)
        let below = n - p
        let mutable q = 0
        while q < p do
            let wq = min s (p - q)
            // buffer ← A[p.., q-panel]·A[p-panel, q-panel]ᵀ (below × w), then A[p.., p-panel] −= buffer
            NativeBlas.Raw.gemmNT below w wq 1.0 (at p q) n (at p q) n 0.0 buffer.Pointer s
            for r in 0 .. below - 1 do
                let row = at (p + r) p
                let u = buffer.At(int64 r * int64 s)
                for c in 0 .. w - 1 do
                    let k = int64 c
                    set row k (get row k - get u k)
            q <- q + wq
        if NativeBlas.Raw.potrfLower w (at p p) n <> 0 then ok <- false
        else NativeBlas.Raw.trsmRightLowerTranspose (below - w) w (at p p) n (at (p + w) p) n
        p <- p + w
    ok

/// diag(Ã) when floating-point Cholesky of Ã (formed in `work` by `form`) completes, None when it fails: the diagonal is
/// read before the factorisation (`Certify.choleskyDiagonal`).
let private choleskyDiagonal (panel: int) (n: int) (work: Buffer) : float[] option =
    let diagonal = diagonalOf work.Pointer n
    if factorInPlace panel n work.Pointer then Some diagonal else None

/// work ← fl G on the lower triangle (row i: its first i + 1 entries; each factorisation reads that triangle alone),
/// negated with `negate` (exact). Half the bytes of a whole copy.
let private copyLower (negate: bool) (gram: NativeGram) (work: Buffer) =
    let n = gram.Rows
    for i in 0 .. n - 1 do
        let offset = nativeint (8L * int64 i * int64 n)
        let source = ReadOnlySpan<float>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<float> (gram.Buffer.Pointer + offset)), i + 1)
        let target = Span<float>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<float> (work.Pointer + offset)), i + 1)
        if not negate then source.CopyTo target
        else
            let vs = MemoryMarshal.Cast<float, Numerics.Vector<float>> source
            let vt = MemoryMarshal.Cast<float, Numerics.Vector<float>> target
            for k in 0 .. vs.Length - 1 do vt.[k] <- -vs.[k]
            for k in vs.Length * Numerics.Vector<float>.Count .. i do target.[k] <- -source.[k]

/// Duplicate-row candidates read off fl(G) (`Certify`'s scan, the same arithmetic: d_ij = (G_ii + G_jj) − 2·G_ij ≤ 8E,
/// E the accumulation bound): pairs i < j in row-major order, the first `maxCandidates`.
let private duplicateCandidates (gram: NativeGram) (maxCandidates: int) : (int * int) list =
    let n = gram.Rows
    let g = gram.Buffer.Pointer
    let d = gram.Diagonal()
    let tol = 8.0 * gram.AccumulationErrorBound
    let found = ResizeArray<int * int>()
    let lanes = Numerics.Vector<float>.Count
    let vtol = Numerics.Vector<float>(tol)
    let two = Numerics.Vector<float>(2.0)
    let mutable i = 0
    while i < n && found.Count < maxCandidates do
        let row = int64 i * int64 n
        let count = n - i - 1
        // d_ij for j > i in vector lanes (the same operations entry by entry: (d_i + d_j) − 2·G_ij), then the lanes that
        // pass, in order
        let gRow = ReadOnlySpan<float>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<float> (g + nativeint (8L * (row + int64 i + 1L)))), count)
        let dRow = ReadOnlySpan<float>(d, i + 1, count)
        let vdi = Numerics.Vector<float>(d.[i])
        let full = count / lanes
        let mutable block = 0
        while block < full && found.Count < maxCandidates do
            let k = block * lanes
            let dist = (vdi + Numerics.Vector<float>(dRow.Slice(k, lanes))) - Numerics.Vector<float>(gRow.Slice(k, lanes)) * two
            if Numerics.Vector.LessThanOrEqualAny(dist, vtol) then
                for l in 0 .. lanes - 1 do
                    if found.Count < maxCandidates && d.[i] + dRow.[k + l] - gRow.[k + l] * 2.0 <= tol then found.Add((i, i + 1 + k + l))
            block <- block + 1
        let mutable j = full * lanes
        while j < count && found.Count < maxCandidates do
            if d.[i] + dRow.[j] - gRow.[j] * 2.0 <= tol then found.Add((i, i + 1 + j))
            j <- j + 1
        i <- i + 1
    List.ofSeq found

/// The dense route's `GramOperator` on the scaled Gram in native memory (`Certify.denseOperator`'s counterpart): every
/// factorisation formed in `work` (n × n, overwritten), the shifted test and the σ_max trial in panels of
/// `opts.CholeskyPanel` and, where that is another order, in LAPACK's (`AnyOrderCholesky`, h = n + 1).
let denseOperator (opts: Options) (precision: string) (scale: int) (work: Buffer) (gram: NativeGram) : GramOperator =
    let n = gram.Rows
    let g = gram.Buffer.Pointer
    // the shifted test's fl(fl G − c·I) and the trial's fl(t·I − fl G) on work's lower triangle: the diagonal rounded once
    let formed (negate: bool) (shift: float) =
        copyLower negate gram work
        for i in 0 .. n - 1 do
            let k = int64 i * int64 n + int64 i
            set work.Pointer k (get work.Pointer k + shift)
    let shifted (panel: int) (c: float) =
        formed false -c
        choleskyDiagonal panel n work
    let trial (panel: int) (t: float) =
        formed true t
        choleskyDiagonal panel n work
    let lambdaMin (iterations: int) =
        copyLower false gram work
        if NativeBlas.Raw.potrfLower n work.Pointer n <> 0 then
            copyLower false gram work
            (NativeBlas.Raw.symmetricEigenvalues n work.Pointer n).[0]
        else inverseIteration iterations n work.Pointer g
    { Rows = n; Columns = gram.Columns; SquaredNormSumUpper = gram.SquaredNormSumUpper
      AccumulationErrorBound = gram.AccumulationErrorBound; AccumulationDepth = gram.AccumulationDepth
      CholeskyDepth = TileCholesky.depth n n opts.CholeskyPanel
      ZeroRows = gram.ZeroRows; ScaleExponent = scale
      Precision = precision; Device = "cpu"; Method = denseMethod
      DuplicateCandidates = duplicateCandidates gram
      EstimateLambdaMax = fun steps -> lanczosRitz steps n (symmetricProduct n g)
      EstimateLambdaMin = lambdaMin
      ShiftedCholesky = shifted opts.CholeskyPanel
      TrialCholesky = trial opts.CholeskyPanel
      AnyOrderCholesky =
        if TileCholesky.depth n n opts.CholeskyPanel > n then None
        else Some { Shifted = shifted 0; Trial = trial 0 } }

/// `Certify.certifyAccumulated` on a native Gram the caller owns and drops afterwards (scaled in place), every
/// factorisation formed in `work` (n × n float64, the caller's: e.g. the accumulator's spare product buffer).
let certifyAccumulatedIn (work: Buffer) (opts: Options) (subject: ExpressivitySubject) (rowsEqual: RowEquality)
                         (clock: Stopwatch) (gram: NativeGram) : Certificate =
    if subject.Rows <> gram.Rows then
        invalidArg "subject" (sprintf "subject says n = %d but the Gram matrix has %d rows" subject.Rows gram.Rows)
    if work.Bytes < 8L * int64 gram.Rows * int64 gram.Rows then invalidArg "work" "the work matrix needs n² float64 entries"
    let precision = sprintf "features %s, Gram float64" gram.FeaturePrecision
    let scaled, scale = scaleInPlace gram
    certifyOperator opts subject rowsEqual clock (denseOperator opts precision scale work scaled)

/// `certifyAccumulatedIn` with a work matrix of its own.
let certifyAccumulated (opts: Options) (subject: ExpressivitySubject) (rowsEqual: RowEquality)
                       (clock: Stopwatch) (gram: NativeGram) : Certificate =
    use work = Buffer.OfDoubles(int64 gram.Rows * int64 gram.Rows)
    certifyAccumulatedIn work opts subject rowsEqual clock gram

/// `Certify.certifyMatrix` on native buffers for an in-memory Φ (n × m, without the bias column) on the CPU, float32 or
/// float64, when this route is `available` (OpenBLAS is the kernels' backend): Φ's own memory is read in column blocks
/// of `opts.BlockColumns` (the blocked order of `Gram.ofMatrix`, so fl G is the tensor route's bit for bit for a
/// row-major Φ, float32 or float64; a strided float64 Φ runs the tensor route on libtorch's addmm: to rounding), the
/// certificate made by `certifyAccumulatedIn`, then, in Auto mode, the orthogonal route as `Certify.certifyAfterGram`.
/// Everything else — another device or dtype, the orthogonal route asked for, a refutation by shape, a subject that
/// does not match Φ — is `Certify.certifyMatrix` itself. The certificate in memory of the trainer's switch and guard
/// and of `rf prove fc` (`CertificateEngine.Certify` on the dense engine): at 2048 × 8192, 0.95× the tensor route's bare
/// work (`phi.to(float64)`, syrk, potrf), where `Certify.certifyMatrix` takes 1.45× (`Benchmarks.dll pairs 2048 8192
/// memory-native 5` and `… memory 5`, docs/BENCHMARKS.md). The estimates differ from the tensor route's by rounding only.
let certifyMatrix (opts: Options) (subject: ExpressivitySubject) (phi: TorchSharp.torch.Tensor) : Certificate =
    let eligible =
        available () && not (isNull phi) && phi.dim () = 2L && phi.device_type = TorchSharp.DeviceType.CPU
        && (phi.dtype = TorchSharp.torch.float32 || phi.dtype = TorchSharp.torch.float64)
        && opts.Route <> RouteChoice.Orthogonal
        && phi.shape.[1] = int64 subject.Features && phi.shape.[0] = int64 subject.Rows && subject.Rows > 0 && subject.Features > 0
        && subject.Features + (if subject.WithBias then 1 else 0) >= subject.Rows
    if not eligible then Certify.certifyMatrix opts subject phi
    else
    let clock = Stopwatch.StartNew()
    // OpenBLAS on libtorch's thread count, as every tensor kernel of NativeBlas sets it (libtorch is loaded here)
    NativeBlas.syncThreads ()
    let n, m = subject.Rows, subject.Features
    let isFloat32 = phi.dtype = TorchSharp.torch.float32
    let itemSize = if isFloat32 then 4L else 8L
    let gramCertificate =
        use work = Buffer.OfDoubles(int64 n * int64 n)
        use contiguous = (use detached = phi.detach() in detached.contiguous())
        let origin = NativeBlas.dataPointer contiguous
        use gram =
            use acc = new Accumulator(n, opts.BlockColumns, work)
            let mutable start = 0
            while start < m do
                let width = min opts.BlockColumns (m - start)
                acc.Add(origin + nativeint (itemSize * int64 start), width, m, isFloat32)
                start <- start + width
            if subject.WithBias then acc.AddBiasColumn()
            acc.Finish()
        certifyAccumulatedIn work opts subject (rowEqualityOf phi) clock gram
    certifyAfterGram opts subject phi clock gramCertificate
