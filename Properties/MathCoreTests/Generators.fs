/// Test matrices of known rank, built from a seed so a failing property replays exactly.
module ResearchFramework.Properties.MathCoreTests.Generators

open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Properties

/// Gaussian n×m float64 matrix from a seed (independent of torch's global RNG).
let gaussian (seed: int) (n: int) (m: int) : torch.Tensor =
    use gen = new torch.Generator(uint64 (abs seed) + 1UL)
    torch.randn([| int64 n; int64 m |], dtype = torch.float64, generator = gen)

/// A well-conditioned n×m matrix of rank exactly k: U diag(s) Vᵀ with orthonormal U (n×k),
/// V (m×k) and singular values s spread in [1, 10].
let ofRank (seed: int) (n: int) (m: int) (k: int) : torch.Tensor =
    use scope = torch.NewDisposeScope()
    let struct (u, _) = torch.linalg.qr(gaussian seed n k)
    let struct (v, _) = torch.linalg.qr(gaussian (seed + 7919) m k)
    let s = torch.linspace(1.0, 10.0, int64 k, dtype = torch.float64)
    u.mul(s.unsqueeze(0L)).mm(v.t()).MoveToOuterDisposeScope()

/// Subject for a bare matrix (no bias column unless asked).
let subject (phi: torch.Tensor) (withBias: bool) =
    ExpressivitySubject.OfMatrix(Fingerprint.ofTensors [ phi ], int phi.shape.[0], int phi.shape.[1], withBias)

/// Certificate of a bare CPU matrix with the given options, computed on the test device
/// (`TestDevice.device()`; Φ is copied there, the oracles stay on the CPU copy).
let certifyWith (opts: Certify.Options) (withBias: bool) (phi: torch.Tensor) =
    use onDevice = TestDevice.onDevice phi
    Certify.certifyMatrix opts (subject phi withBias) onDevice

/// Two rows x = (1, 2^−26, …), y = (1, 2^−27, …) of m = c·products entries, built so that a sequential kernel rounds
/// once per term: in the first c entries every product after the first is u = 2^−53, half an ulp of the running sum 1
/// (rounded away, ties to even); each later group of c holds one product u and zeros, lost again when added to 1. The
/// exact x·y = 1 + lost·u with lost = c − 1 + products − 1, and Σ|x_k y_k| is the same sum (all terms positive).
/// Returns the 2 × m float64 rows and `lost`.
let adversarialRows (c: int) (products: int) : torch.Tensor * int =
    let m = c * products
    let x = Array.zeroCreate<float> m
    let y = Array.zeroCreate<float> m
    x.[0] <- 1.0; y.[0] <- 1.0
    for k in 1 .. c - 1 do
        x.[k] <- System.Math.ScaleB(1.0, -26); y.[k] <- System.Math.ScaleB(1.0, -27)
    for q in 1 .. products - 1 do
        x.[q * c] <- System.Math.ScaleB(1.0, -26); y.[q * c] <- System.Math.ScaleB(1.0, -27)
    torch.tensor(Array2D.init 2 m (fun r k -> if r = 0 then x.[k] else y.[k]), dtype = torch.float64), c - 1 + products - 1

/// The BLAS backends the certificate's kernels can run on in this process (libtorch always, OpenBLAS when loadable):
/// tests of a bracketing or a bound run on each (`NativeBlas.useBackend`).
let availableBackends () =
    if NativeBlas.openBlasAvailable () then [ NativeBlas.Backend.LibTorch; NativeBlas.Backend.OpenBlas ] else [ NativeBlas.Backend.LibTorch ]

/// Certificate of a bare CPU matrix with the default options, on the test device.
let certify (withBias: bool) (phi: torch.Tensor) = certifyWith Certify.defaults withBias phi

/// Smallest singular value by MathNet's float64 SVD (the independent reference).
let mathNetSigmaMin (phi: torch.Tensor) = HeuristicRank.toMathNet phi |> HeuristicRank.mathNetSingularValues |> Array.min

/// Largest singular value by MathNet's float64 SVD.
let mathNetSigmaMax (phi: torch.Tensor) = HeuristicRank.toMathNet phi |> HeuristicRank.mathNetSingularValues |> Array.max

/// Non-negative, ReLU-like n×m features relu(g + 1/2), g Gaussian: a dominant mean direction
/// (σ_max ≈ √(nm)·E[relu]) far above the rest of the spectrum.
let reluLike (seed: int) (n: int) (m: int) : torch.Tensor =
    use g = gaussian seed n m
    use shifted = g.add(scalar 0.5)
    torch.nn.functional.relu(shifted)

/// Shapes (n, m, k) for a seed: 2 ≤ n ≤ 40, n ≤ m ≤ 60, 1 ≤ k ≤ n (bounds × `RF_SIZE_SCALE`, see `Seeds.scaled`).
let shape (seed: int) =
    let rng = System.Random seed
    let n = rng.Next(2, Seeds.scaled 41)
    let m = rng.Next(n, Seeds.scaled 61)
    Seeds.Observe.shape "n" n
    Seeds.Observe.shape "m" m
    n, m, rng.Next(1, n + 1)

/// Kahan's matrix K_n(θ) = diag(1, s, …, s^{n−1})·(I − c·strict upper triangle of ones), s = sin θ,
/// c = cos θ: upper triangular, σ_min far below what its diagonal suggests.
let kahan (n: int) (theta: float) : torch.Tensor =
    let s, c = sin theta, cos theta
    let a = Array2D.init n n (fun i j -> if j < i then 0.0 elif i = j then pown s i else -c * pown s i)
    torch.tensor(a, dtype = torch.float64)

/// The Hilbert matrix H_ij = 1/(i + j + 1) (n × n, entries rounded to float64).
let hilbert (n: int) : torch.Tensor =
    torch.tensor(Array2D.init n n (fun i j -> 1.0 / float (i + j + 1)), dtype = torch.float64)

/// Vandermonde n × m: x_i^j at n equispaced points of [−1, 1].
let vandermonde (n: int) (m: int) : torch.Tensor =
    let x i = -1.0 + 2.0 * float i / float (max 1 (n - 1))
    torch.tensor(Array2D.init n m (fun i j -> pown (x i) j), dtype = torch.float64)

/// U diag(s) Vᵀ (n × m) with orthonormal U, V from a seed and singular values s (length n).
let withSingularValues (seed: int) (m: int) (s: float[]) : torch.Tensor =
    use scope = torch.NewDisposeScope()
    let n = s.Length
    let struct (u, _) = torch.linalg.qr(gaussian seed n n)
    let struct (v, _) = torch.linalg.qr(gaussian (seed + 7919) m n)
    let sv = torch.tensor(s, dtype = torch.float64)
    u.mul(sv.unsqueeze(0L)).mm(v.t()).MoveToOuterDisposeScope()

/// Small-integer n × m matrix (entries in [−3, 3]) whose last row is 2·row 0 − row 1, exactly in
/// float64: rank < n, with or without the bias column (the coefficients sum to 1).
let rankDeficientByOne (seed: int) (n: int) (m: int) : torch.Tensor =
    let rng = System.Random seed
    let a = Array2D.init n m (fun _ _ -> float (rng.Next(-3, 4)))
    for j in 0 .. m - 1 do a.[n - 1, j] <- 2.0 * a.[0, j] - a.[1, j]
    torch.tensor(a, dtype = torch.float64)
