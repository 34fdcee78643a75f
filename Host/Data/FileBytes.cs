using System.IO.Compression;

namespace ResearchFramework.Host.Data;

/// <summary>Reads a whole data file into memory, transparently gunzipping <c>.gz</c> files.</summary>
public static class FileBytes
{
    /// <summary>All bytes of <paramref name="path"/>; decompressed when the name ends in <c>.gz</c>.</summary>
    public static byte[] ReadAll(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"{path}: file not found", path);
        if (!path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
            return File.ReadAllBytes(path);
        using var file = File.OpenRead(path);
        using var gzip = new GZipStream(file, CompressionMode.Decompress);
        using var buffer = new MemoryStream();
        try
        {
            gzip.CopyTo(buffer);
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException(path, buffer.Length, "a valid gzip stream", $"corrupt gzip data ({e.Message})");
        }
        return buffer.ToArray();
    }
}
