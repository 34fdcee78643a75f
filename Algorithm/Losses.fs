/// Losses of SPEC §1, L(θ) = (1/n) Σ ℓ(f(x_i; θ), y_i), and their global infimum L*.
namespace ResearchFramework.Algorithm

open System
open System.Collections.Generic
open TorchSharp
open ResearchFramework.MathCore

/// The per-sample loss ℓ (SPEC §1); both are convex and differentiable in z.
type LossKind =
    /// ℓ(z, y) = ½‖z − y‖²; targets are real (n × c).
    | Squared = 0
    /// ℓ(z, y) = −log softmax(z)_y; targets are class indices (n, int64) or one-hot rows (n × c).
    | CrossEntropy = 1

module Losses =

    /// Class indices of cross-entropy targets: int64 labels as given, one-hot rows by argmax.
    let labels (y: torch.Tensor) : torch.Tensor =
        if y.dim () = 1L then y.to_type(torch.int64) else y.argmax(1L)

    /// L = (1/n) Σ_i ℓ(z_i, y_i) for a batch (SPEC §1): ½ mean_i ‖z_i − y_i‖² or mean cross-entropy.
    let value (kind: LossKind) (z: torch.Tensor) (y: torch.Tensor) : torch.Tensor =
        match kind with
        | LossKind.Squared ->
            use scope = torch.NewDisposeScope()
            let yy = if y.dim () = 1L && z.dim () = 2L then y.unsqueeze(1L) else y
            let d = z.sub(yy.to_type(z.dtype))
            d.pow(scalar 2.0).sum().div(scalar (2.0 * float z.shape.[0])).MoveToOuterDisposeScope()
        | LossKind.CrossEntropy ->
            use l = labels y
            torch.nn.functional.cross_entropy(z, l)
        | other -> invalidArg "kind" (sprintf "unknown loss %O" other)

    /// Groups of identical inputs: row indices of X (n × …) sharing the same bytes.
    let identicalInputGroups (x: torch.Tensor) : int[][] =
        use flat = x.detach().cpu().contiguous().flatten(1L)
        let n = int flat.shape.[0]
        let groups = Dictionary<string, ResizeArray<int>>()
        let order = ResizeArray<string>()
        for i in 0 .. n - 1 do
            use row = flat.[int64 i]
            let key = Convert.ToBase64String(row.bytes.ToArray())
            match groups.TryGetValue key with
            | true, g -> g.Add i
            | _ ->
                groups.[key] <- ResizeArray [ i ]
                order.Add key
        [| for k in order -> groups.[k].ToArray() |]

    /// L* = inf over predictions z_1..z_n of (1/n) Σ ℓ(z_i, y_i) (SPEC §1). Identical inputs must
    /// share one prediction, so the infimum decomposes over groups g of identical inputs:
    /// squared loss: (1/n) Σ_g Σ_{i∈g} ½‖y_i − ȳ_g‖² (attained at z_g = ȳ_g);
    /// cross-entropy: (1/n) Σ_g n_g H(p_g), p_g the empirical label distribution of group g
    /// (approached as softmax(z_g) → p_g). Both are 0 on consistent labels.
    let optimum (kind: LossKind) (x: torch.Tensor) (y: torch.Tensor) : float =
        let groups = identicalInputGroups x
        let n = float x.shape.[0]
        match kind with
        | LossKind.Squared ->
            use y64 = (if y.dim () = 1L then y.unsqueeze(1L) else y).to_type(torch.float64).cpu()
            let mutable total = 0.0
            for g in groups do
                if g.Length > 1 then
                    use idx = torch.tensor(g |> Array.map int64)
                    use rows = y64.index_select(0L, idx)
                    use mean = rows.mean([| 0L |], true)
                    use dev = rows.sub(mean)
                    total <- total + 0.5 * dev.pow(scalar 2.0).sum().item<float> ()
            total / n
        | LossKind.CrossEntropy ->
            use l = labels y
            let lab = l.cpu().data<int64>().ToArray()
            let mutable total = 0.0
            for g in groups do
                if g.Length > 1 then
                    let counts = g |> Array.countBy (fun i -> lab.[i])
                    let ng = float g.Length
                    for (_, c) in counts do
                        let p = float c / ng
                        total <- total - float c * log p
            total / n
        | other -> invalidArg "kind" (sprintf "unknown loss %O" other)
