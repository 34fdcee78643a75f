/// Feature maps at taps (SPEC §1): hooks vs explicit computation, evaluation mode, errors, and
/// the streamed row-block certificate vs the in-memory one.
module ResearchFramework.Properties.MathCoreTests.FeatureMapTests

open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Properties
open ResearchFramework.Properties.MathCoreTests.Generators
open ResearchFramework.Properties.TestSupport

let private mlp (seed: int) (d: int) (h: int) (wide: int) : torch.nn.Module<torch.Tensor, torch.Tensor> =
    torch.random.manual_seed(int64 seed) |> ignore
    torch.nn.Sequential(
        struct ("hidden", torch.nn.Linear(int64 d, int64 h, dtype = torch.float64) :> torch.nn.Module<torch.Tensor, torch.Tensor>),
        struct ("act1", torch.nn.Tanh() :> torch.nn.Module<torch.Tensor, torch.Tensor>),
        struct ("wide", torch.nn.Linear(int64 h, int64 wide, dtype = torch.float64) :> torch.nn.Module<torch.Tensor, torch.Tensor>),
        struct ("act2", torch.nn.Tanh() :> torch.nn.Module<torch.Tensor, torch.Tensor>),
        struct ("out", torch.nn.Linear(int64 wide, 3L, dtype = torch.float64) :> torch.nn.Module<torch.Tensor, torch.Tensor>))
    :> torch.nn.Module<torch.Tensor, torch.Tensor>

let private config = Seeds.config 15

/// A block whose forward opens its own dispose scope: the tapped inner output is freed when
/// forward returns, unless the feature map owns what it captured.
type private ScopedBlock() as this =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>("scoped")
    let lin = torch.nn.Linear(3L, 4L, dtype = torch.float64)
    do this.RegisterComponents()
    override _.forward(x) =
        use scope = torch.NewDisposeScope()
        lin.call(x).tanh().MoveToOuterDisposeScope()

[<Tests>]
let tests =
    testSequenced <| testList "MathCore.FeatureMap" [
        testPropertyWithConfig config "features at a tap = the layer output computed by hand" <| fun (seed: int) ->
            let rng = System.Random seed
            let d, h, wide, n = rng.Next(1, 6), rng.Next(1, 5), rng.Next(5, 40), rng.Next(1, 30)
            use model = mlp seed d h wide
            use x = gaussian seed n d
            use phi = FeatureMap.features model [ "act2" ] x
            let parameters = [ for struct (_, p) in model.named_parameters () -> p :> torch.Tensor ] |> Array.ofList
            use _ = torch.no_grad ()
            let linear (w: torch.Tensor) (b: torch.Tensor) (v: torch.Tensor) = torch.nn.functional.linear(v, w, b)
            use byHand = (x |> linear parameters.[0] parameters.[1]).tanh() |> linear parameters.[2] parameters.[3] |> fun t -> t.tanh()
            Expect.isTrue (phi.eq(byHand).all().item<bool> ()) "hook output = explicit forward"
            use both = FeatureMap.features model [ "act1"; "act2" ] x
            Expect.equal both.shape.[1] (int64 (h + wide)) "taps concatenate in order"

        test "batch norm features use running statistics (evaluation mode) and training mode is restored" {
            torch.random.manual_seed(3L) |> ignore
            use model =
                torch.nn.Sequential(
                    struct ("lin", torch.nn.Linear(4L, 6L, dtype = torch.float64) :> torch.nn.Module<torch.Tensor, torch.Tensor>),
                    struct ("bn", torch.nn.BatchNorm1d(6L, dtype = torch.float64) :> torch.nn.Module<torch.Tensor, torch.Tensor>))
            model.train ()
            use x = gaussian 5 10 4
            use a = FeatureMap.features model [ "bn" ] x
            use b = FeatureMap.features model [ "bn" ] (x.narrow(0L, 0L, 3L))
            Expect.isTrue (a.narrow(0L, 0L, 3L).eq(b).all().item<bool> ()) "h(x_i) does not depend on the batch"
            Expect.isTrue model.training "training flag restored"
        }

        test "a tap inside a module with its own dispose scope survives the forward pass" {
            torch.random.manual_seed(4L) |> ignore
            use block = new ScopedBlock()
            use x = gaussian 9 5 3
            use phi = FeatureMap.features block [ "lin" ] x
            Expect.sequenceEqual phi.shape [| 5L; 4L |] "shape"
            Expect.isTrue (torch.isfinite(phi).all().item<bool> ()) "values readable after forward"
        }

        test "unknown and empty taps give clear errors" {
            use model = mlp 1 3 2 8
            use x = gaussian 1 4 3
            Expect.throwsC (fun () -> FeatureMap.features model [ "nope" ] x |> ignore)
                (fun e -> Expect.stringContains e.Message "act2" "lists the layer names")
            Expect.throwsC (fun () -> FeatureMap.features model [] x |> ignore)
                (fun e -> Expect.stringContains e.Message "no taps" "says taps are empty")
        }

        // Usefulness (bound ≥ σ_min/2) is promised only where the certificate's a-priori error scale is small against
        // λ_min = σ_min²: the accumulation and Cholesky terms are ≈ (m' + n + 1)·u·Σ‖φ̃_i‖² together (docs/theory.md §3),
        // and with them below λ_min/16 the first shift c = 0.75·λ̂_min (λ̂_min a Rayleigh quotient, ≥ λ_min(fl G) ≥
        // λ_min − λ_min/16) leaves a bound ≥ (0.75·15/16 − 1/16)·λ_min ≈ 0.64·λ_min, σ ≥ 0.8·σ_min — provided that shift's
        // Cholesky succeeds (λ̂_min within ≈ 4/3 of λ_min(fl G) after 16 inverse iterations; at the next shift, 0.25·λ̂,
        // the bound would be ≈ 0.41·σ_min). Network features can be nearly singular (the 100× verification run drew
        // n = m = 19 with σ_min = 8.1e−7 and Σ‖φ̃‖² = 83.3: error terms 56 % of λ_min, bound 0.43·σ_min, sound).
        // Soundness is checked in every case.
        testPropertyCounting config 0.5 "streamed row-block certificate = in-memory certificate" <| fun counter (seed: int) ->
            let rng = System.Random seed
            let n = rng.Next(2, 25)
            use model = mlp seed 3 3 (n + rng.Next(0, 10))
            use x = gaussian seed n 3
            use phi = FeatureMap.featureMatrix model [ "act2" ] 7 x
            let subject = Generators.subject phi true
            let inMemory = Certify.certifyMatrix Certify.defaults subject phi
            let blockRows = 1 + abs seed % 6
            let count = (n + blockRows - 1) / blockRows
            let streamed =
                Certify.certifyRowBlocks Certify.defaults subject 0L blockRows count (fun b ->
                    use xb = x.narrow(0L, int64 (b * blockRows), int64 (min blockRows (n - b * blockRows)))
                    FeatureMap.features model [ "act2" ] xb)
            Expect.equal streamed.Verdict inMemory.Verdict (sprintf "verdicts: %s / %s" streamed.Reason inMemory.Reason)
            if inMemory.IsCertified then
                // Both bounds are sound for the same Φ̃ (their Gram matrices differ by rounding only).
                use phiTilde = HeuristicRank.withBiasColumn phi
                let sigmaMin = mathNetSigmaMin phiTilde
                let squaredNormSum = phiTilde.to_type(torch.float64).pow(scalar 2.0).sum().item<float> ()
                let errorScale = float (phiTilde.shape.[1] + int64 n + 1L) * FloatingPoint.unitRoundoff64 * squaredNormSum
                let wellResolved = sigmaMin * sigmaMin >= 16.0 * errorScale
                if wellResolved then counter.Hit()
                for c in [ streamed; inMemory ] do
                    Expect.isLessThanOrEqual c.SigmaMinLower (sigmaMin * (1.0 + 1e-9)) "sound"
                    if wellResolved then
                        Expect.isGreaterThanOrEqual c.SigmaMinLower (0.5 * sigmaMin)
                            (sprintf "useful: n = %d, m' = %d, σ_min %g, bound %g, shift %g (attempt %d), λ̂_min %g, errors: shift %g Cholesky %g accumulation %g, Σ‖φ̃‖² %g (scaled by 4^(−e))"
                                n phiTilde.shape.[1] sigmaMin c.SigmaMinLower c.Terms.Shift c.Terms.ShiftAttempts c.Terms.LambdaMinEstimate
                                c.Terms.ShiftRoundingError c.Terms.CholeskyBackwardError c.Terms.AccumulationError c.Terms.SquaredNormSumUpper)

        test "duplicate inputs are Refuted through the network" {
            use model = mlp 2 3 3 20
            use x = gaussian 2 6 3
            x.[4L] <- x.[1L]
            use phi = FeatureMap.featureMatrix model [ "act2" ] 4 x
            let streamed =
                Certify.certifyRowBlocks Certify.defaults (Generators.subject phi true) (1L <<< 20) 2 3 (fun b ->
                    use xb = x.narrow(0L, int64 (2 * b), 2L)
                    FeatureMap.features model [ "act2" ] xb)
            Expect.equal streamed.Verdict Verdict.Refuted streamed.Reason
        }
    ]
