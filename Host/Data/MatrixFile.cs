using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ResearchFramework.Host.Data;

/// <summary>A matrix file (<c>.npy</c> or <c>.safetensors</c>) is malformed, uses a feature its reader does not support,
/// or holds a non-finite entry. The message starts with the file's path and is one line.</summary>
public class MatrixFormatException(string path, string problem) : Exception($"{path}: {problem}")
{
    /// <summary>The file that was refused.</summary>
    public string FilePath { get; } = path;
}

/// <summary>Where a 2-D, C-order (row-major), little-endian float matrix lies inside a file, as its reader validated
/// it: the header has been read and checked, the data region's size matches the shape exactly, nothing has been read
/// from the data yet. <paramref name="Dtype"/> is <c>&lt;f4</c> or <c>&lt;f8</c>.</summary>
/// <param name="Path">The file.</param>
/// <param name="Format"><c>npy</c> or <c>safetensors</c>.</param>
/// <param name="Dtype"><c>&lt;f4</c> (float32) or <c>&lt;f8</c> (float64).</param>
/// <param name="Rows">Rows (samples), at least 1.</param>
/// <param name="Columns">Columns (features), at least 1.</param>
/// <param name="DataOffset">Byte offset of entry (0, 0) in the file.</param>
/// <param name="Tensor">The tensor's name inside a <c>.safetensors</c> file; null for <c>.npy</c>.</param>
public sealed record MatrixLayout(string Path, string Format, string Dtype, long Rows, long Columns, long DataOffset, string? Tensor = null)
{
    /// <summary>Bytes per entry: 4 or 8.</summary>
    public int ItemSize => Dtype == "<f4" ? 4 : 8;

    /// <summary>Bytes of the data region, Rows × Columns × ItemSize (checked against overflow by the reader).</summary>
    public long DataBytes => Rows * Columns * ItemSize;

    /// <summary>The format's own exception for a defect of this file (<see cref="NpyFormatException"/> for <c>.npy</c>).</summary>
    public MatrixFormatException Error(string problem) =>
        Format == "npy" ? new NpyFormatException(Path, problem) : new SafetensorsFormatException(Path, problem);
}

/// <summary>Reads parts of a matrix described by a <see cref="MatrixLayout"/> with positioned reads (no whole-file
/// buffer): column blocks of every row, or runs of whole rows. Every entry read is checked finite; a NaN or ±Inf
/// entry raises the format's exception naming it, as <c>entry (i, j) is NaN</c>.</summary>
public sealed class MatrixFileReader : IDisposable
{
    private readonly SafeFileHandle _handle;
    private byte[] _buffer = [];

    /// <summary>Opens the file of <paramref name="layout"/> for reading.</summary>
    public MatrixFileReader(MatrixLayout layout)
    {
        Layout = layout;
        _handle = File.OpenHandle(layout.Path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        long length = RandomAccess.GetLength(_handle);
        if (length < layout.DataOffset + layout.DataBytes)
            throw layout.Error($"the file has {length} bytes, its data needs {layout.DataOffset + layout.DataBytes} (changed since its header was read?)");
    }

    /// <summary>The layout this reader reads.</summary>
    public MatrixLayout Layout { get; }

    /// <summary>Fills <paramref name="destination"/> (length <paramref name="rowCount"/> × <paramref name="width"/>,
    /// row-major) with entries [row0, row0 + rowCount) × [column0, column0 + width), widened to float64.</summary>
    public void ReadBlock(long row0, int rowCount, long column0, int width, Span<double> destination)
    {
        CheckBlock(row0, rowCount, column0, width, destination.Length);
        foreach (var (fileOffset, rows, firstRow) in Reads(row0, rowCount, column0, width))
        {
            var bytes = Fill(fileOffset, rows, width);
            for (int k = 0; k < rows; k++)
            {
                long row = firstRow + k;
                var source = bytes.AsSpan(k * width * Layout.ItemSize, width * Layout.ItemSize);
                var target = destination.Slice((int)(row - row0) * width, width);
                if (Layout.ItemSize == 8)
                {
                    if (BitConverter.IsLittleEndian) MemoryMarshal.Cast<byte, double>(source).CopyTo(target);
                    else for (int j = 0; j < width; j++) target[j] = BinaryPrimitives.ReadDoubleLittleEndian(source[(8 * j)..]);
                }
                else if (BitConverter.IsLittleEndian)
                {
                    var floats = MemoryMarshal.Cast<byte, float>(source);
                    for (int j = 0; j < width; j++) target[j] = floats[j];
                }
                else
                    for (int j = 0; j < width; j++) target[j] = BinaryPrimitives.ReadSingleLittleEndian(source[(4 * j)..]);
                for (int j = 0; j < width; j++)
                    if (!double.IsFinite(target[j]))
                        throw Layout.Error($"entry ({row}, {column0 + j}) is {target[j]}; the matrix must be finite");
            }
        }
    }

    /// <summary>As <see cref="ReadBlock(long, int, long, int, Span{double})"/> for a float32 file, without widening.</summary>
    public void ReadBlock(long row0, int rowCount, long column0, int width, Span<float> destination)
    {
        if (Layout.ItemSize != 4) throw new InvalidOperationException("float32 blocks of a float64 file");
        CheckBlock(row0, rowCount, column0, width, destination.Length);
        foreach (var (fileOffset, rows, firstRow) in Reads(row0, rowCount, column0, width))
        {
            var bytes = Fill(fileOffset, rows, width);
            for (int k = 0; k < rows; k++)
            {
                long row = firstRow + k;
                var source = bytes.AsSpan(k * width * 4, width * 4);
                var target = destination.Slice((int)(row - row0) * width, width);
                if (BitConverter.IsLittleEndian) MemoryMarshal.Cast<byte, float>(source).CopyTo(target);
                else for (int j = 0; j < width; j++) target[j] = BinaryPrimitives.ReadSingleLittleEndian(source[(4 * j)..]);
                for (int j = 0; j < width; j++)
                    if (!float.IsFinite(target[j]))
                        throw Layout.Error($"entry ({row}, {column0 + j}) is {(double)target[j]}; the matrix must be finite");
            }
        }
    }

    private void CheckBlock(long row0, int rowCount, long column0, int width, int destinationLength)
    {
        if (row0 < 0 || rowCount < 0 || row0 + rowCount > Layout.Rows || column0 < 0 || width < 0 || column0 + width > Layout.Columns)
            throw new ArgumentOutOfRangeException(nameof(row0), $"block [{row0}, +{rowCount}) × [{column0}, +{width}) outside {Layout.Rows} × {Layout.Columns}");
        if ((long)rowCount * width != destinationLength)
            throw new ArgumentException($"destination holds {destinationLength} entries, the block has {(long)rowCount * width}");
    }

    /// <summary>The positioned reads of a block: runs of whole rows of up to 8 MiB when the block spans every column
    /// (they are contiguous in C order), else one read per row of the block's columns.</summary>
    private IEnumerable<(long FileOffset, int Rows, long FirstRow)> Reads(long row0, int rowCount, long column0, int width)
    {
        long rowBytes = Layout.Columns * Layout.ItemSize;
        int rowsPerRead = width == Layout.Columns && rowBytes <= 8L << 20 ? (int)Math.Max(1, (8L << 20) / rowBytes) : 1;
        for (int r = 0; r < rowCount; r += rowsPerRead)
            yield return (Layout.DataOffset + (row0 + r) * rowBytes + column0 * Layout.ItemSize, Math.Min(rowsPerRead, rowCount - r), row0 + r);
    }

    private byte[] Fill(long offset, int rows, int width)
    {
        int count = checked(rows * width * Layout.ItemSize);
        if (_buffer.Length < count) _buffer = new byte[count];
        int done = 0;
        while (done < count)
        {
            int read = RandomAccess.Read(_handle, _buffer.AsSpan(done, count - done), offset + done);
            if (read == 0) throw Layout.Error($"the file ends at byte {offset + done}, inside its data (changed while it was read?)");
            done += read;
        }
        return _buffer;
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _handle.Dispose();
}

/// <summary>Opens matrix files by format: <c>.safetensors</c> (by extension) or <c>.npy</c>.</summary>
public static class MatrixFiles
{
    /// <summary>The validated layout of <paramref name="path"/>: a <c>.safetensors</c> file (its single 2-D tensor, or
    /// <paramref name="tensor"/>) or a <c>.npy</c> file (then <paramref name="tensor"/> must be null).</summary>
    public static MatrixLayout Open(string path, string? tensor)
    {
        if (IsSafetensors(path)) return SafetensorsReader.ReadLayout(path, tensor);
        if (tensor is not null)
            throw new NpyFormatException(path, $"--tensor {tensor} names a tensor of a .safetensors file; a .npy file holds one array");
        return NpyReader.ReadLayout(path);
    }

    /// <summary>True when <paramref name="path"/> ends in <c>.safetensors</c> (any case).</summary>
    public static bool IsSafetensors(string path) => path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);
}
