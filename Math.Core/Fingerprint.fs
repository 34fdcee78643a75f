/// SHA-256 fingerprints naming what a certificate covers: data, parameters, matrices.
module ResearchFramework.MathCore.Fingerprint

open System
open System.Security.Cryptography
open TorchSharp

let private hex (bytes: byte[]) = Convert.ToHexString(bytes).ToLowerInvariant()

/// Appends a tensor's dtype, shape and raw contiguous CPU bytes to an incremental hash.
let appendTensor (hash: IncrementalHash) (t: torch.Tensor) =
    use cpu = t.detach().cpu().contiguous()
    hash.AppendData(Text.Encoding.UTF8.GetBytes(sprintf "%O%A;" cpu.dtype cpu.shape))
    hash.AppendData(cpu.bytes.ToArray())

/// Fingerprint of a sequence of tensors (dtype, shape and bytes of each, in order).
let ofTensors (tensors: torch.Tensor seq) : string =
    use hash = IncrementalHash.CreateHash HashAlgorithmName.SHA256
    for t in tensors do appendTensor hash t
    "sha256:" + hex (hash.GetHashAndReset())

/// Fingerprint of a module's parameters and buffers (names, dtypes, shapes, values), in
/// registration order: two modules with equal fingerprints compute the same function.
let ofModule (m: torch.nn.Module) : string =
    use hash = IncrementalHash.CreateHash HashAlgorithmName.SHA256
    for struct (name, p) in m.named_parameters () do
        hash.AppendData(Text.Encoding.UTF8.GetBytes name)
        appendTensor hash p
    for struct (name, b) in m.named_buffers () do
        hash.AppendData(Text.Encoding.UTF8.GetBytes name)
        appendTensor hash b
    "sha256:" + hex (hash.GetHashAndReset())

/// Fingerprint of raw bytes (for example a file).
let ofBytes (bytes: byte[]) : string = "sha256:" + hex (SHA256.HashData bytes)
