using TorchSharp;

namespace ResearchFramework.Host.Infrastructure.Runs;

/// <summary>Scalar logging to TensorBoard event files via TorchSharp's <c>torch.utils.tensorboard.SummaryWriter</c>.</summary>
public sealed class TensorBoardScalars
{
    private readonly TorchSharp.Modules.SummaryWriter _writer;

    public TensorBoardScalars(string logDirectory)
    {
        Directory.CreateDirectory(logDirectory);
        _writer = torch.utils.tensorboard.SummaryWriter(logDirectory, createRunName: false);
    }

    public void Add(string tag, double value, long step) => _writer.add_scalar(tag, (float)value, checked((int)step));
}
