/// Properties of the streamed float64 Gram accumulation (SPEC §3 step 1, §6).
module ResearchFramework.Properties.MathCoreTests.GramTests

open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Properties
open ResearchFramework.Properties.MathCoreTests.Generators

let private config = Seeds.config 30

[<Tests>]
let tests =
    testList "MathCore.Gram" [
        testPropertyWithConfig config "streamed in any block size = one-shot, bit for bit, on integer inputs" <| fun (seed: int) (block: int) ->
            let rng = System.Random seed
            let n, m = rng.Next(1, 30), rng.Next(1, 70)
            use gen = new torch.Generator(uint64 (abs seed))
            use phi = torch.randint(-50L, 50L, [| int64 n; int64 m |], dtype = torch.float32, generator = gen)
            use streamed = Gram.ofMatrix (1 + abs block % (m + 3)) true phi
            use oneShot = Gram.ofMatrix m true phi
            use whole = torch.cat([| phi.``to``(torch.float64); torch.ones([| int64 n; 1L |], dtype = torch.float64) |], 1L)
            use exact = whole.mm(whole.t())
            Expect.isTrue (streamed.Gram.eq(oneShot.Gram).all().item<bool> ()) "streamed = one-shot"
            Expect.isTrue (streamed.Gram.eq(exact).all().item<bool> ()) "= exact integer Gram"
            Expect.equal streamed.Columns (m + 1) "columns include the bias"

        testPropertyWithConfig config "streamed = one-shot within the a-priori bound on real inputs" <| fun (seed: int) (block: int) ->
            let n, m, _ = shape seed
            use phi = gaussian seed n m
            use streamed = Gram.ofMatrix (1 + abs block % m) false phi
            use oneShot = Gram.ofMatrix m false phi
            let diff = streamed.Gram.sub(oneShot.Gram).abs().max().item<float> ()
            Expect.isLessThanOrEqual diff (2.0 * streamed.AccumulationErrorBound) "|streamed − one-shot| ≤ 2E"

        testPropertyWithConfig config "row blocks give the same Gram as column blocks within the bound" <| fun (seed: int) ->
            let n, m, _ = shape seed
            use phi = gaussian seed n m
            let rows = 1 + abs seed % 7
            let count = (n + rows - 1) / rows
            use byRows = Gram.ofRowBlocks (if seed % 2 = 0 then 0L else 1L <<< 30) true rows count (fun b ->
                             phi.narrow(0L, int64 (b * rows), int64 (min rows (n - b * rows))).clone())
            use byCols = Gram.ofMatrix 16 true phi
            let diff = byRows.Gram.sub(byCols.Gram).abs().max().item<float> ()
            Expect.isLessThanOrEqual diff (2.0 * byCols.AccumulationErrorBound) "row-block vs column-block"
            Expect.equal byRows.Rows n "rows"

        testPropertyWithConfig config "the squared-norm bound covers tr G = Σ‖φ̃_i‖²" <| fun (seed: int) ->
            let n, m, _ = shape seed
            use phi = gaussian seed n m
            use g = Gram.ofMatrix 8 true phi
            let reference = (HeuristicRank.toMathNet phi).RowNorms(2.0) |> Seq.sumBy (fun r -> r * r + 1.0)
            Expect.isGreaterThanOrEqual g.SquaredNormSumUpper reference "upper bound ≥ MathNet trace"
            Tolerance.expectClose (Tolerance.stable Tolerance.Float64) g.SquaredNormSumUpper reference "and close to it"

        test "bad input gets a clear error" {
            use nanPhi = torch.tensor([| 1.0; nan; 2.0; 3.0 |]).reshape(2L, 2L)
            Expect.throwsC (fun () -> Gram.ofMatrix 2 false nanPhi |> ignore)
                (fun e -> Expect.stringContains e.Message "NaN" "names NaN")
            use infPhi = torch.tensor([| 1.0; infinity; 2.0; 3.0 |]).reshape(2L, 2L)
            Expect.throwsT<System.ArgumentException> (fun () -> Gram.ofMatrix 2 false infPhi |> ignore) "Inf"
            use empty = torch.zeros([| 0L; 3L |], dtype = torch.float64)
            Expect.throwsC (fun () -> Gram.ofMatrix 2 false empty |> ignore)
                (fun e -> Expect.stringContains e.Message "n = 0" "names n = 0")
            use tiny = torch.tensor([| 1.0; 1e-200 |]).reshape(1L, 2L)
            Expect.throwsC (fun () -> Gram.ofMatrix 2 false tiny |> ignore)
                (fun e -> Expect.stringContains e.Message "rescale" "asks to rescale")
            use ints = torch.ones([| 2L; 2L |], dtype = torch.int32)
            Expect.throwsT<System.ArgumentException> (fun () -> Gram.ofMatrix 2 false ints |> ignore) "integer dtype"
            let acc = Gram.ColumnBlockAccumulator(3, torch.CPU)
            use wrong = torch.ones([| 2L; 2L |], dtype = torch.float64)
            Expect.throwsC (fun () -> acc.Add wrong)
                (fun e -> Expect.stringContains e.Message "expected n = 3" "names the mismatch")
        }
    ]
