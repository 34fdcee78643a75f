using ResearchFramework.Host.Data;
using ResearchFramework.MathCore;
using TorchSharp;

namespace ResearchFramework.Host.Certification;

/// <summary>Certifies a feature matrix read from a <c>.npy</c> file (rows = samples) with Math.Core's
/// float64 Gram + Rump test (SPEC §3). The bias column is not added: the file is taken as Φ̃ itself.</summary>
public static class MatrixCertification
{
    public static Certificate Certify(string path, NpyMatrix matrix)
    {
        using var scope = torch.NewDisposeScope();
        var dtype = matrix.Dtype == "<f4" ? torch.float32 : torch.float64;
        var phi = torch.tensor(matrix.Values, dtype: torch.float64).reshape(matrix.Rows, matrix.Columns).to(dtype);
        var fingerprint = Fingerprint.ofBytes(File.ReadAllBytes(path));
        var subject = new ExpressivitySubject(fingerprint, $"all {matrix.Rows} rows of {Path.GetFileName(path)}", "matrix",
                                              [], "none", matrix.Rows, matrix.Columns, false);
        return ResearchFramework.MathCore.Certify.certifyMatrix(ResearchFramework.MathCore.Certify.defaults, subject, phi);
    }

    /// <summary>One human-readable summary of a certificate.</summary>
    public static string Describe(Certificate c) =>
        $"verdict: {c.Verdict}\n" +
        $"  n = {c.Subject.Rows}, columns = {c.Subject.Columns}, {c.Precision}\n" +
        $"  σ_min ≥ {c.SigmaMinLower:G6} (rigorous lower bound)\n" +
        $"  σ_max ≈ {c.SigmaMaxEstimate:G6} (estimate), ≤ {c.SigmaMaxUpper:G6} (rigorous upper bound; ‖Φ̃‖_F ≤ {ResearchFramework.MathCore.Certify.frobeniusUpper(c.Terms):G6})\n" +
        $"  reason: {c.Reason}\n" +
        $"  time: {c.ElapsedSeconds:F3} s";
}
