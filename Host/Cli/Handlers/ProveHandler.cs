using ResearchFramework.Host.Certification;
using ResearchFramework.Host.Data;
using ResearchFramework.MathCore;
using ResearchFramework.Proofs;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf prove</c>: the executable proofs of <c>Proofs/</c> (docs/theory.md §4).</summary>
public sealed class ProveHandler
{
    /// <summary>The proofs <c>rf prove</c> knows, for <c>--list</c>.</summary>
    public static readonly (string Name, string What)[] Available =
    [
        ("fc", "SPEC §5: n distinct inputs, narrow hidden widths, a wide layer m ≥ n − 1, analytic activation ⇒ EC " +
               "(constructive witness: generic narrow layers, sorted projections, thresholds, slope from the proof's inequality; certified)"),
    ];

    public int List()
    {
        foreach (var (name, what) in Available) Console.WriteLine($"{name}: {what}");
        return ExitCodes.Success;
    }

    /// <summary><c>rf prove fc</c>: exit 0 Certified, 1 Refuted (a hypothesis fails), 2 Inconclusive.</summary>
    public int RunFc(ProveFcArguments args)
    {
        var activation = args.Activation.ToLowerInvariant() switch
        {
            "tanh" => Network.Activation.Tanh,
            "sigmoid" => Network.Activation.Sigmoid,
            "softplus" => Network.Activation.Softplus,
            var other => throw new ArgumentException($"--activation '{other}': the theorem needs an analytic activation (tanh, sigmoid, softplus)"),
        };
        var widths = FullyConnected.parseWidths(args.Widths);
        // The engine rule of rf certify (auto: dense when 32·n² bytes fit the memory available); tiles in memory, or in
        // --work-dir (resumable: the same command continues from the last finished tile).
        var options = args.Engine ?? CertificateEngineOptions.Default;
        var engine = new CertificateEngine(options.UsesTiled(args.N) ? EngineKind.Tiled : EngineKind.Dense, options.TileSize,
            options.MemoryBudgetBytes ?? CertificateEngineOptions.DefaultBudgetBytes, options.WorkDirectory, Tiled.defaults.GramChunkColumns, CancellationToken.None);
        // On the tiled engine Φ is streamed in row blocks (never whole); its phase lines go to stderr.
        var log = new Action<string>(line => Console.Error.WriteLine($"rf prove fc: {line}"));
        var result = args.Dataset is { } name
            ? FullyConnected.proveOnLogged(engine, log, activation, DatasetInputs(name, args.DataDirectory, args.N), widths, args.Seed)
            : FullyConnected.runFcOnLogged(engine, log, activation, args.N, widths, args.Seed);
        if (args.Dataset is { } dataset) Console.WriteLine($"inputs: the first {args.N} training images of {dataset}, pixels in [0, 1]");
        Console.Write(FullyConnected.report(result));
        if (args.JsonOutput is { } json)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(json))!);
            CertificateJson.save(json, result.Certificate);
            Console.WriteLine($"certificate: {json}");
        }
        return FullyConnected.exitCode(result);
    }

    /// <summary>The first <paramref name="n"/> training images of a dataset as an n × d float64 matrix (pixels in [0, 1]).</summary>
    private static double[,] DatasetInputs(string name, string dataDirectory, int n)
    {
        var (train, _) = DatasetCatalog.Load(name, dataDirectory);
        if (n > train.Count) throw new ArgumentException($"--n {n}: {name} has only {train.Count} training images");
        var d = train.Channels * train.Height * train.Width;
        var x = new double[n, d];
        for (var i = 0; i < n; i++)
            for (var j = 0; j < d; j++)
                x[i, j] = train.Images[i * d + j];
        return x;
    }
}
