namespace ResearchFramework.MathCore

open System
open System.IO
open System.Runtime.InteropServices
open TorchSharp

/// Huge pages for libtorch's large CPU buffers (docs/BENCHMARKS.md "Page faults").
///
/// A tensor's memory is paged in on first touch. On this project's machines (Firecracker VMs) a 4 KiB page fault costs
/// ≈ 10 µs, so each fresh 32 MiB buffer costs ≈ 80 ms before any arithmetic: measured 80 ms for `torch.empty` + fill of a
/// 2048 × 4096 float32 block, 160 ms for its float64 copy, 75–110 ms for a 2048² float64 `zeros`; with 2 MiB pages,
/// 10 ms each. libtorch's CPU allocator (c10, `alloc_cpu.cpp`) aligns buffers of ≥ 2 MiB to 2 MiB and asks the kernel
/// for transparent huge pages (madvise MADV_HUGEPAGE) when the environment variable `THP_MEM_ALLOC_ENABLE` is 1. c10
/// reads it once, at its first allocation, through getenv: it must be in the native environment before TorchSharp loads
/// libtorch (.NET's Environment.SetEnvironmentVariable does not reach getenv on Linux). numpy does the same for its
/// own arrays (madvise on large allocations, on by default).
///
/// Memory contents, results and bounds are unchanged: only where the pages come from. A kernel with THP set to
/// "never" ignores the request.
module HugePages =
    /// The variable c10's allocator reads.
    [<Literal>]
    let Variable = "THP_MEM_ALLOC_ENABLE"

    module private Libc =
        [<DllImport("libc", EntryPoint = "setenv", SetLastError = true)>]
        extern int setenv(string name, string value, int overwrite)

        [<DllImport("libc", EntryPoint = "getenv")>]
        extern nativeint getenv(string name)

    /// The variable's value in the native environment (what c10 will read); None when unset.
    let nativeValue () : string option =
        if not (OperatingSystem.IsLinux ()) then None
        else
            match Libc.getenv Variable with
            | p when p = 0n -> None
            | p -> Some (Marshal.PtrToStringUTF8 p)

    /// Puts THP_MEM_ALLOC_ENABLE=1 in the native environment unless it is already set (a value the user gave, e.g. 0,
    /// is kept). Call it first thing in a process's entry point, before any TorchSharp call; later it is harmless but
    /// may come too late for c10. Linux only; elsewhere nothing is done.
    let request () : unit =
        if OperatingSystem.IsLinux () && (nativeValue ()).IsNone then
            Libc.setenv (Variable, "1", 0) |> ignore

    /// The kernel's THP mode (the bracketed word of /sys/kernel/mm/transparent_hugepage/enabled: always, madvise or
    /// never), or None where the file is absent.
    let kernelMode () : string option =
        let path = "/sys/kernel/mm/transparent_hugepage/enabled"
        try
            let text = File.ReadAllText path
            let i, j = text.IndexOf '[', text.IndexOf ']'
            if i >= 0 && j > i then Some (text.Substring(i + 1, j - i - 1)) else None
        with _ -> None

    /// One phrase for the environment line: whether libtorch's large buffers get huge pages in this process.
    let describe () : string =
        let requested = nativeValue () = Some "1"
        match kernelMode (), requested with
        | Some "never", _ -> "tensor pages: 4 KiB (kernel THP never)"
        | Some mode, true -> sprintf "tensor pages: 2 MiB for buffers >= 2 MiB (%s=1, kernel THP %s)" Variable mode
        | _, true -> sprintf "tensor pages: %s=1 (kernel THP mode unknown)" Variable
        | _, false -> sprintf "tensor pages: 4 KiB (%s=%s)" Variable (defaultArg (nativeValue ()) "unset")

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
