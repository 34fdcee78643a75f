using Microsoft.FSharp.Core;
using System.Diagnostics;
using ResearchFramework.Algorithm;
using TorchSharp;
using static TorchSharp.torch;

namespace ResearchFramework.Benchmarks;

/// <summary>
/// Algorithm issue's performance claims, measured side by side in one process
/// (<c>recipe-overhead k</c>): for an MLP and a small ResNet, k alternated triples of
/// (a) a minimal hand-written TorchSharp loop doing the same steps (same network, seed, batch order,
/// optimiser and loss), (b) the base run through <see cref="Trainer.RunBase"/>, (c) the two-phase run
/// through <see cref="Trainer.Run"/> (certificate at τ and guard checks every K steps included).
/// Prints per-triple times, median ratios base/hand and two-phase/base, and the process RSS after each
/// epoch of a long two-phase run (memory must stay flat).
/// </summary>
public static class RecipeOverhead
{
    private sealed record Case(string Name, ArchitectureSpec Spec, int N, int[] InputShape, int BatchSize, int T, int Tau, int K,
        PhaseTwoMode Mode = PhaseTwoMode.Damped, ReadoutChoice Readout = ReadoutChoice.Separate,
        ReadoutStepRule Step = ReadoutStepRule.Theorem, double Ridge = 0.0);

    private static readonly Case[] Cases =
    [
        new("mlp 784-16-1100-10, n=1024, B=128", ArchitectureSpec.Mlp(784, [16, 1100], 10, Activation.Tanh, Precision.Float32),
            1024, [784], 128, 600, 400, 100),
        new("mlp 784-16-1100-10, n=1024, B=128, long", ArchitectureSpec.Mlp(784, [16, 1100], 10, Activation.Tanh, Precision.Float32),
            1024, [784], 128, 3000, 2000, 500),
        new("mlp 784-16-1100-10, n=1024, B=128, long, V = output layer", ArchitectureSpec.Mlp(784, [16, 1100], 10, Activation.Tanh, Precision.Float32),
            1024, [784], 128, 3000, 2000, 500, PhaseTwoMode.Damped, ReadoutChoice.OutputLayer),
        new("mlp 784-16-1100-10, n=1024, B=128, long, V = output layer, K = 1000", ArchitectureSpec.Mlp(784, [16, 1100], 10, Activation.Tanh, Precision.Float32),
            1024, [784], 128, 3000, 2000, 1000, PhaseTwoMode.Damped, ReadoutChoice.OutputLayer),
        new("mlp 784-16-1100-10, n=1024, B=128, long, frozen body", ArchitectureSpec.Mlp(784, [16, 1100], 10, Activation.Tanh, Precision.Float32),
            1024, [784], 128, 3000, 2000, 500, PhaseTwoMode.Frozen),
        new("mlp 784-16-1100-10, n=1024, full batch (the main job), frozen body, preconditioned V (Theorem P, λ = 0.01)",
            ArchitectureSpec.Mlp(784, [16, 1100], 10, Activation.Tanh, Precision.Float32),
            1024, [784], 1024, 400, 300, 25, PhaseTwoMode.Frozen, ReadoutChoice.Separate, ReadoutStepRule.Preconditioned, 0.01),
        new("mlp 784-16-1100-10, n=1024, B=128, long, frozen body, preconditioned V (Theorem P, λ = 0.01)",
            ArchitectureSpec.Mlp(784, [16, 1100], 10, Activation.Tanh, Precision.Float32),
            1024, [784], 128, 3000, 2000, 500, PhaseTwoMode.Frozen, ReadoutChoice.Separate, ReadoutStepRule.Preconditioned, 0.01),
        new("resnet18 k=1/16, 1x16x16, n=256, B=64",
            new ArchitectureSpec("resnet18", [1, 16, 16], 10, [], Activation.Relu, 1.0 / 16, Precision.Float32, []),
            256, [1, 16, 16], 64, 200, 150, 50),
    ];

    private static TrainingConfig Config(Case c) =>
        new(0, c.BatchSize, Schedule.Constant(0.01), c.T, OptimizerSpec.SgdMomentum(0.9, false), LossKind.Squared, "cpu", 0, null!, false);

    private static RecipeConfig Recipe(Case c) => new(c.Tau, c.Mode, 1e-3, 3, 2.0, 0.5, c.K, 0, c.Step, c.Readout,
        RecipeConfig.Default.PreconditionedStep, c.Ridge, RecipeConfig.Default.PredictionEpsilon, RecipeConfig.Default.RefactorThreshold, RecipeConfig.Default.LimitBodyStep,
        RecipeConfig.Default.CertificateEngine);

    private static (Tensor X, Tensor Y) Data(Case c)
    {
        using var g = new Generator(7UL);
        var x = randn([c.N, .. c.InputShape.Select(d => (long)d)], generator: g);
        var labels = randint(0, 10, [c.N], generator: g);
        var y = nn.functional.one_hot(labels, 10).to(float32);
        return (x.DetachFromDisposeScope(), y.DetachFromDisposeScope());
    }

    /// <summary>The same steps as the base run, written by hand: no observer, no records, no checkpoints.</summary>
    private static double HandLoop(Case c, Tensor x, Tensor y)
    {
        var sw = Stopwatch.StartNew();
        using var model = Networks.build(c.Spec, 0L);
        using var opt = Optimizers.create(OptimizerSpec.SgdMomentum(0.9, false), 0.01, model.parameters());
        model.train();
        for (var t = 0; t < c.T; t++)
        {
            using var scope = NewDisposeScope();
            var idx = DataOrder.batch(0, c.N, c.BatchSize, t);
            var xb = x.index_select(0, idx);
            var yb = y.index_select(0, idx);
            opt.zero_grad();
            var loss = Losses.value(LossKind.Squared, model.call(xb), yb);
            loss.backward();
            opt.step();
        }
        return sw.Elapsed.TotalSeconds;
    }

    private static double Timed(Func<RunResult> run)
    {
        var sw = Stopwatch.StartNew();
        run();
        return sw.Elapsed.TotalSeconds;
    }

    private static double Median(List<double> v) { v.Sort(); return v[v.Count / 2]; }

    public static int Run(int k)
    {
        foreach (var c in Cases)
        {
            var (x, y) = Data(c);
            var data = new TrainingData(x, y);
            var baseOverHand = new List<double>();
            var twoOverBase = new List<double>();
            for (var i = 0; i <= k; i++)
            {
                var hand = HandLoop(c, x, y);
                var b = Timed(() => Trainer.RunBase(c.Spec, Config(c), data, new NullObserver(), CancellationToken.None));
                var two = Timed(() => Trainer.Run(c.Spec, Config(c), Recipe(c), data, new NullObserver(), CancellationToken.None));
                Console.WriteLine($"{c.Name} triple {i}{(i == 0 ? " (warm-up)" : "")}: hand {hand:F3} s, base {b:F3} s, two-phase {two:F3} s");
                if (i == 0) continue;
                baseOverHand.Add(b / hand);
                twoOverBase.Add(two / b);
            }
            Console.WriteLine($"RESULT {c.Name}: base/hand median {Median(baseOverHand):F3}, two-phase/base median {Median(twoOverBase):F3} ({k} triples)");
        }
        // Memory across epochs: a long two-phase MLP run, RSS sampled at every epoch boundary.
        var mlp = Cases[0] with { T = 8 * 40, Tau = 8 * 20, K = 40 };  // 40 epochs of 8 steps
        var (xm, ym) = Data(mlp);
        var observer = new RssPerEpoch(mlp.N / mlp.BatchSize);
        Trainer.Run(mlp.Spec, Config(mlp), Recipe(mlp), new TrainingData(xm, ym), observer, CancellationToken.None);
        Console.WriteLine("RESULT RSS per epoch (MiB): " + string.Join(" ", observer.Samples.Select(s => $"{s:F0}")));
        return 0;
    }

    /// <summary>Milliseconds per step for 1000 steps after iteration 400 of the MLP case: the base run,
    /// Phase II with a damped body (guard off), Phase II with a frozen body; k repetitions.</summary>
    public static int StepCosts(int k)
    {
        var c = Cases[0] with { T = 2000 };
        var (x, y) = Data(c);
        var data = new TrainingData(x, y);
        double Measure(RecipeConfig? recipe)
        {
            using var trainer = new TwoPhaseTrainer(c.Spec, Config(c), recipe is null ? null : FSharpOption<RecipeConfig>.Some(recipe), data, new NullObserver());
            trainer.RunTo(400);
            trainer.Switch();
            var sw = Stopwatch.StartNew();
            trainer.RunTo(1400);
            return sw.Elapsed.TotalMilliseconds / 1000.0;
        }
        for (var i = 0; i < k; i++)
        {
            var b = Measure(null);
            var damped = Measure(Recipe(c with { K = 0 }));
            var frozen = Measure(Recipe(c with { K = 0, Mode = PhaseTwoMode.Frozen }));
            Console.WriteLine($"RESULT {c.Name} ms/step, repetition {i + 1}: base {b:F3}, damped Phase II {damped:F3}, frozen Phase II {frozen:F3}");
        }
        return 0;
    }

    private sealed class RssPerEpoch(int stepsPerEpoch) : IRecipeObserver
    {
        public List<double> Samples { get; } = [];
        public void OnStep(StepRecord s)
        {
            if ((s.Iteration + 1) % stepsPerEpoch != 0) return;
            GC.Collect();
            Samples.Add(Process.GetCurrentProcess().WorkingSet64 / 1048576.0);
        }
        public void OnPhaseChange(PhaseChange p) { }
        public void OnCertificate(CertificateEvent c) { }
        public void OnGuardTrip(GuardTrip g) { }
        public void OnCheckpoint(CheckpointWritten c) { }
    }
}
