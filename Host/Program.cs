using ResearchFramework.Host.Cli;

namespace ResearchFramework.Host;

/// <summary>Entry point of the <c>rf</c> command.</summary>
public static class Program
{
    /// <summary>Runs <c>rf</c> with the invariant culture (see <see cref="Infrastructure.InvariantCulture"/>): numbers are
    /// printed and written as <c>0.139</c> under any locale; libtorch's large buffers on huge pages
    /// (<see cref="ResearchFramework.MathCore.HugePages"/>: asked for before anything loads libtorch), and libtorch loaded on
    /// another thread while a computing command starts (<see cref="Infrastructure.TorchPreload"/>).</summary>
    public static int Main(string[] args)
    {
        ResearchFramework.MathCore.HugePages.request();
        Infrastructure.InvariantCulture.Apply();
        var parse = RootCommandFactory.Create().Parse(args);
        var preload = Infrastructure.TorchPreload.StartIfNeeded(parse);
        try { return parse.Invoke(); }
        finally { Infrastructure.TorchPreload.Finish(preload); }
    }
}
