/// The certificate on ScaLAPACK over MPI (issue #12 item 3, docs/theory.md §3 "ScaLAPACK"): the same Rump
/// shifted-Cholesky test as `Certify` (every term computed by `Certify.certifyOperator`, `lambdaMinTermsBy`,
/// `lambdaMaxTermsBy`), on a Gram distributed block-cyclically over a P_r × P_c BLACS process grid, so that n is
/// bounded by the memory of all the ranks together (n²·8/P bytes per rank for fl G, as much again for the factor).
///
/// * Each rank reads only the rows of Φ it owns in the block-cyclic distribution of the n × m' feature matrix
///   (NB × NB blocks, block row I on process row I mod P_r), in column panels; the distributed float64 Gram
///   fl G = Σ_panels A_p A_pᵀ is accumulated by `pdsyrk` (lower triangle), the bias column's 1 added afterwards.
/// * diag(fl G) is gathered exactly (each entry has one owner: a sum of it and zeros), so Σ‖φ̃_i‖², the scale
///   exponent e and the accumulation bound are those of the tiled engine; the local blocks are scaled by 4^(−e).
/// * Shifted Cholesky tests: Ã = fl(fl G − c·I) and Ã_t = fl(t·I − fl G) formed entrywise on each rank's blocks
///   and factored by `pdpotrf`; λ̂_min by inverse iteration with `pdtrtrs` on the factor of fl G, λ̂_max by
///   Lanczos with `pdsymv` products (`Certify.inverseIteration`, `Certify.lanczosLambdaMax`).
/// * Every rank must reach the same verdict: every value that enters `certifyOperator` (diag, Cholesky outcomes,
///   estimates, duplicate candidates and their exact confirmation) is reduced or broadcast from rank (0, 0), so all
///   ranks run `certifyOperator` on identical inputs; the verdict and bounds are then compared across ranks.
///
/// The native interop (BLACS, ScaLAPACK/PBLAS of Debian's `libscalapack-openmpi`, which carries BLACS and starts
/// MPI in `Cblacs_pinfo`) is in the `Native` module below and nowhere else. Fortran routines take every argument by
/// reference and, after the others, one hidden length per character argument (passed as 1).
module ResearchFramework.MathCore.ScaLAPACK

#nowarn "9" // native pointers: the local blocks live in unmanaged memory handed to ScaLAPACK

open System
open System.Diagnostics
open System.Runtime.InteropServices
open Microsoft.FSharp.NativeInterop
open TorchSharp

/// The shared library: Debian's `libscalapack-openmpi-dev` (`libscalapack-openmpi.so`, BLACS included).
[<Literal>]
let LibraryName = "scalapack-openmpi"

/// P/Invoke declarations of the BLACS C interface and the ScaLAPACK/PBLAS Fortran symbols used here.
module Native =
    [<DllImport(LibraryName)>] extern void Cblacs_pinfo(int& mypnum, int& nprocs)
    [<DllImport(LibraryName)>] extern void Cblacs_get(int context, int what, int& value)
    [<DllImport(LibraryName)>] extern void Cblacs_gridinit(int& context, string order, int nprow, int npcol)
    [<DllImport(LibraryName)>] extern void Cblacs_gridinfo(int context, int& nprow, int& npcol, int& myrow, int& mycol)
    [<DllImport(LibraryName)>] extern void Cblacs_gridexit(int context)
    [<DllImport(LibraryName)>] extern void Cblacs_exit(int notDone)
    [<DllImport(LibraryName)>] extern void Cblacs_abort(int context, int errorCode)
    /// Element-wise sum of an m × n array over `scope`, result on (rdest, cdest).
    [<DllImport(LibraryName)>] extern void Cdgsum2d(int context, string scope, string top, int m, int n, double[] a, int lda, int rdest, int cdest)
    /// Element-wise max (rA, cA not referenced when rcflag = −1), result on (rdest, cdest).
    [<DllImport(LibraryName)>] extern void Cdgamx2d(int context, string scope, string top, int m, int n, double[] a, int lda, nativeint ra, nativeint ca, int rcflag, int rdest, int cdest)
    [<DllImport(LibraryName)>] extern void Cdgebs2d(int context, string scope, string top, int m, int n, double[] a, int lda)
    [<DllImport(LibraryName)>] extern void Cdgebr2d(int context, string scope, string top, int m, int n, double[] a, int lda, int rsrc, int csrc)
    [<DllImport(LibraryName)>] extern int numroc_(int& n, int& nb, int& iproc, int& isrcproc, int& nprocs)
    [<DllImport(LibraryName)>] extern void descinit_(int[] desc, int& m, int& n, int& mb, int& nb, int& irsrc, int& icsrc, int& context, int& lld, int& info)
    [<DllImport(LibraryName)>]
    extern void pdsyrk_(string uplo, string trans, int& n, int& k, double& alpha, nativeint a, int& ia, int& ja, int[] desca,
                        double& beta, nativeint c, int& ic, int& jc, int[] descc, nativeint uploLength, nativeint transLength)
    [<DllImport(LibraryName)>]
    extern void pdpotrf_(string uplo, int& n, nativeint a, int& ia, int& ja, int[] desca, int& info, nativeint uploLength)
    [<DllImport(LibraryName)>]
    extern void pdtrtrs_(string uplo, string trans, string diag, int& n, int& nrhs, nativeint a, int& ia, int& ja, int[] desca,
                         nativeint b, int& ib, int& jb, int[] descb, int& info, nativeint l1, nativeint l2, nativeint l3)
    [<DllImport(LibraryName)>]
    extern void pdsymv_(string uplo, int& n, double& alpha, nativeint a, int& ia, int& ja, int[] desca, nativeint x, int& ix, int& jx,
                        int[] descx, int& incx, double& beta, nativeint y, int& iy, int& jy, int[] descy, int& incy, nativeint uploLength)

/// Whether the ScaLAPACK library can be loaded; Error says what to install.
let available () : Result<unit, string> =
    let mutable handle = 0n
    if NativeLibrary.TryLoad("lib" + LibraryName + ".so", &handle) then Ok ()
    else Error "ScaLAPACK is not installed (libscalapack-openmpi.so not found): apt-get install libscalapack-openmpi-dev openmpi-bin"

/// This process's place among the MPI ranks (BLACS `Cblacs_pinfo`, which initialises MPI when needed).
let processInfo () : int * int =
    let mutable me = 0
    let mutable count = 0
    Native.Cblacs_pinfo(&me, &count)
    me, count

/// Ends BLACS and MPI (`Cblacs_exit(0)`: MPI_Finalize); call once, after every grid is closed.
let finish () = Native.Cblacs_exit 0

/// A P_r × P_c BLACS process grid (row-major rank order) and this rank's coordinates in it.
type Grid =
    { Context: int
      Rank: int
      Size: int
      Rows: int
      Columns: int
      MyRow: int
      MyColumn: int }
    member g.IsRoot = g.MyRow = 0 && g.MyColumn = 0

/// The grid shape for `size` ranks: the requested "PxQ" (P·Q must equal size), or by default the most square
/// P_r × P_c with P_r ≤ P_c. Error gives a one-line reason.
let gridShape (size: int) (requested: string) : Result<int * int, string> =
    if String.IsNullOrWhiteSpace requested then
        let pr = seq { for d in 1 .. size do if size % d = 0 && d * d <= size then yield d } |> Seq.max
        Ok (pr, size / pr)
    else
        match requested.ToLowerInvariant().Split('x') with
        | [| a; b |] ->
            match Int32.TryParse a, Int32.TryParse b with
            | (true, p), (true, q) when p >= 1 && q >= 1 ->
                if p * q = size then Ok (p, q)
                else Error (sprintf "--grid %s has %d processes but mpirun started %d ranks" requested (p * q) size)
            | _ -> Error (sprintf "--grid %s: expected PxQ with positive integers, e.g. 2x2" requested)
        | _ -> Error (sprintf "--grid %s: expected PxQ with positive integers, e.g. 2x2" requested)

/// Opens the grid (`Cblacs_get` of the default system context, `Cblacs_gridinit` row-major).
let openGrid (rows: int) (columns: int) : Grid =
    let me, size = processInfo ()
    if rows * columns <> size then invalidArg "rows" (sprintf "a %d × %d grid needs %d ranks, there are %d" rows columns (rows * columns) size)
    let mutable context = 0
    Native.Cblacs_get(-1, 0, &context)
    Native.Cblacs_gridinit(&context, "Row", rows, columns)
    let mutable pr, pc, r, c = 0, 0, 0, 0
    Native.Cblacs_gridinfo(context, &pr, &pc, &r, &c)
    { Context = context; Rank = me; Size = size; Rows = pr; Columns = pc; MyRow = r; MyColumn = c }

/// Releases the grid's context.
let closeGrid (grid: Grid) = Native.Cblacs_gridexit grid.Context

/// Aborts every rank (MPI_Abort through BLACS): for a failure that only some ranks saw.
let abort (grid: Grid) (code: int) = Native.Cblacs_abort(grid.Context, code)

// ---- collective helpers: every result is rank (0, 0)'s, so all ranks hold the same bits ----

/// Rank (0, 0)'s `values` on every rank (`Cdgebs2d`/`Cdgebr2d` over the whole grid).
let private broadcast (grid: Grid) (values: float[]) : float[] =
    if values.Length > 0 then
        if grid.IsRoot then Native.Cdgebs2d(grid.Context, "All", " ", values.Length, 1, values, values.Length)
        else Native.Cdgebr2d(grid.Context, "All", " ", values.Length, 1, values, values.Length, 0, 0)
    values

/// Element-wise sum over all ranks, computed on (0, 0) and broadcast (exact when each entry has one non-zero term).
let private sumAll (grid: Grid) (values: float[]) : float[] =
    if values.Length > 0 then Native.Cdgsum2d(grid.Context, "All", " ", values.Length, 1, values, values.Length, 0, 0)
    broadcast grid values

/// Element-wise max over all ranks, on every rank.
let private maxAll (grid: Grid) (values: float[]) : float[] =
    if values.Length > 0 then Native.Cdgamx2d(grid.Context, "All", " ", values.Length, 1, values, values.Length, 0n, 0n, -1, 0, 0)
    broadcast grid values

/// Rank (0, 0)'s value of a float.
let private agreeFloat (grid: Grid) (x: float) = (broadcast grid [| x |]).[0]

/// Runs `f` on every rank; if it throws on some rank, every rank throws ArgumentException with the message of the
/// lowest failing rank (so no rank is left waiting in a collective and all report the same one-line error). `f` must
/// not itself call a collective operation (a rank that failed early would leave the others waiting inside it).
let collectively (grid: Grid) (f: unit -> 'a) : 'a =
    let result = try Ok (f ()) with e -> Error e
    let index = grid.MyRow * grid.Columns + grid.MyColumn
    let failed = Array.zeroCreate<float> grid.Size
    if Result.isError result then failed.[index] <- 1.0
    let failed = sumAll grid failed
    match failed |> Array.tryFindIndex (fun v -> v > 0.0) with
    | None -> match result with Ok v -> v | Error e -> raise e
    | Some source ->
        let capacity = 1024
        let encoded = Array.zeroCreate<float> capacity
        match result with
        | Error e when index = source ->
            let bytes = Text.Encoding.UTF8.GetBytes(e.Message)
            let count = min bytes.Length (capacity - 1)
            encoded.[0] <- float count
            for k in 0 .. count - 1 do encoded.[k + 1] <- float bytes.[k]
        | _ -> ()
        // Sent from `source` only: every other rank contributes zeros to the sum.
        let encoded = sumAll grid encoded
        let count = int encoded.[0]
        let message = Text.Encoding.UTF8.GetString(Array.init count (fun k -> byte encoded.[k + 1]))
        match result with
        | Error e when index = source -> raise e
        | _ -> raise (ArgumentException(message))

// ---- distributed matrices ----

let private numroc (n: int) (nb: int) (proc: int) (procs: int) =
    let mutable n, nb, proc, src, procs = n, nb, proc, 0, procs
    Native.numroc_(&n, &nb, &proc, &src, &procs)

/// Global index (0-based) of local index `l` in a dimension of NB-blocks dealt cyclically over `procs`, this
/// process's coordinate `coord` (source process 0).
let globalIndex (nb: int) (procs: int) (coord: int) (l: int) = ((l / nb) * procs + coord) * nb + l % nb

/// The local part (column-major, leading dimension max(1, rows)) of a distributed rows × cols matrix in NB × NB
/// blocks, in unmanaged memory (so n²·8/P bytes need no .NET array), with its descriptor.
type private Local(grid: Grid, globalRows: int, globalColumns: int, nb: int) =
    let rows = numroc globalRows nb grid.MyRow grid.Rows
    let columns = numroc globalColumns nb grid.MyColumn grid.Columns
    let lld = max 1 rows
    let count = int64 lld * int64 columns
    let pointer = NativeMemory.AllocZeroed(unativeint (max 1L count * 8L)) |> NativePtr.ofVoidPtr<float>
    let descriptor =
        let desc = Array.zeroCreate<int> 9
        let mutable m, n, mb, nb, rsrc, csrc, ctxt, ld, info = globalRows, globalColumns, nb, nb, 0, 0, grid.Context, lld, 0
        Native.descinit_(desc, &m, &n, &mb, &nb, &rsrc, &csrc, &ctxt, &ld, &info)
        if info <> 0 then failwithf "descinit failed (info %d) for a %d × %d matrix" info globalRows globalColumns
        desc
    let mutable disposed = false
    member _.Rows = rows
    member _.Columns = columns
    member _.Count = count
    member _.Descriptor = descriptor
    member _.Address = NativePtr.toNativeInt pointer
    member _.Span(column: int) = Span<float>(NativePtr.toVoidPtr (NativePtr.add pointer (column * lld)), rows)
    member _.GlobalRow(l: int) = globalIndex nb grid.Rows grid.MyRow l
    member _.GlobalColumn(l: int) = globalIndex nb grid.Columns grid.MyColumn l
    interface IDisposable with
        member _.Dispose() =
            if not disposed then
                disposed <- true
                NativeMemory.Free(NativePtr.toVoidPtr pointer)

/// Where the features come from: the n × m matrix Φ (without the bias column), read by row blocks.
type FeatureSource =
    { Rows: int
      Features: int
      /// "float32" or "float64" (the file's; the Gram is float64).
      Precision: string
      /// `Read row0 rows col0 width destination`: entries [row0, row0 + rows) × [col0, col0 + width), row-major,
      /// widened to float64, into `destination` (length rows·width).
      Read: int -> int -> int -> int -> float[] -> unit }

/// Tunables of the ScaLAPACK engine; none affects soundness.
type Settings =
    { /// NB: rows and columns of a distribution block.
      BlockSize: int
      /// Bytes of one rank's column panel of Φ (the panel width is a multiple of NB·P_c).
      PanelBytes: int64
      /// Log lines (called on rank (0, 0) only).
      Log: string -> unit }

/// Default settings: 256 × 256 blocks, 64 MiB panels.
let defaults = { BlockSize = 256; PanelBytes = 64L <<< 20; Log = ignore }

/// A `FeatureSource` from C#: `read(row0, rows, col0, width, destination)`.
let source (rows: int) (features: int) (precision: string) (read: Action<int, int, int, int, float[]>) : FeatureSource =
    { Rows = rows; Features = features; Precision = precision; Read = fun r0 r c0 w d -> read.Invoke(r0, r, c0, w, d) }

/// Settings from C#: NB and a log (may be null).
let settings (blockSize: int) (log: Action<string>) : Settings =
    { defaults with BlockSize = blockSize; Log = (if isNull log then ignore else log.Invoke) }

/// Settings from C#: NB, the bytes of one rank's column panel of Φ (≤ 0: the default 64 MiB) and a log (may be null).
let settingsWithPanel (blockSize: int) (panelBytes: int64) (log: Action<string>) : Settings =
    { settings blockSize log with PanelBytes = (if panelBytes > 0L then panelBytes else defaults.PanelBytes) }

/// `collectively` from C#.
let Collectively<'a> (grid: Grid, f: Func<'a>) : 'a = collectively grid (fun () -> f.Invoke())

/// Bytes one rank holds for an n × n Gram on P ranks: fl G and one working copy (the factor), ≈ 2·8·n²/P.
let bytesPerRank (n: int) (ranks: int) = 2L * 8L * int64 n * int64 n / int64 (max 1 ranks)

/// The certificate of Φ̃ = [Φ, 1] (or Φ, `subject.WithBias`) from `source` on `grid` (called by every rank of the
/// grid, with the same arguments; every rank returns the same verdict and bounds). `rowsEqual` confirms a duplicate
/// candidate exactly on the rows (rank (0, 0)'s answer is taken). Same verdicts and bounds as `Certify` and `Tiled`
/// up to the rounding of fl G and of the factorisations.
let certify (opts: Certify.Options) (settings: Settings) (grid: Grid) (subject: ExpressivitySubject)
            (rowsEqual: Certify.RowEquality) (source: FeatureSource) : Certificate =
    let clock = Stopwatch.StartNew()
    let log line = if grid.IsRoot then settings.Log line
    let n = subject.Rows
    let m = subject.Features
    let nb = settings.BlockSize
    if nb <= 0 then invalidArg "settings" "the block size must be positive"
    if n <= 0 then invalidArg "subject" "no rows (n = 0)"
    if source.Rows <> n || source.Features <> m then
        invalidArg "source" (sprintf "the source has %d × %d entries, the subject says %d × %d" source.Rows source.Features n m)
    let columns = subject.Columns
    let withBias = subject.WithBias
    let localRows = numroc n nb grid.MyRow grid.Rows
    /// Local row block b of this rank: (global first row, rows).
    let rowBlocks = [| for l0 in 0 .. nb .. localRows - 1 -> globalIndex nb grid.Rows grid.MyRow l0, min nb (localRows - l0) |]
    let checkUnderflow (row0: int) (width: int) (data: float[]) (count: int) =
        if source.Precision = "float64" then
            for k in 0 .. count - 1 do
                let a = abs data.[k]
                if a > 0.0 && a < FloatingPoint.underflowGuard then
                    invalidArg "features" (sprintf "feature row %d has non-zero entries below %g in magnitude: rescale the features (the error analysis assumes no underflow)" (row0 + k / width) FloatingPoint.underflowGuard)
    if columns < n then
        // Refuted by shape (rank Φ̃ ≤ m' < n): the row norms of each rank's rows (process column 0), gathered.
        let squares = Array.zeroCreate<float> n
        collectively grid (fun () ->
            if grid.MyColumn = 0 then
                for (row0, rows) in rowBlocks do
                    let buffer = Array.zeroCreate<float> (rows * m)
                    source.Read row0 rows 0 m buffer
                    checkUnderflow row0 m buffer buffer.Length
                    use scope = torch.NewDisposeScope()
                    let s = torch.tensor(buffer).view(int64 rows, int64 m).pow(scalar 2.0).sum(1L).data<float>().ToArray()
                    Array.blit s 0 squares row0 rows)
        let squares = sumAll grid squares
        Certify.refuteByShape subject source.Precision torch.CPU squares clock
    else
    use gram = new Local(grid, n, n, nb)
    log (sprintf "scalapack: n = %d, m' = %d, %d × %d grid, %d × %d blocks; this rank holds %d × %d of fl G (%.1f MiB, twice that with the factor)"
             n columns grid.Rows grid.Columns nb nb gram.Rows gram.Columns (float (gram.Count * 8L) / 1048576.0))
    // ---- the Gram: column panels of Φ, each rank reading its own rows, accumulated by pdsyrk ----
    let panelLocalColumns = max nb (int (min (int64 Int32.MaxValue) (settings.PanelBytes / (8L * int64 (max 1 localRows)))) / nb * nb)
    let panelWidth = panelLocalColumns * grid.Columns
    let gramClock = Stopwatch.StartNew()
    let mutable c0 = 0
    while c0 < m do
        let w = min panelWidth (m - c0)
        use panel = new Local(grid, n, w, nb)
        // Reading (and its checks) is the only step that can fail on some ranks only: agreed before the collective pdsyrk.
        collectively grid (fun () ->
            let mutable lr = 0
            for (row0, rows) in rowBlocks do
                let buffer = Array.zeroCreate<float> (rows * w)
                source.Read row0 rows c0 w buffer
                checkUnderflow row0 w buffer buffer.Length
                for lc in 0 .. panel.Columns - 1 do
                    let gc = panel.GlobalColumn lc
                    let target = panel.Span lc
                    for k in 0 .. rows - 1 do target.[lr + k] <- buffer.[k * w + gc]
                lr <- lr + rows)
        let mutable nn, k, one, i1 = n, w, 1.0, 1
        let mutable beta = 1.0
        let mutable ia, ja, ic, jc = i1, i1, i1, i1
        Native.pdsyrk_("L", "N", &nn, &k, &one, panel.Address, &ia, &ja, panel.Descriptor, &beta, gram.Address, &ic, &jc, gram.Descriptor, 1n, 1n)
        c0 <- c0 + w
    if withBias then
        // The bias column's product 1·1 added to every entry (exact: a sum of the same m' products).
        for lc in 0 .. gram.Columns - 1 do
            let s = gram.Span lc
            for k in 0 .. s.Length - 1 do s.[k] <- s.[k] + 1.0
    log (sprintf "scalapack: Gram (pdsyrk) %.1f s" gramClock.Elapsed.TotalSeconds)
    // ---- diag(fl G), gathered exactly; row norms, zero rows, scale ----
    let diagonalEntries (matrix: Local) (f: int -> float -> unit) =
        for lc in 0 .. matrix.Columns - 1 do
            let gc = matrix.GlobalColumn lc
            let s = matrix.Span lc
            for lr in 0 .. matrix.Rows - 1 do
                if matrix.GlobalRow lr = gc then f gc s.[lr]
    let squares =
        let d = Array.zeroCreate<float> n
        diagonalEntries gram (fun i v -> d.[i] <- v)
        sumAll grid d
    match squares |> Array.tryFindIndex (fun v -> not (Double.IsFinite v)) with
    | Some i -> invalidArg "features" (sprintf "row %d of Φ has a non-finite squared norm (NaN or ±Inf features, or values so large their squares overflow): no certificate can be given" i)
    | None -> ()
    let e = Gram.scaleExponentOf (Array.max squares)
    let scaleEntry = Gram.scaleEntry e
    for lc in 0 .. gram.Columns - 1 do
        let s = gram.Span lc
        for k in 0 .. s.Length - 1 do s.[k] <- scaleEntry s.[k]
    /// diag of the scaled fl G, computed by the same operation as the owners' entries (so bitwise theirs).
    let scaledDiagonal = squares |> Array.map scaleEntry
    let squaredNormSumScaled = FloatingPoint.scaleUp (Gram.squaredNormSumUpper columns squares) (-2 * e)
    let accumulationError = Gram.GramMatrix.ErrorBound columns squaredNormSumScaled (Gram.scalingErrorBound n)
    let zeroRows = Gram.zeroRowsOf squares
    // ---- factorisations on a working copy ----
    use work = new Local(grid, n, n, nb)
    /// Fills the working copy from fl G with `entry globalRow globalColumn value` and factors it by pdpotrf
    /// (lower); true iff every rank's info is 0.
    let factorize (label: string) (entry: int -> int -> float -> float) : bool =
        let clock = Stopwatch.StartNew()
        for lc in 0 .. gram.Columns - 1 do
            let gc = gram.GlobalColumn lc
            let s = gram.Span lc
            let t = work.Span lc
            for lr in 0 .. gram.Rows - 1 do t.[lr] <- entry (gram.GlobalRow lr) gc s.[lr]
        let mutable nn, ia, ja, info = n, 1, 1, 0
        Native.pdpotrf_("L", &nn, work.Address, &ia, &ja, work.Descriptor, &info, 1n)
        let failed = (maxAll grid [| (if info <> 0 then 1.0 else 0.0) |]).[0] > 0.0
        log (sprintf "scalapack: pdpotrf %s %s in %.1f s" label (if failed then "failed (not positive definite in floating point)" else "succeeded") clock.Elapsed.TotalSeconds)
        not failed
    // ---- distributed vectors (n × 1, on process column 0) ----
    use vx = new Local(grid, n, 1, nb)
    use vy = new Local(grid, n, 1, nb)
    let scatter (v: torch.Tensor) (target: Local) =
        let values = (use c = v.contiguous() in c.data<float>().ToArray())
        if target.Columns > 0 then
            let s = target.Span 0
            for lr in 0 .. target.Rows - 1 do s.[lr] <- values.[target.GlobalRow lr]
    let gather (source: Local) : torch.Tensor =
        let values = Array.zeroCreate<float> n
        if source.Columns > 0 then
            let s = source.Span 0
            for lr in 0 .. source.Rows - 1 do values.[source.GlobalRow lr] <- s.[lr]
        torch.tensor(sumAll grid values).view(int64 n, 1L)
    let matvec (v: torch.Tensor) : torch.Tensor =
        scatter v vx
        let mutable nn, one, zero, i1 = n, 1.0, 0.0, 1
        let mutable ia, ja, ix, jx, iy, jy, incx, incy = i1, i1, i1, i1, i1, i1, i1, i1
        Native.pdsymv_("L", &nn, &one, gram.Address, &ia, &ja, gram.Descriptor, vx.Address, &ix, &jx, vx.Descriptor, &incx,
                       &zero, vy.Address, &iy, &jy, vy.Descriptor, &incy, 1n)
        gather vy
    let solve (trans: string) (v: torch.Tensor) : torch.Tensor =
        scatter v vx
        let mutable nn, nrhs, ia, ja, ib, jb, info = n, 1, 1, 1, 1, 1, 0
        Native.pdtrtrs_("L", trans, "N", &nn, &nrhs, work.Address, &ia, &ja, work.Descriptor, vx.Address, &ib, &jb, vx.Descriptor, &info, 1n, 1n, 1n)
        gather vx
    // ---- duplicate-row candidates: d_ij = G_ii + G_jj − 2G_ij ≤ 8E on the local lower triangle, gathered ----
    let duplicateCandidates (maxCandidates: int) : (int * int) list =
        let tol = 8.0 * accumulationError
        let local = Collections.Generic.List<int * int>()
        for lc in 0 .. gram.Columns - 1 do
            let j = gram.GlobalColumn lc
            let s = gram.Span lc
            for lr in 0 .. gram.Rows - 1 do
                let i = gram.GlobalRow lr
                if i > j && local.Count < maxCandidates && (scaledDiagonal.[i] + scaledDiagonal.[j]) - s.[lr] * 2.0 <= tol then
                    local.Add((j, i))
        let slots = Array.zeroCreate<float> (2 * maxCandidates * grid.Size)
        let offset = 2 * maxCandidates * (grid.MyRow * grid.Columns + grid.MyColumn)
        local |> Seq.iteri (fun q (i, j) -> slots.[offset + 2 * q] <- float (i + 1); slots.[offset + 2 * q + 1] <- float (j + 1))
        let slots = sumAll grid slots
        [ for q in 0 .. slots.Length / 2 - 1 do if slots.[2 * q] > 0.0 then yield int slots.[2 * q] - 1, int slots.[2 * q + 1] - 1 ]
        |> List.sort |> List.truncate maxCandidates
    let agreedEquality : Certify.RowEquality =
        rowsEqual |> Option.map (fun equal -> fun i j -> agreeFloat grid (if equal i j then 1.0 else 0.0) = 1.0)
    let operator : Certify.GramOperator =
        { Rows = n; Columns = columns; SquaredNormSumUpper = squaredNormSumScaled; AccumulationErrorBound = accumulationError
          AccumulationDepth = columns; CholeskyDepth = n + 1   // pdgemm/pdsyrk/pdpotrf: any order
          ZeroRows = zeroRows; ScaleExponent = e; Precision = sprintf "features %s, Gram float64" source.Precision; Device = string torch.CPU
          Method = sprintf "float64 Gram distributed over a %d × %d BLACS grid in %d × %d blocks, ScaLAPACK pdsyrk + pdpotrf, Rump shifted-Cholesky positive-definiteness test (SPEC §3)" grid.Rows grid.Columns nb nb
          DuplicateCandidates = duplicateCandidates
          EstimateLambdaMax = fun steps ->
            let clock = Stopwatch.StartNew()
            let estimate = Certify.lanczosRitz steps (int64 n) torch.CPU matvec
            // every rank takes rank 0's values: the same shifts and trials everywhere
            let estimate =
                { Certify.KrylovEstimate.LambdaMax = agreeFloat grid estimate.LambdaMax
                  Certify.KrylovEstimate.LambdaMinRitz = agreeFloat grid estimate.LambdaMinRitz
                  Certify.KrylovEstimate.LambdaMinRitzChange = agreeFloat grid estimate.LambdaMinRitzChange }
            log (sprintf "scalapack: λ_max estimate (Lanczos, pdsymv) %.1f s" clock.Elapsed.TotalSeconds)
            estimate
          EstimateLambdaMin = fun iterations ->
            let clock = Stopwatch.StartNew()
            let estimate =
                if factorize "fl G (λ_min estimate)" (fun _ _ g -> g) then
                    Certify.inverseIteration iterations (int64 n) torch.CPU (solve "N") (solve "T") matvec
                else 0.0 // as the tiled engine: no eigvalsh fallback on a distributed matrix (Inconclusive)
            let estimate = agreeFloat grid estimate
            log (sprintf "scalapack: λ_min estimate (pdpotrf of fl G, inverse iteration with pdtrtrs) %.1f s" clock.Elapsed.TotalSeconds)
            estimate
          ShiftedCholesky = fun c ->
            if factorize (sprintf "fl G − %.6g·I" c) (fun i j g -> if i = j then g - c else g) then
                Some (broadcast grid (scaledDiagonal |> Array.map (fun g -> g - c)))
            else None
          TrialCholesky = fun t ->
            if factorize (sprintf "%.6g·I − fl G (σ_max bound)" t) (fun i j g -> if i = j then t - g else -g) then
                Some (broadcast grid (scaledDiagonal |> Array.map (fun g -> t - g)))
            else None
          AnyOrderCholesky = None }
    let certificate = Certify.certifyOperator opts subject agreedEquality clock operator
    // Every rank ran certifyOperator on the same inputs; check that the outcome is the same bits everywhere.
    let mine = [| float (int certificate.Verdict); certificate.SigmaMinLower; certificate.SigmaMaxUpper; certificate.Terms.LambdaMinLower; certificate.Terms.LambdaMaxUpper |]
    let root = broadcast grid (Array.copy mine)
    let differs = if Array.forall2 (fun (a: float) b -> BitConverter.DoubleToInt64Bits a = BitConverter.DoubleToInt64Bits b) mine root then 0.0 else 1.0
    if (maxAll grid [| differs |]).[0] > 0.0 then
        failwithf "the ranks disagree on the certificate (rank %d: %A, rank 0: %A)" grid.Rank mine root
    certificate
