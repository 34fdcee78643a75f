/// Certify any model: a network defined here (not one of the repository's), certified through the public
/// entry point, agrees with the certificate of its materialised feature matrix, and reports progress.
module ResearchFramework.Properties.MathCoreTests.ModelCertificateTests

open System
open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Properties


[<Tests>]
let tests =
    testSequenced <| testList "MathCore.ModelCertificate" [
        testPropertyWithConfig (Seeds.config 6) "any module through the tiled engine (any batching, any tile size): the verdict and bounds of its materialised Φ" <| fun (seed: int) ->
            let rng = Random seed
            let n = rng.Next(5, 16)
            let batchSize = rng.Next(1, n + 1)
            let tile = rng.Next(1, n + 3)
            use model = TestSupport.tanhNetwork seed
            use gen = new torch.Generator(uint64 (abs seed) + 1UL)
            use x = torch.randn([| int64 n; 3L |], dtype = torch.float64, generator = gen)
            let count = (n + batchSize - 1) / batchSize
            let batch = Func<int, torch.Tensor>(fun i -> x.narrow(0L, int64 (i * batchSize), int64 (min batchSize (n - i * batchSize))))
            let settings = { Tiled.defaults with TileSize = tile; RunFingerprint = "model test" }
            let c = ModelCertificate.CertifyTiled(model, [ "hidden" ], count, batch, true, "x", 1L <<< 20, null, Certify.defaults, settings)
            use phi = FeatureMap.featureMatrix model [ "hidden" ] n x
            let reference = Certify.certifyMatrix Certify.defaults (Generators.subject phi true) phi
            Expect.stringContains c.Method "tiles" "the tiled engine ran"
            Expect.equal c.Verdict reference.Verdict (sprintf "n=%d batch=%d tile=%d: %s | %s" n batchSize tile c.Reason reference.Reason)
            Tolerance.expectClose { absolute = 0.0; relative = 1e-6 } c.SigmaMinLower reference.SigmaMinLower "σ_min bound (tiles vs dense)"
        testPropertyWithConfig (Seeds.config 6) "any module, any batching: the same verdict and bounds as certifying its materialised Φ (in-memory route)" <| fun (seed: int) ->
            let rng = Random seed
            let n = rng.Next(5, 16)
            let batchSize = rng.Next(1, n + 1)
            use model = TestSupport.tanhNetwork seed
            use gen = new torch.Generator(uint64 (abs seed) + 1UL)
            use x = torch.randn([| int64 n; 3L |], dtype = torch.float64, generator = gen)
            let reports = Collections.Generic.List<CertificationProgress>()
            let c = ModelCertificate.Certify(model, [ "hidden" ], TestDevice.onDevice x, batchSize, true, Action<CertificationProgress>(reports.Add))
            use phi = FeatureMap.featureMatrix model [ "hidden" ] n x
            let reference = Certify.certifyMatrix Certify.defaults (Generators.subject phi true) phi
            Expect.equal c.Verdict reference.Verdict (sprintf "n=%d batch=%d: %s | %s" n batchSize c.Reason reference.Reason)
            Expect.equal (c.Subject.Rows, c.Subject.Features, c.Subject.WithBias) (n, 40, true) "subject"
            Expect.equal c.Subject.Taps [| "hidden" |] "taps recorded"
            Expect.isTrue c.IsCertified (sprintf "n = %d ≤ 15 generic tanh features of width 40: EC certified (%s)" n c.Reason)
            Tolerance.expectClose { absolute = 0.0; relative = 1e-6 } c.SigmaMinLower reference.SigmaMinLower "σ_min bound (Gram by row blocks vs column blocks)"
            Expect.equal reports.[0].Stage "features" "progress starts with the features"
            Expect.equal (Seq.last reports).Stage "certified" "and ends certified"
            let steps = reports |> Seq.filter (fun r -> r.Stage = "features") |> Seq.map (fun r -> r.Done) |> List.ofSeq
            Expect.equal steps (List.sort steps) "progress never goes back"

        testPropertyWithConfig (Seeds.config 4) "Jacobian form for P = the readout: J_P = I_c ⊗ Φ̃, so EC_J has the verdict of EC at the hidden tap; alignment 0 under EC" <| fun (seed: int) ->
            let n = Random(seed).Next(3, 12)
            use model = TestSupport.tanhNetwork seed
            use gen = new torch.Generator(uint64 (abs seed) + 2UL)
            use x = torch.randn([| int64 n; 3L |], dtype = torch.float64, generator = gen)
            use y = torch.randn([| int64 n; 2L |], dtype = torch.float64, generator = gen)
            let ec = ModelCertificate.Certify(model, [ "hidden" ], x, n, true, null)
            let ecJ = ModelCertificate.CertifyJacobian(model, [ "fc2" ], x, Certify.defaults)
            Expect.equal (ecJ.Subject.Rows, ecJ.Subject.Features) (2 * n, 2 * 41) "J_P is nc × |P|"
            Expect.equal ecJ.Verdict ec.Verdict (sprintf "EC_J ⇔ EC: %s | %s" ecJ.Reason ec.Reason)
            Expect.isTrue ecJ.IsCertified "certified (n ≤ 11 generic features)"
            Expect.isLessThan (ModelCertificate.Alignment(model, [ "fc2" ], x, y)) 1e-8 "every target is reachable by the readout"

        test "the C# example (examples/CertifyYourModel: a network of its own, certified through the public API) runs: Certified, exit 0" {
            let exe = IO.Path.Combine(TestSupport.repositoryRoot (), "examples", "CertifyYourModel", "bin", TestSupport.buildConfiguration (), TestSupport.targetFolder (), "CertifyYourModel")
            Expect.isTrue (IO.File.Exists exe) (exe + " is built with the solution")
            let code, out, err = TestSupport.runProcess exe [] null [] 60000
            Expect.equal code 0 (out + err)
            Expect.stringContains out "verdict: Certified" "certified"
            Expect.stringContains out "Jacobian form (P = output layer): Certified" "and in Jacobian form"
            Expect.stringContains out "certified: 1/1" "with progress"
        }

        test "bad input: no batches, a batch larger than the first, a tap that does not exist" {
            use model = TestSupport.tanhNetwork 1
            let batch = Func<int, torch.Tensor>(fun i -> torch.zeros([| (if i = 0 then 2L else 3L); 3L |], dtype = torch.float64))
            Expect.throwsT<ArgumentException> (fun () -> ModelCertificate.Certify(model, [ "hidden" ], 0, batch) |> ignore) "no batches"
            Expect.throwsT<ArgumentException> (fun () -> ModelCertificate.Certify(model, [ "hidden" ], 2, batch) |> ignore) "last batch larger"
            let one = Func<int, torch.Tensor>(fun _ -> torch.zeros([| 2L; 3L |], dtype = torch.float64))
            let e = Expect.throwsC (fun () -> ModelCertificate.Certify(model, [ "nope" ], 1, one) |> ignore) id
            Expect.stringContains e.Message "no layer named 'nope'" "names the tap and lists the layers"
        }
    ]
