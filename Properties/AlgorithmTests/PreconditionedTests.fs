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

/// How the body moves in a Theorem PD run: SGD on the loss with rate η (damped by α_t), or a random jump of relative
/// size `scale` per step (damped by α_t: a body the theorem's hypothesis must reject).
type DampedBody =
    | SgdSteps of float
    | RandomJumps of float

/// A damped preconditioned run with λ = 0 (Theorem PD): τ = 2 SGD steps, the switch, `phaseTwo` Phase II steps. The
/// oracle: ‖R_τ‖ and ‖R_{τ+k}‖ of f̄ on all n points after each step, from independent forward passes (TwoPhase.Predict)
/// and MathNet norms.
type DampedRun = { Setup: RecipeSetup; Final: RecipeState; ResidualAtSwitch: float; Residuals: float list }

let dampedRun (seed: int) (n: int) (eta: float) (delta: float) (epsilon: float) (phaseTwo: int) (body: DampedBody) (dampingPower: float) (limit: bool) =
    use g = new torch.Generator(uint64 (seed &&& 0x7fffffff) + 5UL, torch.CPU)
    let x = torch.randn([| int64 n; 3L |], dtype = torch.float64, generator = g)
    let y = torch.randn([| int64 n; 2L |], dtype = torch.float64, generator = g)
    let model = TestSupport.tanhNetwork seed
    let recipe =
        { RecipeConfig.Default.WithSwitchIteration(2).WithPreconditionedReadout(eta, 0.0, epsilon).WithRefactorThreshold(delta).WithLimitBodyStep(limit) with
            Mode = PhaseTwoMode.Damped; DampingPower = dampingPower; CheckPeriod = 0 }
    let opt = torch.optim.SGD(model.parameters (), (match body with SgdSteps lr -> lr | RandomJumps _ -> 0.05)) :> torch.optim.Optimizer
    let jumps = new torch.Generator(uint64 seed + 99UL, torch.CPU)
    let rule =
        match body with
        | SgdSteps _ -> BodyRule.Of opt
        | RandomJumps scale ->
            BodyRule.StepFunction(Action(fun () ->
                use _ = torch.no_grad ()
                for p in model.parameters () do
                    use noise = torch.randn(p.shape, dtype = p.dtype, generator = jumps)
                    p.add_(noise.mul(scalar (scale * (p.norm().ToDouble() / sqrt (float p.NumberOfElements))))) |> ignore))
    let setup =
        TwoPhase.Setup(recipe, model, [ "hidden" ], rule, CertificationInputs.Create(x, null, n), LossKind.Squared, n, 2).WithTargets(y)
    let residualNorm (state: RecipeState) =
        use out = TwoPhase.Predict(setup, state, x)
        (matrixOf y - matrixOf out).FrobeniusNorm()
    let mutable state = TwoPhase.Init setup
    let mutable atSwitch = nan
    let residuals = ResizeArray<float>()
    while state.Iteration < 2 + phaseTwo do
        if state.Iteration = 2 then atSwitch <- residualNorm state
        // Phase I at η = 0.05; in Phase II the body's η_t (damped by α_t) is the body rule's
        let rate = if state.Iteration < 2 then 0.05 else (match body with SgdSteps lr -> lr | RandomJumps _ -> 0.05)
        let step = TwoPhase.Step(setup, state, rate, fun forward -> Losses.value LossKind.Squared (forward.Invoke x) y)
        state <- step.State
        if state.Phase = Phase.PhaseTwo then residuals.Add(residualNorm state)
    { Setup = setup; Final = state; ResidualAtSwitch = atSwitch; Residuals = List.ofSeq residuals }

/// A Theorem PD run (η_P = 0.5, δ = 0.5, ε = 10⁻⁴, n = 12) whose body jumps at random (relative size 1, α_t = (t − τ + 1)^(−1.1)),
/// with the body limit on or off, handed to `check` with its record, a description and k_δ(ε).
let private randomJumps (limit: bool) (check: DampedRun -> PreconditionedReadout -> string -> int -> unit) =
    let eta, delta, epsilon = 0.5, 0.5, 1e-4
    let k = TwoPhase.PredictedSteps(eta * (1.0 - delta), epsilon)
    let d = dampedRun 5 12 eta delta epsilon (k + 2) (DampedBody.RandomJumps 1.0) 1.1 limit
    try
        let p = d.Final.Preconditioner
        check d p (sprintf "held %b, max E/budget %g, max Δ %g, refactors %d, residuals %A" p.HypothesisHeld p.MaxPerturbationRatio p.Damped.MaxDrift p.Damped.Refactors d.Residuals) k
    finally TwoPhase.Dispose(d.Setup, d.Final)

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

        test "frozen body whose hypothesis fails (ε = 10⁻³⁴, below float64's rounding of W): the gap is measured at every step up to k(ε), then only at k(ε) + 2^j, each measurement one pass over Φ̃_τ and none in between" {
            let eta, epsilon = 0.9, 1e-34
            let k = TwoPhase.PredictedSteps(eta, epsilon)
            let steps = k + 40
            use g = new torch.Generator(16UL, torch.CPU)
            let x = torch.randn([| 10L; 3L |], dtype = torch.float64, generator = g)
            let y = torch.randn([| 10L; 2L |], dtype = torch.float64, generator = g)
            let model = TestSupport.tanhNetwork 11
            let recipe = { RecipeConfig.Default.WithSwitchIteration(2).WithPreconditionedReadout(eta, 0.0, epsilon) with Mode = PhaseTwoMode.Frozen }
            let opt = torch.optim.SGD(model.parameters (), 0.05) :> torch.optim.Optimizer
            let setup =
                TwoPhase.Setup(recipe, model, [ "hidden" ], BodyRule.Of opt, CertificationInputs.Create(x, null, 10), LossKind.Squared, 10, 2)
                    .WithTargets(y)
            let mutable state = TwoPhase.Init setup
            // after each Phase II step: (steps done, passes over Φ̃_τ so far, hypothesis held, recorded gap bound)
            let records = ResizeArray<int * int * bool * float>()
            try
                while state.Iteration < 2 + steps do
                    state <- (TwoPhase.Step(setup, state, 0.05, fun forward -> Losses.value LossKind.Squared (forward.Invoke x) y)).State
                    let p = state.Preconditioner
                    if state.Phase = Phase.PhaseTwo then records.Add(p.StepsDone, p.FrozenFeatures.Passes, p.HypothesisHeld, p.LastGapUpper)
                let p = state.Preconditioner
                Expect.equal p.StepsDone steps "every Phase II step used the rule"
                Expect.isFalse p.HypothesisHeld (sprintf "ε = 10⁻³⁴ is below what float64 holds: the hypothesis fails (max ratio %g)" p.MaxPerturbationRatio)
                Expect.equal p.AchievedAfter -1 "and the rigorous bound never reaches √ε·g_τ"
                let measuredAt = ResizeArray<int>()
                for (before, passesBefore, heldBefore, gapBefore), (after, passes, _, gap) in Seq.pairwise records do
                    Expect.equal after (before + 1) "one step"
                    let extra = passes - passesBefore
                    Expect.isTrue (extra = 0 || extra = 1) (sprintf "step %d: %d passes over Φ̃_τ (a measurement is one)" after extra)
                    if extra = 1 then measuredAt.Add before
                    else Expect.equal gap gapBefore (sprintf "step %d: not measured, the record keeps the last measured bound" after)
                    // up to k(ε), and while the hypothesis holds, every step is measured (the prediction is decided there)
                    if before <= k || heldBefore then Expect.equal extra 1 (sprintf "step %d (k(ε) = %d, held %b) is measured" after k heldBefore)
                let past = measuredAt |> Seq.filter (fun s -> s > k) |> List.ofSeq
                // past k(ε) with the hypothesis failed: steps k + 1, k + 2, k + 4, …, k + 32 of the k + 40
                Expect.equal past [ for j in 0 .. 5 -> k + (1 <<< j) ] (sprintf "measured past k(ε) = %d at k + 2^j only" k)
                Expect.isTrue (Seq.forall (fun (_, _, held, _) -> not held) (records |> Seq.filter (fun (s, _, _, _) -> s > k + 1)))
                    "the failed hypothesis stays failed"
            finally TwoPhase.Dispose(setup, state)
        }

        test "damped body with a ridge λ > 0: no k(ε) is promised (J_λ moves with ω), every step uses the rule and is measured" {
            let r = run 3 12 PhaseTwoMode.Damped 0.5 1e-3 1e-6 30
            try
                let p = r.Final.Preconditioner
                Expect.isNull p.Damped "the Z-form rule (Theorem PD needs λ = 0)"
                Expect.equal p.PredictedSteps -1 "no prediction with a moving objective"
                Expect.equal p.StepsDone 30 "every Phase II step used the rule"
                Expect.isLessThan p.LastGapUpper p.InitialGapLower "the current objective's gap shrinks (not at a promised rate: the body's drift)"
            finally TwoPhase.Dispose(r.Setup, r.Final)
        }

        Fixtures.testPropertyCounting (Seeds.config 4) 0.5 "Theorem PD, damped body (λ = 0, body limit on): whenever the run says its hypotheses held, the training loss obeys ‖R_{τ+k}‖ ≤ (q^k + √ε/2)‖R_τ‖ at every k ≥ k_δ(ε) (independent forward passes, MathNet norms) and reaches ε·L(θ_τ) within k_δ(ε); the hypotheses held in at least half the cases" <| fun counter (seed: int) ->
            let rng = Random seed
            let eta = [| 0.3; 0.5; 0.8 |].[rng.Next 3]
            let delta = [| 0.25; 0.5 |].[rng.Next 2]
            let n = rng.Next(6, 20)
            let epsilon = 1e-4
            let k = TwoPhase.PredictedSteps(eta * (1.0 - delta), epsilon)
            let d = dampedRun seed n eta delta epsilon (k + 3) (DampedBody.SgdSteps 0.002) 2.0 true
            try
                let p = d.Final.Preconditioner
                Expect.equal d.Final.Phase Phase.PhaseTwo "EC certified (n < 40 tanh features)"
                Expect.isNotNull p.Damped "Theorem PD's rule"
                Expect.equal p.PredictedSteps k "k_δ(ε) at the switch"
                let q = 1.0 - eta * (1.0 - delta)
                let what = sprintf "η_P = %g, δ = %g, n = %d, held %b, max E/budget %g, max Δ %g, refactors %d" eta delta n p.HypothesisHeld p.MaxPerturbationRatio p.Damped.MaxDrift p.Damped.Refactors
                if p.HypothesisHeld then
                    counter.Hit()
                    // (PD2) at every k ≥ k_δ(ε), where the run checks E_k
                    for i, rk in List.indexed d.Residuals |> List.filter (fun (i, _) -> i + 1 >= k) do
                        let bound = (q ** float (i + 1) + sqrt epsilon / 2.0) * d.ResidualAtSwitch
                        Expect.isLessThanOrEqual rk (bound * (1.0 + 1e-12)) (sprintf "step %d: ‖R‖ = %g ≤ (q^k + √ε/2)‖R_τ‖ = %g (%s)" (i + 1) rk bound what)
                    Expect.isGreaterThanOrEqual p.AchievedAfter 0 ("reached: " + what)
                    Expect.isLessThanOrEqual p.AchievedAfter k (sprintf "within k_δ(ε) = %d (%s)" k what)
                    let kth = d.Residuals.[k - 1]
                    Expect.isLessThanOrEqual (kth * kth) (epsilon * d.ResidualAtSwitch * d.ResidualAtSwitch) ("L(θ_{τ+k}) ≤ ε·L(θ_τ) by the oracle: " + what)
            finally TwoPhase.Dispose(d.Setup, d.Final)

        test "Theorem PD refactors: a small δ with a moving body refactors G at the steps where the drift ratio exceeds δ, keeps Δ_t ≤ δ, and still meets k_δ(ε)" {
            let eta, delta, epsilon = 0.5, 1e-6, 1e-4
            let k = TwoPhase.PredictedSteps(eta * (1.0 - delta), epsilon)
            let d = dampedRun 11 14 eta delta epsilon (k + 2) (DampedBody.SgdSteps 0.002) 2.0 false
            try
                let p = d.Final.Preconditioner
                let what = sprintf "held %b, max E/budget %g, max Δ %g, refactors %d" p.HypothesisHeld p.MaxPerturbationRatio p.Damped.MaxDrift p.Damped.Refactors
                Expect.isGreaterThanOrEqual p.Damped.Refactors 1 ("the body's drift needed a refactor: " + what)
                Expect.isLessThanOrEqual p.Damped.MaxDrift delta ("Δ_t ≤ δ after each refactor: " + what)
                Expect.isTrue p.HypothesisHeld what
                Expect.isTrue (p.AchievedAfter >= 0 && p.AchievedAfter <= k) (sprintf "met within k_δ(ε) = %d: %d (%s)" k p.AchievedAfter what)
                let kth = d.Residuals.[k - 1]
                Expect.isLessThanOrEqual (kth * kth) (epsilon * d.ResidualAtSwitch * d.ResidualAtSwitch) ("L(θ_{τ+k}) ≤ ε·L(θ_τ) by the oracle: " + what)
            finally TwoPhase.Dispose(d.Setup, d.Final)
        }

        test "Theorem PD's body limit: a randomly jumping body, its steps shortened until their perturbation fits the budget: the hypothesis holds by construction, k_δ(ε) is met by the oracle, and the body still moved" {
            randomJumps true (fun d p what k ->
                Expect.isTrue p.HypothesisHeld what
                Expect.isLessThanOrEqual p.MaxPerturbationRatio 1.0 what
                Expect.isTrue (p.AchievedAfter >= 0 && p.AchievedAfter <= k) (sprintf "met within k_δ(ε) = %d: %d (%s)" k p.AchievedAfter what)
                let kth = d.Residuals.[k - 1]
                Expect.isLessThanOrEqual (kth * kth) (1e-4 * d.ResidualAtSwitch * d.ResidualAtSwitch) ("L(θ_{τ+k}) ≤ ε·L(θ_τ) by the oracle: " + what)
                Expect.isGreaterThan (TwoPhase.DisplacementSinceSwitch(d.Setup, d.Final)) 0.0 "the body moved (shortened, not frozen)")
        }

        test "negative control for Theorem PD (body limit off): the same randomly jumping body (not a descent step) breaks the rate; the run says the hypothesis failed instead of promising, and the oracle confirms the prediction was not met" {
            randomJumps false (fun d p what k ->
                Expect.isGreaterThan d.Residuals.[k - 1] (sqrt 1e-4 * d.ResidualAtSwitch) ("non-vacuous: the loss is not at ε·L(θ_τ) after k_δ(ε) steps: " + what)
                Expect.isFalse p.HypothesisHeld ("the body's perturbation e_t exceeded its budget and the run says so: " + what)
                Expect.isGreaterThan p.MaxPerturbationRatio 1.0 ("E_k above its budget (√ε/2)‖R_τ‖: " + what))
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
            refused "refactor threshold δ" { setup with Recipe = { setup.Recipe with RefactorThreshold = 1.0 } }
            refused "refactor threshold δ" { setup with Recipe = { setup.Recipe with RefactorThreshold = 0.0 } }
            let layer = model.named_modules () |> Seq.pick (fun struct (name, m) -> if name = "fc2" then Some (m :?> Modules.Linear) else None)
            use layerOpt = torch.optim.SGD(layer.parameters (), 0.05) :> torch.optim.Optimizer
            refused "output layer" (TwoPhase.WithOutputLayer(setup, layer, layerOpt))
            TwoPhase.Init setup |> ignore
        }
    ]

/// The built-in trainer on a 10-point regression (MLP 3-4-16-2, tanh, float64, SGD 0.05, T = 24, τ = 4) with recipe
/// `rc` and a checkpoint every 4 iterations in a temporary folder (removed afterwards); `check` gets the trainer, its
/// result, the checkpoint files and a function making a fresh trainer of the same run (without checkpoints) for a recipe.
let private checkpointedRun (seed: int) (rc: RecipeConfig) check =
    let n = 10
    let data = Fixtures.regression seed n 3 2 torch.float64
    let arch = Fixtures.mlp 3 [| 4; 16 |] 2 Activation.Tanh Precision.Float64
    let cfg = Fixtures.training seed n 24 OptimizerSpec.Sgd 0.05 LossKind.Squared
    let dir = IO.Path.Combine(IO.Path.GetTempPath(), sprintf "rf-precond-%s" (Guid.NewGuid().ToString "N"))
    try
        use trainer = new TwoPhaseTrainer(arch, { cfg with CheckpointEvery = 4; CheckpointDirectory = dir }, Some rc, data, NullObserver())
        let full = trainer.Run Threading.CancellationToken.None
        Expect.isTrue full.GuaranteeClaimed "certified switch"
        check trainer full (IO.Directory.GetFiles(dir, "checkpoint-*.bin")) (fun (recipe: RecipeConfig) -> new TwoPhaseTrainer(arch, cfg, Some recipe, data, NullObserver()))
    finally
        if IO.Directory.Exists dir then IO.Directory.Delete(dir, true)

[<Tests>]
let trainerTests =
    testSequenced <| testList "Algorithm.Preconditioned.Trainer" [
        test "the built-in trainer with Recipe ReadoutStep = Preconditioned: k(ε) met, and resuming from every checkpoint (Phase I and II) is bit for bit, measurements included" {
            let rc = { Fixtures.recipe 4 PhaseTwoMode.Frozen with ReadoutStep = ReadoutStepRule.Preconditioned; PreconditionedStep = 0.7; ReadoutRidge = 1e-3; PredictionEpsilon = 1e-10 }
            checkpointedRun 21 rc (fun trainer full checkpoints fresh ->
                let p = trainer.State.Preconditioner
                Expect.equal p.PredictedSteps (TwoPhase.PredictedSteps(0.7, 1e-10)) "k(ε)"
                Expect.isTrue p.HypothesisHeld "float64"
                Expect.isTrue (p.AchievedAfter >= 0 && p.AchievedAfter <= p.PredictedSteps) (sprintf "met: %d ≤ %d" p.AchievedAfter p.PredictedSteps)
                Expect.equal checkpoints.Length 6 "checkpoints at 4, 8, …, 24"
                for path in checkpoints do
                    use resumed : TwoPhaseTrainer = fresh rc
                    resumed.LoadCheckpoint path
                    let r = resumed.Run Threading.CancellationToken.None
                    Invariants.bitIdentical full r |> Fixtures.expectOk ("resume from " + IO.Path.GetFileName path)
                    let q = resumed.State.Preconditioner
                    Expect.equal (q.AchievedAfter, q.StepsDone, q.HypothesisHeld, q.InitialGapLower) (p.AchievedAfter, p.StepsDone, p.HypothesisHeld, p.InitialGapLower) "measurements survive")
        }

        test "Theorem PD on the tiled engine (tiles of 4, Gram products of 4 columns): a refactor forms its factor in the order a resume rebuilds it in (CholeskyFactor.OfRows), so resuming after refactors is bit for bit" {
            let folder = IO.Directory.CreateTempSubdirectory("rf-pd-tiled-").FullName
            try
                // n = 10 in tiles of 4 (three tile rows), Gram products of 4 columns (m = 16: four), so the orders differ
                let engine = { CertificateEngine.Default with Kind = EngineKind.Tiled; TileSize = 4; WorkDirectory = folder; GramChunkColumns = 4 }
                let rc = { (Fixtures.recipe 4 PhaseTwoMode.Damped).WithCertificateEngine(engine) with
                             ReadoutStep = ReadoutStepRule.Preconditioned; PreconditionedStep = 0.5; ReadoutRidge = 0.0; PredictionEpsilon = 1e-4
                             RefactorThreshold = 0.02; DampingPower = 2.0 }
                // δ = 0.02: one refactor in 20 Phase II steps, so a resume after it steps with the rebuilt factor (with
                // δ = 10⁻⁶ every step refactors and a rebuilt factor would only feed the drift check)
                checkpointedRun 23 rc (fun trainer full checkpoints fresh ->
                    let p = trainer.State.Preconditioner
                    Expect.isTrue p.Factor.IsTiled "the factor is tiled"
                    Expect.isGreaterThanOrEqual p.Damped.Refactors 1 "refactored (non-vacuous for the resume)"
                    for path in checkpoints do
                        use resumed : TwoPhaseTrainer = fresh rc
                        resumed.LoadCheckpoint path
                        let r = resumed.Run Threading.CancellationToken.None
                        Invariants.bitIdentical full r |> Fixtures.expectOk ("resume from " + IO.Path.GetFileName path)
                        Expect.equal resumed.State.Preconditioner.Damped.MaxDrift p.Damped.MaxDrift "the drift ratios, bit for bit")
            finally
                try IO.Directory.Delete(folder, true) with _ -> ()
        }

        test "Theorem PD in the built-in trainer (damped body, λ = 0, δ small enough to refactor): resuming from every checkpoint, before and after refactors, is bit for bit, the damped state included" {
            let rc = { Fixtures.recipe 4 PhaseTwoMode.Damped with
                         ReadoutStep = ReadoutStepRule.Preconditioned; PreconditionedStep = 0.5; ReadoutRidge = 0.0; PredictionEpsilon = 1e-4
                         RefactorThreshold = 1e-6; DampingPower = 2.0 }
            checkpointedRun 23 rc (fun trainer full checkpoints fresh ->
                let p = trainer.State.Preconditioner
                Expect.isNotNull p.Damped "Theorem PD"
                Expect.equal p.PredictedSteps (TwoPhase.PredictedSteps(0.5 * (1.0 - 1e-6), 1e-4)) "k_δ(ε)"
                Expect.isGreaterThanOrEqual p.Damped.Refactors 2 "refactored more than once (non-vacuous for the resume)"
                for path in checkpoints do
                    use resumed : TwoPhaseTrainer = fresh rc
                    resumed.LoadCheckpoint path
                    let r = resumed.Run Threading.CancellationToken.None
                    Invariants.bitIdentical full r |> Fixtures.expectOk ("resume from " + IO.Path.GetFileName path)
                    let q = resumed.State.Preconditioner
                    Expect.equal (q.AchievedAfter, q.StepsDone, q.HypothesisHeld, q.InitialGapLower, q.MaxPerturbationRatio)
                                 (p.AchievedAfter, p.StepsDone, p.HypothesisHeld, p.InitialGapLower, p.MaxPerturbationRatio) "measurements survive"
                    Expect.equal (q.Damped.Refactors, q.Damped.FactorIteration, q.Damped.MaxDrift, q.Damped.Pending)
                                 (p.Damped.Refactors, p.Damped.FactorIteration, p.Damped.MaxDrift, p.Damped.Pending) "Theorem PD's state survives"
                // a Phase II checkpoint of Theorem PD is refused by a run with another δ or a frozen body, naming why
                let last = checkpoints |> Array.max
                for other, why in [ { rc with RefactorThreshold = 0.25 }, "RefactorThreshold"; { rc with Mode = PhaseTwoMode.Frozen }, "Theorem PD" ] do
                    use wrong : TwoPhaseTrainer = fresh other
                    let e = Expect.throwsC (fun () -> wrong.LoadCheckpoint last) id
                    Expect.stringContains e.Message why (sprintf "refused: %s" e.Message))
        }
    ]
