using ResearchFramework.Host.Certification;
using ResearchFramework.Host.Data;
using ResearchFramework.Host.Training;
using ResearchFramework.MathCore;

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
        // The network's input shape and classes are the dataset's: loaded as training loads it.
        int channels, height, width, classes;
        using (var data = RunSetup.LoadData(options))
            (channels, height, width, classes) = (data.Channels, data.Height, data.Width, data.Classes);
        var (model, header) = ModelExport.LoadModel(options, channels, height, width, classes, checkpoint);
        using (model)
        {
            var tensors = ModelExport.Tensors(model);
            var metadata = new Dictionary<string, string>
            {
                ["format"] = "pt",
                ["architecture"] = header.ArchitectureDescription,
                ["checkpoint"] = Path.GetFileName(checkpoint),
                ["iteration"] = header.Iteration.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["fingerprint"] = Fingerprint.ofModule(model),
            };
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
            SafetensorsWriter.Write(output, tensors, metadata);
            Console.WriteLine($"exported: {output}");
            Console.WriteLine($"  checkpoint {checkpoint} (iteration {header.Iteration}), {tensors.Count} tensors: " +
                              string.Join(", ", tensors.Select(t => $"{t.Name} [{string.Join(", ", t.Shape)}] {t.Dtype}")));
            Console.WriteLine($"  fingerprint: {metadata["fingerprint"]}");
        }
        return ExitCodes.Success;
    }
}
