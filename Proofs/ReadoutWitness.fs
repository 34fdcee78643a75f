/// Lemma 1, executable: for a Certified Φ̃ (σ_min(Φ̃) ≥ s > 0) and any targets Z (n × c), the
/// minimum-norm readout Vᵀ = Φ̃⁺Z solves Φ̃Vᵀ = Z, so the readout alone attains L*. We compute
/// V̂ in float64 (MathNet SVD), bound its true residual rigorously from the computed one, check it
/// against the a-priori bound derived from s, and bound the distance to an exact solution V*.
/// Derivation: docs/theory.md §4, "Lemma 1".
module ResearchFramework.Proofs.ReadoutWitness

open MathNet.Numerics.LinearAlgebra
open ResearchFramework.MathCore

type ReadoutSolution =
    { /// V̂ (c × m'), m' = columns of Φ̃.
      V: float[,]
      /// ‖fl(Φ̃V̂ᵀ − Z)‖_F as computed.
      ComputedResidual: float
      /// γ_{m'+1}(‖Φ̃‖_F‖V̂‖_F + ‖Z‖_F): rounding of the residual evaluation.
      ResidualRoundingBound: float
      /// ρ = computed + rounding ≥ ‖Φ̃V̂ᵀ − Z‖_F (exact).
      ResidualUpper: float
      /// B = γ_k(F·‖Z‖_F/(s − γ_k F) + ‖Z‖_F), k = (n + 2)m' + 2, F ≥ ‖Φ̃‖_F: the a-priori bound
      /// for a normwise backward-stable solver (constant γ_{n m'}, a stated assumption) plus the
      /// residual evaluation's rounding counted twice, from the certificate's s and F.
      ResidualBound: float
      /// ρ/s ≥ ‖V* − V̂‖_F for the exact solution V* = V̂ + Φ̃⁺(Z − Φ̃V̂ᵀ) (Φ̃V*ᵀ = Z exactly).
      DistanceToExact: float
      /// (1/2n)ρ²: the squared loss of V̂ (L* = 0 when Z = Y).
      LossUpper: float
      /// ResidualUpper ≤ ResidualBound.
      Holds: bool }

let private gammaUp (k: int) = FloatingPoint.gamma FloatingPoint.unitRoundoff64 k

/// Solve Φ̃Vᵀ = Z (minimum norm) given σ_min(Φ̃) ≥ s > 0 and ‖Φ̃‖_F ≤ frobeniusUpper
/// (a certificate's SigmaMinLower and `Certify.frobeniusUpper` of its terms; not SigmaMaxUpper,
/// which bounds the spectral norm only).
let solve (phiTilde: float[,]) (sigmaMinLower: float) (frobeniusUpper: float) (z: float[,]) : ReadoutSolution =
    if not (sigmaMinLower > 0.0) then invalidArg "sigmaMinLower" "Lemma 1 needs a Certified Φ̃ (σ_min lower bound > 0)"
    let a = Matrix<float>.Build.DenseOfArray phiTilde
    let zm = Matrix<float>.Build.DenseOfArray z
    let n, cols = a.RowCount, a.ColumnCount
    if zm.RowCount <> n then invalidArg "z" (sprintf "Z has %d rows, Φ̃ has %d" zm.RowCount n)
    let x = a.Svd(true).Solve(zm) // m' × c, = V̂ᵀ
    let r = a * x - zm
    let xF, zF = x.FrobeniusNorm(), zm.FrobeniusNorm()
    let rounding = FloatingPoint.mulUp (gammaUp (cols + 1)) (FloatingPoint.addUp (FloatingPoint.mulUp frobeniusUpper xF) zF)
    let rho = FloatingPoint.addUp (r.FrobeniusNorm()) rounding
    // backward stability (γ_{n m'}) plus twice the evaluation rounding (γ_{m'+1}) ≤ γ_{(n+2)m'+2}
    let gBs = gammaUp ((n + 2) * cols + 2)
    let denom = sigmaMinLower - gBs * frobeniusUpper
    let bound = if denom <= 0.0 then infinity else FloatingPoint.mulUp gBs (FloatingPoint.addUp (FloatingPoint.up (frobeniusUpper * zF / denom)) zF)
    { V = x.Transpose().ToArray()
      ComputedResidual = r.FrobeniusNorm()
      ResidualRoundingBound = rounding
      ResidualUpper = rho
      ResidualBound = bound
      DistanceToExact = FloatingPoint.up (rho / sigmaMinLower)
      LossUpper = FloatingPoint.up (rho * rho / (2.0 * float n))
      Holds = rho <= bound }

/// F ≥ ‖Φ̃‖_F from a certificate: √ of its bound on Σ‖φ̃_i‖² = tr G, rounded upward, in Φ̃'s units
/// (the terms are those of 2^(−e)·Φ̃; `Certify.frobeniusUpper` multiplies back by 2^e).
let frobeniusUpper (cert: Certificate) = Certify.frobeniusUpper cert.Terms

/// Lemma 1 on a certificate: refuses anything but a Certified one.
let solveCertified (cert: Certificate) (sigmaMinLower: float) (phiTilde: float[,]) (z: float[,]) : ReadoutSolution =
    if cert.Verdict <> Verdict.Certified then
        invalidArg "cert" (sprintf "Lemma 1 applies to Certified Φ̃ only (verdict %O: %s)" cert.Verdict cert.Reason)
    solve phiTilde sigmaMinLower (frobeniusUpper cert) z
