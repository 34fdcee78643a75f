// Certify and train a network of your own with the two-phase recipe, in your own loop, from an F# script.
//
//   ./build.sh setup                              # builds the libraries this script loads
//   dotnet fsi examples/train-your-model.fsx
//
// Same recipe as examples/TrainYourModel (C#): TwoPhase.Init gives the recipe's state, TwoPhase.Step takes one step of
// your loop around your optimiser (here Adagrad, which is none of the repository's built-in rules). Phase I is your
// optimiser's step bit for bit; at τ the recipe certifies EC on the tap "hidden" and adds a zero readout V; in Phase II
// the body's steps are damped by α_t and V's steps are capped by the theorem's b/σ̄² (docs/theory.md §4).
#load "torch-from-build.fsx"   // TorchSharp, Math.Core and Algorithm from the build output, libtorch by full path

open System
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Algorithm

type Net = torch.nn.Module<torch.Tensor, torch.Tensor>

let n, batch, tau, total, eta = 48, 12, 100, 400, 0.05
torch.random.manual_seed 5L |> ignore
let x = torch.randn([| int64 n; 4L |], dtype = torch.float64)
let y = torch.randn([| int64 n; 2L |], dtype = torch.float64)

// A network of your own: 4 → 96 (tanh: the tap "hidden") → 2.
let model =
    torch.nn.Sequential(
        [| struct ("first", torch.nn.Linear(4L, 96L, true, dtype = torch.float64) :> Net)
           struct ("hidden", torch.nn.Tanh() :> Net)
           struct ("output", torch.nn.Linear(96L, 2L, true, dtype = torch.float64) :> Net) |])

// 1. The certificate alone (any module, any taps).
let atInit = ModelCertificate.Certify(model, [ "hidden" ], x, 16, true, null)
printfn "EC at initialisation: %O, σ_min ≥ %.4g" atInit.Verdict atInit.SigmaMinLower

// 2. The recipe around your optimiser, in your loop.
let optimizer = torch.optim.Adagrad(model.parameters (), eta) :> torch.optim.Optimizer
let recipe = { RecipeConfig.Default with SwitchIteration = tau; CheckPeriod = 25 }
let setup =
    { TwoPhase.Setup(recipe, model, [ "hidden" ], BodyRule.Of optimizer, CertificationInputs.Create(x, null, n),
                     LossKind.Squared, batch, 2)
        with LossOptimum = Losses.optimum LossKind.Squared x y }

let fullLoss (state: RecipeState) =
    use prediction = TwoPhase.Predict(setup, state, x)
    use loss = torch.nn.functional.mse_loss(prediction, y)
    loss.ToDouble()

let mutable state = TwoPhase.Init setup
let mutable lossAtSwitch = nan
for t in 0 .. total - 1 do
    let start = t * batch % n
    let step =
        TwoPhase.Step(setup, state, eta, fun forward ->
            torch.nn.functional.mse_loss(forward.Invoke(x.narrow(0L, int64 start, int64 batch)), y.narrow(0L, int64 start, int64 batch)))
    state <- step.State
    if t = tau then
        lossAtSwitch <- fullLoss state
        printfn "switch at t = %d: %O (σ_min(Φ̃_τ) ≥ %.4g)" t state.Phase state.SigmaTau
    if t % 100 = 0 || t = total - 1 then
        printfn "t = %4d  %-10O batch loss %.5f  α %.3g  η_V %.3g" t step.Record.Phase step.Record.Loss step.Record.Alpha step.Record.ReadoutLearningRate

let final = fullLoss state
printfn "training loss: %.5f at the switch, %.5f at T = %d (L* = %.3g)" lossAtSwitch final total setup.LossOptimum
let ok = state.Phase = Phase.PhaseTwo && final < lossAtSwitch
printfn "%s" (if ok then "guarantee claimed: EC certified at the switch, Phase II ran" else "no guarantee claimed")
TwoPhase.Dispose(setup, state)
exit (if ok then 0 else 1)
