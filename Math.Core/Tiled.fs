/// The tiled certificate engine (docs/theory.md §3, "Tiles"): the same Rump shifted-Cholesky test as
/// `Certify` (every term computed by `Certify.certifyOperator`, `lambdaMinTermsBy`, `lambdaMaxTermsBy`),
/// on a Gram held as b × b tiles of its lower triangle instead of one n × n tensor, so n is bounded by
/// disk, not memory.
///
/// * Gram tiles G_IJ = fl(Φ̃_I Φ̃_Jᵀ), I ≥ J, each one float64 product of two row tiles of Φ̃ (b rows each,
///   the last one shorter) produced on demand from a row-block source; Φ is never held whole.
/// * Tile Cholesky, left-looking by tile column (the potrf/trsm/syrk/gemm kernels of PLASMA/SLATE, the
///   updates applied when a tile is finished rather than pushed to the trailing tiles, so that every
///   factor tile is written once and final): for k = 0 … T−1, for i = k … T−1,
///   A_ik ← Ã_ik − Σ_{j<k} L_ij L_kjᵀ (syrk for i = k, gemm below), then L_kk = potrf(A_kk) or
///   L_ik = A_ik L_kk⁻ᵀ (trsm).
/// * λ_min estimate: inverse iteration with tiled triangular solves on the factor of fl G; λ_max estimate:
///   Lanczos with tiled matrix–vector products; the σ_max side: the tiled Cholesky of t·I − fl G.
/// * Tiles live in memory up to `Settings.MemoryBudgetBytes`; with a work directory every finished tile is
///   also written there (header with the run's fingerprint, SHA-256 trailer) and a manifest records which
///   tiles, factorisations and estimates are done, so a killed run continues from its last finished tile.
///   A tile file that is truncated, corrupted or from another run is refused (named in the log) and
///   recomputed, never trusted.
module ResearchFramework.MathCore.Tiled

#nowarn "9" // spans over tensor storage (NativePtr) for streaming tile files

open System
open System.Collections.Generic
open System.Diagnostics
open System.IO
open System.Security.Cryptography
open System.Text
open System.Threading
open Microsoft.FSharp.NativeInterop
open TorchSharp
open ResearchFramework.MathCore.Gram

/// Progress of a tiled certificate: the phase ("gram", "cholesky …", the estimates' passes), tiles finished in it
/// (read back from files included), the rate of the tiles computed in this process and the estimated
/// seconds left in the phase (NaN before the first computed tile).
type TiledProgress =
    { Phase: string
      TilesDone: int
      TilesTotal: int
      GflopsPerSecond: float
      EtaSeconds: float }

/// One progress line: "tiles: <phase> k/K, r GFLOP/s, ETA [d.]hh:mm:ss" (rate and ETA once known; TimeSpan's "c" format).
let describeProgress (p: TiledProgress) : string =
    let rate = if Double.IsFinite p.GflopsPerSecond then sprintf ", %.1f GFLOP/s" p.GflopsPerSecond else ""
    let eta = if Double.IsFinite p.EtaSeconds then sprintf ", ETA %s" (TimeSpan.FromSeconds(Math.Round p.EtaSeconds).ToString("c")) else ""
    sprintf "tiles: %s %d/%d%s%s" p.Phase p.TilesDone p.TilesTotal rate eta

/// A progress callback that writes `describeProgress` lines to `log`: a phase's last tile always, others at most one
/// every `seconds`.
let throttledProgress (seconds: float) (log: string -> unit) : TiledProgress -> unit =
    let clock = Diagnostics.Stopwatch.StartNew()
    let last = ref Double.NegativeInfinity
    fun p ->
        let now = clock.Elapsed.TotalSeconds
        if p.TilesDone = p.TilesTotal || now - last.Value >= seconds then
            last.Value <- now
            log (describeProgress p)

/// Tunables of the tiled engine; none of them affects soundness.
type Settings =
    { /// b: rows (and columns) of a tile; the last tile row/column has n − (T − 1)·b.
      TileSize: int
      /// Bytes of tiles kept in memory; beyond it tiles live only in their files.
      MemoryBudgetBytes: int64
      /// Folder of the tile files and the manifest (null or empty: memory only, not resumable).
      WorkDirectory: string
      /// What the tiles are of (matrix file's or model's fingerprint): part of every file's fingerprint.
      RunFingerprint: string
      /// Bytes of feature row tiles kept instead of produced again.
      FeatureCacheBytes: int64
      /// With a work directory, and Φ larger than the feature cache: each feature row tile is produced once
      /// and written to a checksummed file (float32 when exact), read back for the Gram's other tile products
      /// instead of being produced again (a forward pass over its inputs); the files are removed when the
      /// Gram is finished.
      SpillFeatures: bool
      /// c: columns of Φ̃ per product when a Gram tile is accumulated (`gramTile`); the tile is the sum of the
      /// ⌈m/c⌉ products, each formed apart and added in order, so the accumulation constant is
      /// γ_{c + ⌈m/c⌉ − 1 (+1 bias)} instead of γ_{m'} (`accumulationDepth`, docs/theory.md §3 "Blocked
      /// accumulation"). Only the bound's constant depends on it, never soundness; ≤ 0: one product of length m.
      GramChunkColumns: int
      /// s: columns of the panels the tile Cholesky works in (`TileCholesky.step`): every update is formed apart one panel
      /// of columns at a time, and potrf/trsm run on s × s blocks, so the Cholesky constant is γ'_h with
      /// h = min(n + 1, 2s + P + 1), P = Σ_J ⌈b_J/s⌉ the panels of all tile columns, instead of 2b + T + 1
      /// (`TileCholesky.depth`, docs/theory.md §3 "Tile Cholesky in panels").
      /// Only the bound's constant depends on it, never soundness; ≤ 0 or ≥ b: whole tiles.
      CholeskyPanel: int
      /// Called once a certificate is Certified by the Gram route, before its tiles are let go, with access to the
      /// unscaled Gram tiles fl(G)_IJ (I ≥ J; `withGram i j f` runs f on the tile, which f must not keep): Theorem P's
      /// factor of M_τ = fl(G_τ) + nλI is formed from them instead of a second Gram (docs/theory.md §4 "Φ̃ streamed").
      OnCertifiedGram: (int -> int -> (torch.Tensor -> unit) -> unit) -> unit
      Progress: TiledProgress -> unit
      Log: string -> unit
      Cancel: CancellationToken }

    /// These settings with feature spilling on or off (C#: a record copy with one field changed).
    member s.WithSpillFeatures(spill: bool) = { s with SpillFeatures = spill }

/// Default memory budget: 20 GiB of tiles (a 24 GB machine with headroom for the rest of the process).
let defaultMemoryBudgetBytes = 20L <<< 30

/// Default settings: 2048 × 2048 tiles (32 MiB each), 20 GiB of tiles in memory, no work directory, Gram tiles
/// accumulated 1024 columns at a time and the tile Cholesky in panels of 512 (at n = 60,000, m' = 96,001: h_G = 1,118
/// and h_C = 1,143 instead of 96,001 and 60,001). Side by side (`Benchmarks tiled-order 8192 24576 2048 …`,
/// docs/BENCHMARKS.md): Gram products of 1024 columns cost ≈ 4 % more than of 2048 (512: ≈ 17 %); panels of 512 cost
/// ≈ 27 % more factorisation time than whole tiles (256: ≈ 65 %, one pass over the tile per panel update).
let defaults =
    { TileSize = 2048; MemoryBudgetBytes = defaultMemoryBudgetBytes; WorkDirectory = null; RunFingerprint = "unnamed"
      FeatureCacheBytes = 1L <<< 30; SpillFeatures = true; GramChunkColumns = 1024; CholeskyPanel = 512; OnCertifiedGram = ignore; Progress = ignore; Log = ignore; Cancel = CancellationToken.None }

/// Settings from C#: `progress` and `log` may be null.
let settings (tileSize: int) (memoryBudgetBytes: int64) (workDirectory: string) (runFingerprint: string)
             (progress: Action<TiledProgress>) (log: Action<string>) (cancel: CancellationToken) : Settings =
    { defaults with
        TileSize = tileSize; MemoryBudgetBytes = memoryBudgetBytes; WorkDirectory = workDirectory
        RunFingerprint = runFingerprint; Cancel = cancel
        Progress = (if isNull progress then ignore else progress.Invoke)
        Log = (if isNull log then ignore else log.Invoke) }

/// These settings with Gram products of `gramChunkColumns` columns and the Cholesky in panels of `choleskyPanel` (C#).
let withBlockedOrder (gramChunkColumns: int) (choleskyPanel: int) (s: Settings) : Settings =
    { s with GramChunkColumns = gramChunkColumns; CholeskyPanel = choleskyPanel }

/// Bytes of the lower-triangle tiles of an n × n matrix in b × b tiles.
let triangleBytes (n: int) (b: int) : int64 =
    let t = (n + b - 1) / b
    let size i = int64 (min b (n - i * b))
    seq { for i in 0 .. t - 1 do for j in 0 .. i -> size i * size j * 8L } |> Seq.sum

/// Bytes the tiled engine holds at most with everything in memory: the Gram's tiles and one factor's.
let inMemoryBytes (n: int) (b: int) : int64 = 2L * triangleBytes n b

let private magic = Encoding.ASCII.GetBytes "RFTILE01"

/// Chunk of a payload read, hashed or written at a time (tiles and spilled feature rows can exceed 2 GB).
let private chunkBytes = 16L <<< 20

/// The bytes [offset, offset + length) of the storage at `address` (a contiguous CPU tensor's data) as a span.
let inline private spanAt (address: nativeint) (offset: int64) (length: int64) : Span<byte> =
    Span<byte>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<byte> (address + nativeint offset)), int length)

/// Reads a tile file whose payload is `payloadBytes` bytes straight into the contiguous CPU tensor `target`
/// (whose storage holds exactly those bytes), hashing it on the way; Error names what is wrong with the file
/// (the tensor's contents are then unspecified).
let private readTileInto (path: string) (header: string) (target: torch.Tensor) : Result<unit, string> =
    let payloadBytes = target.NumberOfElements * int64 (target.ElementSize)
    let info = FileInfo path
    if not info.Exists then Error "missing" else
    let headerBytes = Encoding.UTF8.GetBytes header
    let expected = int64 magic.Length + 4L + int64 headerBytes.Length + payloadBytes + 32L
    use stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 <<< 20)
    let prefix = Array.zeroCreate<byte> (magic.Length + 4)
    if stream.Read(prefix, 0, prefix.Length) <> prefix.Length || prefix.[0 .. magic.Length - 1] <> magic then
        Error "not a tile file (bad magic)"
    else
    let headerLength = BitConverter.ToInt32(prefix, magic.Length)
    if headerLength <> headerBytes.Length then Error "header of another run, tile or shape (fingerprint mismatch)" else
    let found = Array.zeroCreate<byte> headerLength
    if stream.Read(found, 0, headerLength) <> headerLength || found <> headerBytes then
        Error "header of another run, tile or shape (fingerprint mismatch)"
    elif info.Length <> expected then Error (sprintf "%d bytes, expected %d (truncated or extended)" info.Length expected)
    else
    use sha = IncrementalHash.CreateHash HashAlgorithmName.SHA256
    sha.AppendData headerBytes
    let address = NativeBlas.dataPointer target
    let mutable offset = 0L
    while offset < payloadBytes do
        let length = min chunkBytes (payloadBytes - offset)
        let span = spanAt address offset length
        stream.ReadExactly span
        sha.AppendData(Span<byte>.op_Implicit span)
        offset <- offset + length
    let digest = Array.zeroCreate<byte> 32
    stream.ReadExactly(digest, 0, 32)
    if sha.GetHashAndReset() <> digest then Error "checksum mismatch (corrupted)" else Ok ()

/// Writes the contiguous CPU tensor `source` as a tile file, atomically (a temporary file renamed over the
/// target), streaming its storage (no managed copy).
let private writeTileFrom (path: string) (header: string) (source: torch.Tensor) =
    let payloadBytes = source.NumberOfElements * int64 (source.ElementSize)
    let address = NativeBlas.dataPointer source
    let headerBytes = Encoding.UTF8.GetBytes header
    use sha = IncrementalHash.CreateHash HashAlgorithmName.SHA256
    sha.AppendData headerBytes
    let temporary = path + ".partial"
    do
        use stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 <<< 20)
        stream.Write(magic, 0, magic.Length)
        stream.Write(BitConverter.GetBytes headerBytes.Length, 0, 4)
        stream.Write(headerBytes, 0, headerBytes.Length)
        let mutable offset = 0L
        while offset < payloadBytes do
            let length = min chunkBytes (payloadBytes - offset)
            let span = Span<byte>.op_Implicit (spanAt address offset length)
            sha.AppendData span
            stream.Write span
            offset <- offset + length
        stream.Write(sha.GetHashAndReset(), 0, 32)
        stream.Flush true
    File.Move(temporary, path, true)

/// A tile folder's manifest file.
let private manifestPathIn (directory: string) = Path.Combine(directory, "manifest.txt")

/// The first two lines of a manifest: its format, and the run key of the tiles it lists (`runKeyOf`).
let private manifestHeadOf (runKey: string) = [ "rf-tiled-manifest 1"; "run " + runKey ]

/// Tiles in memory up to a budget and (with a work directory) in files, with the manifest of what is done.
type private TileStore(settings: Settings, runKey: string) =
    let directory = if String.IsNullOrEmpty settings.WorkDirectory then null else settings.WorkDirectory
    let memory = Dictionary<string, torch.Tensor>()
    let mutable memoryBytes = 0L
    let entries = SortedDictionary<string, string>(StringComparer.Ordinal)
    let manifestPath = if isNull directory then null else manifestPathIn directory
    let manifestHead = manifestHeadOf runKey
    let digestOf (lines: string seq) =
        Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(String.Join("\n", lines)))).ToLowerInvariant()
    let saveManifest () =
        if not (isNull manifestPath) then
            let body = manifestHead @ [ for KeyValue (k, v) in entries -> sprintf "entry %s %s" k v ]
            let temporary = manifestPath + ".partial"
            File.WriteAllLines(temporary, body @ [ "sha256 " + digestOf body ])
            File.Move(temporary, manifestPath, true)
    do
        if not (isNull directory) then
            Directory.CreateDirectory directory |> ignore
            if File.Exists manifestPath then
                let lines = File.ReadAllLines manifestPath
                let valid =
                    lines.Length >= 3 && List.ofArray lines.[0 .. 1] = manifestHead
                    && lines.[lines.Length - 1] = "sha256 " + digestOf lines.[0 .. lines.Length - 2]
                if valid then
                    for line in lines.[2 .. lines.Length - 2] do
                        let parts = line.Split(' ')
                        if parts.Length = 3 && parts.[0] = "entry" then entries.[parts.[1]] <- parts.[2]
                else
                    settings.Log (sprintf "manifest %s refused (another run, or truncated or corrupted): starting afresh; its tiles are recomputed" manifestPath)

    member _.Directory = directory
    member _.Entry(key: string) = match entries.TryGetValue key with | true, v -> Some v | _ -> None
    member _.SetEntry(key: string, value: string) =
        entries.[key] <- value
        saveManifest ()

    member private _.PathOf(name: string) = Path.Combine(directory, name + ".tile")
    member private _.Header(name: string, rows: int, cols: int) = sprintf "run=%s\ntile=%s\nrows=%d\ncols=%d\n" runKey name rows cols

    member private _.Keep(name: string, t: torch.Tensor, reserve: int64) : bool =
        let bytes = t.NumberOfElements * 8L
        if isNull directory || memoryBytes + bytes <= settings.MemoryBudgetBytes - reserve then
            memory.[name] <- t
            memoryBytes <- memoryBytes + bytes
            true
        else false

    /// Forgets a file that failed verification (the manifest no longer lists it), saying why in the log.
    member private _.Refuse(name: string, why: string) =
        settings.Log why
        entries.Remove("tile:" + name) |> ignore
        saveManifest ()

    /// The tile if it is done: from memory (not owned: false), or read back from its verified file (owned
    /// unless kept in memory). A file that fails verification is refused (logged, forgotten) and None
    /// returned, so the caller recomputes it.
    member store.TryGet(name: string, rows: int, cols: int, reserve: int64) : (torch.Tensor * bool) option =
        match memory.TryGetValue name with
        | true, t -> Some (t, false)
        | _ ->
            if isNull directory || store.Entry("tile:" + name) <> Some "done" then None else
            let path = store.PathOf name
            // Read into torch's own (64-byte aligned) storage: BLAS may round differently for another alignment,
            // and a tile read back must give bitwise the results of the tile kept in memory.
            let t = torch.empty([| int64 rows; int64 cols |], dtype = torch.float64).DetachFromDisposeScope()
            let result = try readTileInto path (store.Header(name, rows, cols)) t with e -> Error e.Message
            match result with
            | Ok () ->
                if store.Keep(name, t, reserve) then Some (t, false) else Some (t, true)
            | Error reason ->
                t.Dispose()
                store.Refuse(name, sprintf "tile file %s refused: %s; recomputing it" path reason)
                None

    /// Stores a finished tile (the store takes `t`): written to its file first (with a work directory),
    /// then kept in memory while the budget less `reserve` allows.
    member store.Put(name: string, t: torch.Tensor, reserve: int64) =
        // Copied into fresh row-major storage with canonical strides, exactly as a tile read back from its
        // file: BLAS may round a product differently for another layout (a solve's column-major result, the
        // free strides of a one-row tile), and a resumed run must be bitwise the uninterrupted one.
        let t =
            let c = torch.empty(t.shape, dtype = torch.float64).DetachFromDisposeScope()
            c.copy_(t) |> ignore
            t.Dispose()
            c
        if not (isNull directory) then
            writeTileFrom (store.PathOf name) (store.Header(name, int t.shape.[0], int t.shape.[1])) t
            store.SetEntry("tile:" + name, "done")
        if not (store.Keep(name, t, reserve)) then t.Dispose()

    /// A spilled feature row tile (float64 tensor owned by the caller) if its file is listed and verifies;
    /// a bad file is refused (logged, forgotten) and None returned, so the caller produces the rows again.
    member store.TryGetFeature(name: string, rows: int, cols: int) : torch.Tensor option =
        if isNull directory then None else
        match store.Entry("tile:" + name) with
        | Some ("f4" | "f8" as kind) ->
            let dtype = if kind = "f4" then torch.float32 else torch.float64
            let path = store.PathOf name
            let header = store.Header(name, rows, cols) + sprintf "element=%d\n" (if kind = "f4" then 4 else 8)
            let t = torch.empty([| int64 rows; int64 cols |], dtype = dtype).DetachFromDisposeScope()
            match (try readTileInto path header t with e -> Error e.Message) with
            | Ok () when kind = "f8" -> Some t
            | Ok () ->
                let wide = (use scope = torch.NewDisposeScope() in t.``to``(torch.float64).DetachFromDisposeScope())
                t.Dispose()
                Some wide
            | Error reason ->
                t.Dispose()
                store.Refuse(name, sprintf "feature file %s refused: %s; producing the rows again" path reason)
                None
        | _ -> None

    /// Spills a feature row tile (float64 `t`, not taken) to its file: as float32 when every entry is a float32
    /// value (features given in float32: exact), else as float64; checked and written in row chunks, so the
    /// extra memory is the float32 copy.
    member store.PutFeature(name: string, t: torch.Tensor) =
        if not (isNull directory) then
            use scope = torch.NewDisposeScope()
            let rows, cols = int t.shape.[0], int t.shape.[1]
            let t = t.contiguous()
            let t32 = t.``to``(torch.float32)
            let chunk = max 1 (int (chunkBytes / (8L * int64 (max 1 cols))))
            let mutable narrow = true
            let mutable r = 0
            while narrow && r < rows do
                let k = min chunk (rows - r)
                use back = t32.narrow(0L, int64 r, int64 k).``to``(torch.float64)
                use same = back.eq(t.narrow(0L, int64 r, int64 k)).all()
                narrow <- same.item<bool> ()
                r <- r + k
            let elementBytes = if narrow then 4 else 8
            writeTileFrom (store.PathOf name) (store.Header(name, rows, cols) + sprintf "element=%d\n" elementBytes) (if narrow then t32 else t)
            store.SetEntry("tile:" + name, (if narrow then "f4" else "f8"))

    /// Frees the in-memory copies of the tiles whose name starts with `prefix`.
    member private _.FreeInMemory(prefix: string) =
        for name in [ for k in memory.Keys do if k.StartsWith(prefix, StringComparison.Ordinal) then k ] do
            memoryBytes <- memoryBytes - memory.[name].NumberOfElements * 8L
            memory.[name].Dispose()
            memory.Remove name |> ignore

    /// Frees the in-memory copies of the tiles whose name starts with `prefix` and that have their file (with a work
    /// directory every finished tile has one): they are read back from their verified files when used again.
    member store.Evict(prefix: string) =
        if not (isNull directory) then store.FreeInMemory prefix

    /// Forgets every tile whose name starts with `prefix` (memory, files and manifest entries).
    member store.Drop(prefix: string) =
        store.FreeInMemory prefix
        if not (isNull directory) then
            let keys = [ for k in entries.Keys do if k.StartsWith("tile:" + prefix, StringComparison.Ordinal) then k ]
            for k in keys do
                entries.Remove k |> ignore
                let path = store.PathOf(k.Substring 5)
                if File.Exists path then File.Delete path
            if not keys.IsEmpty then saveManifest ()

    interface IDisposable with
        member _.Dispose() =
            for t in memory.Values do t.Dispose()
            memory.Clear()

/// Progress of one phase: tiles done, the rate of the computed ones, the ETA of the rest.
/// A phase of tile work: progress (tiles done, the rate of the computed tiles, a flop-weighted ETA) on every tile and
/// a summary log line at the end. Also Theorem P's tiled factor's (`CertificateEngine.TiledCholesky`).
type internal Phase(settings: Settings, name: string, totalTiles: int, totalFlops: float) =
    let clock = Stopwatch.StartNew()
    let mutable tiles = 0
    let mutable doneFlops = 0.0
    let mutable computedFlops = 0.0
    let mutable computed = 0
    member _.Tile(flops: float, wasComputed: bool) =
        settings.Cancel.ThrowIfCancellationRequested()
        tiles <- tiles + 1
        doneFlops <- doneFlops + flops
        if wasComputed then
            computedFlops <- computedFlops + flops
            computed <- computed + 1
        let rate = if computedFlops > 0.0 then computedFlops / clock.Elapsed.TotalSeconds else nan
        settings.Progress
            { Phase = name; TilesDone = tiles; TilesTotal = totalTiles; GflopsPerSecond = rate / 1e9
              EtaSeconds = (if rate > 0.0 then max 0.0 (totalFlops - doneFlops) / rate else nan) }
    member _.Finish() =
        let rate = if computedFlops > 0.0 then computedFlops / clock.Elapsed.TotalSeconds / 1e9 else 0.0
        settings.Log (sprintf "%s: %d tiles (%d computed, %d read back) in %.1f s, %.1f GFLOP/s"
                          name tiles computed (tiles - computed) clock.Elapsed.TotalSeconds rate)

let private bitsOf (x: float) = BitConverter.DoubleToInt64Bits(x).ToString("x16")
let private ofBits (s: string) = BitConverter.Int64BitsToDouble(Convert.ToInt64(s, 16))

/// The Gram tile fl(Φ̃_I Φ̃_Jᵀ) of two float64 row tiles (I = J: `diagonal`, the syrk of ri, mirrored to be
/// exactly symmetric), accumulated `chunk` columns at a time: the first product is written into the tile, each
/// later one is formed apart (β = 0) and added to the tile (one rounding per entry), then 1 is added for the bias
/// column. The order is what `accumulationDepth` counts; a new tensor, owned by the caller.
let gramTile (chunk: int) (withBias: bool) (ri: torch.Tensor) (rj: torch.Tensor) (diagonal: bool) : torch.Tensor =
    let p = ri.shape.[0]
    let q = if diagonal then p else rj.shape.[0]
    let g = (use scope = torch.NewDisposeScope() in torch.zeros([| p; q |], dtype = torch.float64).DetachFromDisposeScope())
    accumulateProductInto chunk ri rj diagonal g
    if diagonal then NativeBlas.mirrorLower g
    if withBias then g.add_(scalar 1.0) |> ignore
    g

/// (`gramTile` and `TileCholesky.step` fix the bracketing that `accumulationDepth` and `TileCholesky.depth` count: a
/// change to the Gram's order must bump the version in `certifyRowBlocks`'s run key, "rf-tiled 2", and a change to the
/// Cholesky's order the names of its factorisations (`ordered` there, which carries the panel width), or a resumed run
/// would trust tiles and recorded factorisation outcomes of the old order under the new constants.)

/// Forward substitution L·y = v on a tile factor (T tile rows of `size i` rows at `offset i`):
/// y_i = L_ii⁻¹(v_i − Σ_{j<i} L_ij·y_j), all columns of v at once.
let solveLowerTiles (tiles: int) (size: int -> int) (offset: int -> int) (withFactor: int -> int -> (torch.Tensor -> unit) -> unit)
                    (v: torch.Tensor) : torch.Tensor =
    use scope = torch.NewDisposeScope()
    let block (t: torch.Tensor) i = t.narrow(0L, int64 (offset i), int64 (size i))
    let y = torch.zeros_like(v)
    for i in 0 .. tiles - 1 do
        let r = (block v i).clone()
        for j in 0 .. i - 1 do
            withFactor i j (fun lij -> r.sub_(lij.mm(block y j)) |> ignore)
        withFactor i i (fun lii -> (block y i).copy_(torch.linalg.solve_triangular(lii, r, upper = false)) |> ignore)
    y.MoveToOuterDisposeScope()

/// Back substitution Lᵀ·x = y on a tile factor: x_i = L_iiᵀ⁻¹(y_i − Σ_{j>i} L_jiᵀ·x_j), all columns at once. The
/// transposed views are disposed inside `withFactor`, so a factor tile read from its file is freed when used (a view
/// left in this scope kept every such tile alive until the solve ended: the n = 60,000 run's OOM, 2026-12-03).
let solveUpperTiles (tiles: int) (size: int -> int) (offset: int -> int) (withFactor: int -> int -> (torch.Tensor -> unit) -> unit)
                    (y: torch.Tensor) : torch.Tensor =
    use scope = torch.NewDisposeScope()
    let block (t: torch.Tensor) i = t.narrow(0L, int64 (offset i), int64 (size i))
    let x = torch.zeros_like(y)
    for i in tiles - 1 .. -1 .. 0 do
        let r = (block y i).clone()
        for j in i + 1 .. tiles - 1 do
            withFactor j i (fun lji -> (use ljiT = lji.t() in r.sub_(ljiT.mm(block x j))) |> ignore)
        withFactor i i (fun lii -> (use liiT = lii.t() in (block x i).copy_(torch.linalg.solve_triangular(liiT, r, upper = true))) |> ignore)
    x.MoveToOuterDisposeScope()

/// y = A·v for the symmetric matrix A given by the tiles of its lower triangle (`withTile i j f` runs f on A_ij,
/// i ≥ j; T tile rows of `size i` rows at `offset i`): y_i += A_ij·v_j and, below the diagonal, y_j += A_ijᵀ·v_i, all
/// columns of v at once. Every view of a tile (its transpose) is disposed inside `withTile`, as in the solves: a tile
/// read from its file is freed when `withTile` returns, not when the whole product ends (a view kept in this scope
/// would hold every tile read back, 14.9 GB at n = 60,000).
let symmetricMatvecTiles (tiles: int) (size: int -> int) (offset: int -> int) (withTile: int -> int -> (torch.Tensor -> unit) -> unit)
                         (v: torch.Tensor) : torch.Tensor =
    use scope = torch.NewDisposeScope()
    let block (t: torch.Tensor) i = t.narrow(0L, int64 (offset i), int64 (size i))
    let y = torch.zeros([| v.shape.[0]; v.shape.[1] |], dtype = torch.float64)
    for i in 0 .. tiles - 1 do
        for j in 0 .. i do
            withTile i j (fun g ->
                (block y i).add_(g.mm(block v j)) |> ignore
                if i <> j then (use gT = g.t() in (block y j).add_(gT.mm(block v i))) |> ignore)
    y.MoveToOuterDisposeScope()

/// The name of Gram tile (i, j) in a certificate's tile store (its file `NAME.tile`, its manifest entry `tile:NAME`).
let private gramName (i: int) (j: int) = sprintf "G-%d-%d" i j

/// The key every tile file and the manifest of `subject`'s certificate under `settings` carry: what the tiles are of
/// (`RunFingerprint`), their shape and their accumulation order (tile size, Gram chunk).
let private runKeyOf (settings: Settings) (subject: ExpressivitySubject) : string =
    Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(
        sprintf "rf-tiled 2|%s|n=%d|m'=%d|bias=%b|b=%d|chunk=%d" settings.RunFingerprint subject.Rows subject.Columns subject.WithBias
            settings.TileSize settings.GramChunkColumns))).ToLowerInvariant()

/// The run key of the tiles in `directory` (its manifest's line "run KEY", `runKeyOf`: what they are of and in which
/// order they were accumulated); None without a readable manifest. Files kept beside them carry it (Theorem P's
/// resumable factor, `CholeskyFactor.FromGram`), so they are refused once the tiles are another run's.
let manifestRunKey (directory: string) : string option =
    let path = if String.IsNullOrEmpty directory then null else manifestPathIn directory
    if isNull path || not (File.Exists path) then None
    else
        match (try File.ReadLines path |> Seq.truncate 2 |> List.ofSeq with :? IOException -> []) with
        | [ _; run ] as head when run.StartsWith "run " && head = manifestHeadOf (run.Substring 4) -> Some (run.Substring 4)
        | _ -> None

/// The Gram tiles fl(G)_IJ (I ≥ J, unscaled, as `Settings.OnCertifiedGram` hands them over) that a certificate of
/// `subject` left in `settings.WorkDirectory` (kept there by `CertificateEngine.CertifyRowBlocks` with `keepTiles`:
/// Theorem P's factor on a resume, docs/theory.md §4 "Φ̃ streamed"): when the folder's manifest carries this run key
/// and lists every Gram tile done, `Some (f withGram)`, `withGram i j g` running g on tile (i, j) read back from its
/// file and verified (header and SHA-256; g must not keep it); None otherwise. A file that fails verification raises
/// InvalidDataException (the reason in `settings.Log`; its manifest entry is dropped, so a certificate of the same subject
/// recomputes the tile).
let withStoredGram (settings: Settings) (subject: ExpressivitySubject) (f: (int -> int -> (torch.Tensor -> unit) -> unit) -> 'a) : 'a option =
    let directory = settings.WorkDirectory
    if String.IsNullOrEmpty directory || not (File.Exists(manifestPathIn directory)) then None
    else
        let n, b = subject.Rows, settings.TileSize
        let tiles = (n + b - 1) / b
        let size i = min b (n - i * b)
        // nothing kept in memory: every tile is read back from its file when used
        use store = new TileStore({ settings with MemoryBudgetBytes = 0L }, runKeyOf settings subject)
        let complete = seq { for i in 0 .. tiles - 1 do for j in 0 .. i -> store.Entry("tile:" + gramName i j) = Some "done" } |> Seq.forall id
        if not complete then None
        else
            let withGram i j (g: torch.Tensor -> unit) =
                match store.TryGet(gramName i j, size i, size j, 0L) with
                | Some (t, own) -> try g t finally (if own then t.Dispose())
                | None -> raise (InvalidDataException(sprintf "the stored Gram tile (%d, %d) in %s was refused (its file is missing, truncated or corrupted)" i j directory))
            Some (f withGram)

/// The certificate of Φ̃ (n × m', `subject`) given as row blocks `rowBlock 0 … blockCount − 1` of
/// `blockRows` rows each except possibly the last (each call must return the same rows; the engine
/// disposes them), through the tiled engine. Same verdicts and bounds as `Certify.certifyRowBlocks`
/// up to the rounding of fl G and the factorisations; `rowsEqual` confirms duplicate candidates
/// exactly (None: no refutation by duplicates).
let certifyRowBlocks (opts: Certify.Options) (settings: Settings) (subject: ExpressivitySubject) (rowsEqual: Certify.RowEquality)
                     (blockRows: int) (blockCount: int) (rowBlock: int -> torch.Tensor) : Certificate =
    let clock = Stopwatch.StartNew()
    let n = subject.Rows
    let b = settings.TileSize
    if b <= 0 then invalidArg "settings" "the tile size must be positive"
    if n <= 0 then invalidArg "subject" "no rows (n = 0)"
    if blockRows <= 0 || blockCount <> (n + blockRows - 1) / blockRows then
        invalidArg "blockCount" (sprintf "%d blocks of %d rows cannot hold n = %d rows" blockCount blockRows n)
    let columns = subject.Columns
    let withBias = subject.WithBias
    if isNull settings.WorkDirectory || settings.WorkDirectory = "" then
        let need = inMemoryBytes n b
        if need > settings.MemoryBudgetBytes then
            invalidArg "settings" (sprintf "the tiles of n = %d need %.1f GB, more than the memory budget of %.1f GB: give a work directory" n (float need / 1e9) (float settings.MemoryBudgetBytes / 1e9))
    let tiles = (n + b - 1) / b
    let size i = min b (n - i * b)
    let offset i = i * b
    let runKey = runKeyOf settings subject
    use store = new TileStore(settings, runKey)
    settings.Log (sprintf "tiled certificate: n = %d, m' = %d, %d × %d tiles of %d (%d in the lower triangle), %s"
                      n columns tiles tiles b (tiles * (tiles + 1) / 2)
                      (if isNull store.Directory then "in memory" else sprintf "work directory %s" store.Directory))
    // ---- feature row tiles, re-blocked from the source's row blocks ----
    let rowCache = Dictionary<int, torch.Tensor>()
    let mutable rowCacheBytes = 0L
    let fetchSource (s: int) : torch.Tensor =
        let t = rowBlock s
        validateBlock (sprintf "feature row block %d" s) t
        let expected = min blockRows (n - s * blockRows)
        if t.shape.[0] <> int64 expected then
            invalidArg "rowBlock" (sprintf "row block %d has %d rows, expected %d" s t.shape.[0] expected)
        if t.shape.[1] <> int64 subject.Features then
            invalidArg "rowBlock" (sprintf "row block %d has %d features, expected m = %d" s t.shape.[1] subject.Features)
        if store.Entry "precision" = None then store.SetEntry("precision", precisionName "features" t)
        elif t.dtype = torch.float64 && store.Entry "precision" <> Some "float64" then store.SetEntry("precision", "float64")
        let t64 = (use scope = torch.NewDisposeScope() in t.detach().``to``(torch.float64).DetachFromDisposeScope())
        t.Dispose()
        t64
    let buildRows (i: int) : torch.Tensor =
        let r0, r1 = offset i, offset i + size i
        // Filled block by block (no list of pieces and no concatenated copy: one row tile plus one source block).
        let whole = torch.empty([| int64 (r1 - r0); int64 subject.Features |], dtype = torch.float64).DetachFromDisposeScope()
        for s in r0 / blockRows .. (r1 - 1) / blockRows do
            use block = fetchSource s
            let lo = max r0 (s * blockRows) - s * blockRows
            let hi = min r1 (s * blockRows + int block.shape.[0]) - s * blockRows
            use v = block.narrow(0L, int64 lo, int64 (hi - lo))
            use target = whole.narrow(0L, int64 (s * blockRows + lo - r0), int64 (hi - lo))
            target.copy_(v) |> ignore
        whole
    // Spill the feature row tiles when Φ (float64) exceeds the feature cache and there is a work directory:
    // each is then produced once, not once per tile product it takes part in.
    let spill =
        settings.SpillFeatures && not (isNull store.Directory) && columns >= n
        && float n * float subject.Features * 8.0 > float settings.FeatureCacheBytes
    let mutable produced = 0
    let mutable readBack = 0
    /// Row tile i of Φ (float64) and whether the caller owns it.
    let rowsOf (i: int) : torch.Tensor * bool =
        match rowCache.TryGetValue i with
        | true, t -> t, false
        | _ ->
            let t =
                match (if spill then store.TryGetFeature(sprintf "F-%d" i, size i, subject.Features) else None) with
                | Some t ->
                    readBack <- readBack + 1
                    t
                | None ->
                    let t = buildRows i
                    produced <- produced + 1
                    if spill then store.PutFeature(sprintf "F-%d" i, t)
                    t
            let bytes = t.NumberOfElements * 8L
            if rowCacheBytes + bytes <= settings.FeatureCacheBytes then
                rowCache.[i] <- t
                rowCacheBytes <- rowCacheBytes + bytes
                t, false
            else t, true
    try
    // ---- refutation by shape: no Gram ----
    if columns < n then
        let squares =
            [| for i in 0 .. tiles - 1 do
                let r, own = rowsOf i
                let row = (use scope = torch.NewDisposeScope() in r.pow(scalar 2.0).sum(1L).cpu().data<float>().ToArray())
                yield! row
                if own then r.Dispose() |]
        Certify.refuteByShape subject (defaultArg (store.Entry "precision") "float32") torch.CPU squares clock
    else
    let factorReserve = triangleBytes n b
    // Gram tiles are kept in memory only up to the budget less one factor's triangle while a factor may be built; the
    // passes before the first factorisation (duplicate scan, the Lanczos products) need no factor, so they keep
    // Gram tiles up to the whole budget, and the first factorisation evicts them (`gramResidency`): at n = 60,000 with
    // a budget above the 14.9 GB triangle the Lanczos products then read memory, not 15 GB of tile files each.
    let gramReserve = ref factorReserve
    let getGram i j = store.TryGet(gramName i j, size i, size j, gramReserve.Value)
    /// Whether tile (i, j) is done: in memory, or its file verifies (a bad file is refused and the tile recomputed).
    let getGramDone i j =
        match getGram i j with
        | Some (t, own) ->
            if own then t.Dispose()
            true
        | None -> false
    // ---- the Gram, tile by tile ----
    let gramTileFlops i j = 2.0 * float (size i) * float (size j) * float columns
    let gramPhase = Phase(settings, "gram", tiles * (tiles + 1) / 2, Seq.sum (seq { for i in 0 .. tiles - 1 do for j in 0 .. i -> gramTileFlops i j }))
    // Panels of row tiles: the rows I of a panel are held while every row tile J ≤ max I streams past them once, so
    // a row tile that is not in the feature cache (a spilled one is read back from its file, hashed and widened to
    // float64) is fetched once per panel instead of once per tile product: Σ over panels of (first row of the panel)
    // fetches instead of up to T(T − 1). The panel takes the memory the tile budget leaves during this phase (Gram tiles
    // are kept in memory only up to the budget less the factor's reserve) less one streamed row tile. The order
    // of the tile products does not change any tile: each is one product of two row tiles.
    let rowTileBytes = int64 b * int64 subject.Features * 8L
    // (without a work directory every Gram tile stays in memory)
    let gramMemoryCap = if isNull store.Directory then factorReserve else min factorReserve (max 0L (settings.MemoryBudgetBytes - factorReserve))
    let panelRows =
        let budget = max settings.FeatureCacheBytes (settings.MemoryBudgetBytes - gramMemoryCap - rowTileBytes)
        int (max 1L (min (int64 tiles) (budget / max 1L rowTileBytes)))
    for p in 0 .. panelRows .. tiles - 1 do
        let panel = [ p .. min tiles (p + panelRows) - 1 ]
        let held = Dictionary<int, torch.Tensor * bool>()
        let rowsHeld i =
            match held.TryGetValue i with
            | true, (t, _) -> t
            | _ ->
                let t, own = rowsOf i
                held.[i] <- (t, own)
                t
        try
            for j in 0 .. List.last panel do
                let needing = panel |> List.filter (fun i -> i >= j && not (getGramDone i j))
                if not needing.IsEmpty then
                    // the streamed row tile J (held if it belongs to the panel)
                    let rj, ownJ = if j >= p then rowsHeld j, false else rowsOf j
                    try
                        for i in needing do
                            let ri = rowsHeld i
                            use scope = torch.NewDisposeScope()
                            // A diagonal tile is the syrk of its row tile, made exactly symmetric from its lower
                            // triangle: the tiled Gram is the symmetric matrix of its lower-triangle entries (each one
                            // inner product of length m', accumulated as `accumulationDepth` counts).
                            let g = gramTile settings.GramChunkColumns withBias ri rj (i = j)   // Put copies it and disposes it
                            store.Put(gramName i j, g, factorReserve)
                            gramPhase.Tile(gramTileFlops i j, true)
                    finally if ownJ then rj.Dispose()
                for i in panel do
                    if i >= j && not (List.contains i needing) then gramPhase.Tile(gramTileFlops i j, false)
        finally
            for KeyValue (_, (t, own)) in held do
                if own then t.Dispose()
    gramPhase.Finish()
    gramReserve.Value <- 0L
    /// Before a factorisation: the Gram tiles beyond the budget less a factor's triangle leave memory.
    let gramResidency () =
        if gramReserve.Value = 0L then
            store.Evict "G-"
            gramReserve.Value <- factorReserve
    if produced + readBack > 0 then
        settings.Log (sprintf "features: %d row tiles produced, %d read back from spill files%s" produced readBack
                          (if spill then " (spill files removed)" else ""))
    if spill then store.Drop "F-"
    for t in rowCache.Values do t.Dispose()
    rowCache.Clear()
    rowCacheBytes <- 0L
    let withGram i j (f: torch.Tensor -> 'a) : 'a =
        match getGram i j with
        | Some (t, own) -> try f t finally (if own then t.Dispose())
        | None -> failwithf "Gram tile (%d, %d) vanished after the Gram phase" i j
    // ---- diagonal: row norms, zero rows, scale ----
    let squares = [| for i in 0 .. tiles - 1 do yield! withGram i i diagonalValues |]
    match squares |> Array.tryFindIndex (fun v -> not (Double.IsFinite v)) with
    | Some i -> invalidArg "features" (sprintf "row %d of Φ has a non-finite squared norm (NaN or ±Inf features, or values so large their squares overflow): no certificate can be given" i)
    | None -> ()
    let e = scaleExponentOf (Array.max squares)
    // The blocked order of `gramTile` and `TileCholesky.step`: γ_h with h = `accumulationDepth` (1,118 at m' = 96,001 in
    // chunks of 1024) and γ'_h with h = `TileCholesky.depth` (1,143 at n = 60,000 in tiles of 2048, panels of 512) instead
    // of m' and n + 1.
    let accumulationIndex = accumulationDepth subject.Features withBias settings.GramChunkColumns
    let panel = TileCholesky.panelWidth b settings.CholeskyPanel
    let choleskyIndex = TileCholesky.depth n b panel
    let squaredNormSumScaled = FloatingPoint.scaleUp (squaredNormSumUpper accumulationIndex squares) (-2 * e)
    let accumulationError = GramMatrix.ErrorBound accumulationIndex squaredNormSumScaled (scalingErrorBound n)
    /// The scaled tile 4^(−e)·fl(G)_IJ, owned by the caller.
    let scaledGram i j : torch.Tensor =
        withGram i j (fun t ->
            let s = t.clone().DetachFromDisposeScope()
            scaleInPlace e s
            s)
    let precision = sprintf "features %s, Gram float64" (defaultArg (store.Entry "precision") "float32")
    // ---- tile Cholesky (left-looking by tile column) ----
    // A factorisation's tiles and recorded outcome are named by its order (the panel width, when not whole tiles) as
    // well as its matrix: a run resumed with another panel width factorises again under its own constant.
    let factorName key i k = sprintf "%s-L-%d-%d" key i k
    let ordered (key: string) = if panel >= b then key else sprintf "p%d%s" panel key
    let factorFlops i k = 2.0 * float (size i) * float (size k) * float (offset k) + (if i = k then float (size k) ** 3.0 / 3.0 else float (size i) * float (size k) ** 2.0)
    let totalFactorFlops = Seq.sum (seq { for k in 0 .. tiles - 1 do for i in k .. tiles - 1 -> factorFlops i k })
    let getFactor key i k = store.TryGet(factorName key i k, size i, size k, 0L)
    let withFactor key i k (f: torch.Tensor -> 'a) : 'a =
        match getFactor key i k with
        | Some (t, own) -> try f t finally (if own then t.Dispose())
        | None -> failwithf "factor tile %s vanished" (factorName key i k)
    // seconds spent in the factorisations of this process (for the closing log line)
    let factorSeconds = ref 0.0
    let factorCount = ref 0
    /// Factorises the tiles `init i k` (Ã_ik, owned); true iff every potrf succeeded. The outcome is recorded.
    let factorize (label: string) (key: string) (record: bool) (init: int -> int -> torch.Tensor) : bool =
        match (if record then store.Entry("cholesky:" + key) else None) with
        | Some outcome -> outcome = "ok"
        | None ->
        gramResidency ()
        let started = Stopwatch.StartNew()
        use _counted = { new IDisposable with member _.Dispose() = factorSeconds.Value <- factorSeconds.Value + started.Elapsed.TotalSeconds; factorCount.Value <- factorCount.Value + 1 }
        let phase = Phase(settings, label, tiles * (tiles + 1) / 2, totalFactorFlops)
        let mutable ok = true
        let mutable k = 0
        while ok && k < tiles do
            let mutable i = k
            while ok && i < tiles do
                match getFactor key i k with
                | Some (t, own) ->
                    if own then t.Dispose()
                    phase.Tile(factorFlops i k, false)
                | None ->
                    use scope = torch.NewDisposeScope()
                    let a = init i k
                    if TileCholesky.step panel (fun i j f -> withFactor key i j f) i k a then store.Put(factorName key i k, a, 0L)
                    else ok <- false
                    if ok then phase.Tile(factorFlops i k, true)
                i <- i + 1
            k <- k + 1
        phase.Finish()
        if record then store.SetEntry("cholesky:" + key, (if ok then "ok" else "failed"))
        if not ok then settings.Log (sprintf "%s: not positive definite in floating point (a pivot of tile column %d failed)" label (k - 1))
        ok
    let diagonalOf (f: torch.Tensor -> unit) : float[] =
        [| for i in 0 .. tiles - 1 do
            use s = scaledGram i i
            f s
            yield! diagonalValues s |]
    // ---- matrix–vector products and triangular solves on tiles ----
    // G_s·v = 4^(−e)·(fl(G)·v) exactly while no product or sum leaves the normal range (a power of two
    // commutes with rounding), which holds when n·max_i fl(G)_ii < 1e300 (|(G v)_i| ≤ n·max G_ii for ‖v‖∞ ≤ 1,
    // and the estimates' iterates are normalised): then the tiles are used as stored, not copied and scaled
    // on every product (a Lanczos step would otherwise copy the whole Gram). Only the estimates use matvec.
    let unscaledProducts = float n * Array.max squares < 1e300
    let matvec (v: torch.Tensor) : torch.Tensor =
        if unscaledProducts then
            let y = symmetricMatvecTiles tiles size offset (fun i j f -> withGram i j f) v
            scaleInPlace e y
            y
        else symmetricMatvecTiles tiles size offset (fun i j f -> use g = scaledGram i j in f g) v
    let solveLower key (v: torch.Tensor) = solveLowerTiles tiles size offset (fun i j f -> withFactor key i j f) v
    let solveUpper key (y: torch.Tensor) = solveUpperTiles tiles size offset (fun i j f -> withFactor key i j f) y
    let recorded (key: string) (compute: unit -> float) : float =
        match store.Entry key with
        | Some bits -> ofBits bits
        | None ->
            let value = compute ()
            store.SetEntry(key, bitsOf value)
            value
    // ---- duplicate-row candidates, tile by tile (as Certify's: d_ij ≤ 8E) ----
    // The scan reads every Gram tile (minutes at n = 60,000, from files): its result is recorded in the manifest
    // ("i-j" pairs, or "none") like the estimates, so a resumed run does not scan again. A candidate is only a
    // candidate: the refutation still confirms each one on Φ's rows.
    let scanDuplicates (maxCandidates: int) : (int * int) list =
        let tol = 8.0 * accumulationError
        use scope = torch.NewDisposeScope()
        let d = torch.tensor(diagonalOf ignore, dtype = torch.float64)
        let found = List<int * int>()
        for i in 0 .. tiles - 1 do
            for j in 0 .. i do
                if found.Count < maxCandidates then
                    use inner = torch.NewDisposeScope()
                    use g = scaledGram i j
                    let di = d.narrow(0L, int64 (offset i), int64 (size i))
                    let dj = d.narrow(0L, int64 (offset j), int64 (size j))
                    let mask = di.unsqueeze(1L).add(dj.unsqueeze(0L)).sub(g.mul(scalar 2.0)).le(scalar tol)
                    let mask = if i = j then mask.tril(-1L) else mask
                    let idx = mask.nonzero()
                    for r in 0 .. int idx.shape.[0] - 1 do
                        if found.Count < maxCandidates then
                            let a = offset i + int (idx.[int64 r, 0L].item<int64> ())
                            let c = offset j + int (idx.[int64 r, 1L].item<int64> ())
                            found.Add((min a c, max a c))
        List.ofSeq found
    let duplicateCandidates (maxCandidates: int) : (int * int) list =
        let key = sprintf "scan:duplicates-%d" maxCandidates
        let parse (text: string) : (int * int) list option =
            if text = "none" then Some []
            else
                let pairs = [ for pair in text.Split ',' -> match pair.Split '-' with
                                                            | [| a; c |] -> (match Int32.TryParse a, Int32.TryParse c with
                                                                             | (true, i), (true, j) when 0 <= i && i < j && j < n -> Some (i, j)
                                                                             | _ -> None)
                                                            | _ -> None ]
                if pairs |> List.forall Option.isSome then Some (List.choose id pairs) else None
        match store.Entry key |> Option.bind (fun text -> match parse text with
                                                          | Some found -> Some found
                                                          | None -> settings.Log (sprintf "manifest entry %s unreadable: scanning again" key); None) with
        | Some found ->
            settings.Log (sprintf "duplicate scan: %d candidate(s), as recorded in the manifest (no tile read)" found.Length)
            found
        | None ->
            let found = scanDuplicates maxCandidates
            store.SetEntry(key, (if found.IsEmpty then "none" else String.Join(",", found |> List.map (fun (a, c) -> sprintf "%d-%d" a c))))
            settings.Log (sprintf "duplicate scan: %d candidate(s), recorded" found.Length)
            found
    let zeroRows = Gram.zeroRowsOf squares
    let afterGram = Stopwatch.StartNew()
    // Progress of the estimates, one count per pass over the tiles (a product or a pair of triangular solves): at
    // n = 60,000 each pass reads every tile, some from files, and the k ≤ 90 + 16 of them take minutes.
    let passes (phase: string) (total: int) : unit -> unit =
        let clock = Stopwatch.StartNew()
        let count = ref 0
        fun () ->
            settings.Cancel.ThrowIfCancellationRequested()
            count.Value <- count.Value + 1
            let seconds = clock.Elapsed.TotalSeconds
            settings.Progress { Phase = phase; TilesDone = min count.Value total; TilesTotal = total; GflopsPerSecond = nan
                                EtaSeconds = seconds / float count.Value * float (max 0 (total - count.Value)) }
    let operator : Certify.GramOperator =
        { Rows = n; Columns = columns; SquaredNormSumUpper = squaredNormSumScaled; AccumulationErrorBound = accumulationError
          AccumulationDepth = accumulationIndex; CholeskyDepth = choleskyIndex
          ZeroRows = zeroRows; ScaleExponent = e; Precision = precision; Device = string torch.CPU
          Method = sprintf "float64 Gram in %d × %d tiles, tile Cholesky + Rump shifted-Cholesky positive-definiteness test (SPEC §3)" b b
          DuplicateCandidates = duplicateCandidates
          EstimateLambdaMax = fun steps ->
            // θ_min and its last move are recorded before θ_max, so a run killed between them computes all three again;
            // a manifest with θ_max alone (a run begun before θ_min was recorded) resumes without the Ritz shift
            match store.Entry "estimate:lambda-max", store.Entry "estimate:ritz-min", store.Entry "estimate:ritz-min-change" with
            | Some top, Some bottom, Some change ->
                { Certify.KrylovEstimate.LambdaMax = ofBits top; LambdaMinRitz = ofBits bottom; LambdaMinRitzChange = ofBits change }
            | Some top, _, _ -> Certify.KrylovEstimate.TopOnly(ofBits top)
            | None, _, _ ->
                let tick = passes "λ_max estimate, Lanczos products" (min steps n)
                let estimate = Certify.lanczosRitz steps (int64 n) torch.CPU (fun v -> let y = matvec v in tick (); y)
                store.SetEntry("estimate:ritz-min", bitsOf estimate.LambdaMinRitz)
                store.SetEntry("estimate:ritz-min-change", bitsOf estimate.LambdaMinRitzChange)
                store.SetEntry("estimate:lambda-max", bitsOf estimate.LambdaMax)
                estimate
          EstimateLambdaMin = fun iterations ->
            // The factor of fl G is kept (its tiles verified on every read) until the estimate is recorded.
            let key = ordered "flg"
            let estimate =
                recorded "estimate:lambda-min" (fun () ->
                    if factorize "cholesky fl G (λ_min estimate)" key false (fun i k -> scaledGram i k) then
                        let tick = passes "λ_min estimate, inverse iterations" iterations
                        Certify.inverseIteration iterations (int64 n) torch.CPU (solveLower key) (fun y -> let x = solveUpper key y in tick (); x) matvec
                    else
                        settings.Log "λ_min estimate: Cholesky of fl G failed, estimate 0 (Inconclusive)"
                        0.0)
            store.Drop(key + "-")
            estimate
          ShiftedCholesky = fun c ->
            let key = ordered ("shift" + bitsOf c)
            let shift (t: torch.Tensor) = (use d = t.diagonal() in d.sub_(scalar c)) |> ignore
            let ok = factorize (sprintf "cholesky fl G − %.6g·I" c) key true (fun i k -> let a = scaledGram i k in (if i = k then shift a); a)
            store.Drop(key + "-")
            if ok then Some (diagonalOf shift) else None
          TrialCholesky = fun t ->
            let key = ordered ("trial" + bitsOf t)
            let negate (a: torch.Tensor) (diagonal: bool) =
                a.neg_() |> ignore
                if diagonal then (use d = a.diagonal() in d.add_(scalar t)) |> ignore
            let ok = factorize (sprintf "cholesky %.6g·I − fl G (σ_max bound)" t) key true (fun i k -> let a = scaledGram i k in negate a (i = k); a)
            store.Drop(key + "-")
            if ok then Some (diagonalOf (fun a -> negate a true)) else None
          AnyOrderCholesky = None }
    let certificate = Certify.certifyOperator opts subject rowsEqual clock operator
    let total = afterGram.Elapsed.TotalSeconds
    settings.Log (sprintf "after the Gram: %.1f s, of which %d factorisation(s) %.1f s and the duplicate scan, estimates and tile products %.1f s"
                      total factorCount.Value factorSeconds.Value (total - factorSeconds.Value))
    if certificate.Verdict = Verdict.Certified then
        // Gram tiles beyond the budget less a factor's triangle leave memory first (a resumed certificate whose
        // factorisations were all recorded never evicted them): the receiver builds a factor of its own
        gramResidency ()
        settings.OnCertifiedGram (fun i j f -> withGram i j f)
    certificate
    finally
        for t in rowCache.Values do t.Dispose()

/// `certifyRowBlocks` for Φ held in memory (n × m, without the bias column), in row blocks of the
/// tile size, duplicates confirmed on Φ's rows: the tiled twin of `Certify.certifyMatrix`.
let certifyMatrix (opts: Certify.Options) (settings: Settings) (subject: ExpressivitySubject) (phi: torch.Tensor) : Certificate =
    if phi.dim () <> 2L then invalidArg "phi" (sprintf "Φ must be 2-D (rows × features), got shape %A" phi.shape)
    let n = int phi.shape.[0]
    let blockRows = max 1 (min n settings.TileSize)
    certifyRowBlocks opts settings subject (Certify.rowEqualityOf phi) blockRows ((n + blockRows - 1) / blockRows)
        (fun s -> phi.narrow(0L, int64 (s * blockRows), int64 (min blockRows (n - s * blockRows))))

/// Writes a contiguous CPU tensor as a tile file (magic, header, payload, SHA-256 trailer) atomically, as the
/// engine's own tiles are written: for other tiled computations that spill tiles beyond a memory budget
/// (`CholeskyFactor.Tiled`).
let writeTile (path: string) (header: string) (t: torch.Tensor) = writeTileFrom path header t

/// Reads a tile file written by `writeTile` with the same header and shape, whose payload holds elements of
/// `dtype` (float64 tiles; float32 feature rows), into a new tensor; Error names what is wrong with it (missing,
/// another run's header, truncated, corrupted).
let readTileOf (dtype: torch.ScalarType) (path: string) (header: string) (rows: int) (cols: int) : Result<torch.Tensor, string> =
    let t = torch.empty([| int64 rows; int64 cols |], dtype = dtype)
    match (try readTileInto path header t with e -> Error e.Message) with
    | Ok () -> Ok t
    | Error why ->
        t.Dispose()
        Error why

/// `readTileOf` a float64 tile.
let readTile (path: string) (header: string) (rows: int) (cols: int) : Result<torch.Tensor, string> =
    readTileOf torch.float64 path header rows cols
