using ResearchFramework.Host.Infrastructure.Configuration;

namespace ResearchFramework.Host.Data;

/// <summary>Train and test splits ready for training: subset, normalised with train statistics, and the
/// augmentation to apply to training batches (null when off).</summary>
public sealed record PreparedData(Dataset Train, Dataset Test, ChannelStatistics? Statistics, CifarAugmentation? Augmentation);

/// <summary>Applies <see cref="DataOptions"/> to a dataset: the single entry point a training handler needs for data.</summary>
public static class DatasetPreparation
{
    /// <summary>Loads <see cref="DataOptions.Dataset"/> from <see cref="DataOptions.DataDirectory"/> and prepares it.</summary>
    public static PreparedData Load(DataOptions options, int augmentationSeed)
    {
        var (train, test) = DatasetCatalog.Load(options.Dataset, options.DataDirectory);
        CheckSameShape(train, test);
        return Prepare(train, test, options, augmentationSeed);
    }

    /// <summary>Training and test images must have one shape and one class count: caught at load, not after training.</summary>
    public static void CheckSameShape(Dataset train, Dataset test)
    {
        if (train.Channels != test.Channels || train.Height != test.Height || train.Width != test.Width || train.ClassCount != test.ClassCount)
            throw new InvalidDataException(
                $"{train.Name} and {test.Name} differ: training images are {train.Channels}×{train.Height}×{train.Width} with {train.ClassCount} classes, " +
                $"test images {test.Channels}×{test.Height}×{test.Width} with {test.ClassCount} classes; both splits must have one shape");
    }

    /// <summary>Train subset: stratified, chosen by <see cref="DataOptions.SplitSeed"/>; test subset: the first K;
    /// normalisation statistics from the (subset) train split only; augmentation seeded by <paramref name="augmentationSeed"/>.</summary>
    public static PreparedData Prepare(Dataset train, Dataset test, DataOptions options, int augmentationSeed)
    {
        if (options.TrainSubset > 0) train = train.StratifiedSubset(options.TrainSubset, options.SplitSeed);
        if (options.TestSubset > 0) test = test.Take(options.TestSubset);
        ChannelStatistics? statistics = null;
        if (options.Normalize)
        {
            statistics = ChannelStatistics.Compute(train);
            train = statistics.Apply(train);
            test = statistics.Apply(test);
        }
        var augmentation = options.Augment ? new CifarAugmentation(augmentationSeed) : null;
        return new PreparedData(train, test, statistics, augmentation);
    }
}
