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

        test "a Gram of more than one 512-row panel summed in products of 1 and 2 columns (Add blocks of 3) is the exact integer Gram (n = 1100)" {
            use gen = new torch.Generator(11UL)
            use phi = torch.randint(-50L, 50L, [| 1100L; 5L |], dtype = torch.float32, generator = gen)
            use whole = torch.cat([| phi.``to``(torch.float64); torch.ones([| 1100L; 1L |], dtype = torch.float64) |], 1L)
            use exact = whole.mm(whole.t())
            for chunk in [ 1; 2 ] do
                let acc = Gram.ColumnBlockAccumulator(1100, torch.CPU, chunk)
                for start in 0 .. 3 .. 4 do
                    use block = phi.narrow(1L, int64 start, int64 (min 3 (5 - start)))
                    acc.Add block
                acc.AddBiasColumn()
                use g = acc.Finish()
                Expect.isTrue (use same = g.Gram.eq(exact).all() in same.item<bool> ()) (sprintf "products of %d column(s): every panel of the lower triangle added" chunk)
                Expect.equal g.AccumulationDepth (min 6 (chunk + (5 + chunk - 1) / chunk - 1 + 1)) "h"
        }

        testPropertyWithConfig config "streamed = one-shot within the a-priori bound on real inputs" <| fun (seed: int) (block: int) ->
            let n, m, _ = shape seed
            use phi = gaussian seed n m
            use streamed = Gram.ofMatrix (1 + abs block % m) false phi
            use oneShot = Gram.ofMatrix m false phi
            let diff = streamed.Gram.sub(oneShot.Gram).abs().max().item<float> ()
            Expect.isLessThanOrEqual diff (streamed.AccumulationErrorBound + oneShot.AccumulationErrorBound) "|streamed − one-shot| ≤ E_streamed + E_one-shot"

        testPropertyWithConfig config "row blocks give the same Gram as column blocks within the bound" <| fun (seed: int) ->
            let n, m, _ = shape seed
            use phi = gaussian seed n m
            let rows = 1 + abs seed % 7
            let count = (n + rows - 1) / rows
            let chunk = 1 + abs (seed / 7) % (m + 2)
            use byRows = Gram.ofRowBlocks (if seed % 2 = 0 then 0L else 1L <<< 30) true chunk rows count (fun b ->
                             phi.narrow(0L, int64 (b * rows), int64 (min rows (n - b * rows))).clone())
            use byCols = Gram.ofMatrix 16 true phi
            Expect.equal byRows.AccumulationDepth (Gram.accumulationDepth m true chunk) "row blocks: h of products of chunk columns"
            Expect.equal byCols.AccumulationDepth (Gram.accumulationDepth m true 16) "column blocks: h of products of 16 columns"
            let diff = byRows.Gram.sub(byCols.Gram).abs().max().item<float> ()
            Expect.isLessThanOrEqual diff (byRows.AccumulationErrorBound + byCols.AccumulationErrorBound) "row-block vs column-block"
            Expect.equal byRows.Rows n "rows"

        test "the dense Gram is bit for bit its products of c columns formed apart and added in order (+ bias), whatever blocks Add is given, and within γ_h (h = c + ⌈m/c⌉ − 1) on sums a sequential kernel rounds once per term" {
            // The order h counts, structurally (a single accumulation inside the BLAS with β = 1, or products cut by the
            // Add blocks instead of the stream's columns, would round differently; no bound on |error| could tell):
            // products of 600 columns (beyond OpenBLAS's panel depth), a short last product of 137, on both backends; the
            // stream fed in Add blocks of 600 (one per product), 250 (two or three pieces per product, β = 1 after the
            // first) and 1000 (blocks wider than a product, cut at its boundaries). The reference cuts the columns at the
            // union of both boundaries and replays the order: product 0 in the Gram, each later one in a zeroed buffer
            // (β = 0 on its first piece, β = 1 after), its lower triangle added to the Gram when the next one starts.
            let backends = availableBackends ()
            let c = 600
            let m = 4 * c + 137
            use phi = gaussian 5 7 m
            let lowerAdd (part: torch.Tensor) (target: torch.Tensor) =
                use sum = (use a = target.tril() in use b = part.tril() in a.add(b))
                target.copy_(sum) |> ignore
            for backend in backends do
                NativeBlas.useBackend backend (fun () ->
                    for w in [ 600; 250; 1000 ] do
                        use reference = torch.zeros([| 7L; 7L |], dtype = torch.float64)
                        use part = torch.zeros([| 7L; 7L |], dtype = torch.float64)
                        let cuts = List.sort (List.distinct ([ 0 .. c .. m - 1 ] @ [ 0 .. w .. m - 1 ] @ [ m ]))
                        for a, b in List.pairwise cuts do
                            use segment = phi.narrow(1L, int64 a, int64 (b - a))
                            if a < c then NativeBlas.syrkLower 1.0 segment (if a = 0 then 0.0 else 1.0) reference
                            elif a % c = 0 then
                                if a > c then lowerAdd part reference
                                NativeBlas.syrkLower 1.0 segment 0.0 part
                            else NativeBlas.syrkLower 1.0 segment 1.0 part
                        lowerAdd part reference
                        NativeBlas.mirrorLower reference
                        reference.add_(scalar 1.0) |> ignore
                        let acc = Gram.ColumnBlockAccumulator(7, torch.CPU, c)
                        for start in 0 .. w .. m - 1 do
                            use block = phi.narrow(1L, int64 start, int64 (min w (m - start)))
                            acc.Add block
                        acc.AddBiasColumn()
                        use streamed = acc.Finish()
                        Expect.isTrue (use same = streamed.Gram.eq(reference).all() in same.item<bool> ())
                            (sprintf "%A, Add blocks of %d: Gram = Σ_q (products of %d columns formed apart), added in order, + bias, bit for bit" backend w c)
                        Expect.equal streamed.AccumulationDepth (600 + 5 - 1 + 1) (sprintf "%A, blocks of %d: h = 600 + 5 − 1 + 1, whatever the blocks" backend w)
                    use byProducts = Gram.ofMatrix c true phi
                    use again = (let acc = Gram.ColumnBlockAccumulator(7, torch.CPU, c) in acc.Add phi; acc.AddBiasColumn(); acc.Finish())
                    Expect.isTrue (use same = byProducts.Gram.eq(again.Gram).all() in same.item<bool> ()) (sprintf "%A: ofMatrix = the accumulator fed Φ whole" backend))
            // Sums a sequential kernel rounds once per term (`adversarialRows`): exact G_xy = 1 + (c − 1 + ⌈m/c⌉ − 1)·u.
            let c, products = 64, 40
            let rows, lost = adversarialRows c products
            use rows = rows
            for backend in backends do
                use g = NativeBlas.useBackend backend (fun () -> Gram.ofMatrix c false rows)
                Expect.equal g.AccumulationDepth (c + products - 1) "h"
                let value = g.Gram.[1L, 0L].item<float> ()
                let error = abs ((value - 1.0) - float lost * FloatingPoint.unitRoundoff64)
                let bound = FloatingPoint.gamma FloatingPoint.unitRoundoff64 g.AccumulationDepth * (1.0 + float lost * FloatingPoint.unitRoundoff64)
                Expect.isLessThanOrEqual error bound (sprintf "%A: |fl G_xy − G_xy| = %.3g·u ≤ γ_%d·Σ|x_k y_k|" backend (error / FloatingPoint.unitRoundoff64) g.AccumulationDepth)
        }

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
