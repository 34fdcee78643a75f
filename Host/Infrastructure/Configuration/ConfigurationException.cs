namespace ResearchFramework.Host.Infrastructure.Configuration;

/// <summary>The configuration is invalid; the message names the offending key(s). Raised before any work starts.</summary>
public sealed class ConfigurationException(string message, Exception? inner = null) : Exception(message, inner);
