using Microsoft.Extensions.Configuration;

namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>Builds the layered configuration, later layers winning:
/// <c>appsettings.json</c> (next to the executable) → <c>appsettings.{Environment}.json</c> → environment variables
/// with prefix <c>RF_</c> (e.g. <c>RF_Training__LearningRate</c>) → the <c>--config</c> JSON file → <c>--set</c> overrides.
/// The environment is <c>RF_ENVIRONMENT</c>, else <c>DOTNET_ENVIRONMENT</c>, else <c>Production</c>.</summary>
public static class RfConfiguration
{
    /// <summary>Top-level sections a config file or override may use. <c>Environment</c> is written by <c>rf</c> into
    /// <c>config.effective.json</c> (libtorch, the convolution kernel path and its self-check) and ignored when read.</summary>
    public static readonly string[] KnownSections =
        [DataOptions.Section, ModelOptions.Section, TrainingOptions.Section, RecipeOptions.Section, RunOptions.Section, EnvironmentSection];

    /// <summary>The record-only section of <c>config.effective.json</c>: never bound to options.</summary>
    public const string EnvironmentSection = "Environment";

    public static string EnvironmentName =>
        Environment.GetEnvironmentVariable("RF_ENVIRONMENT") ?? Environment.GetEnvironmentVariable("DOTNET_ENVIRONMENT") ?? "Production";

    public static IConfigurationRoot Build(ConfigurationInput input)
    {
        var builder = new ConfigurationBuilder()
            .SetBasePath(AppContext.BaseDirectory)
            .AddJsonFile("appsettings.json", optional: true)
            .AddJsonFile($"appsettings.{EnvironmentName}.json", optional: true)
            .AddEnvironmentVariables("RF_");
        if (input.ConfigFile is { } file)
        {
            var full = Path.GetFullPath(file);
            if (!File.Exists(full)) throw new ConfigurationException($"--config {file}: file not found ({full})");
            builder.AddJsonFile(full, optional: false, reloadOnChange: false);
            CheckSections($"--config {file}", LoadKeys(full));
        }
        var overrides = ParseOverrides(input.Overrides);
        CheckSections("--set", overrides.Keys);
        builder.AddInMemoryCollection(overrides);
        try
        {
            return builder.Build();
        }
        catch (Exception e) when (e is FormatException or InvalidDataException)
        {
            throw new ConfigurationException($"configuration file is not valid JSON: {e.Message}", e);
        }
    }

    /// <summary>Parses <c>Section:Key=value</c> items (array elements as <c>Section:Key:0=value</c>).</summary>
    public static Dictionary<string, string?> ParseOverrides(IEnumerable<string> overrides)
    {
        var result = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var item in overrides)
        {
            int eq = item.IndexOf('=');
            if (eq <= 0 || !item[..eq].Contains(':'))
                throw new ConfigurationException($"--set '{item}': expected Section:Key=value, e.g. Training:LearningRate=0.01");
            result[item[..eq].Trim()] = item[(eq + 1)..];
        }
        return result;
    }

    private static IEnumerable<string> LoadKeys(string path)
    {
        try
        {
            return new ConfigurationBuilder().AddJsonFile(path, optional: false).Build().AsEnumerable().Select(kv => kv.Key).ToList();
        }
        catch (Exception e) when (e is FormatException or InvalidDataException)
        {
            throw new ConfigurationException($"--config {path}: not valid JSON ({e.InnerException?.Message ?? e.Message})", e);
        }
    }

    private static void CheckSections(string origin, IEnumerable<string> keys)
    {
        foreach (var key in keys)
        {
            var section = key.Split(':')[0];
            if (!KnownSections.Contains(section, StringComparer.OrdinalIgnoreCase))
                throw new ConfigurationException($"{origin}: unknown configuration section '{section}' (key '{key}'); known sections: {string.Join(", ", KnownSections)}");
        }
    }
}
