/// The tiled engine everywhere a certificate is made (issue #12: the trainer's switch and guard, `rf prove fc`,
/// `rf certify --config` through the `Certificate` keys) and Theorem P with a tiled factor of G_τ + nλI (issue #13,
/// docs/theory.md §4). Oracles: MathNet's dense float64 products and solves (never the tile code), the dense engine
/// within the stated error terms (`TiledTests.expectAgree`), and error bounds from the run's own certified quantities.
module ResearchFramework.Properties.AlgorithmTests.TiledEverywhereTests

open System
open System.IO
open Expecto
open TorchSharp
open MathNet.Numerics.LinearAlgebra
open ResearchFramework.MathCore
open ResearchFramework.Algorithm
open ResearchFramework.Properties

let private tiledEngine (b: int) (directory: string) =
    { CertificateEngine.Default with Kind = EngineKind.Tiled; TileSize = b; WorkDirectory = directory }
let private denseEngine = { CertificateEngine.Default with Kind = EngineKind.Dense }

let private matrixOf = PreconditionedTests.matrixOf

/// A temporary folder, deleted afterwards.
type private TempFolder() =
    let path = Directory.CreateTempSubdirectory("rf-tiledall-").FullName
    member _.Path = path
    interface IDisposable with
        member _.Dispose() = try Directory.Delete(path, true) with _ -> ()

/// ‖Z − MA‖_F in MathNet float64, M = ΦΦᵀ + sI formed by MathNet (independent of the factor's code).
let private residualNorm (phi: Matrix<float>) (shift: float) (z: Matrix<float>) (a: Matrix<float>) =
    let m = phi.TransposeAndMultiply(phi) + Matrix<float>.Build.DenseIdentity(phi.RowCount) * shift
    (z - m * a).FrobeniusNorm(), m

/// Input dimension of the Theorem P runs: 20 (smooth features of n = 120 points in R³ have a Gram whose eigenvalues
/// decay so fast that the float64 solve, not the rate, dominates; in R²⁰ the problem is well conditioned).
let private inputDim = 20

/// A user's float64 network d → 64 (tanh) → width (tanh, the tap "hidden") → 2, from `seed`.
let private wideNetwork (seed: int) (d: int) (width: int) =
    torch.random.manual_seed (int64 seed) |> ignore
    torch.nn.Sequential(
        [| struct ("fc1", torch.nn.Linear(int64 d, 64L, true, dtype = torch.float64) :> torch.nn.Module<torch.Tensor, torch.Tensor>)
           struct ("act1", torch.nn.Tanh() :> torch.nn.Module<torch.Tensor, torch.Tensor>)
           struct ("fc2", torch.nn.Linear(64L, int64 width, true, dtype = torch.float64) :> torch.nn.Module<torch.Tensor, torch.Tensor>)
           struct ("hidden", torch.nn.Tanh() :> torch.nn.Module<torch.Tensor, torch.Tensor>)
           struct ("fc3", torch.nn.Linear(int64 width, 2L, true, dtype = torch.float64) :> torch.nn.Module<torch.Tensor, torch.Tensor>) |])


/// τ = 2 SGD steps, the certified switch on `engine`, then `phaseTwo` preconditioned steps with a frozen body.
let private preconditionedRun (engine: CertificateEngine) (d: int) (seed: int) (n: int) (eta: float) (ridge: float) (epsilon: float) (phaseTwo: int) =
    use g = new torch.Generator(uint64 seed + 11UL, torch.CPU)
    let x = torch.randn([| int64 n; int64 d |], dtype = torch.float64, generator = g)
    let y = torch.randn([| int64 n; 2L |], dtype = torch.float64, generator = g)
    let model = wideNetwork seed d (n + 20)
    let recipe =
        { RecipeConfig.Default.WithSwitchIteration(2).WithPreconditionedReadout(eta, ridge, epsilon).WithCertificateEngine(engine)
            with Mode = PhaseTwoMode.Frozen }
    PreconditionedTests.preconditionedRunOf recipe model x y n phaseTwo

/// One case of the tiled-factor property (below), from its seed.
let private tiledFactorCase (seed: int) =
    let rng = Random seed
    let n = rng.Next(100, 201)
    let b = [| 16; 24; 32; 64 |].[rng.Next 4]
    let shift = if rng.Next 2 = 0 then 0.0 else float n * 1e-3
    use g = new torch.Generator(uint64 seed + 3UL, torch.CPU)
    use phiT = torch.randn([| int64 n; int64 (n + rng.Next(5, 40)) |], dtype = torch.float64, generator = g)
    use zT = torch.randn([| int64 n; 3L |], dtype = torch.float64, generator = g)
    use dense = CholeskyFactor.Dense(phiT, shift)
    use tiled = CholeskyFactor.Tiled(phiT, shift, b, Int64.MaxValue, null)
    Expect.isFalse dense.IsTiled "dense storage"
    Expect.isTrue tiled.IsTiled "tiled storage"
    use aD = dense.Solve zT
    use aT = tiled.Solve zT
    let phi, z, ad, at = matrixOf phiT, matrixOf zT, matrixOf aD, matrixOf aT
    let rT, m = residualNorm phi shift z at
    let rD, _ = residualNorm phi shift z ad
    // Cholesky solve backward error: (M + ΔM)A = Z, |ΔM| ≤ γ_{3n+1}|C||Cᵀ|, ‖|C||Cᵀ|‖_F ≤ n‖M‖_F (Higham Thm 10.4)
    let gamma = FloatingPoint.gamma FloatingPoint.unitRoundoff64 (3 * n + 1)
    let allowed (a: Matrix<float>) = gamma * float n * m.FrobeniusNorm() * a.FrobeniusNorm()
    Expect.isLessThanOrEqual rT (allowed at) (sprintf "tiled residual %g (n = %d, b = %d)" rT n b)
    Expect.isLessThanOrEqual rD (allowed ad) (sprintf "dense residual %g" rD)
    let lambdaMin = m.Evd(Symmetricity.Symmetric).EigenValues |> Seq.map (fun c -> c.Real) |> Seq.min
    Expect.isGreaterThan lambdaMin 0.0 "M positive definite (the oracle's eigenvalues)"
    Expect.isLessThanOrEqual ((at - ad).FrobeniusNorm()) ((rT + rD) / lambdaMin * (1.0 + 1e-6)) "‖A_t − A_d‖ ≤ ‖M⁻¹‖(‖r_t‖ + ‖r_d‖)"
    use folder = new TempFolder()
    // one full tile of budget: tile (0, 0) fills it, every other tile (n > b) goes to its file
    let spilled = CholeskyFactor.Tiled(phiT, shift, b, int64 b * int64 b * 8L, folder.Path) :?> TiledCholesky
    try
        Expect.isGreaterThan spilled.TilesInFiles 0 "tiles beyond the budget live in files"
        use aS = spilled.Solve zT
        Expect.isTrue (use same = aS.eq(aT).all() in same.item<bool> ()) "the tiles read back from their files give bitwise the in-memory solve"
    finally spilled.Dispose()
    Expect.isEmpty (Directory.GetFileSystemEntries folder.Path |> Array.collect (fun d -> if Directory.Exists d then Directory.GetFiles d else [| d |])) "its files removed on Dispose"

/// A recording observer that also keeps the progress lines of the recipe's long computations.
type private ProgressRecorder() =
    inherit RecordingObserver()
    let lines = ResizeArray<string>()
    member _.Lines = lines
    interface IProgressObserver with
        member _.OnProgress line = lines.Add line

/// Flips the lowest bit of byte `at length` of the file (a corruption its checksum must catch).
let private flipByte (path: string) (at: int -> int) =
    let bytes = File.ReadAllBytes path
    let i = at bytes.Length
    bytes.[i] <- bytes.[i] ^^^ 1uy
    File.WriteAllBytes(path, bytes)

[<Tests>]
let factorTests =
    testList "MathCore.CholeskyFactor" [
        testPropertyWithConfig (Seeds.config 4) "tiled factor of ΦΦᵀ + sI (tiles 16–64, n = 100–200): a backward-stable solve (MathNet residual), within ‖M⁻¹‖(‖r_t‖ + ‖r_d‖) of the dense one; spilled to files: bitwise the in-memory tiles' solve; files removed" <| fun (seed: int) -> tiledFactorCase seed

        // n = 101 ≤ 2b (b = 64): a budget of two full tiles held all three tiles, and nothing was spilled (the test's own
        // budget was wrong, not the factor).
        test "regression: seed 435963069, every tile in a budget of two full tiles" { tiledFactorCase 435963069 }

        testPropertyWithConfig (Seeds.config 4) "feature rows (FeatureRows, one block in memory, the rest in files): joined bitwise Φ̃, products within their γ bounds of the one-tensor products (bitwise with one block), float32 values stored as float32, the tiled factor from the rows bitwise the one from the tiled certificate's Gram tiles; a corrupted file refused naming it; files removed" <| fun (seed: int) ->
            let rng = Random seed
            let n = rng.Next(50, 151)
            let b = [| 16; 24; 32 |].[rng.Next 3]
            let columns = n + rng.Next(5, 40)
            let narrow = rng.Next 2 = 0   // the values of a float32 network
            use g = new torch.Generator(uint64 seed + 7UL, torch.CPU)
            // Φ̃ = [Φ, 1]: Theorem P's rows end with the bias column
            use phi =
                use r = torch.randn([| int64 n; int64 (columns - 1) |], dtype = (if narrow then torch.float32 else torch.float64), generator = g)
                use wide = r.``to``(torch.float64)
                use ones = torch.ones([| int64 n; 1L |], dtype = torch.float64)
                torch.cat([| wide; ones |], 1L)
            use a = torch.randn([| int64 n; 3L |], dtype = torch.float64, generator = g)
            use x = torch.randn([| int64 columns; 3L |], dtype = torch.float64, generator = g)
            use folder = new TempFolder()
            let blockBytes = int64 b * int64 columns * 8L
            let rows = FeatureRows.Produce(n, columns, b, blockBytes, folder.Path, (fun i -> phi.narrow(0L, int64 (i * b), int64 (min b (n - i * b))).clone()), null)
            let bitwise (u: torch.Tensor) (v: torch.Tensor) = (use same = u.eq(v).all() in same.item<bool> ())
            let within (what: string) (computed: torch.Tensor) (exact: torch.Tensor) (bound: torch.Tensor) =
                use excess = computed.sub(exact).abs().sub(bound)
                Expect.isLessThanOrEqual (excess.max().ToDouble()) 0.0 (sprintf "%s within its γ bound (n = %d, b = %d)" what n b)
            try
                Expect.equal rows.BlockCount ((n + b - 1) / b) "⌈n/b⌉ blocks"
                Expect.equal rows.BlocksInFiles (rows.BlockCount - 1) "the first block in memory, the rest in files"
                use joined = rows.Joined()
                Expect.isTrue (bitwise joined phi) "joined: bitwise Φ̃"
                let files = Directory.GetFiles(folder.Path, "rows-*.tile", SearchOption.AllDirectories)
                Expect.equal files.Length (rows.BlockCount - 1) "one file per block beyond the budget"
                let payload = files |> Array.sumBy (fun f -> FileInfo(f).Length)
                let entries = int64 (n - b) * int64 columns
                if narrow then Expect.isLessThan payload (entries * 5L) "float32 values stored as float32 (4 bytes per entry and a header)"
                else Expect.isGreaterThanOrEqual payload (entries * 8L) "float64 values stored as float64"
                // the products: another summation order, within γ_k·|Φ̃|ᵀ|A| (k = n) and γ_k·|Φ̃||X| (k = m')
                let gammaN, gammaM = FloatingPoint.gamma FloatingPoint.unitRoundoff64 n, FloatingPoint.gamma FloatingPoint.unitRoundoff64 columns
                use absPhi = phi.abs()
                use pT = rows.TransposeTimes a
                use eT = phi.t().mm(a)
                use bT = absPhi.t().mm(a.abs()).mul(scalar (2.0 * gammaN))
                within "Φ̃ᵀA" pT eT bT
                use pA = rows.AbsTransposeTimes a
                use eA = absPhi.t().mm(a.abs())
                within "|Φ̃|ᵀ|A|" pA eA bT
                use pX = rows.Times x
                use eX = phi.mm(x)
                use bX = absPhi.mm(x.abs()).mul(scalar (2.0 * gammaM))
                within "Φ̃X" pX eX bX
                use pAX = rows.AbsTimes(x.abs())
                use eAX = absPhi.mm(x.abs())
                within "|Φ̃||X|" pAX eAX bX
                Expect.floatClose Accuracy.high rows.FrobeniusNorm (phi.norm().ToDouble()) "‖Φ̃‖_F"
                // one block: the one-tensor products, bit for bit
                use single = FeatureRows.InMemory(phi.clone())
                use sT = single.TransposeTimes a
                use sX = single.Times x
                use sA = single.AbsTimes(x.abs())
                use sAT = single.AbsTransposeTimes a
                Expect.isTrue (bitwise sT eT && bitwise sX eX && bitwise sA eAX && bitwise sAT eA && single.FrobeniusNorm = phi.norm().ToDouble()) "one block: bitwise"
                // the tiled factor from the rows (tiles = blocks, read from their files) is bit for bit the factor formed
                // from the tiled certificate's own Gram tiles of Φ (handed over once Certified: Theorem P's switch)
                // Gram products of 32 columns (m ≥ 55: at least two products, so the order matters)
                let engine = { tiledEngine b folder.Path with MemoryBudgetBytes = int64 b * int64 b * 8L; GramChunkColumns = 32 }
                let shift = float n * 1e-3
                let fromRows = CholeskyFactor.OfRows(engine, rows, shift, null) :?> TiledCholesky
                let fromGram = ref (null: CholeskyFactor)
                let settings = { Tiled.defaults with TileSize = b; GramChunkColumns = 32; OnCertifiedGram = fun withGram -> fromGram.Value <- CholeskyFactor.FromGram(engine, n, columns, withGram, shift, null) }
                use phiWithoutBias = phi.narrow(1L, 0L, int64 (columns - 1))
                let certificate = Tiled.certifyMatrix Certify.defaults settings (MathCoreTests.Generators.subject phiWithoutBias true) phiWithoutBias
                Expect.equal certificate.Verdict Verdict.Certified "Gaussian Φ̃ with m' > n: Certified"
                let fromGram = fromGram.Value :?> TiledCholesky
                try
                    Expect.isGreaterThan fromRows.TilesInFiles 0 "factor tiles beyond the budget in files"
                    for i in 0 .. fromGram.TileCount - 1 do
                        for k in 0 .. i do
                            use u = fromRows.Tile(i, k)
                            use v = fromGram.Tile(i, k)
                            Expect.isTrue (bitwise u v) (sprintf "factor tile (%d, %d) bitwise" i k)
                finally
                    fromRows.Dispose()
                    fromGram.Dispose()
                let e = Expect.throwsC (fun () -> CholeskyFactor.OfRows({ engine with TileSize = b + 1 }, rows, shift, null) |> ignore) id
                Expect.stringContains e.Message "tile size" "blocks other than the tiles refused"
                // a flipped byte in a block's file: refused, naming the file
                let victim = files |> Array.head
                flipByte victim (fun length -> length - 40)
                let bad = Expect.throwsC (fun () -> rows.TransposeTimes a |> ignore) id
                Expect.stringContains bad.Message (Path.GetFileName victim) "the refused file named"
            finally rows.Dispose()
            Expect.isEmpty (Directory.GetFiles(folder.Path, "*", SearchOption.AllDirectories)) "its files removed on Dispose"

        test "resumable feature rows (FeatureRows.ProduceResumable, n = 70, b = 16, one block in memory): stopped at block 3, the next run produces only the blocks it lacks (the memory block and the stopped one), bit for bit; a flipped byte is produced again; another key reads none; Dispose keeps the files" {
            let n, b, columns = 70, 16, 23
            use g = new torch.Generator(41UL, torch.CPU)
            use phi = torch.randn([| int64 n; int64 columns |], dtype = torch.float64, generator = g)
            use folder = new TempFolder()
            let rowsFolder = Path.Combine(folder.Path, "rows-b16")
            let budget = int64 b * int64 columns * 8L   // block 0 in memory, blocks 1–4 in files
            let produced = ResizeArray<int>()
            let block i = phi.narrow(0L, int64 (i * b), int64 (min b (n - i * b))).clone()
            let run (key: string) (stopAt: int) =
                produced.Clear()
                let reused = ResizeArray<int>()
                let rows =
                    FeatureRows.ProduceResumable(n, columns, b, budget, rowsFolder, key,
                                                 (fun i -> (if i = stopAt then failwith "stopped"); produced.Add i; block i),
                                                 (fun _ -> true), Action<int>(reused.Add), null)
                rows, List.ofSeq produced, List.ofSeq reused
            let bitwise (rows: FeatureRows) = (use j = rows.Joined() in use same = j.eq(phi).all() in same.item<bool> ())
            Expect.throws (fun () -> run "key A" 3 |> ignore) "the stop raises through"
            Expect.equal (List.ofSeq produced) [ 0; 1; 2 ] "blocks 0–2 produced before the stop"
            Expect.equal (Directory.GetFiles(rowsFolder, "rows-*.tile").Length) 2 "the files of blocks 1 and 2 stay after the stop"
            let rows, made, reused = run "key A" -1
            Expect.equal made [ 0; 3; 4 ] "the memory block and the blocks without files produced"
            Expect.equal reused [ 1; 2 ] "the blocks in files read back"
            Expect.isTrue (bitwise rows) "bit for bit Φ̃"
            rows.Dispose()
            Expect.equal (Directory.GetFiles(rowsFolder, "rows-*.tile").Length) 4 "Dispose keeps the files (the caller's folder)"
            let victim = Path.Combine(rowsFolder, "rows-3.tile")
            flipByte victim (fun length -> length - 40)
            let rows, made, reused = run "key A" -1
            Expect.equal (made, reused) ([ 0; 3 ], [ 1; 2; 4 ]) "the corrupted block produced again, the others read back"
            Expect.isTrue (bitwise rows) "bit for bit Φ̃"
            rows.Dispose()
            let rows, made, reused = run "key B" -1
            Expect.equal (made, reused) ([ 0; 1; 2; 3; 4 ], []) "another key's files are never read"
            Expect.isTrue (bitwise rows) "bit for bit Φ̃"
            rows.Dispose()
        }

        test "the factor from kept Gram tiles resumes: stopped in tile column 2, the next run forms only the tiles it lacks, bit for bit the uninterrupted factor; a corrupted tile file is formed again; another shift or another Gram reads none; Dispose keeps the tiles, and a finished factor is read back whole" {
            let n, b, m = 150, 32, 200
            use g = new torch.Generator(20261204UL, torch.CPU)
            use phi = torch.randn([| int64 n; int64 m |], dtype = torch.float64, generator = g)
            use folder = new TempFolder()
            let gramFolder = Path.Combine(folder.Path, "certificate")
            let shift = float n * 1e-3
            // one tile of budget: most factor tiles would live only in the cholesky folder without the resume
            let engine = { tiledEngine b folder.Path with MemoryBudgetBytes = int64 b * int64 b * 8L; GramChunkColumns = 64 }
            let settings = { Tiled.defaults with TileSize = b; GramChunkColumns = 64; WorkDirectory = gramFolder }
            let subject = MathCoreTests.Generators.subject phi true
            let asked = Collections.Generic.List<int * int>()
            let gramTiles = Collections.Generic.Dictionary<int * int, torch.Tensor>()
            /// The certificate on the kept folder (its Gram tiles recorded), and the factor formed from its Gram tiles with
            /// `FromGram` (resumable in `gramFolder` when `resume`), every Gram tile asked for recorded; `stopAt` (i, k):
            /// that Gram tile raises instead (a stopped run).
            let factorOf (resume: bool) (s: float) (stopAt: (int * int) option) =
                asked.Clear()
                let result = ref (null: CholeskyFactor)
                let onGram (withGram: int -> int -> (torch.Tensor -> unit) -> unit) =
                    let counted i k f =
                        if Some (i, k) = stopAt then raise (OperationCanceledException "stopped")
                        asked.Add((i, k))
                        withGram i k (fun t ->
                            if not (gramTiles.ContainsKey((i, k))) then gramTiles.[(i, k)] <- t.clone().DetachFromDisposeScope()
                            f t)
                    result.Value <- CholeskyFactor.FromGram(engine, n, m + 1, counted, s, null, (if resume then gramFolder else null))
                let c = Tiled.certifyMatrix Certify.defaults { settings with OnCertifiedGram = onGram } subject phi
                Expect.equal c.Verdict Verdict.Certified "Gaussian Φ̃, m' > n: Certified"
                result.Value :?> TiledCholesky
            let tiles = (n + b - 1) / b
            let all = tiles * (tiles + 1) / 2
            let bitwise (u: CholeskyFactor) (v: CholeskyFactor) =
                let u, v = (u :?> TiledCholesky), (v :?> TiledCholesky)
                [ for i in 0 .. tiles - 1 do for k in 0 .. i -> i, k ]
                |> List.forall (fun (i, k) -> use x = u.Tile(i, k) in use y = v.Tile(i, k) in (use e = x.eq(y).all() in e.item<bool> ()))
            let reference = factorOf false shift None
            try
                Expect.equal asked.Count all "uninterrupted: every Gram tile once"
                let factorFolder = CholeskyFactor.ResumeFolder(gramFolder, shift, b)
                Expect.isFalse (Directory.Exists factorFolder) "not resumable: nothing in the kept folder"
                Expect.throwsT<OperationCanceledException> (fun () -> factorOf true shift (Some (3, 2)) |> ignore) "stopped at Gram tile (3, 2)"
                // columns 0 and 1 finished and tile (2, 2) of column 2
                let finished = tiles + (tiles - 1) + 1
                Expect.equal (Directory.GetFiles(factorFolder, "*.tile").Length) finished "the finished tiles' files stay"
                let resumed = factorOf true shift None
                try
                    Expect.equal resumed.TilesResumed finished "the finished tiles read back"
                    Expect.equal asked.Count (all - finished) "only the tiles it lacked asked of the Gram"
                    Expect.isTrue (bitwise resumed reference) "bit for bit the uninterrupted factor"
                finally resumed.Dispose()
                Expect.equal (Directory.GetFiles(factorFolder, "*.tile").Length) all "Dispose keeps the resumable tiles (they go with the kept folder)"
                // a finished factor's files (a run stopped or killed after it): read back whole, no Gram tile asked
                let complete = factorOf true shift None
                try
                    Expect.equal complete.TilesResumed all "every tile read back"
                    Expect.isEmpty asked "no Gram tile asked"
                    Expect.isTrue (bitwise complete reference) "bit for bit the uninterrupted factor"
                finally complete.Dispose()
                // one of them corrupted: formed again, same bits
                let victim = Path.Combine(factorFolder, "L-1-0.tile")
                flipByte victim (fun length -> length - 40)
                let again = factorOf true shift None
                try
                    Expect.equal again.TilesResumed (all - 1) "every tile but the corrupted one read back"
                    Expect.equal (List.ofSeq asked) [ (1, 0) ] "the corrupted tile formed again from its Gram tile"
                    Expect.isTrue (bitwise again reference) "bit for bit the uninterrupted factor"
                    // another shift: its own folder, nothing read back
                    let other = factorOf true (2.0 * shift) None
                    try Expect.equal other.TilesResumed 0 "another shift reads none of these tiles"
                    finally other.Dispose()
                    // another Gram (the kept folder's manifest names another run, e.g. another accumulation order): the tiles
                    // there are refused, every tile formed again
                    let manifest = Path.Combine(gramFolder, "manifest.txt")
                    let lines = File.ReadAllLines manifest
                    File.WriteAllLines(manifest, Array.append [| lines.[0]; "run another" |] lines.[2..])
                    Expect.equal (Tiled.manifestRunKey gramFolder) (Some "another") "the manifest's run key read back"
                    let foreign = CholeskyFactor.FromGram(engine, n, m + 1, (fun i k f -> f gramTiles.[(i, k)]), shift, null, gramFolder) :?> TiledCholesky
                    try
                        Expect.equal foreign.TilesResumed 0 "another Gram's run key: none of the tiles read back"
                        Expect.isTrue (bitwise foreign reference) "formed again: the same bits"
                    finally foreign.Dispose()
                finally again.Dispose()
            finally
                reference.Dispose()
                for t in gramTiles.Values do t.Dispose()
        }

        test "not positive definite in float64: null, for both storages; a bad tile size is refused naming it" {
            use phi = torch.ones([| 40L; 50L |], dtype = torch.float64)
            Expect.isNull (CholeskyFactor.Dense(phi, 0.0)) "rank 1: the dense Cholesky fails"
            Expect.isNull (CholeskyFactor.Tiled(phi, 0.0, 16, Int64.MaxValue, null)) "and the tiled one"
            let e = Expect.throwsC (fun () -> CholeskyFactor.Tiled(phi, 1.0, 0, Int64.MaxValue, null) |> ignore) id
            Expect.stringContains e.Message "tile size" "names the key"
        }
    ]

[<Tests>]
let engineTests =
    testSequenced <| testList "MathCore.CertificateEngine" [
        test "the choice: Dense never tiles, Tiled always, Auto tiles exactly when 32·n² exceeds the budget; bad settings are refused naming them" {
            Expect.isFalse (denseEngine.UsesTiled 100000) "dense"
            Expect.isTrue ((tiledEngine 16 null).UsesTiled 2) "tiled"
            let auto = { CertificateEngine.Default with MemoryBudgetBytes = 32L * 100L * 100L }
            Expect.isFalse (auto.UsesTiled 100) "32·100² fits"
            Expect.isTrue (auto.UsesTiled 101) "32·101² does not"
            for bad, key in [ { CertificateEngine.Default with TileSize = 0 }, "tile size"
                              { CertificateEngine.Default with MemoryBudgetBytes = 0L }, "memory budget"
                              { CertificateEngine.Default with Kind = enum<EngineKind> 7 }, "engine" ] do
                let e = Expect.throwsC (fun () -> bad.Validate "recipe") id
                Expect.stringContains e.Message key ("names " + key)
                let recipe = RecipeConfig.Default.WithCertificateEngine bad
                let e2 = Expect.throwsC (fun () -> TwoPhase.Validate(recipe, "recipe")) id
                Expect.stringContains e2.Message key ("the recipe refuses it: " + key)
        }

        test "CertificateEngine.Certify on the tiled engine (b = 16, n = 120): the dense verdict and bounds within the error terms; a run killed after 20 tiles resumes from its tile files, bitwise the uninterrupted certificate; the tile folder removed" {
            use g = new torch.Generator(5UL, torch.CPU)
            use phi = torch.randn([| 120L; 150L |], dtype = torch.float64, generator = g)
            let subject = MathCoreTests.Generators.subject phi true
            let dense = CertificateEngine.Certify(denseEngine, Certify.defaults, subject, phi, null)
            let fresh = CertificateEngine.Certify(tiledEngine 16 null, Certify.defaults, subject, phi, null)
            Expect.equal dense.Verdict Verdict.Certified "Gaussian 120 × 150: certified"
            Expect.stringContains fresh.Method "tiles" "the tiled engine ran"
            MathCoreTests.TiledTests.expectAgree "engine" dense fresh true
            use folder = new TempFolder()
            let engine = tiledEngine 16 folder.Path
            let settings, tileFolder = engine.Settings(CertificateEngine.SubjectKey subject, ignore)
            let killed = { settings with Progress = fun p -> if p.TilesDone >= 20 && p.Phase = "gram" then raise (OperationCanceledException "killed") }
            Expect.throwsT<OperationCanceledException> (fun () -> Tiled.certifyMatrix Certify.defaults killed subject phi |> ignore) "killed mid-Gram"
            Expect.isTrue (File.Exists(Path.Combine(tileFolder, "manifest.txt"))) "the killed run's tiles wait in the work directory"
            let log = Collections.Generic.List<string>()
            let resumed = CertificateEngine.Certify(engine, Certify.defaults, subject, phi, Action<string>(fun l -> log.Add l))
            let gramLine = log |> Seq.tryFind (fun l -> l.StartsWith "gram:")
            Expect.isSome gramLine (sprintf "the Gram phase reports: %A" log)
            let m = Text.RegularExpressions.Regex.Match(gramLine.Value, @"\((\d+) computed, (\d+) read back\)")
            Expect.isGreaterThanOrEqual (int m.Groups.[2].Value) 20 ("tiles read back: " + gramLine.Value)
            Expect.equal (resumed.Verdict, resumed.SigmaMinLower, resumed.SigmaMaxUpper, resumed.Terms)
                         (fresh.Verdict, fresh.SigmaMinLower, fresh.SigmaMaxUpper, fresh.Terms) "bitwise the uninterrupted tiled certificate"
            Expect.isFalse (Directory.Exists tileFolder) "tile folder removed once the certificate is made"
        }

        test "the orthogonal follow-up on the tiled engine (near-duplicate rows: the Gram route Inconclusive) is tried within the tile memory budget, as on the dense engine, and not above it, the reason naming the limit; in memory and from row blocks" {
            use phi = MathCoreTests.OrthogonalCertifyTests.nearDuplicate 15 1e-8
            let subject = MathCoreTests.Generators.subject phi true
            let needed = Certify.orthogonalBytes subject.Rows subject.Columns
            let dense = CertificateEngine.Certify(denseEngine, Certify.defaults, subject, phi, null)
            Expect.equal (dense.Verdict, dense.Route) (Verdict.Certified, CertificateRoute.Orthogonal) ("dense: " + dense.Reason)
            let rowBlock (b: int) = phi.narrow(0L, int64 (4 * b), int64 (min 4 (11 - 4 * b))).clone()
            for budget, tried in [ needed, true; needed - 1L, false ] do
                let engine = { tiledEngine 4 null with MemoryBudgetBytes = budget }
                let inMemory = CertificateEngine.Certify(engine, Certify.defaults, subject, phi, null)
                let blocks = CertificateEngine.CertifyRowBlocks(engine, Certify.defaults, subject, None, 4, 3, rowBlock, null)
                for what, c in [ "in memory", inMemory; "row blocks", blocks ] do
                    let info = sprintf "%s, budget %d (the route needs %d): %O %O: %s" what budget needed c.Verdict c.Route c.Reason
                    Expect.stringContains c.Method (if tried then "QR" else "tiles") info
                    if tried then
                        Expect.equal (c.Verdict, c.Route) (Verdict.Certified, CertificateRoute.Orthogonal) info
                    else
                        Expect.equal (c.Verdict, c.Route) (Verdict.Inconclusive, CertificateRoute.Gram) info
                        Expect.stringContains c.Reason "orthogonal route was not tried" info
                        Expect.stringContains c.Reason "tile memory budget" info
        }

        test "rf prove fc's certificate on the tiled engine (b = 16, n = 100): the dense verdict and bounds within the error terms" {
            let dense = ResearchFramework.Proofs.FullyConnected.runFcOn denseEngine ResearchFramework.Proofs.Network.Tanh 100 [ 3; 3; 120 ] 1
            let tiled = ResearchFramework.Proofs.FullyConnected.runFcOn (tiledEngine 16 null) ResearchFramework.Proofs.Network.Tanh 100 [ 3; 3; 120 ] 1
            Expect.equal (ResearchFramework.Proofs.FullyConnected.exitCode tiled) (ResearchFramework.Proofs.FullyConnected.exitCode dense) "same exit code"
            Expect.equal tiled.Certificate.Verdict Verdict.Certified "the witness is certified on tiles"
            Expect.stringContains tiled.Certificate.Method "tiles" "the tiled engine ran"
            MathCoreTests.TiledTests.expectAgree "prove fc" dense.Certificate tiled.Certificate true
        }
    ]

/// The built-in trainer's Theorem P run (n = 40 points in R³, a 3-6-56-2 tanh MLP at `precision`, frozen body, τ = 4,
/// T = 16, checkpoints every 4 steps) with its certificate engine `engineIn folder`: certified on tiles, k(ε) met, then
/// `afterRun folder progressLines trainer`; and a resume from every checkpoint is bit for bit (`afterResume` on each).
let private builtInTrainerResumes (precision: Precision) (engineIn: string -> CertificateEngine) (epsilon: float)
                                  (afterRun: string -> string list -> TwoPhaseTrainer -> unit) (afterResume: TwoPhaseTrainer -> unit) =
    let n = 40
    let data = Fixtures.regression 23 n 3 2 (if precision = Precision.Float32 then torch.float32 else torch.float64)
    let arch = Fixtures.mlp 3 [| 6; n + 16 |] 2 Activation.Tanh precision
    let cfg = Fixtures.training 23 n 16 OptimizerSpec.Sgd 0.05 LossKind.Squared
    use folder = new TempFolder()
    let rc = { (Fixtures.recipe 4 PhaseTwoMode.Frozen).WithCertificateEngine(engineIn folder.Path)
                 with ReadoutStep = ReadoutStepRule.Preconditioned; PreconditionedStep = 0.7; ReadoutRidge = 1e-3; PredictionEpsilon = epsilon }
    let dir = Path.Combine(folder.Path, "checkpoints")
    let progress = ProgressRecorder()
    use trainer = new TwoPhaseTrainer(arch, { cfg with CheckpointEvery = 4; CheckpointDirectory = dir }, Some rc, data, progress)
    let full = trainer.Run Threading.CancellationToken.None
    Expect.isTrue full.GuaranteeClaimed "certified switch"
    Expect.stringContains (Array.last full.Certificates).Method "tiles" "on tiles"
    let p = trainer.State.Preconditioner
    Expect.isTrue (p.AchievedAfter >= 0 && p.AchievedAfter <= p.PredictedSteps) (sprintf "met: %d ≤ %d" p.AchievedAfter p.PredictedSteps)
    afterRun folder.Path (List.ofSeq progress.Lines) trainer
    let checkpoints = Directory.GetFiles(dir, "checkpoint-*.bin")
    Expect.equal checkpoints.Length 4 "checkpoints at 4 (the switch's iteration), 8, 12, 16"
    for path in checkpoints do
        use resumed = new TwoPhaseTrainer(arch, cfg, Some rc, data, NullObserver())
        resumed.LoadCheckpoint path
        let r = resumed.Run Threading.CancellationToken.None
        Invariants.bitIdentical full r |> Fixtures.expectOk ("resume from " + Path.GetFileName path)
        Expect.equal resumed.State.Preconditioner.AchievedAfter p.AchievedAfter "measurements survive"
        afterResume resumed

[<Tests>]
let recipeTests =
    testSequenced <| testList "Algorithm.TiledEngine" [
        test "the trainer's switch on the tiled engine (b = 16, n = 100): Phase I bitwise the dense run's, the dense verdict and bounds within the error terms, no tile folder left" {
            let n = 100
            let data = Fixtures.regression 31 n inputDim 2 torch.float64
            let arch = Fixtures.mlp inputDim [| 64; n + 30 |] 2 Activation.Tanh Precision.Float64
            let cfg = Fixtures.training 31 n 5 OptimizerSpec.Sgd 0.05 LossKind.Squared
            use folder = new TempFolder()
            let runOn engine = Fixtures.run arch cfg (Some ((Fixtures.recipe 3 PhaseTwoMode.Damped).WithCertificateEngine engine)) data
            let (rd, _), (rt, _) = runOn denseEngine, runOn (tiledEngine 16 folder.Path)
            Expect.isTrue (rd.GuaranteeClaimed && rt.GuaranteeClaimed) "both certified at τ"
            for i in 0 .. 2 do
                Expect.equal rt.Steps.[i].ParameterFingerprint rd.Steps.[i].ParameterFingerprint (sprintf "Phase I step %d bitwise" i)
            let d, t = Array.last rd.Certificates, Array.last rt.Certificates
            Expect.stringContains t.Method "tiles" "the switch ran on tiles"
            Expect.isFalse (d.Method.Contains "tiles") "the dense run did not"
            MathCoreTests.TiledTests.expectAgree "switch" d t true
            Expect.isEmpty (Directory.GetDirectories(folder.Path, "certificate-*")) "the switch's tile folder removed once certified"
            // An observer that also implements IProgressObserver hears the tiled engine's progress at the switch.
            let progress = ProgressRecorder()
            use trainer = new TwoPhaseTrainer(arch, cfg, Some ((Fixtures.recipe 3 PhaseTwoMode.Damped).WithCertificateEngine(tiledEngine 16 folder.Path)), data, progress)
            trainer.Run System.Threading.CancellationToken.None |> ignore
            Expect.exists progress.Lines (fun l -> l.Contains "tiles: gram") (sprintf "the switch's tile progress reached the observer (%d lines: %A)" progress.Lines.Count (List.ofSeq progress.Lines))
        }

        test "a stop request inside the switch's tiled certificate (CertificateEngine.Cancel) ends it between two tiles, its tiles kept; the same run started again continues from them and ends bit for bit as an uninterrupted one" {
            let n = 100
            let data = Fixtures.regression 31 n inputDim 2 torch.float64
            let arch = Fixtures.mlp inputDim [| 64; n + 30 |] 2 Activation.Tanh Precision.Float64
            let cfg = Fixtures.training 31 n 5 OptimizerSpec.Sgd 0.05 LossKind.Squared
            use folder = new TempFolder()
            let recipeOn engine = Some ((Fixtures.recipe 3 PhaseTwoMode.Damped).WithCertificateEngine engine)
            let uninterrupted, _ = Fixtures.run arch cfg (recipeOn (tiledEngine 16 (Path.Combine(folder.Path, "reference")))) data
            let tiles = Path.Combine(folder.Path, "stopped")
            use stop = new Threading.CancellationTokenSource()
            stop.Cancel()
            do
                use trainer = new TwoPhaseTrainer(arch, cfg, recipeOn ((tiledEngine 16 tiles).WithCancel stop.Token), data, NullObserver())
                Expect.throwsT<OperationCanceledException> (fun () -> trainer.Run Threading.CancellationToken.None |> ignore) "the certificate stops"
                Expect.equal trainer.Iteration 3 "stopped at τ, before the switch"
                Expect.isTrue trainer.Model.training "back in training mode, as before the switch"
                use before = new TwoPhaseTrainer(arch, cfg, recipeOn (tiledEngine 16 (Path.Combine(folder.Path, "unused"))), data, NullObserver())
                before.RunTo 3
                Expect.equal trainer.BodyFingerprint before.BodyFingerprint "the body as at τ before the switch"
            let kept = Directory.GetFiles(tiles, "G-*.tile", SearchOption.AllDirectories)
            Expect.isNonEmpty kept "the finished Gram tile is kept in its file"
            let progress = ProgressRecorder()
            use again = new TwoPhaseTrainer(arch, cfg, recipeOn (tiledEngine 16 tiles), data, progress)
            let resumed = again.Run Threading.CancellationToken.None
            Invariants.bitIdentical uninterrupted resumed |> Fixtures.expectOk "started again after the stop"
            Expect.exists progress.Lines (fun l -> l.Contains "gram" && l.Contains "read back") (sprintf "the kept tile read back, not recomputed (%A)" (List.ofSeq progress.Lines))
        }

        testPropertyWithConfig (Seeds.config 2) "Theorem P on a tiled factor (b = 32, n = 120): contracts by exactly (1 − η_P) per step (MathNet primal oracle), meets k(ε), and stays within σ̄·(‖r_t‖ + ‖r_d‖)/(σ_τ² + nλ) of the dense factor's trajectory" <| fun (seed: int) ->
            let rng = Random seed
            let eta = [| 0.5; 0.8 |].[rng.Next 2]
            let ridge = [| 0.0; 1e-3 |].[rng.Next 2]
            let n, epsilon = 120, 1e-8
            let k = TwoPhase.PredictedSteps(eta, epsilon)
            use folder = new TempFolder()
            let t = preconditionedRun (tiledEngine 32 folder.Path) inputDim seed n eta ridge epsilon (k + 2)
            let d = preconditionedRun denseEngine inputDim seed n eta ridge epsilon (k + 2)
            try
                Expect.equal t.Final.Phase Phase.PhaseTwo "EC certified on tiles"
                let p, q = t.Final.Preconditioner, d.Final.Preconditioner
                Expect.isTrue p.Factor.IsTiled "the factor of G_τ + nλI is tiled, as the switch's certificate"
                Expect.isFalse q.Factor.IsTiled "the dense run's is dense"
                // P1 against the primal normal equations (MathNet), as for the dense factor
                let nf = float n
                let hNorm (m: Matrix<float>) = sqrt ((t.Phi * m).FrobeniusNorm() ** 2.0 / nf + ridge * m.FrobeniusNorm() ** 2.0)
                let wStar =
                    if ridge > 0.0 then
                        (t.Phi.TransposeThisAndMultiply(t.Phi) / nf + Matrix<float>.Build.DenseIdentity(t.Phi.ColumnCount) * ridge).Solve(t.Phi.TransposeThisAndMultiply(t.Z) / nf)
                    else t.Phi.PseudoInverse() * t.Z
                let e0 = hNorm (wStar * -1.0)
                let errors = t.Trajectory |> List.map (fun w -> hNorm (w - wStar))
                // (P1) in H-norm: |‖E_{t+1}‖_H − (1 − η)‖E_t‖_H| ≤ √2·e_t, e_t ≤ the run's max ratio·η·g_τ (rigorous);
                // 1e-9·e0 for the oracle's own float64 W*
                let slack = sqrt 2.0 * p.MaxPerturbationRatio * eta * sqrt p.InitialGapLower + 1e-9 * e0
                for i, e in List.indexed errors do
                    let before = if i = 0 then e0 else errors.[i - 1]
                    Expect.isLessThanOrEqual e ((1.0 - eta) * before + slack) (sprintf "step %d: ‖e_{t+1}‖_H ≤ (1 − η)‖e_t‖_H (η = %g, λ = %g)" i eta ridge)
                    Expect.isGreaterThanOrEqual e ((1.0 - eta) * before - slack) "and not faster: exactly (1 − η)"
                Expect.isTrue p.HypothesisHeld (sprintf "(P1)'s perturbation stays below its threshold (max ratio %g)" p.MaxPerturbationRatio)
                Expect.isTrue (p.AchievedAfter >= 0 && p.AchievedAfter <= k) (sprintf "k(ε) = %d met (%d)" k p.AchievedAfter)
                Expect.equal p.PredictedSteps q.PredictedSteps "the same prediction"
                // dense vs tiled: ΔA ≤ (‖r_t‖ + ‖r_d‖)/λ_min(M), λ_min(M) ≥ σ_τ² + nλ; ΔW_t ≤ σ̄·ΔA (a convex combination of Φ̃ᵀΔA)
                let sigmaMin = min t.Final.SigmaTau d.Final.SigmaTau
                let sigmaMax = max t.Final.ReadoutSigmaMaxUpper d.Final.ReadoutSigmaMaxUpper
                let wScale = d.Trajectory |> List.map (fun w -> w.FrobeniusNorm()) |> List.max
                let tol = sigmaMax * (p.FrozenResidualNorm + q.FrozenResidualNorm) / (sigmaMin * sigmaMin + nf * ridge) + 1e-12 * wScale
                List.zip t.Trajectory d.Trajectory
                |> List.iteri (fun i (wt, wd) ->
                    Expect.isLessThanOrEqual ((wt - wd).FrobeniusNorm()) tol (sprintf "step %d: tiled vs dense W within %g" i tol))
            finally
                TwoPhase.Dispose(t.Setup, t.Final)
                TwoPhase.Dispose(d.Setup, d.Final)
            Expect.isEmpty (Directory.GetDirectories(folder.Path, "*", SearchOption.AllDirectories) |> Array.filter (fun f -> Directory.GetFiles(f).Length > 0)) "no tile file left after Dispose"

        test "ill-conditioned (inputs in R³, λ = 0, b = 32, n = 120): the tiled solve's residual is far from rounding level, and (P1) holds at every step with exactly the run's own rigorous e_t" {
            let n, eta = 120, 0.5
            let t = preconditionedRun (tiledEngine 32 null) 3 17 n eta 0.0 1e-8 12
            try
                Expect.equal t.Final.Phase Phase.PhaseTwo "EC certified on tiles"
                let p = t.Final.Preconditioner
                let nf = float n
                let hNorm (m: Matrix<float>) = sqrt ((t.Phi * m).FrobeniusNorm() ** 2.0 / nf)
                let wStar = t.Phi.PseudoInverse() * t.Z
                let e0 = hNorm (wStar * -1.0)
                Expect.isGreaterThan (p.FrozenResidualNorm / sqrt nf) (1e-9 * e0) "the solve's residual matters here (else this test checks nothing the well-conditioned one does not)"
                let slack = sqrt 2.0 * p.MaxPerturbationRatio * eta * sqrt p.InitialGapLower
                let errors = t.Trajectory |> List.map (fun w -> hNorm (w - wStar))
                for i, e in List.indexed errors do
                    let before = if i = 0 then e0 else errors.[i - 1]
                    Expect.isLessThanOrEqual (abs (e - (1.0 - eta) * before)) (slack + 1e-12 * e0)
                        (sprintf "step %d: |‖E_{t+1}‖_H − (1 − η)‖E_t‖_H| = %g ≤ √2·max e_t = %g" i (abs (e - (1.0 - eta) * before)) slack)
            finally TwoPhase.Dispose(t.Setup, t.Final)
        }

        test "negative control: a wrong solve on the tiled factor (A from G + 1.5nλI, not G + nλI) is accounted for by e_t's residual term: (P1) holds with the run's e_t, and the hypothesis is reported failed" {
            let n, eta, ridge = 120, 0.5, 1e-3
            let t = preconditionedRun (tiledEngine 32 null) inputDim 29 n eta ridge 1e-8 1
            let p = t.Final.Preconditioner
            let nf = float n
            // the wrong A and its true residual r = Z − (G + nλI)A (MathNet), ‖r‖ given to the run as its bound
            let wrongFactor = (use phi = p.FrozenFeatures.Joined() in CholeskyFactor.Tiled(phi, 1.5 * nf * ridge, 32, Int64.MaxValue, null))
            let aWrong = (use z = p.FrozenTargets.clone() in wrongFactor.Solve z)
            wrongFactor.Dispose()
            let r, _ = residualNorm t.Phi (nf * ridge) t.Z (matrixOf aWrong)
            let injected = PreconditionedReadout(p.Factor, p.Step, p.Ridge, p.Epsilon, -1, p.FrozenFeatures, aWrong, p.FrozenTargets,
                                                 r * (1.0 + 1e-6), nan, nan, -1, true, 0.0, 0)
            let mutable state = { t.Final with Preconditioner = injected }
            let x = t.Setup.Certification.Inputs
            let readoutW (s: RecipeState) = PreconditionedTests.readoutW s.Readout
            let trajectory = ResizeArray [ readoutW state ]
            try
                for _ in 1 .. 6 do
                    state <- (TwoPhase.Step(t.Setup, state, 0.05, fun forward -> Losses.value LossKind.Squared (forward.Invoke x) t.Setup.Targets)).State
                    trajectory.Add(readoutW state)
                let q = state.Preconditioner
                let hNorm (m: Matrix<float>) = sqrt ((t.Phi * m).FrobeniusNorm() ** 2.0 / nf + ridge * m.FrobeniusNorm() ** 2.0)
                let wStar = (t.Phi.TransposeThisAndMultiply(t.Phi) / nf + Matrix<float>.Build.DenseIdentity(t.Phi.ColumnCount) * ridge).Solve(t.Phi.TransposeThisAndMultiply(t.Z) / nf)
                let errors = trajectory |> Seq.map (fun w -> hNorm (w - wStar)) |> List.ofSeq
                let slack = sqrt 2.0 * q.MaxPerturbationRatio * eta * sqrt q.InitialGapLower
                let deviations = List.pairwise errors |> List.map (fun (before, e) -> abs (e - (1.0 - eta) * before))
                Expect.isGreaterThan (List.max deviations) (1e-6 * errors.Head) "the wrong solve visibly breaks the exact (1 − η) contraction"
                for i, dev in List.indexed deviations do
                    Expect.isLessThanOrEqual dev (slack * (1.0 + 1e-9) + 1e-12 * errors.Head) (sprintf "step %d: deviation %g within √2·max e_t = %g" i dev slack)
                Expect.isFalse q.HypothesisHeld "the run says its hypothesis failed"
            finally TwoPhase.Dispose(t.Setup, state)
        }

        test "the built-in trainer, Theorem P on a tiled factor (b = 16, n = 40): k(ε) met, the switch's and the factor's tile progress reach the observer, and resuming from every checkpoint (before and after the tiled switch) is bit for bit" {
            builtInTrainerResumes Precision.Float64 (fun folder -> tiledEngine 16 (Path.Combine(folder, "tiles"))) 1e-10
                (fun _ progress trainer ->
                    for phase in [ "tiles: gram"; "tiles: factor" ] do
                        Expect.exists progress (fun l -> l.StartsWith phase) (sprintf "%s… reached the observer (%A)" phase progress)
                    Expect.isTrue trainer.State.Preconditioner.Factor.IsTiled "tiled factor")
                (fun resumed -> Expect.isTrue resumed.State.Preconditioner.Factor.IsTiled "the rebuilt factor is tiled")
        }

        test "streamed Φ̃ (budget 64 KB: Φ̃_τ of 120 × 141 float64 exceeds half of it): the switch certifies from row blocks, Φ̃_τ lives in row-block files, and Theorem P contracts by exactly (1 − η_P), meets k(ε) and stays within σ̄·(‖r_s‖ + ‖r_m‖)/σ_τ² of the in-memory run; no file left" {
            let n, eta, epsilon = 120, 0.5, 1e-8
            let k = TwoPhase.PredictedSteps(eta, epsilon)
            use folder = new TempFolder()
            let streamedEngine = { tiledEngine 32 (Path.Combine(folder.Path, "streamed")) with MemoryBudgetBytes = 64L <<< 10 }
            let s = preconditionedRun streamedEngine inputDim 5 n eta 0.0 epsilon (k + 2)
            let m = preconditionedRun (tiledEngine 32 (Path.Combine(folder.Path, "memory"))) inputDim 5 n eta 0.0 epsilon (k + 2)
            try
                Expect.isTrue (TwoPhase.StreamsFeatures s.Setup) "the streamed run streams"
                Expect.isFalse (TwoPhase.StreamsFeatures m.Setup) "the other does not"
                Expect.equal s.Final.Phase Phase.PhaseTwo "EC certified from row blocks"
                Expect.stringContains (Array.last s.Final.Certificates).Method "tiles" "on tiles"
                let p, q = s.Final.Preconditioner, m.Final.Preconditioner
                Expect.equal p.FrozenFeatures.BlockCount 4 "Φ̃_τ in blocks of the tile size"
                Expect.equal p.FrozenFeatures.BlocksInFiles 3 "the three full blocks (36 KB each) beyond the features' 32 KB in files; the last (24 rows, 27 KB) in memory"
                Expect.equal q.FrozenFeatures.BlockCount 1 "in memory: one block"
                Expect.isTrue p.Factor.IsTiled "tiled factor"
                Expect.isGreaterThan (p.Factor :?> TiledCholesky).TilesInFiles 0 "factor tiles beyond the budget in files"
                // the same certified verdict; the bounds of the same Φ̃ up to the forward passes' batching
                Expect.floatClose { absolute = 0.0; relative = 1e-6 } s.Final.SigmaTau m.Final.SigmaTau "σ_min bounds agree"
                let nf = float n
                let hNorm (w: Matrix<float>) = (s.Phi * w).FrobeniusNorm() / sqrt nf
                let wStar = s.Phi.PseudoInverse() * s.Z
                let e0 = hNorm (wStar * -1.0)
                let errors = s.Trajectory |> List.map (fun w -> hNorm (w - wStar))
                let slack = sqrt 2.0 * p.MaxPerturbationRatio * eta * sqrt p.InitialGapLower + 1e-9 * e0
                for i, e in List.indexed errors do
                    let before = if i = 0 then e0 else errors.[i - 1]
                    Expect.isLessThanOrEqual e ((1.0 - eta) * before + slack) (sprintf "step %d: ‖e_{t+1}‖_H ≤ (1 − η)‖e_t‖_H" i)
                    Expect.isGreaterThanOrEqual e ((1.0 - eta) * before - slack) "and not faster: exactly (1 − η)"
                Expect.isTrue p.HypothesisHeld (sprintf "(P1)'s perturbation below its threshold (max ratio %g)" p.MaxPerturbationRatio)
                Expect.isTrue (p.AchievedAfter >= 0 && p.AchievedAfter <= k) (sprintf "k(ε) = %d met (%d)" k p.AchievedAfter)
                let sigmaMin = min s.Final.SigmaTau m.Final.SigmaTau
                let sigmaMax = max s.Final.ReadoutSigmaMaxUpper m.Final.ReadoutSigmaMaxUpper
                let wScale = m.Trajectory |> List.map (fun w -> w.FrobeniusNorm()) |> List.max
                let tol = sigmaMax * (p.FrozenResidualNorm + q.FrozenResidualNorm) / (sigmaMin * sigmaMin) + 1e-9 * wScale
                List.zip s.Trajectory m.Trajectory
                |> List.iteri (fun i (ws, wm) ->
                    Expect.isLessThanOrEqual ((ws - wm).FrobeniusNorm()) tol (sprintf "step %d: streamed vs in-memory W within %g" i tol))
                Expect.isNonEmpty (Directory.GetFiles(Path.Combine(folder.Path, "streamed"), "G-*.tile", SearchOption.AllDirectories))
                    "the switch certificate's Gram tiles kept for a resume (KeepsSwitchTiles)"
            finally
                TwoPhase.ReleaseKeptTiles(s.Setup, s.Final) |> ignore
                TwoPhase.Dispose(s.Setup, s.Final)
                TwoPhase.Dispose(m.Setup, m.Final)
            Expect.isEmpty (Directory.GetFiles(folder.Path, "*", SearchOption.AllDirectories)) "no tile or row file left after ReleaseKeptTiles and Dispose"
        }

        test "streamed Φ̃ with a damped body (Theorem P needs Φ̃_t whole at every step): the switch refuses, naming Recipe:Mode = frozen" {
            let n = 120
            use g = new torch.Generator(13UL, torch.CPU)
            let x = torch.randn([| int64 n; int64 inputDim |], dtype = torch.float64, generator = g)
            let y = torch.randn([| int64 n; 2L |], dtype = torch.float64, generator = g)
            use folder = new TempFolder()
            let engine = { tiledEngine 32 folder.Path with MemoryBudgetBytes = 64L <<< 10 }
            let recipe = { RecipeConfig.Default.WithSwitchIteration(2).WithPreconditionedReadout(0.5, 0.0, 1e-6).WithCertificateEngine(engine)
                             with Mode = PhaseTwoMode.Damped }
            let e = Expect.throwsC (fun () -> PreconditionedTests.preconditionedRunOf recipe (wideNetwork 3 inputDim (n + 20)) x y n 2 |> ignore) id
            Expect.stringContains e.Message "Recipe:Mode = frozen" "names the way out"
        }

        test "streamed Φ̃ of a float32 network in the built-in trainer (n = 40, budget 8 KB): certified from row blocks, k(ε) met, a resume from every checkpoint bit for bit, no row file left" {
            // Gram products of 16 columns: m = 56 spans four, so the rows' factor matches the certificate's only in its order
            let engineIn folder = { tiledEngine 16 (Path.Combine(folder, "tiles")) with MemoryBudgetBytes = 8L <<< 10; GramChunkColumns = 16 }
            builtInTrainerResumes Precision.Float32 engineIn 1e-6
                (fun folder progress trainer ->
                    Expect.exists progress (fun l -> l.StartsWith "feature rows: block") (sprintf "the rows' progress reached the observer (%A)" progress)
                    Expect.exists progress (fun l -> l.Contains "from the certificate's Gram tiles") "Theorem P's factor from the switch certificate's Gram (no second Gram); the resumes form it from the rows, bit for bit"
                    Expect.isGreaterThan trainer.State.Preconditioner.FrozenFeatures.BlocksInFiles 0 "Φ̃_τ's rows in files"
                    // the rows' files lived in the switch certificate's kept folder, removed with it when the run completed
                    // (their float32 size: "streamed Φ̃, killed after the switch", where they stay)
                    Expect.isEmpty (Directory.GetFiles(Path.Combine(folder, "tiles"), "rows-*.tile", SearchOption.AllDirectories))
                        "a completed run leaves no row files")
                ignore
        }

        test "streamed Φ̃, killed after the switch (n = 40, budget 8 KB): the switch's Gram tiles stay, a resume forms Theorem P's factor from them (no second Gram) and reads the feature rows, A_τ and its products back (no forward passes, no solve; rows stored as float32) bit for bit, a corrupted rows file or a missing outputs file is produced again, a corrupted tile falls back to the rows bit for bit, and a completed run removes them" {
            let n = 40
            let data = Fixtures.regression 23 n 3 2 torch.float32
            let arch = Fixtures.mlp 3 [| 6; n + 16 |] 2 Activation.Tanh Precision.Float32
            let cfg = Fixtures.training 23 n 16 OptimizerSpec.Sgd 0.05 LossKind.Squared
            use folder = new TempFolder()
            let tiles = Path.Combine(folder.Path, "tiles")
            let engine = { tiledEngine 16 tiles with MemoryBudgetBytes = 8L <<< 10; GramChunkColumns = 16 }
            let rc = { (Fixtures.recipe 4 PhaseTwoMode.Frozen).WithCertificateEngine(engine)
                         with ReadoutStep = ReadoutStepRule.Preconditioned; PreconditionedStep = 0.7; ReadoutRidge = 1e-3; PredictionEpsilon = 1e-6 }
            let dir = Path.Combine(folder.Path, "checkpoints")
            let checkpoint t = Path.Combine(dir, Checkpoint.fileName t)
            let gramFiles () = Directory.GetFiles(tiles, "G-*.tile", SearchOption.AllDirectories)
            // the uninterrupted run, stopped at T without completing (as a killed process leaves it)
            use killed = new TwoPhaseTrainer(arch, { cfg with CheckpointEvery = 4; CheckpointDirectory = dir }, Some rc, data, NullObserver())
            killed.RunTo 16
            let full = killed.Result true
            Expect.isTrue full.GuaranteeClaimed "certified switch"
            Expect.isTrue (TwoPhase.StreamsFeatures killed.Setup) "Φ̃ streamed"
            Expect.isNonEmpty (gramFiles ()) "the switch certificate's Gram tiles kept"
            let resumeFrom t =
                let progress = ProgressRecorder()
                let resumed = new TwoPhaseTrainer(arch, cfg, Some rc, data, progress)
                resumed.LoadCheckpoint(checkpoint t)
                resumed.RunTo 16
                Invariants.bitIdentical full (resumed.Result true) |> Fixtures.expectOk (sprintf "resume from %d" t)
                // the measurements too, bit for bit: the bound on ‖r_τ‖ (read back or computed again) and every recorded gap
                let p, q = killed.State.Preconditioner, resumed.State.Preconditioner
                Expect.equal (BitConverter.DoubleToInt64Bits q.FrozenResidualNorm) (BitConverter.DoubleToInt64Bits p.FrozenResidualNorm) (sprintf "‖r_τ‖ bound after a resume from %d" t)
                Expect.equal q.ProgressText p.ProgressText (sprintf "the measurements after a resume from %d" t)
                Expect.isTrue (use same = q.FrozenSolution.eq(p.FrozenSolution).all() in same.item<bool> ()) (sprintf "A_τ after a resume from %d" t)
                resumed, List.ofSeq progress.Lines
            let resumed, lines = resumeFrom 12
            (resumed :> IDisposable).Dispose()
            Expect.exists lines (fun l -> l.Contains "Gram tiles kept in") (sprintf "the factor from the kept Gram tiles (%A)" lines)
            Expect.isFalse (lines |> List.exists (fun l -> l.Contains "formed from the rows")) "no second Gram"
            Expect.exists lines (fun l -> l.Contains "A_τ, its products and the bounds on ‖r_τ‖ and ‖Φ̃‖_F read back") (sprintf "A_τ, its memo and the bounds read back, no solve, no pass (%A)" lines)
            // the feature rows: the blocks in files read back (verified), not produced by forward passes again
            let rowsLine (ls: string list) =
                let last = ls |> List.filter (fun l -> l.Contains "feature rows: block") |> List.last
                let m = Text.RegularExpressions.Regex.Match(last, @"\((\d+) in files, (\d+) read back")
                int m.Groups.[1].Value, int m.Groups.[2].Value
            let inFiles, readBack = rowsLine lines
            Expect.isGreaterThan inFiles 0 "some row blocks in files (budget 4 KB)"
            Expect.equal readBack inFiles "every row block in a file read back from the stopped run"
            // a corrupted rows file and a missing outputs file (another block): those two blocks produced again, bit for bit
            let rowFiles = Directory.GetFiles(tiles, "rows-*.tile", SearchOption.AllDirectories) |> Array.sort
            let outputFiles = Directory.GetFiles(tiles, "outputs-*.tile", SearchOption.AllDirectories) |> Array.sort
            Expect.equal rowFiles.Length inFiles "one file per block beyond the budget"
            for f in rowFiles do
                Expect.stringContains f "certificate-" "in the switch certificate's kept folder"
                // 16 rows × m' = 57 columns: 3,648 bytes as float32, 7,296 as float64, plus a header under 512
                Expect.isLessThan (FileInfo(f).Length) (16L * 57L * 4L + 512L) (sprintf "%s holds float32 values" (Path.GetFileName f))
            flipByte rowFiles.[0] (fun length -> length - 40)
            File.Delete(outputFiles |> Array.find (fun f -> Path.GetFileName f = Path.GetFileName(rowFiles.[1]).Replace("rows-", "outputs-")))
            let partly, partlyLines = resumeFrom 12
            (partly :> IDisposable).Dispose()
            Expect.equal (rowsLine partlyLines) (inFiles, inFiles - 2) "the two bad blocks produced again, the others read back"
            // after the first resume's Dispose (a graceful stop's): its factor tiles stayed and are read back, no Gram asked
            Expect.exists partlyLines (fun l -> l.Contains "tiles read back from") (sprintf "the factor read back after a Dispose (%A)" partlyLines)
            // the factor's own tiles stayed (read back by the resumes); without them the factor needs the Gram tiles again
            Expect.exists lines (fun l -> l.Contains "tiles read back from") (sprintf "the resume read the factor's tiles back (%A)" lines)
            for d in Directory.GetDirectories(tiles, "factor-*", SearchOption.AllDirectories) do Directory.Delete(d, true)
            // a corrupted tile: refused on its checksum, the factor formed from the rows, the same bits
            let victim = gramFiles () |> Array.sort |> Array.last
            flipByte victim (fun length -> length / 2)
            let resumed, lines = resumeFrom 8
            Expect.exists lines (fun l -> l.Contains "could not be used") (sprintf "the refused tile is said (%A)" lines)
            Expect.exists lines (fun l -> l.Contains "formed from the rows") "and the factor formed from the rows"
            // the refused tile left the manifest: the next resume finds the set incomplete and says so before reading any
            let again, againLines = resumeFrom 12
            (again :> IDisposable).Dispose()
            Expect.exists againLines (fun l -> l.Contains "no complete set") (sprintf "an incomplete set is not read (%A)" againLines)
            Expect.isFalse (againLines |> List.exists (fun l -> l.Contains "could not be used")) "no tile read"
            // completing the run removes the kept tiles
            resumed.Run Threading.CancellationToken.None |> ignore
            (resumed :> IDisposable).Dispose()
            Expect.isEmpty (Directory.GetDirectories(tiles, "certificate-*")) "a completed run leaves no certificate folder"
        }
    ]
