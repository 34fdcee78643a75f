using System.Globalization;
using System.Text.Json;

namespace ResearchFramework.Host.Infrastructure.Runs;

/// <summary>Reads <c>metrics.jsonl</c> back into <see cref="MetricRow"/>s (numeric fields and "NaN"/"Infinity" strings become values).
/// A torn last line (crash mid-write) is skipped.</summary>
public static class MetricsReader
{
    private static readonly HashSet<string> Reserved = ["time", "kind", "iteration", "phase"];

    public static List<MetricRow> Read(string path)
    {
        var rows = new List<MetricRow>();
        foreach (var line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonDocument doc;
            try { doc = JsonDocument.Parse(line); }
            catch (JsonException) { continue; }
            using (doc)
            {
                var root = doc.RootElement;
                var values = new Dictionary<string, double>();
                foreach (var p in root.EnumerateObject())
                {
                    if (Reserved.Contains(p.Name)) continue;
                    if (p.Value.ValueKind == JsonValueKind.Number) values[p.Name] = p.Value.GetDouble();
                    else if (p.Value.ValueKind == JsonValueKind.String &&
                             double.TryParse(p.Value.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
                        values[p.Name] = v;
                }
                rows.Add(new MetricRow(
                    root.TryGetProperty("kind", out var k) ? k.GetString() ?? "" : "",
                    root.TryGetProperty("iteration", out var i) ? i.GetInt64() : 0,
                    root.TryGetProperty("phase", out var ph) ? ph.ToString() : null,
                    values));
            }
        }
        return rows;
    }
}
