using ResearchFramework.Host.Cli;

namespace ResearchFramework.Host;

/// <summary>Entry point of the <c>rf</c> command.</summary>
public static class Program
{
    public static int Main(string[] args) => RootCommandFactory.Create().Parse(args).Invoke();
}
