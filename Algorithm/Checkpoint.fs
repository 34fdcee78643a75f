/// On-disk training state (SPEC §4 runs must survive a crash): a single binary file written
/// atomically (temporary file, flush, rename) and verified on load: the file ends with the SHA-256
/// of everything before it (magic `/2`), so a flipped or truncated byte anywhere is refused with the
/// file's name, and `latestValid` falls back to the newest checkpoint that verifies. Files with
/// magic `/1` (written before the hash) are read unverified. Layout: magic, JSON header (`CheckpointHeader`),
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
      Readout: int
      /// Theorem P's measurements (`PreconditionedReadout.ProgressText`) when the preconditioned readout runs;
      /// null otherwise and in files written before it (its factor is rebuilt from the body at the switch).
      Preconditioner: string }

module Checkpoint =

    /// Magic of the current format: content hash trailer (SHA-256 of all preceding bytes + `trailerTag`).
    let magic = "ResearchFramework.Algorithm.Checkpoint/2"

    /// Magic of files written before the hash trailer: read, but cannot be verified.
    let legacyMagic = "ResearchFramework.Algorithm.Checkpoint/1"

    /// The last 8 bytes of a verified checkpoint, after its 32-byte SHA-256.
    let trailerTag = "RFSHA256"B

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

    /// Writes `body` to `path` atomically: a temporary sibling is written, hashed (SHA-256 appended with
    /// `trailerTag`) and flushed, then renamed over `path`.
    let writeAtomically (path: string) (body: BinaryWriter -> unit) =
        let dir = Path.GetDirectoryName(Path.GetFullPath path)
        Directory.CreateDirectory dir |> ignore
        let tmp = path + ".tmp"
        do
            use fs = new FileStream(tmp, FileMode.Create, FileAccess.ReadWrite, FileShare.None)
            do
                use w = new BinaryWriter(fs, Text.Encoding.UTF8, true)
                w.Write magic
                body w
                w.Flush()
            fs.Position <- 0L
            let hash = Security.Cryptography.SHA256.HashData(fs)
            fs.Position <- fs.Length
            fs.Write(hash, 0, hash.Length)
            fs.Write(trailerTag, 0, trailerTag.Length)
            fs.Flush true
        File.Move(tmp, path, true)

    /// Checks a checkpoint file without loading it: magic, and for the current format the SHA-256 trailer
    /// over every other byte. Error: the reason (the caller names the file).
    let verify (path: string) : Result<unit, string> =
        try
            use fs = File.OpenRead path
            use r = new BinaryReader(fs)
            let m = try r.ReadString() with _ -> "(unreadable)"
            if m = legacyMagic then Ok ()
            elif m <> magic then Error (sprintf "not a checkpoint (magic %s)" m)
            elif fs.Length < int64 (fs.Position + 40L) then Error (sprintf "truncated: %d bytes, no hash trailer" fs.Length)
            else
                let contentLength = fs.Length - 40L
                let trailer = Array.zeroCreate<byte> 40
                fs.Position <- contentLength
                fs.ReadExactly(trailer, 0, 40)
                if trailer.[32..] <> trailerTag then Error "no hash trailer (truncated or overwritten at the end)"
                else
                    fs.Position <- 0L
                    let hasher = Security.Cryptography.IncrementalHash.CreateHash(Security.Cryptography.HashAlgorithmName.SHA256)
                    let buffer = Array.zeroCreate<byte> (1 <<< 20)
                    let mutable left = contentLength
                    while left > 0L do
                        let n = fs.Read(buffer, 0, int (min left (int64 buffer.Length)))
                        if n <= 0 then failwith "unexpected end of file"
                        hasher.AppendData(buffer, 0, n)
                        left <- left - int64 n
                    let actual = hasher.GetHashAndReset()
                    if actual = trailer.[..31] then Ok ()
                    else Error (sprintf "content hash mismatch (stored %s, computed %s): the file is corrupted"
                                    (Convert.ToHexString(trailer.[..31]).ToLowerInvariant()) (Convert.ToHexString(actual).ToLowerInvariant()))
        with e -> Error e.Message

    /// Opens a checkpoint, verifies it (`verify`) and hands the reader (positioned after the magic) to
    /// `read`. Any defect raises InvalidDataException naming the file.
    let read (path: string) (read: BinaryReader -> 'a) : 'a =
        match verify path with
        | Error reason -> raise (InvalidDataException(sprintf "checkpoint %s refused: %s" path reason))
        | Ok () ->
            try
                use fs = File.OpenRead path
                use r = new BinaryReader(fs)
                r.ReadString() |> ignore
                read r
            with
            | :? EndOfStreamException | :? Text.Json.JsonException | :? FormatException | :? OverflowException | :? OutOfMemoryException as e ->
                raise (InvalidDataException(sprintf "checkpoint %s is corrupted: %s" path e.Message, e))

    /// The newest checkpoint in a directory (highest iteration), or null.
    let latest (directory: string) : string =
        if isNull directory || not (Directory.Exists directory) then null
        else
            Directory.GetFiles(directory, "checkpoint-*.bin")
            |> Array.sort
            |> Array.tryLast
            |> Option.toObj

    /// The newest checkpoint in a directory that verifies (`verify`), and every newer one refused with
    /// its reason (newest first); (null, refused) when none verifies.
    let latestValid (directory: string) : string * (string * string) list =
        if isNull directory || not (Directory.Exists directory) then null, []
        else
            let files = Directory.GetFiles(directory, "checkpoint-*.bin") |> Array.sort |> Array.rev |> List.ofArray
            let rec go files refused =
                match files with
                | [] -> null, List.rev refused
                | f :: rest ->
                    match verify f with
                    | Ok () -> f, List.rev refused
                    | Error why -> go rest ((f, why) :: refused)
            go files []
