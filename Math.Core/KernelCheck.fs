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
    // u = 0: exact comparison (integer pass). k·u ≥ 1: no γ bound exists; such sizes are not certified (fail).
    let gammaOrInf uu = if float k * uu >= 0.5 then infinity else FloatingPoint.gamma uu k
    let factor = if u = 0.0 then 0.0 else 2.0 * (gammaOrInf u + gammaOrInf FloatingPoint.unitRoundoff64)
    let bound = magnitude.mul(scalar factor)
    let err = fast64.sub(reference).abs()
    // Entries with a zero bound must match exactly (0/0 → ratio 0; x/0 → +∞ fails).
    let ratio =
        if nonFinite > 0L then nan
        else
            let r = err.div(bound).nan_to_num(0.0, Double.PositiveInfinity, Double.PositiveInfinity)
            if r.numel () = 0L then 0.0 else r.max().item<float> ()
    { Name = name; Terms = terms; WorstRatio = ratio; NonFinite = nonFinite
      Passed = nonFinite = 0L && ratio <= 1.0 && Double.IsFinite factor }

/// One comparison pass of `convolution` against the float64 reference on inputs from `draw`;
/// `exact`: every entry must equal the reference bit for bit (integer inputs whose partial sums are exact).
let private checkPass (convolution: Convolution) (device: torch.Device) (dtype: torch.ScalarType) (c: ConvolutionCase)
                      (draw: int64[] -> torch.Tensor) (drawInput: int64[] -> torch.Tensor) (exact: bool) (label: string) : QuantityCheck list =
    use scope = torch.NewDisposeScope()
    let u = if exact then 0.0 else unitRoundoff dtype
    let oh, ow = c.OutputSize
    let kh, kw = c.Kernel
    let x = drawInput [| c.Batch; c.InChannels; c.Height; c.Width |]
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
    let name q = label + q
    let outputCheck = compare (name "output") kForward u y yRef yMag
    let gradientChecks =
        match gradsRef, gradsMag with
        | Some (gxR, gwR, gbR), Some (gxM, gwM, gbM) ->
            y.backward([| dy.``to``(device) |])
            let biasCheck =
                match bd, gbR, gbM with
                | Some bd, Some gbR, Some gbM -> [ compare (name "∂b") kWeight u bd.grad gbR gbM ]
                | _ -> []
            [ compare (name "∂x") kInput u xd.grad gxR gxM; compare (name "∂w") kWeight u wd.grad gwR gwM ] @ biasCheck
        | _ -> []
    outputCheck :: gradientChecks

/// Checks `convolution` on one case at `dtype` on `device` against the float64 reference, in two passes:
/// (1) seeded N(0, 1) inputs drawn in `dtype` (exact in float64), every entry within the γ_K bound;
/// (2) on the CPU, small integers (x sparse: max(0, k), k uniform in −3..3, so over half the entries
/// are 0, as after a ReLU; w, b, ∂y in −3..3): every product is at most 9 in magnitude, so every partial
/// sum of every output and gradient is an integer of magnitude ≤ 9K < 2²⁴ (checked conservatively as
/// 27K < 2²⁴), hence exact in float32 in any
/// summation order, so a correct kernel matches the reference bit for bit: a dropped, repeated or
/// misplaced term fails even where it would hide inside the γ_K bound. (Not on CUDA: its algorithm
/// choice may use transforms that are not exact on integers.)
let checkCase (convolution: Convolution) (device: torch.Device) (dtype: torch.ScalarType) (seed: uint64) (c: ConvolutionCase) : CaseCheck =
    let oh, ow = c.OutputSize
    if oh <= 0L || ow <= 0L then invalidArg "case" (sprintf "convolution case %s has an empty output" (c.Describe()))
    use gen = new torch.Generator(seed, torch.CPU)
    let gaussian (shape: int64[]) = torch.randn(shape, dtype = dtype, generator = gen)
    let integers (shape: int64[]) = torch.randint(-3L, 4L, shape, dtype = dtype, generator = gen)
    let sparse (shape: int64[]) = (use k = integers shape in k.clamp_min(scalar 0.0))
    let kh, kw = c.Kernel
    let largestSum = 27L * max ((c.InChannels / c.Groups) * kh * kw + 1L) (max ((c.OutChannels / c.Groups) * kh * kw) (c.Batch * oh * ow))
    let exactPass = device.``type`` = DeviceType.CPU && largestSum < (1L <<< 24)
    let quantities =
        checkPass convolution device dtype c gaussian gaussian false ""
        @ (if exactPass then checkPass convolution device dtype c integers sparse true "integers " else [])
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

/// Float64 bytes the reference of one case holds (unfolded columns N·(C/g)·k_h·k_w·L, for values,
/// magnitudes and their gradients: about 6 such arrays).
let referenceBytes (c: ConvolutionCase) =
    let oh, ow = c.OutputSize
    let kh, kw = c.Kernel
    6L * 8L * c.Batch * c.InChannels * kh * kw * oh * ow // (C/g)·k_h·k_w columns for each of the g groups

/// The case at the largest batch ≤ its own whose reference fits `budgetBytes` (at least 1): the run's
/// batch where affordable (kernel choice and threading may depend on the batch), smaller only for
/// layers whose float64 reference would not fit.
let fitBatch (budgetBytes: int64) (c: ConvolutionCase) =
    let perSample = referenceBytes { c with Batch = 1L }
    { c with Batch = max 1L (min c.Batch (budgetBytes / max 1L perSample)) }

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

    [<DllImport("libtorch_cpu", EntryPoint = "_ZN2at7Context20setUserEnabledNNPACKEb")>]
    extern void setUserEnabledNNPACK(nativeint context, [<MarshalAs(UnmanagedType.U1)>] bool enabled)

    [<DllImport("libtorch_cpu", EntryPoint = "_ZNK2at7Context17userEnabledNNPACKEv")>]
    extern [<MarshalAs(UnmanagedType.U1)>] bool userEnabledNNPACK(nativeint context)

    [<DllImport("libc", EntryPoint = "unsetenv", SetLastError = true)>]
    extern int unsetenv(string name)

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

/// Whether libtorch may use NNPACK convolutions (at::Context::userEnabledNNPACK). NNPACK's Winograd/FFT
/// algorithms are not sums of products, so the γ_K argument does not cover them: the native path turns them off.
let nnpackEnabled () =
    ensureTorch ()
    Native.userEnabledNNPACK (Native.globalContext ())

/// Enables or disables NNPACK convolutions for the whole process, with immediate effect.
let setNnpackEnabled (enabled: bool) =
    ensureTorch ()
    Native.setUserEnabledNNPACK (Native.globalContext (), enabled)

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
        |> fun bytes ->
            let text = Text.Encoding.UTF8.GetString(bytes)
            // Arguments are NUL-terminated: drop exactly the last terminator (empty arguments stay).
            (if text.EndsWith "\000" then text.Substring(0, text.Length - 1) else text).Split('\000')
    if Native.setenv ("DNNL_MAX_CPU_ISA", isa, 1) <> 0 || Native.setenv (restartMarker, (if String.IsNullOrEmpty history then "restarted" else history), 1) <> 0 then
        "setenv failed"
    else
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

/// The restart marker as this process found it; read once and removed from the environment (both the
/// managed copy and the C environment), so child processes (`rf` runs spawned by the tests, fetch tools)
/// do not inherit it: they see only the DNNL_MAX_CPU_ISA cap, i.e. a user cap, and check it as such.
let private startedByRestart =
    lazy (
        let marker = Environment.GetEnvironmentVariable restartMarker
        if not (String.IsNullOrEmpty marker) then
            Environment.SetEnvironmentVariable(restartMarker, null)
            Native.unsetenv restartMarker |> ignore
        marker)

/// Every (device, dtype, cases) group checked so far in this process, so a path switch re-checks them all.
let private checkedGroups = Collections.Generic.List<torch.Device * torch.ScalarType * ConvolutionCase list>()

/// Chooses and puts into effect a kernel path that passes the self-check for `cases` at `dtype` on
/// `device` (later calls check only the cases not yet checked on the path in effect; a path switch
/// re-checks every earlier case on the new path). `allowRestart`: whether this process may re-execute
/// itself with a capped oneDNN ISA (a command-line program may; a library host or a worker between jobs
/// should not). CPU ladder: default → oneDNN capped at AVX2 (restart) → native (mkldnn and NNPACK off) →
/// refusal; CUDA ladder: default → TF32 off → refusal. Returns the selection; the caller restarts
/// (`restartWith`) or refuses (`refusal`) as it says. After a refusal the switches are restored.
let choose (allowRestart: bool) (device: torch.Device) (dtype: torch.ScalarType) (cases: ConvolutionCase list) : Selection =
    let rejected = rejectedByEnvironment ()
    let restarted = startedByRestart.Force()
    let userCap = Environment.GetEnvironmentVariable "DNNL_MAX_CPU_ISA"
    let cuda = device.``type`` = DeviceType.CUDA
    let capped = not (String.IsNullOrEmpty restarted) && not (String.IsNullOrEmpty userCap)
    let paths =
        match current with
        | _ when cuda -> [ Default; NoTf32 ] |> List.filter (fun p -> match current with Some (NoTf32, _, _) -> p = NoTf32 | _ -> true)
        | Some (Native, _, _) -> [ Native ]
        | Some (OneDnnCapped isa, _, _) -> [ OneDnnCapped isa; Native ]
        | Some (Default, _, _) when String.IsNullOrEmpty userCap -> [ Default; OneDnnCapped "AVX2"; Native ]
        | Some _ -> [ Default; Native ]
        | None when capped -> [ OneDnnCapped userCap; Native ]
        | None when not (String.IsNullOrEmpty userCap) -> [ Default; Native ]
        | None -> [ Default; OneDnnCapped "AVX2"; Native ]
    let inEffect p =
        match current, p with
        | Some (q, _, _), _ when q = p -> true
        | None, Default -> true
        | None, OneDnnCapped isa -> capped && isa = userCap
        | _ -> false
    let switched = Collections.Generic.List<unit -> unit>()
    let earlierGroups = Collections.Generic.Dictionary<string, CheckReport list>()
    // NNPACK's Winograd/FFT convolutions are not sums of products (outside the γ_K argument and inexact on the
    // integer pass): off on every CPU path, before the first check.
    if not cuda && nnpackEnabled () then setNnpackEnabled false
    let enter p =
        if inEffect p then Entered
        else
            match p with
            | Default -> Unavailable "cannot return to the default path"
            | OneDnnCapped _ when cuda -> Unavailable "CPU-only switch"
            | OneDnnCapped _ -> if allowRestart then NeedsRestart else Unavailable "needs a restart, not allowed here"
            | Native when cuda -> Unavailable "CPU-only switch"
            | Native ->
                let mkldnn = mkldnnEnabled ()
                setMkldnnEnabled false
                switched.Add(fun () -> setMkldnnEnabled mkldnn)
                Entered
            | NoTf32 when not cuda -> Unavailable "CUDA-only switch"
            | NoTf32 ->
                let cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
                torch.backends.cudnn.allow_tf32 <- false
                torch.backends.cuda.matmul.allow_tf32 <- false
                switched.Add(fun () -> torch.backends.cudnn.allow_tf32 <- cudnn; torch.backends.cuda.matmul.allow_tf32 <- matmul)
                Entered
    // Cases that already passed on the path in effect (same path, dtype and device) are not checked again.
    let passedBefore =
        match current with
        | Some (q, reports, _) ->
            reports |> List.filter (fun r -> r.Passed && r.Path = q.Name && r.DType = string dtype && r.Device = string device)
            |> List.collect (fun r -> r.Cases |> List.map (fun c -> c.Case)) |> Set.ofList
        | None -> Set.empty
    let check p =
        let r =
            if inEffect p && current.IsSome then check p.Name device dtype (cases |> List.filter (passedBefore.Contains >> not))
            elif current.IsSome then
                // A switch after earlier checks: the new path must pass every earlier group too.
                let groups = [ for (d, t, cs) in checkedGroups -> check p.Name d t cs ] @ [ check p.Name device dtype cases ]
                earlierGroups.[p.Name] <- groups |> List.take (groups.Length - 1)
                // The decision needs every group; the record keeps one report per (device, dtype) group (below).
                { List.last groups with Passed = groups |> List.forall (fun g -> g.Passed); Seconds = groups |> List.sumBy (fun g -> g.Seconds) }
            else check p.Name device dtype cases
        if rejected.Contains (key p) then { r with Passed = false; Path = sprintf "%s (rejected by %s)" p.Name rejectVariable }
        else r
    let selection = select paths enter check
    match selection with
    | Chosen (p, reports) ->
        checkedGroups.Add((device, dtype, cases))
        let previous = match current with Some (_, rs, _) -> rs | None -> []
        let rechecked = match earlierGroups.TryGetValue p.Name with | true, gs -> gs | _ -> []
        let all = previous @ rechecked @ reports
        let passed = all |> List.filter (fun r -> r.Passed && r.Path = p.Name)
        let failed = all |> List.filter (fun r -> not r.Passed) |> List.map (fun r -> r.Summary)
        let earlier = (if String.IsNullOrEmpty restarted then [] else [ restarted ]) @ failed
        let account =
            sprintf "self-check passed on %d case(s): %s%s" (passed |> List.sumBy (fun r -> r.Cases.Length))
                (String.Join(", ", passed |> List.map (fun r -> sprintf "%s %d" r.DType r.Cases.Length)))
                (if earlier.IsEmpty then "" else "; chosen after: " + String.Join("; ", earlier))
        current <- Some (p, all, account)
    | Refused _ -> for restore in switched do restore ()
    | Restart _ -> ()
    selection

/// Raised when no convolution kernel path passes its self-check (the run must not start), or when the
/// restart the ladder asked for could not be made.
type KernelCheckException(message: string) =
    inherit InvalidOperationException(message)

/// `choose`, then act on its answer: a chosen path returns; a restart re-executes this process (and
/// returns only by raising, with the reason, if exec fails); a refusal raises `KernelCheckException`
/// with `refusal`'s message. The one place that turns a selection into effects, for `rf` and the tests.
let ensure (allowRestart: bool) (device: torch.Device) (dtype: torch.ScalarType) (cases: ConvolutionCase list) : unit =
    match choose allowRestart device dtype cases with
    | Chosen _ -> ()
    | Restart (path, reports) ->
        let isa = match path with OneDnnCapped isa -> isa | _ -> "AVX2"
        let history = String.Join("; ", reports |> List.map (fun r -> r.Summary))
        eprintfn "kernel self-check: %s; restarting with DNNL_MAX_CPU_ISA=%s" history isa
        let why = restartWith isa history
        raise (KernelCheckException(sprintf "kernel self-check: the default kernels failed and the restart with DNNL_MAX_CPU_ISA=%s failed: %s" isa why))
    | Refused reports -> raise (KernelCheckException(refusal reports))
