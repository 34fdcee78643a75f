// Train a network of your own with the two-phase recipe of Kawaguchi & Sun, in your own loop, from C#.
//
//   dotnet run --project examples/TrainYourModel -c Release
//
// The recipe is a transformation around your optimiser (docs/theory.md §4, SPEC §4): TwoPhase.Init gives its state,
// TwoPhase.Step takes one step of your loop. Phase I (t < τ) is your optimiser's step, bit for bit. At t = τ the recipe
// certifies the expressivity condition on the tap "hidden" (Φ̃ = [Φ, 1] has full row rank n), adds a zero readout V on
// those features, and from then on damps the body's steps by α_t = (t − τ + 1)^(−p) while V takes gradient steps capped
// by the theorem's b/σ̄²: the guarantee is convergence to the global minimum L* of the squared loss (here 0, m ≥ n).
using ResearchFramework.Algorithm;
using ResearchFramework.MathCore;
using TorchSharp;
using static TorchSharp.torch;

const int n = 64, batch = 16, tau = 150, total = 600;
const double eta = 0.05;
torch.random.manual_seed(3);
using var x = torch.randn(n, 5, dtype: float64);
using var y = torch.randn(n, 3, dtype: float64);
using var model = new SmallNet(inputs: 5, hidden: 128, outputs: 3);

// 1. The certificate alone (any module, any taps), before training.
var atInit = ModelCertificate.Certify(model, ["hidden"], x, batchSize: 32, withBias: true, progress: null);
Console.WriteLine($"EC at initialisation: {atInit.Verdict}, sigma_min >= {atInit.SigmaMinLower:G4}");

// 2. The recipe around your optimiser, in your loop.
using var optimizer = torch.optim.SGD(model.parameters(), eta, momentum: 0.9);
var recipe = RecipeConfig.Default.WithSwitchIteration(tau).WithPhaseTwo(PhaseTwoMode.Damped, 2.0).WithGuard(0.5, 25);
var setup = TwoPhase.Setup(recipe, model, ["hidden"], BodyRule.Of(optimizer),
                           CertificationInputs.Create(x, null, n), LossKind.Squared, batch, classes: 3)
                    .WithLossOptimum(Losses.optimum(LossKind.Squared, x, y))
                    .WithObserver(new ConsoleObserver());
var state = TwoPhase.Init(setup);
double lossAtSwitch = double.NaN;
for (int t = 0; t < total; t++)
{
    int start = t * batch % n;
    var step = TwoPhase.Step(setup, state, eta,
        forward => nn.functional.mse_loss(forward(x.narrow(0, start, batch)), y.narrow(0, start, batch)));
    state = step.State;
    if (t == tau) lossAtSwitch = FullLoss();
    if (t % 100 == 0 || t == total - 1)
        Console.WriteLine($"t = {t,4}  {step.Record.Phase,-10} batch loss {step.Record.Loss:F5}  alpha {step.Record.Alpha:G3}  eta_V {step.Record.ReadoutLearningRate:G3}");
}
double final = FullLoss();
Console.WriteLine($"training loss: {lossAtSwitch:F5} at the switch, {final:F5} at T = {total} (L* = {setup.LossOptimum:G3})");
bool ok = state.Phase == Phase.PhaseTwo && final < lossAtSwitch;
Console.WriteLine(ok ? "guarantee claimed: EC certified at the switch, Phase II ran" : "no guarantee claimed");
TwoPhase.Dispose(setup, state);
return ok ? 0 : 1;

double FullLoss()
{
    using var prediction = TwoPhase.Predict(setup, state, x);
    using var loss = nn.functional.mse_loss(prediction, y);
    return loss.ToDouble();
}

/// <summary>A network of your own: input → Linear → tanh (the tap "hidden") → Linear.</summary>
sealed class SmallNet : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> _first, _hidden, _output;

    public SmallNet(int inputs, int hidden, int outputs) : base(nameof(SmallNet))
    {
        _first = nn.Linear(inputs, hidden, dtype: float64);
        _hidden = nn.Tanh();
        _output = nn.Linear(hidden, outputs, dtype: float64);
        register_module("first", _first);
        register_module("hidden", _hidden);
        register_module("output", _output);
    }

    public override Tensor forward(Tensor input) => _output.call(_hidden.call(_first.call(input)));
}

/// <summary>Prints the recipe's events: the certificate at the switch, the phase change, guard trips.</summary>
sealed class ConsoleObserver : IRecipeObserver
{
    public void OnStep(StepRecord step) { }
    public void OnPhaseChange(PhaseChange change) => Console.WriteLine($"phase: {change.From} -> {change.To} at t = {change.Iteration}: {change.Reason}");
    public void OnCertificate(CertificateEvent e) => Console.WriteLine($"certificate (attempt {e.Attempt}): {e.Certificate.Verdict}, sigma_min >= {e.Certificate.SigmaMinLower:G4}");
    public void OnGuardTrip(GuardTrip trip) => Console.WriteLine($"guard tripped at t = {trip.Iteration}: sigma_min >= {trip.SigmaMinLower:G4} < {trip.Threshold:G4}; body restored and frozen");
    public void OnCheckpoint(CheckpointWritten written) { }
}
