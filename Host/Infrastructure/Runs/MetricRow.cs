namespace ResearchFramework.Host.Infrastructure.Runs;

/// <summary>One line of <c>metrics.jsonl</c>: a kind (e.g. <c>train</c>, <c>eval</c>, <c>certificate</c>), the iteration,
/// an optional phase (e.g. <c>1</c>, <c>2</c>) and named scalar values (e.g. <c>loss</c>, <c>sigmaMin</c>, <c>accuracy</c>).</summary>
public sealed record MetricRow(string Kind, long Iteration, string? Phase, IReadOnlyDictionary<string, double> Values)
{
    /// <summary>The value named <paramref name="name"/>, or null.</summary>
    public double? Get(string name) => Values.TryGetValue(name, out var v) ? v : null;
}
