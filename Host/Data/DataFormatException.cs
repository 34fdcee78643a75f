namespace ResearchFramework.Host.Data;

/// <summary>A data file is corrupt, truncated or not in the expected format.</summary>
/// <remarks>The message always names the file, the byte offset and what was expected there.</remarks>
public sealed class DataFormatException : Exception
{
    public DataFormatException(string path, long offset, string expected, string found)
        : base($"{path}: at byte offset {offset}: expected {expected}, found {found}")
    {
        FilePath = path;
        Offset = offset;
    }

    /// <summary>The file that failed to parse.</summary>
    public string FilePath { get; }

    /// <summary>Byte offset (in the decompressed stream for .gz files) where the defect was found.</summary>
    public long Offset { get; }
}
