/// The device the certificate and Algorithm properties run on: `RF_TEST_DEVICE` = cpu | cuda | auto
/// (default cpu). On CPU nothing changes; with `cuda` (or `auto` on a machine with CUDA) the same
/// properties run their torch computations on the GPU, against the same CPU/MathNet/exact oracles.
/// `cuda` on a machine without CUDA fails at start-up with the reason (never a silent CPU run).
module ResearchFramework.Properties.TestDevice

open TorchSharp
open ResearchFramework.MathCore

/// The preference as given (`RF_TEST_DEVICE`, default "cpu").
let preference =
    match System.Environment.GetEnvironmentVariable "RF_TEST_DEVICE" with
    | null | "" -> "cpu"
    | v -> v.Trim().ToLowerInvariant()

let private selected = lazy (TorchEnvironment.selectDevice preference)

/// The torch device of the run (resolved on first use).
let device () : torch.Device = selected.Force()

/// The device as the trainer's `Device` configuration string ("cpu" or "cuda").
let configName () = if (device ()).``type`` = DeviceType.CUDA then "cuda" else "cpu"

/// A CPU tensor moved to the test device (a copy; the caller disposes it).
let onDevice (t: torch.Tensor) : torch.Tensor = t.``to``(device ())
