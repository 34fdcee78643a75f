using System.ComponentModel.DataAnnotations;

namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>Configuration section <c>Data</c>: which dataset and how to prepare it.</summary>
public sealed class DataOptions
{
    public const string Section = "Data";

    [Required, OneOf("mnist", "fashion-mnist", "cifar10", "cifar100", "semeion")]
    public string Dataset { get; set; } = "mnist";

    [Required]
    public string DataDirectory { get; set; } = "data";

    /// <summary>Use only this many training images (stratified by <see cref="SplitSeed"/>); 0 = all.</summary>
    [Range(0, int.MaxValue)]
    public int TrainSubset { get; set; }

    /// <summary>Use only the first this many test images; 0 = all.</summary>
    [Range(0, int.MaxValue)]
    public int TestSubset { get; set; }

    public int SplitSeed { get; set; }

    public bool Normalize { get; set; } = true;

    /// <summary>Random crop (padding 4) + horizontal flip; meant for CIFAR-style data.</summary>
    public bool Augment { get; set; }
}
