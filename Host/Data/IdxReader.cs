using System.Buffers.Binary;

namespace ResearchFramework.Host.Data;

/// <summary>Images from an IDX3 file: <see cref="Count"/> images of <see cref="Rows"/>×<see cref="Columns"/> bytes.</summary>
public sealed record IdxImages(byte[] Pixels, int Count, int Rows, int Columns);

/// <summary>Reader for the IDX format of MNIST / Fashion-MNIST (big-endian; magic 2049 labels, 2051 images).</summary>
public static class IdxReader
{
    /// <summary>Magic number of an IDX1 unsigned-byte label file.</summary>
    public const int LabelMagic = 2049;

    /// <summary>Magic number of an IDX3 unsigned-byte image file.</summary>
    public const int ImageMagic = 2051;

    /// <summary>Reads an IDX1 label file (plain or .gz).</summary>
    public static byte[] ReadLabels(string path)
    {
        var bytes = FileBytes.ReadAll(path);
        var dims = ReadHeader(path, bytes, LabelMagic, 1);
        return Payload(path, bytes, 8, dims[0]);
    }

    /// <summary>Reads an IDX3 image file (plain or .gz).</summary>
    public static IdxImages ReadImages(string path)
    {
        var bytes = FileBytes.ReadAll(path);
        var dims = ReadHeader(path, bytes, ImageMagic, 3);
        long length = (long)dims[0] * dims[1] * dims[2];
        return new IdxImages(Payload(path, bytes, 16, length), dims[0], dims[1], dims[2]);
    }

    private static int[] ReadHeader(string path, byte[] bytes, int magic, int rank)
    {
        int headerLength = 4 + 4 * rank;
        if (bytes.Length < 4)
            throw new DataFormatException(path, bytes.Length, $"a 4-byte IDX magic number {magic}", $"end of file after {bytes.Length} bytes");
        int found = BinaryPrimitives.ReadInt32BigEndian(bytes);
        if (found != magic)
            throw new DataFormatException(path, 0, $"IDX magic number {magic}", found.ToString());
        var dims = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            int offset = 4 + 4 * i;
            if (bytes.Length < offset + 4)
                throw new DataFormatException(path, bytes.Length, $"{headerLength}-byte IDX header (dimension {i})", $"end of file after {bytes.Length} bytes");
            dims[i] = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(offset));
            if (dims[i] <= 0)
                throw new DataFormatException(path, offset, $"a positive dimension {i}", dims[i].ToString());
        }
        return dims;
    }

    private static byte[] Payload(string path, byte[] bytes, int start, long length)
    {
        if (bytes.Length - start < length)
            throw new DataFormatException(path, bytes.Length, $"{length} data bytes from offset {start} (file size {start + length})", $"end of file after {bytes.Length} bytes");
        if (bytes.Length - start > length)
            throw new DataFormatException(path, start + length, "end of file", $"{bytes.Length - start - length} trailing bytes");
        return bytes.AsSpan(start, (int)length).ToArray();
    }
}
