/// Test matrices of known rank, built from a seed so a failing property replays exactly.
module ResearchFramework.Properties.MathCoreTests.Generators

open TorchSharp
open ResearchFramework.MathCore

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

/// Certificate of a bare matrix with the default options.
let certify (withBias: bool) (phi: torch.Tensor) = Certify.certifyMatrix Certify.defaults (subject phi withBias) phi

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

/// Shapes (n, m, k) for a seed: 2 ≤ n ≤ 40, n ≤ m ≤ 60, 1 ≤ k ≤ n.
let shape (seed: int) =
    let rng = System.Random seed
    let n = rng.Next(2, 41)
    let m = rng.Next(n, 61)
    n, m, rng.Next(1, n + 1)
