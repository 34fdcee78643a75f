using System.Diagnostics;

namespace ResearchFramework.Host.Infrastructure.Progress;

/// <summary>Progress of a counted job. On a terminal: one line rewritten in place with rate and ETA.
/// When the output is redirected: a plain line at most every <c>plainInterval</c> (default 10 s) and at the end.</summary>
public sealed class ProgressReporter
{
    private readonly TextWriter _out;
    private readonly bool _interactive;
    private readonly TimeSpan _interval;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private TimeSpan? _lastPrint;
    private int _lastWidth;

    /// <param name="label">Shown at the start of each line, e.g. "train".</param>
    /// <param name="total">Number of units (iterations) in the job.</param>
    /// <param name="output">Defaults to standard error.</param>
    /// <param name="interactive">Defaults to "standard error is a terminal".</param>
    /// <param name="plainInterval">Minimum time between plain lines (redirected output).</param>
    public ProgressReporter(string label, long total, TextWriter? output = null, bool? interactive = null, TimeSpan? plainInterval = null)
    {
        Label = label;
        Total = total;
        _out = output ?? Console.Error;
        _interactive = interactive ?? !Console.IsErrorRedirected;
        _interval = plainInterval ?? TimeSpan.FromSeconds(10);
    }

    public string Label { get; }
    public long Total { get; }

    /// <summary>Reports <paramref name="done"/> units finished; <paramref name="detail"/> (e.g. "loss 0.123") is appended.</summary>
    public void Report(long done, string? detail = null)
    {
        var now = _clock.Elapsed;
        bool last = done >= Total;
        var minimumGap = _interactive ? TimeSpan.FromMilliseconds(100) : _interval;
        if (!last && _lastPrint is { } previous && now - previous < minimumGap) return;
        _lastPrint = now;
        var line = Format(done, now, detail);
        if (_interactive)
        {
            _out.Write('\r' + line.PadRight(_lastWidth));
            _lastWidth = line.Length;
            if (last) _out.WriteLine();
        }
        else
        {
            _out.WriteLine(line);
        }
        _out.Flush();
    }

    /// <summary>The text of one progress line (public for tests).</summary>
    public string Format(long done, TimeSpan elapsed, string? detail)
    {
        double rate = elapsed.TotalSeconds > 0 ? done / elapsed.TotalSeconds : 0;
        string eta = rate > 0 && done < Total ? FormatSpan(TimeSpan.FromSeconds((Total - done) / rate)) : "--:--";
        double percent = Total > 0 ? 100.0 * done / Total : 100;
        var text = $"{Label} {done}/{Total} ({percent:F1}%) {rate:F1} it/s, elapsed {FormatSpan(elapsed)}, ETA {eta}";
        return detail is null ? text : $"{text} | {detail}";
    }

    private static string FormatSpan(TimeSpan span) =>
        span.TotalHours >= 1 ? $"{(int)span.TotalHours}:{span.Minutes:D2}:{span.Seconds:D2}" : $"{span.Minutes:D2}:{span.Seconds:D2}";
}
