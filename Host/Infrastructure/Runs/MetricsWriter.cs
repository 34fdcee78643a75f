using System.Text.Json;

namespace ResearchFramework.Host.Infrastructure.Runs;

/// <summary>Appends <see cref="MetricRow"/>s to <c>metrics.jsonl</c>, one JSON object per line, flushed per line
/// (nothing is lost on a crash), and mirrors every value to TensorBoard as <c>{kind}/{name}</c> when a writer is given.
/// Thread-safe.</summary>
public sealed class MetricsWriter : IDisposable
{
    private readonly StreamWriter _writer;
    private readonly TensorBoardScalars? _tensorBoard;
    private readonly Lock _lock = new();

    public MetricsWriter(string path, TensorBoardScalars? tensorBoard = null)
    {
        Path = path;
        _writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true };
        _tensorBoard = tensorBoard;
    }

    public string Path { get; }

    public void Write(MetricRow row) => Write(row, mirrorToTensorBoard: true);

    /// <summary>Writes the row; <paramref name="mirrorToTensorBoard"/> false skips the TensorBoard copy (every TensorBoard
    /// scalar is a flushed event write, too slow for every step of a fast run).</summary>
    public void Write(MetricRow row, bool mirrorToTensorBoard)
    {
        var line = new Dictionary<string, object?>
        {
            ["time"] = DateTimeOffset.UtcNow.ToString("O"),
            ["kind"] = row.Kind,
            ["iteration"] = row.Iteration,
        };
        if (row.Phase is not null) line["phase"] = row.Phase;
        foreach (var (name, value) in row.Values)
            line[name] = double.IsFinite(value) ? value : value.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var json = JsonSerializer.Serialize(line);
        lock (_lock)
        {
            _writer.WriteLine(json);
            if (mirrorToTensorBoard)
                foreach (var (name, value) in row.Values)
                    _tensorBoard?.Add($"{row.Kind}/{name}", value, row.Iteration);
        }
    }

    /// <summary>Convenience: <c>Write(new MetricRow(kind, iteration, phase, values))</c>.</summary>
    public void Write(string kind, long iteration, string? phase, params (string Name, double Value)[] values) =>
        Write(new MetricRow(kind, iteration, phase, values.ToDictionary(v => v.Name, v => v.Value)));

    public void Dispose()
    {
        lock (_lock) _writer.Dispose();
    }
}
