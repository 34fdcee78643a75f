// Certify the expressivity condition (EC) of a network you wrote yourself, from C#.
//
//   dotnet run --project examples/CertifyYourModel -c Release
//
// The network below is not one of the repository's: any TorchSharp Module<Tensor, Tensor> works, and any of its named
// submodules can be a tap (the features h(x) whose matrix Φ̃ = [Φ, 1] must have full row rank n). The certificate is a
// proof for the floating-point matrix actually computed (docs/theory.md §3): Certified means σ_min(Φ̃) ≥ the printed
// bound > 0, so a linear readout on these features can fit any targets on these n inputs (SPEC §2, Lemma 1).
using ResearchFramework.MathCore;
using TorchSharp;
using static TorchSharp.torch;

torch.random.manual_seed(7);
using var model = new TwoLayerNet(inputs: 3, hidden: 64, outputs: 2);
using var x = torch.randn(48, 3, dtype: float64);   // n = 48 inputs

var certificate = ModelCertificate.Certify(model, ["hidden"], x, batchSize: 16, withBias: true,
    progress: p => Console.WriteLine($"  {p.Stage}: {p.Done}/{p.Total}"));

Console.WriteLine($"verdict: {certificate.Verdict}");
Console.WriteLine($"n = {certificate.Subject.Rows}, features m = {certificate.Subject.Features} (+1 bias column)");
Console.WriteLine($"sigma_min >= {certificate.SigmaMinLower:G6}, sigma_max <= {certificate.SigmaMaxUpper:G6}");
Console.WriteLine($"reason: {certificate.Reason}");

// The Jacobian form for the readout block (J_P = I_c ⊗ Φ̃): the same verdict.
var jacobian = ModelCertificate.CertifyJacobian(model, ["output"], x, Certify.defaults);
Console.WriteLine($"Jacobian form (P = output layer): {jacobian.Verdict}");
return certificate.Verdict == Verdict.Certified && jacobian.Verdict == Verdict.Certified ? 0 : 1;

/// <summary>A network of your own: input → Linear → tanh (the tap "hidden") → Linear.</summary>
sealed class TwoLayerNet : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> _first, _hidden, _output;

    public TwoLayerNet(int inputs, int hidden, int outputs) : base(nameof(TwoLayerNet))
    {
        _first = nn.Linear(inputs, hidden, dtype: float64);
        _hidden = nn.Tanh();
        _output = nn.Linear(hidden, outputs, dtype: float64);
        register_module("first", _first);
        register_module("hidden", _hidden);
        register_module("output", _output);
    }

    public override Tensor forward(Tensor input) => _output.call(_hidden.call(_first.call(input)));
}
