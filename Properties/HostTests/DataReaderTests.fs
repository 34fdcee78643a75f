/// IDX, CIFAR, Semeion and .npy readers on files written here in the real formats.
module ResearchFramework.Properties.HostTests.DataReaderTests

open System
open System.IO
open Expecto
open ResearchFramework.Host.Data
open ResearchFramework.Properties.HostTests.HostTestSupport

[<Tests>]
let idx =
    testList "Host.Data.Idx" [
        test "IDX images and labels round trip" {
            use dir = new TempDir()
            let pixels = syntheticImages 5 4 3
            File.WriteAllBytes(dir.File "img", idxBytes 2051 [ 5; 4; 3 ] pixels)
            File.WriteAllBytes(dir.File "lbl", idxBytes 2049 [ 5 ] (syntheticLabels 5))
            let images = IdxReader.ReadImages(dir.File "img")
            Expect.equal (images.Count, images.Rows, images.Columns) (5, 4, 3) "dims"
            Expect.sequenceEqual images.Pixels pixels "pixels"
            Expect.sequenceEqual (IdxReader.ReadLabels(dir.File "lbl")) (syntheticLabels 5) "labels"
        }
        test "gzip IDX is read transparently" {
            use dir = new TempDir()
            let pixels = syntheticImages 3 2 2
            File.WriteAllBytes(dir.File "img.gz", gzip (idxBytes 2051 [ 3; 2; 2 ] pixels))
            Expect.sequenceEqual (IdxReader.ReadImages(dir.File "img.gz")).Pixels pixels "pixels"
        }
        test "truncated IDX names the file and the offset" {
            use dir = new TempDir()
            let bytes = idxBytes 2051 [ 3; 2; 2 ] (syntheticImages 3 2 2)
            let path = dir.File "short"
            File.WriteAllBytes(path, bytes[.. bytes.Length - 3])
            let e = throwsT<DataFormatException> (fun () -> IdxReader.ReadImages path |> ignore)
            Expect.stringContains e.Message path "file named"
            Expect.stringContains e.Message "byte offset 26" "offset named"
            Expect.stringContains e.Message "expected 12 data bytes" "what was expected"
        }
        test "wrong magic and truncated header are rejected" {
            use dir = new TempDir()
            File.WriteAllBytes(dir.File "lbl", idxBytes 2051 [ 1 ] [| 0uy |])
            let e = throwsT<DataFormatException> (fun () -> IdxReader.ReadLabels(dir.File "lbl") |> ignore)
            Expect.stringContains e.Message "magic number 2049" "magic"
            File.WriteAllBytes(dir.File "hdr", (idxBytes 2051 [ 3; 2; 2 ] [||])[.. 9])
            let e2 = throwsT<DataFormatException> (fun () -> IdxReader.ReadImages(dir.File "hdr") |> ignore)
            Expect.stringContains e2.Message "byte offset 10" "offset"
        }
    ]

let private cifarRecord (labels: byte list) (fill: byte) = Array.append (Array.ofList labels) (Array.create 3072 fill)

[<Tests>]
let cifar =
    testList "Host.Data.Cifar" [
        test "CIFAR-10 records: label byte + 3072 pixels, over several batch files" {
            use dir = new TempDir()
            File.WriteAllBytes(dir.File "a.bin", Array.append (cifarRecord [ 3uy ] 10uy) (cifarRecord [ 9uy ] 20uy))
            File.WriteAllBytes(dir.File "b.bin", cifarRecord [ 0uy ] 30uy)
            let batch = CifarReader.ReadCifar10(dir.File "a.bin", dir.File "b.bin")
            Expect.sequenceEqual batch.Labels [ 3; 9; 0 ] "labels"
            Expect.equal batch.Pixels.Length (3 * 3072) "pixels"
            Expect.equal (batch.Pixels[3072], batch.Pixels[2 * 3072 + 5]) (20uy, 30uy) "pixel data"
            Expect.isNull batch.CoarseLabels "no coarse labels"
        }
        test "CIFAR-100 records: coarse + fine label bytes" {
            use dir = new TempDir()
            File.WriteAllBytes(dir.File "train.bin", Array.append (cifarRecord [ 4uy; 77uy ] 1uy) (cifarRecord [ 19uy; 99uy ] 2uy))
            let batch = CifarReader.ReadCifar100(dir.File "train.bin")
            Expect.sequenceEqual batch.Labels [ 77; 99 ] "fine"
            Expect.sequenceEqual batch.CoarseLabels [ 4; 19 ] "coarse"
        }
        test "truncated CIFAR file and out-of-range label name file and offset" {
            use dir = new TempDir()
            let path = dir.File "t.bin"
            File.WriteAllBytes(path, Array.append (cifarRecord [ 1uy ] 0uy) (Array.zeroCreate 100))
            let e = throwsT<DataFormatException> (fun () -> CifarReader.ReadCifar10 path |> ignore)
            Expect.stringContains e.Message path "file"
            Expect.stringContains e.Message "byte offset 3073" "offset of the partial record"
            File.WriteAllBytes(path, Array.append (cifarRecord [ 1uy ] 0uy) (cifarRecord [ 10uy ] 0uy))
            let e2 = throwsT<DataFormatException> (fun () -> CifarReader.ReadCifar10 path |> ignore)
            Expect.stringContains e2.Message "byte offset 3073: expected a label in 0..9" "label check"
        }
    ]

[<Tests>]
let semeion =
    testList "Host.Data.Semeion" [
        test "Semeion lines: 256 pixels then one-hot label" {
            use dir = new TempDir()
            let line label = String.Join(" ", [ for p in 0..255 -> if p % 2 = 0 then "1.0000" else "0.0000" ] @ [ for c in 0..9 -> if c = label then "1" else "0" ])
            File.WriteAllText(dir.File "semeion.data", line 7 + " \n" + line 2 + "\n")
            let data = SemeionReader.Read(dir.File "semeion.data")
            Expect.sequenceEqual data.Labels [ 7; 2 ] "labels"
            Expect.equal (data.Channels, data.Height, data.Width) (1, 16, 16) "shape"
            Expect.equal (data.Images[0], data.Images[1]) (1.0f, 0.0f) "pixels"
            File.WriteAllText(dir.File "bad.data", line 7 + "\n" + "1 0 1\n")
            let e = throwsT<DataFormatException> (fun () -> SemeionReader.Read(dir.File "bad.data") |> ignore)
            Expect.stringContains e.Message "266 values" "what was expected"
        }
    ]

[<Tests>]
let npy =
    testList "Host.Data.Npy" [
        test "<f8 v1.0 2-D C order reads row-major" {
            use dir = new TempDir()
            File.WriteAllBytes(dir.File "m.npy", npyBytes 1uy "<f8" false [ 2; 3 ] (f8Bytes [| 1.0; 2.0; 3.0; 4.0; 5.0; 6.5 |]))
            let m = NpyReader.Read(dir.File "m.npy")
            Expect.equal (m.Rows, m.Columns) (2, 3) "shape"
            Expect.sequenceEqual m.Values [ 1.0; 2.0; 3.0; 4.0; 5.0; 6.5 ] "values"
        }
        test "<f4 with a v2.0 header" {
            use dir = new TempDir()
            File.WriteAllBytes(dir.File "m.npy", npyBytes 2uy "<f4" false [ 1; 2 ] (f4Bytes [| 0.5f; -2.0f |]))
            Expect.sequenceEqual (NpyReader.Read(dir.File "m.npy")).Values [ 0.5; -2.0 ] "values"
        }
        test "defects throw NpyFormatException with a specific message" {
            use dir = new TempDir()
            let check (name: string) (bytes: byte[]) (fragment: string) =
                File.WriteAllBytes(dir.File name, bytes)
                let e = throwsT<NpyFormatException> (fun () -> NpyReader.Read(dir.File name) |> ignore)
                Expect.stringContains e.Message fragment name
                Expect.stringContains e.Message (dir.File name) "file named"
            check "fortran.npy" (npyBytes 1uy "<f8" true [ 2; 2 ] (f8Bytes [| 1.0; 2.0; 3.0; 4.0 |])) "fortran_order is True"
            check "trunc.npy" (npyBytes 1uy "<f8" false [ 2; 2 ] (f8Bytes [| 1.0; 2.0; 3.0 |])) "truncated data"
            check "nan.npy" (npyBytes 1uy "<f8" false [ 1; 2 ] (f8Bytes [| 1.0; nan |])) "entry (0, 1) is NaN"
            check "inf.npy" (npyBytes 1uy "<f4" false [ 1; 1 ] (f4Bytes [| infinityf |])) "must be finite"
            check "dtype.npy" (npyBytes 1uy "<i8" false [ 1; 1 ] (Array.zeroCreate 8)) "unsupported dtype '<i8'"
            check "bigendian.npy" (npyBytes 1uy ">f8" false [ 1; 1 ] (Array.zeroCreate 8)) "unsupported dtype '>f8'"
            check "1d.npy" (npyBytes 1uy "<f8" false [ 2 ] (f8Bytes [| 1.0; 2.0 |])) "a 2-D matrix is required"
            check "magic.npy" (Text.Encoding.ASCII.GetBytes "not numpy at all") "missing the \\x93NUMPY magic"
        }

        test "crafted headers are refused as numpy refuses them: wrapped element counts, keys inside values, extra or repeated keys" {
            use dir = new TempDir()
            /// A version-1 file with the header dictionary given verbatim and 4 × 6 float64 entries.
            let raw (dict: string) =
                let total = (10 + dict.Length + 1 + 63) / 64 * 64
                let header = Text.Encoding.Latin1.GetBytes(dict.PadRight(total - 11) + "\n")
                Array.concat [ [| 0x93uy |]; Text.Encoding.ASCII.GetBytes "NUMPY"; [| 1uy; 0uy |]; BitConverter.GetBytes(uint16 header.Length)
                               header; f8Bytes (Array.init 24 float) ]
            let check (name: string) (dict: string) (fragment: string) =
                File.WriteAllBytes(dir.File name, raw dict)
                let e = throwsT<NpyFormatException> (fun () -> NpyReader.Read(dir.File name) |> ignore)
                Expect.stringContains e.Message fragment (name + ": " + e.Message)
            // 4611686018427387905 · 4 wraps to 4 in 64 bits: it must not read as 1 × 4.
            check "wrap.npy" "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387905, 4), }" "overflows 64 bits"
            check "inside.npy" "{'descr': '<f8', 'fortran_order': False, 'note': \"'shape': (2, 12)\", 'shape': (4, 6), }" "unexpected key 'note'"
            check "shapefirst.npy" "{'descr': \"<f8', 'shape': (2, 12), '\", 'fortran_order': False, 'shape': (4, 6), }" "unsupported dtype"
            check "twice.npy" "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 12), 'shape': (4, 6), }" "given twice"
            check "missing.npy" "{'descr': '<f8', 'shape': (4, 6), }" "missing key"
            check "trailing.npy" "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 6), } x" "trailing characters"
            check "negative.npy" "{'descr': '<f8', 'fortran_order': False, 'shape': (-4, -6), }" "non-negative integer"
            // numpy's own spelling, key order free, no trailing comma: read.
            File.WriteAllBytes(dir.File "ok.npy", raw "{'shape': (4, 6), 'fortran_order': False, 'descr': '<f8'}")
            let m = NpyReader.Read(dir.File "ok.npy")
            Expect.equal (m.Rows, m.Columns) (4, 6) "4 × 6"
        }
    ]
