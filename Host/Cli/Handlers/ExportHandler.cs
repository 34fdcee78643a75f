using ResearchFramework.Host.Certification;
using ResearchFramework.Host.Data;
using ResearchFramework.Host.Training;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf export --run RUN_DIR [--out FILE.safetensors|FILE.pt]</c>: the run's final parameters (its latest
/// checkpoint that verifies, loaded into the network of its <c>config.effective.json</c>), tensors named by the module's
/// parameter names (<see cref="ModelExport"/>), as <c>.safetensors</c> and as a PyTorch <c>.pt</c> state dict
/// (<c>torch.load</c>-able zip + pickle, written by TorchSharp.PyBridge): both beside each other by default
/// (<c>RUN_DIR/export/final.*</c>), the one format of <c>--out</c>'s extension otherwise. Exit 0 written, 1 no usable
/// checkpoint or data, 2 not a run or an unknown extension.</summary>
public sealed class ExportHandler
{
    /// <summary>Runs the export.</summary>
    public int Run(ExportArguments args)
    {
        var run = args.RunDirectory;
        var options = ModelExport.RunOptions(run);
        var outputs = args.Output is null
            ? [Path.Combine(run, "export", "final.safetensors"), Path.Combine(run, "export", "final.pt")]
            : new[] { args.Output };
        foreach (var output in outputs)
            if (!IsSafetensors(output) && !IsPyTorch(output))
                throw new Infrastructure.Configuration.ConfigurationException($"--out {output}: the file must end in .safetensors, .pt or .pth");
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
        foreach (var output in outputs)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
            if (IsSafetensors(output)) SafetensorsWriter.Write(output, export.Tensors, metadata);
            else PyTorchStateDict.Write(output, export.Tensors);
            Console.WriteLine($"exported: {output}");
        }
        Console.WriteLine($"  checkpoint {checkpoint} (iteration {export.Iteration}), {export.Tensors.Count} tensors: " +
                          string.Join(", ", export.Tensors.Select(t => $"{t.Name} [{string.Join(", ", t.Shape)}] {t.Dtype}")));
        Console.WriteLine($"  fingerprint: {export.Fingerprint}");
        return ExitCodes.Success;
    }

    private static bool IsSafetensors(string path) => path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);

    private static bool IsPyTorch(string path) =>
        path.EndsWith(".pt", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".pth", StringComparison.OrdinalIgnoreCase);
}
