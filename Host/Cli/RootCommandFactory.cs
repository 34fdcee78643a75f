using ResearchFramework.Host.Certification;
using System.CommandLine;
using ResearchFramework.Host.Cli.Handlers;

namespace ResearchFramework.Host.Cli;

/// <summary>Defines the <c>rf</c> command tree and routes each command to its handler.</summary>
public static class RootCommandFactory
{
    public static RootCommand Create()
    {
        var root = new RootCommand("rf: ResearchFramework — train, compare and certify networks (SPEC.md)");
        root.Subcommands.Add(Train());
        root.Subcommands.Add(Compare());
        root.Subcommands.Add(Certify());
        root.Subcommands.Add(Export());
        root.Subcommands.Add(Prove());
        root.Subcommands.Add(Verify());
        root.Subcommands.Add(Worker());
        root.Subcommands.Add(Data());
        root.Subcommands.Add(Env());
        root.Subcommands.Add(MainJob());
        // Bare `rf` (also `./build.sh run`): the main job (experiments/main-job.json), after the environment line.
        root.SetAction(_ => CommandRunner.Run("", () =>
        {
            new EnvHandler().Run();
            Console.WriteLine("commands: main, train, compare, certify, export, prove, verify, worker, data fetch, env (rf --help); running the main job");
            return new MainJobHandler().Run(null);
        }));
        return root;
    }

    private static Command MainJob()
    {
        var command = new Command("main", "the main job: fetch MNIST if missing, then the compare of experiments/main-job.json (also bare rf)");
        var job = new Option<FileInfo>("--job") { Description = "job file (default: experiments/main-job.json)" };
        command.Options.Add(job);
        command.SetAction(r => CommandRunner.Run("main", () => new MainJobHandler().Run(r.GetValue(job)?.FullName)));
        return command;
    }

    private static Command Train()
    {
        var command = new Command("train", "train one configuration (two-phase recipe when Recipe:Enabled)");
        var common = new CommonOptions(configRequired: false);
        var resume = new Option<DirectoryInfo>("--resume") { Description = "resume the run in this run directory from its latest checkpoint" };
        common.AddTo(command);
        command.Options.Add(resume);
        command.Validators.Add(r =>
        {
            if (r.GetResult(common.Config) is null && r.GetResult(resume) is null)
                r.AddError("give --config FILE (or --resume RUN_DIR, which reuses the run's config.effective.json)");
        });
        command.SetAction(r => CommandRunner.Run("train", () =>
            new TrainHandler().Run(new TrainArguments(common.Read(r), r.GetValue(resume)?.FullName))));
        return command;
    }

    private static Command Compare()
    {
        var command = new Command("compare", "run a configuration over several seeds, with and without the recipe");
        var common = new CommonOptions(configRequired: false);
        var seeds = new Option<int>("--seeds") { Description = "number of seeds", DefaultValueFactory = _ => 5 };
        seeds.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--seeds must be at least 1"); });
        var resume = new Option<DirectoryInfo>("--resume") { Description = "resume the compare run in this directory (finished sub-runs are kept)" };
        common.AddTo(command);
        command.Options.Add(seeds);
        command.Options.Add(resume);
        command.Validators.Add(r =>
        {
            if (r.GetResult(common.Config) is null && r.GetResult(resume) is null)
                r.AddError("give --config FILE (or --resume DIR, which reuses the compare run's config.effective.json)");
        });
        command.SetAction(r => CommandRunner.Run("compare", () =>
            new CompareHandler().Run(new CompareArguments(common.Read(r), r.GetValue(seeds), r.GetValue(resume)?.FullName))));
        return command;
    }

    private static Command Certify()
    {
        var command = new Command("certify", "certify a trained model (--config) or a given feature matrix (--matrix)");
        var common = new CommonOptions(configRequired: false);
        var checkpoint = new Option<FileInfo>("--checkpoint") { Description = "checkpoint to certify (default: the run's last)" };
        var subset = new Option<int?>("--subset") { Description = "certify on this many training samples" };
        var matrix = new Option<FileInfo>("--matrix") { Description = "a 2-D matrix to certify directly: .npy (<f4 or <f8, C order) or .safetensors (F32 or F64); streamed" };
        var json = new Option<FileInfo>("--json") { Description = "write the certificate as JSON to this file" };
        var bias = new Option<string>("--bias") { Description = "on: certify [Φ, 1] as the model path does (default); off: the matrix as given" };
        bias.AcceptOnlyFromAmong("on", "off");
        var tensor = new Option<string>("--tensor") { Description = "the tensor of a .safetensors file to certify (needed when it holds several 2-D tensors)" };
        var engine = new Option<string>("--engine") { Description = "auto: the dense n×n Gram when 32·n² bytes fit in memory, else tiled (default; with --config: Certificate:Engine); dense; tiled (resumable tile files); scalapack (under mpirun -np P: the Gram distributed over P ranks; with --config each rank computes the features of its own rows)" };
        engine.AcceptOnlyFromAmong("auto", "dense", "tiled", "scalapack");
        var grid = new Option<string>("--grid") { Description = "BLACS process grid PxQ of --engine scalapack (P·Q = the ranks mpirun started; default: the most square)" };
        var block = new Option<int>("--block") { Description = "block size NB of --engine scalapack's block-cyclic distribution", DefaultValueFactory = _ => 256 };
        block.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--block must be at least 1"); });
        var tileSize = new Option<int>("--tile-size") { Description = "rows of a tile of the tiled engine", DefaultValueFactory = _ => 2048 };
        tileSize.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--tile-size must be at least 1"); });
        var workDir = new Option<DirectoryInfo>("--work-dir") { Description = "tile files and manifest of the tiled engine (default: next to the JSON for --matrix, RunsDirectory/tiles-<run> for --config); run the same command again to resume" };
        var tileMemory = new Option<double?>("--tile-memory-gb") { Description = "GB of tiles kept in memory by the tiled engine (default: Certificate:TileMemoryGB with --config, else 20 GiB, at most half the memory available)" };
        tileMemory.Validators.Add(r => { if (r.GetValueOrDefault<double?>() is <= 0) r.AddError("--tile-memory-gb must be positive"); });
        var gramChunk = new Option<int?>("--gram-chunk") { Description = $"columns per product of the Gram (tiled engine's tiles, dense engine's stream): the accumulation constant is gamma_h, h = c + ceil(m/c) - 1 (default {ResearchFramework.MathCore.Tiled.defaults.GramChunkColumns} tiled, {ResearchFramework.MathCore.Certify.defaults.BlockColumns} dense; a --matrix file on the dense engine without this option or --cholesky-panel: one product first, h = m', then {ResearchFramework.MathCore.Certify.defaults.BlockColumns} only where that decides the verdict; smaller: a smaller h down to c ~ sqrt(m), more additions)" };
        gramChunk.Validators.Add(r => { if (r.GetValueOrDefault<int?>() is < 1) r.AddError("--gram-chunk must be at least 1"); });
        var choleskyPanel = new Option<int?>("--cholesky-panel") { Description = $"columns per panel of the Cholesky factorisations (tiled and dense engines): its constant is gamma'_h, h = 2s + (panels in all) + 1 (default {ResearchFramework.MathCore.Tiled.defaults.CholeskyPanel}; the tile size, or n on the dense engine: LAPACK's order, faster, larger h). Without it the dense engine uses LAPACK's order where its larger h costs the bound at most 1e-3 of the shift, these panels elsewhere; with it, always the panels given" };
        choleskyPanel.Validators.Add(r => { if (r.GetValueOrDefault<int?>() is < 1) r.AddError("--cholesky-panel must be at least 1"); });
        common.AddTo(command);
        command.Options.Add(engine);
        command.Options.Add(tileSize);
        command.Options.Add(gramChunk);
        command.Options.Add(choleskyPanel);
        command.Options.Add(workDir);
        command.Options.Add(tileMemory);
        command.Options.Add(grid);
        command.Options.Add(block);
        command.Options.Add(checkpoint);
        command.Options.Add(subset);
        command.Options.Add(matrix);
        command.Options.Add(json);
        command.Options.Add(bias);
        command.Options.Add(tensor);
        command.Validators.Add(r =>
        {
            if (r.GetResult(common.Config) is not null && (r.GetResult(bias) is not null || r.GetResult(tensor) is not null))
                r.AddError("--bias and --tensor go with --matrix");
            bool hasConfig = r.GetResult(common.Config) is not null, hasMatrix = r.GetResult(matrix) is not null;
            if (hasConfig == hasMatrix) r.AddError("give exactly one of --config FILE or --matrix FILE (.npy or .safetensors)");
            if (hasMatrix && (r.GetResult(checkpoint) is not null || r.GetResult(subset) is not null))
                r.AddError("--checkpoint and --subset go with --config, not --matrix");
            if (hasConfig && r.GetResult(json) is not null)
                r.AddError("--json goes with --matrix");
            if (r.GetResult(subset) is not null && r.GetValue(subset) is < 1)
                r.AddError("--subset must be at least 1");
            bool scalapack = r.GetValue(engine) == "scalapack";
            if (!scalapack && (r.GetResult(grid) is not null || r.GetResult(block) is not null))
                r.AddError("--grid and --block go with --engine scalapack");
        });
        command.SetAction(r => CommandRunner.Run("certify", () => new CertifyHandler().Run(new CertifyArguments(
            r.GetResult(common.Config) is null ? null : common.Read(r),
            r.GetValue(checkpoint)?.FullName, r.GetValue(subset), r.GetValue(matrix)?.FullName, r.GetValue(json)?.FullName,
            r.GetValue(bias) != "off", r.GetValue(tensor),
            new CertificateEngineOptions(
                r.GetValue(engine) switch
                {
                    "dense" => CertificateEngineKind.Dense, "tiled" => CertificateEngineKind.Tiled,
                    "scalapack" => CertificateEngineKind.ScaLAPACK, _ => CertificateEngineKind.Auto,
                },
                r.GetValue(tileSize), r.GetValue(workDir)?.FullName,
                r.GetValue(tileMemory) is { } gb ? (long)(gb * 1e9) : null,
                r.GetValue(grid), r.GetValue(block), r.GetValue(gramChunk), r.GetValue(choleskyPanel)),
            r.GetResult(engine) is { Implicit: false }, r.GetResult(tileSize) is { Implicit: false }))));
        return command;
    }

    private static Command Export()
    {
        var command = new Command("export", "write a run's final parameters (its latest verified checkpoint) as .safetensors and PyTorch .pt");
        var run = new Option<DirectoryInfo>("--run") { Description = "the run directory (with config.effective.json and checkpoints/)", Required = true };
        var output = new Option<FileInfo>("--out") { Description = "the file to write, .safetensors or PyTorch .pt/.pth (default: both, RUN_DIR/export/final.safetensors and final.pt)" };
        command.Options.Add(run);
        command.Options.Add(output);
        command.SetAction(r => CommandRunner.Run("export", () =>
            new ExportHandler().Run(new ExportArguments(r.GetValue(run)!.FullName, r.GetValue(output)?.FullName))));
        return command;
    }

    private static Command Prove()
    {
        var command = new Command("prove", "executable proofs of Proofs/ (docs/theory.md §4): build the witness, certify it");
        var list = new Option<bool>("--list") { Description = "list the available proofs" };
        command.Options.Add(list);
        command.SetAction(r => CommandRunner.Run("prove", () => r.GetValue(list) ? new ProveHandler().List()
            : Usage("prove", "name a proof (rf prove --list), e.g. rf prove fc --n 200 --widths 3,3,200")));
        var fc = new Command("fc", "SPEC §5: narrow layers + one wide layer (m ≥ n − 1) satisfy EC; exit 0 Certified, 1 Refuted, 2 Inconclusive");
        var n = new Option<int>("--n") { Description = "number of inputs", DefaultValueFactory = _ => 200 };
        var widths = new Option<string>("--widths") { Description = "hidden widths, the last one wide, e.g. 3,3,200", Required = true };
        var seed = new Option<int>("--seed") { Description = "seed of the inputs and the generic draws", DefaultValueFactory = _ => 1 };
        var activation = new Option<string>("--activation") { Description = "tanh | sigmoid | softplus", DefaultValueFactory = _ => "tanh" };
        var dataset = new Option<string>("--dataset") { Description = "use the first n training images of this dataset (default: Gaussian inputs in R^4)" };
        var dataDir = new Option<DirectoryInfo>("--data-dir") { Description = "data directory (default: data)" };
        var json = new Option<FileInfo>("--json") { Description = "write the certificate as JSON to this file" };
        var engine = new Option<string>("--engine") { Description = "certificate engine: auto (the dense n×n Gram when 32·n² bytes fit in memory, else tiled; default), dense, tiled" };
        engine.AcceptOnlyFromAmong("auto", "dense", "tiled");
        var tileSize = new Option<int>("--tile-size") { Description = "rows of a tile of the tiled engine", DefaultValueFactory = _ => 2048 };
        tileSize.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--tile-size must be at least 1"); });
        var tileMemory = new Option<double?>("--tile-memory-gb") { Description = "GB of tiles kept in memory by the tiled engine (default: 20 GiB, at most half the memory available)" };
        tileMemory.Validators.Add(r => { if (r.GetValueOrDefault<double?>() is <= 0) r.AddError("--tile-memory-gb must be positive"); });
        var workDir = new Option<DirectoryInfo>("--work-dir") { Description = "tile files and manifest of the tiled engine (default: tiles in memory); run the same command again to resume" };
        foreach (var option in new Option[] { n, widths, seed, activation, dataset, dataDir, json, engine, tileSize, tileMemory, workDir }) fc.Options.Add(option);
        fc.SetAction(r => CommandRunner.Run("prove fc", () => new ProveHandler().RunFc(new ProveFcArguments(
            r.GetValue(n), r.GetValue(widths)!, r.GetValue(seed), r.GetValue(activation)!, r.GetValue(dataset),
            r.GetValue(dataDir)?.FullName ?? "data", r.GetValue(json)?.FullName,
            new CertificateEngineOptions(Certification.CertificateEngineConfiguration.KindOf(r.GetValue(engine) ?? "auto"), r.GetValue(tileSize), r.GetValue(workDir)?.FullName,
                r.GetValue(tileMemory) is { } gb ? (long)(gb * 1e9) : null)))));
        command.Subcommands.Add(fc);
        return command;
    }

    private static int Usage(string command, string message)
    {
        Console.Error.WriteLine($"rf {command}: {message}");
        return ExitCodes.Usage;
    }

    private static Command Verify()
    {
        var command = new Command("verify",
            "run the property suite (the CI properties, same code) as a verification job: many cases, a report, resumable, replayable failures");
        var filter = new Option<string[]>("--filter")
        {
            Description = "MathCore | Algorithm | Proofs | Differential | Foundation, or a substring of a property's full name; repeatable (default: MathCore, Algorithm, Proofs, Differential)",
            DefaultValueFactory = _ => [],
        };
        var cases = new Option<string>("--cases")
        {
            Description = "cases per property: Nx = N times its CI case count (e.g. 10x), or N cases (e.g. 500); default 1x, unlimited with --time alone",
        };
        var time = new Option<string>("--time") { Description = "time budget of this invocation, e.g. 90s, 30m, 8h: no batch starts after it" };
        var batch = new Option<int?>("--batch") { Description = "cases per batch (default: the property's CI count); a resume continues after the last finished batch" };
        var sizeScale = new Option<double?>("--size-scale") { Description = "multiply the bounds of generated shapes by this (≥ 1; RF_SIZE_SCALE)" };
        var device = new Option<string[]>("--device")
        {
            Description = "cpu | cuda | auto, repeatable or comma-separated (cpu,cuda): the selection runs on each (RF_TEST_DEVICE); default cpu",
            DefaultValueFactory = _ => [],
        };
        var seed = new Option<long>("--seed") { Description = "master seed: batch b of property p runs FsCheck seed f(seed, p, b)", DefaultValueFactory = _ => 1 };
        var output = new Option<DirectoryInfo>("--out") { Description = "run directory (default runs/verify-<time>); one holding the same plan is continued" };
        var resume = new Option<DirectoryInfo>("--resume") { Description = "continue this verification run from its last finished batch (same plan and seeds)" };
        var replay = new Option<FileInfo>("--replay") { Description = "re-run a saved failure (failures/*.json of a run) bit for bit" };
        var runner = new Option<FileInfo>("--properties")
        {
            Description = "the property runner Properties.dll (default: RF_PROPERTIES_DLL, else Properties/bin/<configuration>/net10.0 of this checkout)",
        };
        foreach (var option in new Option[] { filter, cases, time, batch, sizeScale, device, seed, output, resume, replay, runner }) command.Options.Add(option);
        command.Validators.Add(r =>
        {
            var planOptions = new Option[] { filter, cases, batch, sizeScale, device, seed, output };
            if (r.GetResult(replay) is not null && (r.GetResult(resume) is not null || r.GetResult(time) is not null || planOptions.Any(o => r.GetResult(o) is not null)))
                r.AddError("--replay FILE takes no other option than --properties");
            if (r.GetResult(resume) is not null && planOptions.Any(o => r.GetResult(o) is not null))
                r.AddError("--resume RUN_DIR continues the run's own plan (verify.json): only --time and --properties may be given with it");
            if (r.GetResult(batch) is not null && r.GetValue(batch) is < 1) r.AddError("--batch must be at least 1");
            if (r.GetResult(sizeScale) is not null && r.GetValue(sizeScale) is not (>= 1.0 and <= 1000.0)) r.AddError("--size-scale must be in [1, 1000]");
        });
        command.SetAction(r => CommandRunner.Run("verify", () => new VerifyHandler().Run(new VerifyArguments(
            r.GetValue(filter) ?? [], r.GetValue(cases), r.GetValue(time), r.GetValue(batch), r.GetValue(sizeScale), r.GetValue(device) ?? [],
            r.GetValue(seed), r.GetValue(output)?.FullName, r.GetValue(resume)?.FullName, r.GetValue(replay)?.FullName, r.GetValue(runner)?.FullName))));
        return command;
    }

    private static Command Worker()
    {
        var command = new Command("worker", "process jobs dropped into a spool directory");
        var spool = new Option<DirectoryInfo>("--spool") { Description = "spool directory", Required = true };
        var once = new Option<bool>("--once") { Description = "resume interrupted jobs, process the inbox, then exit" };
        command.Options.Add(spool);
        command.Options.Add(once);
        command.SetAction(r => CommandRunner.Run("worker", () =>
            new WorkerHandler().Run(new WorkerArguments(r.GetValue(spool)!.FullName, r.GetValue(once)))));
        return command;
    }

    private static Command Data()
    {
        var data = new Command("data", "dataset management");
        var fetch = new Command("fetch", "download a dataset into the data directory and write its manifest (idempotent)");
        var name = new Argument<string>("name") { Description = "mnist | fashion-mnist" };
        var dataDir = new Option<DirectoryInfo>("--data-dir") { Description = "data directory (default: Data:DataDirectory, i.e. ./data)" };
        var own = new Option<bool>("--own") { Description = "adopt files placed by hand as your own data in this format (not the pinned originals); the manifest says so" };
        var common = new CommonOptions(configRequired: false);
        fetch.Arguments.Add(name);
        fetch.Options.Add(dataDir);
        fetch.Options.Add(own);
        common.AddTo(fetch);
        fetch.SetAction(r => CommandRunner.Run("data fetch", () =>
            new DataFetchHandler().Run(new DataFetchArguments(r.GetValue(name)!, r.GetValue(dataDir)?.FullName, common.Read(r), r.GetValue(own)))));
        data.Subcommands.Add(fetch);
        return data;
    }

    private static Command Env()
    {
        var command = new Command("env", "print TorchSharp version, device and threads");
        command.SetAction(_ => CommandRunner.Run("env", () => new EnvHandler().Run()));
        return command;
    }
}
