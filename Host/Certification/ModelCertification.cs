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
        var architecture = RunSetup.Architecture(options, data);
        var device = TorchEnvironment.selectDevice(options.Training.Device);
        using var model = Networks.build(architecture, seed);
        if (checkpoint is not null)
        {
            var header = LoadModelState(model, checkpoint);
            if (header.ArchitectureDescription != Networks.describe(architecture))
                throw new InvalidDataException($"checkpoint {checkpoint} is of '{header.ArchitectureDescription}', the configuration gives '{Networks.describe(architecture)}'");
        }
        model.to(device);
        model.eval();
        var taps = Networks.taps(architecture);
        int n = data.Train.Count;
        int rows = subset ?? (options.Recipe.CertificationSubset > 0 ? options.Recipe.CertificationSubset : n);
        rows = Math.Clamp(rows, 1, n);
        var x = data.Train.Inputs;
        int features;
        using (var first = x.narrow(0, 0, 1).to(device))
        using (var h = FeatureMap.features(model, taps, first))
            features = (int)h.shape[1];
        var subject = new ExpressivitySubject(
            data.Train.Fingerprint,
            rows == n ? $"all {n} training points" : $"first {rows} of {n} training points",
            Networks.describe(architecture),
            [.. taps],
            Fingerprint.ofModule(model),
            rows, features, true);
        int blockCount = (rows + BlockRows - 1) / BlockRows;
        torch.Tensor RowBlock(int i)
        {
            long start = (long)i * BlockRows, length = Math.Min(BlockRows, rows - start);
            using var slice = x.narrow(0, start, length);
            using var onDevice = slice.to(device);
            return FeatureMap.features(model, taps, onDevice);
        }
        if (!engine.UsesTiled(rows))
            return (ResearchFramework.MathCore.Certify.certifyRowBlocks(ResearchFramework.MathCore.Certify.defaults, subject, CacheBytes,
                BlockRows, blockCount, FuncConvert.FromFunc<int, torch.Tensor>(RowBlock)), null);
        var key = $"{subject.DatasetFingerprint}|{subject.CertificationSet}|{subject.Architecture}|{subject.ParameterFingerprint}|{string.Join(",", subject.Taps)}";
        var workDirectory = engine.WorkDirectory
            ?? Path.Combine(runsDirectory, "tiles-" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key)))[..16].ToLowerInvariant());
        var settings = engine.Settings(key, workDirectory, log);
        bool RowsEqual(int i, int j)
        {
            using var a = RowBlock(i / BlockRows);
            using var b = RowBlock(j / BlockRows);
            using var ra = a[i % BlockRows];
            using var rb = b[j % BlockRows];
            using var same = ra.eq(rb).all();
            return same.item<bool>();
        }
        var equal = FSharpOption<FSharpFunc<int, FSharpFunc<int, bool>>>.Some(
            FuncConvert.FromFunc<int, FSharpFunc<int, bool>>(i => FuncConvert.FromFunc<int, bool>(j => RowsEqual(i, j))));
        return (Tiled.certifyRowBlocks(ResearchFramework.MathCore.Certify.defaults, settings, subject, equal, BlockRows, blockCount,
            FuncConvert.FromFunc<int, torch.Tensor>(RowBlock)), engine.WorkDirectory ?? workDirectory);
    }
}
