namespace ResearchFramework.Host.Data.Fetch;

/// <summary>Where a fetchable dataset comes from and how to unpack it.</summary>
public interface IDatasetSource
{
    /// <summary>The file layout the dataset has once fetched.</summary>
    IdxDatasetLayout Layout { get; }

    /// <summary>Human-readable origin, recorded in the manifest.</summary>
    string Description { get; }

    /// <summary>Tools that must be on PATH.</summary>
    IReadOnlyList<string> RequiredTools { get; }

    /// <summary>Downloads and unpacks into <paramref name="workDirectory"/>; returns the folder holding the layout's files.</summary>
    string Download(string workDirectory);

    /// <summary>What the user can do by hand when a tool is missing.</summary>
    string ManualInstructions(string targetDirectory);
}
