using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ResearchFramework.Host.Data;

/// <summary>One file of a dataset as recorded in <c>manifest.json</c>.</summary>
public sealed record ManifestFile(string Name, long Bytes, string Sha256, int Count);

/// <summary>Image count and per-class counts of one split.</summary>
public sealed record ManifestSplit(int Count, int[] ClassCounts);

/// <summary>The <c>manifest.json</c> written next to fetched data: what the files are and how to verify them.</summary>
public sealed record DataManifest(string Dataset, string Source, DateTimeOffset Created, ManifestFile[] Files,
    ManifestSplit Train, ManifestSplit Test)
{
    /// <summary>File name of the manifest inside a dataset directory.</summary>
    public const string FileName = "manifest.json";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public void Write(string directory) =>
        File.WriteAllText(Path.Combine(directory, FileName), JsonSerializer.Serialize(this, Json));

    /// <summary>Reads <c>manifest.json</c> from <paramref name="directory"/>; null when there is none.</summary>
    public static DataManifest? TryRead(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<DataManifest>(File.ReadAllText(path), Json)
                   ?? throw new DataManifestException($"{path}: empty manifest");
        }
        catch (JsonException e)
        {
            throw new DataManifestException($"{path}: not a valid manifest ({e.Message}); delete it and run `rf data fetch` again");
        }
    }

    /// <summary>Checks that every listed file exists with the recorded size and SHA-256; throws
    /// <see cref="DataManifestException"/> naming the first mismatch.</summary>
    public void Verify(string directory) => Verify(directory, []);

    /// <summary>As <see cref="Verify(string)"/>, and every file of <paramref name="required"/> (the dataset's layout)
    /// must be listed: a manifest with <c>"files": []</c>, or one that omits a file, verifies nothing and is refused.</summary>
    public void Verify(string directory, IEnumerable<string> required)
    {
        var manifestPath = Path.Combine(directory, FileName);
        if (Files is null || Dataset is null)
            throw new DataManifestException($"{manifestPath}: incomplete manifest (no 'dataset' or 'files'); delete it and run `rf data fetch` again");
        var missing = required.Where(r => !Files.Any(f => f?.Name == r)).ToArray();
        if (missing.Length > 0)
            throw new DataManifestException($"{manifestPath}: does not list {string.Join(", ", missing)}, so it cannot vouch for them; delete it and run `rf data fetch {Dataset}` again");
        foreach (var file in Files)
        {
            var path = Path.Combine(directory, file.Name);
            if (!File.Exists(path))
                throw new DataManifestException($"{path}: listed in {FileName} but missing; run `rf data fetch {Dataset}` again");
            long size = new FileInfo(path).Length;
            if (size != file.Bytes)
                throw new DataManifestException($"{path}: size {size} bytes, {FileName} says {file.Bytes}; the file was modified or truncated — delete it and run `rf data fetch {Dataset}`");
            var hash = Sha256Of(path);
            if (!string.Equals(hash, file.Sha256, StringComparison.OrdinalIgnoreCase))
                throw new DataManifestException($"{path}: SHA-256 {hash}, {FileName} says {file.Sha256}; the file was modified — delete it and run `rf data fetch {Dataset}`");
        }
    }

    /// <summary>Lower-case hex SHA-256 of a file.</summary>
    public static string Sha256Of(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}

/// <summary>A dataset's files do not match its manifest.</summary>
public sealed class DataManifestException(string message) : Exception(message);
