using Microsoft.FSharp.Collections;
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

    /// <summary>m' = m + 1: the taps' width plus the bias column, from one forward pass of one input.</summary>
    private static int FeatureColumns(Case c)
    {
        using var scope = NewDisposeScope();
        using var model = Networks.build(c.Spec, 0L);
        var x = zeros([1, .. c.InputShape.Select(d => (long)d)]);
        return ResearchFramework.MathCore.FeatureMap.featureCount(model, Networks.taps(c.Spec), x) + 1;
    }

    /// <summary>Median seconds of a bare float64 Gram ΦΦᵀ (mm) and its Cholesky for a random n × m' matrix (3 after a warm-up).</summary>
    private static double BareGramCholesky(int n, int columns)
    {
        using var g = new Generator(11UL);
        using var phi = randn([n, columns], dtype: float64, generator: g);
        var times = new List<double>();
        for (var i = 0; i <= 3; i++)
        {
            using var scope = NewDisposeScope();
            var sw = Stopwatch.StartNew();
            var gram = phi.mm(phi.t());
            gram.diagonal().add_(1.0);
            linalg.cholesky(gram);
            if (i > 0) times.Add(sw.Elapsed.TotalSeconds);
        }
        return Median(times);
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
        // The convolution kernels the ResNet case will use, checked as `rf` checks them (KernelCheck: on an AVX-512 CPU
        // libtorch's default oneDNN kernels can go NaN, and the ResNet's base run diverged): a failing path makes this
        // process restart with oneDNN capped at AVX2, or fall back to ATen's native kernels.
        var convolutions = Cases.SelectMany(c => Networks.convolutionCases(c.Spec, ListModule.OfSeq([c.BatchSize]), ListModule.OfSeq([c.BatchSize])))
            .Select(c => ResearchFramework.MathCore.KernelCheck.fitBatch(256L << 20, c)).Distinct().ToList();
        ResearchFramework.MathCore.KernelCheck.ensure(true, CPU, float32, ListModule.OfSeq(convolutions));
        Console.WriteLine("environment: " + ResearchFramework.MathCore.KernelCheck.environmentLine());
        // RECIPE_CASES=substring: only the cases whose name contains it (a row measured again on its own)
        var only = Environment.GetEnvironmentVariable("RECIPE_CASES");
        foreach (var c in Cases.Where(c => string.IsNullOrEmpty(only) || c.Name.Contains(only, StringComparison.Ordinal)))
        {
            var (x, y) = Data(c);
            var data = new TrainingData(x, y);
            var baseOverHand = new List<double>();
            var twoOverBase = new List<double>();
            var baseTimes = new List<double>();
            for (var i = 0; i <= k; i++)
            {
                var hand = HandLoop(c, x, y);
                var b = Timed(() => Trainer.RunBase(c.Spec, Config(c), data, new NullObserver(), CancellationToken.None));
                var two = Timed(() => Trainer.Run(c.Spec, Config(c), Recipe(c), data, new NullObserver(), CancellationToken.None));
                Console.WriteLine($"{c.Name} triple {i}{(i == 0 ? " (warm-up)" : "")}: hand {hand:F3} s, base {b:F3} s, two-phase {two:F3} s");
                if (i == 0) continue;
                baseOverHand.Add(b / hand);
                baseTimes.Add(b);
                twoOverBase.Add(two / b);
            }
            // The floor no certificate can beat: each certificate the run makes (the switch's, and one per guard check when
            // Weyl does not decide) forms at least a float64 Gram of Φ̃ (n × m') and one Cholesky of it. Measured here on a
            // random matrix of the run's shape (median of 3, after a warm-up), times the run's certificates, over the base time.
            var certificates = 1 + (c.Mode == PhaseTwoMode.Damped && c.K > 0 ? (c.T - c.Tau) / c.K : 0);
            var bare = BareGramCholesky(c.N, FeatureColumns(c));
            var baseMedian = Median(baseTimes);
            Console.WriteLine(FormattableString.Invariant(
                $"RESULT {c.Name}: base/hand median {Median(baseOverHand):F3}, two-phase/base median {Median(twoOverBase):F3} ({k} triples); floor of bare linear algebra: {certificates} certificate(s) × {bare * 1000:F1} ms (Gram + Cholesky, n = {c.N}, m' = {FeatureColumns(c)}) over base {baseMedian:F3} s = {1 + certificates * bare / baseMedian:F3}"));
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

    /// <summary>Where the main job's two-phase time goes (the full-batch preconditioned case of the table): seconds of
    /// Phase I to τ, of the switch (certificate, factor), and of the Phase II steps to T, against the base run's steps
    /// from τ to T; k repetitions.</summary>
    public static int MainJobSteps(int k)
    {
        var c = Cases.First(x => x.Name.Contains("the main job"));
        var (x, y) = Data(c);
        var data = new TrainingData(x, y);
        for (var i = 0; i < k; i++)
        {
            using var two = new TwoPhaseTrainer(c.Spec, Config(c), FSharpOption<RecipeConfig>.Some(Recipe(c)), data, new NullObserver());
            var sw = Stopwatch.StartNew();
            two.RunTo(c.Tau);
            var phaseOne = sw.Elapsed.TotalSeconds;
            sw.Restart();
            two.Switch();
            var switching = sw.Elapsed.TotalSeconds;
            sw.Restart();
            two.RunTo(c.T);
            var phaseTwo = sw.Elapsed.TotalSeconds;
            using var baseRun = new TwoPhaseTrainer(c.Spec, Config(c), null, data, new NullObserver());
            baseRun.RunTo(c.Tau);
            sw.Restart();
            baseRun.RunTo(c.T);
            var baseTail = sw.Elapsed.TotalSeconds;
            var whole = Timed(() => Trainer.Run(c.Spec, Config(c), Recipe(c), data, new NullObserver(), CancellationToken.None));
            var wholeBase = Timed(() => Trainer.RunBase(c.Spec, Config(c), data, new NullObserver(), CancellationToken.None));
            Console.WriteLine(FormattableString.Invariant(
                $"RESULT main-job-steps {i + 1}: Phase I {phaseOne:F3} s, switch {switching:F3} s, Phase II ({c.T - c.Tau} steps) {phaseTwo:F3} s; base steps τ..T {baseTail:F3} s; Trainer.Run {whole:F3} s, Trainer.RunBase {wholeBase:F3} s"));
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
