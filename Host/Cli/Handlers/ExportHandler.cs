using ResearchFramework.Host.Certification;
using ResearchFramework.Host.Data;
using ResearchFramework.Host.Training;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf export --run RUN_DIR [--out FILE.safetensors]</c>: the run's final parameters (its latest checkpoint that
/// verifies, loaded into the network of its <c>config.effective.json</c>) as a <c>.safetensors</c> file, tensors named by
/// the module's parameter names (<see cref="ModelExport"/>). Exit 0 written, 1 no usable checkpoint or data, 2 not a run.
/// PyTorch <c>.pt</c> is not written.</summary>
public sealed class ExportHandler
{
    /// <summary>Runs the export.</summary>
    public int Run(ExportArguments args)
    {
        var run = args.RunDirectory;
        var options = ModelExport.RunOptions(run);
        var output = args.Output ?? Path.Combine(run, "export", "final.safetensors");
        if (!output.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new Infrastructure.Configuration.ConfigurationException($"--out {output}: the file must end in .safetensors");
        var (checkpoint, refused) = ModelExport.LatestCheckpoint(run);
        foreach (var (path, reason) in refused)
            Console.Error.WriteLine($"rf export: warning: skipped checkpoint {path}: {reason}");
        ModelExport.Export export;
        using (var data = RunSetup.LoadData(options))
            export = ModelExport.FromCheckpoint(options, data, checkpoint);
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["architecture"] = export.Architecture,
            ["checkpoint"] = Path.GetFileName(checkpoint),
            ["iteration"] = export.Iteration.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["fingerprint"] = export.Fingerprint,
        };
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        SafetensorsWriter.Write(output, export.Tensors, metadata);
        Console.WriteLine($"exported: {output}");
        Console.WriteLine($"  checkpoint {checkpoint} (iteration {export.Iteration}), {export.Tensors.Count} tensors: " +
                          string.Join(", ", export.Tensors.Select(t => $"{t.Name} [{string.Join(", ", t.Shape)}] {t.Dtype}")));
        Console.WriteLine($"  fingerprint: {export.Fingerprint}");
        return ExitCodes.Success;
    }
}
