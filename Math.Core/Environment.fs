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
        sprintf "TorchSharp %O | libtorch %s | CUDA available: %b | threads: %d"
            tsVersion (torch.__version__) (torch.cuda.is_available ()) (torch.get_num_threads ())

/// Small conversions F# needs around TorchSharp's overloads (float vs Tensor arguments).
[<AutoOpen>]
module TorchConversions =
    /// A float64 as a TorchSharp Scalar (selects the Scalar overload of add/sub/mul/div/gt…).
    let inline scalar (x: float) : Scalar = Scalar.op_Implicit x
