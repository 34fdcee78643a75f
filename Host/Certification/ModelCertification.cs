using Microsoft.FSharp.Core;
using ResearchFramework.Algorithm;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.Host.Training;
using ResearchFramework.MathCore;
using TorchSharp;

namespace ResearchFramework.Host.Certification;

/// <summary>The expressivity certificate (SPEC §3) of architecture + dataset + taps, at initialisation (seeded by
/// <c>Training:Seed</c>) or with the body parameters of a training checkpoint: Φ̃ rows h(x_i; ω) from Math.Core's
/// <c>FeatureMap.features</c> at the configured taps, streamed in row blocks through <c>Certify.certifyRowBlocks</c>
/// (the block cache is bounded by <see cref="CacheBytes"/>; blocks beyond it are recomputed).</summary>
public static class ModelCertification
{
    public const int BlockRows = 256;
    public const long CacheBytes = 256L * 1024 * 1024;

    /// <summary>The checkpoint file named by <paramref name="path"/>: the file itself, or the latest checkpoint in a run
    /// directory (its <c>checkpoints/</c>) or in a checkpoints folder.</summary>
    public static string ResolveCheckpoint(string path)
    {
        if (File.Exists(path)) return path;
        if (Directory.Exists(path))
        {
            var latest = Checkpoint.latest(Path.Combine(path, "checkpoints")) ?? Checkpoint.latest(path);
            if (latest is not null) return latest;
            throw new FileNotFoundException($"--checkpoint {path}: no checkpoint-*.bin in the directory or its checkpoints/");
        }
        throw new FileNotFoundException($"--checkpoint {path}: file not found");
    }

    /// <summary>Loads the model (body) state of a checkpoint written by the Algorithm trainer into <paramref name="model"/>.
    /// The layout is the one of <c>TwoPhaseTrainer.SaveCheckpoint</c>: magic, JSON header, then the model's state.</summary>
    public static CheckpointHeader LoadModelState(torch.nn.Module model, string path)
    {
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream);
        string magic;
        try { magic = reader.ReadString(); }
        catch (EndOfStreamException) { throw new InvalidDataException($"{path} is not a checkpoint (too short)"); }
        if (magic != Checkpoint.magic) throw new InvalidDataException($"{path} is not a checkpoint (magic '{magic}')");
        var header = Checkpoint.deserializeHeader(reader.ReadString());
        model.load(reader, true);
        return header;
    }

    public static Certificate Certify(RfOptions options, PreparedTensors data, string? checkpoint, int? subset, int seed) =>
        Certify(options, data, checkpoint, subset, seed, CertificateEngineOptions.Default with { Kind = CertificateEngineKind.Dense }, "", _ => { }).Certificate;

    /// <summary>The certificate on the engine <paramref name="engine"/> chooses for the certified rows, and the tile folder
    /// it used (null on the dense engine): <see cref="CertificateEngineOptions.WorkDirectory"/>, or else
    /// <c><paramref name="runsDirectory"/>/tiles-&lt;hash of the subject&gt;</c>, the same for the same model, data and
    /// subset, so the same command resumes. Progress and the engine's log lines go to <paramref name="log"/>.</summary>
    public static (Certificate Certificate, string? WorkDirectory) Certify(RfOptions options, PreparedTensors data, string? checkpoint, int? subset,
        int seed, CertificateEngineOptions engine, string runsDirectory, Action<string> log)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var features = new ModelFeatures(options, data, checkpoint, subset, seed);
        var subject = features.Subject;
        int rows = subject.Rows;
        int blockCount = (rows + BlockRows - 1) / BlockRows;
        torch.Tensor RowBlock(int i) => features.Rows((long)i * BlockRows, Math.Min(BlockRows, rows - (long)i * BlockRows));
        var certifyOptions = engine.CertifyOptions(ResearchFramework.MathCore.Certify.defaults);
        var rowBlock = FuncConvert.FromFunc<int, torch.Tensor>(RowBlock);
        if (!engine.UsesTiled(rows))
            return (ResearchFramework.MathCore.Certify.certifyRowBlocks(certifyOptions, subject, CacheBytes, BlockRows, blockCount, rowBlock), null);
        var key = SubjectKey(subject);
        var workDirectory = engine.WorkDirectory ?? Path.Combine(runsDirectory, "tiles-" + ShortHash(key));
        var settings = engine.Settings(key, workDirectory, log);
        bool RowsEqual(int i, int j) => features.RowsEqual(i, j);
        var equal = FSharpOption<FSharpFunc<int, FSharpFunc<int, bool>>>.Some(
            FuncConvert.FromFunc<int, FSharpFunc<int, bool>>(i => FuncConvert.FromFunc<int, bool>(j => RowsEqual(i, j))));
        // Auto route, as the dense model path (the orthogonal follow-up within Options.OrthogonalMaxBytes and the tile
        // budget): the Math.Core engine's tiled certificate of row blocks, under this command's tile settings.
        return (ResearchFramework.MathCore.CertificateEngine.CertifyRowBlocksOnTiles(
                settings, certifyOptions, subject, equal, BlockRows, blockCount, rowBlock, clock),
            engine.WorkDirectory ?? workDirectory);
    }

    /// <summary>One line naming the certified subject (dataset, set, architecture, parameters, taps): the tiled engine's
    /// run fingerprint and the key of the default work folders.</summary>
    internal static string SubjectKey(ExpressivitySubject subject) =>
        $"{subject.DatasetFingerprint}|{subject.CertificationSet}|{subject.Architecture}|{subject.ParameterFingerprint}|{string.Join(",", subject.Taps)}";

    internal static string ShortHash(string key) =>
        Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key)))[..16].ToLowerInvariant();
}

/// <summary>The feature matrix Φ of a configuration's model (at initialisation, seeded, or at a checkpoint's body) on the
/// first <see cref="ExpressivitySubject.Rows"/> training points: the model in evaluation mode, the subject it certifies,
/// and its rows computed on demand (<c>FeatureMap.features</c> at the configured taps, in batches of at most
/// <see cref="ModelCertification.BlockRows"/> inputs of a fixed partition; the model is in evaluation mode, so a row's
/// features do not depend mathematically on the other inputs of its batch, though two forward passes need not give the
/// same float32 bits).</summary>
public sealed class ModelFeatures : IDisposable
{
    private readonly torch.nn.Module<torch.Tensor, torch.Tensor> model;
    private readonly torch.Device device;
    private readonly Microsoft.FSharp.Collections.FSharpList<string> taps;
    private readonly torch.Tensor inputs;

    public ModelFeatures(RfOptions options, PreparedTensors data, string? checkpoint, int? subset, int seed)
    {
        var architecture = RunSetup.Architecture(options, data);
        device = TorchEnvironment.selectDevice(options.Training.Device);
        model = Networks.build(architecture, seed);
        try
        {
            if (checkpoint is not null)
            {
                var header = ModelCertification.LoadModelState(model, checkpoint);
                if (header.ArchitectureDescription != Networks.describe(architecture))
                    throw new InvalidDataException($"checkpoint {checkpoint} is of '{header.ArchitectureDescription}', the configuration gives '{Networks.describe(architecture)}'");
            }
            model.to(device);
            model.eval();
            taps = Networks.taps(architecture);
            int n = data.Train.Count;
            int rows = subset ?? (options.Recipe.CertificationSubset > 0 ? options.Recipe.CertificationSubset : n);
            rows = Math.Clamp(rows, 1, n);
            inputs = data.Train.Inputs;
            int features;
            torch.ScalarType dtype;
            using (var first = inputs.narrow(0, 0, 1).to(device))
            using (var h = FeatureMap.features(model, taps, first))
            {
                features = (int)h.shape[1];
                dtype = h.dtype;
            }
            FeatureType = dtype;
            Subject = new ExpressivitySubject(
                data.Train.Fingerprint,
                rows == n ? $"all {n} training points" : $"first {rows} of {n} training points",
                Networks.describe(architecture),
                [.. taps],
                Fingerprint.ofModule(model),
                rows, features, true);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>What is certified: Φ̃ = [Φ, 1] of the model at its taps on the certified rows.</summary>
    public ExpressivitySubject Subject { get; }

    /// <summary>The features' dtype (the model's precision).</summary>
    public torch.ScalarType FeatureType { get; }

    /// <summary>Rows [<paramref name="start"/>, start + <paramref name="length"/>) of Φ (length × m, on the model's device;
    /// the caller disposes it). Every row is computed in its own batch of the fixed partition into
    /// <see cref="ModelCertification.BlockRows"/>-row blocks, whoever asks, so that a row has the same bits in every
    /// engine and in the duplicate check (kernels may round differently for other batch shapes).</summary>
    public torch.Tensor Rows(long start, long length)
    {
        const int b = ModelCertification.BlockRows;
        long first = start / b, last = (start + length - 1) / b;
        using var scope = torch.NewDisposeScope();
        var parts = new List<torch.Tensor>();
        for (long block = first; block <= last; block++)
            parts.Add(Batch(block * b, Math.Min(b, Subject.Rows - block * b)));
        var all = parts.Count == 1 ? parts[0] : torch.cat(parts, 0);
        return all.narrow(0, start - first * b, length).clone().MoveToOuterDisposeScope();
    }

    private torch.Tensor Batch(long start, long length)
    {
        using var slice = inputs.narrow(0, start, length);
        using var onDevice = slice.to(device);
        return FeatureMap.features(model, taps, onDevice);
    }

    /// <summary>Whether rows <paramref name="i"/> and <paramref name="j"/> of Φ are equal entry for entry (a duplicate
    /// candidate of the certificate, confirmed on the features themselves).</summary>
    public bool RowsEqual(int i, int j)
    {
        using var a = Rows(i, 1);
        using var b = Rows(j, 1);
        using var same = a.eq(b).all();
        return same.item<bool>();
    }

    public void Dispose() => model.Dispose();
}
