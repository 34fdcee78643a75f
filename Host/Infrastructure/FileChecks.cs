using System.Runtime.InteropServices;

namespace ResearchFramework.Host.Infrastructure;

/// <summary>File-kind checks that .NET does not expose: a FIFO, socket or device must never be opened as data (opening
/// a FIFO blocks; reading /dev/zero never ends).</summary>
public static class FileChecks
{
    [DllImport("libc", EntryPoint = "stat", SetLastError = true)]
    private static extern int Stat(string path, byte[] buffer);

    [DllImport("libc", EntryPoint = "lstat", SetLastError = true)]
    private static extern int LStat(string path, byte[] buffer);

    // glibc < 2.33 exports stat/lstat only as __xstat/__lxstat (version 1 on x86-64).
    [DllImport("libc", EntryPoint = "__xstat", SetLastError = true)]
    private static extern int XStat(int version, string path, byte[] buffer);

    [DllImport("libc", EntryPoint = "__lxstat", SetLastError = true)]
    private static extern int LXStat(int version, string path, byte[] buffer);

    /// <summary>True for a regular file (S_IFREG of stat, or of lstat when <paramref name="followLinks"/> is false;
    /// x86-64 Linux layout, st_mode at byte 24; glibc before 2.33 through __xstat). Elsewhere (other OS or architecture, whose
    /// struct layout differs): <see cref="File.Exists(string)"/>, i.e. no protection against FIFOs there.</summary>
    public static bool IsRegularFile(string path, bool followLinks = true)
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) return File.Exists(path);
        var buffer = new byte[256];
        try
        {
            if ((followLinks ? Stat(path, buffer) : LStat(path, buffer)) != 0) return false;
        }
        catch (EntryPointNotFoundException)
        {
            if ((followLinks ? XStat(1, path, buffer) : LXStat(1, path, buffer)) != 0) return false;
        }
        return (BitConverter.ToUInt32(buffer, 24) & 0xF000) == 0x8000;
    }
}

/// <summary>Process exits .NET does not offer: <c>_exit</c> ends the process at once, with no shutdown handlers, finalisers
/// or flushing (callers flush what they must first). For a second Ctrl-C and for a fenced worker, where waiting for the
/// graceful path would be wrong.</summary>
public static class NativeProcess
{
    [DllImport("libc", EntryPoint = "_exit")]
    private static extern void Exit(int status);

    /// <summary>Flushes standard output and error, then ends the process with <paramref name="status"/>; never returns.</summary>
    public static void ExitImmediately(int status)
    {
        Console.Out.Flush();
        Console.Error.Flush();
        Exit(status);
    }
}
