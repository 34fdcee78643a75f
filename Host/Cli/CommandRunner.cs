using ResearchFramework.Host.Data;
using ResearchFramework.Host.Data.Fetch;
using ResearchFramework.Host.Infrastructure.Configuration;

namespace ResearchFramework.Host.Cli;

/// <summary>Runs a handler and turns the expected failures into one clear line on standard error and an exit code.</summary>
public static class CommandRunner
{
    public static int Run(string command, Func<int> handler)
    {
        try
        {
            return handler();
        }
        catch (ConfigurationException e)
        {
            return Fail(command, e.Message, ExitCodes.Usage);
        }
        catch (Exception e) when (e is DataFetchException or DataFormatException or DataManifestException or MatrixFormatException
                                      or FileNotFoundException or DirectoryNotFoundException)
        {
            return Fail(command, e.Message, ExitCodes.Failure);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or InvalidDataException
                                      or UnauthorizedAccessException)
        {
            // Failures of the work itself (e.g. a diverged run whose features are NaN): one line, exit 1; details with RF_LOG_LEVEL=Debug.
            if (Environment.GetEnvironmentVariable("RF_LOG_LEVEL") is { } level && level.Equals("debug", StringComparison.OrdinalIgnoreCase))
                Console.Error.WriteLine(e);
            return Fail(command, e.Message, ExitCodes.Failure);
        }
    }

    private static int Fail(string command, string message, int code)
    {
        Console.Error.WriteLine($"rf {command}: error: {message}");
        return code;
    }
}
