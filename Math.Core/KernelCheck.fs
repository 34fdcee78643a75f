/// Numerical self-check of the convolution kernels a run will use, and the choice of a kernel path
/// that passes it. Trust before speed: libtorch picks its convolution kernels per CPU (oneDNN JIT
/// kernels for the detected ISA), so a green suite on one CPU says nothing about another. On an
/// AVX-512 (bf16/vnni) machine such a kernel trained the suite's LeNet-5 and ResNet-18 into NaN at
/// iteration 1 (`Host/README.md`, toolchain notes). Before the first training or certification step,
/// every convolution shape of the run is computed by the fast path (forward, and for training also
/// backward) and compared with a float64 reference that uses no convolution kernel at all:
/// im2col (`unfold`) + matrix products, gradients by autograd through them (col2im + GEMM).
///
/// **The acceptance bound.** Every output entry of a convolution and of its two gradients is a sum
/// of K products of input entries (K = (C/g)·k_h·k_w (+1 with a bias) for the output,
/// (O/g)·k_h·k_w for the input gradient, N·H_out·W_out for the weight and bias gradients). Inputs
/// are drawn in the run's dtype, so they are exact in float64. Summed in any order in precision u
/// (FMA and blocking included), |fl(s) − s| ≤ γ_K(u)·Σ|products| (Higham, Accuracy and Stability,
/// §3.1), and Σ|products| is the same computation on |x|, |w|, |b|, |∂y| (all maps are bilinear
/// with non-negative coefficients). Hence a correct kernel satisfies, entrywise,
///   |fast − reference| ≤ (γ_K(u) + γ_K(u₆₄))·magnitude,
/// and the check accepts `fast` iff every entry is finite and within twice that (the factor 2
/// absorbs the rounding of the reference's magnitude itself). NaN, Inf, or a wrong result fails.
module ResearchFramework.MathCore.KernelCheck

open System
open System.Runtime.InteropServices
open TorchSharp

/// One 2-D convolution as the run calls it: input N×C×H×W, weight O×(C/g)×k_h×k_w.
type ConvolutionCase =
    { Batch: int64; InChannels: int64; OutChannels: int64; Height: int64; Width: int64
      Kernel: int64 * int64; Stride: int64 * int64; Padding: int64 * int64; Dilation: int64 * int64
      Groups: int64; Bias: bool
      /// True: forward and backward with autograd (training kernels); false: forward under
      /// no_grad (the inference kernels of evaluation and certification).
      Training: bool }

    member c.OutputSize =
        let out size (k: int64) (s: int64) (p: int64) (d: int64) = (size + 2L * p - d * (k - 1L) - 1L) / s + 1L
        out c.Height (fst c.Kernel) (fst c.Stride) (fst c.Padding) (fst c.Dilation),
        out c.Width (snd c.Kernel) (snd c.Stride) (snd c.Padding) (snd c.Dilation)

    /// Compact description, e.g. `train N4 C1→2 12×12 k5×5 s1 p2 +b`.
    member c.Describe() =
        sprintf "%s N%d C%d→%d %d×%d k%d×%d s%d,%d p%d,%d d%d,%d g%d%s" (if c.Training then "train" else "infer")
            c.Batch c.InChannels c.OutChannels c.Height c.Width (fst c.Kernel) (snd c.Kernel) (fst c.Stride) (snd c.Stride)
            (fst c.Padding) (snd c.Padding) (fst c.Dilation) (snd c.Dilation) c.Groups (if c.Bias then " +b" else "")

/// The comparison of one quantity (output or a gradient) of one case.
type QuantityCheck =
    { Name: string
      /// Products per entry (the K of γ_K).
      Terms: int64
      /// max over entries of |fast − reference| / bound; NaN when some entry of `fast` is not finite.
      WorstRatio: float
      NonFinite: int64
      Passed: bool }

type CaseCheck =
    { Case: ConvolutionCase; Quantities: QuantityCheck list; Passed: bool }
    member c.Describe() =
        let worst = c.Quantities |> List.map (fun q -> if q.NonFinite > 0L then sprintf "%s: %d non-finite" q.Name q.NonFinite
                                                          else sprintf "%s: error/bound %.2g" q.Name q.WorstRatio)
        sprintf "%s [%s]%s" (c.Case.Describe()) (String.Join("; ", worst)) (if c.Passed then "" else " FAILED")

/// The self-check of one kernel path on a list of cases.
type CheckReport =
    { Path: string; Device: string; DType: string; Cases: CaseCheck list; Passed: bool; Seconds: float }
    member r.Failures = r.Cases |> List.filter (fun c -> not c.Passed)
    /// One line: verdict, case count and the first failure.
    member r.Summary =
        match r.Failures with
        | [] when r.Passed -> sprintf "%s: passed on %d convolution case(s) (%s, %s, %.2f s)" r.Path r.Cases.Length r.DType r.Device r.Seconds
        | [] -> sprintf "%s: FAILED (every case within bounds, but the path was rejected) on %d case(s) (%s, %s)" r.Path r.Cases.Length r.DType r.Device
        | f :: _ -> sprintf "%s: FAILED on %d of %d case(s) (%s, %s); first: %s" r.Path r.Failures.Length r.Cases.Length r.DType r.Device (f.Describe())

/// A convolution implementation under test: (x, w, b option, case) → y. The default is libtorch's.
type Convolution = torch.Tensor -> torch.Tensor -> torch.Tensor option -> ConvolutionCase -> torch.Tensor

/// libtorch's conv2d: the kernels a network's Conv2d layers call.
let libtorchConvolution : Convolution =
    fun x w b c ->
        torch.nn.functional.conv2d(x, w, (match b with Some b -> b | None -> null),
                                   [| fst c.Stride; snd c.Stride |], [| fst c.Padding; snd c.Padding |],
                                   [| fst c.Dilation; snd c.Dilation |], c.Groups)

/// The float64 reference: per group, im2col (`unfold`) then one matrix product; no convolution kernel.
let referenceConvolution : Convolution =
    fun x w b c ->
        let oh, ow = c.OutputSize
        let groups = c.Groups
        let cin, cout = c.InChannels / groups, c.OutChannels / groups
        let parts =
            [| for g in 0L .. groups - 1L ->
                let xg = x.narrow(1L, g * cin, cin)
                let wg = w.narrow(0L, g * cout, cout)
                let st ((a: int64), (b: int64)) = struct (a, b)
                let cols = torch.nn.functional.unfold(xg, st c.Kernel, Nullable(st c.Dilation), Nullable(st c.Padding), Nullable(st c.Stride)) // N × (cin·kh·kw) × L
                wg.reshape(cout, -1L).matmul(cols) |] // N × cout × L
        let y = (if parts.Length = 1 then parts.[0] else torch.cat(parts, 1L)).reshape(c.Batch, c.OutChannels, oh, ow)
        match b with
        | Some b -> y.add(b.reshape(1L, c.OutChannels, 1L, 1L))
        | None -> y

let private unitRoundoff (dtype: torch.ScalarType) =
    if dtype = torch.float64 then FloatingPoint.unitRoundoff64
    elif dtype = torch.float32 then FloatingPoint.unitRoundoff32
    else invalidArg "dtype" (sprintf "the kernel check covers float32 and float64, not %O" dtype)

/// Compares one quantity: fast (any device/dtype) against the float64 reference with its magnitude.
let private compare (name: string) (terms: int64) (u: float) (fast: torch.Tensor) (reference: torch.Tensor) (magnitude: torch.Tensor) =
    use scope = torch.NewDisposeScope()
    let fast64 = fast.detach().``to``(torch.float64, torch.CPU)
    let nonFinite = fast64.isfinite().logical_not().sum().item<int64> ()
    let k = int (min terms (int64 Int32.MaxValue))
    let factor = 2.0 * (FloatingPoint.gamma u k + FloatingPoint.gamma FloatingPoint.unitRoundoff64 k)
    let bound = magnitude.mul(scalar factor)
    let err = fast64.sub(reference).abs()
    // Entries with a zero bound must match exactly (0/0 → ratio 0; x/0 → +∞ fails).
    let ratio =
        if nonFinite > 0L then nan
        else
            let r = err.div(bound).nan_to_num(0.0, Double.PositiveInfinity, Double.PositiveInfinity)
            if r.numel () = 0L then 0.0 else r.max().item<float> ()
    { Name = name; Terms = terms; WorstRatio = ratio; NonFinite = nonFinite; Passed = nonFinite = 0L && ratio <= 1.0 }

/// Checks `convolution` on one case at `dtype` on `device` against the float64 reference, from
/// seeded N(0, 1) inputs drawn in `dtype` (exact in float64).
let checkCase (convolution: Convolution) (device: torch.Device) (dtype: torch.ScalarType) (seed: uint64) (c: ConvolutionCase) : CaseCheck =
    use scope = torch.NewDisposeScope()
    let u = unitRoundoff dtype
    let oh, ow = c.OutputSize
    if oh <= 0L || ow <= 0L then invalidArg "case" (sprintf "convolution case %s has an empty output" (c.Describe()))
    use gen = new torch.Generator(seed, torch.CPU)
    let draw (shape: int64[]) = torch.randn(shape, dtype = dtype, generator = gen)
    let kh, kw = c.Kernel
    let x = draw [| c.Batch; c.InChannels; c.Height; c.Width |]
    let w = draw [| c.OutChannels; c.InChannels / c.Groups; kh; kw |]
    let b = if c.Bias then Some (draw [| c.OutChannels |]) else None
    let dy = draw [| c.Batch; c.OutChannels; oh; ow |]
    let wide (t: torch.Tensor) = t.``to``(torch.float64)
    // Reference and magnitudes (float64, CPU): on (x, w, b, ∂y) and on their absolute values.
    let reference (absolute: bool) =
        // Fresh leaves (detach + clone): for float64 inputs `to` would return the input itself.
        let prep (t: torch.Tensor) = (if absolute then (wide t).abs() else (wide t).clone()).detach().requires_grad_(c.Training)
        let x64, w64 = prep x, prep w
        let b64 = b |> Option.map prep
        let y = if c.Training then referenceConvolution x64 w64 b64 c
                else (use _ = torch.no_grad () in referenceConvolution x64 w64 b64 c)
        if c.Training then
            y.backward([| (if absolute then (wide dy).abs() else wide dy) |])
            y.detach(), Some (x64.grad, w64.grad, b64 |> Option.map (fun b -> b.grad))
        else y, None
    let yRef, gradsRef = reference false
    let yMag, gradsMag = reference true
    // The path under test, on the run's device and dtype.
    let onDevice (t: torch.Tensor) = t.``to``(device).detach().clone().requires_grad_(c.Training)
    let xd, wd = onDevice x, onDevice w
    let bd = b |> Option.map onDevice
    let y = if c.Training then convolution xd wd bd c else (use _ = torch.no_grad () in convolution xd wd bd c)
    let kForward = (c.InChannels / c.Groups) * kh * kw + (if c.Bias then 1L else 0L)
    let kInput = (c.OutChannels / c.Groups) * kh * kw
    let kWeight = c.Batch * oh * ow
    let outputCheck = compare "output" kForward u y yRef yMag
    let gradientChecks =
        match gradsRef, gradsMag with
        | Some (gxR, gwR, gbR), Some (gxM, gwM, gbM) ->
            y.backward([| dy.``to``(device) |])
            let biasCheck =
                match bd, gbR, gbM with
                | Some bd, Some gbR, Some gbM -> [ compare "∂b" kWeight u bd.grad gbR gbM ]
                | _ -> []
            [ compare "∂x" kInput u xd.grad gxR gxM; compare "∂w" kWeight u wd.grad gwR gwM ] @ biasCheck
        | _ -> []
    let quantities = outputCheck :: gradientChecks
    { Case = c; Quantities = quantities; Passed = quantities |> List.forall (fun q -> q.Passed) }

/// Checks every case (duplicates once) with `convolution`, under the path name `path`.
let checkWith (convolution: Convolution) (path: string) (device: torch.Device) (dtype: torch.ScalarType) (cases: ConvolutionCase list) : CheckReport =
    let clock = Diagnostics.Stopwatch.StartNew()
    let results = cases |> List.distinct |> List.mapi (fun i c -> checkCase convolution device dtype (20210405UL + uint64 i) c)
    { Path = path; Device = string device; DType = string dtype; Cases = results
      Passed = results |> List.forall (fun r -> r.Passed); Seconds = clock.Elapsed.TotalSeconds }

/// Checks libtorch's own convolutions (the kernels the run will use) under the path name `path`.
let check (path: string) (device: torch.Device) (dtype: torch.ScalarType) (cases: ConvolutionCase list) : CheckReport =
    checkWith libtorchConvolution path device dtype cases

/// The convolution cases a model calls on `input` (its shape fixes the batch), from pre-forward hooks
/// on every Conv2d: with `training`, the model runs in training mode with autograd (the kernels of
/// a training step); otherwise in evaluation mode under no_grad (evaluation and certification).
/// The model's mode is restored afterwards.
let casesOf (model: torch.nn.Module<torch.Tensor, torch.Tensor>) (input: torch.Tensor) (training: bool) : ConvolutionCase list =
    let found = Collections.Generic.List<ConvolutionCase>()
    let pair (a: int64[]) = if a.Length = 1 then a.[0], a.[0] else a.[0], a.[1]
    let removers =
        [ for struct (_, m) in model.named_modules () do
            match m with
            | :? Modules.Conv2d as conv ->
                yield conv.register_forward_pre_hook(Func<torch.nn.Module<torch.Tensor, torch.Tensor>, torch.Tensor, torch.Tensor>(fun _ x ->
                    if conv.padding_type.HasValue && conv.padding_type.Value <> Padding.Valid then
                        invalidOp "kernel check: Conv2d with padding 'same' is not covered; give explicit padding"
                    found.Add
                        { Batch = x.shape.[0]; InChannels = conv.in_channels; OutChannels = conv.out_channels
                          Height = x.shape.[2]; Width = x.shape.[3]; Kernel = pair conv.kernel_size; Stride = pair conv.stride
                          Padding = (if isNull conv.padding then (0L, 0L) else pair conv.padding); Dilation = pair conv.dilation
                          Groups = conv.groups; Bias = not (isNull conv.bias); Training = training }
                    x))
            | _ -> () ]
    let wasTraining = model.training
    try
        use scope = torch.NewDisposeScope()
        if training then
            model.train ()
            model.call input |> ignore
        else
            model.eval ()
            use _ = torch.no_grad ()
            model.call input |> ignore
    finally
        for r in removers do r.remove ()
        if wasTraining then model.train () else model.eval ()
    List.ofSeq found |> List.distinct

// ---------------------------------------------------------------------------------------------
// Kernel paths and the choice among them.

/// A way of running libtorch's CPU convolutions.
type KernelPath =
    /// libtorch as it is: oneDNN (mkldnn) kernels for the CPU's detected ISA, or for the ISA capped by
    /// a DNNL_MAX_CPU_ISA that was in the environment when the process started.
    | Default
    /// oneDNN capped at an ISA (e.g. "AVX2") through DNNL_MAX_CPU_ISA. oneDNN reads it once, at its
    /// first use, so this path needs a fresh process (`restartWith`).
    | OneDnnCapped of isa: string
    /// mkldnn disabled for the whole process (at::Context::setUserEnabledMkldnn(false)): ATen's
    /// native convolutions (im2col + BLAS). Takes effect at once, in-process.
    | Native
    /// CUDA: TF32 off for cuDNN convolutions and CUDA matrix products (libtorch allows TF32 for cuDNN
    /// convolutions by default, whose 10-bit mantissa fails a float32 bound on Ampere and later GPUs).
    | NoTf32

    member p.Name =
        match p with
        | Default ->
            match Environment.GetEnvironmentVariable "DNNL_MAX_CPU_ISA" with
            | null | "" -> "default (oneDNN, detected ISA)"
            | isa -> sprintf "default (oneDNN, DNNL_MAX_CPU_ISA=%s from the environment)" isa
        | OneDnnCapped isa -> sprintf "oneDNN capped at DNNL_MAX_CPU_ISA=%s" isa
        | Native -> "native (mkldnn disabled)"
        | NoTf32 -> "CUDA with TF32 disabled (cuDNN and matmul)"

/// Whether a path can be entered here: at once, only through a restart, or not at all.
type Entry =
    | Entered
    | NeedsRestart
    | Unavailable of reason: string

/// The result of the choice.
type Selection =
    /// This path passed its check and is in effect; the reports of every path tried, in order.
    | Chosen of KernelPath * CheckReport list
    /// The next path needs a fresh process; the reports so far.
    | Restart of KernelPath * CheckReport list
    /// No path passed.
    | Refused of CheckReport list

/// The ladder, pure in its effects: tries `paths` in order; `enter` puts a path into effect (or says it
/// needs a restart, or cannot be had), `check` checks the path in effect. The first path that passes is
/// chosen; a path that needs a restart ends the ladder in this process (the new process continues it).
let select (paths: KernelPath list) (enter: KernelPath -> Entry) (check: KernelPath -> CheckReport) : Selection =
    let rec go (paths: KernelPath list) (reports: CheckReport list) =
        match paths with
        | [] -> Refused (List.rev reports)
        | p :: rest ->
            match enter p with
            | Unavailable _ -> go rest reports
            | NeedsRestart -> Restart (p, List.rev reports)
            | Entered ->
                let r = check p
                if r.Passed then Chosen (p, List.rev (r :: reports)) else go rest (r :: reports)
    go paths []

/// The message when no path passes: what failed, and what the user can do.
let refusal (reports: CheckReport list) =
    let lines = reports |> List.map (fun r -> "  " + r.Summary)
    sprintf "refusing to start: the convolution kernels failed their numerical self-check against a float64 reference on every kernel path tried:\n%s\nTraining on these kernels would give wrong numbers (NaN on some AVX-512 CPUs). Try another DNNL_MAX_CPU_ISA (e.g. AVX2 or SSE41) or report the CPU model and the lines above."
        (String.Join("\n", lines))

// ---------------------------------------------------------------------------------------------
// Effects: the switches behind the paths (libtorch's global context, the process environment).

module private Native =
    [<DllImport("libtorch_cpu", EntryPoint = "_ZN2at13globalContextEv")>]
    extern nativeint globalContext()

    [<DllImport("libtorch_cpu", EntryPoint = "_ZN2at7Context20setUserEnabledMkldnnEb")>]
    extern void setUserEnabledMkldnn(nativeint context, [<MarshalAs(UnmanagedType.U1)>] bool enabled)

    [<DllImport("libtorch_cpu", EntryPoint = "_ZNK2at7Context17userEnabledMkldnnEv")>]
    extern [<MarshalAs(UnmanagedType.U1)>] bool userEnabledMkldnn(nativeint context)

    [<DllImport("libc", EntryPoint = "setenv", SetLastError = true)>]
    extern int setenv(string name, string value, int overwrite)

    [<DllImport("libc", EntryPoint = "execv", SetLastError = true)>]
    extern int execv(string path, string[] argv)

let private ensureTorch () = torch.__version__ |> ignore

/// Whether libtorch may use mkldnn (oneDNN) kernels (at::Context::userEnabledMkldnn).
let mkldnnEnabled () =
    ensureTorch ()
    Native.userEnabledMkldnn (Native.globalContext ())

/// Enables or disables mkldnn (oneDNN) kernels for the whole process, with immediate effect.
let setMkldnnEnabled (enabled: bool) =
    ensureTorch ()
    Native.setUserEnabledMkldnn (Native.globalContext (), enabled)

/// Environment variable that marks a process started by `restartWith` (its value: the path it runs
/// and the summary of the checks that failed before it), so the ladder continues, never loops.
let restartMarker = "RF_KERNEL_RESTART"

/// Testing and diagnosis: a comma-separated list of paths (`default`, `onednn-capped`, `native`, `no-tf32`) whose
/// check is treated as failed, to exercise the fallback on a CPU where every path is sound.
let rejectVariable = "RF_KERNEL_CHECK_REJECT"

/// The short key of a path in `RF_KERNEL_CHECK_REJECT`.
let key (p: KernelPath) =
    match p with
    | Default -> "default"
    | OneDnnCapped _ -> "onednn-capped"
    | Native -> "native"
    | NoTf32 -> "no-tf32"

/// Paths rejected by `RF_KERNEL_CHECK_REJECT`.
let rejectedByEnvironment () : Set<string> =
    match Environment.GetEnvironmentVariable rejectVariable with
    | null | "" -> Set.empty
    | v -> v.Split([| ','; ' ' |], StringSplitOptions.RemoveEmptyEntries) |> Array.map (fun s -> s.Trim().ToLowerInvariant()) |> Set.ofArray

/// Replaces this process by a fresh copy of itself (same executable, same arguments, same PID) with
/// DNNL_MAX_CPU_ISA = `isa` and the restart marker set. Returns only if exec fails (with the reason).
let restartWith (isa: string) (history: string) : string =
    let argv =
        IO.File.ReadAllBytes "/proc/self/cmdline"
        |> fun bytes -> Text.Encoding.UTF8.GetString(bytes).TrimEnd('\000').Split('\000')
    Native.setenv ("DNNL_MAX_CPU_ISA", isa, 1) |> ignore
    Native.setenv (restartMarker, history, 1) |> ignore
    Console.Out.Flush()
    Console.Error.Flush()
    let rc = Native.execv ("/proc/self/exe", Array.append argv [| null |])
    sprintf "execv failed (%d, errno %d)" rc (Marshal.GetLastPInvokeError())

/// The decision in effect in this process (None before `ensure` ran).
let mutable private current : (KernelPath * CheckReport list * string) option = None

/// The path in effect and the one-line account of how it was chosen ("not checked" before `ensure`).
let describeChoice () =
    match current with
    | None -> "convolution kernels: not checked"
    | Some (p, _, account) -> sprintf "convolution kernels: %s (%s)" p.Name account

/// The environment line (TorchEnvironment.describe) with the convolution kernel path appended.
let environmentLine () = TorchEnvironment.describe () + " | " + describeChoice ()

/// The decision in effect: path name, account, and every report (for config.effective.json).
let currentChoice () = current

/// Chooses and puts into effect a kernel path that passes the self-check for `cases` at `dtype` on
/// `device`, once per process (later calls check only cases not checked yet on the path in effect,
/// and move on along the ladder if one fails). `allowRestart`: whether this process may re-execute
/// itself with a capped oneDNN ISA (a command-line program may; a library host or a worker between
/// jobs should not). CUDA devices: default, then TF32 off, then a refusal.
/// Returns the selection; the caller restarts (`restartWith`) or refuses (`refusal`) as it says.
let choose (allowRestart: bool) (device: torch.Device) (dtype: torch.ScalarType) (cases: ConvolutionCase list) : Selection =
    let rejected = rejectedByEnvironment ()
    let restarted = Environment.GetEnvironmentVariable restartMarker
    let userCap = Environment.GetEnvironmentVariable "DNNL_MAX_CPU_ISA"
    let paths =
        match current with
        | Some (p, _, _) ->
            match p with
            | Default -> [ Default; Native ]
            | OneDnnCapped isa -> [ OneDnnCapped isa; Native ]
            | Native -> [ Native ]
            | NoTf32 -> [ NoTf32 ]
        | None when device.``type`` = DeviceType.CUDA -> [ Default; NoTf32 ]
        | None ->
            if not (String.IsNullOrEmpty restarted) && not (String.IsNullOrEmpty userCap) then [ OneDnnCapped userCap; Native ]
            elif not (String.IsNullOrEmpty userCap) then [ Default; Native ]
            else [ Default; OneDnnCapped "AVX2"; Native ]
    let inEffect p =
        match current, p with
        | Some (q, _, _), _ when q = p -> true
        | None, Default -> true
        | None, OneDnnCapped _ -> not (String.IsNullOrEmpty restarted)
        | _ -> false
    let enter p =
        if inEffect p then Entered
        else
            match p with
            | Default -> Unavailable "cannot return to the default path"
            | OneDnnCapped _ when device.``type`` <> DeviceType.CPU -> Unavailable "CPU-only switch"
            | OneDnnCapped _ -> if allowRestart then NeedsRestart else Unavailable "needs a restart, not allowed here"
            | Native -> setMkldnnEnabled false; Entered
            | NoTf32 when device.``type`` <> DeviceType.CUDA -> Unavailable "CUDA-only switch"
            | NoTf32 ->
                torch.backends.cudnn.allow_tf32 <- false
                torch.backends.cuda.matmul.allow_tf32 <- false
                Entered
    // Cases that already passed on the path in effect (same dtype and device) are not checked again.
    let passedBefore =
        match current with
        | Some (_, reports, _) ->
            reports |> List.filter (fun r -> r.Passed && r.DType = string dtype && r.Device = string device)
            |> List.collect (fun r -> r.Cases |> List.map (fun c -> c.Case)) |> Set.ofList
        | None -> Set.empty
    let check p =
        let todo = if inEffect p && current.IsSome then cases |> List.filter (passedBefore.Contains >> not) else cases
        let r = check p.Name device dtype todo
        if rejected.Contains (key p) then { r with Passed = false; Path = sprintf "%s (rejected by %s)" p.Name rejectVariable }
        else r
    let selection = select paths enter check
    match selection with
    | Chosen (p, reports) ->
        let previous = match current with Some (q, rs, _) when q = p -> rs | Some (_, rs, _) -> rs | None -> []
        let all = previous @ reports
        let passed = all |> List.filter (fun r -> r.Passed && r.Path = p.Name)
        let failed = all |> List.filter (fun r -> not r.Passed) |> List.map (fun r -> r.Summary)
        let earlier = (if String.IsNullOrEmpty restarted then [] else [ restarted ]) @ failed
        let account =
            sprintf "self-check passed on %d case(s): %s%s" (passed |> List.sumBy (fun r -> r.Cases.Length))
                (String.Join(", ", passed |> List.map (fun r -> sprintf "%s %d" r.DType r.Cases.Length)))
                (if earlier.IsEmpty then "" else "; chosen after: " + String.Join("; ", earlier))
        current <- Some (p, all, account)
    | _ -> ()
    selection
