using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>All bound and validated options of one invocation (what <c>config.effective.json</c> records).</summary>
public sealed record RfOptions(DataOptions Data, ModelOptions Model, TrainingOptions Training, RecipeOptions Recipe, RunOptions Run)
{
    /// <summary>Section <c>Certificate</c>: the certificate engine (defaults when absent).</summary>
    public CertificateOptions Certificate { get; init; } = new();

    /// <summary>Binds and validates every section, failing on the first bad section with a
    /// <see cref="ConfigurationException"/> that names the keys.</summary>
    public static RfOptions Load(IConfiguration configuration)
    {
        CheckUnknownKeys(configuration, DataOptions.Section, typeof(DataOptions));
        CheckUnknownKeys(configuration, ModelOptions.Section, typeof(ModelOptions));
        CheckUnknownKeys(configuration, TrainingOptions.Section, typeof(TrainingOptions));
        CheckUnknownKeys(configuration, RecipeOptions.Section, typeof(RecipeOptions));
        CheckUnknownKeys(configuration, RunOptions.Section, typeof(RunOptions));
        CheckUnknownKeys(configuration, CertificateOptions.Section, typeof(CertificateOptions));
        var services = new ServiceCollection();
        services.AddRfOptions(configuration);
        using var provider = services.BuildServiceProvider();
        try
        {
            provider.GetRequiredService<IAsyncStartupValidator>().ValidateAsync(CancellationToken.None).GetAwaiter().GetResult();
            return provider.GetRequiredService<IOptions<RfOptions>>().Value;
        }
        catch (OptionsValidationException e)
        {
            throw new ConfigurationException("invalid configuration:\n  " + string.Join("\n  ", e.Failures), e);
        }
        catch (InvalidOperationException e)
        {
            // The binder: unknown keys (ErrorOnUnknownConfiguration) and unconvertible values both name the key.
            throw new ConfigurationException($"invalid configuration: {e.Message}", e);
        }
        catch (AggregateException e)
        {
            var failures = e.InnerExceptions.OfType<OptionsValidationException>().SelectMany(x => x.Failures);
            throw new ConfigurationException("invalid configuration:\n  " + string.Join("\n  ", failures), e);
        }
    }

    private static void CheckUnknownKeys(IConfiguration configuration, string section, Type optionsType)
    {
        var known = optionsType.GetProperties().Select(p => p.Name).ToArray();
        foreach (var child in configuration.GetSection(section).GetChildren())
            if (!known.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
                throw new ConfigurationException(
                    $"invalid configuration: unknown key '{section}:{child.Key}' (known keys of {section}: {string.Join(", ", known)})");
    }
}

/// <summary>Registers the option classes: bound from their sections (unknown keys are errors), validated by
/// <see cref="SectionValidator{T}"/> on start.</summary>
public static class OptionsRegistration
{
    public static IServiceCollection AddRfOptions(this IServiceCollection services, IConfiguration configuration)
    {
        Add<DataOptions>(services, configuration, DataOptions.Section);
        Add<ModelOptions>(services, configuration, ModelOptions.Section);
        services.PostConfigure<ModelOptions>(o =>
        {
            if (!configuration.GetSection($"{ModelOptions.Section}:{nameof(ModelOptions.HiddenWidths)}").Exists())
                o.HiddenWidths = ModelOptions.DefaultHiddenWidths.ToArray();
        });
        Add<TrainingOptions>(services, configuration, TrainingOptions.Section);
        Add<RecipeOptions>(services, configuration, RecipeOptions.Section);
        Add<RunOptions>(services, configuration, RunOptions.Section);
        Add<CertificateOptions>(services, configuration, CertificateOptions.Section);
        services.AddSingleton<IOptions<RfOptions>>(sp => Options.Create(new RfOptions(
            sp.GetRequiredService<IOptions<DataOptions>>().Value,
            sp.GetRequiredService<IOptions<ModelOptions>>().Value,
            sp.GetRequiredService<IOptions<TrainingOptions>>().Value,
            sp.GetRequiredService<IOptions<RecipeOptions>>().Value,
            sp.GetRequiredService<IOptions<RunOptions>>().Value)
        { Certificate = sp.GetRequiredService<IOptions<CertificateOptions>>().Value }));
        return services;
    }

    private static void Add<T>(IServiceCollection services, IConfiguration configuration, string section) where T : class
    {
        services.AddOptions<T>()
            .Bind(configuration.GetSection(section), binder => binder.ErrorOnUnknownConfiguration = true)
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<T>>(new SectionValidator<T>(section));
    }
}
