/// The heuristic rank decision rank = #{σ_i > max(n, m)·ε·σ_max} (the NumPy / PyTorch /
/// MathNet rule, SPEC §3), computed by two independent SVD implementations. A heuristic, not a
/// proof: the certificate in `Certify` is the proof; these are its differential cross-checks.
module ResearchFramework.MathCore.HeuristicRank

open TorchSharp
open MathNet.Numerics.LinearAlgebra

/// Machine epsilon (spacing of 1.0) of float32 / float64.
let epsilonOf (dtype: torch.ScalarType) =
    if dtype = torch.float32 then 1.1920928955078125e-07
    elif dtype = torch.float64 then 2.220446049250313e-16
    else invalidArg "dtype" (sprintf "no heuristic rank for dtype %O" dtype)

/// max(n, m)·ε·σ_max.
let tolerance (rows: int) (cols: int) (eps: float) (sigmaMax: float) = float (max rows cols) * eps * sigmaMax

/// Number of singular values above the tolerance.
let rankOf (rows: int) (cols: int) (eps: float) (singularValues: float[]) =
    if singularValues.Length = 0 then 0
    else
        let tol = tolerance rows cols eps (Array.max singularValues)
        singularValues |> Array.filter (fun s -> s > tol) |> Array.length

/// Φ̃ = [Φ, 1] (appends the bias column of ones).
let withBiasColumn (phi: torch.Tensor) : torch.Tensor =
    use ones = torch.ones([| phi.shape.[0]; 1L |], dtype = phi.dtype, device = phi.device)
    torch.cat([| phi; ones |], 1L)

/// Singular values by MathNet's managed float64 SVD (descending).
let mathNetSingularValues (a: Matrix<float>) : float[] = a.Svd(false).S.ToArray()

/// Singular values by TorchSharp `linalg.svdvals` in the given precision (descending).
let torchSingularValues (dtype: torch.ScalarType) (a: torch.Tensor) : float[] =
    use converted = a.detach().``to``(dtype)
    use s = torch.linalg.svdvals(converted)
    use s64 = s.``to``(torch.float64).cpu()
    s64.data<float>().ToArray()

/// A torch matrix as a MathNet float64 matrix.
let toMathNet (a: torch.Tensor) : Matrix<float> =
    use a64 = a.detach().``to``(torch.float64).cpu().contiguous()
    let rows, cols = int a64.shape.[0], int a64.shape.[1]
    let data = a64.data<float>().ToArray()
    Matrix<float>.Build.Dense(rows, cols, fun i j -> data.[i * cols + j])

/// A MathNet matrix as a float64 torch tensor.
let ofMathNet (a: Matrix<float>) : torch.Tensor =
    use flat = torch.tensor(a.ToRowMajorArray(), dtype = torch.float64)
    flat.reshape(int64 a.RowCount, int64 a.ColumnCount)

/// Heuristic rank via MathNet float64 SVD.
let rankMathNet (a: Matrix<float>) = rankOf a.RowCount a.ColumnCount (epsilonOf torch.float64) (mathNetSingularValues a)

/// Heuristic rank via TorchSharp svdvals at the given precision.
let rankTorch (dtype: torch.ScalarType) (a: torch.Tensor) =
    rankOf (int a.shape.[0]) (int a.shape.[1]) (epsilonOf dtype) (torchSingularValues dtype a)
