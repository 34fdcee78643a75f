/// The SPEC §4 per-step bound, checked on synthetic TorchSharp trajectories (frozen and damped
/// moving body), and deliberately violating trajectories that the checker must reject.
module ResearchFramework.Properties.ProofsTests.ConvergenceTests

open Expecto
open ResearchFramework.MathCore
open ResearchFramework.Proofs.Network
open ResearchFramework.Proofs.FullyConnected
open ResearchFramework.Proofs.ConvergenceCheck

/// A certified sigmoid witness (n = 24) and random targets (c = 3).
let private setup () =
    let x = randomInputs 21 24 3
    let r = prove Sigmoid x [ 3; 24 ] 21
    Expect.equal r.Certificate.Verdict Verdict.Certified r.Certificate.Reason
    let y = (Gaussian 22).Matrix(24, 3)
    r, y

let private run (r: FcResult) y etaFraction bodyStep steps =
    readoutGradientDescent r.PhiTilde y r.CertifiedSigmaMinLower r.Certificate.SigmaMaxUpper etaFraction bodyStep steps 23

let private config =
    ResearchFramework.Properties.Seeds.config (ResearchFramework.Properties.ProofsTests.FullyConnectedTests.stressTests 8)

[<Tests>]
let tests =
    testSequenced <| testList "Proofs.Convergence" [
        testPropertyWithConfig config "random certified witnesses, targets and damped bodies satisfy the bound" <| fun (seed: int) ->
            let rng = System.Random seed
            let act = [| Tanh; Sigmoid |].[rng.Next 2]
            let n = rng.Next(2, 41)
            let c = rng.Next(1, 4)
            let x = randomInputs seed n (rng.Next(1, 4))
            let r = prove act x [ rng.Next(1, 4); n - 1 + rng.Next(0, 4) ] seed
            Expect.equal r.Certificate.Verdict Verdict.Certified r.Certificate.Reason
            let y = (Gaussian (seed + 1)).Matrix(n, c)
            let rho = rng.NextDouble() * 0.3 * r.CertifiedSigmaMinLower
            let tr = readoutGradientDescent r.PhiTilde y r.CertifiedSigmaMinLower r.Certificate.SigmaMaxUpper 1.0 rho 150 seed
            let rep = check defaults tr
            Expect.isTrue rep.Ok (sprintf "%s n=%d ρ=%g: %A" act.Name n rho rep.Reasons)
            Expect.isTrue (sqrt tr.Loss.[150] <= rep.FinalBound * (1.0 + 1e-9) + 1e-14) "√L_T ≤ recursion bound"

        test "frozen body: GD on the readout satisfies the bound with d_t = 0" {
            let r, y = setup ()
            let tr = run r y 1.0 0.0 400
            let rep = check defaults tr
            Expect.isTrue rep.Ok (sprintf "%A" rep.Reasons)
            Expect.isTrue (rep.Forcing |> Array.forall ((=) 0.0)) "d_t = 0"
            Expect.isTrue (tr.Loss.[400] < tr.Loss.[0]) "the loss decreases"
            Expect.isTrue (sqrt tr.Loss.[400] <= rep.FinalBound * (1.0 + 1e-9)) "√L_T ≤ the recursion's bound"
        }

        test "damped moving body: the bound holds with summable d_t > 0" {
            let r, y = setup ()
            let tr = run r y 1.0 (0.2 * r.CertifiedSigmaMinLower) 400
            let rep = check defaults tr
            Expect.isTrue rep.Ok (sprintf "%A" rep.Reasons)
            Expect.isTrue (rep.Forcing |> Array.exists (fun d -> d > 0.0)) "d_t > 0"
            Expect.isTrue rep.Summable "summable"
            Expect.isTrue (rep.InfiniteHorizonForcingBound < infinity) "finite envelope bound"
        }

        test "rejects a step size above n/σ_max² (the loss blows up)" {
            let r, y = setup ()
            let tr = run r y 2.5 0.0 200
            let rep = check defaults tr
            Expect.isFalse rep.Ok "rejected"
            Expect.isNonEmpty rep.StepSizeViolations "η too large"
        }

        test "rejects an overstated σ_min lower bound (the claimed rate is not attained)" {
            let r, y = setup ()
            let tr = run r y 1.0 0.0 200
            let fake = { tr with SigmaMinLower = tr.SigmaMaxUpper |> Array.map (fun s -> 0.9 * s) }
            let rep = check defaults fake
            Expect.isFalse rep.Ok "rejected"
            Expect.isNonEmpty rep.Violations "per-step bound fails"
        }

        test "rejects a trajectory whose loss does not contract" {
            let r, y = setup ()
            let tr = run r y 1.0 0.0 50
            let flat = { tr with Loss = Array.create tr.Loss.Length tr.Loss.[0] }
            let rep = check defaults flat
            Expect.isFalse rep.Ok "rejected"
            Expect.equal rep.Violations.Length 50 "every step violates"
        }

        test "rejects non-summable forcing (undamped body)" {
            let r, y = setup ()
            let tr = run r y 1.0 (0.2 * r.CertifiedSigmaMinLower) 200
            let undamped = { tr with Damping = Array.create tr.Steps 1.0 }
            let rep = check defaults undamped
            Expect.isFalse rep.Summable (sprintf "tail ratio %g" rep.TailRatio)
            Expect.isFalse rep.Ok "rejected"
        }

        test "rejects malformed records" {
            let r, y = setup ()
            let tr = run r y 1.0 0.0 10
            Expect.throwsT<System.ArgumentException> (fun () -> check defaults { tr with Damping = [| 1.0 |] } |> ignore) "lengths"
            let rep = check defaults { tr with SigmaMinLower = Array.create 10 0.0 }
            Expect.isNonEmpty rep.InvalidSteps "s_t = 0"
            Expect.isFalse rep.Ok "rejected"
        }
    ]
