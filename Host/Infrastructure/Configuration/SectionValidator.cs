using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>Runs the DataAnnotations attributes (and <see cref="IValidatableObject"/>) of an options class and
/// reports each failure as <c>Section:Key: message</c>, so the user sees the configuration key to fix.</summary>
public sealed class SectionValidator<T>(string section) : IValidateOptions<T> where T : class
{
    public ValidateOptionsResult Validate(string? name, T options)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        if (results.Count == 0) return ValidateOptionsResult.Success;
        return ValidateOptionsResult.Fail(results.Select(r =>
        {
            var member = r.MemberNames.FirstOrDefault() ?? "?";
            var message = r.ErrorMessage ?? "invalid";
            return $"{section}:{member}: {message} (value: {Describe(typeof(T).GetProperty(member)?.GetValue(options))})";
        }));
    }

    private static string Describe(object? value) => value switch
    {
        null => "null",
        string s => $"'{s}'",
        System.Collections.IEnumerable items => $"[{string.Join(", ", items.Cast<object>())}]",
        _ => Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "?",
    };
}
