using ResearchFramework.MathCore;
using TorchSharp;
using static TorchSharp.torch;

namespace ResearchFramework.Host;

/// <summary>Entry point of the <c>rf</c> command (foundation stage: environment + one real step).</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var device = TorchEnvironment.selectDevice(args.Length > 0 ? args[0] : "auto");
        Console.WriteLine(TorchEnvironment.describe());
        Console.WriteLine($"device: {device}");
        torch.random.manual_seed(0);
        using var scope = torch.NewDisposeScope();
        var model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).to(device);
        var x = torch.randn(32, 8, device: device);
        var y = x.sum(1, keepdim: true).tanh();
        var optimizer = optim.SGD(model.parameters(), 0.1);
        for (int step = 0; step < 5; step++)
        {
            optimizer.zero_grad();
            var loss = nn.functional.mse_loss(model.call(x), y);
            loss.backward();
            optimizer.step();
            Console.WriteLine($"step {step}: loss {loss.item<float>():F6}");
        }
        return 0;
    }
}
