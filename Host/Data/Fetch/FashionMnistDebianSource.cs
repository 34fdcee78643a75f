namespace ResearchFramework.Host.Data.Fetch;

/// <summary>Fashion-MNIST gzip IDX files from the Debian package <c>dataset-fashion-mnist</c>
/// (<c>apt-get download</c> + <c>dpkg -x</c>, nothing installed).</summary>
public sealed class FashionMnistDebianSource : IDatasetSource
{
    private const string Package = "dataset-fashion-mnist";

    public IdxDatasetLayout Layout => IdxDatasetLayout.FashionMnist;
    public string Description => $"apt-get download {Package} + dpkg -x (usr/share/datasets/fashion-mnist/)";
    public IReadOnlyList<string> RequiredTools => ["apt-get", "dpkg"];

    public string Download(string workDirectory)
    {
        try
        {
            ProcessRunner.Run("apt-get", ["download", Package], workDirectory, TimeSpan.FromMinutes(5));
        }
        catch (DataFetchException e) when (e.Message.Contains("Unable to locate package", StringComparison.Ordinal))
        {
            throw new DataFetchException($"{e.Message}\nThe package lists do not know {Package}: run `apt-get update` (as root) and try again.");
        }
        var deb = Directory.GetFiles(workDirectory, $"{Package}_*.deb").SingleOrDefault()
            ?? throw new DataFetchException($"`apt-get download {Package}` produced no {Package}_*.deb in {workDirectory} (try `apt-get update` first)");
        var extracted = Path.Combine(workDirectory, "extracted");
        ProcessRunner.Run("dpkg", ["-x", deb, extracted], workDirectory, TimeSpan.FromMinutes(2));
        return Path.Combine(extracted, "usr", "share", "datasets", "fashion-mnist");
    }

    public string ManualInstructions(string targetDirectory) =>
        $"Obtain the Debian package {Package} elsewhere (`apt-get download {Package} && dpkg -x {Package}_*.deb out`) and copy " +
        $"out/usr/share/datasets/fashion-mnist/{{{string.Join(",", Layout.Files)}}} into {targetDirectory}/, then run " +
        "`rf data fetch fashion-mnist` again (it verifies the files and writes manifest.json).";
}
