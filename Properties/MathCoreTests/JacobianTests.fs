/// Jacobian form of EC (SPEC §2): autograd vs finite differences, J = I_c ⊗ Φ̃ for a linear
/// readout, EC_J ⇔ EC, alignment residual.
module ResearchFramework.Properties.MathCoreTests.JacobianTests

open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Properties
open ResearchFramework.Properties.MathCoreTests.Generators

let private config = Seeds.config 10

[<Tests>]
let tests =
    testSequenced <| testList "MathCore.Jacobian" [
        testPropertyWithConfig config "autograd Jacobian = central finite differences (float64)" <| fun (seed: int) ->
            let rng = System.Random seed
            let d, h, c, n = rng.Next(1, 4), rng.Next(1, 5), rng.Next(1, 3), rng.Next(1, 5)
            torch.random.manual_seed(int64 seed) |> ignore
            use model =
                torch.nn.Sequential(
                    struct ("l1", torch.nn.Linear(int64 d, int64 h, dtype = torch.float64) :> torch.nn.Module<torch.Tensor, torch.Tensor>),
                    struct ("a1", torch.nn.Softplus() :> torch.nn.Module<torch.Tensor, torch.Tensor>),
                    struct ("l2", torch.nn.Linear(int64 h, int64 c, dtype = torch.float64) :> torch.nn.Module<torch.Tensor, torch.Tensor>))
            use x = gaussian seed n d
            let block = Jacobian.parameterBlock model [ "l1"; "l2.weight" ]
            use ja = Jacobian.autograd model block x
            use jf = Jacobian.finiteDifference model block 1e-6 x
            Expect.sequenceEqual ja.shape jf.shape "shapes nc × |P|"
            let a = ja.flatten().data<float>().ToArray()
            let f = jf.flatten().data<float>().ToArray()
            Tolerance.expectAllClose (Tolerance.finiteDifference Tolerance.Float64) a f "J autograd vs FD"

        testPropertyWithConfig config "linear readout: J_P = I_c ⊗ Φ̃ exactly (after SPEC's vec ordering), EC_J ⇔ EC" <| fun (seed: int) ->
            let rng = System.Random seed
            let n, m, c = rng.Next(1, 7), rng.Next(1, 8), rng.Next(1, 4)
            torch.random.manual_seed(int64 seed) |> ignore
            use readout = torch.nn.Linear(int64 m, int64 c, dtype = torch.float64)
            use phi = gaussian seed n m
            let block = Jacobian.parameterBlock readout [ "weight"; "bias" ]
            use j = Jacobian.autograd readout block phi
            use tilde = HeuristicRank.withBiasColumn phi
            // SPEC orders vec f output-major (k·n + i) and P as [V_k·, b_k] per output k.
            use expected = torch.kron(torch.eye(int64 c, dtype = torch.float64), tilde)
            use reordered = torch.zeros([| int64 (n * c); int64 (c * (m + 1)) |], dtype = torch.float64)
            for i in 0 .. n - 1 do
                for k in 0 .. c - 1 do
                    for k' in 0 .. c - 1 do
                        for col in 0 .. m do
                            let source = if col < m then k' * m + col else c * m + k'
                            reordered.[int64 (k * n + i), int64 (k' * (m + 1) + col)] <- j.[int64 (i * c + k), int64 source]
            Expect.isTrue (reordered.eq(expected).all().item<bool> ()) "J = I_c ⊗ Φ̃ bit for bit"
            let rankJ = HeuristicRank.rankTorch torch.float64 j
            let rankPhi = HeuristicRank.rankTorch torch.float64 tilde
            Expect.equal (rankJ = n * c) (rankPhi = n) "EC_J ⇔ EC"

        test "alignment residual: 0 for targets in Col(J), positive outside" {
            use j = ofRank 4 6 3 3
            use inside = j.mm(gaussian 5 3 1)
            Expect.isLessThan (Jacobian.alignmentResidual j inside) 1e-12 "vec Y ∈ Col(J)"
            use outside = gaussian 6 6 1
            Expect.isGreaterThan (Jacobian.alignmentResidual j outside) 1e-3 "generic vec Y ∉ Col(J) of rank 3 < 6"
            use k = Jacobian.restrictedNtk j
            Expect.sequenceEqual k.shape [| 6L; 6L |] "K_P = J Jᵀ is nc × nc"
            Expect.throwsT<System.ArgumentException> (fun () -> Jacobian.alignmentResidual j (gaussian 1 5 1) |> ignore) "mismatched vec Y"
        }

        test "a parameter block that names nothing is an error" {
            use lin = torch.nn.Linear(2L, 2L)
            Expect.throwsC (fun () -> Jacobian.parameterBlock lin [ "head" ] |> ignore)
                (fun e -> Expect.stringContains e.Message "weight" "lists the parameters")
        }
    ]
