/// The Cholesky factorisation in a fixed blocked order (docs/theory.md §3 "Blocked accumulation", "Tile Cholesky",
/// "Tile Cholesky in panels"): one step of the left-looking tile Cholesky worked in column panels (`step`), the
/// constant h of its componentwise backward error γ_h·|L̂||L̂ᵀ| (`depth`), and the whole factorisation of one matrix
/// held in memory (`factorInPlace`, the dense certificate's). The tiled engine (`Tiled`), Theorem P's tiled factor
/// (`CertificateEngine`) and the dense route (`Certify`) share it.
module ResearchFramework.MathCore.TileCholesky

open TorchSharp

/// s: the width of the column panels the tile Cholesky works in (`step`): the panel setting when it is
/// between 1 and the tile size b, else b (whole tiles).
let panelWidth (b: int) (panel: int) : int = if panel <= 0 || panel >= b then b else panel

/// h of the tile Cholesky's componentwise backward error |ΔA| ≤ γ_h·|L̂||L̂ᵀ| (docs/theory.md §3 "Blocked
/// accumulation"), for n rows in tiles of b (T = ⌈n/b⌉) worked in column panels of s = `panelWidth b panel`, as
/// `step` orders the work (every update of one panel's columns formed apart, subtracted in order; potrf/trsm
/// on an s × s diagonal block in any order). With P = Σ_J ⌈b_J/s⌉ panels in all, Lemma 8.4's counts (a term's
/// roundings before it meets ã's path plus ã's roundings below that point; ã's whole path with the division or the
/// square root) are ≤ s + P; the plain depth of any path is ≤ 2s + P. Demmel's any-order γ_{n+1} also holds, so
/// h = min(n + 1, 2s + P + 1): conservative by s + 1. Whole tiles (s = b): P = T, h = min(n + 1, 2b + T + 1).
let depth (n: int) (b: int) (panel: int) : int =
    let s = panelWidth b panel
    let tiles = (n + b - 1) / b
    let panels = Seq.sum (seq { for t in 0 .. tiles - 1 -> (min b (n - t * b) + s - 1) / s })
    int (min (int64 n + 1L) (2L * int64 s + int64 panels + 1L))

let private columnsOf (t: torch.Tensor) (p: int) (w: int) = t.narrow(1L, int64 p, int64 w)

/// target −= Σ_q left[:, q]·right[:, q]ᵀ over the earlier panels (q, w_q) in order, each product formed apart in
/// `buffer` (β = 0, no zero fill) and subtracted: the in-tile update of one panel, on the diagonal tile (left: the
/// tile's rows from the panel down; right: the panel's rows of the tile) and below it (left: the tile; right: the
/// panel's rows of L_kk).
let private subtractEarlierPanels (panels: (int * int) list) (buffer: torch.Tensor) (target: torch.Tensor) (left: torch.Tensor) (right: torch.Tensor) =
    for q, wq in panels do
        use lq = columnsOf left q wq
        use rq = columnsOf right q wq
        use rowsOfBuffer = buffer.narrow(0L, 0L, target.shape.[0])
        use u = rowsOfBuffer.narrow(1L, 0L, target.shape.[1])
        NativeBlas.gemmNT 1.0 lq rq 0.0 u
        target.sub_(u) |> ignore

/// Step (i, k), i ≥ k, of the left-looking tile Cholesky (PLASMA/SLATE kernels; docs/theory.md §3 "Tiles"), worked
/// in column panels of s columns (`panelWidth b panel`, the same s for every tile; s ≤ 0: whole tiles):
/// A_ik ← Ã_ik − Σ_{j<k} Σ_p L_ij[:, p]·L_kj[:, p]ᵀ (each panel p's product formed apart, syrk for i = k, gemm below,
/// subtracted in order), then inside the tile, panel by panel (left-looking): for i = k, A[r ≥ p, p] −= L[r ≥ p, q]·L[p, q]ᵀ
/// for each earlier panel q (formed apart, subtracted in order), potrf of the s × s block A[p, p], trsm of the rows below
/// it (strict upper triangle of the tile zeroed at the end); for i > k, X[:, p] = (A[:, p] − Σ_{q<p} X[:, q]·L_kk[p, q]ᵀ)
/// ·L_kk[p, p]⁻ᵀ, giving L_ik = A_ik·L_kk⁻ᵀ. With s ≥ b this is one panel: whole-tile updates, potrf or trsm of the
/// tile. `withFactor i j f` runs f on the finished L_ij. In place in `a` (which holds Ã_ik). False when a pivot fails
/// (not positive definite in floating point). Shared by the certificate's factorisations and Theorem P's factor
/// (`CertificateEngine.TiledCholesky`, whole tiles), and the dense route's (one tile: `factorInPlace`).
let step (s: int) (withFactor: int -> int -> (torch.Tensor -> unit) -> unit) (i: int) (k: int) (a: torch.Tensor) : bool =
    let rows = int a.shape.[0]
    let cols = int a.shape.[1]
    let whole (width: int) = s <= 0 || s >= width
    let panelsOf (width: int) = if whole width then [ 0, width ] else [ for p in 0 .. s .. width - 1 -> p, min s (width - p) ]
    if k > 0 then
        // Each update L_ij[:, p]·L_kj[:, p]ᵀ is formed apart (β = 0) and subtracted from the tile: the order
        // `depth` counts (a β = 1 update would let the BLAS put the tile's running value anywhere in its sum).
        use update = torch.zeros_like(a)
        for j in 0 .. k - 1 do
            withFactor i j (fun lij ->
                let apply (lkj: torch.Tensor) =
                    for p, w in panelsOf (int lij.shape.[1]) do
                        use x = columnsOf lij p w
                        if i = k then NativeBlas.syrkLower 1.0 x 0.0 update
                        else (use y = columnsOf lkj p w in NativeBlas.gemmNT 1.0 x y 0.0 update)
                        a.sub_(update) |> ignore
                if i = k then apply lij else withFactor k j apply)
    if whole cols then
        if i = k then
            if NativeBlas.potrfLower a <> 0 then false
            else
                a.tril_() |> ignore
                true
        else
            withFactor k k (fun lkk -> NativeBlas.trsmRightLowerTranspose lkk a)
            true
    elif i = k then
        use scope = torch.NewDisposeScope()
        // One buffer for every in-tile update of this step (β = 0 overwrites it: no zero fill, no allocation per update).
        use buffer = torch.empty([| int64 rows; int64 s |], dtype = a.dtype, device = a.device)
        let mutable ok = true
        for p, w in panelsOf cols do
            if ok then
                use below = a.narrow(0L, int64 p, int64 (rows - p))      // rows p.. of the tile
                use target = columnsOf below p w                         // A[r ≥ p, panel p]
                use panelRows = a.narrow(0L, int64 p, int64 w)           // the panel's rows: L[panel p rows, panel q]
                subtractEarlierPanels (if p = 0 then [] else panelsOf p) buffer target below panelRows   // diagonal tile
                use diagonal = target.narrow(0L, 0L, int64 w)
                if NativeBlas.potrfLower diagonal <> 0 then ok <- false
                else
                    diagonal.tril_() |> ignore
                    use rest = target.narrow(0L, int64 w, int64 (rows - p - w))
                    NativeBlas.trsmRightLowerTranspose diagonal rest
        if ok then a.tril_() |> ignore
        ok
    else
        withFactor k k (fun lkk ->
            use scope = torch.NewDisposeScope()
            use buffer = torch.empty([| int64 rows; int64 s |], dtype = a.dtype, device = a.device)
            for p, w in panelsOf cols do
                use target = columnsOf a p w                              // X[:, panel p]
                use lkkRows = lkk.narrow(0L, int64 p, int64 w)            // L_kk[panel p rows, panel q]
                subtractEarlierPanels (if p = 0 then [] else panelsOf p) buffer target a lkkRows   // below the diagonal
                use lkkPanel = columnsOf lkk p w
                use lpp = lkkPanel.narrow(0L, int64 p, int64 w)
                NativeBlas.trsmRightLowerTranspose lpp target)
        true

/// Cholesky of the symmetric matrix in the lower triangle of `a` (n × n, any device) in place, in column panels of
/// `panel` (`step` on one tile, no earlier tiles; panel ≤ 0 or ≥ n: LAPACK's potrf on the whole matrix): true when every
/// pivot succeeded, a's lower triangle then holding L (strict upper triangle zeroed). Its constant is `depth n n panel`
/// = min(n + 1, 2s + ⌈n/s⌉ + 1).
let factorInPlace (panel: int) (a: torch.Tensor) : bool =
    let n = int a.shape.[0]
    step (panelWidth n panel) (fun _ _ _ -> invalidOp "one tile: no earlier factor tiles") 0 0 a
