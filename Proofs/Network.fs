/// Plain float64 fully-connected networks for the constructive proofs (SPEC §5, Lemma 2):
/// row-by-row forward passes in managed code (identical inputs give bitwise-identical rows),
/// seeded Gaussian draws, and certification of the resulting Φ̃ with Math.Core (SPEC §3).
module ResearchFramework.Proofs.Network

open System
open TorchSharp
open ResearchFramework.MathCore

/// Activations of the proofs. Tanh, Sigmoid and Softplus are strictly increasing, real analytic
/// and not polynomials (the hypotheses of SPEC §5); Relu is none of the first two and serves
/// as the counterexample of Lemma 2.
type Activation =
    | Tanh
    | Sigmoid
    | Softplus
    | Relu

    member a.IsAnalytic = (match a with Relu -> false | _ -> true)
    member a.Name = (match a with Tanh -> "tanh" | Sigmoid -> "sigmoid" | Softplus -> "softplus" | Relu -> "relu")

    static member Parse(s: string) =
        match (if isNull s then "" else s.Trim().ToLowerInvariant()) with
        | "tanh" -> Tanh
        | "sigmoid" -> Sigmoid
        | "softplus" -> Softplus
        | "relu" -> Relu
        | other -> invalidArg "activation" (sprintf "unknown activation '%s': expected tanh, sigmoid, softplus or relu" other)

/// log(1 + e) for e ≥ 0, accurate for tiny e.
let private log1pSmall (e: float) = if e < 1e-8 then e - 0.5 * e * e else Math.Log(1.0 + e)

/// σ(x) in float64.
let activate (a: Activation) (x: float) : float =
    match a with
    | Tanh -> Math.Tanh x
    | Sigmoid ->
        if x >= 0.0 then 1.0 / (1.0 + Math.Exp(-x))
        else
            let e = Math.Exp x
            e / (1.0 + e)
    | Softplus -> if x > 0.0 then x + log1pSmall (Math.Exp(-x)) else log1pSmall (Math.Exp x)
    | Relu -> if x > 0.0 then x else 0.0

/// One dense layer: Weight is out × in, Bias has length out.
type Layer =
    { Weight: float[,]
      Bias: float[] }

    member l.Outputs = Array2D.length1 l.Weight
    member l.Inputs = Array2D.length2 l.Weight

/// A network body: every layer followed by the activation; the features h(x) are the output of
/// the last layer (SPEC §1, default taps of an MLP: the last hidden layer).
type Network =
    { Activation: Activation
      Layers: Layer list }

/// pre = h Wᵀ + b, evaluated row by row with a fixed summation order.
let preActivation (layer: Layer) (h: float[,]) : float[,] =
    let n = Array2D.length1 h
    let k = Array2D.length2 h
    if k <> layer.Inputs then invalidArg "h" (sprintf "layer expects %d inputs, got %d" layer.Inputs k)
    Array2D.init n layer.Outputs (fun i j ->
        let mutable s = 0.0
        for q in 0 .. k - 1 do
            s <- s + layer.Weight.[j, q] * h.[i, q]
        s + layer.Bias.[j])

/// σ(h Wᵀ + b).
let layerForward (act: Activation) (layer: Layer) (h: float[,]) : float[,] =
    preActivation layer h |> Array2D.map (activate act)

/// Hidden representations after each layer (the input first).
let hiddenStates (net: Network) (x: float[,]) : float[,] list =
    net.Layers |> List.scan (fun h l -> layerForward net.Activation l h) x

/// Feature matrix Φ (n × m): output of the last layer.
let features (net: Network) (x: float[,]) : float[,] =
    net.Layers |> List.fold (fun h l -> layerForward net.Activation l h) x

/// Rows r0 … r1 − 1 of Φ = `features net x`: the same layers applied to those inputs alone. A layer's output row
/// depends only on its own input row (`preActivation` sums in a fixed order), so the block is bitwise rows
/// r0 … r1 − 1 of `features net x` (SPEC §5's witness streamed, docs/theory.md §4 "Theorem FC").
let featureRows (net: Network) (x: float[,]) (r0: int) (r1: int) : float[,] = features net x.[r0 .. r1 - 1, *]

/// Φ̃ = [Φ, 1].
let withBias (phi: float[,]) : float[,] =
    let n, m = Array2D.length1 phi, Array2D.length2 phi
    Array2D.init n (m + 1) (fun i j -> if j < m then phi.[i, j] else 1.0)

/// Standard normal draws (Box–Muller) from a seeded System.Random.
type Gaussian(seed: int) =
    let rng = Random seed
    let mutable spare = nan
    member _.Next() =
        if not (Double.IsNaN spare) then
            let s = spare
            spare <- nan
            s
        else
            let u1 = 1.0 - rng.NextDouble()
            let u2 = rng.NextDouble()
            let r = sqrt (-2.0 * log u1)
            spare <- r * sin (2.0 * Math.PI * u2)
            r * cos (2.0 * Math.PI * u2)
    member g.Vector(k: int) = Array.init k (fun _ -> g.Next())
    member g.Matrix(r: int, c: int) = Array2D.init r c (fun _ _ -> g.Next())

/// A layer with N(0, 1/fanIn) weights and N(0, 1) biases (the "generic" draw of the proof).
let randomLayer (g: Gaussian) (inputs: int) (outputs: int) : Layer =
    let scale = 1.0 / sqrt (float (max 1 inputs))
    { Weight = Array2D.init outputs inputs (fun _ _ -> scale * g.Next())
      Bias = g.Vector outputs }

/// Rows of a matrix.
let rows (a: float[,]) : float[][] = Array.init (Array2D.length1 a) (fun i -> a.[i, *])

/// Lexicographic comparison of two float rows (exact).
let private compareRows (a: float[]) (b: float[]) =
    let mutable c = 0
    let mutable k = 0
    while c = 0 && k < a.Length do
        c <- compare a.[k] b.[k]
        k <- k + 1
    c

/// The first pair (i, j), i < j, of bitwise-equal rows, if any (exact, O(n log n)).
let duplicateRows (a: float[,]) : (int * int) option =
    let r = rows a
    let order = Array.init r.Length id |> Array.sortWith (fun i j -> match compareRows r.[i] r.[j] with 0 -> compare i j | c -> c)
    order
    |> Array.pairwise
    |> Array.tryFind (fun (i, j) -> compareRows r.[i] r.[j] = 0)
    |> Option.map (fun (i, j) -> min i j, max i j)

/// A SHA-256 fingerprint of float arrays.
let fingerprintOf (parts: float[] seq) : string =
    let all = parts |> Seq.concat |> Array.ofSeq
    let bytes = Array.zeroCreate<byte> (all.Length * 8)
    Buffer.BlockCopy(all, 0, bytes, 0, bytes.Length)
    Fingerprint.ofBytes bytes

let private flatten (a: float[,]) = Array.init (a.Length) (fun k -> a.[k / Array2D.length2 a, k % Array2D.length2 a])

/// Fingerprint of every parameter of a network.
let parameterFingerprint (net: Network) : string =
    fingerprintOf [ for l in net.Layers do
                        yield flatten l.Weight
                        yield l.Bias ]

/// Fingerprint of a data matrix.
let dataFingerprint (x: float[,]) : string = fingerprintOf [ flatten x ]

/// Certificate for a feature matrix Φ (without its bias column), plus the flush correction:
/// Math.Core rejects non-zero entries below 1e-150 (its no-underflow assumption), so such
/// entries (saturated sigmoids) are set to 0 first; that changes Φ̃ by at most √k·1e-150 in
/// Frobenius norm (k entries), hence (Weyl) σ_min(Φ̃) ≥ SigmaMinLower − √k·1e-150.
type FeatureCertificate =
    { Certificate: Certificate
      /// Entries set to 0 because 0 < |φ| < 1e-150 (int64: up to n·m, 3.6e9 for the witness at n = 60,000).
      FlushedEntries: int64
      /// √k · 1e-150, rounded up.
      FlushBound: float
      /// Rigorous lower bound on σ_min of the unflushed Φ̃ (0 unless Certified).
      SigmaMinLower: float }

/// Whether an entry is flushed to 0 before the certificate: 0 < |φ| < `FloatingPoint.underflowGuard` (1e-150).
let private isFlushed (v: float) = v <> 0.0 && abs v < FloatingPoint.underflowGuard

/// Φ's entries in row-major order with the flushed ones (`isFlushed`) set to 0, and how many were.
let private flushUnderflow (phi: float[,]) : float[] * int64 =
    let m = Array2D.length2 phi
    let mutable flushed = 0L
    let data =
        Array.init phi.Length (fun k ->
            let v = phi.[k / m, k % m]
            if isFlushed v then
                flushed <- flushed + 1L
                0.0
            else v)
    data, flushed

/// `cert` with the flush correction for `flushed` entries: FlushBound = √k·1e-150 rounded up, subtracted (rounded
/// down) from a Certified σ_min bound (Weyl).
let private correctedForFlush (cert: Certificate) (flushed: int64) : FeatureCertificate =
    let flushBound = if flushed = 0L then 0.0 else FloatingPoint.mulUp (FloatingPoint.up (sqrt (float flushed))) FloatingPoint.underflowGuard
    let lower = if cert.IsCertified then max 0.0 (FloatingPoint.subDown cert.SigmaMinLower flushBound) else 0.0
    { Certificate = cert; FlushedEntries = flushed; FlushBound = flushBound; SigmaMinLower = lower }

/// Certify Φ̃ = [Φ, 1] with Math.Core's float64 Gram + Rump test on the engine `engine` picks for n rows
/// (`CertificateEngine`: dense, or the tiled engine of docs/theory.md §3 "Tiles"; the same bounds).
let certifyFeaturesOn (engine: CertificateEngine) (subject: ExpressivitySubject) (phi: float[,]) : FeatureCertificate =
    let n, m = Array2D.length1 phi, Array2D.length2 phi
    let data, flushed = flushUnderflow phi
    use flat = torch.tensor(data, dtype = torch.float64)
    use t = flat.reshape(int64 n, int64 m)
    correctedForFlush (CertificateEngine.Certify(engine, Certify.defaults, subject, t, null)) flushed

/// Bytes of Φ's rows produced at a time by `certifyFeatureRowsOn` (a block is held about three times: the rows,
/// their flushed copy, the tensor handed to the tiled engine).
let featureBlockBytes = 64L <<< 20

/// Rows of a feature block of `certifyFeatureRowsOn` for m features and b-row tiles: the largest divisor of b whose
/// rows of m float64 fit `featureBlockBytes` (at least 1), so that no block straddles two row tiles (each row tile
/// is produced from whole blocks, none twice).
let featureBlockRows (tileSize: int) (m: int) : int =
    let cap = int (max 1L (min (int64 tileSize) (featureBlockBytes / (8L * int64 (max 1 m)))))
    let mutable rows = cap
    while tileSize % rows <> 0 do rows <- rows - 1
    rows

/// The certificate of `certifyFeaturesOn` with Φ streamed (SPEC §5's witness at n = 60,000, docs/theory.md §4
/// "Theorem FC"): `rows r0 r1` produces rows r0 … r1 − 1 of Φ (n × m as `subject` says, without the bias column;
/// every call the same rows), in blocks of `featureBlockRows` rows, each flushed entry by entry as
/// `certifyFeaturesOn` flushes, and certified on the tiled engine (`CertificateEngine.CertifyRowBlocks`: row tiles up
/// to the memory budget, tile files beyond it, resumable from the work directory). FlushedEntries are counted in one
/// pass over the blocks before the certificate (a resumed certificate may read its tiles back instead of producing
/// the rows); that pass also hands every block, unflushed, to `observe r0 block` (the witness's ‖N − T‖_F). For the
/// same Φ the certificate, the flush count and the bound are bitwise those of `certifyFeaturesOn` on a tiled engine
/// of the same tiles; Φ is never held whole. `log` (may be null) receives the tiled engine's phase lines.
let certifyFeatureRowsOn (engine: CertificateEngine) (log: Action<string>) (subject: ExpressivitySubject) (rows: int -> int -> float[,])
                         (observe: int -> float[,] -> unit) : FeatureCertificate =
    let n, m = subject.Rows, subject.Features
    let blockRows = featureBlockRows engine.TileSize m
    let blockCount = (n + blockRows - 1) / blockRows
    let rowsOfBlock s = s * blockRows, min n ((s + 1) * blockRows)
    let mutable flushed = 0L
    for s in 0 .. blockCount - 1 do
        let r0, r1 = rowsOfBlock s
        let block = rows r0 r1
        observe r0 block
        for i in 0 .. r1 - r0 - 1 do
            for j in 0 .. m - 1 do
                if isFlushed block.[i, j] then flushed <- flushed + 1L
    let flushedRows r0 r1 = fst (flushUnderflow (rows r0 r1))
    let rowBlock s =
        let r0, r1 = rowsOfBlock s
        use flat = torch.tensor(flushedRows r0 r1, dtype = torch.float64)
        flat.reshape(int64 (r1 - r0), int64 m)
    // duplicate candidates confirmed on the flushed rows, as `certifyFeaturesOn`'s tensor rows are compared
    let equal i j = flushedRows i (i + 1) = flushedRows j (j + 1)
    let cert = CertificateEngine.CertifyRowBlocks(engine, Certify.defaults, subject, Some equal, blockRows, blockCount, rowBlock, log)
    correctedForFlush cert flushed

/// `certifyFeaturesOn` with `CertificateEngine.Default` (dense up to 32·n² bytes = 20 GiB, tiled beyond).
let certifyFeatures (subject: ExpressivitySubject) (phi: float[,]) : FeatureCertificate =
    certifyFeaturesOn CertificateEngine.Default subject phi

/// The subject of a network's feature matrix on inputs x.
let subjectOf (architecture: string) (net: Network) (x: float[,]) (features: int) : ExpressivitySubject =
    { ExpressivitySubject.OfMatrix(dataFingerprint x, Array2D.length1 x, features, true) with
        Architecture = architecture
        Taps = [| "last hidden layer" |]
        ParameterFingerprint = parameterFingerprint net }

/// Smallest singular value of Φ̃ by MathNet float64 SVD (the independent cross-check).
let svdSigmaMin (phiTilde: float[,]) : float =
    let a = MathNet.Numerics.LinearAlgebra.Matrix<float>.Build.DenseOfArray phiTilde
    let s = a.Svd(false).S
    let k = min a.RowCount a.ColumnCount
    if a.RowCount > a.ColumnCount then 0.0 else s.[k - 1]
