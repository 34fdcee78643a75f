using System.Buffers.Binary;
using System.Text;

namespace ResearchFramework.Host.Data;

/// <summary>A 2-D matrix read from a <c>.npy</c> file: row-major values and shape.</summary>
public sealed record NpyMatrix(double[] Values, int Rows, int Columns, string Dtype = "<f8");

/// <summary>A <c>.npy</c> file is malformed or uses a feature this reader does not support.</summary>
public sealed class NpyFormatException(string path, string problem) : MatrixFormatException(path, problem);

/// <summary>Reader for NumPy <c>.npy</c> files (format 1.0/2.0/3.0), 2-D, C order, dtype <c>&lt;f4</c> or <c>&lt;f8</c>.
/// Rejects NaN and ±Inf entries.</summary>
public static class NpyReader
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Reads the whole matrix into memory (<see cref="ReadLayout"/>, then every entry, checked finite).</summary>
    public static NpyMatrix Read(string path)
    {
        var layout = ReadLayout(path);
        long count = layout.Rows * layout.Columns;
        if (count > Array.MaxLength)
            throw new NpyFormatException(path, $"shape ({layout.Rows}, {layout.Columns}) is too large ({count} elements)");
        var values = new double[count];
        using (var reader = new MatrixFileReader(layout))
            reader.ReadBlock(0, (int)layout.Rows, 0, (int)layout.Columns, values);
        return new NpyMatrix(values, (int)layout.Rows, (int)layout.Columns, layout.Dtype);
    }

    /// <summary>Reads and checks the header only (magic, version, the dictionary by <see cref="ParseHeader"/>, dtype
    /// <c>&lt;f4</c>/<c>&lt;f8</c>, C order, 2-D non-empty shape, element count and byte size without 64-bit overflow,
    /// the file's size equal to header + data: no truncated and no trailing bytes). The data is not read.</summary>
    public static MatrixLayout ReadLayout(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        long fileLength = stream.Length;
        var prefix = new byte[12];
        int prefixLength = stream.ReadAtLeast(prefix, 12, throwOnEndOfStream: false);
        if (prefixLength < 10 || !prefix.AsSpan(0, 6).SequenceEqual(Magic))
            throw new NpyFormatException(path, "not a .npy file (missing the \\x93NUMPY magic string at byte 0)");
        int major = prefix[6], minor = prefix[7];
        int headerStart, headerLength;
        switch (major)
        {
            case 1:
                headerLength = BinaryPrimitives.ReadUInt16LittleEndian(prefix.AsSpan(8));
                headerStart = 10;
                break;
            case 2 or 3:
                if (prefixLength < 12) throw new NpyFormatException(path, "truncated header (file ends inside the header length)");
                long length = BinaryPrimitives.ReadUInt32LittleEndian(prefix.AsSpan(8));
                if (length > int.MaxValue) throw new NpyFormatException(path, $"header length {length} is implausible");
                headerLength = (int)length;
                headerStart = 12;
                break;
            default:
                throw new NpyFormatException(path, $"unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)");
        }
        if (fileLength < (long)headerStart + headerLength)
            throw new NpyFormatException(path, $"truncated header: {headerLength} header bytes announced at offset {headerStart}, file has {fileLength} bytes");
        var headerBytes = new byte[headerLength];
        stream.Position = headerStart;
        stream.ReadExactly(headerBytes);
        var encoding = major == 3 ? Encoding.UTF8 : Encoding.Latin1;
        var header = encoding.GetString(headerBytes);
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
        if (shape[0] <= 0 || shape[1] <= 0)
            throw new NpyFormatException(path, $"shape ({shape[0]}, {shape[1]}) is empty");
        long expected;
        try
        {
            expected = checked(checked(shape[0] * shape[1]) * itemSize);
        }
        catch (OverflowException)
        {
            throw new NpyFormatException(path, $"shape ({shape[0]}, {shape[1]}): the element count overflows 64 bits");
        }
        long dataStart = headerStart + headerLength;
        long available = fileLength - dataStart;
        if (available < expected)
            throw new NpyFormatException(path, $"truncated data: shape ({shape[0]}, {shape[1]}) of {dtype} needs {expected} bytes from offset {dataStart}, file has {available}");
        if (available > expected)
            throw new NpyFormatException(path, $"{available - expected} unexpected trailing bytes after the data (offset {dataStart + expected})");
        return new MatrixLayout(path, "npy", dtype, shape[0], shape[1], dataStart);
    }

    /// <summary>Parses the header as numpy does (<c>numpy.lib.format</c>: a Python dict literal with exactly the keys
    /// <c>'descr'</c> (a string), <c>'fortran_order'</c> (<c>True</c>/<c>False</c>) and <c>'shape'</c> (a tuple of
    /// non-negative integers), each once, padded with spaces and a final newline); anything else is refused.</summary>
    internal static (string Dtype, bool Fortran, long[] Shape) ParseHeader(string path, string header)
    {
        var p = new HeaderParser(path, header);
        var result = p.Dictionary();
        return result;
    }

    private sealed class HeaderParser(string path, string text)
    {
        private int _i;

        private NpyFormatException Error(string what) =>
            new(path, $"malformed header at character {_i}: {what} (header {text.Trim()}; numpy writes {{'descr': '<f8', 'fortran_order': False, 'shape': (4, 6), }})");

        private void Skip() { while (_i < text.Length && text[_i] is ' ' or '\t') _i++; }

        private bool TryTake(char c) { Skip(); if (_i < text.Length && text[_i] == c) { _i++; return true; } return false; }

        private void Take(char c) { if (!TryTake(c)) throw Error($"expected '{c}'"); }

        private string StringLiteral()
        {
            Skip();
            if (_i >= text.Length || text[_i] is not ('\'' or '"')) throw Error("expected a string literal");
            var quote = text[_i++];
            var start = _i;
            while (_i < text.Length && text[_i] != quote)
            {
                if (text[_i] == '\\') throw Error("escapes are not allowed in header strings");
                _i++;
            }
            if (_i >= text.Length) throw Error("unterminated string");
            return text[start.._i++];
        }

        private bool Boolean()
        {
            Skip();
            foreach (var (word, value) in new[] { ("True", true), ("False", false) })
                if (string.CompareOrdinal(text, _i, word, 0, word.Length) == 0) { _i += word.Length; return value; }
            throw Error("expected True or False");
        }

        private long Integer()
        {
            Skip();
            var start = _i;
            while (_i < text.Length && char.IsAsciiDigit(text[_i])) _i++;
            if (_i == start) throw Error("expected a non-negative integer");
            if (_i < text.Length && text[_i] == 'L') _i++; // Python 2 long suffix, as numpy accepts
            if (!long.TryParse(text.AsSpan(start, _i - start).TrimEnd('L'), out var n)) throw Error("integer out of range");
            return n;
        }

        private long[] Tuple()
        {
            Take('(');
            var dims = new List<long>();
            if (TryTake(')')) return [];
            while (true)
            {
                dims.Add(Integer());
                if (TryTake(')')) return [.. dims];
                Take(',');
                if (TryTake(')')) return [.. dims];
            }
        }

        public (string, bool, long[]) Dictionary()
        {
            Take('{');
            string? descr = null; bool? fortran = null; long[]? shape = null;
            while (!TryTake('}'))
            {
                var key = StringLiteral();
                Take(':');
                switch (key)
                {
                    case "descr" when descr is null: descr = StringLiteral(); break;
                    case "fortran_order" when fortran is null: fortran = Boolean(); break;
                    case "shape" when shape is null: shape = Tuple(); break;
                    case "descr" or "fortran_order" or "shape": throw Error($"key '{key}' given twice");
                    default: throw Error($"unexpected key '{key}'");
                }
                if (!TryTake(',')) { Take('}'); break; }
            }
            Skip();
            while (_i < text.Length && text[_i] is '\n' or ' ' or '\0') _i++;
            if (_i != text.Length) throw Error("trailing characters after the dictionary");
            if (descr is null || fortran is null || shape is null)
                throw Error("missing key (expected exactly 'descr', 'fortran_order', 'shape')");
            return (descr, fortran.Value, shape);
        }
    }
}
