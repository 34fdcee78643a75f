using TorchSharp;
using static TorchSharp.torch;

namespace ResearchFramework.Host.Data;

/// <summary>One mini-batch: images [B,C,H,W] float32 and labels [B] int64. Dispose it (or create it
/// inside a <c>torch.NewDisposeScope()</c>) when done.</summary>
public sealed class TensorBatch(Tensor images, Tensor labels) : IDisposable
{
    public Tensor Images { get; } = images;
    public Tensor Labels { get; } = labels;

    public void Dispose()
    {
        Images.Dispose();
        Labels.Dispose();
    }
}

/// <summary>Conversion of a <see cref="Dataset"/> to TorchSharp tensors, in batches.</summary>
public static class TensorBatches
{
    /// <summary>Batches over <paramref name="data"/>. Order is the dataset order, or a permutation from
    /// <paramref name="shuffleSeed"/>; <paramref name="augmentation"/> (if any) is applied to a copy of each batch.
    /// The last batch may be smaller.</summary>
    public static IEnumerable<TensorBatch> Enumerate(Dataset data, int batchSize, Device? device = null,
        int? shuffleSeed = null, CifarAugmentation? augmentation = null)
    {
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), $"batch size {batchSize} must be positive");
        var order = shuffleSeed is int seed ? Dataset.Permutation(data.Count, seed) : Enumerable.Range(0, data.Count).ToArray();
        for (int start = 0; start < data.Count; start += batchSize)
            yield return Make(data, order.AsSpan(start, Math.Min(batchSize, data.Count - start)), device, augmentation);
    }

    /// <summary>The whole dataset as one batch (for evaluation on small sets).</summary>
    public static TensorBatch All(Dataset data, Device? device = null) =>
        Make(data, Enumerable.Range(0, data.Count).ToArray(), device, null);

    private static TensorBatch Make(Dataset data, ReadOnlySpan<int> indices, Device? device, CifarAugmentation? augmentation)
    {
        int size = data.SampleSize;
        var pixels = new float[indices.Length * size];
        var labels = new long[indices.Length];
        for (int i = 0; i < indices.Length; i++)
        {
            Array.Copy(data.Images, (long)indices[i] * size, pixels, (long)i * size, size);
            labels[i] = data.Labels[indices[i]];
        }
        augmentation?.ApplyInPlace(pixels, indices.Length, data.Channels, data.Height, data.Width);
        var x = torch.tensor(pixels, new long[] { indices.Length, data.Channels, data.Height, data.Width }, device: device);
        var y = torch.tensor(labels, device: device);
        return new TensorBatch(x, y);
    }
}
