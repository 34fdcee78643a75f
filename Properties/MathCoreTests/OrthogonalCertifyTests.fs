/// Properties of the orthogonal certificate route (docs/theory.md §3, "Orthogonal route", issue #15):
/// σ_min(Φ̃) ≥ σ_min(Q̂)·σ_min(R̂) − ‖Φ̃ᵀ − Q̂R̂‖ for a float64 QR of Φ̃ᵀ. Every recorded term is checked in
/// exact rational arithmetic against the exact quantity it bounds (the exact Q̂, R̂, X the route used), and
/// recomputed from its definition; every Certified bound s is proved by Φ̃Φ̃ᵀ − s²I ≻ 0 exactly; exactly
/// singular matrices are never Certified.
module ResearchFramework.Properties.MathCoreTests.OrthogonalCertifyTests

open Expecto
open TorchSharp
open ResearchFramework.MathCore
open ResearchFramework.Properties
open ResearchFramework.Properties.MathCoreTests.Generators
open ResearchFramework.Properties.MathCoreTests.CertifyTests

let private config = Seeds.config 25

/// The terms as JSON (every float round-trips; NaN compares equal to NaN, unlike record equality).
let private termsJson (t: CertificateTerms) =
    let o = System.Text.Json.JsonSerializerOptions()
    o.NumberHandling <- System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals
    System.Text.Json.JsonSerializer.Serialize(t, o)

/// Options selecting one route.
let private routed (route: Certify.RouteChoice) = { Certify.defaults with Route = route }

/// Certificate by one route (on the test device).
let private certifyBy (route: Certify.RouteChoice) (withBias: bool) (phi: torch.Tensor) = certifyWith (routed route) withBias phi

/// Φ̃ on the CPU (float64, bias column of ones when asked).
let private tildeCpu (withBias: bool) (phi: torch.Tensor) =
    use p = phi.``to``(torch.float64).cpu()
    if withBias then torch.cat([| p; torch.ones([| p.shape.[0]; 1L |], dtype = torch.float64) |], 1L) else p.clone()

/// ‖M‖_F² exactly for a rational matrix.
let private frobeniusSquared (m: Exact.Q[,]) =
    let mutable acc = Exact.zero
    Array2D.iter (fun v -> acc <- Exact.add acc (Exact.mul v v)) m
    acc

/// Exact product of rational matrices.
let private matMul (a: Exact.Q[,]) (b: Exact.Q[,]) =
    let n, k, m = Array2D.length1 a, Array2D.length2 a, Array2D.length2 b
    Array2D.init n m (fun i j -> Seq.fold (fun acc l -> Exact.add acc (Exact.mul a.[i, l] b.[l, j])) Exact.zero (seq { 0 .. k - 1 }))

let private transpose (a: Exact.Q[,]) = Array2D.init (Array2D.length2 a) (Array2D.length1 a) (fun i j -> a.[j, i])

let private minusIdentity (a: Exact.Q[,]) = Array2D.mapi (fun i j v -> if i = j then Exact.sub v (Exact.ofInt 1) else v) a

/// ‖T‖_F of a CPU float64 tensor, in float64 (for recomputing a term from its definition; ≈ 1e-15 relative).
let private frobenius (t: torch.Tensor) = (use c = t.cpu() in c.data<float>().ToArray()) |> Array.sumBy (fun v -> v * v) |> sqrt

/// γ_k/(1 − γ_k) from its definition, as a float.
let private gammaRatio (k: int) = let g = Exact.gamma k in Exact.approx (Exact.div g (Exact.sub (Exact.ofInt 1) g))

/// Every orthogonal-route term of `c` checked against the exact quantity it bounds and recomputed from its
/// definition. A = 2^(−e)·Φ̃ᵀ is rebuilt (exactly), the factors recomputed on the test device (the route is
/// deterministic: the recomputed terms equal the recorded ones) and taken as exact rationals.
let expectOrthogonalTermsExact (what: string) (withBias: bool) (phi: torch.Tensor) (c: Certificate) =
    let t = c.Terms
    let e = t.ScaleExponent
    let info = sprintf "%s: verdict %O (%s), e = %d, terms %A" what c.Verdict c.Reason e t
    Expect.equal c.Route CertificateRoute.Orthogonal ("the orthogonal route decided. " + info)
    use tilde = tildeCpu withBias phi
    use aCpu = tilde.mul(scalar (System.Math.ScaleB(1.0, -e))).t().contiguous()
    Expect.isTrue (use back = aCpu.t().mul(scalar (System.Math.ScaleB(1.0, e))) in back.eq(tilde).all().item<bool> ()) ("A = 2^(−e)Φ̃ᵀ is exact. " + info)
    use a = TestDevice.onDevice aCpu
    let q, r, x = Certify.orthogonalFactors a
    use q = q
    use r = r
    use x = x
    let again = Certify.orthogonalTermsOf a q r x t
    Expect.equal (termsJson again) (termsJson t) ("the route is deterministic: the same factors give the recorded terms. " + info)
    use qc = q.cpu()
    use rc = r.cpu()
    use xc = x.cpu()
    let qq, rq, aq = Exact.ofMatrix qc, Exact.ofMatrix rc, Exact.ofMatrix aCpu
    let sq (v: float) = let w = Exact.ofFloat v in Exact.mul w w
    // Each upper bound ≥ the exact norm it bounds (compared squared, both sides non-negative).
    let eExact = frobeniusSquared (Array2D.mapi (fun i j v -> Exact.sub aq.[i, j] v) (matMul qq rq))
    Expect.isTrue (Exact.le eExact (sq t.QrResidualUpper)) (sprintf "‖A − Q̂R̂‖_F ≈ %.3g ≤ QrResidualUpper exactly. %s" (sqrt (Exact.approx eExact)) info)
    let fExact = frobeniusSquared (minusIdentity (matMul (transpose qq) qq))
    Expect.isTrue (Exact.le fExact (sq t.QrOrthogonalityUpper)) (sprintf "‖Q̂ᵀQ̂ − I‖_F ≈ %.3g ≤ QrOrthogonalityUpper exactly. %s" (sqrt (Exact.approx fExact)) info)
    // X = R̂⁻¹ overflows when R̂ is numerically singular (a rank-deficient Φ̃): then no rational X exists, and the route
    // must have recorded an infinite bound and decided nothing (regression: seed 1045610023, n = 5, m = 7).
    if not (use finite = xc.isfinite().all() in finite.item<bool> ()) then
        Expect.isTrue (System.Double.IsPositiveInfinity t.QrInverseNormUpper && System.Double.IsPositiveInfinity t.QrInverseResidualUpper)
            ("a non-finite X gives infinite ‖X‖ and ‖R̂X − I‖ bounds. " + info)
        Expect.notEqual c.Verdict Verdict.Certified ("a non-finite X never certifies. " + info)
    else
        let xq = Exact.ofMatrix xc
        let nExact = frobeniusSquared (minusIdentity (matMul rq xq))
        Expect.isTrue (Exact.le nExact (sq t.QrInverseResidualUpper)) (sprintf "‖R̂X − I‖_F ≈ %.3g ≤ QrInverseResidualUpper exactly. %s" (sqrt (Exact.approx nExact)) info)
        // ‖X‖₂ < QrInverseNormUpper exactly: b²I − XᵀX ≻ 0.
        let neg (v: Exact.Q) = Exact.sub Exact.zero v
        Expect.isTrue (Exact.shiftedPositiveDefinite (Array2D.map neg (matMul (transpose xq) xq)) (neg (sq t.QrInverseNormUpper))) ("‖X‖₂ < QrInverseNormUpper exactly. " + info)
    // The derived bounds re-derived exactly from the recorded terms.
    let one = Exact.ofInt 1
    if t.QrQSigmaMinLower > 0.0 then
        Expect.isTrue (Exact.le (sq t.QrQSigmaMinLower) (Exact.sub one (Exact.ofFloat t.QrOrthogonalityUpper))) ("QrQSigmaMinLower² ≤ 1 − ‖F‖ exactly. " + info)
        Expect.isTrue (Exact.shiftedPositiveDefinite (matMul (transpose qq) qq) (sq t.QrQSigmaMinLower)) ("Q̂ᵀQ̂ − QrQSigmaMinLower²·I ≻ 0 exactly. " + info)
    if t.QrRSigmaMinLower > 0.0 then
        let bound = Exact.div (Exact.sub one (Exact.ofFloat t.QrInverseResidualUpper)) (Exact.ofFloat t.QrInverseNormUpper)
        Expect.isTrue (Exact.le (Exact.ofFloat t.QrRSigmaMinLower) bound) ("QrRSigmaMinLower ≤ (1 − ‖N‖)/‖X‖ exactly. " + info)
        Expect.isTrue (Exact.le (Exact.relax bound -1e-12) (Exact.ofFloat t.QrRSigmaMinLower)) ("QrRSigmaMinLower within 1e-12 of (1 − ‖N‖)/‖X‖. " + info)
        Expect.isTrue (Exact.shiftedPositiveDefinite (matMul (transpose rq) rq) (sq t.QrRSigmaMinLower)) ("R̂ᵀR̂ − QrRSigmaMinLower²·I ≻ 0 exactly. " + info)
    let product = Exact.mul (Exact.ofFloat t.QrQSigmaMinLower) (Exact.ofFloat t.QrRSigmaMinLower)
    let sigma = Exact.sub product (Exact.ofFloat t.QrResidualUpper)
    if System.Double.IsFinite t.QrSigmaMinLower then
        Expect.isTrue (Exact.le (Exact.ofFloat t.QrSigmaMinLower) sigma) ("QrSigmaMinLower ≤ σ_min(Q̂)·σ_min(R̂) − ‖E‖ exactly. " + info)
        let slack = Exact.mul (Exact.ofFloat 1e-12) (Exact.add product (Exact.ofFloat t.QrResidualUpper))
        Expect.isTrue (Exact.le (Exact.sub sigma slack) (Exact.ofFloat t.QrSigmaMinLower)) ("QrSigmaMinLower within rounding of it. " + info)
    // Each residual bound recomputed from its definition (docs/theory.md §3): ‖fl R‖_F/(1 − u) + γ_k/(1 − γ_k)·‖·‖_F + entries·(k + 2)·2^(−1021).
    let u = FloatingPoint.unitRoundoff64
    let rows, n = int aCpu.shape.[0], int aCpu.shape.[1]
    let underflow (entries: int) (k: int) = float entries * float (k + 2) * System.Math.ScaleB(1.0, -1021)
    use eye = torch.eye(int64 n, dtype = torch.float64)
    use flE = a.sub(q.mm(r))
    use absQR = q.abs().mm(r.abs())
    let eFormula = frobenius flE / (1.0 - u) + gammaRatio n * frobenius absQR + underflow (rows * n) n
    use flF = q.t().mm(q).cpu().sub(eye)
    let qF = frobenius q
    let fFormula = frobenius flF / (1.0 - u) + gammaRatio rows * qF * qF + underflow (n * n) rows
    use flN = r.mm(x).cpu().sub(eye)
    use absRX = r.abs().mm(x.abs())
    let nFormula = frobenius flN / (1.0 - u) + gammaRatio n * frobenius absRX + underflow (n * n) n
    let within (recorded: float) (formula: float) (name: string) =
        if System.Double.IsFinite formula then
            Expect.isGreaterThanOrEqual recorded (formula * (1.0 - 1e-12)) (sprintf "%s %.17g ≥ its formula %.17g. %s" name recorded formula info)
            Expect.isLessThanOrEqual recorded (formula * (1.0 + 1e-12)) (sprintf "%s %.17g ≤ its formula %.17g·(1 + 1e-12). %s" name recorded formula info)
    within t.QrResidualUpper eFormula "QrResidualUpper"
    within t.QrOrthogonalityUpper fFormula "QrOrthogonalityUpper"
    within t.QrInverseResidualUpper nFormula "QrInverseResidualUpper"
    // min(‖X‖_F bound, verified ‖X‖₂ bound): never above the Frobenius formula.
    Expect.isLessThanOrEqual t.QrInverseNormUpper (frobenius x * (1.0 + 1e-12)) ("QrInverseNormUpper ≤ ‖X‖_F's bound. " + info)
    if c.Verdict = Verdict.Certified then
        Expect.isGreaterThan t.QrSigmaMinLower 0.0 ("Certified needs a positive bound. " + info)
        let s = Exact.ofFloat c.SigmaMinLower
        Expect.isTrue (Exact.le (Exact.mul s s) (Exact.scale2 (sq t.QrSigmaMinLower) (2 * e))) ("SigmaMinLower ≤ 2^e·QrSigmaMinLower exactly. " + info)
        Expect.isGreaterThanOrEqual c.SigmaMinLower (System.Math.ScaleB(t.QrSigmaMinLower, e) * (1.0 - 1e-12)) ("SigmaMinLower ≈ 2^e·QrSigmaMinLower. " + info)
    else Expect.equal c.SigmaMinLower 0.0 ("no σ_min bound unless Certified. " + info)

/// Both checks on one certificate: sound in exact arithmetic (any route) and, when the orthogonal route
/// decided, every one of its terms.
let private expectExact (what: string) (withBias: bool) (phi: torch.Tensor) (c: Certificate) =
    expectSoundExact what withBias phi c
    if c.Route = CertificateRoute.Orthogonal && c.Verdict <> Verdict.Refuted then expectOrthogonalTermsExact what withBias phi c

/// An 11 × 40 matrix with rows of norm ≈ 1 whose row 10 is row 0 + δ·g (g a unit Gaussian direction),
/// rounded to float64: σ_min ≈ δ/√2, σ_max ≈ 1.4.
let nearDuplicate (seed: int) (delta: float) : torch.Tensor =
    use scope = torch.NewDisposeScope()
    let g = gaussian seed 11 40
    let rows = g.div(g.square().sum(1L, keepdim = true).sqrt())
    let d = gaussian (seed + 1) 1 40
    let d = d.div(d.norm())
    rows.[10L] <- rows.[0L].add(d.[0L].mul(scalar delta))
    rows.MoveToOuterDisposeScope()

/// Products A·B of small integers (n × k times k × m, k ≤ n − 2): exact in float64, rank ≤ k < n − 1,
/// so singular with and without the bias column.
let private integerProduct (seed: int) (n: int) (k: int) (m: int) =
    let rng = System.Random seed
    let a = Array2D.init n k (fun _ _ -> float (rng.Next(-4, 5)))
    let b = Array2D.init k m (fun _ _ -> float (rng.Next(-4, 5)))
    torch.tensor(Array2D.init n m (fun i j -> Seq.sum (seq { for l in 0 .. k - 1 -> a.[i, l] * b.[l, j] })), dtype = torch.float64)

/// One case of the random-small-matrices property: every orthogonal-route term in exact rationals, never Certified above the truth.
let private smallMatrixCase (seed: int) =
    let rng = System.Random seed
    let n = rng.Next(2, 9)
    let m = rng.Next(n, 14)
    let withBias = rng.Next 2 = 0
    use phi =
        match abs seed % 3 with
        | 0 -> gaussian seed n m
        | 1 -> ofRank seed n m (rng.Next(1, n + 1))
        | _ ->
            use a = gaussian seed n m
            use w = gaussian (seed + 1) n 1
            use wn = w.div(w.norm())
            use p = wn.mm(wn.t())
            a.sub(p.mm(a).mul(scalar (1.0 - 10.0 ** -(float (rng.Next(4, 14))))))
    let what = sprintf "seed %d: n=%d m=%d bias=%b" seed n m withBias
    let ortho = certifyBy Certify.RouteChoice.Orthogonal withBias phi
    expectExact (what + " (Orthogonal)") withBias phi ortho
    let auto = certifyBy Certify.RouteChoice.Auto withBias phi
    expectExact (what + " (Auto)") withBias phi auto
    let gram = certifyBy Certify.RouteChoice.Gram withBias phi
    if gram.Verdict <> Verdict.Inconclusive then
        Expect.equal auto.Route CertificateRoute.Gram (what + ": Auto = Gram when Gram decides")
        Expect.equal auto.Verdict gram.Verdict (what + ": same verdict")

[<Tests>]
let tests =
    testList "MathCore.OrthogonalCertify" [
        test "near-duplicate rows 1e-4 … 1e-12 apart (11 × 40): Inconclusive on the Gram route from 1e-8 on, Certified by the orthogonal route, sound in exact arithmetic" {
            for delta in [ 1e-4; 1e-6; 1e-8; 1e-10; 1e-12 ] do
                use phi = nearDuplicate 15 delta
                for withBias in [ false; true ] do
                    let what = sprintf "δ = %g, bias %b" delta withBias
                    let gram = certifyBy Certify.RouteChoice.Gram withBias phi
                    expectSoundExact (what + " (Gram)") withBias phi gram
                    if delta <= 1e-8 then Expect.equal gram.Verdict Verdict.Inconclusive (sprintf "%s: the Gram route cannot decide (%s)" what gram.Reason)
                    let auto = certifyBy Certify.RouteChoice.Auto withBias phi
                    Expect.equal auto.Verdict Verdict.Certified (sprintf "%s: Auto certifies (%s)" what auto.Reason)
                    expectExact (what + " (Auto)") withBias phi auto
                    if gram.Verdict = Verdict.Inconclusive then
                        Expect.equal auto.Route CertificateRoute.Orthogonal (what + ": the orthogonal route decided")
                        Expect.equal auto.Terms.Shift gram.Terms.Shift (what + ": Auto keeps the Gram route's terms")
                        Expect.stringContains auto.Reason "float64 Gram route Inconclusive" (what + ": says the Gram route was Inconclusive")
                    // Useful: within a factor 4 of the true σ_min (MathNet SVD).
                    use tilde = tildeCpu withBias phi
                    let truth = mathNetSigmaMin tilde
                    Expect.isGreaterThanOrEqual auto.SigmaMinLower (truth / 4.0) (sprintf "%s: bound %.3g ≥ σ_min/4 = %.3g" what auto.SigmaMinLower (truth / 4.0))
                    let ortho = certifyBy Certify.RouteChoice.Orthogonal withBias phi
                    Expect.equal ortho.Verdict Verdict.Certified (sprintf "%s: Orthogonal alone certifies (%s)" what ortho.Reason)
                    Expect.equal ortho.Terms.Shift 0.0 (what + ": no Gram formed")
                    expectExact (what + " (Orthogonal)") withBias phi ortho
        }

        test "Hilbert matrices of order 2 … 12 (padded with 4 columns of x^k): sound in exact arithmetic on every route; the orthogonal route certifies further than the Gram route" {
            let mutable gramReach, orthoReach = 0, 0
            for n in 2 .. 12 do
                use h = hilbert n
                use pad = torch.tensor(Array2D.init n 4 (fun i k -> 1.0 / float (i + n + k + 1)), dtype = torch.float64)
                use phi = torch.cat([| h; pad |], 1L)
                for withBias in [ false; true ] do
                    let what = sprintf "Hilbert %d (+4 columns), bias %b" n withBias
                    let gram = certifyBy Certify.RouteChoice.Gram withBias phi
                    expectSoundExact (what + " (Gram)") withBias phi gram
                    let auto = certifyBy Certify.RouteChoice.Auto withBias phi
                    expectExact (what + " (Auto)") withBias phi auto
                    let ortho = certifyBy Certify.RouteChoice.Orthogonal withBias phi
                    expectExact (what + " (Orthogonal)") withBias phi ortho
                    Expect.notEqual auto.Verdict Verdict.Refuted (what + ": full rank is never Refuted")
                    if gram.IsCertified then Expect.isTrue auto.IsCertified (what + ": Auto keeps every Gram success")
                    if not withBias then
                        if gram.IsCertified then gramReach <- max gramReach n
                        if auto.IsCertified then orthoReach <- max orthoReach n
            Expect.isGreaterThanOrEqual orthoReach (gramReach + 3) (sprintf "the orthogonal route certifies Hilbert to order %d, the Gram route to %d" orthoReach gramReach)
        }

        test "prescribed singular values 1 … 1e-4 … 1e-14 (8 × 12): Certified by Auto down to 1e-13, sound everywhere" {
            for p in 4 .. 14 do
                use phi = withSingularValues (200 + p) 12 (Array.init 8 (fun i -> 10.0 ** (-(float p) * float i / 7.0)))
                for withBias in [ false; true ] do
                    let what = sprintf "σ from 1 to 1e-%d, bias %b" p withBias
                    let auto = certifyBy Certify.RouteChoice.Auto withBias phi
                    expectExact what withBias phi auto
                    if p <= 13 && not withBias then Expect.equal auto.Verdict Verdict.Certified (sprintf "%s: Certified (%s)" what auto.Reason)
        }

        test "exactly singular matrices are never Certified (duplicated rows, rank n − 1, integer products of rank ≤ n − 2), by any route; duplicates and zero rows are Refuted by the orthogonal route alone" {
            let cases =
                [ for seed in 1 .. 3 -> sprintf "rank n − 1, 6 × 8, seed %d" seed, rankDeficientByOne seed 6 8
                  for seed in 1 .. 3 -> sprintf "integer product 7 × 5 · 5 × 12, seed %d" seed, integerProduct seed 7 5 12
                  for seed in 1 .. 2 -> sprintf "integer product 10 × 3 · 3 × 30, seed %d" seed, integerProduct seed 10 3 30
                  yield "near-duplicate at δ = 0 (an exact duplicate row)", nearDuplicate 15 0.0 ]
            for name, phi in cases do
                use phi = phi
                for withBias in [ false; true ] do
                    for route in [ Certify.RouteChoice.Auto; Certify.RouteChoice.Orthogonal; Certify.RouteChoice.Gram ] do
                        let what = sprintf "%s, bias %b, %O" name withBias route
                        let c = certifyBy route withBias phi
                        Expect.notEqual c.Verdict Verdict.Certified (sprintf "%s: singular, never Certified (%s)" what c.Reason)
                        expectExact what withBias phi c
            use dup = nearDuplicate 15 0.0
            let c = certifyBy Certify.RouteChoice.Orthogonal true dup
            Expect.equal c.Verdict Verdict.Refuted c.Reason
            Expect.stringContains c.Reason "rows 0 and 10" "names the duplicate"
            Expect.equal c.Route CertificateRoute.Orthogonal "decided without a Gram"
            use zero = gaussian 3 5 9
            zero.[2L] <- torch.zeros([| 9L |], dtype = torch.float64)
            let z = certifyBy Certify.RouteChoice.Orthogonal false zero
            Expect.equal z.Verdict Verdict.Refuted z.Reason
            Expect.stringContains z.Reason "row 2" "names the zero row"
        }

        testPropertyWithConfig config "random small matrices (Gaussian, known rank, squeezed to σ ≈ 1e-4 … 1e-13): every orthogonal-route term in exact rationals, never Certified above the truth" <| fun (seed: int) ->
            smallMatrixCase seed

        // Found by a full-range seed (2026-12-02): R̂ numerically singular, X = R̂⁻¹ not finite; the route was right
        // (infinite bounds, Inconclusive), the oracle tried to take ∞ as a rational.
        test "regression: a numerically singular R̂ (X not finite) records infinite bounds and decides nothing (seed 1045610023)" {
            smallMatrixCase 1045610023
        }
        test "scale: 2^k·Φ gives the same orthogonal-route terms and the bound × 2^k (k = −400 … 400)" {
            use phi = nearDuplicate 21 1e-9
            let baseline = certifyBy Certify.RouteChoice.Orthogonal false phi
            Expect.equal baseline.Verdict Verdict.Certified baseline.Reason
            for k in [ -400; -37; 1; 52; 400 ] do
                use scaled = phi.mul(scalar (System.Math.ScaleB(1.0, k)))
                for route in [ Certify.RouteChoice.Orthogonal; Certify.RouteChoice.Auto ] do
                    let c = certifyBy route false scaled
                    let b = if route = Certify.RouteChoice.Orthogonal then baseline else certifyBy route false phi
                    let what = sprintf "k = %d, %O: %s" k route c.Reason
                    Expect.equal c.Verdict b.Verdict ("same verdict. " + what)
                    Expect.equal c.SigmaMinLower (System.Math.ScaleB(b.SigmaMinLower, k)) ("σ_min bound × 2^k. " + what)
                    Expect.equal (termsJson { c.Terms with ScaleExponent = 0 }) (termsJson { b.Terms with ScaleExponent = 0 }) ("the same terms. " + what)
        }

        test "routes: Gram only never runs the orthogonal route; Auto keeps Gram's verdict where Gram decides; the orthogonal route alone is sound and useful on well-conditioned matrices" {
            use phi = ofRank 5 12 30 12
            let gram = certifyBy Certify.RouteChoice.Gram true phi
            let auto = certifyBy Certify.RouteChoice.Auto true phi
            Expect.equal auto.Route CertificateRoute.Gram "Auto = Gram when it certifies"
            Expect.equal (termsJson auto.Terms) (termsJson gram.Terms) "same terms"
            Expect.equal auto.Terms.QrSigmaMinLower 0.0 "no orthogonal terms"
            let ortho = certifyBy Certify.RouteChoice.Orthogonal true phi
            Expect.equal ortho.Verdict Verdict.Certified ortho.Reason
            use tilde = tildeCpu true phi
            let truth = mathNetSigmaMin tilde
            Expect.isGreaterThanOrEqual ortho.SigmaMinLower (truth / 2.0) "useful"
            expectExact "ofRank 12 × 30 (Orthogonal)" true phi ortho
            Expect.stringContains ortho.Method "QR" "the method names the route"
            use near = nearDuplicate 15 1e-8
            let gramOnly = certifyBy Certify.RouteChoice.Gram false near
            Expect.equal gramOnly.Verdict Verdict.Inconclusive gramOnly.Reason
            Expect.equal gramOnly.Route CertificateRoute.Gram "Gram only"
            // Row blocks (the model path): Auto joins the blocks for the orthogonal route and agrees with certifyMatrix.
            let inMemory = certifyBy Certify.RouteChoice.Auto true near
            let blocks =
                Certify.certifyRowBlocks Certify.defaults (subject near true) 0L 4 3 (fun b ->
                    use onDevice = TestDevice.onDevice near
                    onDevice.narrow(0L, int64 (4 * b), int64 (min 4 (11 - 4 * b))).clone())
            Expect.equal blocks.Verdict Verdict.Certified blocks.Reason
            Expect.equal blocks.Route CertificateRoute.Orthogonal "row blocks: the orthogonal route decided"
            Expect.equal blocks.Terms.QrSigmaMinLower inMemory.Terms.QrSigmaMinLower "row blocks = in memory"
            let tiny = certifyWith { Certify.defaults with OrthogonalMaxBytes = 1L } false near
            Expect.equal tiny.Verdict Verdict.Inconclusive tiny.Reason
            Expect.stringContains tiny.Reason "orthogonal route was not tried" "says why"
        }

        test "certificate JSON: the route and the orthogonal terms round-trip; JSON without them reads as the Gram route with zero terms" {
            use phi = nearDuplicate 15 1e-8
            let c = certifyBy Certify.RouteChoice.Auto true phi
            Expect.equal c.Route CertificateRoute.Orthogonal c.Reason
            let json = CertificateJson.serialize c
            Expect.stringContains json "\"Route\": \"Orthogonal\"" "route written by name"
            let back = CertificateJson.deserialize json
            Expect.equal (CertificateJson.serialize back) json "same JSON"
            Expect.equal (termsJson back.Terms) (termsJson c.Terms) "same terms"
            let node = System.Text.Json.Nodes.JsonNode.Parse json
            Expect.isTrue (node.AsObject().Remove "Route") "Route was serialised"
            let terms = node.["Terms"].AsObject()
            for name in [ "QrResidualUpper"; "QrOrthogonalityUpper"; "QrQSigmaMinLower"; "QrInverseNormUpper"; "QrInverseResidualUpper"; "QrRSigmaMinLower"; "QrSigmaMinLower" ] do
                Expect.isTrue (terms.Remove name) (sprintf "%s was serialised" name)
            let old = CertificateJson.deserialize (node.ToJsonString())
            Expect.equal old.Route CertificateRoute.Gram "old JSON reads as the Gram route"
            Expect.equal old.Terms.QrSigmaMinLower 0.0 "missing terms → 0"
            Expect.equal old.Terms.Shift c.Terms.Shift "the Gram terms are kept"
        }
    ]
