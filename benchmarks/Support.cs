using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using ResearchFramework.MathCore;
using TorchSharp;
using static TorchSharp.torch;

namespace ResearchFramework.Benchmarks;

/// <summary>Seeded feature matrices: Gaussian float32, in memory or as column blocks made on the fly.</summary>
public static class Matrices
{
    /// <summary>Columns per streamed block (the same as Certify.defaults.BlockColumns).</summary>
    public const int BlockColumns = 4096;

    /// <summary>An n × m float32 matrix from a generator seeded with <paramref name="seed"/>.</summary>
    public static Tensor InMemory(int n, int m, long seed)
    {
        using var gen = new Generator((ulong)seed);
        return randn(new long[] { n, m }, dtype: float32, generator: gen);
    }

    /// <summary>Column block <paramref name="index"/> (n × width) of the streamed matrix; reproducible on its own.</summary>
    public static Tensor Block(int n, int width, long seed, int index)
    {
        using var gen = new Generator((ulong)(seed * 1_000_003L + index));
        return randn(new long[] { n, width }, dtype: float32, generator: gen);
    }

    /// <summary>Widths of the column blocks of an n × m streamed matrix.</summary>
    public static IEnumerable<int> Widths(int m)
    {
        for (var start = 0; start < m; start += BlockColumns) yield return Math.Min(BlockColumns, m - start);
    }
}

/// <summary>Process memory from /proc/self/status, with the peak (VmHWM) reset via /proc/self/clear_refs.</summary>
public static class Mem
{
    /// <summary>A field of /proc/self/status (kB) in bytes; 0 if absent.</summary>
    public static long Read(string key)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(key + ":", StringComparison.Ordinal))
                return long.Parse(line.Substring(key.Length + 1).Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024L;
        return 0;
    }

    /// <summary>Resets VmHWM to the current RSS (Linux: "5" into clear_refs); returns that RSS.</summary>
    public static long ResetPeak()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        return Read("VmRSS");
    }

    /// <summary>Peak RSS and peak growth over the starting RSS, per benchmark case (max over invocations).</summary>
    public static readonly Dictionary<string, (long Peak, long Growth)> Peaks = new();

    /// <summary>Records VmHWM after one operation that started at RSS <paramref name="startRss"/>.</summary>
    public static void Record(string key, long startRss)
    {
        var peak = Read("VmHWM");
        lock (Peaks)
        {
            var old = Peaks.TryGetValue(key, out var v) ? v : (0L, 0L);
            Peaks[key] = (Math.Max(old.Item1, peak), Math.Max(old.Item2, peak - startRss));
        }
    }
}

/// <summary>Minimal .npy I/O for C-order little-endian float32 2-D arrays (format version 1.0).</summary>
public static class Npy
{
    public static void WriteFloat32(string path, Tensor phi)
    {
        using var c = phi.contiguous();
        var header = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({c.shape[0]}, {c.shape[1]}), }}";
        var total = 10 + header.Length + 1;
        header = header + new string(' ', (64 - total % 64) % 64) + "\n";
        using var fs = File.Create(path);
        fs.Write(new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0 });
        fs.Write(BitConverter.GetBytes((ushort)header.Length));
        fs.Write(System.Text.Encoding.ASCII.GetBytes(header));
        // in row chunks: a tensor's byte span is limited to 2 GB
        long rowsPerChunk = Math.Max(1, (1L << 28) / Math.Max(1, c.shape[1] * 4));
        for (long r = 0; r < c.shape[0]; r += rowsPerChunk)
        {
            using var chunk = c.narrow(0, r, Math.Min(rowsPerChunk, c.shape[0] - r)).clone();
            WriteAll(fs, chunk.bytes);
        }
    }

    /// <summary>Reads a float32 .npy straight into a torch tensor (no managed copy of the data).</summary>
    public static Tensor ReadFloat32(string path)
    {
        using var fs = File.OpenRead(path);
        var pre = new byte[10];
        fs.ReadExactly(pre);
        if (pre[0] != 0x93 || pre[1] != (byte)'N' || pre[6] != 1) throw new InvalidDataException($"{path}: not a version-1 .npy file");
        var hlen = BitConverter.ToUInt16(pre, 8);
        var hbytes = new byte[hlen];
        fs.ReadExactly(hbytes);
        var header = System.Text.Encoding.ASCII.GetString(hbytes);
        if (!header.Contains("'<f4'") || !header.Contains("'fortran_order': False"))
            throw new InvalidDataException($"{path}: only C-order little-endian float32 is supported, header {header}");
        var shapeText = header[(header.IndexOf("'shape': (", StringComparison.Ordinal) + 10)..];
        shapeText = shapeText[..shapeText.IndexOf(')')];
        var dims = shapeText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                            .Select(s => long.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        if (dims.Length != 2) throw new InvalidDataException($"{path}: expected a 2-D array, shape ({shapeText})");
        var t = empty(dims, dtype: float32);
        fs.ReadExactly(t.bytes);
        return t;
    }

    static void WriteAll(Stream s, Span<byte> data)
    {
        for (var off = 0; off < data.Length; off += 1 << 26)
            s.Write(data.Slice(off, Math.Min(1 << 26, data.Length - off)));
    }
}

/// <summary>The measured operations: the certificate and the bare linear algebra it cannot avoid.</summary>
public static class Workloads
{
    static Microsoft.FSharp.Core.FSharpOption<Microsoft.FSharp.Core.FSharpFunc<int, Microsoft.FSharp.Core.FSharpFunc<int, bool>>> NoRowAccess =>
        Microsoft.FSharp.Core.FSharpOption<Microsoft.FSharp.Core.FSharpFunc<int, Microsoft.FSharp.Core.FSharpFunc<int, bool>>>.None!;

    /// <summary>Certificate of an in-memory Φ (n × m float32), the public entry point.</summary>
    public static Certificate CertifyInMemory(Tensor phi)
    {
        var subject = ExpressivitySubject.OfMatrix("bench", (int)phi.shape[0], (int)phi.shape[1], false);
        return Certify.certifyMatrix(Certify.defaults, subject, phi);
    }

    /// <summary>The same certificate as CertificateEngine.Certify makes it on the dense engine: on native buffers
    /// (<see cref="DenseNative.certifyMatrix"/>) for this CPU Φ on OpenBLAS.</summary>
    public static Certificate CertifyInMemoryNative(Tensor phi)
    {
        var subject = ExpressivitySubject.OfMatrix("bench", (int)phi.shape[0], (int)phi.shape[1], false);
        return DenseNative.certifyMatrix(Certify.defaults, subject, phi);
    }

    /// <summary>Bare LA for an in-memory Φ: the float64 Gram's lower triangle by one syrk, then one Cholesky, on the
    /// kernels the certificate uses (<see cref="NativeBlas"/>: OpenBLAS when present, else libtorch).</summary>
    public static double BareInMemory(Tensor phi)
    {
        using var scope = NewDisposeScope();
        var n = phi.shape[0];
        var p = phi.to(float64);
        var g = zeros(new long[] { n, n }, dtype: float64);
        NativeBlas.syrkLower(1.0, p, 0.0, g);
        if (NativeBlas.potrfLower(g) != 0) throw new InvalidOperationException("bare Cholesky failed");
        return g[n - 1, n - 1].item<double>();
    }

    /// <summary>Certificate of a streamed n × m Φ: blocks made on the fly, never materialised (rowsEqual = None).</summary>
    public static Certificate CertifyStreamed(int n, int m, long seed, bool scopePerBlock = false)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var acc = new Gram.ColumnBlockAccumulator(n, CPU);
        var index = 0;
        foreach (var width in Matrices.Widths(m))
        {
            // scopePerBlock: a caller-side dispose scope also catches the temporaries that
            // Gram.validateBlock creates outside Add's own scope (see docs/BENCHMARKS.md, memory).
            using var scope = scopePerBlock ? NewDisposeScope() : null;
            using var block = Matrices.Block(n, width, seed, index++);
            acc.Add(block);
        }
        using var gram = acc.Finish();
        var subject = ExpressivitySubject.OfMatrix($"stream seed {seed}", n, m, false);
        return Certify.certifyGram(Certify.defaults, subject, NoRowAccess, clock, gram);
    }

    /// <summary>Bare LA for the same stream: the float64 Gram's lower triangle accumulated by one syrk per block, then
    /// one Cholesky (<see cref="NativeBlas"/>, as the certificate).</summary>
    public static double BareStreamed(int n, int m, long seed)
    {
        using var scope = NewDisposeScope();
        var g = zeros(new long[] { n, n }, dtype: float64);
        var index = 0;
        foreach (var width in Matrices.Widths(m))
        {
            using var inner = NewDisposeScope();
            var b = Matrices.Block(n, width, seed, index++).to(float64);
            NativeBlas.syrkLower(1.0, b, 1.0, g);
        }
        if (NativeBlas.potrfLower(g) != 0) throw new InvalidOperationException("bare Cholesky failed");
        return g[n - 1, n - 1].item<double>();
    }
}

/// <summary>The dense certificate on native buffers (<see cref="DenseNative"/>) and its bare counterpart, on a float32
/// Gaussian Φ held in native memory (row-major n × m).</summary>
public static class NativeWorkloads
{
    /// <summary>n × m float32 standard normal entries (a seeded System.Random, Box–Muller).</summary>
    public static DenseNative.Buffer Gaussian(int n, int m, long seed)
    {
        var buffer = new DenseNative.Buffer(4L * n * m);
        var rng = new Random((int)seed);
        var span = buffer.Floats(checked(n * m));
        for (var i = 0; i < span.Length; i++)
            span[i] = (float)(Math.Sqrt(-2.0 * Math.Log(1.0 - rng.NextDouble())) * Math.Cos(2.0 * Math.PI * rng.NextDouble()));
        return buffer;
    }

    /// <summary>Bare LA, the least work that forms fl(G)'s lower triangle from the float32 Φ and factors it: Φ widened to
    /// float64 one block of 4096 columns at a time into one reused buffer (as the certificate's accumulator reads it), one
    /// syrk per block summed in the Gram itself (β = 1: no separate products, no mirror), one Cholesky; fresh buffers per
    /// call, as the certificate's. Returns L's last diagonal entry.</summary>
    public static unsafe double Bare(DenseNative.Buffer phi, int n, int m)
    {
        var width = Math.Min(Matrices.BlockColumns, m);
        using var block = DenseNative.Buffer.OfDoubles((long)n * width);
        using var g = DenseNative.Buffer.OfDoubles((long)n * n);
        var source = (float*)phi.Pointer;
        var target = (double*)block.Pointer;
        for (var c = 0; c < m; c += width)
        {
            var w = Math.Min(width, m - c);
            for (long r = 0; r < n; r++)
                for (var k = 0; k < w; k++) target[r * w + k] = source[r * m + c + k];
            NativeBlas.Raw.syrkLower(n, w, 1.0, block.Pointer, w, c == 0 ? 0.0 : 1.0, g.Pointer, n);
        }
        if (NativeBlas.Raw.potrfLower(n, g.Pointer, n) != 0) throw new InvalidOperationException("bare Cholesky failed");
        return ((double*)g.Pointer)[(long)n * n - 1];
    }

    /// <summary>The certificate of Φ (no bias column) as `rf certify --matrix` makes it: the Gram read in column blocks of
    /// Certify.defaults' BlockColumns and accumulated as one product (one product first; these Gaussian matrices never
    /// need the blocked retry), then <see cref="DenseNative.certifyAccumulated"/>; with <paramref name="phases"/>, the Gram
    /// and each of the operator's steps timed into it.</summary>
    public static Certificate Certify(DenseNative.Buffer phi, int n, int m, Dictionary<string, double>? phases)
    {
        var clock = Stopwatch.StartNew();
        var options = ResearchFramework.MathCore.Certify.defaults;
        var subject = ExpressivitySubject.OfMatrix("bench", n, m, false);
        var sw = Stopwatch.StartNew();
        DenseNative.NativeGram gram;
        using var work = DenseNative.Buffer.OfDoubles((long)n * n);
        using (var acc = new DenseNative.Accumulator(n, int.MaxValue, work))
        {
            for (var c = 0; c < m; c += options.BlockColumns)
                acc.Add(phi.Pointer + (nint)(4L * c), Math.Min(options.BlockColumns, m - c), m, true);
            gram = acc.Finish();
        }
        using var owned = gram;
        // the duplicate-row scan runs, as on `rf certify --matrix` (which confirms candidates by reading rows again;
        // on these distinct Gaussian rows there is none)
        var rowsEqual = Microsoft.FSharp.Core.FSharpOption<Microsoft.FSharp.Core.FSharpFunc<int, Microsoft.FSharp.Core.FSharpFunc<int, bool>>>.Some(
            Microsoft.FSharp.Core.FuncConvert.FromFunc<int, Microsoft.FSharp.Core.FSharpFunc<int, bool>>(_ =>
                Microsoft.FSharp.Core.FuncConvert.FromFunc<int, bool>(_ => throw new InvalidOperationException("no candidate expected"))));
        if (phases is null) return DenseNative.certifyAccumulatedIn(work, options, subject, rowsEqual, clock, gram);
        phases["gram"] = sw.Elapsed.TotalSeconds;
        sw.Restart();
        var (scaled, scale) = DenseNative.scaleInPlace(gram);
        phases["scale"] = sw.Elapsed.TotalSeconds;
        var op = DenseNative.denseOperator(options, "float32", scale, work, scaled);
        T Timed<T>(string name, Func<T> f)
        {
            var t = Stopwatch.StartNew();
            try { return f(); }
            finally { phases[name] = phases.GetValueOrDefault(name) + t.Elapsed.TotalSeconds; }
        }
        Microsoft.FSharp.Core.FSharpFunc<TIn, TOut> Wrap<TIn, TOut>(string name, Microsoft.FSharp.Core.FSharpFunc<TIn, TOut> f) =>
            Microsoft.FSharp.Core.FuncConvert.FromFunc<TIn, TOut>(x => Timed(name, () => f.Invoke(x)));
        var any = op.AnyOrderCholesky?.Value;
        var timedOp = new Certify.GramOperator(op.Rows, op.Columns, op.SquaredNormSumUpper, op.AccumulationErrorBound, op.AccumulationDepth,
            op.CholeskyDepth, op.ZeroRows, op.ScaleExponent, op.Precision, op.Device, op.Method,
            Wrap("duplicates", op.DuplicateCandidates), Wrap("λmax est", op.EstimateLambdaMax), Wrap("λmin est", op.EstimateLambdaMin),
            Wrap("shifted", op.ShiftedCholesky), Wrap("σ_max trial", op.TrialCholesky),
            any is null ? op.AnyOrderCholesky
                        : Microsoft.FSharp.Core.FSharpOption<Certify.AnyOrderCholesky>.Some(
                              new Certify.AnyOrderCholesky(Wrap("shifted", any.Shifted), Wrap("σ_max trial", any.Trial))));
        return ResearchFramework.MathCore.Certify.certifyOperator(options, subject, rowsEqual, clock, timedOp);
    }
}
