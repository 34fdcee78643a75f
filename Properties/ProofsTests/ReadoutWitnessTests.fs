/// Lemma 1: on Certified Φ̃ the minimum-norm readout reaches every target within the bound
/// derived from the certificate's σ_min.
module ResearchFramework.Properties.ProofsTests.ReadoutWitnessTests

open Expecto
open ResearchFramework.MathCore
open ResearchFramework.Proofs.Network
open ResearchFramework.Proofs.FullyConnected
open ResearchFramework.Proofs.ReadoutWitness
open ResearchFramework.Properties.ProofsTests.FullyConnectedTests

let private config = ResearchFramework.Properties.Seeds.config (stressTests 20)

[<Tests>]
let tests =
    testSequenced <| testList "Proofs.Lemma1" [
        testPropertyWithConfig config "certified Φ̃: V̂ attains Z within the certificate's bound" <| fun (seed: int) ->
            let rng = System.Random seed
            let n = rng.Next(1, 81)
            let c = rng.Next(1, 5)
            let g = Gaussian seed
            // half the cases: a random Gaussian Φ; the other half: an FC witness
            let phiTilde, subjectPhi =
                if rng.Next 2 = 0 then
                    let phi = g.Matrix(n, n - 1 + rng.Next(0, 10))
                    withBias phi, phi
                else
                    let r = prove Tanh (randomInputs seed (max 2 n) 2) [ 2; max 2 n ] seed
                    r.PhiTilde, features r.Network (randomInputs seed (max 2 n) 2)
            let rows = Array2D.length1 subjectPhi
            let fc = certifyFeatures (ExpressivitySubject.OfMatrix("lemma1", rows, Array2D.length2 subjectPhi, true)) subjectPhi
            Expect.equal fc.Certificate.Verdict Verdict.Certified fc.Certificate.Reason
            let z = g.Matrix(rows, c)
            let sol = solveCertified fc.Certificate fc.SigmaMinLower phiTilde z
            Expect.isTrue sol.Holds (sprintf "n=%d: residual ≤ %g vs bound %g" rows sol.ResidualUpper sol.ResidualBound)
            Expect.isTrue (sol.ComputedResidual <= sol.ResidualUpper) "ρ bounds the computed residual"
            let s = fc.SigmaMinLower
            Expect.isTrue (sol.DistanceToExact <= FloatingPoint.up (sol.ResidualBound / s) * (1.0 + 1e-12))
                (sprintf "‖V* − V̂‖ ≤ ρ/s = %g ≤ B/s = %g" sol.DistanceToExact (sol.ResidualBound / s))
            let vNorm = sqrt (sol.V |> Seq.cast<float> |> Seq.sumBy (fun v -> v * v))
            let kappa = frobeniusUpper fc.Certificate / s
            Expect.isTrue (sol.DistanceToExact <= 1e-9 * kappa * (1.0 + vNorm))
                (sprintf "relative distance to V*: %g vs ‖V̂‖ %g, κ ≤ %g" sol.DistanceToExact vNorm kappa)

        test "refuses a non-certified Φ̃" {
            let phi = Array2D.init 5 2 (fun i j -> float (i + j))
            let fc = certifyFeatures (ExpressivitySubject.OfMatrix("lemma1", 5, 2, true)) phi
            Expect.equal fc.Certificate.Verdict Verdict.Refuted "m + 1 < n"
            Expect.throwsT<System.ArgumentException> (fun () -> solveCertified fc.Certificate 1.0 (withBias phi) (Array2D.zeroCreate 5 1) |> ignore) "refused"
        }
    ]
