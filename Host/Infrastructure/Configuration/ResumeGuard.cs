using System.Text.Json;
using System.Text.Json.Nodes;

namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>A resume continues the run that was started: every key that shapes the trajectory must equal the value in
/// the run's <c>config.effective.json</c>, or the resume is refused naming the key (otherwise the run would silently
/// continue as a different run while its file still showed the old values). Keys that only say where files go or how
/// often to log or checkpoint (resumes are bit-identical whatever the checkpoint period) may change:
/// <see cref="MayChange"/>.</summary>
public static class ResumeGuard
{
    /// <summary>Keys a resume may change: they do not affect the parameters' trajectory.</summary>
    public static readonly string[] MayChange =
        ["Data:DataDirectory", "Run:RunsDirectory", "Run:RunName", "Training:LogEvery", "Training:CheckpointEvery"];
    // Not Certificate:TileMemoryGB: the budget decides dense or tiled under Auto, and whether Φ̃ is streamed (Theorem P's
    // products then summed over row blocks: other bits, docs/theory.md §4 "Φ̃ streamed").

    /// <summary>Throws <see cref="ConfigurationException"/> naming every key whose value differs between the run's
    /// stored options (<paramref name="storedEffectiveConfig"/>) and <paramref name="requested"/>.</summary>
    public static void Check(string storedEffectiveConfig, RfOptions requested)
    {
        var stored = RfOptions.Load(RfConfiguration.Build(new ConfigurationInput(storedEffectiveConfig, [])));
        var before = Flatten(JsonSerializer.SerializeToNode(stored));
        var after = Flatten(JsonSerializer.SerializeToNode(requested));
        var changed = before.Keys.Union(after.Keys)
            .Where(k => !MayChange.Contains(k, StringComparer.OrdinalIgnoreCase))
            .Where(k => before.GetValueOrDefault(k) != after.GetValueOrDefault(k))
            .Order(StringComparer.Ordinal)
            .Select(k => $"{k}: run has {before.GetValueOrDefault(k) ?? "(absent)"}, requested {after.GetValueOrDefault(k) ?? "(absent)"}")
            .ToArray();
        if (changed.Length > 0)
            throw new ConfigurationException(
                $"--resume: refusing to change the run's configuration ({storedEffectiveConfig}); a resume must continue the same run:\n  " +
                string.Join("\n  ", changed) + $"\n(keys a resume may change: {string.Join(", ", MayChange)}; start a new run for anything else)");
    }

    /// <summary>Section:Key[:index] → JSON text of the leaf value.</summary>
    private static Dictionary<string, string> Flatten(JsonNode? node)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        void Walk(JsonNode? n, string prefix)
        {
            switch (n)
            {
                case JsonObject o:
                    foreach (var (k, v) in o) Walk(v, prefix.Length == 0 ? k : $"{prefix}:{k}");
                    break;
                case JsonArray a:
                    result[prefix + ":Count"] = a.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    for (int i = 0; i < a.Count; i++) Walk(a[i], $"{prefix}:{i}");
                    break;
                default:
                    result[prefix] = n?.ToJsonString() ?? "null";
                    break;
            }
        }
        Walk(node, "");
        return result;
    }
}
