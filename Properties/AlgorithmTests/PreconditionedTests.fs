/// Theorem P (docs/theory.md §4): the preconditioned readout step. Oracles are independent of the code
/// under test: MathNet's dense float64 solves of the primal normal equations (ΦᵀΦ/n + λI)W = ΦᵀZ/n, never
/// the dual Cholesky route the recipe uses.
module ResearchFramework.Properties.AlgorithmTests.PreconditionedTests

open System
open Expecto
open TorchSharp
open MathNet.Numerics.LinearAlgebra
open ResearchFramework.MathCore
open ResearchFramework.Algorithm
open ResearchFramework.Properties


let matrixOf (t: torch.Tensor) : Matrix<float> =
    use c = t.detach().cpu().to_type(torch.float64).contiguous()
    let rows, cols = int c.shape.[0], int c.shape.[1]
    let data = c.data<float>().ToArray()
    Matrix<float>.Build.Dense(rows, cols, (fun i j -> data.[i * cols + j]))

/// W = [weightᵀ; biasᵀ] of the readout, as a MathNet matrix.
let readoutW (v: Modules.Linear) =
    let w = matrixOf (v.weight.t())
    let b = matrixOf (v.bias.unsqueeze(0L))
    w.Stack b

/// A frozen-body preconditioned run: its setup, the oracle's Φ̃ and Z at the switch, V after every Phase II step.
type PreconditionedRun =
    { Setup: RecipeSetup
      Phi: Matrix<float>
      Z: Matrix<float>
      Trajectory: Matrix<float> list
      Final: RecipeState }

/// τ = 2 SGD steps of `model` on (x, y), the certified switch, then `phaseTwo` Phase II steps of `recipe`; Φ̃ and Z
/// read at the switch (the body is frozen: they stay) for the MathNet oracle.
let preconditionedRunOf (recipe: RecipeConfig) (model: torch.nn.Module<torch.Tensor, torch.Tensor>) (x: torch.Tensor) (y: torch.Tensor) (n: int) (phaseTwo: int) =
    let opt = torch.optim.SGD(model.parameters (), 0.05) :> torch.optim.Optimizer
    let setup =
        TwoPhase.Setup(recipe, model, [ "hidden" ], BodyRule.Of opt, CertificationInputs.Create(x, null, n), LossKind.Squared, n, 2)
            .WithTargets(y)
    let mutable state = TwoPhase.Init setup
    let trajectory = ResizeArray<Matrix<float>>()
    let mutable phi = Unchecked.defaultof<Matrix<float>>
    let mutable z = Unchecked.defaultof<Matrix<float>>
    while state.Iteration < 2 + phaseTwo do
        let step = TwoPhase.Step(setup, state, 0.05, fun forward -> Losses.value LossKind.Squared (forward.Invoke x) y)
        state <- step.State
        if state.Phase = Phase.PhaseTwo then
            if isNull (box phi) then
                use features = FeatureMap.featureMatrix model [ "hidden" ] n x
                use ones = torch.ones([| int64 n; 1L |], dtype = torch.float64)
                use tilde = torch.cat([| features; ones |], 1L)
                phi <- matrixOf tilde
                use _ = torch.no_grad ()
                model.eval ()
                use f = model.call x
                z <- matrixOf y - matrixOf f
            trajectory.Add(readoutW state.Readout)
    { Setup = setup; Phi = phi; Z = z; Trajectory = List.ofSeq trajectory; Final = state }

/// τ = 2 Phase I steps of SGD, the certified switch, then `phaseTwo` preconditioned steps with a frozen body.
let private run (seed: int) (n: int) (mode: PhaseTwoMode) (eta: float) (ridge: float) (epsilon: float) (phaseTwo: int) =
    use g = new torch.Generator(uint64 (seed &&& 0x7fffffff) + 5UL, torch.CPU)
    let x = torch.randn([| int64 n; 3L |], dtype = torch.float64, generator = g)
    let y = torch.randn([| int64 n; 2L |], dtype = torch.float64, generator = g)
    let model = TestSupport.tanhNetwork seed
    let recipe = { RecipeConfig.Default.WithSwitchIteration(2).WithPreconditionedReadout(eta, ridge, epsilon) with Mode = mode; DampingPower = 2.0 }
    preconditionedRunOf recipe model x y n phaseTwo

/// W*_λ from the primal normal equations (ΦᵀΦ/n + λI)W = ΦᵀZ/n (λ > 0), or the minimum-norm
/// interpolant Φᵀ(ΦΦᵀ)⁻¹Z by MathNet's SVD pseudo-inverse (λ = 0).
let private optimum (phi: Matrix<float>) (z: Matrix<float>) (ridge: float) =
    let n = float phi.RowCount
    if ridge > 0.0 then
        let h = phi.TransposeThisAndMultiply(phi) / n + Matrix<float>.Build.DenseIdentity(phi.ColumnCount) * ridge
        h.Solve(phi.TransposeThisAndMultiply(z) / n)
    else phi.PseudoInverse() * z

/// ‖D‖_H = √((1/n)‖ΦD‖² + λ‖D‖²).
let private hNorm (phi: Matrix<float>) (ridge: float) (d: Matrix<float>) =
    sqrt ((phi * d).FrobeniusNorm() ** 2.0 / float phi.RowCount + ridge * d.FrobeniusNorm() ** 2.0)

[<Tests>]
let tests =
    testSequenced <| testList "Algorithm.Preconditioned" [
        testPropertyWithConfig (Seeds.config 4) "frozen body: ‖W_t − W*_λ‖_H contracts by exactly (1 − η_P) per step (MathNet primal oracle), and the predicted k(ε) is met" <| fun (seed: int) ->
            let rng = Random seed
            let eta = [| 0.3; 0.5; 0.8; 1.0 |].[rng.Next 4]
            let ridge = [| 0.0; 1e-3; 0.1 |].[rng.Next 3]
            let n = rng.Next(6, 20)
            let epsilon = 1e-8
            let k = TwoPhase.PredictedSteps(eta, epsilon)
            let r = run seed n PhaseTwoMode.Frozen eta ridge epsilon (k + 2)
            try
                Expect.equal r.Final.Phase Phase.PhaseTwo "EC certified (n < 40 tanh features)"
                let p = r.Final.Preconditioner
                Expect.equal p.PredictedSteps k "k(ε) at the switch"
                let wStar = optimum r.Phi r.Z ridge
                let errors = r.Trajectory |> List.map (fun w -> hNorm r.Phi ridge (w - wStar))
                // W_τ = 0 enters the first step; each recorded W_t is the readout after the step
                let e0 = hNorm r.Phi ridge (wStar * -1.0)
                for i, e in List.indexed errors do
                    let before = if i = 0 then e0 else errors.[i - 1]
                    Expect.isLessThanOrEqual e ((1.0 - eta) * before + 1e-9 * e0) (sprintf "step %d: ‖e_{t+1}‖_H ≤ (1 − η)‖e_t‖_H (η = %g, λ = %g)" i eta ridge)
                    Expect.isGreaterThanOrEqual e ((1.0 - eta) * before - 1e-9 * e0) "and not faster: exactly (1 − η)"
                Expect.isTrue p.HypothesisHeld (sprintf "float64 solve residuals are far below √ε (max ratio %g)" p.MaxPerturbationRatio)
                Expect.isGreaterThanOrEqual p.AchievedAfter 0 "reached"
                Expect.isLessThanOrEqual p.AchievedAfter k (sprintf "reached within k(ε) = %d steps" k)
            finally TwoPhase.Dispose(r.Setup, r.Final)

        test "negative control: a prediction the rate cannot meet (k = 1 claimed for η_P = 0.1) is caught as a miss at the step it falls due" {
            let r = run 7 10 PhaseTwoMode.Frozen 0.1 0.0 1e-8 1
            let p = r.Final.Preconditioner
            Expect.isGreaterThan p.PredictedSteps 1 "the honest k(ε) for η_P = 0.1 is large"
            // the same factor and caches, claiming k = 1 (what a wrong rate analysis would promise)
            let wrong = PreconditionedReadout(p.Factor, p.Step, p.Ridge, p.Epsilon, 1, p.FrozenFeatures, p.FrozenSolution, p.FrozenTargets,
                                              p.FrozenResidualNorm, p.InitialGapLower, p.LastGapUpper, p.AchievedAfter, p.HypothesisHeld,
                                              p.MaxPerturbationRatio, p.StepsDone)
            let state = { r.Final with Preconditioner = wrong }
            let x = r.Setup.Certification.Inputs
            let e = Expect.throwsC (fun () ->
                        TwoPhase.Step(r.Setup, state, 0.05, fun forward -> Losses.value LossKind.Squared (forward.Invoke x) r.Setup.Targets) |> ignore) id
            Expect.stringContains e.Message "was missed although its hypothesis held" "a miss is reported as the bug it is"
            TwoPhase.Dispose(r.Setup, r.Final)
        }

        test "damped body: no k(ε) is promised (the objective moves with ω), every step uses the rule and is measured" {
            let r = run 3 12 PhaseTwoMode.Damped 0.5 0.0 1e-6 30
            try
                let p = r.Final.Preconditioner
                Expect.equal p.PredictedSteps -1 "no prediction with a moving objective"
                Expect.equal p.StepsDone 30 "every Phase II step used the rule"
                Expect.isLessThan p.LastGapUpper p.InitialGapLower "the current objective's gap shrinks (not at a promised rate: the body's drift)"
            finally TwoPhase.Dispose(r.Setup, r.Final)
        }

        test "refused where Theorem P does not apply: cross-entropy, the output layer as V, a certification subset, no targets, η_P ∉ (0, 1]" {
            use x = torch.randn([| 8L; 3L |], dtype = torch.float64)
            use y = torch.randn([| 8L; 2L |], dtype = torch.float64)
            use model = TestSupport.tanhNetwork 1
            use opt = torch.optim.SGD(model.parameters (), 0.05) :> torch.optim.Optimizer
            let recipe = RecipeConfig.Default.WithSwitchIteration(1).WithPreconditionedReadout(0.5, 0.0, 1e-6)
            let setup = TwoPhase.Setup(recipe, model, [ "hidden" ], BodyRule.Of opt, CertificationInputs.Create(x, null, 8), LossKind.Squared, 8, 2).WithTargets(y)
            let refused what (s: RecipeSetup) =
                let e = Expect.throwsC (fun () -> TwoPhase.Init s |> ignore) id
                Expect.stringContains e.Message "Preconditioned" what
            refused "cross-entropy" { setup with Loss = LossKind.CrossEntropy }
            refused "subset" { setup with Certification = CertificationInputs.Create(x.narrow(0L, 0L, 4L), null, 8) }
            refused "targets" { setup with Targets = null }
            refused "η_P" { setup with Recipe = { setup.Recipe with PreconditionedStep = 1.5 } }
            let layer = model.named_modules () |> Seq.pick (fun struct (name, m) -> if name = "fc2" then Some (m :?> Modules.Linear) else None)
            use layerOpt = torch.optim.SGD(layer.parameters (), 0.05) :> torch.optim.Optimizer
            refused "output layer" (TwoPhase.WithOutputLayer(setup, layer, layerOpt))
            TwoPhase.Init setup |> ignore
        }
    ]

[<Tests>]
let trainerTests =
    testSequenced <| testList "Algorithm.Preconditioned.Trainer" [
        test "the built-in trainer with Recipe ReadoutStep = Preconditioned: k(ε) met, and resuming from every checkpoint (Phase I and II) is bit for bit, measurements included" {
            let n = 10
            let data = Fixtures.regression 21 n 3 2 torch.float64
            let arch = Fixtures.mlp 3 [| 4; 16 |] 2 Activation.Tanh Precision.Float64
            let cfg = Fixtures.training 21 n 24 OptimizerSpec.Sgd 0.05 LossKind.Squared
            let rc = { Fixtures.recipe 4 PhaseTwoMode.Frozen with ReadoutStep = ReadoutStepRule.Preconditioned; PreconditionedStep = 0.7; ReadoutRidge = 1e-3; PredictionEpsilon = 1e-10 }
            let dir = IO.Path.Combine(IO.Path.GetTempPath(), sprintf "rf-precond-%s" (Guid.NewGuid().ToString "N"))
            try
                let cfgC = { cfg with CheckpointEvery = 4; CheckpointDirectory = dir }
                use trainer = new TwoPhaseTrainer(arch, cfgC, Some rc, data, NullObserver())
                let full = trainer.Run Threading.CancellationToken.None
                Expect.isTrue full.GuaranteeClaimed "certified switch"
                let p = trainer.State.Preconditioner
                Expect.equal p.PredictedSteps (TwoPhase.PredictedSteps(0.7, 1e-10)) "k(ε)"
                Expect.isTrue p.HypothesisHeld "float64"
                Expect.isTrue (p.AchievedAfter >= 0 && p.AchievedAfter <= p.PredictedSteps) (sprintf "met: %d ≤ %d" p.AchievedAfter p.PredictedSteps)
                let checkpoints = IO.Directory.GetFiles(dir, "checkpoint-*.bin")
                Expect.equal checkpoints.Length 6 "checkpoints at 4, 8, …, 24"
                for path in checkpoints do
                    use resumed = new TwoPhaseTrainer(arch, cfg, Some rc, data, NullObserver())
                    resumed.LoadCheckpoint path
                    let r = resumed.Run Threading.CancellationToken.None
                    Invariants.bitIdentical full r |> Fixtures.expectOk ("resume from " + IO.Path.GetFileName path)
                    let q = resumed.State.Preconditioner
                    Expect.equal (q.AchievedAfter, q.StepsDone, q.HypothesisHeld, q.InitialGapLower) (p.AchievedAfter, p.StepsDone, p.HypothesisHeld, p.InitialGapLower) "measurements survive"
            finally
                if IO.Directory.Exists dir then IO.Directory.Delete(dir, true)
        }
    ]
