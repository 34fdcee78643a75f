namespace ResearchFramework.Host.Data;

/// <summary>Per-channel mean and standard deviation, computed on a training split and applied to any split.</summary>
public sealed record ChannelStatistics(float[] Mean, float[] Std)
{
    /// <summary>Population mean and std per channel over all images and pixels of <paramref name="train"/>.</summary>
    public static ChannelStatistics Compute(Dataset train)
    {
        int plane = train.Height * train.Width;
        var sum = new double[train.Channels];
        var sumSquares = new double[train.Channels];
        for (int n = 0; n < train.Count; n++)
            for (int c = 0; c < train.Channels; c++)
            {
                long start = ((long)n * train.Channels + c) * plane;
                for (int p = 0; p < plane; p++)
                {
                    double v = train.Images[start + p];
                    sum[c] += v;
                    sumSquares[c] += v * v;
                }
            }
        double total = (double)train.Count * plane;
        var mean = new float[train.Channels];
        var std = new float[train.Channels];
        for (int c = 0; c < train.Channels; c++)
        {
            double m = sum[c] / total;
            mean[c] = (float)m;
            std[c] = (float)Math.Sqrt(Math.Max(sumSquares[c] / total - m * m, 0));
            if (std[c] < 1e-8f) std[c] = 1f;
        }
        return new ChannelStatistics(mean, std);
    }

    /// <summary>A new dataset with (x - mean[c]) / std[c] applied per channel.</summary>
    public Dataset Apply(Dataset data)
    {
        if (data.Channels != Mean.Length)
            throw new ArgumentException($"statistics have {Mean.Length} channels, dataset '{data.Name}' has {data.Channels}");
        int plane = data.Height * data.Width;
        var images = new float[data.Images.Length];
        for (long i = 0; i < images.Length; i++)
        {
            int c = (int)(i / plane % data.Channels);
            images[i] = (data.Images[i] - Mean[c]) / Std[c];
        }
        return new Dataset(data.Name, images, data.Labels, data.ClassCount, data.Channels, data.Height, data.Width);
    }
}
