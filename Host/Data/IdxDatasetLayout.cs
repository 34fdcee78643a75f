namespace ResearchFramework.Host.Data;

/// <summary>The four IDX files of an MNIST-like dataset (names relative to the dataset directory).</summary>
public sealed record IdxDatasetLayout(string Name, string TrainImages, string TrainLabels, string TestImages, string TestLabels)
{
    public static readonly IdxDatasetLayout Mnist = new("mnist",
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");

    public static readonly IdxDatasetLayout FashionMnist = new("fashion-mnist",
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz");

    public string[] Files => [TrainImages, TrainLabels, TestImages, TestLabels];

    /// <summary>Reads both splits (no manifest check) as 1×H×W datasets scaled to [0, 1], 10 classes.</summary>
    public (Dataset Train, Dataset Test) Read(string directory) =>
        (ReadSplit(directory, TrainImages, TrainLabels, $"{Name}-train"),
         ReadSplit(directory, TestImages, TestLabels, $"{Name}-test"));

    private static Dataset ReadSplit(string directory, string imageFile, string labelFile, string name)
    {
        var imagePath = Path.Combine(directory, imageFile);
        var labelPath = Path.Combine(directory, labelFile);
        var images = IdxReader.ReadImages(imagePath);
        var labels = IdxReader.ReadLabels(labelPath);
        if (labels.Length != images.Count)
            throw new DataFormatException(labelPath, 4, $"{images.Count} labels (as many as images in {imagePath})", $"{labels.Length}");
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] > 9)
                throw new DataFormatException(labelPath, 8 + i, "a label in 0..9", labels[i].ToString());
        return Dataset.FromBytes(name, images.Pixels, labels.Select(l => (int)l).ToArray(), 10, 1, images.Rows, images.Columns);
    }
}
