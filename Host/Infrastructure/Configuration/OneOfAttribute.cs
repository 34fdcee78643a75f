using System.ComponentModel.DataAnnotations;

namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>The string (or every element of a string array) must be one of the given values, ignoring case.</summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class OneOfAttribute(params string[] allowed) : ValidationAttribute
{
    public IReadOnlyList<string> Allowed { get; } = allowed;

    public override bool IsValid(object? value) => value switch
    {
        null => true,
        string s => Allowed.Contains(s, StringComparer.OrdinalIgnoreCase),
        IEnumerable<string> items => items.All(s => Allowed.Contains(s, StringComparer.OrdinalIgnoreCase)),
        _ => false,
    };

    public override string FormatErrorMessage(string name) => $"must be one of {string.Join(", ", Allowed)}";
}
