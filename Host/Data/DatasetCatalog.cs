namespace ResearchFramework.Host.Data;

/// <summary>Loads a named dataset from the data directory as train and test splits.</summary>
/// <remarks>
/// <list type="bullet">
/// <item><c>mnist</c>, <c>fashion-mnist</c>: <c>&lt;dir&gt;/&lt;name&gt;/</c> as written by <c>rf data fetch</c>; the manifest is verified first.</item>
/// <item><c>cifar10</c>: <c>&lt;dir&gt;/cifar10/data_batch_{1..5}.bin</c> and <c>test_batch.bin</c> (also accepted inside <c>cifar-10-batches-bin/</c>).</item>
/// <item><c>cifar100</c>: <c>&lt;dir&gt;/cifar100/train.bin</c> and <c>test.bin</c> (also inside <c>cifar-100-binary/</c>); fine labels.</item>
/// <item><c>semeion</c>: <c>&lt;dir&gt;/semeion/semeion.data</c>; no official split, so 20 % is held out by seed 0.</item>
/// </list>
/// </remarks>
public static class DatasetCatalog
{
    public static readonly string[] Names = ["mnist", "fashion-mnist", "cifar10", "cifar100", "semeion"];

    /// <summary>Image shape and class count of a named dataset, without reading it (for checks made before loading).</summary>
    public static (int Channels, int Height, int Width, int Classes) ShapeOf(string name) => name.Trim().ToLowerInvariant() switch
    {
        "mnist" or "fashion-mnist" => (1, 28, 28, 10),
        "cifar10" => (3, 32, 32, 10),
        "cifar100" => (3, 32, 32, 100),
        "semeion" => (1, 16, 16, 10),
        _ => throw new ArgumentException($"unknown dataset '{name}': expected one of {string.Join(", ", Names)}"),
    };

    public static (Dataset Train, Dataset Test) Load(string name, string dataDirectory)
    {
        var key = name.Trim().ToLowerInvariant();
        var directory = Path.Combine(dataDirectory, key);
        switch (key)
        {
            case "mnist":
            case "fashion-mnist":
                var layout = key == "mnist" ? IdxDatasetLayout.Mnist : IdxDatasetLayout.FashionMnist;
                var manifest = DataManifest.TryRead(directory)
                    ?? throw new DataManifestException($"{Path.Combine(directory, DataManifest.FileName)} not found: run `rf data fetch {key}` first");
                manifest.Verify(directory, layout.Files);
                if (!manifest.Own)
                    DataManifest.CheckPinned(key, directory, f => manifest.Files.First(m => m.Name == f).Sha256);
                return layout.Read(directory);
            case "cifar10":
            {
                var dir = FirstExisting(directory, "cifar-10-batches-bin", "test_batch.bin");
                var train = CifarReader.ReadCifar10(Enumerable.Range(1, 5).Select(i => Path.Combine(dir, $"data_batch_{i}.bin")).ToArray());
                var test = CifarReader.ReadCifar10(Path.Combine(dir, "test_batch.bin"));
                return (Dataset.FromBytes("cifar10-train", train.Pixels, train.Labels, 10, 3, 32, 32),
                        Dataset.FromBytes("cifar10-test", test.Pixels, test.Labels, 10, 3, 32, 32));
            }
            case "cifar100":
            {
                var dir = FirstExisting(directory, "cifar-100-binary", "test.bin");
                var train = CifarReader.ReadCifar100(Path.Combine(dir, "train.bin"));
                var test = CifarReader.ReadCifar100(Path.Combine(dir, "test.bin"));
                return (Dataset.FromBytes("cifar100-train", train.Pixels, train.Labels, 100, 3, 32, 32),
                        Dataset.FromBytes("cifar100-test", test.Pixels, test.Labels, 100, 3, 32, 32));
            }
            case "semeion":
            {
                var all = SemeionReader.Read(Path.Combine(directory, "semeion.data"));
                var (train, test) = all.Split(all.Count / 5, seed: 0);
                return (train, test);
            }
            default:
                throw new ArgumentException($"unknown dataset '{name}': expected one of {string.Join(", ", Names)}");
        }
    }

    private static string FirstExisting(string directory, string nested, string probe) =>
        File.Exists(Path.Combine(directory, nested, probe)) ? Path.Combine(directory, nested) : directory;
}
