namespace ResearchFramework.MathCore

open TorchSharp

/// The torch runtime a computation runs on: device choice and a printable description.
module TorchEnvironment =

    /// Device preference: "auto" picks CUDA when available, else CPU; "cpu"/"cuda" force one.
    let selectDevice (preference: string) : torch.Device =
        match (if isNull preference then "auto" else preference.Trim().ToLowerInvariant()) with
        | "" | "auto" -> if torch.cuda.is_available () then torch.CUDA else torch.CPU
        | "cpu" -> torch.CPU
        | "cuda" ->
            if torch.cuda.is_available () then torch.CUDA
            else invalidArg "preference" "device 'cuda' requested but CUDA is not available (is the TorchSharp-cuda-linux backend installed? build with -p:TorchBackend=cuda)"
        | other -> invalidArg "preference" (sprintf "unknown device '%s': expected auto, cpu or cuda" other)

    /// One line describing TorchSharp, libtorch, device availability and thread count.
    let describe () : string =
        let tsVersion = typeof<torch.Tensor>.Assembly.GetName().Version
        sprintf "TorchSharp %O | libtorch %s | CUDA available: %b | threads: %d | %s"
            tsVersion (torch.__version__) (torch.cuda.is_available ()) (torch.get_num_threads ()) (HugePages.describe ())

/// Small conversions F# needs around TorchSharp's overloads (float vs Tensor arguments).
[<AutoOpen>]
module TorchConversions =
    /// The last Scalars made by `scalar`, kept reachable (a ring of 4096).
    let private kept : Scalar[] = Array.zeroCreate 4096
    let private made = ref -1L

    /// A float64 as a TorchSharp Scalar (selects the Scalar overload of add/sub/mul/div/gt…), kept reachable until
    /// 4096 later ones have been made. TorchSharp 0.107 hands a Scalar's native handle to libtorch without keeping the
    /// Scalar alive (no GC.KeepAlive): an argument made inline (`t.mul(scalar 2.0)`) is unreachable during the native
    /// call, and a GC on any thread may run its finalizer, which frees the native Scalar the call is reading (a
    /// use-after-free, seen as "toDouble … Expected false to be true" in tiled certificates). Held here, it is freed
    /// only long after the call that used it has returned, whatever the caller's GC settings (library users included).
    let scalar (x: float) : Scalar =
        let s = Scalar.op_Implicit x
        kept.[int (System.Threading.Interlocked.Increment(&made.contents) &&& 4095L)] <- s
        s

    /// The Scalar 1, alive for the whole process: the alpha to pass explicitly to `add`/`add_` of a Tensor, whose
    /// one-argument overloads make an implicit Scalar 1 that nothing keeps alive (see `scalar`).
    let one : Scalar = Scalar.op_Implicit 1.0
