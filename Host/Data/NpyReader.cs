using System.Buffers.Binary;
using System.Text;
using System.Text.RegularExpressions;

namespace ResearchFramework.Host.Data;

/// <summary>A 2-D matrix read from a <c>.npy</c> file: row-major values and shape.</summary>
public sealed record NpyMatrix(double[] Values, int Rows, int Columns, string Dtype = "<f8");

/// <summary>A <c>.npy</c> file is malformed or uses a feature this reader does not support.</summary>
public sealed class NpyFormatException(string path, string problem) : Exception($"{path}: {problem}")
{
    public string FilePath { get; } = path;
}

/// <summary>Reader for NumPy <c>.npy</c> files (format 1.0/2.0/3.0), 2-D, C order, dtype <c>&lt;f4</c> or <c>&lt;f8</c>.
/// Rejects NaN and ±Inf entries.</summary>
public static partial class NpyReader
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public static NpyMatrix Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 10 || !bytes.AsSpan(0, 6).SequenceEqual(Magic))
            throw new NpyFormatException(path, "not a .npy file (missing the \\x93NUMPY magic string at byte 0)");
        int major = bytes[6], minor = bytes[7];
        int headerStart, headerLength;
        switch (major)
        {
            case 1:
                headerLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8));
                headerStart = 10;
                break;
            case 2 or 3:
                if (bytes.Length < 12) throw new NpyFormatException(path, "truncated header (file ends inside the header length)");
                long length = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
                if (length > int.MaxValue) throw new NpyFormatException(path, $"header length {length} is implausible");
                headerLength = (int)length;
                headerStart = 12;
                break;
            default:
                throw new NpyFormatException(path, $"unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)");
        }
        if (bytes.Length < headerStart + headerLength)
            throw new NpyFormatException(path, $"truncated header: {headerLength} header bytes announced at offset {headerStart}, file has {bytes.Length} bytes");
        var encoding = major == 3 ? Encoding.UTF8 : Encoding.Latin1;
        var header = encoding.GetString(bytes, headerStart, headerLength);
        var (dtype, fortran, shape) = ParseHeader(path, header);
        if (fortran)
            throw new NpyFormatException(path, "fortran_order is True; only C-order arrays are supported (save with np.ascontiguousarray)");
        int itemSize = dtype switch
        {
            "<f4" => 4,
            "<f8" => 8,
            _ => throw new NpyFormatException(path, $"unsupported dtype '{dtype}' (supported: '<f4' float32, '<f8' float64, little-endian)"),
        };
        if (shape.Length != 2)
            throw new NpyFormatException(path, $"shape ({string.Join(", ", shape)}) has {shape.Length} dimensions; a 2-D matrix is required");
        long count = shape[0] * shape[1];
        if (shape[0] <= 0 || shape[1] <= 0 || count > Array.MaxLength)
            throw new NpyFormatException(path, $"shape ({shape[0]}, {shape[1]}) is empty or too large");
        int dataStart = headerStart + headerLength;
        long expected = count * itemSize;
        long available = bytes.Length - dataStart;
        if (available < expected)
            throw new NpyFormatException(path, $"truncated data: shape ({shape[0]}, {shape[1]}) of {dtype} needs {expected} bytes from offset {dataStart}, file has {available}");
        if (available > expected)
            throw new NpyFormatException(path, $"{available - expected} unexpected trailing bytes after the data (offset {dataStart + expected})");
        var values = new double[count];
        var data = bytes.AsSpan(dataStart);
        for (long i = 0; i < count; i++)
        {
            double v = itemSize == 4
                ? BinaryPrimitives.ReadSingleLittleEndian(data.Slice((int)(i * 4)))
                : BinaryPrimitives.ReadDoubleLittleEndian(data.Slice((int)(i * 8)));
            if (!double.IsFinite(v))
                throw new NpyFormatException(path, $"entry ({i / shape[1]}, {i % shape[1]}) is {v}; the matrix must be finite");
            values[i] = v;
        }
        return new NpyMatrix(values, (int)shape[0], (int)shape[1], dtype);
    }

    private static (string Dtype, bool Fortran, long[] Shape) ParseHeader(string path, string header)
    {
        var descr = DescrPattern().Match(header);
        var fortran = FortranPattern().Match(header);
        var shape = ShapePattern().Match(header);
        if (!descr.Success || !fortran.Success || !shape.Success)
            throw new NpyFormatException(path, $"malformed header {header.Trim()} (expected keys 'descr', 'fortran_order', 'shape')");
        var dims = shape.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(d => long.TryParse(d.TrimEnd('L'), out var n) ? n : throw new NpyFormatException(path, $"malformed shape entry '{d}'"))
            .ToArray();
        return (descr.Groups[1].Value, fortran.Groups[1].Value == "True", dims);
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranPattern();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}
