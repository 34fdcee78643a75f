/// Helpers for the Host tests: temp folders, writers of the real binary formats, exception capture.
module ResearchFramework.Properties.HostTests.HostTestSupport

open System
open System.IO
open System.IO.Compression
open System.Text
open Expecto

/// A fresh temporary directory, deleted on Dispose.
type TempDir() =
    let path = Directory.CreateTempSubdirectory("rf-hosttest-").FullName
    member _.Path = path
    member _.File(name: string) = Path.Combine(path, name)
    interface IDisposable with
        member _.Dispose() = try Directory.Delete(path, true) with _ -> ()

let private bigEndian (v: int) =
    let b = BitConverter.GetBytes v
    if BitConverter.IsLittleEndian then Array.rev b else b

/// IDX bytes: magic, big-endian dims, payload.
let idxBytes (magic: int) (dims: int list) (payload: byte[]) =
    [| yield! bigEndian magic
       for d in dims do yield! bigEndian d
       yield! payload |]

let gzip (bytes: byte[]) =
    use ms = new MemoryStream()
    (use gz = new GZipStream(ms, CompressionLevel.Fastest)
     gz.Write(bytes, 0, bytes.Length))
    ms.ToArray()

/// n images of rows×cols with pixel (i, p) = (i * 7 + p) % 256, and labels i % 10.
let syntheticImages n rows cols = Array.init (n * rows * cols) (fun k -> byte ((k / (rows * cols) * 7 + k % (rows * cols)) % 256))
let syntheticLabels n = Array.init n (fun i -> byte (i % 10))

/// A .npy file: version major, dtype descr, fortran flag, shape, raw data bytes.
let npyBytes (major: byte) (descr: string) (fortran: bool) (shape: int list) (data: byte[]) =
    let shapeText = match shape with [ n ] -> sprintf "(%d,)" n | _ -> "(" + String.Join(", ", shape) + ")"
    let dict = sprintf "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" descr (if fortran then "True" else "False") shapeText
    let prefix = if major = 1uy then 10 else 12
    let total = (prefix + dict.Length + 1 + 63) / 64 * 64
    let header = Encoding.Latin1.GetBytes(dict.PadRight(total - prefix - 1) + "\n")
    let length = if major = 1uy then BitConverter.GetBytes(uint16 header.Length) else BitConverter.GetBytes(uint32 header.Length)
    Array.concat [ [| 0x93uy |]; Encoding.ASCII.GetBytes "NUMPY"; [| major; 0uy |]; length; header; data ]

let f8Bytes (values: float[]) = values |> Array.collect BitConverter.GetBytes
let f4Bytes (values: float32[]) = values |> Array.collect BitConverter.GetBytes

/// Runs f, expecting an exception of type 'e; returns it.
let throwsT<'e when 'e :> exn> (f: unit -> unit) : 'e =
    let outcome = try f (); None with :? 'e as e -> Some e
    match outcome with
    | Some e -> e
    | None -> failtestf "expected %s, nothing was thrown" typeof<'e>.Name
