using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace ResearchFramework.Host.Data;

/// <summary>A <c>.safetensors</c> file is malformed, or its tensor is not one this reader certifies.</summary>
public sealed class SafetensorsFormatException(string path, string problem) : MatrixFormatException(path, problem);

/// <summary>One tensor entry of a <c>.safetensors</c> header: dtype, shape and [begin, end) in the data buffer.</summary>
/// <param name="Name">The tensor's name (its key in the header).</param>
/// <param name="Dtype">The safetensors dtype, e.g. <c>F32</c>.</param>
/// <param name="Shape">Dimensions (non-negative).</param>
/// <param name="Begin">First byte in the data buffer (after the header).</param>
/// <param name="End">One past the last byte in the data buffer.</param>
public sealed record SafetensorsEntry(string Name, string Dtype, long[] Shape, long Begin, long End);

/// <summary>Reader of the <c>.safetensors</c> format (huggingface/safetensors): 8 bytes little-endian header length N,
/// N bytes of UTF-8 JSON <c>{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {string: string}}</c>,
/// then the data buffer. Validation is strict: a JSON object with unique keys and no others than these, every dtype
/// known, every entry's size = product of its shape × item size (64-bit overflow checked) = end − begin, the entries
/// covering the buffer exactly (no hole, no overlap, no trailing byte), so the file's length is 8 + N + buffer.</summary>
public static class SafetensorsReader
{
    /// <summary>The header may not exceed 100 MB (the reference implementation's limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private static readonly Dictionary<string, int> ItemSizes = new(StringComparer.Ordinal)
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E5M2"] = 1, ["F8_E4M3"] = 1,
        ["I16"] = 2, ["U16"] = 2, ["F16"] = 2, ["BF16"] = 2,
        ["I32"] = 4, ["U32"] = 4, ["F32"] = 4,
        ["I64"] = 8, ["U64"] = 8, ["F64"] = 8,
    };

    /// <summary>Item size in bytes of a safetensors dtype, or null for an unknown one.</summary>
    public static int? ItemSize(string dtype) => ItemSizes.TryGetValue(dtype, out var size) ? size : null;

    /// <summary>Reads and validates the header of <paramref name="path"/>: its entries in header order, the metadata,
    /// and the offset of the data buffer (8 + N). Throws <see cref="SafetensorsFormatException"/> naming the defect.</summary>
    public static (IReadOnlyList<SafetensorsEntry> Entries, IReadOnlyDictionary<string, string> Metadata, long DataStart) ReadHeader(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        SafetensorsFormatException Bad(string problem) => new(path, problem);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        long fileLength = stream.Length;
        var lengthBytes = new byte[8];
        if (stream.ReadAtLeast(lengthBytes, 8, throwOnEndOfStream: false) < 8)
            throw Bad($"file of {fileLength} bytes is too short for the 8-byte header length of a .safetensors file");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength < 2 || headerLength > MaxHeaderBytes)
            throw Bad($"header length {headerLength} is implausible (expected 2 .. {MaxHeaderBytes} bytes of JSON)");
        if ((long)headerLength > fileLength - 8)
            throw Bad($"truncated header: {headerLength} header bytes announced, the file has {fileLength - 8} after the length");
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        long dataStart = 8 + (long)headerLength;
        string text;
        try { text = new UTF8Encoding(false, true).GetString(headerBytes); }
        catch (DecoderFallbackException) { throw Bad("the header is not valid UTF-8"); }
        JsonDocument document;
        try { document = JsonDocument.Parse(text, new JsonDocumentOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow }); }
        catch (JsonException e) { throw Bad($"the header is not valid JSON ({e.Message.Split('\n')[0]})"); }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad($"the header is a JSON {root.ValueKind}, expected an object of tensors");
            var entries = new List<SafetensorsEntry>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in root.EnumerateObject())
            {
                if (!seen.Add(property.Name)) throw Bad($"key \"{property.Name}\" appears twice in the header");
                if (property.Name == "__metadata__")
                {
                    if (property.Value.ValueKind != JsonValueKind.Object) throw Bad("__metadata__ must be an object of strings");
                    foreach (var m in property.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw Bad($"__metadata__ \"{m.Name}\" is not a string");
                        if (!metadata.TryAdd(m.Name, m.Value.GetString()!)) throw Bad($"__metadata__ key \"{m.Name}\" appears twice");
                    }
                    continue;
                }
                entries.Add(Entry(property.Name, property.Value, Bad));
            }
            // The entries must tile the data buffer [0, length) exactly.
            long bufferLength = fileLength - dataStart;
            long position = 0;
            foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
            {
                if (e.Begin != position)
                    throw Bad(e.Begin < position
                        ? $"tensor \"{e.Name}\": data_offsets [{e.Begin}, {e.End}] overlap the previous tensor's data (which ends at {position})"
                        : $"tensor \"{e.Name}\": data_offsets [{e.Begin}, {e.End}] leave a hole of {e.Begin - position} bytes at {position}");
                if (e.End > bufferLength)
                    throw Bad($"tensor \"{e.Name}\": data_offsets [{e.Begin}, {e.End}] go past the end of the file (data buffer of {bufferLength} bytes at offset {dataStart})");
                position = e.End;
            }
            if (position != bufferLength)
                throw Bad($"{bufferLength - position} unexpected trailing bytes after the tensors' data (offset {dataStart + position})");
            return (entries, metadata, dataStart);
        }
    }

    private static SafetensorsEntry Entry(string name, JsonElement value, Func<string, SafetensorsFormatException> bad)
    {
        if (value.ValueKind != JsonValueKind.Object) throw bad($"tensor \"{name}\" is not an object with dtype, shape and data_offsets");
        string? dtype = null; long[]? shape = null; long[]? offsets = null;
        foreach (var field in value.EnumerateObject())
        {
            switch (field.Name)
            {
                case "dtype" when dtype is null:
                    if (field.Value.ValueKind != JsonValueKind.String) throw bad($"tensor \"{name}\": dtype is not a string");
                    dtype = field.Value.GetString()!;
                    break;
                case "shape" when shape is null:
                    shape = Integers(name, "shape", field.Value, bad);
                    break;
                case "data_offsets" when offsets is null:
                    offsets = Integers(name, "data_offsets", field.Value, bad);
                    break;
                case "dtype" or "shape" or "data_offsets":
                    throw bad($"tensor \"{name}\": key \"{field.Name}\" given twice");
                default:
                    throw bad($"tensor \"{name}\": unexpected key \"{field.Name}\" (expected dtype, shape, data_offsets)");
            }
        }
        if (dtype is null || shape is null || offsets is null)
            throw bad($"tensor \"{name}\": missing key (expected exactly dtype, shape, data_offsets)");
        if (ItemSize(dtype) is not int itemSize)
            throw bad($"tensor \"{name}\": unknown dtype \"{dtype}\"");
        if (offsets.Length != 2) throw bad($"tensor \"{name}\": data_offsets has {offsets.Length} numbers, expected [begin, end]");
        if (offsets[1] < offsets[0]) throw bad($"tensor \"{name}\": data_offsets [{offsets[0]}, {offsets[1]}] end before they begin");
        long size;
        try
        {
            size = itemSize;
            foreach (var d in shape) size = checked(size * d);
        }
        catch (OverflowException)
        {
            throw bad($"tensor \"{name}\": shape [{string.Join(", ", shape)}] of {dtype}: the byte size overflows 64 bits");
        }
        if (offsets[1] - offsets[0] != size)
            throw bad($"tensor \"{name}\": shape [{string.Join(", ", shape)}] of {dtype} needs {size} bytes, data_offsets [{offsets[0]}, {offsets[1]}] hold {offsets[1] - offsets[0]}");
        return new SafetensorsEntry(name, dtype, shape, offsets[0], offsets[1]);
    }

    private static long[] Integers(string name, string key, JsonElement value, Func<string, SafetensorsFormatException> bad)
    {
        if (value.ValueKind != JsonValueKind.Array) throw bad($"tensor \"{name}\": {key} is not an array of integers");
        var result = new List<long>();
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out var v) || v < 0)
                throw bad($"tensor \"{name}\": {key} holds {item.GetRawText()}, expected non-negative 64-bit integers");
            result.Add(v);
        }
        return [.. result];
    }

    /// <summary>The layout of the matrix to certify: the tensor named <paramref name="tensor"/>, else the file's only
    /// 2-D tensor. It must be 2-D, non-empty, F32 or F64.</summary>
    public static MatrixLayout ReadLayout(string path, string? tensor)
    {
        var (entries, _, dataStart) = ReadHeader(path);
        SafetensorsFormatException Bad(string problem) => new(path, problem);
        string Listing() => entries.Count == 0 ? "none" : string.Join(", ", entries.Select(e => $"{e.Name} [{string.Join(", ", e.Shape)}] {e.Dtype}"));
        SafetensorsEntry chosen;
        if (tensor is not null)
        {
            chosen = entries.FirstOrDefault(e => e.Name == tensor)
                     ?? throw Bad($"no tensor named \"{tensor}\" (tensors: {Listing()})");
        }
        else
        {
            var matrices = entries.Where(e => e.Shape.Length == 2).ToList();
            if (matrices.Count == 1) chosen = matrices[0];
            else if (matrices.Count == 0) throw Bad($"no 2-D tensor to certify (tensors: {Listing()})");
            else throw Bad($"{matrices.Count} 2-D tensors; name one with --tensor NAME (tensors: {Listing()})");
        }
        var shape = chosen.Shape;
        if (shape.Length != 2)
            throw Bad($"tensor \"{chosen.Name}\" has shape [{string.Join(", ", shape)}]; a 2-D matrix is required");
        if (shape[0] <= 0 || shape[1] <= 0)
            throw Bad($"tensor \"{chosen.Name}\" has shape [{shape[0]}, {shape[1]}], which is empty");
        var dtype = chosen.Dtype switch
        {
            "F32" => "<f4",
            "F64" => "<f8",
            _ => throw Bad($"tensor \"{chosen.Name}\" has dtype {chosen.Dtype} (supported: F32, F64)"),
        };
        return new MatrixLayout(path, "safetensors", dtype, shape[0], shape[1], dataStart + chosen.Begin, chosen.Name);
    }
}

/// <summary>One tensor to write into a <c>.safetensors</c> file: its name, dtype (<c>F32</c>, <c>F64</c>, …), shape and
/// raw little-endian C-order bytes.</summary>
/// <param name="Name">Key in the header.</param>
/// <param name="Dtype">Safetensors dtype.</param>
/// <param name="Shape">Dimensions.</param>
/// <param name="Data">Raw bytes; their length must be the shape's product × the dtype's item size.</param>
public sealed record SafetensorsTensor(string Name, string Dtype, long[] Shape, byte[] Data);

/// <summary>Writer of <c>.safetensors</c> files: the header JSON padded with spaces to a multiple of 8 bytes (as the
/// reference implementation does), then each tensor's bytes in the order given.</summary>
public static class SafetensorsWriter
{
    /// <summary>Writes <paramref name="tensors"/> (unique names, sizes matching shapes) and <paramref name="metadata"/>
    /// to <paramref name="path"/>, through a temporary file renamed into place.</summary>
    public static void Write(string path, IReadOnlyList<SafetensorsTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        using var json = new MemoryStream();
        using (var writer = new Utf8JsonWriter(json))
        {
            writer.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                writer.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) writer.WriteString(k, v);
                writer.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in tensors)
            {
                if (t.Name == "__metadata__" || !names.Add(t.Name)) throw new ArgumentException($"tensor name \"{t.Name}\" is reserved or repeated");
                var itemSize = SafetensorsReader.ItemSize(t.Dtype) ?? throw new ArgumentException($"unknown dtype {t.Dtype}");
                long size = itemSize;
                foreach (var d in t.Shape) size = checked(size * d);
                if (size != t.Data.Length) throw new ArgumentException($"tensor \"{t.Name}\": shape needs {size} bytes, {t.Data.Length} given");
                writer.WriteStartObject(t.Name);
                writer.WriteString("dtype", t.Dtype);
                writer.WriteStartArray("shape");
                foreach (var d in t.Shape) writer.WriteNumberValue(d);
                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                writer.WriteNumberValue(offset + size);
                writer.WriteEndArray();
                writer.WriteEndObject();
                offset += size;
            }
            writer.WriteEndObject();
        }
        var header = json.ToArray();
        int padded = (header.Length + 7) / 8 * 8;
        var temporary = path + ".tmp";
        using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
            file.Write(length);
            file.Write(header);
            for (int i = header.Length; i < padded; i++) file.WriteByte((byte)' ');
            foreach (var t in tensors) file.Write(t.Data);
            file.Flush(true);
        }
        File.Move(temporary, path, overwrite: true);
    }
}
