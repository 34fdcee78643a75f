/// The float64 kernels of the certificate (docs/theory.md §3, "Which BLAS"): the Gram's rank-k update
/// (syrk), its tile products (gemm), Cholesky (potrf) and the tile Cholesky's triangular solve (trsm), on
/// CPU float64 tensors, run by OpenBLAS when the process can load it (Debian `libopenblas0-pthread`,
/// `libopenblas.so.0`) and by libtorch otherwise.
///
/// Why a second BLAS: libtorch's CPU build carries Intel MKL, which runs its slow generic code paths on
/// non-Intel CPUs (measured on this project's AMD EPYC machine, one thread: MKL dpotrf of n = 2048 at
/// 7.6 GFLOP/s against OpenBLAS's 57; docs/BENCHMARKS.md), and libtorch has no syrk, so the Gram cost
/// twice the flops it needs. Soundness does not depend on the choice: every bound of the certificate
/// (the accumulation bound γ_{m'}·Σ‖φ̃_i‖², Demmel's Cholesky backward error) holds for any order of
/// the inner products, blocking and FMA included, i.e. for any conforming BLAS/LAPACK; only the
/// rounding of fl G and of the factors, and so the last digits of the bounds, differ between backends.
///
/// Layout: tensors are row-major (rows contiguous, leading dimension = stride 0, views allowed); the
/// symmetric kernels work on the *lower* triangle of a row-major matrix, which is the upper triangle of
/// the same memory read column-major (how dpotrf is called: no transposed copy).
///
/// Choice: `RF_BLAS=openblas|torch` forces one (openblas: an error when it cannot be loaded); unset or
/// `auto`: OpenBLAS when present. `useBackend` overrides it for the current thread / async flow (tests
/// compare the two backends differentially).
module ResearchFramework.MathCore.NativeBlas

#nowarn "9" // native pointers: mirrorLower copies within a tensor's storage
open System
open Microsoft.FSharp.NativeInterop
open System.Runtime.InteropServices
open System.Threading
open TorchSharp

/// Which implementation runs the kernels.
type Backend =
    | OpenBlas = 0
    | LibTorch = 1

[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type private CblasDsyrk = delegate of order: int * uplo: int * trans: int * n: int * k: int * alpha: float * a: nativeint * lda: int * beta: float * c: nativeint * ldc: int -> unit
[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type private CblasDgemm = delegate of order: int * transA: int * transB: int * m: int * n: int * k: int * alpha: float * a: nativeint * lda: int * b: nativeint * ldb: int * beta: float * c: nativeint * ldc: int -> unit
[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type private CblasDtrsm = delegate of order: int * side: int * uplo: int * transA: int * diag: int * m: int * n: int * alpha: float * a: nativeint * lda: int * b: nativeint * ldb: int -> unit
/// LAPACK dpotrf_(uplo*, n*, a, lda*, info*) (Fortran calling convention: every argument by address).
[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type private Dpotrf = delegate of uplo: nativeint * n: nativeint * a: nativeint * lda: nativeint * info: nativeint -> unit
[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type private CblasDsymv = delegate of order: int * uplo: int * n: int * alpha: float * a: nativeint * lda: int * x: nativeint * incx: int * beta: float * y: nativeint * incy: int -> unit
[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type private CblasDtrsv = delegate of order: int * uplo: int * trans: int * diag: int * n: int * a: nativeint * lda: int * x: nativeint * incx: int -> unit
/// LAPACK dsyev_(jobz*, uplo*, n*, a, lda*, w, work, lwork*, info*).
[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type private Dsyev = delegate of jobz: nativeint * uplo: nativeint * n: nativeint * a: nativeint * lda: nativeint * w: nativeint * work: nativeint * lwork: nativeint * info: nativeint -> unit
[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type private SetThreads = delegate of threads: int -> unit
[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type private GetText = delegate of unit -> nativeint

// CBLAS enumerations (cblas.h).
let private rowMajor, noTrans, trans, upper, lower, left, right, nonUnit = 101, 111, 112, 121, 122, 141, 142, 131

type private OpenBlasLibrary =
    { Syrk: CblasDsyrk; Gemm: CblasDgemm; Trsm: CblasDtrsm; Potrf: Dpotrf; SetThreads: SetThreads; Description: string
      Symv: CblasDsymv; Trsv: CblasDtrsv; Syev: Dsyev }

let private exportOf<'T> (handle: nativeint) (name: string) : 'T option =
    let mutable address = 0n
    if NativeLibrary.TryGetExport(handle, name, &address) then Some (Marshal.GetDelegateForFunctionPointer<'T> address) else None

/// OpenBLAS, loaded once; None when the library or one of its entry points is missing.
let private openBlas : Lazy<OpenBlasLibrary option> =
    lazy (
        let mutable handle = 0n
        let names = [ "libopenblas.so.0"; "libopenblas.so"; "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"; "libopenblas.dylib"; "libopenblas.dll" ]
        if not (names |> List.exists (fun name -> NativeLibrary.TryLoad(name, &handle))) then None
        else
        let get name = exportOf handle name
        match get "cblas_dsyrk", get "cblas_dgemm", get "cblas_dtrsm", get "dpotrf_", get "openblas_set_num_threads" with
        | Some syrk, Some gemm, Some trsm, Some potrf, Some setThreads ->
            match get "cblas_dsymv", get "cblas_dtrsv", get "dsyev_" with
            | Some symv, Some trsv, Some syev ->
                let text name = match exportOf<GetText> handle name with Some f -> (match Marshal.PtrToStringAnsi(f.Invoke()) with null -> "" | s -> s.Trim()) | None -> ""
                Some { Syrk = syrk; Gemm = gemm; Trsm = trsm; Potrf = potrf; SetThreads = setThreads
                       Symv = symv; Trsv = trsv; Syev = syev
                       Description = sprintf "OpenBLAS (%s; core %s)" (text "openblas_get_config") (text "openblas_get_corename") }
            | _ -> None
        | _ -> None)

let private requested () =
    match Environment.GetEnvironmentVariable "RF_BLAS" with
    | null | "" -> None
    | s ->
        match s.Trim().ToLowerInvariant() with
        | "auto" -> None
        | "openblas" -> Some Backend.OpenBlas
        | "torch" | "libtorch" -> Some Backend.LibTorch
        | other -> invalidArg "RF_BLAS" (sprintf "RF_BLAS=%s: expected auto, openblas or torch" other)

let private defaultBackend : Lazy<Backend> =
    lazy (
        match requested (), openBlas.Force() with
        | Some Backend.OpenBlas, None ->
            invalidOp "RF_BLAS=openblas but OpenBLAS cannot be loaded (libopenblas.so.0: on Debian, apt-get install libopenblas0-pthread)"
        | Some b, _ -> b
        | None, Some _ -> Backend.OpenBlas
        | None, None -> Backend.LibTorch)

let private overrideBackend = AsyncLocal<Nullable<Backend>>()

/// Whether OpenBLAS could be loaded in this process.
let openBlasAvailable () : bool = openBlas.Force().IsSome

/// The backend the kernels use now (the thread's override, else RF_BLAS, else OpenBLAS when present).
let current () : Backend =
    let o = overrideBackend.Value
    if o.HasValue then o.Value else defaultBackend.Force()

/// Runs `f` with `backend` for the kernels called on this thread / async flow; OpenBLAS must be loadable.
let useBackend (backend: Backend) (f: unit -> 'a) : 'a =
    if backend = Backend.OpenBlas && not (openBlasAvailable ()) then invalidOp "OpenBLAS cannot be loaded (libopenblas.so.0)"
    let previous = overrideBackend.Value
    overrideBackend.Value <- Nullable backend
    try f () finally overrideBackend.Value <- previous

/// One line naming the backend in use (for `rf env`, logs and benchmarks).
let describe () : string =
    match current (), openBlas.Force() with
    | Backend.OpenBlas, Some lib -> lib.Description
    | _, Some _ -> "libtorch (MKL or its own BLAS; OpenBLAS present but not selected)"
    | _ -> "libtorch (MKL or its own BLAS; OpenBLAS not found: apt-get install libopenblas0-pthread for the fast kernels)"

[<DllImport("LibTorchSharp")>]
extern nativeint private THSTensor_data(nativeint tensor)

let mutable private openBlasThreads = 0

/// OpenBLAS calls are serialised: each uses every core already, and concurrent calls into a pthreads build
/// from several threads of the process are not guaranteed safe in every OpenBLAS version.
let private gate = obj ()

/// The same kernels on raw row-major float64 memory (pointers and leading dimensions; no tensor, so no libtorch), always
/// on OpenBLAS: the dense certificate of a matrix file (`DenseNative`) runs on these alone. Each raises when OpenBLAS
/// cannot be loaded (`openBlasAvailable` first). Calls are serialised by the same gate as the tensor kernels'.
module Raw =
    let private lib () =
        match openBlas.Force() with
        | Some lib -> lib
        | None -> invalidOp "OpenBLAS cannot be loaded (libopenblas.so.0: on Debian, apt-get install libopenblas0-pthread)"

    /// C ← β·C + α·A·Aᵀ on the lower triangle of C (n × n; A n × k).
    let syrkLower (n: int) (k: int) (alpha: float) (a: nativeint) (lda: int) (beta: float) (c: nativeint) (ldc: int) : unit =
        if n > 0 && k > 0 then
            let lib = lib ()
            lock gate (fun () -> lib.Syrk.Invoke(rowMajor, lower, noTrans, n, k, alpha, a, lda, beta, c, ldc))

    /// C ← β·C + α·A·Bᵀ (C p × q, A p × k, B q × k).
    let gemmNT (p: int) (q: int) (k: int) (alpha: float) (a: nativeint) (lda: int) (b: nativeint) (ldb: int) (beta: float) (c: nativeint) (ldc: int) : unit =
        if p > 0 && q > 0 && k > 0 then
            let lib = lib ()
            lock gate (fun () -> lib.Gemm.Invoke(rowMajor, noTrans, trans, p, q, k, alpha, a, lda, b, ldb, beta, c, ldc))

    /// In-place Cholesky of the lower triangle of the n × n matrix at `a` (as `potrfLower`): 0 on success, LAPACK's info
    /// (the order of the failed leading minor) otherwise.
    let potrfLower (n: int) (a: nativeint) (lda: int) : int =
        if n = 0 then 0 else
        let lib = lib ()
        // Row-major lower = column-major upper of the same memory: dpotrf('U') factors it in place as UᵀU, U = Lᵀ.
        let args = Marshal.AllocHGlobal 16
        try
            Marshal.WriteByte(args, 0, byte 'U')
            Marshal.WriteInt32(args, 4, n)
            Marshal.WriteInt32(args, 8, lda)
            Marshal.WriteInt32(args, 12, 0)
            lock gate (fun () -> lib.Potrf.Invoke(args, args + 4n, a, args + 8n, args + 12n))
            Marshal.ReadInt32(args, 12)
        finally Marshal.FreeHGlobal args

    /// B ← B·L⁻ᵀ (B rows × n, L n × n lower triangular; only its lower triangle is read).
    let trsmRightLowerTranspose (rows: int) (n: int) (l: nativeint) (ldl: int) (b: nativeint) (ldb: int) : unit =
        if rows > 0 && n > 0 then
            let lib = lib ()
            lock gate (fun () -> lib.Trsm.Invoke(rowMajor, right, lower, trans, nonUnit, rows, n, 1.0, l, ldl, b, ldb))

    /// y ← A·x for the symmetric n × n matrix whose lower triangle is at `a` (only that triangle is read).
    let symvLower (n: int) (a: nativeint) (lda: int) (x: nativeint) (y: nativeint) : unit =
        if n > 0 then
            let lib = lib ()
            lock gate (fun () -> lib.Symv.Invoke(rowMajor, lower, n, 1.0, a, lda, x, 1, 0.0, y, 1))

    /// y ← A·x for the symmetric n × n matrix whose upper triangle is at `a` (only that triangle is read): the same
    /// product as `symvLower` for a matrix stored whole, on OpenBLAS's other kernel (column-major lower): 63 products at
    /// n = 2048 in 11.1 ms against 13.5 with OpenBLAS's Cooperlake kernels, 14.7 against 14.3 with its Haswell ones
    /// (`Benchmarks.dll symv`, docs/BENCHMARKS.md).
    let symvUpper (n: int) (a: nativeint) (lda: int) (x: nativeint) (y: nativeint) : unit =
        if n > 0 then
            let lib = lib ()
            lock gate (fun () -> lib.Symv.Invoke(rowMajor, upper, n, 1.0, a, lda, x, 1, 0.0, y, 1))

    /// x ← L⁻¹x (or L⁻ᵀx when `transpose`) for the lower-triangular n × n L at `l` (only its lower triangle is read).
    let trsvLower (transpose: bool) (n: int) (l: nativeint) (ldl: int) (x: nativeint) : unit =
        if n > 0 then
            let lib = lib ()
            lock gate (fun () -> lib.Trsv.Invoke(rowMajor, lower, (if transpose then trans else noTrans), nonUnit, n, l, ldl, x, 1))

    /// The eigenvalues (ascending) of the symmetric n × n matrix whose lower triangle is in `a` (row-major, leading
    /// dimension `lda`; overwritten): LAPACK dsyev without vectors. Raises when it does not converge.
    let symmetricEigenvalues (n: int) (a: nativeint) (lda: int) : float[] =
        if n = 0 then [||] else
        let lib = lib ()
        let values = Array.zeroCreate<float> n
        let lwork = max 1 (3 * n - 1) + 64 * n
        let work = Marshal.AllocHGlobal(8 * lwork)
        let w = Marshal.AllocHGlobal(8 * n)
        let args = Marshal.AllocHGlobal 24
        try
            // row-major lower = column-major upper of the same memory
            Marshal.WriteByte(args, 0, byte 'N')
            Marshal.WriteByte(args, 1, byte 'U')
            Marshal.WriteInt32(args, 4, n)
            Marshal.WriteInt32(args, 8, lda)
            Marshal.WriteInt32(args, 12, lwork)
            Marshal.WriteInt32(args, 16, 0)
            lock gate (fun () -> lib.Syev.Invoke(args, args + 1n, args + 4n, a, args + 8n, w, work, args + 12n, args + 16n))
            let info = Marshal.ReadInt32(args, 16)
            if info <> 0 then invalidOp (sprintf "dsyev did not converge (info %d)" info)
            Marshal.Copy(w, values, 0, n)
            values
        finally
            Marshal.FreeHGlobal args
            Marshal.FreeHGlobal w
            Marshal.FreeHGlobal work

    /// Copies the lower triangle of the n × n row-major matrix at `origin` (leading dimension `ld`) onto its strict upper
    /// triangle, in 64 × 64 blocks, each row of the upper triangle written contiguously from a column of the lower one
    /// in cache (`Benchmarks.dll mirror`, docs/BENCHMARKS.md: 5.6 ms against 61 ms for tensor copies at n = 2048, whose
    /// transposed copies stride through memory). Copies only: the lower triangle and the diagonal are untouched.
    let mirrorLower (origin: nativeint) (ld: int64) (n: int) : unit =
        let origin : nativeptr<float> = NativePtr.ofNativeInt origin
        let b = 64
        for ib in 0 .. b .. n - 1 do
            for jb in 0 .. b .. ib do
                // within the block: row j's entry i ← row i's entry j (offsets in int64: n² may exceed 2³¹)
                for j in jb .. min (jb + b) n - 1 do
                    let target : nativeptr<float> = NativePtr.ofNativeInt (NativePtr.toNativeInt origin + nativeint (int64 j * ld * 8L))
                    let first = max ib (j + 1)
                    let last = min (ib + b) n - 1
                    let mutable source : nativeptr<float> = NativePtr.ofNativeInt (NativePtr.toNativeInt origin + nativeint ((int64 first * ld + int64 j) * 8L))
                    for i in first .. last do
                        NativePtr.set target i (NativePtr.read source)
                        source <- NativePtr.add source (int ld)

/// OpenBLAS's threads set to libtorch's thread count (torch.get_num_threads: loads libtorch), as every tensor kernel here
/// does before it runs; for callers of `Raw` in a process that holds tensors anyway (`DenseNative.certifyMatrix`).
let syncThreads () : unit =
    match openBlas.Force() with
    | Some lib ->
        let threads = max 1 (torch.get_num_threads ())
        if threads <> openBlasThreads then
            lock gate (fun () -> lib.SetThreads.Invoke threads)
            openBlasThreads <- threads
    | None -> ()

/// The library when the kernels should run there for this tensor set (CPU float64 row-major operands).
let private native (operands: torch.Tensor list) : OpenBlasLibrary option =
    if current () <> Backend.OpenBlas then None
    elif operands |> List.forall (fun t ->
            t.device_type = DeviceType.CPU && t.dtype = torch.float64 && t.dim () = 2L
            && (t.shape.[1] <= 1L || t.stride(1) = 1L) && t.stride(0) >= max 1L t.shape.[1]
            && t.shape.[0] <= int64 Int32.MaxValue && t.shape.[1] <= int64 Int32.MaxValue && t.stride(0) <= int64 Int32.MaxValue) then
        match openBlas.Force() with
        | Some lib ->
            syncThreads ()
            Some lib
        | None -> None
    else None

/// Address of element [0, 0, …] of a CPU tensor's data (its storage offset included).
let dataPointer (t: torch.Tensor) : nativeint = THSTensor_data t.Handle

let private pointer (t: torch.Tensor) = dataPointer t
let private ld (t: torch.Tensor) = int (max 1L (t.stride 0))

let private checkShape (cond: bool) (what: string) = if not cond then invalidArg "operands" what

/// C ← β·C + α·A·Bᵀ (C p × q, A p × k, B q × k; C may be a view of a larger matrix).
let gemmNT (alpha: float) (a: torch.Tensor) (b: torch.Tensor) (beta: float) (c: torch.Tensor) : unit =
    checkShape (a.shape.[0] = c.shape.[0] && b.shape.[0] = c.shape.[1] && a.shape.[1] = b.shape.[1]) "gemmNT: shapes do not conform"
    if c.shape.[0] = 0L || c.shape.[1] = 0L then () else
    match native [ a; b; c ] with
    | Some _ when a.shape.[1] > 0L ->
        Raw.gemmNT (int c.shape.[0]) (int c.shape.[1]) (int a.shape.[1]) alpha (pointer a) (ld a) (pointer b) (ld b) beta (pointer c) (ld c)
    | _ -> (use bT = b.t() in c.addmm_(a, bT, beta = float32 beta, alpha = float32 alpha)) |> ignore   // the view dies here: it would keep b's storage

/// Rows per block of the libtorch fallback of `syrkLower`: diagonal blocks are full products, so the
/// wasted flops are ≈ block/n of the update's.
let private fallbackBlockRows = 256

/// C ← β·C + α·A·Aᵀ on the lower triangle of C (n × n, A n × k; C may be a view); the strict upper
/// triangle of C is unspecified afterwards (OpenBLAS leaves it, the fallback updates parts of it).
/// n²·k flops (half a gemm's) with OpenBLAS; with libtorch ≈ n²·k·(1 + 256/n) through lower-block gemms.
let syrkLower (alpha: float) (a: torch.Tensor) (beta: float) (c: torch.Tensor) : unit =
    checkShape (c.shape.[0] = c.shape.[1] && a.shape.[0] = c.shape.[0]) "syrkLower: shapes do not conform"
    let n = int c.shape.[0]
    if n = 0 then () else
    match native [ a; c ] with
    | Some _ when a.shape.[1] > 0L -> Raw.syrkLower n (int a.shape.[1]) alpha (pointer a) (ld a) beta (pointer c) (ld c)
    | _ ->
        let r = fallbackBlockRows
        if n <= 2 * r then (use aT = a.t() in c.addmm_(a, aT, beta = float32 beta, alpha = float32 alpha)) |> ignore
        else
            let blocks = (n + r - 1) / r
            for i in 0 .. blocks - 1 do
                let ri = min r (n - i * r)
                use ai = a.narrow(0L, int64 (i * r), int64 ri)
                for j in 0 .. i do
                    let rj = min r (n - j * r)
                    use aj = a.narrow(0L, int64 (j * r), int64 rj)
                    use cij = c.narrow(0L, int64 (i * r), int64 ri).narrow(1L, int64 (j * r), int64 rj)
                    use ajT = aj.t()
                    cij.addmm_(ai, ajT, beta = float32 beta, alpha = float32 alpha) |> ignore

/// Copies the lower triangle of the square matrix `c` onto its strict upper triangle (C ← tril(C) +
/// tril(C, −1)ᵀ), in blocks (no n × n temporary): the symmetric matrix of `syrkLower`'s result.
let mirrorLower (c: torch.Tensor) : unit =
    let n = int c.shape.[0]
    if c.device_type = DeviceType.CPU && c.dtype = torch.float64 && c.stride 1 = 1L && n > 1 then
        // Rows of unit stride (a matrix or a view of one): blocked copies within the storage (`Raw.mirrorLower`).
        Raw.mirrorLower (dataPointer c) (c.stride 0) n
    else
    let r = 512
    use scope = torch.NewDisposeScope()
    let blocks = (n + r - 1) / r
    for i in 0 .. blocks - 1 do
        let ri = min r (n - i * r)
        for j in 0 .. i do
            let rj = min r (n - j * r)
            let lowerBlock = c.narrow(0L, int64 (i * r), int64 ri).narrow(1L, int64 (j * r), int64 rj)
            if i = j then
                let sym = lowerBlock.tril().add(lowerBlock.tril(-1L).t())
                lowerBlock.copy_(sym) |> ignore
            else
                c.narrow(0L, int64 (j * r), int64 rj).narrow(1L, int64 (i * r), int64 ri).copy_(lowerBlock.t()) |> ignore

/// In-place Cholesky of the symmetric positive-definite matrix held in the lower triangle of `a`
/// (n × n, may be a view): on success (0) the lower triangle holds L with L·Lᵀ = a; a positive k means
/// the leading minor of order k is not positive definite in floating point (LAPACK's info), and `a` is
/// then partly overwritten. The strict upper triangle is unspecified afterwards.
let potrfLower (a: torch.Tensor) : int =
    checkShape (a.dim () = 2L && a.shape.[0] = a.shape.[1]) "potrfLower: a square matrix is needed"
    let n = int a.shape.[0]
    if n = 0 then 0 else
    match native [ a ] with
    | Some _ -> Raw.potrfLower n (pointer a) (ld a)
    | None ->
        use scope = torch.NewDisposeScope()
        let struct (l, info) = torch.linalg.cholesky_ex(a, false)
        let code = info.item<int> ()
        if code = 0 then a.copy_(l) |> ignore
        code

/// B ← B·L⁻ᵀ for the lower-triangular L (the tile Cholesky's trsm: L_ik = A_ik·L_kk⁻ᵀ); only L's lower
/// triangle is read.
let trsmRightLowerTranspose (l: torch.Tensor) (b: torch.Tensor) : unit =
    checkShape (l.shape.[0] = l.shape.[1] && b.shape.[1] = l.shape.[0]) "trsmRightLowerTranspose: shapes do not conform"
    if b.shape.[0] = 0L || b.shape.[1] = 0L then () else
    match native [ l; b ] with
    | Some _ -> Raw.trsmRightLowerTranspose (int b.shape.[0]) (int b.shape.[1]) (pointer l) (ld l) (pointer b) (ld b)
    | None ->
        use scope = torch.NewDisposeScope()
        let x = torch.linalg.solve_triangular(l.tril().t(), b, upper = true, left = false)
        b.copy_(x) |> ignore
