/// The feature map h(x; ω) of SPEC §1: the flattened outputs of chosen layers ("taps") of a
/// network, concatenated, taken in evaluation mode (batch norm uses running statistics) so
/// that h is a function of x alone. Row i of Φ(ω) is h(x_i; ω).
module ResearchFramework.MathCore.FeatureMap

open System
open TorchSharp

type Module = torch.nn.Module<torch.Tensor, torch.Tensor>

/// Names of every submodule that a tap can name ("" is the whole network).
let tapNames (model: torch.nn.Module) : string list =
    [ for struct (name, _) in model.named_modules () -> name ]

/// Resolves tap names to submodules, with a clear error for an empty list or an unknown name.
let resolveTaps (model: torch.nn.Module) (taps: string list) : (string * Module) list =
    if List.isEmpty taps then invalidArg "taps" "no taps given: name at least one layer whose output is the feature map"
    let modules = dict [ for struct (name, m) in model.named_modules () -> name, m ]
    [ for tap in taps ->
        match modules.TryGetValue tap with
        | true, (:? Module as m) -> tap, m
        | true, other -> invalidArg "taps" (sprintf "layer '%s' (%s) does not map a tensor to a tensor" tap (other.GetType().Name))
        | _ ->
            invalidArg "taps" (sprintf "no layer named '%s'; layers are: %s" tap
                                   (modules.Keys |> Seq.filter (fun k -> k <> "") |> String.concat ", ")) ]

/// Runs `f` with every BatchNorm/Dropout in evaluation mode and without gradients, restoring
/// the previous training flag afterwards.
let inEvaluationMode (model: torch.nn.Module) (f: unit -> 'a) : 'a =
    let wasTraining = model.training
    model.eval ()
    try
        use _ = torch.no_grad ()
        f ()
    finally
        if wasTraining then model.train ()

/// Runs `run` with a forward hook on each resolved tap. Each time a tap fires, `keep` turns its
/// output into the tensor kept for it (a tap firing twice keeps its last output). Returns run's
/// result and the kept tensors in tap order; fails when a tap was not reached. The one hook
/// mechanism behind `features` (detached, evaluation mode) and the trainer's capture of h with
/// gradients (Algorithm/Recipe.fs).
let captureTaps (resolved: (string * Module) list) (keep: torch.Tensor -> torch.Tensor) (run: unit -> 'a) : 'a * torch.Tensor[] =
    let captured = Array.zeroCreate<torch.Tensor> resolved.Length
    let removers =
        resolved |> List.mapi (fun i (_, m) ->
            m.register_forward_hook(Func<Module, torch.Tensor, torch.Tensor, torch.Tensor>(fun _ _ output ->
                captured.[i] <- keep output
                output)))
    try
        let result = run ()
        resolved |> List.iteri (fun i (name, _) ->
            if isNull captured.[i] then invalidOp (sprintf "tap '%s' was not reached by the forward pass" name))
        result, captured
    finally
        for r in removers do r.remove ()

/// Features at the taps for one batch x: (batch × m) tensor, the flattened tap outputs
/// concatenated in tap order. The model runs in evaluation mode.
let features (model: Module) (taps: string list) (x: torch.Tensor) : torch.Tensor =
    let resolved = resolveTaps model taps
    // Captured outputs are owned here, outside any dispose scope: a module whose forward opens
    // its own scope must not dispose them. All of them are released at the end.
    let owned = ResizeArray<torch.Tensor>()
    let keep (output: torch.Tensor) =
        let t = output.detach().flatten(1L).DetachFromDisposeScope()
        owned.Add t
        t
    try
        inEvaluationMode model (fun () ->
            use scope = torch.NewDisposeScope()
            let _, captured = captureTaps resolved keep (fun () -> model.call(x) |> ignore)
            let result = if captured.Length = 1 then captured.[0].alias() else torch.cat(captured, 1L)
            result.MoveToOuterDisposeScope())
    finally
        for t in owned do t.Dispose()

/// Number of features m at the taps, from one example input.
let featureCount (model: Module) (taps: string list) (example: torch.Tensor) : int =
    use f = features model taps example
    int f.shape.[1]

/// The whole feature matrix Φ for inputs x (n × m), built batch by batch. Only for sizes where
/// Φ fits in memory; the certificate streams instead (`Certify.certifyRowBlocks`).
let featureMatrix (model: Module) (taps: string list) (batchSize: int) (x: torch.Tensor) : torch.Tensor =
    let n = x.shape.[0]
    if n = 0L then invalidArg "x" "no inputs (n = 0)"
    let blocks =
        [| for start in 0L .. int64 batchSize .. n - 1L ->
             use xb = x.narrow(0L, start, min (int64 batchSize) (n - start))
             features model taps xb |]
    let phi = torch.cat(blocks, 0L)
    for b in blocks do b.Dispose()
    phi
