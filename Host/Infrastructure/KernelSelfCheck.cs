using Microsoft.FSharp.Collections;
using ResearchFramework.Algorithm;
using ResearchFramework.Host.Data;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.Host.Training;
using ResearchFramework.MathCore;
using TorchSharp;

namespace ResearchFramework.Host.Infrastructure;

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
        return Fitted(Networks.convolutionCases(architecture, ListModule.OfSeq(trains ? [options.Training.BatchSize] : Array.Empty<int>()),
            ListModule.OfSeq([Certification.ModelCertification.BlockRows])));
    }

    /// <summary><c>rf env</c>: the check on the built-in convolutional networks (LeNet-5 and ResNet-18 at k = 1/4, MNIST-sized
    /// inputs, batch 16, training and evaluation, float32), so the environment line says which kernel path this CPU gets.</summary>
    public static void EnsureForEnvironment()
    {
        var lenet = new ArchitectureSpec("lenet5", [1, 28, 28], 10, [], Activation.Tanh, 1.0, Precision.Float32, []);
        var resnet = new ArchitectureSpec("resnet18", [1, 28, 28], 10, [], Activation.Relu, 0.25, Precision.Float32, []);
        var batches = ListModule.OfSeq([16]);
        KernelCheck.ensure(AllowRestart, torch.CPU, torch.float32,
            Fitted(Networks.convolutionCases(lenet, batches, batches).Concat(Networks.convolutionCases(resnet, batches, batches))));
    }

    /// <summary>Each case at the largest batch whose float64 reference fits <see cref="ReferenceBudgetBytes"/>, duplicates once.</summary>
    private static FSharpList<KernelCheck.ConvolutionCase> Fitted(IEnumerable<KernelCheck.ConvolutionCase> cases) =>
        ListModule.OfSeq(cases.Select(c => KernelCheck.fitBatch(ReferenceBudgetBytes, c)).Distinct());

    /// <summary>Runs the check for the run of <paramref name="options"/> and puts a passing path into effect; restarts the
    /// process when the ladder says so; throws <see cref="KernelCheck.KernelCheckException"/> when no path passes.</summary>
    /// <param name="options">The run's validated options.</param>
    /// <param name="trains">False for work that only evaluates (<c>rf certify</c>): its training kernels are not checked.</param>
    public static void Ensure(RfOptions options, bool trains = true)
    {
        var cases = CasesFor(options, trains);
        if (cases.IsEmpty) return; // no convolutions (MLP): nothing to check
        var device = TorchEnvironment.selectDevice(options.Training.Device);
        var dtype = RunSetup.PrecisionOf(options.Model) == Precision.Float64 ? torch.float64 : torch.float32;
        KernelCheck.ensure(AllowRestart, device, dtype, cases);
    }
}
