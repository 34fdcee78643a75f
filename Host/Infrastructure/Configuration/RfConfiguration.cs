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
        [DataOptions.Section, ModelOptions.Section, TrainingOptions.Section, RecipeOptions.Section, RunOptions.Section, CertificateOptions.Section, EnvironmentSection];

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
            CheckJsonTypes(file, full);
        }
        var overrides = ParseOverrides(input.Overrides);
        CheckSections("--set", overrides.Keys);
        CheckOverrideShapes(overrides.Keys);
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

    /// <summary>The options class behind each bound section.</summary>
    private static readonly Dictionary<string, Type> SectionTypes = new(StringComparer.OrdinalIgnoreCase)
    {
        [DataOptions.Section] = typeof(DataOptions), [ModelOptions.Section] = typeof(ModelOptions),
        [TrainingOptions.Section] = typeof(TrainingOptions), [RecipeOptions.Section] = typeof(RecipeOptions),
        [RunOptions.Section] = typeof(RunOptions), [CertificateOptions.Section] = typeof(CertificateOptions),
    };

    private static System.Reflection.PropertyInfo? PropertyOf(string section, string key) =>
        SectionTypes.TryGetValue(section, out var type)
            ? type.GetProperties().FirstOrDefault(p => p.Name.Equals(key, StringComparison.OrdinalIgnoreCase))
            : null;

    /// <summary>Every key of a <c>--config</c> file has exactly its type: a number for a number, <c>true</c>/<c>false</c>
    /// for a flag, a string for a name, an array of those for a list (the binder would otherwise ignore an array or an
    /// object given for a number and keep the default, silently).</summary>
    private static void CheckJsonTypes(string origin, string path)
    {
        using var document = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path),
            new System.Text.Json.JsonDocumentOptions { CommentHandling = System.Text.Json.JsonCommentHandling.Skip, AllowTrailingCommas = true });
        if (document.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object)
            throw new ConfigurationException($"--config {origin}: the file must hold a JSON object of sections");
        foreach (var section in document.RootElement.EnumerateObject())
        {
            if (!SectionTypes.ContainsKey(section.Name)) continue; // Environment: record-only
            if (section.Value.ValueKind != System.Text.Json.JsonValueKind.Object)
                throw new ConfigurationException($"--config {origin}: section '{section.Name}' must be an object, got {section.Value.ValueKind}");
            foreach (var entry in section.Value.EnumerateObject())
            {
                var property = PropertyOf(section.Name, entry.Name);
                if (property is null) continue; // unknown keys are reported by the options binder, naming the key
                var key = $"{section.Name}:{entry.Name}";
                var type = property.PropertyType;
                if (type.IsArray)
                {
                    if (entry.Value.ValueKind != System.Text.Json.JsonValueKind.Array)
                        throw TypeError(origin, key, "an array", entry.Value);
                    foreach (var item in entry.Value.EnumerateArray()) CheckScalar(origin, key + "[]", type.GetElementType()!, item);
                }
                else CheckScalar(origin, key, type, entry.Value);
            }
        }
    }

    private static void CheckScalar(string origin, string key, Type type, System.Text.Json.JsonElement value)
    {
        var kind = value.ValueKind;
        bool ok = Type.GetTypeCode(Nullable.GetUnderlyingType(type) ?? type) switch
        {
            TypeCode.Int32 or TypeCode.Int64 => kind == System.Text.Json.JsonValueKind.Number && value.TryGetInt64(out _),
            TypeCode.Double or TypeCode.Single => kind == System.Text.Json.JsonValueKind.Number,
            TypeCode.Boolean => kind is System.Text.Json.JsonValueKind.True or System.Text.Json.JsonValueKind.False,
            TypeCode.String => kind == System.Text.Json.JsonValueKind.String,
            _ => true,
        };
        if (!ok) throw TypeError(origin, key, type == typeof(string) ? "a string" : type == typeof(bool) ? "true or false" :
                                 type == typeof(int) || type == typeof(long) ? "an integer" : "a number", value);
    }

    private static ConfigurationException TypeError(string origin, string key, string expected, System.Text.Json.JsonElement value) =>
        new($"--config {origin}: key '{key}' must be {expected}, got {value.ValueKind} {value.GetRawText()}");

    /// <summary>A <c>--set</c> key addresses exactly a key (or an element of a list key): <c>Training:LearningRate:0</c>
    /// for a number would be ignored by the binder.</summary>
    private static void CheckOverrideShapes(IEnumerable<string> keys)
    {
        foreach (var key in keys)
        {
            var parts = key.Split(':');
            if (parts.Length < 2 || !SectionTypes.ContainsKey(parts[0])) continue;
            var property = PropertyOf(parts[0], parts[1]);
            if (property is null) continue;
            var depth = property.PropertyType.IsArray ? 3 : 2;
            if (parts.Length > depth || (property.PropertyType.IsArray && parts.Length == 3 && !int.TryParse(parts[2], out _)))
                throw new ConfigurationException($"--set '{key}': '{parts[0]}:{parts[1]}' is {(property.PropertyType.IsArray ? "a list (address an element as Section:Key:0)" : "a single value")}");
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
