/// The Jacobian form of the expressivity condition (SPEC §2). For a parameter block P,
/// J_P(θ) = ∂ vec f(X; θ) / ∂θ_P ∈ R^{nc × |P|}, with vec stacking f(X) row-major (sample-major:
/// index i·c + k). EC_J: rank J_P = nc. Alignment: relative residual of vec Y outside Col(J_P).
/// The restricted empirical NTK is K_P = J_P J_Pᵀ.
module ResearchFramework.MathCore.Jacobian

open System
open TorchSharp

type Module = torch.nn.Module<torch.Tensor, torch.Tensor>

/// The parameters of block P: every parameter whose name equals one of `names` or starts with
/// `name + "."`. Fails clearly when a name matches nothing.
let parameterBlock (model: torch.nn.Module) (names: string list) : (string * TorchSharp.Modules.Parameter) list =
    if List.isEmpty names then invalidArg "names" "empty parameter block"
    let all = [ for struct (n, p) in model.named_parameters () -> n, p ]
    let selected = all |> List.filter (fun (n, _) -> names |> List.exists (fun b -> n = b || n.StartsWith(b + ".")))
    for b in names do
        if not (all |> List.exists (fun (n, _) -> n = b || n.StartsWith(b + "."))) then
            invalidArg "names" (sprintf "no parameter named '%s'; parameters are: %s" b (all |> List.map fst |> String.concat ", "))
    selected

/// J_P by autograd: one backward pass per output coordinate (nc passes), evaluation mode.
let autograd (model: Module) (block: (string * TorchSharp.Modules.Parameter) list) (x: torch.Tensor) : torch.Tensor =
    let parameters = block |> List.map snd |> List.map (fun p -> p :> torch.Tensor) |> Array.ofList
    let wasTraining = model.training
    model.eval ()
    try
        use scope = torch.NewDisposeScope()
        let output = model.call(x).flatten()
        let outputs = int output.shape.[0]
        let rows =
            [| for k in 0 .. outputs - 1 ->
                 let grads = torch.autograd.grad([| output.[int64 k] |], parameters, retain_graph = true, allow_unused = true)
                 let flat =
                     Array.map2 (fun (g: torch.Tensor) (p: torch.Tensor) ->
                         if isNull g then torch.zeros([| p.NumberOfElements |], dtype = p.dtype, device = p.device)
                         else g.flatten()) (Array.ofSeq grads) parameters
                 torch.cat(flat, 0L) |]
        torch.stack(rows, 0L).MoveToOuterDisposeScope()
    finally
        if wasTraining then model.train ()

/// J_P by central finite differences, (f(θ + h e_j) − f(θ − h e_j)) / 2h, one parameter
/// coordinate at a time: the independent check of `autograd` (use float64 models).
let finiteDifference (model: Module) (block: (string * TorchSharp.Modules.Parameter) list) (step: float) (x: torch.Tensor) : torch.Tensor =
    let wasTraining = model.training
    model.eval ()
    try
        use _ = torch.no_grad ()
        use scope = torch.NewDisposeScope()
        let columns =
            [| for (_, p) in block do
                 let flat : torch.Tensor = p.view(-1L)
                 for j in 0L .. p.NumberOfElements - 1L do
                     let original = flat.[j].item<float> ()
                     flat.[j] <- torch.tensor(original + step, dtype = p.dtype)
                     let plus = model.call(x).flatten()
                     flat.[j] <- torch.tensor(original - step, dtype = p.dtype)
                     let minus = model.call(x).flatten()
                     flat.[j] <- torch.tensor(original, dtype = p.dtype)
                     yield plus.sub(minus).div(scalar (2.0 * step)) |]
        torch.stack(columns, 1L).MoveToOuterDisposeScope()
    finally
        if wasTraining then model.train ()

/// The empirical NTK restricted to P: K_P = J_P J_Pᵀ.
let restrictedNtk (j: torch.Tensor) : torch.Tensor = j.mm(j.t())

/// Relative residual of vec Y outside Col(J): ‖(I − J J⁺) vec Y‖ / ‖vec Y‖, in float64 via
/// least squares. 0 means the targets are exactly reachable by moving P alone (to first order).
let alignmentResidual (j: torch.Tensor) (y: torch.Tensor) : float =
    use scope = torch.NewDisposeScope()
    let j64 = j.``to``(torch.float64)
    let v = y.``to``(torch.float64).reshape(-1L, 1L)
    if v.shape.[0] <> j64.shape.[0] then
        invalidArg "y" (sprintf "vec Y has %d entries but J has %d rows" v.shape.[0] j64.shape.[0])
    let coeff = torch.linalg.pinv(j64).mm(v)
    let residual = v.sub(j64.mm(coeff))
    let norm = v.norm().item<float> ()
    if norm = 0.0 then 0.0 else residual.norm().item<float> () / norm
