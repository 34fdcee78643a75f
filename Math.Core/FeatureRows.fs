namespace ResearchFramework.MathCore

open System
open System.Collections.Generic
open System.IO
open TorchSharp

/// A feature matrix Φ̃ (n × m', float64 values) held as row blocks Φ̃_I of `BlockRows` rows each (the last may be
/// shorter): in memory up to a byte budget (8 bytes per entry) and beyond it in checksummed tile files of a folder of
/// its own (`Tiled.writeTile`: as float32 when every entry of the block is a float32 value — the features of a
/// float32 network, so exact — else as float64), read back and verified on every use. Theorem P's frozen body keeps
/// Φ̃_τ this way (docs/theory.md §4 "Φ̃ streamed"): at n = 60,000 and m' ≥ n, Φ̃ is ≥ 28.8 GB in
/// float64 and is never held whole. Its products (`TransposeTimes`, `Times`, …) are sums and stackings over the
/// blocks; with one block they are the one-tensor products, bit for bit.
///
/// Written once (`Produce`, `ProduceResumable`, `InMemory`), read only afterwards. `Produce`'s folder has a fresh
/// name: `Dispose` frees the blocks and removes it, and a killed run leaves it behind for its caller to remove (no later
/// run ever reads it). `ProduceResumable`'s folder is the caller's, named by what the rows are rows of, and its files
/// carry the caller's key: a run stopped or killed part-way, or after, produces again only the blocks whose files are
/// missing or fail verification; its files outlive `Dispose` (the caller removes the folder when no resume needs it).
[<AllowNullLiteral>]
type FeatureRows private (rows: int, columns: int, blockRows: int, budget: int64, folder: string, key: string) =
    let blockCount = (rows + blockRows - 1) / blockRows
    let sizeOf i = min blockRows (rows - i * blockRows)
    let memory = Dictionary<int, torch.Tensor>()
    let narrowFiles = HashSet<int>()
    let mutable memoryBytes = 0L
    let mutable passes = 0
    let mutable disposed = false
    let resumable = not (isNull key)
    let pathOf i = Path.Combine(folder, sprintf "rows-%d.tile" i)
    let header i (element: int) =
        // a resumable file names what it holds (the caller's key), a fresh one its own folder
        let origin = if resumable then "key=" + key else "folder=" + folder
        sprintf "rf-feature-rows\n%s\nblock=%d\nrows=%d\ncols=%d\nelement=%d\n" origin i (sizeOf i) columns element
    let check () = if disposed then invalidOp "the feature rows were disposed"

    /// Whether block i, put next, goes to its file: the budget cannot hold it beside the blocks in memory (never without
    /// a folder). Blocks are put in order, so which blocks are in memory depends only on n, b, m' and the budget (the
    /// first ones, and a shorter last block that fits after others went to files): the same in every run of them.
    member private _.GoesToFile(i: int) =
        not (isNull folder) && memoryBytes + int64 (sizeOf i) * int64 columns * 8L > budget

    /// Block i from the file a stopped run left (resumable rows only): read back and verified in full, as float32 or
    /// float64 (the element size is in the header), and kept as a file block. False when there is none that verifies.
    member private _.Reuse(i: int) =
        let fits (element: int) =
            let dtype = if element = 4 then torch.float32 else torch.float64
            match Tiled.readTileOf dtype (pathOf i) (header i element) (sizeOf i) columns with
            | Ok t ->
                t.Dispose()
                if element = 4 then narrowFiles.Add i |> ignore
                true
            | Error _ -> false
        resumable && File.Exists(pathOf i) && (fits 4 || fits 8)

    /// Blocks 0 … i done so far that are in files (for progress lines while producing).
    member private _.FilesUpTo(i: int) = i + 1 - memory.Count

    /// Frees the blocks in memory; the files stay.
    member private _.ReleaseMemory() =
        for t in memory.Values do t.Dispose()
        memory.Clear()
        memoryBytes <- 0L

    /// Keeps block i (float64, `sizeOf i` × columns; takes `block`): in memory while the budget allows (always
    /// without a folder), else in its file.
    member private r.Put(i: int, block: torch.Tensor) =
        if block.dtype <> torch.float64 || block.shape.Length <> 2 || int block.shape.[0] <> sizeOf i || int block.shape.[1] <> columns then
            let shape = String.Join(" × ", block.shape)
            block.Dispose()
            invalidArg "block" (sprintf "row block %d is %s of %O; expected %d × %d float64" i shape block.dtype (sizeOf i) columns)
        let bytes = block.NumberOfElements * 8L
        if not (r.GoesToFile i) then
            let c = (use scope = torch.NewDisposeScope() in block.contiguous().DetachFromDisposeScope())
            if not (obj.ReferenceEquals(c, block)) then block.Dispose()
            memory.[i] <- c
            memoryBytes <- memoryBytes + bytes
        else
            Directory.CreateDirectory folder |> ignore
            do
                use scope = torch.NewDisposeScope()
                let wide = block.contiguous()
                let narrow = wide.``to``(torch.float32)
                let exact = narrow.``to``(torch.float64).eq(wide).all().item<bool> ()
                if exact then
                    Tiled.writeTile (pathOf i) (header i 4) narrow
                    narrowFiles.Add i |> ignore
                else Tiled.writeTile (pathOf i) (header i 8) wide
            block.Dispose()

    /// n.
    member _.Rows = rows
    /// m' (columns of Φ̃, the bias column included when the caller put it there).
    member _.Columns = columns
    /// Rows of a block (all but the last).
    member _.BlockRows = blockRows
    /// Number of blocks ⌈n / BlockRows⌉.
    member _.BlockCount = blockCount
    /// Rows of block i.
    member _.BlockSize(i: int) = sizeOf i
    /// Bytes of blocks held in memory.
    member _.MemoryBytes = memoryBytes
    /// Blocks in files (beyond the budget).
    member _.BlocksInFiles = blockCount - memory.Count
    /// Whole passes over the rows so far: each product, norm or join reads every block once (at n = 60,000 with its
    /// rows in files, one pass reads ≈ 20 GB). A diagnostic for the callers' schedules, not part of any result.
    member _.Passes = passes

    /// Runs `f` on block i as a float64 tensor (from memory, or read back and verified from its file and freed when
    /// `f` returns; `f` must not keep it). A file that fails verification raises, naming the file.
    member _.WithBlock(i: int, f: torch.Tensor -> 'a) : 'a =
        check ()
        if i < 0 || i >= blockCount then invalidArg "i" (sprintf "block %d of %d" i blockCount)
        match memory.TryGetValue i with
        | true, t -> f t
        | _ ->
            let narrow = narrowFiles.Contains i
            let dtype = if narrow then torch.float32 else torch.float64
            match Tiled.readTileOf dtype (pathOf i) (header i (if narrow then 4 else 8)) (sizeOf i) columns with
            | Ok t when not narrow ->
                use t = t
                f t
            | Ok t ->
                use wide = (use t = t in (use scope = torch.NewDisposeScope() in t.``to``(torch.float64).DetachFromDisposeScope()))
                f wide
            | Error why -> invalidOp (sprintf "feature rows file %s refused: %s (resume the run from a checkpoint: it produces the rows again)" (pathOf i) why)

    /// Φ̃ᵀA = Σ_I Φ̃_Iᵀ A_I (m' × c; A: n × c float64), a new tensor.
    member r.TransposeTimes(a: torch.Tensor) : torch.Tensor = r.SumOverBlocks(a, false)

    /// |Φ̃|ᵀ|A| = Σ_I |Φ̃_I|ᵀ|A_I| (m' × c), a new tensor.
    member r.AbsTransposeTimes(a: torch.Tensor) : torch.Tensor = r.SumOverBlocks(a, true)

    member private r.SumOverBlocks(a: torch.Tensor, absolute: bool) : torch.Tensor =
        if int a.shape.[0] <> rows then invalidArg "a" (sprintf "A has %d rows; Φ̃ has %d" a.shape.[0] rows)
        passes <- passes + 1
        use scope = torch.NewDisposeScope()
        let sum = ref (null: torch.Tensor)
        for i in 0 .. blockCount - 1 do
            r.WithBlock(i, fun block ->
                use scope = torch.NewDisposeScope()
                let ai = a.narrow(0L, int64 (i * blockRows), int64 (sizeOf i))
                let product = if absolute then block.abs().t().mm(ai.abs()) else block.t().mm(ai)
                if isNull sum.Value then sum.Value <- product.MoveToOuterDisposeScope()
                else sum.Value.add_(product) |> ignore)
        sum.Value.MoveToOuterDisposeScope()

    /// Φ̃X (n × c; X: m' × c float64), block by block, a new tensor.
    member r.Times(x: torch.Tensor) : torch.Tensor = r.StackOverBlocks(x, false)

    /// |Φ̃|X (n × c), a new tensor.
    member r.AbsTimes(x: torch.Tensor) : torch.Tensor = r.StackOverBlocks(x, true)

    member private r.StackOverBlocks(x: torch.Tensor, absolute: bool) : torch.Tensor =
        if int x.shape.[0] <> columns then invalidArg "x" (sprintf "X has %d rows; Φ̃ has %d columns" x.shape.[0] columns)
        passes <- passes + 1
        if blockCount = 1 then r.WithBlock(0, fun block -> (use scope = torch.NewDisposeScope() in (if absolute then block.abs().mm(x) else block.mm(x)).MoveToOuterDisposeScope()))
        else
            use scope = torch.NewDisposeScope()
            let result = torch.empty([| int64 rows; x.shape.[1] |], dtype = torch.float64)
            for i in 0 .. blockCount - 1 do
                r.WithBlock(i, fun block ->
                    use scope = torch.NewDisposeScope()
                    let product = if absolute then block.abs().mm(x) else block.mm(x)
                    result.narrow(0L, int64 (i * blockRows), int64 (sizeOf i)).copy_(product) |> ignore)
            result.MoveToOuterDisposeScope()

    /// ‖Φ̃‖_F as computed: the one tensor's norm with one block, else √(Σ_I ‖Φ̃_I‖_F²) (the rounding of a sum of
    /// n·m' squares either way; callers that need a rigorous bound inflate it).
    member r.FrobeniusNorm : float =
        passes <- passes + 1
        if blockCount = 1 then r.WithBlock(0, fun block -> block.norm().ToDouble())
        else
            let mutable squares = 0.0
            for i in 0 .. blockCount - 1 do
                let n = r.WithBlock(i, fun block -> block.norm().ToDouble())
                squares <- squares + n * n
            sqrt squares

    /// Φ̃ as one n × m' tensor (a copy; for the dense factor and tests, where it fits).
    member r.Joined() : torch.Tensor =
        passes <- passes + 1
        use scope = torch.NewDisposeScope()
        let result = torch.empty([| int64 rows; int64 columns |], dtype = torch.float64)
        for i in 0 .. blockCount - 1 do
            r.WithBlock(i, fun block -> result.narrow(0L, int64 (i * blockRows), int64 (sizeOf i)).copy_(block) |> ignore)
        result.MoveToOuterDisposeScope()

    /// Frees the blocks in memory and removes the folder (`Produce`'s; `ProduceResumable`'s stays for a resume).
    member r.Dispose() =
        if not disposed then
            disposed <- true
            r.ReleaseMemory()
            if not resumable && not (isNull folder) && Directory.Exists folder then Directory.Delete(folder, true)
    interface IDisposable with
        member r.Dispose() = r.Dispose()

    /// Refuses a layout no rows can have, naming the argument (`Produce`, `ProduceResumable`).
    static member private CheckLayout(rows: int, columns: int, blockRows: int, budgetBytes: int64) =
        if rows < 1 then invalidArg "rows" (sprintf "n = %d: no rows" rows)
        if columns < 1 then invalidArg "columns" (sprintf "m' = %d: no columns" columns)
        if blockRows < 1 then invalidArg "blockRows" (sprintf "rows per block %d must be at least 1" blockRows)
        if budgetBytes < 0L then invalidArg "budgetBytes" (sprintf "memory budget %d bytes must not be negative" budgetBytes)

    /// The rows of `phi` (n × m', float64; taken) as one block in memory: the one-tensor products, bit for bit.
    static member InMemory(phi: torch.Tensor) : FeatureRows =
        if phi.dtype <> torch.float64 || phi.shape.Length <> 2 || phi.shape.[0] < 1L then
            let shape = String.Join(" × ", phi.shape)
            let dtype = phi.dtype
            phi.Dispose()
            invalidArg "phi" (sprintf "Φ̃ must be a float64 matrix with at least one row, not %s of %O" shape dtype)
        let r = new FeatureRows(int phi.shape.[0], int phi.shape.[1], int phi.shape.[0], Int64.MaxValue, null, null)
        r.Put(0, phi)
        r

    /// Φ̃ of n rows and m' columns, block i (rows i·blockRows …, float64, owned by the callee) from `produce i`, in
    /// order; blocks in memory up to `budgetBytes`, the rest in files under `directory` (null: all in memory).
    /// `progress` (may be null) hears "rows k/K" after each block. If `produce` raises, what was kept is freed.
    static member Produce(rows: int, columns: int, blockRows: int, budgetBytes: int64, directory: string,
                          produce: int -> torch.Tensor, progress: Action<string>) : FeatureRows =
        FeatureRows.CheckLayout(rows, columns, blockRows, budgetBytes)
        let folder = if String.IsNullOrEmpty directory then null else Path.Combine(directory, "rows-" + Guid.NewGuid().ToString("N").Substring(0, 12))
        let r = new FeatureRows(rows, columns, blockRows, budgetBytes, folder, null)
        try
            for i in 0 .. r.BlockCount - 1 do
                r.Put(i, produce i)
                if not (isNull progress) then progress.Invoke(sprintf "feature rows: block %d/%d (%d in files)" (i + 1) r.BlockCount (r.FilesUpTo i))
            r
        with _ ->
            r.Dispose()
            reraise ()

    /// `Produce` into the caller's `folder` with its files resumable: each file's header carries `key` (what the rows are
    /// rows of, e.g. the body's fingerprint; another key's file is never read). A block that goes to its file (beyond
    /// the budget) and whose file a stopped or killed run left is read back and verified in full instead of produced,
    /// when `reusable i` (the caller has what it keeps beside block i, e.g. its outputs); a missing, truncated,
    /// corrupted or foreign file is produced again and rewritten. Blocks in memory (`GoesToFile`: the same in every run of one n, b, m' and budget) are
    /// produced in every run. `produce` is called in order for the other blocks; `reused` hears the blocks read back.
    /// If `produce` raises, the blocks in memory are freed and the files stay. The folder outlives `Dispose`.
    static member ProduceResumable(rows: int, columns: int, blockRows: int, budgetBytes: int64, folder: string, key: string,
                                   produce: int -> torch.Tensor, reusable: int -> bool, reused: Action<int>,
                                   progress: Action<string>) : FeatureRows =
        FeatureRows.CheckLayout(rows, columns, blockRows, budgetBytes)
        if String.IsNullOrEmpty folder then invalidArg "folder" "resumable rows need a folder"
        if String.IsNullOrEmpty key || key.Contains '\n' then invalidArg "key" "resumable rows need a one-line key"
        Directory.CreateDirectory folder |> ignore
        let r = new FeatureRows(rows, columns, blockRows, budgetBytes, folder, key)
        let mutable readBack = 0
        try
            for i in 0 .. r.BlockCount - 1 do
                if r.GoesToFile i && reusable i && r.Reuse i then
                    readBack <- readBack + 1
                    if not (isNull reused) then reused.Invoke i
                else r.Put(i, produce i)
                if not (isNull progress) then
                    progress.Invoke(sprintf "feature rows: block %d/%d (%d in files, %d read back from a stopped run)" (i + 1) r.BlockCount (r.FilesUpTo i) readBack)
            r
        with _ ->
            r.ReleaseMemory()
            reraise ()
