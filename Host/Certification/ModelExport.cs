using ResearchFramework.Algorithm;
using ResearchFramework.Host.Data;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.Host.Training;
using TorchSharp;

namespace ResearchFramework.Host.Certification;

/// <summary>Exports a run's final parameters: the network of its <c>config.effective.json</c>, loaded with the model
/// state of its latest checkpoint that verifies (<c>Checkpoint.latestValid</c>, the trainer's own layout read by
/// <see cref="ModelCertification.LoadModelState"/>), written as <c>.safetensors</c> tensors named by the module's
/// parameter (then buffer) names, bytes exactly as the model holds them.</summary>
public static class ModelExport
{
    /// <summary>The options of a run directory (its <c>config.effective.json</c>); throws
    /// <see cref="ConfigurationException"/> when the directory is not a run.</summary>
    public static RfOptions RunOptions(string runDirectory)
    {
        if (!Directory.Exists(runDirectory)) throw new DirectoryNotFoundException($"--run {runDirectory}: run directory not found");
        var effective = Path.Combine(runDirectory, "config.effective.json");
        if (!File.Exists(effective))
            throw new ConfigurationException($"--run {runDirectory}: not a run directory (no config.effective.json); give the folder rf created for the run");
        return RfOptions.Load(RfConfiguration.Build(new ConfigurationInput(effective, [])));
    }

    /// <summary>The latest checkpoint of the run that verifies, and the newer ones refused (path, reason).</summary>
    public static (string Checkpoint, IReadOnlyList<(string Path, string Reason)> Refused) LatestCheckpoint(string runDirectory)
    {
        var result = Checkpoint.latestValid(Path.Combine(runDirectory, "checkpoints"));
        var refused = result.Item2.Select(r => (r.Item1, r.Item2)).ToList();
        if (result.Item1 is null)
            throw new FileNotFoundException($"--run {runDirectory}: no checkpoint that verifies in its checkpoints/" +
                (refused.Count > 0 ? $" (refused: {string.Join("; ", refused.Select(r => $"{Path.GetFileName(r.Item1)}: {r.Item2}"))})" : ""));
        return (result.Item1, refused);
    }

    /// <summary>The network of <paramref name="options"/> for data of the given shape, with the model state of
    /// <paramref name="checkpoint"/>; its architecture must be the checkpoint's.</summary>
    public static (torch.nn.Module<torch.Tensor, torch.Tensor> Model, CheckpointHeader Header) LoadModel(RfOptions options, int channels, int height, int width, int classes, string checkpoint)
    {
        var architecture = RunSetup.Architecture(options.Model, channels, height, width, classes);
        var model = Networks.build(architecture, options.Training.Seed);
        try
        {
            var header = ModelCertification.LoadModelState(model, checkpoint);
            if (header.ArchitectureDescription != Networks.describe(architecture))
                throw new InvalidDataException($"checkpoint {checkpoint} is of '{header.ArchitectureDescription}', the run's configuration gives '{Networks.describe(architecture)}'");
            return (model, header);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>What an export writes: the tensors, the fingerprint of the run's final parameters (body and readout, as
    /// <c>summary.json</c>'s <c>FinalParameterFingerprint</c>), the checkpoint's iteration and the architecture.</summary>
    public sealed record Export(List<SafetensorsTensor> Tensors, string Fingerprint, int Iteration, string Architecture);

    /// <summary>The parameters of <paramref name="checkpoint"/> through the trainer's own load path: a
    /// <see cref="TwoPhaseTrainer"/> of the run's options (no checkpoint directory: nothing is written) restores it with
    /// <c>LoadCheckpoint</c>, which checks seed, T, τ, architecture and dataset against the run; then the model's
    /// parameters and buffers, and the readout V of a switched two-phase run as <c>readout.weight</c>/<c>readout.bias</c>
    /// (unless V is the model's own output layer, already exported under its name).</summary>
    public static Export FromCheckpoint(RfOptions options, PreparedTensors data, string checkpoint)
    {
        var architecture = RunSetup.Architecture(options, data);
        var training = RunSetup.Training(options.Training, options.Training.Seed, null);
        var recipe = RunSetup.Recipe(options.Recipe, options.Training, options.Recipe.Enabled);
        using var trainer = new TwoPhaseTrainer(architecture, training, RunSetup.Option(recipe), data.Train, null);
        trainer.LoadCheckpoint(checkpoint);
        var tensors = Tensors(trainer.Model);
        var readout = trainer.Readout;
        if (readout is not null)
        {
            var shared = trainer.Model.named_modules().Any(m => ReferenceEquals(m.module, readout));
            if (!shared)
                foreach (var (name, p) in readout.named_parameters())
                {
                    using var cpu = p.detach().cpu().contiguous();
                    tensors.Add(new SafetensorsTensor("readout." + name, SafetensorsDtype(cpu.dtype), cpu.shape, cpu.bytes.ToArray()));
                }
        }
        return new Export(tensors, trainer.ParameterFingerprint, trainer.Iteration, Networks.describe(architecture));
    }

    /// <summary>The safetensors dtype of a torch dtype.</summary>
    public static string SafetensorsDtype(torch.ScalarType type) => type switch
    {
        torch.ScalarType.Float32 => "F32",
        torch.ScalarType.Float64 => "F64",
        torch.ScalarType.Float16 => "F16",
        torch.ScalarType.BFloat16 => "BF16",
        torch.ScalarType.Int64 => "I64",
        torch.ScalarType.Int32 => "I32",
        torch.ScalarType.Int16 => "I16",
        torch.ScalarType.Int8 => "I8",
        torch.ScalarType.Byte => "U8",
        torch.ScalarType.Bool => "BOOL",
        _ => throw new InvalidDataException($"dtype {type} has no safetensors equivalent"),
    };

    /// <summary>The module's parameters, then its buffers, as safetensors tensors (name, dtype, shape, raw bytes of a
    /// contiguous CPU copy, little-endian).</summary>
    public static List<SafetensorsTensor> Tensors(torch.nn.Module model)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors export needs a little-endian machine");
        var tensors = new List<SafetensorsTensor>();
        void Add(string name, torch.Tensor t)
        {
            using var cpu = t.detach().cpu().contiguous();
            tensors.Add(new SafetensorsTensor(name, SafetensorsDtype(cpu.dtype), cpu.shape, cpu.bytes.ToArray()));
        }
        foreach (var (name, p) in model.named_parameters()) Add(name, p);
        foreach (var (name, b) in model.named_buffers()) Add(name, b);
        return tensors;
    }
}
