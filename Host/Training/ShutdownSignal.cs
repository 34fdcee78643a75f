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

    private int _signals;

    private void Handle(PosixSignalContext context)
    {
        // .NET runs each signal's handler on its own thread: count atomically, so two close signals cannot both
        // take the graceful branch.
        if (Interlocked.Increment(ref _signals) > 1)
        {
            // Second signal: terminate at once, as promised (the runtime's default would wait for shutdown handlers and a
            // busy training step). Checkpoints are written to a temporary file and renamed, so none is left half-written.
            context.Cancel = true;
            Console.Error.WriteLine($"rf: second {context.Signal}: terminating at once (the last complete checkpoint stands)");
            Infrastructure.NativeProcess.ExitImmediately(130);
        }
        context.Cancel = true;
        Console.Error.WriteLine($"rf: {context.Signal} received: writing a checkpoint and stopping (send it again to terminate at once)");
        try
        {
            _source.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // the run already ended and disposed the signal
        }
    }

    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
        _source.Dispose();
    }
}
