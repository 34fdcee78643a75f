using Microsoft.FSharp.Collections;
using ResearchFramework.Algorithm;
using ResearchFramework.Host.Data;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.Host.Training;
using ResearchFramework.MathCore;
using TorchSharp;

namespace ResearchFramework.Host.Infrastructure;

/// <summary>Raised when no convolution kernel path passes its numerical self-check: <c>rf</c> refuses to start the run.</summary>
public sealed class KernelCheckException(string message) : InvalidOperationException(message);

/// <summary>Before the first training or certification step of a run: the numerical self-check of the convolution
/// kernels the run will use (<see cref="KernelCheck"/>: every Conv2d shape of the configured network, forward and
/// backward, at the run's dtype and device, against a float64 im2col reference), and the choice of a kernel path that
/// passes it: libtorch's default oneDNN kernels, else oneDNN capped at AVX2 (this process re-executes itself with
/// <c>DNNL_MAX_CPU_ISA=AVX2</c>; same PID, same arguments), else mkldnn disabled (ATen's native kernels), else a
/// refusal. It runs before the run directory exists, so a restart leaves nothing behind. The choice is in the
/// environment line and in <c>config.effective.json</c> (section <c>Environment</c>).</summary>
public static class KernelSelfCheck
{
    /// <summary>Memory the float64 reference of one checked case may take; a layer whose reference at the run's batch
    /// would exceed it is checked at the largest batch that fits (<see cref="KernelCheck.fitBatch"/>).</summary>
    public const long ReferenceBudgetBytes = 256L << 20;

    /// <summary>Whether this process may re-execute itself for a capped oneDNN ISA (the worker may not: it falls
    /// back in-process or refuses the job).</summary>
    public static bool AllowRestart { get; set; } = true;

    /// <summary>The convolution cases of the configured network: a training step at the run's batch size and an
    /// evaluation-mode forward at the certificate's row-block size (<see cref="Certification.ModelCertification.BlockRows"/>),
    /// each layer at the largest batch whose float64 reference fits <see cref="ReferenceBudgetBytes"/>.</summary>
    public static FSharpList<KernelCheck.ConvolutionCase> CasesFor(RfOptions options, bool trains = true)
    {
        var (channels, height, width, classes) = DatasetCatalog.ShapeOf(options.Data.Dataset);
        var architecture = RunSetup.Architecture(options.Model, channels, height, width, classes);
        var cases = Networks.convolutionCases(architecture, ListModule.OfSeq(trains ? [options.Training.BatchSize] : Array.Empty<int>()),
            ListModule.OfSeq([Certification.ModelCertification.BlockRows]));
        return ListModule.OfSeq(cases.Select(c => KernelCheck.fitBatch(ReferenceBudgetBytes, c)).Distinct());
    }

    /// <summary><c>rf env</c>: the check on the built-in convolutional networks (LeNet-5 and ResNet-18 at k = 1/4, MNIST-sized
    /// inputs, batch 16, training and evaluation, float32), so the environment line says which kernel path this CPU gets.</summary>
    public static void EnsureForEnvironment()
    {
        var lenet = new ArchitectureSpec("lenet5", [1, 28, 28], 10, [], Activation.Tanh, 1.0, Precision.Float32, []);
        var resnet = new ArchitectureSpec("resnet18", [1, 28, 28], 10, [], Activation.Relu, 0.25, Precision.Float32, []);
        var batches = ListModule.OfSeq([16]);
        var cases = ListModule.OfSeq(Networks.convolutionCases(lenet, batches, batches).Concat(Networks.convolutionCases(resnet, batches, batches))
            .Select(c => KernelCheck.fitBatch(ReferenceBudgetBytes, c)).Distinct());
        Apply(KernelCheck.choose(AllowRestart, torch.CPU, torch.float32, cases));
    }

    /// <summary>Runs the check for the run of <paramref name="options"/> and puts a passing path into effect; restarts the
    /// process when the ladder says so; throws <see cref="KernelCheckException"/> when no path passes.</summary>
    /// <param name="options">The run's validated options.</param>
    /// <param name="trains">False for work that only evaluates (<c>rf certify</c>): its training kernels are not checked.</param>
    public static void Ensure(RfOptions options, bool trains = true)
    {
        var cases = CasesFor(options, trains);
        if (cases.IsEmpty) return; // no convolutions (MLP): nothing to check
        var device = TorchEnvironment.selectDevice(options.Training.Device);
        var dtype = RunSetup.PrecisionOf(options.Model) == Precision.Float64 ? torch.float64 : torch.float32;
        Apply(KernelCheck.choose(AllowRestart, device, dtype, cases));
    }

    private static void Apply(KernelCheck.Selection selection)
    {
        switch (selection)
        {
            case KernelCheck.Selection.Chosen:
                return;
            case KernelCheck.Selection.Restart restart:
                var isa = restart.Item1 is KernelCheck.KernelPath.OneDnnCapped capped ? capped.isa : "AVX2";
                var history = string.Join("; ", restart.Item2.Select(r => r.Summary));
                Console.Error.WriteLine($"kernel self-check: {history}; restarting with DNNL_MAX_CPU_ISA={isa}");
                var why = KernelCheck.restartWith(isa, history);
                throw new KernelCheckException($"kernel self-check: the default kernels failed and the restart with DNNL_MAX_CPU_ISA={isa} failed: {why}");
            case KernelCheck.Selection.Refused refused:
                throw new KernelCheckException(KernelCheck.refusal(refused.Item));
            default:
                throw new InvalidOperationException("unknown kernel selection");
        }
    }
}
