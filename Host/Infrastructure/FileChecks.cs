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

    /// <summary>True for a regular file (S_IFREG of stat, or of lstat when <paramref name="followLinks"/> is false;
    /// x86-64 Linux layout, st_mode at byte 24). Elsewhere: <see cref="File.Exists(string)"/>.</summary>
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
            return File.Exists(path); // glibc < 2.33 exports no stat symbol
        }
        return (BitConverter.ToUInt32(buffer, 24) & 0xF000) == 0x8000;
    }
}
