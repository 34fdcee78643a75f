// The orthogonal certificate route against the float64 Gram route (issue #15, docs/theory.md §3):
// the test families' verdicts and σ_min bounds by each route, and the time of each route on a 1024 × 1101
// feature matrix, in one run. Results: docs/BENCHMARKS.md ("Orthogonal certificate route").
//
//   ./build.sh setup                              # or: dotnet build ResearchFramework.sln -c Release
//   dotnet fsi experiments/orthogonal-route.fsx
#load "../examples/torch-from-build.fsx"

open System
open System.IO
open TorchSharp
open ResearchFramework.MathCore

let gaussian (seed: int) (n: int) (m: int) =
    use gen = new torch.Generator(uint64 (abs seed) + 1UL)
    torch.randn([| int64 n; int64 m |], dtype = torch.float64, generator = gen)

/// As `OrthogonalCertifyTests.nearDuplicate`: 11 × 40, unit rows, row 10 = row 0 + δ·(unit Gaussian direction).
let nearDuplicate (seed: int) (delta: float) =
    let g = gaussian seed 11 40
    let rows = g.div(g.square().sum(1L, keepdim = true).sqrt())
    let d = gaussian (seed + 1) 1 40
    let d = d.div(d.norm())
    rows.[10L] <- rows.[0L].add(d.[0L].mul(scalar delta))
    rows

let hilbertPadded (n: int) =
    torch.tensor(Array2D.init n (n + 4) (fun i j -> 1.0 / float (i + j + 1)), dtype = torch.float64)

let withSingularValues (seed: int) (m: int) (s: float[]) =
    let n = s.Length
    let struct (u, _) = torch.linalg.qr(gaussian seed n n)
    let struct (v, _) = torch.linalg.qr(gaussian (seed + 7919) m n)
    u.mul(torch.tensor(s, dtype = torch.float64).unsqueeze(0L)).mm(v.t())

let certify (route: Certify.RouteChoice) (withBias: bool) (phi: torch.Tensor) =
    let subject = ExpressivitySubject.OfMatrix("bench", int phi.shape.[0], int phi.shape.[1], withBias)
    Certify.certifyMatrix { Certify.defaults with Route = route } subject phi

let svdRatio (withBias: bool) (phi: torch.Tensor) =
    use t = if withBias then torch.cat([| phi; torch.ones([| phi.shape.[0]; 1L |], dtype = torch.float64) |], 1L) else phi.clone()
    use s = torch.linalg.svdvals(t)
    let v = s.data<float>().ToArray()
    Array.min v, Array.max v

let show (v: Verdict) (s: float) = if v = Verdict.Certified then sprintf "Certified %.3g" s else string v

printfn "| family | σ_min (SVD) | σ_min/σ_max | Gram route | Auto (route) |"
printfn "|---|---|---|---|---|"
let row (name: string) (withBias: bool) (phi: torch.Tensor) =
    let gram = certify Certify.RouteChoice.Gram withBias phi
    let auto = certify Certify.RouteChoice.Auto withBias phi
    let lo, hi = svdRatio withBias phi
    printfn "| %s | %.3g | %.2g | %s | %s (%O) |" name lo (lo / hi) (show gram.Verdict gram.SigmaMinLower) (show auto.Verdict auto.SigmaMinLower) auto.Route
for delta in [ 1e-4; 1e-6; 1e-8; 1e-10; 1e-12 ] do
    use phi = nearDuplicate 15 delta
    row (sprintf "11 × 40, rows %g apart, bias" delta) true phi
for n in 2 .. 12 do
    use phi = hilbertPadded n
    row (sprintf "Hilbert %d (+4 columns)" n) false phi
for p in 4 .. 14 do
    use phi = withSingularValues (200 + p) 12 (Array.init 8 (fun i -> 10.0 ** (-(float p) * float i / 7.0)))
    row (sprintf "8 × 12, σ 1 … 1e-%d" p) false phi

// Timing: tanh random features 1024 × 1100 (+ bias = 1101 columns), inputs of width 16 (the main job's shape).
let timed (route: Certify.RouteChoice) (phi: torch.Tensor) =
    let runs = [ for _ in 1 .. 3 -> let c = certify route true phi in c.ElapsedSeconds, c ]
    let times = runs |> List.map fst |> List.sort
    times.[1], snd runs.[0]
let x = gaussian 1 1024 16
let w = gaussian 2 16 1100
let features = torch.tanh(x.mm(w).div(scalar 4.0))
// The same features with row 1023 replaced by row 0 + 1e-6·(unit direction): the Gram route is Inconclusive there.
let nearFeatures = features.clone()
let direction = gaussian 3 1 1100
nearFeatures.[1023L] <- features.[0L].add(direction.[0L].div(direction.norm()).mul(scalar 1e-6))
let tg, cg = timed Certify.RouteChoice.Gram features
let tq, cq = timed Certify.RouteChoice.Orthogonal features
let tgn, cgn = timed Certify.RouteChoice.Gram nearFeatures
let tan, can = timed Certify.RouteChoice.Auto nearFeatures
let lo, hi = svdRatio true features
let lon, hin = svdRatio true nearFeatures
printfn ""
printfn "1024 × 1100 tanh features (+ bias = 1101 columns), threads %d; σ_min %.3g (σ_min/σ_max %.2g); with row 1023 = row 0 + 1e-6·d: σ_min %.3g (%.2g)" (torch.get_num_threads ()) lo (lo / hi) lon (lon / hin)
printfn "| matrix | route | verdict (route) | σ_min bound | median of 3 (s) |"
printfn "|---|---|---|---|---|"
printfn "| tanh features | Gram | %O (%O) | %.4g | %.3f |" cg.Verdict cg.Route cg.SigmaMinLower tg
printfn "| tanh features | Orthogonal | %O (%O) | %.4g | %.3f |" cq.Verdict cq.Route cq.SigmaMinLower tq
printfn "| near-duplicate row | Gram | %O (%O) | %.4g | %.3f |" cgn.Verdict cgn.Route cgn.SigmaMinLower tgn
printfn "| near-duplicate row | Auto | %O (%O) | %.4g | %.3f |" can.Verdict can.Route can.SigmaMinLower tan
printfn "ratio Orthogonal/Gram (tanh features): %.2f; Auto/Gram (near-duplicate, Auto = Gram + orthogonal): %.2f" (tq / tg) (tan / tgn)
printfn "Auto on the near-duplicate matrix: %s" can.Reason
printfn "terms (of 2^(%d)·Φ̃): ‖E‖ ≤ %.3g, ‖F‖ ≤ %.3g, ‖X‖₂ ≤ %.3g, ‖N‖ ≤ %.3g, σ_min(R̂) ≥ %.3g" (-can.Terms.ScaleExponent) can.Terms.QrResidualUpper can.Terms.QrOrthogonalityUpper can.Terms.QrInverseNormUpper can.Terms.QrInverseResidualUpper can.Terms.QrRSigmaMinLower
