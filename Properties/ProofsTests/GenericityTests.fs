/// Lemma 2: perturbations of certified analytic networks stay Certified; ReLU networks have
/// open parameter regions of rank deficiency (exact), which is why the lemma assumes analyticity.
module ResearchFramework.Properties.ProofsTests.GenericityTests

open Expecto
open ResearchFramework.MathCore
open ResearchFramework.Proofs.Network
open ResearchFramework.Proofs.FullyConnected
open ResearchFramework.Proofs.Genericity
open ResearchFramework.Properties.ProofsTests.FullyConnectedTests

let private config = ResearchFramework.Properties.Seeds.config (stressTests 10)

let private expectDeficient (c: ReluCounterexample) =
    let n = Array2D.length1 c.Inputs
    Expect.isTrue (c.Rank.RankUpper < n) (sprintf "%s: %s < n = %d" c.Description c.Rank.Reason n)
    Expect.notEqual c.Certificate.Verdict Verdict.Certified (c.Description + ": never Certified")
    Expect.isNonEmpty c.DeadUnits (c.Description + ": dead units")
    Expect.isTrue (c.Margin > 0.0) (c.Description + ": open region (margin > 0)")
    let heuristic = MathNet.Numerics.LinearAlgebra.Matrix<float>.Build.DenseOfArray(withBias (features c.Network c.Inputs)).Rank()
    Expect.isTrue (heuristic <= c.Rank.RankUpper) (sprintf "%s: SVD rank %d ≤ exact bound %d" c.Description heuristic c.Rank.RankUpper)

[<Tests>]
let tests =
    testSequenced <| testList "Proofs.Genericity" [
        testPropertyWithConfig config "ω + εξ of a certified analytic witness is Certified in every trial" <| fun (seed: int) ->
            let rng = System.Random seed
            let act = [| Tanh; Sigmoid; Softplus |].[rng.Next 3]
            let n = if act = Softplus then rng.Next(2, 26) else rng.Next(2, 61)
            let d = rng.Next(1, 4)
            let widths = [ rng.Next(1, 4); rng.Next(1, 4); n - 1 + rng.Next(0, 3) ]
            let x = randomInputs seed n d
            let r = prove act x widths seed
            // softplus witnesses beyond the certifiable spread are covered by Proofs.FC only
            if mustCertify r then
                Expect.equal r.Certificate.Verdict Verdict.Certified "the unperturbed witness"
                // ε relative to the witness's separation ε₀ (see Genericity.relativeSeparation)
                let eps0 = relativeSeparation x (Option.get r.Witness)
                let epsilons = [ 1e-2; 1e-1; 1.0 ] |> List.map (fun k -> k * eps0)
                for t in perturbationTrials x r.Network epsilons 2 (seed + 1) do
                    let what = sprintf "%s n=%d ε=%g (ε₀=%g) trial %d" act.Name n t.Epsilon eps0 t.Trial
                    Expect.equal t.Certificate.Verdict Verdict.Certified (sprintf "%s: %s" what t.Certificate.Reason)
                    Expect.isTrue (t.SigmaMinLower <= t.SvdSigmaMin * (1.0 + 1e-12) + 1e-14) (what + ": sound vs SVD")

        test "ReLU: a dead width-1 bottleneck gives identical rows on an open region (Refuted)" {
            let c = deadBottleneck 25 3 30 7
            expectDeficient c
            Expect.equal c.Certificate.Verdict Verdict.Refuted c.Certificate.Reason
            Expect.equal c.Rank.RankUpper 1 "one distinct row"
            for p in perturbWithinMargin c 5 8 do
                expectDeficient p
                Expect.equal p.Certificate.Verdict Verdict.Refuted "still Refuted inside the region"
                Expect.equal p.DeadUnits c.DeadUnits "the same units stay dead"
        }

        test "ReLU: dead wide units leave exactly-zero columns, rank ≤ alive + 1 < n with m + 1 ≥ n" {
            let c = deadWideUnits 30 2 10 9
            expectDeficient c
            Expect.isTrue (c.Rank.NonZeroColumns <= 11) c.Rank.Reason
            for p in perturbWithinMargin c 5 10 do
                expectDeficient p
                Expect.equal p.DeadUnits c.DeadUnits "the same units stay dead"
        }

        test "analytic contrast: the same architecture with tanh is Certified" {
            let x = randomInputs 9 30 2
            let r = prove Tanh x [ 3; 29 ] 9
            Expect.equal r.Certificate.Verdict Verdict.Certified r.Certificate.Reason
        }
    ]
