/// Differential grids (issue #17 item 4): the certificate and the trainer run in each precision (float32, float64) on
/// the test device (`RF_TEST_DEVICE`: cpu here, cuda where present), under the suite's one tolerance policy
/// (`Tolerance`). The grid is device × dtype × property: one process per device (`rf verify --device cpu,cuda`), and
/// one property per precision below (`Differential/float32/…`, `Differential/float64/…`), so a verification report
/// lists every cell of the grid with its own case count and failures. What each cell compares:
/// * the certificate: of features given in the precision, on the device, against the float64 CPU certificate of the
///   same values widened. The Gram is always accumulated in float64 (each block widened first, exactly), so on CPU
///   the two are the same computation and the cell checks that a float32 input is taken exactly (bit for bit) and
///   that both bounds are sound against MathNet's SVD; it compares two computations only on another device;
/// * a base training run in the precision on the device against the float64 CPU run from the same rounded start and
///   data (two computations for float32 on any device and for float64 off CPU; float64 on CPU checks bit for bit);
/// * the frozen-body readout theorem's invariants within the precision (no reference run): V's rate within the
///   certified cap, the objective non-increasing up to the precision's loss rounding.
module ResearchFramework.Properties.DifferentialTests

open System
open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Algorithm
open ResearchFramework.Properties
open ResearchFramework.Properties.MathCoreTests
open ResearchFramework.Properties.AlgorithmTests.Fixtures

let private dtypeOf = function Tolerance.Float32 -> torch.float32 | Tolerance.Float64 -> torch.float64
let private architecturePrecision = function Tolerance.Float32 -> Precision.Float32 | Tolerance.Float64 -> Precision.Float64
let private nameOf = function Tolerance.Float32 -> "float32" | Tolerance.Float64 -> "float64"
let private onCpu () = (TestDevice.device ()).``type`` = DeviceType.CPU

/// The precision p's certificate cell: Φ (rank k, singular values in [1, 10]) rounded to p is certified on the test
/// device; the reference is the float64 CPU certificate of the same values widened (exact: float32 ⊂ float64).
/// Both must be sound against MathNet's SVD of those values; a full-rank Φ (the non-vacuous cases) must be Certified
/// by both; on CPU the fast path must equal the reference bit for bit (the Gram is formed from the same doubles).
let private certificateCell (p: Tolerance.Precision) =
    // half the cases are full rank: at least 2 of 20 (a Binomial(20, 1/2) falls below that with probability 2·10⁻⁵; 0.3 failed CI 1 run in 50)
    testPropertyCounting (few 20) 0.1
        (sprintf "certificate of %s features on the test device = the float64 CPU certificate of the same rounded Φ (bit for bit on CPU; same verdict for full rank elsewhere); both σ bounds sound against MathNet's SVD" (nameOf p))
    <| fun counter (seed: int) ->
        use scope = torch.NewDisposeScope()
        let n, m, k = Generators.shape seed
        // half the cases full rank (a multiplicative hash of the seed: System.Random of seed + 1 correlates with seed's)
        let k = if (uint32 seed * 2654435761u) >>> 31 = 0u then n else k
        use phi64 = Generators.ofRank seed n m k
        use rounded = phi64.``to``(dtypeOf p)
        use widened = rounded.``to``(torch.float64)
        let fast = Generators.certify false rounded
        let reference = Certify.certifyMatrix Certify.defaults (Generators.subject widened false) widened
        let sigmaMin, sigmaMax = Generators.mathNetSigmaMin widened, Generators.mathNetSigmaMax widened
        let slack = Tolerance.svdSlack (int64 n) (int64 m) sigmaMax
        let info = sprintf "n = %d, m = %d, rank %d, %s on %O: fast %A %.17g, reference %A %.17g, SVD σ_min %.17g"
                           n m k (nameOf p) (TestDevice.device ()) fast.Verdict fast.SigmaMinLower reference.Verdict reference.SigmaMinLower sigmaMin
        for c, route in [ fast, "fast"; reference, "reference" ] do
            Expect.isLessThanOrEqual c.SigmaMinLower (sigmaMin + slack) (sprintf "%s σ_min bound ≤ SVD σ_min (soundness); %s" route info)
            Expect.isGreaterThanOrEqual c.SigmaMaxUpper (sigmaMax - slack) (sprintf "%s σ_max bound ≥ SVD σ_max (soundness); %s" route info)
        if onCpu () then
            Expect.equal fast.Verdict reference.Verdict ("same verdict on CPU; " + info)
            Expect.equal (BitConverter.DoubleToInt64Bits fast.SigmaMinLower) (BitConverter.DoubleToInt64Bits reference.SigmaMinLower) ("same σ_min bound on CPU, bit for bit; " + info)
            Expect.equal (BitConverter.DoubleToInt64Bits fast.SigmaMaxUpper) (BitConverter.DoubleToInt64Bits reference.SigmaMaxUpper) ("same σ_max bound on CPU, bit for bit; " + info)
        if k = n then
            counter.Hit()
            Expect.equal reference.Verdict Verdict.Certified ("full rank, κ ≤ 10: the reference certifies; " + info)
            Expect.equal fast.Verdict Verdict.Certified ("full rank, κ ≤ 10: the fast path certifies; " + info)
            Expect.isGreaterThanOrEqual fast.SigmaMinLower (sigmaMin / 2.0) ("the fast path's bound is useful (≥ σ_min/2); " + info)

/// The initial parameters of a fresh model, rounded to p (CPU copies, in the model's parameter order).
let private captureRounded (dtype: torch.ScalarType) (store: ResizeArray<torch.Tensor>) (model: torch.nn.Module<torch.Tensor, torch.Tensor>) =
    use _ = torch.no_grad ()
    use scope = torch.NewDisposeScope()
    for p in model.parameters () do
        store.Add(p.detach().``to``(dtype).cpu().clone().DetachFromDisposeScope())

/// Overwrites a model's parameters with `values` (converted to the parameter's dtype and device: exact for values
/// that are representable in both).
let private assign (values: ResizeArray<torch.Tensor>) (model: torch.nn.Module<torch.Tensor, torch.Tensor>) =
    use _ = torch.no_grad ()
    let ps = model.parameters () |> Seq.toArray
    if ps.Length <> values.Count then failtestf "the two models have %d and %d parameters" ps.Length values.Count
    for p, v in Array.zip ps (values.ToArray()) do
        use converted = v.``to``(p.dtype).``to``(p.device)
        p.copy_(converted) |> ignore

/// The precision p's trainer cell: a base run (full-batch SGD, squared loss, T = 20) of a d → 8 → n + 3 → 2 MLP in p
/// on the test device against the float64 CPU run of the same network from the same start (the fast run's initial
/// parameters and data, rounded to p, widened exactly): every step's recorded loss within `Tolerance.trajectory p`,
/// and bit for bit when the two runs are the same computation (float64 on CPU).
let private trajectoryCell (p: Tolerance.Precision) =
    testPropertyWithConfig (few 5)
        (sprintf "a %s base run on the test device follows the float64 CPU run from the same rounded start and data: every step's loss within the %s trajectory tolerance" (nameOf p) (nameOf p))
    <| fun (seed: int) ->
        use scope = torch.NewDisposeScope()
        let rng = Random seed
        let d, n = rng.Next(2, 5), rng.Next(8, Seeds.scaled 16)
        Seeds.Observe.shape "n" n
        let act = if rng.Next 2 = 0 then Activation.Tanh else Activation.Softplus
        let total = 20
        let data64 = regression seed n d 2 torch.float64
        use x = data64.Inputs.``to``(dtypeOf p)
        use y = data64.Targets.``to``(dtypeOf p)
        use x64 = x.``to``(torch.float64)
        use y64 = y.``to``(torch.float64)
        let cfg = training seed n total OptimizerSpec.Sgd 0.01 LossKind.Squared
        let start = ResizeArray<torch.Tensor>()
        try
            let fast, _ = runInit (captureRounded (dtypeOf p) start) (mlp d [| 8; n + 3 |] 2 act (architecturePrecision p)) cfg None (TrainingData(x, y))
            let reference, _ = runInit (assign start) (mlp d [| 8; n + 3 |] 2 act Precision.Float64) { cfg with Device = "cpu" } None (TrainingData(x64, y64))
            Expect.equal fast.Steps.Length total "fast run: T steps"
            Expect.equal reference.Steps.Length total "reference run: T steps"
            let same = p = Tolerance.Float64 && onCpu ()
            for a, b in Array.zip fast.Steps reference.Steps do
                if same then
                    Expect.equal (BitConverter.DoubleToInt64Bits a.Loss) (BitConverter.DoubleToInt64Bits b.Loss)
                        (sprintf "float64 on CPU is the reference computation: step %d's loss bit for bit" a.Iteration)
                else
                    Tolerance.expectClose (Tolerance.trajectory p) a.Loss b.Loss (sprintf "step %d's loss (%s on %O vs float64 CPU)" a.Iteration (nameOf p) (TestDevice.device ()))
        finally
            for t in start do t.Dispose()

/// The precision p's readout cell: the frozen-body theorem's invariants (SPEC §4, d_t = 0) in p on the test device:
/// full batch, squared loss; V's rate on every Phase II step ≤ n/σ̄(Φ̃_τ)² (σ̄ the certificate's rigorous bound), and
/// the recorded objective never increases, up to the rounding of a loss computed in p (`Tolerance.lossRounding`).
let private readoutCell (p: Tolerance.Precision) =
    testPropertyCounting (few 5) 0.5
        (sprintf "%s on the test device: frozen body, squared loss, full batch, η ≤ n/σ_max(Φ̃)²: the objective never increases beyond the %s loss rounding" (nameOf p) (nameOf p))
        (AlgorithmTests.RecipeTests.frozenReadoutCase p)

[<Tests>]
let tests =
    testSequenced <| testList "Differential" [
        for p in [ Tolerance.Float32; Tolerance.Float64 ] ->
            testList (nameOf p) [ certificateCell p; trajectoryCell p; readoutCell p ]
    ]
