namespace ResearchFramework.MathCore

open System
open System.Threading
open System.Diagnostics
open System.IO
open System.Security.Cryptography
open System.Text
open TorchSharp

/// Which certificate engine makes a certificate of n rows (docs/theory.md §3, "Tiles").
type EngineKind =
    /// Dense when the dense engine's 32·n² bytes fit the memory budget, else tiled.
    | Auto = 0
    /// The dense n × n float64 Gram in memory (`Certify`).
    | Dense = 1
    /// The tiled engine (`Tiled`): b × b tiles in memory up to the budget, in files beyond it.
    | Tiled = 2

/// The one engine choice of every certificate made in process (the trainer's switch and guard, `rf prove fc`;
/// `rf certify` maps its own options onto the same rule): the kind, the tile size b, the memory budget (tiles kept
/// in memory by the tiled engine; the bytes the dense engine may use under Auto) and the work directory of the
/// tile files (null: tiles in memory only, not resumable). None of it affects soundness: both engines compute the
/// same bounds of SPEC §3 (docs/theory.md §3); they agree up to the rounding of fl G and the factorisations.
type CertificateEngine =
    { /// Auto, Dense or Tiled.
      Kind: EngineKind
      /// b: rows and columns of a tile (≥ 1).
      TileSize: int
      /// Bytes the certificate may hold in memory (> 0): the tiled engine's tiles; under Auto, dense iff 32·n² fits.
      MemoryBudgetBytes: int64
      /// Folder of the tile files (one subfolder per certified subject, removed once its certificate is made), or null.
      WorkDirectory: string
      /// c: columns per product of a Gram tile on the tiled engine (`Tiled.Settings.GramChunkColumns`); Theorem P's factor
      /// from row blocks uses the same order (`CholeskyFactor.OfRows`). Only the bound's constant depends on it.
      GramChunkColumns: int
      /// Stops a tiled certificate between two tiles (`Tiled.Settings.Cancel`: OperationCanceledException; with a work
      /// directory every finished tile stays in its file, so the same subject resumes from it): the run's stop request (Ctrl-C, SIGTERM), which the
      /// trainer otherwise sees only between steps — hours later when the switch's certificate is long. Not configuration.
      Cancel: CancellationToken }

    /// Auto, 2048-row tiles, `Tiled.defaultMemoryBudgetBytes` (20 GiB: a 24 GB machine with headroom), no work directory.
    static member Default =
        { Kind = EngineKind.Auto; TileSize = 2048; MemoryBudgetBytes = Tiled.defaultMemoryBudgetBytes; WorkDirectory = null
          GramChunkColumns = Tiled.defaults.GramChunkColumns; Cancel = CancellationToken.None }

    /// Peak bytes of the dense certificate of n rows: four n × n float64 matrices (fl G, its shifted copy, their factors).
    static member DenseBytes(rows: int64) : int64 = 32L * rows * rows

    /// Whether a certificate of `rows` points runs on the tiled engine: Tiled, or Auto and 32·n² > `availableBytes`.
    member e.UsesTiled(rows: int, availableBytes: int64) : bool =
        e.Kind = EngineKind.Tiled || (e.Kind = EngineKind.Auto && CertificateEngine.DenseBytes(int64 rows) > availableBytes)

    /// Whether a certificate of `rows` points runs on the tiled engine, Auto measured against `MemoryBudgetBytes`.
    member e.UsesTiled(rows: int) : bool = e.UsesTiled(rows, e.MemoryBudgetBytes)

    /// Throws ArgumentException for `paramName` naming the bad value (kind, tile size, budget).
    member e.Validate(paramName: string) =
        if not (Enum.IsDefined(typeof<EngineKind>, e.Kind)) then invalidArg paramName (sprintf "certificate engine %d is not auto, dense or tiled" (int e.Kind))
        if e.TileSize < 1 then invalidArg paramName (sprintf "certificate tile size %d must be at least 1" e.TileSize)
        if e.MemoryBudgetBytes <= 0L then invalidArg paramName (sprintf "certificate memory budget %d bytes must be positive" e.MemoryBudgetBytes)

    /// The same choice with engine `kind`.
    member e.WithKind(kind: EngineKind) = { e with Kind = kind }
    /// The same choice with tiles of `tileSize` rows and `memoryBudgetBytes` bytes of tiles in memory.
    member e.WithTiles(tileSize: int, memoryBudgetBytes: int64) = { e with TileSize = tileSize; MemoryBudgetBytes = memoryBudgetBytes }
    /// The same choice with tile files under `directory` (null: memory only).
    member e.WithWorkDirectory(directory: string) = { e with WorkDirectory = directory }
    /// The same choice, its tiled certificates stopped by `token` (`Cancel`).
    member e.WithCancel(token: CancellationToken) = { e with Cancel = token }

    /// The tiled engine's settings for a subject named by `key`: tile files in `WorkDirectory/certificate-<hash of key>`
    /// (null without a work directory), so the same subject resumes from its own tiles; log lines and tile progress
    /// (`Tiled.describeProgress`, at most one line per 10 s and each phase's last tile) go to `log`.
    member e.Settings(key: string, log: string -> unit) : Tiled.Settings * string =
        let folder =
            if String.IsNullOrEmpty e.WorkDirectory then null
            else
                let hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes key)).Substring(0, 16).ToLowerInvariant()
                Path.Combine(e.WorkDirectory, "certificate-" + hash)
        { Tiled.defaults with TileSize = e.TileSize; MemoryBudgetBytes = e.MemoryBudgetBytes; WorkDirectory = folder; RunFingerprint = key; Log = log; Progress = Tiled.throttledProgress 10.0 log
                              GramChunkColumns = e.GramChunkColumns; Cancel = e.Cancel },
        folder

    /// What names a certified subject's tiles (data, certification set, network, parameters, taps, shape): the
    /// run fingerprint of its tile files and the name of its tile folder.
    static member SubjectKey(subject: ExpressivitySubject) : string =
        sprintf "%s|%s|%s|%s|%s|n=%d|m=%d|bias=%b" subject.DatasetFingerprint subject.CertificationSet subject.Architecture
            subject.ParameterFingerprint (String.Join(",", subject.Taps)) subject.Rows subject.Features subject.WithBias

    /// The certificate of an in-memory Φ (n × m, without the bias column) on the engine this choice picks for n rows:
    /// `Certify.certifyMatrix` (on native buffers for a CPU Φ on OpenBLAS: `DenseNative.certifyMatrix`), or `Tiled.certifyMatrix` followed (Auto route, Gram Inconclusive) by the orthogonal
    /// route exactly as the dense engine does (`Certify.certifyAfterGram`). The tiled engine's tile folder is removed
    /// once the certificate is made; a killed run leaves it, and the same subject resumes from its tiles.
    static member Certify(engine: CertificateEngine, opts: Certify.Options, subject: ExpressivitySubject, phi: torch.Tensor, log: Action<string>) : Certificate =
        if not (engine.UsesTiled subject.Rows) then DenseNative.certifyMatrix opts subject phi
        else
            let clock = Stopwatch.StartNew()
            CertificateEngine.OnTiles(engine, subject, log, fun settings ->
                let gram = Tiled.certifyMatrix opts settings subject phi
                Certify.certifyAfterGram (Certify.withinTileBudget settings.MemoryBudgetBytes opts) subject phi clock gram)

    /// The certificate of Φ (n × m, without the bias column) given as row blocks `rowBlock 0 … blockCount − 1` of
    /// `blockRows` rows each except possibly the last (every call returns the same rows; the engine disposes them), on
    /// the tiled engine whatever `Kind` says: Φ is never held whole, only row tiles up to the memory budget and tile
    /// files beyond it (docs/theory.md §3, "Tiles"). `Tiled.certifyRowBlocks` with this choice's tiles and work
    /// directory (resumable, the tile folder removed once the certificate is made, as `Certify`), then in Auto route
    /// with the Gram route Inconclusive the orthogonal route on the blocks joined, only when Φ̃ fits
    /// `opts.OrthogonalMaxBytes` and the tile memory budget (`Certify.withinTileBudget`, `Certify.certifyAfterGram`). For the same rows the certificate is bitwise the one
    /// `Certify` makes of the joined Φ on the tiled engine: the row tiles are the same whatever `blockRows` is.
    /// `rowsEqual` confirms duplicate candidates exactly (None: no refutation by duplicates). The feature row tiles
    /// kept instead of produced again count against the memory budget: at most a quarter of it (and the engine's
    /// default cache); beyond it, with a work directory, row tiles are spilled to files (`Tiled.Settings.SpillFeatures`).
    static member CertifyRowBlocks(engine: CertificateEngine, opts: Certify.Options, subject: ExpressivitySubject, rowsEqual: Certify.RowEquality,
                                   blockRows: int, blockCount: int, rowBlock: int -> torch.Tensor, log: Action<string>) : Certificate =
        CertificateEngine.CertifyRowBlocks(engine, opts, subject, rowsEqual, blockRows, blockCount, rowBlock, log, ignore)

    /// `CertifyRowBlocks`, and when the Gram route certifies, `onCertifiedGram` runs with the Gram tiles before they are
    /// let go (`Tiled.Settings.OnCertifiedGram`: Theorem P's factor from the switch's Gram).
    static member CertifyRowBlocks(engine: CertificateEngine, opts: Certify.Options, subject: ExpressivitySubject, rowsEqual: Certify.RowEquality,
                                   blockRows: int, blockCount: int, rowBlock: int -> torch.Tensor, log: Action<string>,
                                   onCertifiedGram: (int -> int -> (torch.Tensor -> unit) -> unit) -> unit) : Certificate =
        CertificateEngine.CertifyRowBlocks(engine, opts, subject, rowsEqual, blockRows, blockCount, rowBlock, log, onCertifiedGram, false)

    /// `CertifyRowBlocks` with `onCertifiedGram`; with `keepTiles`, a Certified certificate's tile folder stays (its Gram
    /// tiles for `CholeskyFactor.FromStoredGram`: Theorem P's factor when a run is resumed after the switch, without the hours of
    /// a second Gram) until the caller removes it (`TwoPhase.ReleaseKeptTiles`); any other verdict's folder is removed as usual.
    static member CertifyRowBlocks(engine: CertificateEngine, opts: Certify.Options, subject: ExpressivitySubject, rowsEqual: Certify.RowEquality,
                                   blockRows: int, blockCount: int, rowBlock: int -> torch.Tensor, log: Action<string>,
                                   onCertifiedGram: (int -> int -> (torch.Tensor -> unit) -> unit) -> unit, keepTiles: bool) : Certificate =
        let clock = Stopwatch.StartNew()
        CertificateEngine.OnTiles(engine, subject, log, (fun settings ->
            let settings = { settings with FeatureCacheBytes = min settings.FeatureCacheBytes (engine.MemoryBudgetBytes / 4L)
                                           OnCertifiedGram = onCertifiedGram }
            CertificateEngine.CertifyRowBlocksOnTiles(settings, opts, subject, rowsEqual, blockRows, blockCount, rowBlock, clock)),
            keepTiles)

    /// The tile folder of `subject`'s certificate on this engine (null without a work directory): where a killed
    /// certificate resumes from, and where `keepTiles` leaves a certified one's Gram.
    static member TileFolder(engine: CertificateEngine, subject: ExpressivitySubject) : string =
        snd (engine.Settings(CertificateEngine.SubjectKey subject, ignore))

    /// The tiled certificate of row blocks under given tile `settings` (the tile folder, budget, blocked order and
    /// progress of the caller: `CertifyRowBlocks` above, `rf certify --config`): `Tiled.certifyRowBlocks`, then in Auto
    /// route with the Gram route Inconclusive the orthogonal route on the blocks joined, only when Φ̃ fits
    /// `opts.OrthogonalMaxBytes` and the tile memory budget (`Certify.withinTileBudget`), else the reason why not.
    /// `clock` times the certificate (started by the caller, e.g. before its features were prepared).
    static member CertifyRowBlocksOnTiles(settings: Tiled.Settings, opts: Certify.Options, subject: ExpressivitySubject,
                                          rowsEqual: Certify.RowEquality, blockRows: int, blockCount: int,
                                          rowBlock: int -> torch.Tensor, clock: Stopwatch) : Certificate =
        let gram = Tiled.certifyRowBlocks opts settings subject rowsEqual blockRows blockCount rowBlock
        Certify.certifyAfterGramOfRowBlocks (Certify.withinTileBudget settings.MemoryBudgetBytes opts) subject blockCount rowBlock clock gram

    /// The tiled engine's certificate of `subject` by `certifyOnTiles` (given the settings of the subject's tile
    /// folder, `Settings`), the tile folder removed once the certificate is made (a killed run leaves it).
    static member private OnTiles(engine: CertificateEngine, subject: ExpressivitySubject, log: Action<string>,
                                  certifyOnTiles: Tiled.Settings -> Certificate) : Certificate =
        CertificateEngine.OnTiles(engine, subject, log, certifyOnTiles, false)

    /// `OnTiles`; with `keepTiles` a Certified certificate's folder stays.
    static member private OnTiles(engine: CertificateEngine, subject: ExpressivitySubject, log: Action<string>,
                                  certifyOnTiles: Tiled.Settings -> Certificate, keepTiles: bool) : Certificate =
        let settings, folder = engine.Settings(CertificateEngine.SubjectKey subject, (if isNull log then ignore else log.Invoke))
        let certificate = certifyOnTiles settings
        if not (isNull folder) && Directory.Exists folder && not (keepTiles && certificate.Verdict = Verdict.Certified) then
            Directory.Delete(folder, true)
        certificate

/// The lower Cholesky factor C of a symmetric positive definite M = fl(Φ̃Φ̃ᵀ) + s·I (n × n, float64; Theorem P's
/// M_τ = fl(G_τ) + nλI, docs/theory.md §4), and M⁻¹Z by forward substitution with C then back substitution with Cᵀ
/// (Z: n × c, the c classes as right-hand sides). One interface, two storages: one dense tensor (`Dense`), or b × b
/// tiles of the lower triangle (`Tiled`), in memory up to a budget and in tile files beyond it. What is proved about
/// a solve does not depend on the storage: its residual Z − MA is measured on Φ̃ itself (docs/theory.md §4).
[<AbstractClass; AllowNullLiteral>]
type CholeskyFactor() =
    /// n.
    abstract Rows: int
    /// True for the tiled storage.
    abstract IsTiled: bool
    /// A = M⁻¹Z (n × c float64 CPU; `z` n × c float64 CPU), owned by the caller.
    abstract Solve: z: torch.Tensor -> torch.Tensor
    /// Frees the factor (tensors, tile files).
    abstract Dispose: unit -> unit
    interface IDisposable with
        member f.Dispose() = f.Dispose()

    /// M = fl(Φ̃Φ̃ᵀ) + shift·I as one n × n tensor and its LAPACK Cholesky factor; null when the float64 Cholesky fails.
    static member Dense(phi: torch.Tensor, shift: float) : CholeskyFactor =
        let n = phi.shape.[0]
        let factor =
            use scope = torch.NewDisposeScope()
            let phi = phi.``to``(torch.float64)
            let m = torch.zeros([| n; n |], dtype = torch.float64)
            NativeBlas.syrkLower 1.0 phi 0.0 m
            m.diagonal().add_(scalar shift) |> ignore
            // potrf reads and writes the lower triangle only; the strict upper is zeroed for cholesky_solve's sake
            if NativeBlas.potrfLower m <> 0 then null else m.tril_().DetachFromDisposeScope()
        if isNull factor then null else new DenseCholesky(factor) :> CholeskyFactor

    /// M = fl(Φ̃Φ̃ᵀ) + shift·I in b × b tiles (M_IK = fl(Φ̃_I Φ̃_Kᵀ), + shift·I on the diagonal tiles) and its tile
    /// Cholesky, left-looking by tile column as `Tiled`'s (potrf on the diagonal tile, trsm below it, syrk/gemm updates
    /// from the finished tiles of earlier columns); factor tiles are kept in memory up to `memoryBudgetBytes` and written
    /// to `directory` beyond it (null: all in memory). Null when a diagonal tile's float64 Cholesky fails.
    static member Tiled(phi: torch.Tensor, shift: float, tileSize: int, memoryBudgetBytes: int64, directory: string) : CholeskyFactor =
        CholeskyFactor.Tiled(phi, shift, tileSize, memoryBudgetBytes, directory, null)

    /// `Tiled`, with progress lines (`Tiled.describeProgress`, phase "factor": tiles done, GFLOP/s, ETA; at most one per
    /// 10 s and the last tile) to `log` (may be null).
    static member Tiled(phi: torch.Tensor, shift: float, tileSize: int, memoryBudgetBytes: int64, directory: string, log: Action<string>) : CholeskyFactor =
        if tileSize < 1 then invalidArg "tileSize" (sprintf "the tile size %d must be at least 1" tileSize)
        let factor = new TiledCholesky(int phi.shape.[0], tileSize, memoryBudgetBytes, directory, null, null)
        let progress = if isNull log then ignore else Tiled.throttledProgress 10.0 log.Invoke
        if factor.Factorize(phi, shift, progress) then factor :> CholeskyFactor
        else
            factor.Dispose()
            null

    /// The factor of M = fl(Φ̃Φ̃ᵀ) + shift·I for Φ̃ = [Φ, 1] held as row blocks (`FeatureRows`, its last column the bias
    /// column of ones; never joined on the tiled storage): tiled when `engine` picks tiles for n rows (the blocks must
    /// then be the engine's tiles, `BlockRows` = `TileSize`, or a single block), its factor tiles in memory up to the
    /// engine's budget and in `WorkDirectory/cholesky` beyond it; dense (the rows joined) otherwise. On tiles M_IK is the
    /// certificate's Gram tile in the certificate's order (`Tiled.gramTile` over Φ's columns in products of the engine's
    /// `GramChunkColumns`, then + 1 for the bias), so for the same rows the factor is bitwise the one
    /// formed from the switch certificate's Gram tiles (`FromGram`). Null when the float64 Cholesky fails.
    static member OfRows(engine: CertificateEngine, rows: FeatureRows, shift: float, log: Action<string>) : CholeskyFactor =
        if engine.UsesTiled rows.Rows then
            if rows.BlockRows <> engine.TileSize && rows.BlockCount > 1 then
                invalidArg "rows" (sprintf "the feature rows come in blocks of %d rows; the tiled factor needs blocks of its tile size %d" rows.BlockRows engine.TileSize)
            let b = engine.TileSize
            let m = int64 (rows.Columns - 1)
            let chunk = engine.GramChunkColumns
            // Φ's rows of tile i (the bias column left out: it enters as + 1), from its block or as a view of the one block
            let withTileRows (i: int) (g: torch.Tensor -> torch.Tensor) : torch.Tensor =
                let ofBlock (block: torch.Tensor) (first: int64) =
                    use tile = block.narrow(0L, first, int64 (min b (rows.Rows - i * b)))
                    use bias = tile.select(1L, m)
                    if not (use ones = bias.eq(scalar 1.0).all() in ones.item<bool> ()) then
                        invalidArg "rows" (sprintf "the last column of tile %d is not the bias column of ones" i)
                    // a contiguous copy: the certificate's row tiles are contiguous, and a BLAS may round a strided
                    // view (leading dimension m + 1) otherwise
                    use view = tile.narrow(1L, 0L, m)
                    use phi = view.contiguous()
                    g phi
                if rows.BlockCount = 1 then rows.WithBlock(0, fun block -> ofBlock block (int64 (i * b)))
                else rows.WithBlock(i, fun block -> ofBlock block 0L)
            let withColumn k (body: (int -> torch.Tensor) -> unit) =
                withTileRows k (fun rk ->
                    body (fun i ->
                        if i = k then Tiled.gramTile chunk true rk rk true
                        else withTileRows i (fun ri -> Tiled.gramTile chunk true ri rk false))
                    rk) |> ignore
            CholeskyFactor.Build(engine, rows.Rows, float rows.Columns, withColumn, shift, log)
        else
            use phi = rows.Joined()
            CholeskyFactor.Dense(phi, shift)

    /// The tiled factor of M = A + shift·I on `engine`'s tiles, with A_IK copied from stored tiles (`withGram i k f`
    /// runs f on the tile A_IK, I ≥ K, which f must not keep): the switch certificate's Gram tiles fl(G)_IK, handed over
    /// by `Tiled.Settings.OnCertifiedGram`, so Theorem P needs no second Gram. Null when the Cholesky fails.
    static member FromGram(engine: CertificateEngine, n: int, columns: int, withGram: int -> int -> (torch.Tensor -> unit) -> unit,
                           shift: float, log: Action<string>) : CholeskyFactor =
        CholeskyFactor.FromGram(engine, n, columns, withGram, shift, log, null)

    /// `FromGram`, resumable when `gramFolder` (the folder that keeps the Gram tiles: the switch certificate's, kept
    /// until the run ends) is given: every factor tile is also written, as it is finished, to `ResumeFolder gramFolder
    /// shift b`, and a factorisation stopped part-way (a killed run) continues there from its finished tiles, each read
    /// back and verified (`Tiled.readTile`: a missing, truncated, corrupted or foreign file is formed again, never
    /// trusted). The tiles are the same in either case: each is the same kernels on the same tiles (left-looking: tile
    /// (i, k) reads Gram tile (i, k) and the finished tiles of columns < k only). The folder outlives the factor's
    /// `Dispose` (a run stopped after its factor was formed reads every tile back, asking no Gram tile) and goes with the
    /// kept Gram tiles (`TwoPhase.ReleaseKeptTiles`).
    static member FromGram(engine: CertificateEngine, n: int, columns: int, withGram: int -> int -> (torch.Tensor -> unit) -> unit,
                           shift: float, log: Action<string>, gramFolder: string) : CholeskyFactor =
        if not (isNull log) then log.Invoke(sprintf "factor of fl(G) + %g·I from the certificate's Gram tiles (n = %d, no second Gram)" shift n)
        let withColumn k (body: (int -> torch.Tensor) -> unit) =
            body (fun i ->
                let copy = ref (null: torch.Tensor)
                withGram i k (fun t -> copy.Value <- t.clone())
                copy.Value)
        // the factor's tiles carry the Gram tiles' run key: tiles of another Gram are refused, not trusted
        let resume =
            match (if String.IsNullOrEmpty gramFolder then None else Tiled.manifestRunKey gramFolder) with
            | Some gramKey -> Some (CholeskyFactor.ResumeFolder(gramFolder, shift, engine.TileSize), gramKey)
            | None -> None
        // the Gram tiles are given, not formed: no product over the columns in the rate and the ETA
        CholeskyFactor.Build(engine, n, 0.0, withColumn, shift, log, resume)

    /// The folder of `FromGram`'s resumable factor tiles for M = fl(G) + shift·I in tiles of b, inside the folder that keeps
    /// the Gram tiles (named by the shift's bits and b: another shift or tile size never reads these tiles).
    static member ResumeFolder(gramFolder: string, shift: float, b: int) : string =
        Path.Combine(gramFolder, sprintf "factor-%016x-b%d" (BitConverter.DoubleToInt64Bits shift) b)

    /// Theorem P's factor of M = fl(G) + shift·I from the Gram tiles a Certified certificate of `subject` kept in its
    /// tile folder (`CertifyRowBlocks` with `keepTiles`; `Tiled.withStoredGram`, every tile verified as it is read):
    /// `FromGram` on them, bitwise the factor the switch formed (the same tiles in the same order). None when the folder
    /// does not hold all of this subject's Gram tiles (another body, or removed): the caller forms the factor from
    /// the rows. Some null when the Cholesky fails.
    static member FromStoredGram(engine: CertificateEngine, subject: ExpressivitySubject, shift: float, log: Action<string>) : CholeskyFactor option =
        let settings, folder = engine.Settings(CertificateEngine.SubjectKey subject, ignore)
        Tiled.withStoredGram settings subject (fun withGram ->
            if not (isNull log) then log.Invoke(sprintf "the switch certificate's Gram tiles kept in %s" folder)
            CholeskyFactor.FromGram(engine, subject.Rows, subject.Columns, withGram, shift, log, folder))

    static member private Build(engine: CertificateEngine, n: int, columns: float, withColumn: int -> ((int -> torch.Tensor) -> unit) -> unit,
                                shift: float, log: Action<string>) : CholeskyFactor =
        CholeskyFactor.Build(engine, n, columns, withColumn, shift, log, None)

    static member private Build(engine: CertificateEngine, n: int, columns: float, withColumn: int -> ((int -> torch.Tensor) -> unit) -> unit,
                                shift: float, log: Action<string>, resume: (string * string) option) : CholeskyFactor =
        let directory = if String.IsNullOrEmpty engine.WorkDirectory then null else Path.Combine(engine.WorkDirectory, "cholesky")
        let resumeFolder, resumeKey = match resume with Some (folder, key) -> folder, key | None -> null, null
        let factor = new TiledCholesky(n, engine.TileSize, engine.MemoryBudgetBytes, directory, resumeFolder, resumeKey)
        let progress = if isNull log then ignore else Tiled.throttledProgress 10.0 log.Invoke
        // stopped part-way (an exception, a stop request): a resumable factor keeps its finished tiles' files
        let ok = (try factor.FactorizeWith(columns, withColumn, shift, progress)
                  with _ -> (if isNull resumeFolder then factor.Dispose() else factor.ReleaseMemory()); reraise ())
        if ok && not (isNull log) && factor.TilesResumed > 0 then
            log.Invoke(sprintf "factor: %d of %d tiles read back from %s (a stopped run's)" factor.TilesResumed (factor.TileCount * (factor.TileCount + 1) / 2) resumeFolder)
        if ok then factor :> CholeskyFactor
        else
            factor.Dispose()
            null

/// One n × n lower factor in memory: M⁻¹Z by LAPACK's potrs.
and [<AllowNullLiteral>] DenseCholesky(factor: torch.Tensor) =
    inherit CholeskyFactor()
    /// The lower factor C (n × n float64).
    member _.Factor = factor
    override _.Rows = int factor.shape.[0]
    override _.IsTiled = false
    override _.Solve(z) = torch.cholesky_solve(z, factor, false)
    override _.Dispose() = factor.Dispose()

/// The lower factor in b × b tiles L_ik (i ≥ k), in memory up to a budget and in tile files (`Tiled.writeTile`) beyond it.
/// With `resumeFolder` (`CholeskyFactor.FromGram`'s resumable factor): every tile is also written to that folder as it is
/// finished, and a factorisation there continues from the tiles it finds (each read back and verified: its header names
/// the folder, the tile, its shape and `resumeKey`, the Gram tiles' run key).
and [<AllowNullLiteral>] TiledCholesky(n: int, b: int, budget: int64, directory: string, resumeFolder: string, resumeKey: string) =
    inherit CholeskyFactor()
    let tiles = (n + b - 1) / b
    let size i = min b (n - i * b)
    let offset i = i * b
    let memory = Collections.Generic.Dictionary<struct (int * int), torch.Tensor>()
    let mutable memoryBytes = 0L
    let mutable disposed = false
    let resumable = not (String.IsNullOrEmpty resumeFolder)
    let mutable resumed = 0
    let folder =
        if resumable then resumeFolder
        elif String.IsNullOrEmpty directory then null
        else Path.Combine(directory, "factor-" + Guid.NewGuid().ToString("N").Substring(0, 12))
    let pathOf i k = Path.Combine(folder, sprintf "L-%d-%d.tile" i k)
    let header i k =
        sprintf "rf-cholesky-factor\nfolder=%s\ntile=%d,%d\nrows=%d\ncols=%d\n" folder i k (size i) (size k)
        + (if resumable then sprintf "gram=%s\n" resumeKey else "")
    /// Keeps L_ik (takes `c`, canonical strides) in memory while the budget allows (always without a folder); false when
    /// it does not fit.
    let keep i k (c: torch.Tensor) =
        let bytes = c.NumberOfElements * 8L
        if isNull folder || memoryBytes + bytes <= budget then
            memory.[struct (i, k)] <- c
            memoryBytes <- memoryBytes + bytes
            true
        else false
    /// Stores L_ik (takes `t`): in memory while the budget allows (always without a folder), else in its file; resumable,
    /// in its file in any case.
    let put i k (t: torch.Tensor) =
        // row-major, canonical strides: the same bits whether the tile is used from memory or read back from its file
        let c = torch.empty(t.shape, dtype = torch.float64).DetachFromDisposeScope()
        c.copy_(t) |> ignore
        t.Dispose()
        let kept = keep i k c
        if resumable || not kept then
            Directory.CreateDirectory folder |> ignore
            Tiled.writeTile (pathOf i k) (header i k) c
        if not kept then c.Dispose()
    /// Resumable: L_ik from the file a stopped factorisation wrote, kept as `put` keeps it; false (and the file removed)
    /// when there is none or it does not verify.
    let takeFinished i k =
        if not resumable || not (File.Exists(pathOf i k)) then false
        else
            match Tiled.readTile (pathOf i k) (header i k) (size i) (size k) with
            | Ok t ->
                let c = t.DetachFromDisposeScope()
                if not (keep i k c) then c.Dispose()
                resumed <- resumed + 1
                true
            | Error _ ->
                File.Delete(pathOf i k)
                false
    /// Runs `f` on L_ik (from memory, or read back and verified from its file).
    let withTile i k (f: torch.Tensor -> 'a) : 'a =
        match memory.TryGetValue(struct (i, k)) with
        | true, t -> f t
        | _ ->
            match Tiled.readTile (pathOf i k) (header i k) (size i) (size k) with
            | Ok t ->
                use t = t
                f t
            | Error why -> invalidOp (sprintf "Theorem P's factor tile %s refused: %s" (pathOf i k) why)
    /// b: rows of a tile.
    member _.TileSize = b
    /// T: tile rows.
    member _.TileCount = tiles
    /// Bytes of factor tiles held in memory.
    member _.MemoryBytes = memoryBytes
    /// Tiles in files (beyond the budget).
    member _.TilesInFiles = tiles * (tiles + 1) / 2 - memory.Count
    /// Tiles this factorisation read back from a stopped one's files instead of forming them (resumable only).
    member _.TilesResumed = resumed
    /// Frees the tiles held in memory and keeps the files (a resumable factorisation stopped part-way).
    member internal _.ReleaseMemory() =
        for t in memory.Values do t.Dispose()
        memory.Clear()
        memoryBytes <- 0L
    /// L_ik as a copy (i ≥ k), for tests.
    member _.Tile(i: int, k: int) : torch.Tensor = withTile i k (fun t -> t.clone())
    /// Factorises M = fl(Φ̃Φ̃ᵀ) + shift·I tile by tile (M_IK one syrk/gemm of the row tiles); false when a diagonal tile
    /// is not positive definite in float64.
    member internal f.Factorize(phi: torch.Tensor, shift: float, progress: Tiled.TiledProgress -> unit) : bool =
        use converted = if phi.dtype = torch.float64 then null else phi.``to``(torch.float64)
        let phi = if isNull converted then phi else converted
        let rowsOf i = phi.narrow(0L, int64 (offset i), int64 (size i))
        let withColumn k (body: (int -> torch.Tensor) -> unit) =
            use rk = rowsOf k
            body (fun i ->
                let a = torch.zeros([| int64 (size i); int64 (size k) |], dtype = torch.float64)
                if i = k then
                    NativeBlas.syrkLower 1.0 rk 0.0 a
                    NativeBlas.mirrorLower a
                else (use ri = rowsOf i in NativeBlas.gemmNT 1.0 ri rk 0.0 a)
                a)
        f.FactorizeWith(float phi.shape.[1], withColumn, shift, progress)

    /// Factorises M = A + shift·I tile by tile, left-looking by tile column: `withColumn k body` runs `body` with a
    /// function forming A_ik (i ≥ k, a new tensor) — from the row tiles (one held per column) or from stored Gram tiles.
    /// `columns` (m'; 0 when A's tiles are given) only feeds the progress's flop count. False when a diagonal tile is not
    /// positive definite.
    member internal _.FactorizeWith(columns: float, withColumn: int -> ((int -> torch.Tensor) -> unit) -> unit, shift: float,
                                    progress: Tiled.TiledProgress -> unit) : bool =
        // Flops of tile (i, k): its product over the m' columns (2·b_i·b_k·m', half for a diagonal syrk; none when the
        // Gram tiles are given, `columns` = 0), the left-looking updates from the k earlier tile columns (2·b_i·b_k·b
        // each), and its own potrf (b³/3) or trsm (b_i·b_k²), for the rate and the ETA.
        let flopsOf i k =
            let bi, bk = float (size i), float (size k)
            (if i = k then 1.0 else 2.0) * bi * bk * columns + 2.0 * bi * bk * float (k * b)
            + (if i = k then bk * bk * bk / 3.0 else bi * bk * bk)
        let totalFlops = seq { for k in 0 .. tiles - 1 do for i in k .. tiles - 1 -> flopsOf i k } |> Seq.sum
        let phase = Tiled.Phase({ Tiled.defaults with Progress = progress }, "factor", tiles * (tiles + 1) / 2, totalFlops)
        let ok = ref true
        let mutable k = 0
        while ok.Value && k < tiles do
            let column = k
            withColumn column (fun tileOf ->
                let mutable i = column
                while ok.Value && i < tiles do
                    use scope = torch.NewDisposeScope()
                    if takeFinished i column then phase.Tile(flopsOf i column, false)
                    else
                        let a = tileOf i
                        if i = column then (use d = a.diagonal() in d.add_(scalar shift)) |> ignore
                        if TileCholesky.step 0 (fun i j f -> withTile i j f) i column a then put i column (a.DetachFromDisposeScope())
                        else
                            a.Dispose()   // a tile formed outside this scope (gramTile) is not freed with it
                            ok.Value <- false
                        phase.Tile(flopsOf i column, true)
                    i <- i + 1)
            k <- k + 1
        ok.Value
    override _.Rows = n
    override _.IsTiled = true
    /// Forward substitution C y = z (y_i = L_ii⁻¹(z_i − Σ_{j<i} L_ij y_j)), then back substitution Cᵀx = y
    /// (x_i = L_iiᵀ⁻¹(y_i − Σ_{j>i} L_jiᵀ x_j)), tile row by tile row, all classes at once.
    override _.Solve(z) =
        if disposed then invalidOp "the tiled Cholesky factor was disposed"
        let withFactor i j (f: torch.Tensor -> unit) = withTile i j f
        use y = Tiled.solveLowerTiles tiles size offset withFactor z
        Tiled.solveUpperTiles tiles size offset withFactor y
    override _.Dispose() =
        if not disposed then
            disposed <- true
            for t in memory.Values do t.Dispose()
            memory.Clear()
            // a resumable factor's folder lies in the kept Gram folder and goes with it (`TwoPhase.ReleaseKeptTiles`): a run
            // stopped after the factor was formed reads it back on its resume instead of factorising again
            if not resumable && not (isNull folder) && Directory.Exists folder then Directory.Delete(folder, true)
