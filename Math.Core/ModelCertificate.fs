/// Certify any model (SPEC §2–§3 for a user's own network): the expressivity condition of an arbitrary
/// TorchSharp module at named taps, on inputs given as re-producible batches, streamed through the
/// row-block certificate (`Certify.certifyRowBlocks`: Φ is never held whole unless it fits the cache),
/// with progress reports a host can turn into a bar. Nothing here knows the repository's networks.
namespace ResearchFramework.MathCore

open System
open TorchSharp

/// How far a certificate has come: `Stage` is "features" (forward passes at the taps; `Total` bounds the
/// number of batch evaluations, which re-read batches when Φ does not fit the cache) or "certified".
type CertificationProgress = { Stage: string; Done: int; Total: int }

/// The certificate of a user's model, callable from F# and C# alike (no F# function, list or option
/// types in the signatures).
[<AbstractClass; Sealed>]
type ModelCertificate =

    /// Certifies EC for `model` at `taps` on the inputs `batch 0 … batchCount − 1` (evaluation mode, no
    /// gradients). Each call of `batch i` must return the same inputs (a fresh tensor or a view, on the
    /// model's device; the certificate disposes it); every batch has the same size except possibly the
    /// last. `withBias`: certify Φ̃ = [Φ, 1] (a readout with a bias, the default of the recipe).
    /// `dataFingerprint` names the inputs in the certificate (e.g. `Fingerprint.ofTensors`). `cacheBytes`
    /// bounds the memory spent keeping feature blocks instead of recomputing them.
    static member Certify(model: torch.nn.Module<torch.Tensor, torch.Tensor>, taps: seq<string>, batchCount: int,
                          batch: Func<int, torch.Tensor>, withBias: bool, dataFingerprint: string, cacheBytes: int64,
                          progress: Action<CertificationProgress>, options: Certify.Options) : Certificate =
        ModelCertificate.CertifyOn(model, taps, batchCount, batch, withBias, dataFingerprint, cacheBytes, progress, options, None)

    /// `Certify` through the tiled engine (`Tiled`, docs/theory.md §3 "Tiles"): for n whose dense n × n Gram does not
    /// fit in memory. `settings` give the tile size, the memory budget, the work directory (resumable: call again with
    /// the same model, inputs and settings after an interruption) and the progress and log callbacks; its
    /// RunFingerprint should name the model and inputs (the tile files carry it). `cacheBytes` bounds the feature cache.
    static member CertifyTiled(model: torch.nn.Module<torch.Tensor, torch.Tensor>, taps: seq<string>, batchCount: int,
                               batch: Func<int, torch.Tensor>, withBias: bool, dataFingerprint: string, cacheBytes: int64,
                               progress: Action<CertificationProgress>, options: Certify.Options, settings: Tiled.Settings) : Certificate =
        ModelCertificate.CertifyOn(model, taps, batchCount, batch, withBias, dataFingerprint, cacheBytes, progress, options, Some settings)

    static member private CertifyOn(model: torch.nn.Module<torch.Tensor, torch.Tensor>, taps: seq<string>, batchCount: int,
                                    batch: Func<int, torch.Tensor>, withBias: bool, dataFingerprint: string, cacheBytes: int64,
                                    progress: Action<CertificationProgress>, options: Certify.Options, tiled: Tiled.Settings option) : Certificate =
        if isNull model then nullArg "model"
        if isNull batch then nullArg "batch"
        if batchCount <= 0 then invalidArg "batchCount" "no input batches (n = 0)"
        let taps = List.ofSeq taps
        let report p = if not (isNull progress) then progress.Invoke p
        let rowsOf i = (use x = batch.Invoke i in x.shape.[0])
        let blockRows = rowsOf 0
        let lastRows = if batchCount = 1 then blockRows else rowsOf (batchCount - 1)
        if blockRows <= 0L || lastRows <= 0L || lastRows > blockRows then
            invalidArg "batch" (sprintf "batches must be non-empty, all of %d rows except a last one of at most that many (last: %d)" blockRows lastRows)
        let rows = int (blockRows * int64 (batchCount - 1) + lastRows)
        let features = (use x = batch.Invoke 0 in FeatureMap.featureCount model taps x)
        let subject =
            { DatasetFingerprint = (if String.IsNullOrEmpty dataFingerprint then "unnamed inputs" else dataFingerprint)
              CertificationSet = sprintf "%d inputs in %d batches" rows batchCount
              Architecture = model.GetType().Name; Taps = Array.ofList taps
              ParameterFingerprint = Fingerprint.ofModule model
              Rows = rows; Features = features; WithBias = withBias }
        let total = batchCount * (batchCount + 1) / 2
        let mutable evaluations = 0
        report { Stage = "features"; Done = 0; Total = total }
        // The two most recent feature blocks are kept (clones are handed out, the caller disposes them): the
        // duplicate-row check reads rows pair by pair and must not re-run the model for each row.
        let recent = Collections.Generic.List<int * torch.Tensor>()
        let rowBlock (i: int) =
            match recent |> Seq.tryFind (fun (k, _) -> k = i) with
            | Some (_, f) -> f.clone()
            | None ->
                use x = batch.Invoke i
                let f = FeatureMap.features model taps x
                evaluations <- evaluations + 1
                report { Stage = "features"; Done = evaluations; Total = max total evaluations }
                if recent.Count = 2 then
                    (snd recent.[0]).Dispose()
                    recent.RemoveAt 0
                recent.Add((i, f.clone()))
                f
        let certificate =
            try
                match tiled with
                | None -> Certify.certifyRowBlocks options subject cacheBytes (int blockRows) batchCount rowBlock
                | Some settings ->
                    let equal i j =
                        use a = rowBlock (i / int blockRows)
                        use b = rowBlock (j / int blockRows)
                        use ra = a.[int64 (i % int blockRows)]
                        use rb = b.[int64 (j % int blockRows)]
                        use same = ra.eq(rb).all()
                        same.item<bool> ()
                    Tiled.certifyRowBlocks options { settings with FeatureCacheBytes = cacheBytes } subject (Some equal) (int blockRows) batchCount rowBlock
            finally for (_, f) in recent do f.Dispose()
        report { Stage = "certified"; Done = 1; Total = 1 }
        certificate

    /// `Certify` with the bias column, the default options, a 1 GiB feature cache and no progress.
    static member Certify(model: torch.nn.Module<torch.Tensor, torch.Tensor>, taps: seq<string>, batchCount: int,
                          batch: Func<int, torch.Tensor>) : Certificate =
        ModelCertificate.Certify(model, taps, batchCount, batch, true, "unnamed inputs", 1L <<< 30, null, Certify.defaults)

    /// `Certify` over the row blocks of one input tensor `x` (N × …) of `batchSize` rows each.
    static member Certify(model: torch.nn.Module<torch.Tensor, torch.Tensor>, taps: seq<string>, x: torch.Tensor, batchSize: int,
                          withBias: bool, progress: Action<CertificationProgress>) : Certificate =
        if batchSize <= 0 then invalidArg "batchSize" "batch size must be positive"
        let n = x.shape.[0]
        let count = int ((n + int64 batchSize - 1L) / int64 batchSize)
        let batch = Func<int, torch.Tensor>(fun i -> x.narrow(0L, int64 i * int64 batchSize, min (int64 batchSize) (n - int64 i * int64 batchSize)))
        ModelCertificate.Certify(model, taps, count, batch, withBias, Fingerprint.ofTensors [ x ], 1L <<< 30, progress, Certify.defaults)

    /// The Jacobian form (SPEC §2): a certificate that the computed J_P = ∂ vec f(X)/∂θ_P (nc × |P|, by
    /// autograd in evaluation mode, in the model's precision — the certificate covers that floating-point
    /// matrix, not the exact Jacobian) has full row rank nc, for the parameter block P named by `parameterNames` (a name
    /// selects that parameter or every parameter under that module). For P = a linear readout,
    /// J_P = I_c ⊗ Φ̃ and this is EC itself. Cost: nc backward passes and an nc × nc Gram.
    static member CertifyJacobian(model: torch.nn.Module<torch.Tensor, torch.Tensor>, parameterNames: seq<string>, x: torch.Tensor,
                                  options: Certify.Options) : Certificate =
        let block = Jacobian.parameterBlock model (List.ofSeq parameterNames)
        use j = Jacobian.autograd model block x
        let subject =
            { DatasetFingerprint = Fingerprint.ofTensors [ x ]
              CertificationSet = sprintf "J_P on %d inputs (%d rows = inputs × outputs)" x.shape.[0] j.shape.[0]
              Architecture = model.GetType().Name + " (Jacobian form)"
              Taps = block |> List.map fst |> Array.ofList
              ParameterFingerprint = Fingerprint.ofModule model
              Rows = int j.shape.[0]; Features = int j.shape.[1]; WithBias = false }
        Certify.certifyMatrix options subject j

    /// The alignment of targets `y` (n × c) with the block P: ‖(I − J_P J_P⁺) vec Y‖ / ‖vec Y‖ (0: reachable by
    /// moving P alone, to first order). A float64 least-squares estimate, not a certificate.
    static member Alignment(model: torch.nn.Module<torch.Tensor, torch.Tensor>, parameterNames: seq<string>, x: torch.Tensor, y: torch.Tensor) : float =
        let block = Jacobian.parameterBlock model (List.ofSeq parameterNames)
        use j = Jacobian.autograd model block x
        Jacobian.alignmentResidual j y
