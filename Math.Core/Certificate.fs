namespace ResearchFramework.MathCore

open System
open System.Text.Json
open System.Text.Json.Serialization

/// Outcome of an expressivity certificate (SPEC §3).
[<JsonConverter(typeof<JsonStringEnumConverter>)>]
type Verdict =
    /// A rigorous lower bound σ_min(Φ̃) ≥ s > 0 was proved for the computed matrix.
    | Certified = 0
    /// rank Φ̃ < n was proved exactly (m + 1 < n, a duplicate row, a zero row).
    | Refuted = 1
    /// The numbers cannot separate σ_min from 0 within the error bounds.
    | Inconclusive = 2

/// Which route decided a certificate (docs/theory.md §3): the float64 Gram with Rump's shifted
/// Cholesky test (squares the condition number), or the a-posteriori orthogonal-factorisation bound on
/// Φ̃ itself (QR of Φ̃ᵀ, σ_min down to about n·u·σ_max). Certificates written before the orthogonal
/// route existed read back as Gram (the default, 0).
[<JsonConverter(typeof<JsonStringEnumConverter>)>]
type CertificateRoute =
    /// λ_min(G), G = Φ̃Φ̃ᵀ in float64, by shifted Cholesky (Steps 1–3 of docs/theory.md §3).
    | Gram = 0
    /// σ_min(Φ̃) ≥ σ_min(Q̂)·σ_min(R̂) − ‖Φ̃ᵀ − Q̂R̂‖ for a float64 QR of Φ̃ᵀ (docs/theory.md §3, "Orthogonal route").
    | Orthogonal = 1

/// What a certificate is about: EC(S, architecture, taps) at one parameter value (SPEC §2).
/// Rows = n (size of the certification set), Features = m (columns of Φ, before the bias column).
type ExpressivitySubject =
    { DatasetFingerprint: string
      CertificationSet: string
      Architecture: string
      Taps: string[]
      ParameterFingerprint: string
      Rows: int
      Features: int
      WithBias: bool }

    /// Columns of Φ̃: m, plus one for the bias column.
    member s.Columns = s.Features + (if s.WithBias then 1 else 0)

    /// A subject for a bare matrix with no network behind it.
    static member OfMatrix(fingerprint: string, rows: int, features: int, withBias: bool) =
        { DatasetFingerprint = fingerprint; CertificationSet = "all rows"; Architecture = "matrix"
          Taps = [||]; ParameterFingerprint = "none"; Rows = rows; Features = features; WithBias = withBias }

/// Every term of the certified bounds, so a reader can re-check the arithmetic (SPEC §3):
/// λ_min(G) ≥ c − u·max|G_ii − c| − γ'_{n+1}·tr(Ã) − γ_{m'}·Σ‖φ̃_i‖², with γ' = γ/(1−γ), and
/// λ_max(G) ≤ t + u·max|t − G_ii| + γ'_{n+1}·tr(Ã_t) + γ_{m'}·Σ‖φ̃_i‖², Ã_t = fl(t·I − fl G); a blocked order
/// replaces m' (the dense and the tiled Gram) and n + 1 (the tile Cholesky) by the smaller indices it records
/// (AccumulationGammaIndex, CholeskyGammaIndex).
/// The LambdaMax* fields are 0 when no trial t succeeded, when no Gram estimate was computed
/// (refutations), and in certificates written before they existed (JSON without them reads as 0).
/// G here is the Gram of 2^(−e)·Φ̃, e = ScaleExponent (docs/theory.md §3, "Scaling").
type CertificateTerms =
    { UnitRoundoff: float
      /// γ_h of the accumulation bound: h = m' (columns of Φ̃) for inner products summed in any order, smaller
      /// for the blocked accumulation of the dense and the tiled Gram (AccumulationGammaIndex says which).
      AccumulationGamma: float
      /// h of AccumulationGamma (0 in certificates written before it was recorded: there h = m').
      AccumulationGammaIndex: int
      /// h of CholeskyGamma = γ'_h (0 in certificates written before it was recorded: there h = n + 1).
      CholeskyGammaIndex: int
      /// Upper bound on Σ_i ‖φ̃_i‖² (exact arithmetic).
      SquaredNormSumUpper: float
      /// Upper bound on ‖fl(G) − G‖₂.
      AccumulationError: float
      /// Shift c of the Cholesky test (0 when no shifted Cholesky succeeded).
      Shift: float
      /// Upper bound on max_i |D_ii| from forming fl(G) − cI.
      ShiftRoundingError: float
      /// γ'_h = γ_h/(1 − γ_h) of Demmel's Cholesky backward-error bound: h = n + 1 for any order of the inner
      /// products (dense, ScaLAPACK), smaller for the tile Cholesky's blocked order (docs/theory.md §3).
      CholeskyGamma: float
      /// Upper bound on tr(Ã), Ã = fl(fl(G) − cI).
      ShiftedTraceUpper: float
      /// Upper bound on ‖ΔA‖₂ of the Cholesky backward error.
      CholeskyBackwardError: float
      /// Rigorous lower bound on λ_min(fl(G)).
      LambdaMinComputedGramLower: float
      /// Rigorous lower bound on λ_min(G) = σ_min(Φ̃)² (may be ≤ 0 when not certified).
      LambdaMinLower: float
      /// The floating-point estimate of λ_min(fl(G)) the shift was derived from; NaN when the caller's warm shift
      /// (`Certify.Options.WarmShift`) proved enough without one.
      LambdaMinEstimate: float
      /// Shifts tried before the verdict.
      ShiftAttempts: int
      /// Trial t > 0 of the first successful Cholesky of Ã_t = fl(t·I − fl(G)); 0 when none succeeded.
      LambdaMaxTrial: float
      /// Upper bound on max_i |D_ii| ≤ u·|t − G_ii| from forming Ã_t.
      LambdaMaxTrialRoundingError: float
      /// Upper bound on tr(Ã_t).
      LambdaMaxTrialTraceUpper: float
      /// Upper bound on ‖ΔA‖₂ ≤ γ'_{n+1}·tr(Ã_t), the Cholesky backward error of the trial.
      LambdaMaxCholeskyBackwardError: float
      /// Rigorous upper bound on λ_max(G) = σ_max(Φ̃)² from the trial; 0 when none succeeded.
      LambdaMaxUpper: float
      /// Trials t tried (failed ones included).
      LambdaMaxTrialAttempts: int
      /// e: the certificate is computed for 2^(−e)·Φ̃ (Gram 4^(−e)·Φ̃Φ̃ᵀ), and every term above is a
      /// term of that scaled matrix (multiply λ-terms by 4^e, σ-terms by 2^e for Φ̃'s units);
      /// SigmaMinLower, SigmaMaxEstimate and SigmaMaxUpper are already in Φ̃'s units.
      /// 0 in certificates written before scaling (their terms are Φ̃'s own).
      ScaleExponent: int
      /// Orthogonal route (Route = Orthogonal, docs/theory.md §3): upper bound on ‖E‖_F, E = Φ̃_sᵀ − Q̂R̂
      /// (Φ̃_s = 2^(−e)·Φ̃); 0 when the route did not run (and in older certificates).
      QrResidualUpper: float
      /// Orthogonal route: upper bound on ‖F‖_F, F = Q̂ᵀQ̂ − I.
      QrOrthogonalityUpper: float
      /// Orthogonal route: lower bound √(1 − ‖F‖) on σ_min(Q̂).
      QrQSigmaMinLower: float
      /// Orthogonal route: upper bound on ‖X‖_F for the computed inverse X ≈ R̂⁻¹.
      QrInverseNormUpper: float
      /// Orthogonal route: upper bound on ‖N‖_F, N = R̂X − I.
      QrInverseResidualUpper: float
      /// Orthogonal route: lower bound (1 − ‖N‖)/‖X‖ on σ_min(R̂).
      QrRSigmaMinLower: float
      /// Orthogonal route: σ_min(Q̂)·σ_min(R̂) − ‖E‖, the lower bound on σ_min(Φ̃_s) (≤ 0: nothing proved).
      QrSigmaMinLower: float }

    static member Empty =
        { UnitRoundoff = FloatingPoint.unitRoundoff64; AccumulationGamma = 0.0; AccumulationGammaIndex = 0; CholeskyGammaIndex = 0
          SquaredNormSumUpper = 0.0
          AccumulationError = 0.0; Shift = 0.0; ShiftRoundingError = 0.0; CholeskyGamma = 0.0
          ShiftedTraceUpper = 0.0; CholeskyBackwardError = 0.0; LambdaMinComputedGramLower = 0.0
          LambdaMinLower = 0.0; LambdaMinEstimate = nan; ShiftAttempts = 0
          LambdaMaxTrial = 0.0; LambdaMaxTrialRoundingError = 0.0; LambdaMaxTrialTraceUpper = 0.0
          LambdaMaxCholeskyBackwardError = 0.0; LambdaMaxUpper = 0.0; LambdaMaxTrialAttempts = 0
          ScaleExponent = 0; QrResidualUpper = 0.0; QrOrthogonalityUpper = 0.0; QrQSigmaMinLower = 0.0
          QrInverseNormUpper = 0.0; QrInverseResidualUpper = 0.0; QrRSigmaMinLower = 0.0; QrSigmaMinLower = 0.0 }

/// A certificate for EC (SPEC §3): what was certified, how, every error term, the verdict.
type Certificate =
    { Subject: ExpressivitySubject
      Verdict: Verdict
      /// Why: the proof's last step, the refutation, or what was inconclusive.
      Reason: string
      Method: string
      /// Precision of the features and of the Gram accumulation, e.g. "features float32, Gram float64".
      Precision: string
      Device: string
      /// Rigorous lower bound on σ_min(Φ̃); 0 unless Certified.
      SigmaMinLower: float
      /// Estimate of σ_max(Φ̃): √ of the Rayleigh–Ritz (Krylov) estimate of λ_max(fl G), ≤ σ_max up to rounding.
      SigmaMaxEstimate: float
      /// Rigorous upper bound on σ_max(Φ̃) = ‖Φ̃‖₂: min(√ of the bound on tr G = Σ‖φ̃_i‖²,
      /// √ Terms.LambdaMaxUpper) when a shifted-Cholesky trial succeeded, else the former.
      /// Not a bound on ‖Φ̃‖_F: use √ Terms.SquaredNormSumUpper for that.
      SigmaMaxUpper: float
      Terms: CertificateTerms
      /// The route whose verdict stands (Gram when the float64 Gram test decided or for refutations;
      /// Orthogonal when the orthogonal-factorisation bound ran last). Older JSON reads as Gram.
      Route: CertificateRoute
      ElapsedSeconds: float
      CreatedUtc: DateTime
      FormatVersion: int }

    member c.IsCertified = c.Verdict = Verdict.Certified

/// JSON form of certificates: a researcher keeps them next to checkpoints.
module CertificateJson =
    let private options =
        let o = JsonSerializerOptions(WriteIndented = true)
        o.NumberHandling <- JsonNumberHandling.AllowNamedFloatingPointLiterals
        o

    /// Serialise a certificate to indented JSON (NaN/∞ written as named literals).
    let serialize (c: Certificate) : string = JsonSerializer.Serialize(c, options)

    /// Read a certificate back; throws JsonException with the location on malformed input.
    let deserialize (json: string) : Certificate =
        let c = JsonSerializer.Deserialize<Certificate>(json, options)
        if obj.ReferenceEquals(c, null) || obj.ReferenceEquals(c.Subject, null) then
            raise (JsonException "certificate JSON has no Subject")
        c

    /// Write atomically (temporary file, then rename).
    let save (path: string) (c: Certificate) =
        let tmp = path + ".tmp"
        IO.File.WriteAllText(tmp, serialize c)
        IO.File.Move(tmp, path, true)

    let load (path: string) : Certificate = deserialize (IO.File.ReadAllText path)

    /// Builds the serializer's metadata for `Certificate` (reflection, ≈ 0.1 s in a fresh process) by serialising a
    /// throwaway certificate: a command that will save one can run this on another thread while it computes.
    let prepare () : unit =
        let sample =
            { Subject = ExpressivitySubject.OfMatrix("", 1, 1, false); Verdict = Verdict.Inconclusive; Reason = ""; Method = ""
              Precision = ""; Device = ""; SigmaMinLower = 0.0; SigmaMaxEstimate = nan; SigmaMaxUpper = 0.0
              Terms = CertificateTerms.Empty; Route = CertificateRoute.Gram; ElapsedSeconds = 0.0
              CreatedUtc = DateTime.UnixEpoch; FormatVersion = 1 }
        serialize sample |> ignore
