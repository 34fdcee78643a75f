/// On-disk training state (SPEC §4 runs must survive a crash): a single binary file written
/// atomically (temporary file, flush, rename). Layout: magic, JSON header (`CheckpointHeader`),
/// then the model state, the body optimiser state, the readout and its optimiser state when
/// present, the last certified body, the body at the switch, the global torch RNG state, and
/// (format 2) the guard's reference feature matrix Φ_ref.
namespace ResearchFramework.Algorithm

open System
open System.IO
open System.Text.Json
open TorchSharp

/// Scalar state of a run at an iteration boundary (certificates as Math.Core JSON).
type CheckpointHeader =
    { FormatVersion: int
      Iteration: int
      Phase: Phase
      Switched: bool
      SigmaTau: float
      GuardTripped: bool
      LastCertifiedIteration: int
      LastCertifiedFingerprint: string
      ReadoutFeatures: int
      Seed: int
      TotalIterations: int
      SwitchIteration: int
      ArchitectureDescription: string
      DatasetFingerprint: string
      Certificates: string[]
      /// Format 2: σ̄ behind the readout's current step cap, and the bounds of the guard's Weyl
      /// reference Φ̃_ref (whose features follow the RNG state; absent in format 1).
      ReadoutSigmaMaxUpper: float
      ReferenceSigmaMin: float
      ReferenceSigmaMax: float
      /// The run's ReadoutChoice (0 = Separate, also for files written before the choice existed).
      Readout: int }

module Checkpoint =

    let magic = "ResearchFramework.Algorithm.Checkpoint/1"

    let private jsonOptions =
        let o = JsonSerializerOptions(WriteIndented = false)
        o.NumberHandling <- Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals
        o

    let serializeHeader (h: CheckpointHeader) = JsonSerializer.Serialize(h, jsonOptions)
    let deserializeHeader (s: string) = JsonSerializer.Deserialize<CheckpointHeader>(s, jsonOptions)

    /// Writes dtype, shape and raw bytes of a CPU copy of a tensor.
    let writeTensor (w: BinaryWriter) (t: torch.Tensor) =
        use c = t.detach().cpu().contiguous()
        w.Write(int (sbyte c.dtype))
        w.Write(int (c.dim ()))
        for d in c.shape do w.Write d
        let bytes = c.bytes.ToArray()
        w.Write bytes.Length
        w.Write bytes

    /// Reads a tensor written by `writeTensor` (on the CPU).
    let readTensor (r: BinaryReader) : torch.Tensor =
        let dtype : torch.ScalarType = LanguagePrimitives.EnumOfValue (sbyte (r.ReadInt32()))
        let dims = r.ReadInt32()
        let shape = Array.init dims (fun _ -> r.ReadInt64())
        let length = r.ReadInt32()
        let bytes = r.ReadBytes length
        let t = torch.empty(shape, dtype = dtype)
        t.bytes <- Span<byte>(bytes)
        t

    let writeTensors (w: BinaryWriter) (ts: torch.Tensor[]) =
        w.Write(if isNull ts then -1 else ts.Length)
        if not (isNull ts) then for t in ts do writeTensor w t

    let readTensors (r: BinaryReader) : torch.Tensor[] =
        let n = r.ReadInt32()
        if n < 0 then null else Array.init n (fun _ -> readTensor r)

    /// File name of the checkpoint taken before iteration t.
    let fileName (t: int) = sprintf "checkpoint-%08d.bin" t

    /// Writes `body` to `path` atomically: a temporary sibling is written and flushed, then renamed.
    let writeAtomically (path: string) (body: BinaryWriter -> unit) =
        let dir = Path.GetDirectoryName(Path.GetFullPath path)
        Directory.CreateDirectory dir |> ignore
        let tmp = path + ".tmp"
        do
            use fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None)
            use w = new BinaryWriter(fs)
            w.Write magic
            body w
            w.Flush()
            fs.Flush true
        File.Move(tmp, path, true)

    /// Opens a checkpoint, checks its magic and hands the reader (positioned after it) to `read`.
    let read (path: string) (read: BinaryReader -> 'a) : 'a =
        use fs = File.OpenRead path
        use r = new BinaryReader(fs)
        let m = r.ReadString()
        if m <> magic then raise (InvalidDataException(sprintf "%s is not a checkpoint (magic %s)" path m))
        read r

    /// The newest checkpoint in a directory (highest iteration), or null.
    let latest (directory: string) : string =
        if isNull directory || not (Directory.Exists directory) then null
        else
            Directory.GetFiles(directory, "checkpoint-*.bin")
            |> Array.sort
            |> Array.tryLast
            |> Option.toObj
