namespace ResearchFramework.Host.Data;

/// <summary>An in-memory labelled image dataset: float32 images N×C×H×W as one flat row-major array.</summary>
public sealed class Dataset
{
    public Dataset(string name, float[] images, int[] labels, int classCount, int channels, int height, int width)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (channels <= 0 || height <= 0 || width <= 0)
            throw new ArgumentException($"dataset '{name}': image shape {channels}×{height}×{width} must be positive");
        if (images.Length != (long)labels.Length * channels * height * width)
            throw new ArgumentException($"dataset '{name}': {images.Length} pixel values do not match {labels.Length} images of {channels}×{height}×{width}");
        foreach (var label in labels)
            if (label < 0 || label >= classCount)
                throw new ArgumentException($"dataset '{name}': label {label} outside 0..{classCount - 1}");
        Name = name;
        Images = images;
        Labels = labels;
        ClassCount = classCount;
        Channels = channels;
        Height = height;
        Width = width;
    }

    /// <summary>Builds a dataset from 8-bit pixels, scaled to [0, 1].</summary>
    public static Dataset FromBytes(string name, ReadOnlySpan<byte> pixels, int[] labels, int classCount, int channels, int height, int width)
    {
        var images = new float[pixels.Length];
        for (int i = 0; i < pixels.Length; i++) images[i] = pixels[i] / 255f;
        return new Dataset(name, images, labels, classCount, channels, height, width);
    }

    public string Name { get; }
    public float[] Images { get; }
    public int[] Labels { get; }
    public int ClassCount { get; }
    public int Channels { get; }
    public int Height { get; }
    public int Width { get; }

    /// <summary>Number of images.</summary>
    public int Count => Labels.Length;

    /// <summary>Values per image (C·H·W).</summary>
    public int SampleSize => Channels * Height * Width;

    /// <summary>Images per class.</summary>
    public int[] ClassCounts()
    {
        var counts = new int[ClassCount];
        foreach (var label in Labels) counts[label]++;
        return counts;
    }

    /// <summary>The images at <paramref name="indices"/>, in that order.</summary>
    public Dataset Select(IReadOnlyList<int> indices, string? name = null)
    {
        int size = SampleSize;
        var images = new float[(long)indices.Count * size];
        var labels = new int[indices.Count];
        for (int i = 0; i < indices.Count; i++)
        {
            int source = indices[i];
            if ((uint)source >= (uint)Count)
                throw new ArgumentOutOfRangeException(nameof(indices), $"index {source} outside 0..{Count - 1}");
            Array.Copy(Images, (long)source * size, images, (long)i * size, size);
            labels[i] = Labels[source];
        }
        return new Dataset(name ?? Name, images, labels, ClassCount, Channels, Height, Width);
    }

    /// <summary>The first <paramref name="k"/> images (all when k ≥ Count).</summary>
    public Dataset Take(int k) => Select(Enumerable.Range(0, Math.Clamp(k, 0, Count)).ToArray());

    /// <summary>Deterministic split by seed: a random permutation, the first <paramref name="secondCount"/>
    /// images go to <c>Second</c> (e.g. validation), the rest to <c>First</c>; both keep their original order.</summary>
    public (Dataset First, Dataset Second) Split(int secondCount, int seed)
    {
        if (secondCount < 0 || secondCount > Count)
            throw new ArgumentOutOfRangeException(nameof(secondCount), $"split size {secondCount} outside 0..{Count}");
        var permutation = Permutation(Count, seed);
        var second = permutation[..secondCount];
        var first = permutation[secondCount..];
        Array.Sort(first);
        Array.Sort(second);
        return (Select(first), Select(second));
    }

    /// <summary>A stratified subset of <paramref name="k"/> images chosen by seed: each class gets its
    /// share of k in proportion to its frequency (largest remainder), original order kept.</summary>
    public Dataset StratifiedSubset(int k, int seed)
    {
        if (k >= Count) return this;
        if (k < 0) throw new ArgumentOutOfRangeException(nameof(k), $"subset size {k} is negative");
        var counts = ClassCounts();
        var quota = new int[ClassCount];
        var remainders = new (double Remainder, int Class)[ClassCount];
        for (int c = 0; c < ClassCount; c++)
        {
            double exact = (double)k * counts[c] / Count;
            quota[c] = (int)Math.Floor(exact);
            remainders[c] = (exact - quota[c], c);
        }
        int missing = k - quota.Sum();
        foreach (var (_, c) in remainders.OrderByDescending(r => r.Remainder).ThenBy(r => r.Class).Take(missing))
            quota[c]++;
        var chosen = new List<int>(k);
        var taken = new int[ClassCount];
        foreach (var index in Permutation(Count, seed))
        {
            int c = Labels[index];
            if (taken[c] < quota[c]) { taken[c]++; chosen.Add(index); }
        }
        chosen.Sort();
        return Select(chosen);
    }

    /// <summary>A permutation of 0..n-1 determined by <paramref name="seed"/> (Fisher–Yates, seeded System.Random).</summary>
    public static int[] Permutation(int n, int seed)
    {
        var result = Enumerable.Range(0, n).ToArray();
        var random = new Random(seed);
        for (int i = n - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (result[i], result[j]) = (result[j], result[i]);
        }
        return result;
    }
}
