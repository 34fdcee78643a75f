using System.Runtime.InteropServices;

namespace ResearchFramework.Host.Training;

/// <summary>Turns the first Ctrl-C (SIGINT) or SIGTERM into a cancelled <see cref="Token"/>, so the trainer can write a
/// checkpoint and stop; a second signal terminates the process as usual.</summary>
public sealed class ShutdownSignal : IDisposable
{
    private readonly CancellationTokenSource _source = new();
    private readonly PosixSignalRegistration[] _registrations;

    public ShutdownSignal()
    {
        _registrations =
        [
            PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle),
            PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle),
        ];
    }

    public CancellationToken Token => _source.Token;

    private void Handle(PosixSignalContext context)
    {
        if (_source.IsCancellationRequested) return; // second signal: default action (terminate)
        context.Cancel = true;
        Console.Error.WriteLine($"rf: {context.Signal} received: writing a checkpoint and stopping (send it again to terminate at once)");
        _source.Cancel();
    }

    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
        _source.Dispose();
    }
}
