// TorchSharp and the ResearchFramework libraries for an F# script, from the solution's build output
// (`./build.sh setup` first): `#load "torch-from-build.fsx"` (path relative to your script).
//
// libtorch is loaded by full path before TorchSharp looks for it: a script has no .deps.json, so TorchSharp would
// search `libtorch_cpu.so` by name, and a system-wide libtorch (e.g. Debian's python3-torch) would be found first.
#I __SOURCE_DIRECTORY__
#I "../Host/bin/Release/net10.0"
#r "TorchSharp.dll"
#r "Math.Core.dll"
#r "Algorithm.dll"

let private native = System.IO.Path.Combine(__SOURCE_DIRECTORY__, "../Host/bin/Release/net10.0/runtimes/linux-x64/native")
for library in [ "libtorch_cpu.so"; "libLibTorchSharp.so" ] do
    System.Runtime.InteropServices.NativeLibrary.Load(System.IO.Path.Combine(native, library)) |> ignore
