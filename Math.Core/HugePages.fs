namespace ResearchFramework.MathCore

open System
open System.IO
open System.Runtime.InteropServices

// This file is first in compile order and refers to nothing of TorchSharp: an F# file's top-level values are initialised
// together on first use, so `HugePages.request` in a file with torch values (Environment.fs: `TorchConversions.one`)
// would load libtorch before it sets the variable.

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
