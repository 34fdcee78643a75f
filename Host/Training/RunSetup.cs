using Microsoft.FSharp.Core;
using ResearchFramework.Algorithm;
using ResearchFramework.Host.Data;
using ResearchFramework.Host.Infrastructure.Configuration;
using TorchSharp;

namespace ResearchFramework.Host.Training;

/// <summary>The training and test sets as tensors in the form the Algorithm library expects: inputs N×C×H×W
/// (flattened to N×CHW for an MLP) in the model's dtype; targets one-hot rows (model dtype) for the squared loss,
/// int64 labels for cross-entropy. Test labels are always int64 (for the test error).</summary>
public sealed class PreparedTensors : IDisposable
{
    public PreparedTensors(TrainingData train, torch.Tensor testInputs, torch.Tensor testLabels, torch.Tensor trainLabels, string datasetName,
        int channels, int height, int width, int classes)
    {
        Channels = channels;
        Height = height;
        Width = width;
        Classes = classes;
        Train = train;
        TestInputs = testInputs;
        TestLabels = testLabels;
        TrainLabels = trainLabels;
        DatasetName = datasetName;
    }

    public TrainingData Train { get; }
    public torch.Tensor TestInputs { get; }
    public torch.Tensor TestLabels { get; }
    public torch.Tensor TrainLabels { get; }
    public string DatasetName { get; }
    public int Channels { get; }
    public int Height { get; }
    public int Width { get; }
    public int Classes { get; }

    public void Dispose()
    {
        Train.Inputs.Dispose();
        Train.Targets.Dispose();
        TestInputs.Dispose();
        TestLabels.Dispose();
        TrainLabels.Dispose();
    }
}

/// <summary>Maps the validated options (<see cref="RfOptions"/>) to the Algorithm library's records
/// (<see cref="ArchitectureSpec"/>, <see cref="TrainingConfig"/>, <see cref="RecipeConfig"/>) and loads the data.</summary>
public static class RunSetup
{
    public static Precision PrecisionOf(ModelOptions m) =>
        m.Precision.Equals("float64", StringComparison.OrdinalIgnoreCase) ? Precision.Float64 : Precision.Float32;

    public static Activation ActivationOf(string name) => name.ToLowerInvariant() switch
    {
        "tanh" => Activation.Tanh,
        "softplus" => Activation.Softplus,
        "sigmoid" => Activation.Sigmoid,
        "relu" => Activation.Relu,
        _ => throw new ConfigurationException($"Model:Activation: unknown activation '{name}'"),
    };

    public static bool IsMlp(ModelOptions m) => m.Architecture.Equals("mlp", StringComparison.OrdinalIgnoreCase);

    /// <summary>The architecture for images of shape C×H×W with <paramref name="classes"/> classes.
    /// MLP widths: <c>HiddenWidths</c> (narrow) followed by <c>WideWidth</c> (the wide layer, SPEC §5).</summary>
    public static ArchitectureSpec Architecture(ModelOptions m, int channels, int height, int width, int classes)
    {
        var precision = PrecisionOf(m);
        var activation = ActivationOf(m.Activation);
        var taps = m.Taps ?? [];
        switch (m.Architecture.ToLowerInvariant())
        {
            case "mlp":
                return new ArchitectureSpec("mlp", [channels * height * width], classes, [.. m.HiddenWidths, m.WideWidth],
                    activation, 1.0, precision, taps);
            case "lenet":
                return new ArchitectureSpec("lenet5", [channels, height, width], classes, [], activation, 1.0, precision, taps);
            case "resnet18":
                return new ArchitectureSpec("resnet18", [channels, height, width], classes, [], activation, m.WidthMultiplier, precision, taps);
            default:
                throw new ConfigurationException($"Model:Architecture: unknown architecture '{m.Architecture}'");
        }
    }

    public static LossKind LossOf(TrainingOptions t) =>
        t.Loss.Equals("squared", StringComparison.OrdinalIgnoreCase) ? LossKind.Squared : LossKind.CrossEntropy;

    /// <summary>The base algorithm A and the run's bookkeeping. <paramref name="seed"/> overrides <c>Training:Seed</c>
    /// (compare runs use Seed + k); checkpoints go to <paramref name="checkpointDirectory"/> every <c>CheckpointEvery</c> steps.</summary>
    public static TrainingConfig Training(TrainingOptions t, int seed, string? checkpointDirectory, bool recordFingerprints = false)
    {
        var kind = t.Schedule.ToLowerInvariant() switch
        {
            "step" => ScheduleKind.Step,
            "cosine" => ScheduleKind.Cosine,
            _ => ScheduleKind.Constant, // "constant" and "warmup" (constant after WarmupSteps of linear warm-up)
        };
        var schedule = new Schedule(kind, t.LearningRate, t.StepSize, t.Gamma, 0.0, t.WarmupSteps);
        var optimizer = t.Optimizer.ToLowerInvariant() switch
        {
            "sgd" => OptimizerSpec.Sgd,
            "momentum" => OptimizerSpec.SgdMomentum(t.Momentum, false),
            "nesterov" => OptimizerSpec.SgdMomentum(t.Momentum, true),
            "adam" => OptimizerSpec.Adam,
            "adamw" => OptimizerSpec.AdamW(t.WeightDecay),
            _ => throw new ConfigurationException($"Training:Optimizer: unknown optimizer '{t.Optimizer}'"),
        };
        if (t.WeightDecay > 0 && optimizer.Kind != OptimizerKind.AdamW)
            optimizer = new OptimizerSpec(optimizer.Kind, optimizer.Momentum, optimizer.Beta1, optimizer.Beta2, optimizer.Epsilon, t.WeightDecay);
        return new TrainingConfig(seed, t.BatchSize, schedule, t.TotalIterations, optimizer, LossOf(t), t.Device,
            checkpointDirectory is null ? 0 : t.CheckpointEvery, checkpointDirectory!, recordFingerprints);
    }

    /// <summary>The recipe's knobs; null when <c>Recipe:Enabled</c> is false (a base run). <paramref name="engine"/>: the
    /// certificate engine of the switch, guard and Theorem P's factor (null: <see cref="ResearchFramework.MathCore.CertificateEngine.Default"/>;
    /// runs pass <see cref="Certification.CertificateEngineConfiguration.ForRun"/>).</summary>
    public static RecipeConfig? Recipe(RecipeOptions r, TrainingOptions t, bool enabled, ResearchFramework.MathCore.CertificateEngine? engine = null)
    {
        if (!enabled) return null;
        if (r.SwitchIteration > t.TotalIterations)
            throw new ConfigurationException($"Recipe:SwitchIteration: {r.SwitchIteration} must be at most Training:TotalIterations = {t.TotalIterations}");
        if (!(r.Kappa > 0 && r.Kappa < 1))
            throw new ConfigurationException($"Recipe:Kappa: {r.Kappa} must lie in (0, 1)");
        var mode = r.PhaseTwoMode.Equals("frozen", StringComparison.OrdinalIgnoreCase) ? PhaseTwoMode.Frozen : PhaseTwoMode.Damped;
        if (mode == PhaseTwoMode.Damped && r.DampingPower <= 1.0)
            throw new ConfigurationException($"Recipe:DampingPower: {r.DampingPower} must exceed 1 in damped mode, so that Σ α_t is finite (SPEC §4.3)");
        var readoutStep = r.ReadoutStep.ToLowerInvariant() switch
        {
            "schedule" => ReadoutStepRule.Schedule,
            "preconditioned" => ReadoutStepRule.Preconditioned,
            _ => ReadoutStepRule.Theorem,
        };
        var readout = r.Readout.Equals("output-layer", StringComparison.OrdinalIgnoreCase) ? ReadoutChoice.OutputLayer : ReadoutChoice.Separate;
        return new RecipeConfig(r.SwitchIteration, mode, r.Epsilon, r.MaxTries, r.DampingPower, r.Kappa, r.CheckEvery, r.CertificationSubset, readoutStep, readout,
            r.PreconditionedStep, r.ReadoutRidge, r.PredictionEpsilon, r.RefactorThreshold, r.LimitBodyStep, engine ?? ResearchFramework.MathCore.CertificateEngine.Default);
    }

    /// <summary>F# option of a recipe (None = base run) for <see cref="TwoPhaseTrainer"/>.</summary>
    public static FSharpOption<RecipeConfig>? Option(RecipeConfig? r) => r is null ? null : FSharpOption<RecipeConfig>.Some(r);

    /// <summary>Loads and prepares the dataset (subset sizes from <c>Data</c>), then converts it to tensors.</summary>
    public static PreparedTensors LoadData(RfOptions options)
    {
        if (options.Data.Augment)
            throw new ConfigurationException("Data:Augment: augmentation is not supported by rf train (the recipe needs a fixed training set S)");
        var prepared = DatasetPreparation.Load(options.Data, options.Training.Seed);
        return ToTensors(prepared.Train, prepared.Test, options);
    }

    public static ArchitectureSpec Architecture(RfOptions options, PreparedTensors data) =>
        Architecture(options.Model, data.Channels, data.Height, data.Width, data.Classes);

    public static PreparedTensors ToTensors(Dataset train, Dataset test, RfOptions options)
    {
        var dtype = PrecisionOf(options.Model) == Precision.Float64 ? torch.float64 : torch.float32;
        bool flatten = IsMlp(options.Model);
        torch.Tensor Inputs(Dataset d)
        {
            using var all = TensorBatches.All(d);
            var x = flatten ? all.Images.flatten(1) : all.Images.alias();
            var typed = x.to_type(dtype);
            if (!ReferenceEquals(typed, x)) x.Dispose();
            return typed;
        }
        torch.Tensor Labels(Dataset d) => torch.tensor(d.Labels.Select(l => (long)l).ToArray(), dtype: torch.int64);
        var trainLabels = Labels(train);
        torch.Tensor targets = LossOf(options.Training) == LossKind.Squared
            ? torch.nn.functional.one_hot(trainLabels, train.ClassCount).to_type(dtype)
            : trainLabels.clone();
        var data = new TrainingData(Inputs(train), targets);
        return new PreparedTensors(data, Inputs(test), Labels(test), trainLabels, train.Name,
            train.Channels, train.Height, train.Width, train.ClassCount);
    }
}
