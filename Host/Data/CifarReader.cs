namespace ResearchFramework.Host.Data;

/// <summary>Images and labels read from CIFAR binary batches (3×32×32 bytes per image, channel-major).</summary>
public sealed record CifarBatch(byte[] Pixels, int[] Labels, int[]? CoarseLabels);

/// <summary>Readers for the CIFAR-10 and CIFAR-100 binary batch formats.</summary>
public static class CifarReader
{
    /// <summary>Bytes of one 32×32 RGB image.</summary>
    public const int ImageBytes = 3 * 32 * 32;

    /// <summary>Reads CIFAR-10 batches: records of 1 label byte (0..9) + 3072 pixel bytes.</summary>
    public static CifarBatch ReadCifar10(params string[] paths) => Read(paths, labelBytes: 1, classes: 10);

    /// <summary>Reads CIFAR-100 batches: records of coarse (0..19) + fine (0..99) label bytes + 3072 pixel bytes.
    /// <see cref="CifarBatch.Labels"/> holds the fine labels.</summary>
    public static CifarBatch ReadCifar100(params string[] paths) => Read(paths, labelBytes: 2, classes: 100);

    private static CifarBatch Read(string[] paths, int labelBytes, int classes)
    {
        int record = labelBytes + ImageBytes;
        var pixels = new List<byte>();
        var labels = new List<int>();
        var coarse = labelBytes == 2 ? new List<int>() : null;
        foreach (var path in paths)
        {
            var bytes = FileBytes.ReadAll(path);
            if (bytes.Length == 0)
                throw new DataFormatException(path, 0, $"{record}-byte records", "an empty file");
            if (bytes.Length % record != 0)
            {
                long lastStart = bytes.Length / record * (long)record;
                throw new DataFormatException(path, lastStart, $"a complete {record}-byte record", $"only {bytes.Length - lastStart} bytes (truncated file)");
            }
            for (long offset = 0; offset < bytes.Length; offset += record)
            {
                if (coarse is not null)
                {
                    Check(path, offset, bytes[offset], 20, "coarse label");
                    coarse.Add(bytes[offset]);
                }
                long labelOffset = offset + labelBytes - 1;
                Check(path, labelOffset, bytes[labelOffset], classes, "label");
                labels.Add(bytes[labelOffset]);
                pixels.AddRange(bytes.AsSpan((int)(offset + labelBytes), ImageBytes));
            }
        }
        return new CifarBatch(pixels.ToArray(), labels.ToArray(), coarse?.ToArray());
    }

    private static void Check(string path, long offset, byte value, int classes, string what)
    {
        if (value >= classes)
            throw new DataFormatException(path, offset, $"a {what} in 0..{classes - 1}", value.ToString());
    }
}
