using System.Runtime.InteropServices;
using ResearchFramework.Host.Infrastructure.Configuration;
using ResearchFramework.MathCore;

namespace ResearchFramework.Host.Cli.Handlers;

/// <summary><c>rf env</c>: TorchSharp/libtorch versions, device and threads, plus runtime facts.</summary>
public sealed class EnvHandler
{
    public int Run()
    {
        Infrastructure.KernelSelfCheck.EnsureForEnvironment(); // which convolution kernel path this CPU gets (may restart rf env once)
        Console.WriteLine(KernelCheck.environmentLine());
        Console.WriteLine($"default device: {TorchEnvironment.selectDevice("auto")}");
        Console.WriteLine($"certificate kernels (float64 syrk/gemm/potrf/trsm): {NativeBlas.describe()}");
        Console.WriteLine($".NET {RuntimeInformation.FrameworkDescription} | {RuntimeInformation.OSDescription} | {RuntimeInformation.ProcessArchitecture} | {Environment.ProcessorCount} logical CPUs");
        Console.WriteLine($"environment: {RfConfiguration.EnvironmentName} | settings: {Path.Combine(AppContext.BaseDirectory, "appsettings.json")}");
        return ExitCodes.Success;
    }
}
