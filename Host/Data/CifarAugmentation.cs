namespace ResearchFramework.Host.Data;

/// <summary>CIFAR-style augmentation: random crop from a zero-padded image (padding 4 by default) and a
/// random horizontal flip with probability ½. Deterministic for a given seed and sequence of calls.</summary>
public sealed class CifarAugmentation
{
    private readonly Random _random;

    public CifarAugmentation(int seed, int padding = 4)
    {
        if (padding < 0) throw new ArgumentOutOfRangeException(nameof(padding));
        _random = new Random(seed);
        Padding = padding;
    }

    public int Padding { get; }

    /// <summary>Augments <paramref name="count"/> images of C×H×W stored consecutively in <paramref name="images"/>, in place.</summary>
    public void ApplyInPlace(Span<float> images, int count, int channels, int height, int width)
    {
        int size = channels * height * width;
        if (images.Length < (long)count * size)
            throw new ArgumentException($"buffer holds {images.Length} values, {count} images need {(long)count * size}");
        var scratch = new float[size];
        for (int n = 0; n < count; n++)
        {
            int dy = _random.Next(-Padding, Padding + 1);
            int dx = _random.Next(-Padding, Padding + 1);
            bool flip = _random.Next(2) == 1;
            var image = images.Slice(n * size, size);
            image.CopyTo(scratch);
            for (int c = 0; c < channels; c++)
                for (int y = 0; y < height; y++)
                    for (int x = 0; x < width; x++)
                    {
                        int sy = y + dy;
                        int sx = (flip ? width - 1 - x : x) + dx;
                        image[(c * height + y) * width + x] =
                            sy >= 0 && sy < height && sx >= 0 && sx < width ? scratch[(c * height + sy) * width + sx] : 0f;
                    }
        }
    }
}
