using System.Diagnostics;
using System.Globalization;
using BenchmarkDotNet.Running;
using ResearchFramework.MathCore;
using static TorchSharp.torch;

namespace ResearchFramework.Benchmarks;

/// <summary>
/// Console modes of the benchmark executable (docs/BENCHMARKS.md, experiments/bench-certificate.sh):
/// <list type="bullet">
/// <item><c>bench [BenchmarkDotNet args]</c>: certificate vs bare mm + cholesky, in process.</item>
/// <item><c>gen-npy FILE n m seed</c>: writes the seeded float32 Gaussian matrix as .npy.</item>
/// <item><c>certify-npy FILE</c>: loads a float32 .npy and certifies it (the "rf"-like whole process).</item>
/// <item><c>stream-certify n m seed</c> / <c>stream-bare n m seed</c>: one streamed run, for /usr/bin/time -v;
/// <c>stream-certify-scoped</c> wraps each block's Add in a caller-side dispose scope.</item>
/// <item><c>pairs n m memory|memory-native|streamed k</c>: bare and certificate alternated k times, median ratio
/// (memory: Certify.certifyMatrix; memory-native: DenseNative.certifyMatrix, CertificateEngine's dense route).</item>
/// <item><c>pairs-native n m k</c>: the same on native buffers (<see cref="DenseNative"/>, `rf certify --matrix`'s route), with its phases.</item>
/// <item><c>symv n k</c>: the Lanczos's product on a mirrored n × n Gram, 63 at a time, by the lower- and the
/// upper-triangle dsymv (OpenBLAS's two kernels), alternated k times.</item>
/// <item><c>mirror n k</c>: NativeBlas.mirrorLower against the tensor-copy mirror it replaced, alternated k times.</item>
/// <item><c>kernel-rates n k</c>: GFLOP/s of the certificate's float64 kernels (gemm, syrk, potrf) on this machine.</item>
/// <item><c>gram-chunks b m chunk k</c>: a b × b Gram tile of m columns in chunks (the tiled engine's order) vs one product.</item>
/// <item><c>phases n m</c>: where the dense certificate's time goes, its steps timed one by one on the library's own
/// functions, beside the bare syrk + Cholesky (twice).</item>
/// <item><c>panel-cholesky n k s …</c>: LAPACK's potrf against the dense route's panel-ordered Cholesky, k alternations.</item>
/// <item><c>tiled-order n m b chunk/panel …</c>: the tiled engine's Gram and factorisation seconds per blocked order.</item>
/// <item><c>recipe-overhead [k]</c>: hand loop vs base run vs two-phase run, and RSS per epoch (<see cref="RecipeOverhead"/>).</item>
/// <item><c>recipe-steps [k]</c>: ms per step after the switch: base, damped Phase II (no guard), frozen Phase II.</item>
/// </list>
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var mode = args.Length == 0 ? "bench" : args[0];
        var rest = args.Skip(1).ToArray();
        ResearchFramework.MathCore.HugePages.request();
        InitializeDeviceType(TorchSharp.DeviceType.CPU);
        switch (mode)
        {
            case "recipe-steps":
                return RecipeOverhead.StepCosts(rest.Length > 0 ? int.Parse(rest[0], CultureInfo.InvariantCulture) : 2);
            case "main-job-steps":
                return RecipeOverhead.MainJobSteps(rest.Length > 0 ? int.Parse(rest[0], CultureInfo.InvariantCulture) : 3);
            case "recipe-overhead":
                return RecipeOverhead.Run(rest.Length > 0 ? int.Parse(rest[0], CultureInfo.InvariantCulture) : 3);
            case "bench":
                BenchmarkRunner.Run<CertificateBenchmarks>(BenchConfig.Create(), rest);
                return 0;
            case "gen-npy":
                {
                    var (n, m, seed) = (Int(rest[1]), Int(rest[2]), Long(rest[3]));
                    var clock = Stopwatch.StartNew();
                    using var phi = Matrices.InMemory(n, m, seed);
                    Npy.WriteFloat32(rest[0], phi);
                    Console.WriteLine($"wrote {rest[0]}: {n} x {m} float32, seed {seed}, {clock.Elapsed.TotalSeconds:F2} s");
                    return 0;
                }
            case "certify-npy":
                {
                    var clock = Stopwatch.StartNew();
                    using var phi = Npy.ReadFloat32(rest[0]);
                    var loaded = clock.Elapsed.TotalSeconds;
                    var subject = ExpressivitySubject.OfMatrix(Path.GetFileName(rest[0]), (int)phi.shape[0], (int)phi.shape[1], false);
                    var cert = Certify.certifyMatrix(Certify.defaults, subject, phi);
                    // CERTIFY_REPEAT=k: certify k times in this process (cold vs warm).
                    var repeat = int.TryParse(Environment.GetEnvironmentVariable("CERTIFY_REPEAT"), out var k) ? k : 1;
                    for (var r = 2; r <= repeat; r++)
                    {
                        Console.WriteLine($"  certificate run {r - 1}: {cert.ElapsedSeconds:F2} s");
                        cert = Certify.certifyMatrix(Certify.defaults, subject, phi);
                    }
                    Console.WriteLine($"certify-npy {rest[0]}: {phi.shape[0]} x {phi.shape[1]}: verdict {cert.Verdict}, " +
                                      $"sigma_min >= {cert.SigmaMinLower:G6}, sigma_max ~ {cert.SigmaMaxEstimate:G6}; " +
                                      $"load {loaded:F2} s, certificate {cert.ElapsedSeconds:F2} s, in-Main total {clock.Elapsed.TotalSeconds:F2} s; " +
                                      $"VmHWM {Mem.Read("VmHWM") / 1048576.0:F0} MiB");
                    return cert.Verdict == Verdict.Certified ? 0 : 2;
                }
            case "stream-certify":
            case "stream-certify-scoped":
            case "stream-bare":
                {
                    var (n, m, seed) = (Int(rest[0]), Int(rest[1]), Long(rest[2]));
                    var clock = Stopwatch.StartNew();
                    string what;
                    if (mode != "stream-bare")
                    {
                        var cert = Workloads.CertifyStreamed(n, m, seed, scopePerBlock: mode == "stream-certify-scoped");
                        what = $"verdict {cert.Verdict}, sigma_min >= {cert.SigmaMinLower:G6}";
                    }
                    else
                    {
                        what = $"bare mm+cholesky, L[n-1,n-1] = {Workloads.BareStreamed(n, m, seed):G6}";
                    }
                    Console.WriteLine($"{mode} {n} x {m} (streamed, Phi never materialised): {what}; " +
                                      $"{clock.Elapsed.TotalSeconds:F2} s; VmHWM {Mem.Read("VmHWM") / 1048576.0:F0} MiB; " +
                                      $"Phi as float32 would be {(double)n * m * 4 / 1048576.0:F0} MiB");
                    return 0;
                }
            case "warm-shift":
                {
                    // The rank guard's certificate with and without its warm shift (Certify.Options.WarmShift = s_ref²,
                    // WarmShiftFloor = (s_ref/2)²; its best case: s_ref is this matrix's own bound, no drift), side by side on the same n × m' matrix, k alternated pairs after a
                    // warm-up pair; tiles of b when b > 0 (the tiled engine, in memory), else the dense route.
                    var (n, m, k, b) = (Int(rest[0]), Int(rest[1]), Int(rest[2]), rest.Length > 3 ? Int(rest[3]) : 0);
                    using var phi = Matrices.InMemory(n, m, CertificateBenchmarks.Seed);
                    var subject = ExpressivitySubject.OfMatrix("bench", n, m, true);
                    Certificate Certify_(Certify.Options o) => b > 0
                        ? Tiled.certifyMatrix(o, Tiled.settings(b, 1L << 34, null, "bench", null, new Action<string>(_ => { }), CancellationToken.None), subject, phi)
                        : Certify.certifyMatrix(o, subject, phi);
                    var reference = Certify_(Certify.defaults);
                    var s = reference.SigmaMinLower;
                    var warmOptions = Certify.withWarmShift(s * s, 0.25 * s * s, Certify.defaults);
                    var plainTimes = new List<double>();
                    var warmTimes = new List<double>();
                    Certificate? plain = null, warm = null;
                    for (var i = 0; i <= k; i++)
                    {
                        var sw = Stopwatch.StartNew();
                        plain = Certify_(Certify.defaults);
                        var tp = sw.Elapsed.TotalSeconds;
                        sw.Restart();
                        warm = Certify_(warmOptions);
                        var tw = sw.Elapsed.TotalSeconds;
                        Console.WriteLine(FormattableString.Invariant($"  pair {i}{(i == 0 ? " (warm-up)" : "")}: plain {tp:F3} s, warm shift {tw:F3} s"));
                        if (i == 0) continue;
                        plainTimes.Add(tp); warmTimes.Add(tw);
                    }
                    var ratios = plainTimes.Zip(warmTimes, (p, w) => w / p).OrderBy(r => r).ToList();
                    plainTimes.Sort(); warmTimes.Sort();
                    var where = b > 0 ? $"tiles of {b}" : "dense";
                    Console.WriteLine(FormattableString.Invariant(
                        $"RESULT warm-shift n={n} m={m} {where}: plain median {plainTimes[k / 2]:F3} s ({plain!.Terms.ShiftAttempts} shifted Cholesky, σ_min ≥ {plain.SigmaMinLower:G4}), warm shift median {warmTimes[k / 2]:F3} s ({warm!.Terms.ShiftAttempts} shifted Cholesky, σ_min ≥ {warm.SigmaMinLower:G4}, {warm.Verdict}); warm / plain per pair: median {ratios[k / 2]:F3} (min {ratios[0]:F3}, max {ratios[^1]:F3})"));
                    return 0;
                }
            case "tiled-order":
                {
                    // The tiled engine's blocked orders side by side in one process: each setting "chunk/panel" (Gram
                    // chunk columns c, tile Cholesky panel s; 0: whole tiles) certifies the same n × m matrix in memory
                    // (tiles of b); the Gram and factorisation phases' seconds and the constants h_G, h_C.
                    var (n, m, b) = (Int(rest[0]), Int(rest[1]), Int(rest[2]));
                    var settingsList = rest.Skip(3).Select(t => t.Split('/')).Select(p => (Chunk: Int(p[0]), Panel: Int(p[1]))).ToList();
                    using var phi = Matrices.InMemory(n, m, CertificateBenchmarks.Seed);
                    var subject = ExpressivitySubject.OfMatrix("bench", n, m, true);
                    // the first setting once more first, as a warm-up (not counted)
                    foreach (var (rep, (chunk, panel)) in settingsList.Take(1).Select(x => (0, x)).Concat(settingsList.Select(x => (1, x))))
                        {
                            var lines = new List<string>();
                            var settings = Tiled.withBlockedOrder(chunk, panel,
                                Tiled.settings(b, 1L << 34, null, "bench", null, new Action<string>(lines.Add), CancellationToken.None));
                            var sw = Stopwatch.StartNew();
                            var cert = Tiled.certifyMatrix(Certify.defaults, settings, subject, phi);
                            var total = sw.Elapsed.TotalSeconds;
                            double Seconds(string prefix) => lines.Where(l => l.StartsWith(prefix, StringComparison.Ordinal) && l.Contains(" tiles ("))
                                .Select(l => { var i = l.LastIndexOf(" in ", StringComparison.Ordinal); var j = l.IndexOf(" s,", i, StringComparison.Ordinal);
                                               return double.Parse(l.Substring(i + 4, j - i - 4), CultureInfo.InvariantCulture); }).Sum();
                            Console.WriteLine($"{(rep == 0 ? "warm-up " : "")}tiled-order n={n} m={m} b={b} chunk={chunk} panel={panel}: " +
                                              $"gram {Seconds("gram"):F2} s, factorisations {Seconds("cholesky"):F2} s, total {total:F2} s; " +
                                              $"h_G {cert.Terms.AccumulationGammaIndex}, h_C {cert.Terms.CholeskyGammaIndex}; {cert.Verdict}");
                        }
                    return 0;
                }
            case "pairs":
                {
                    // Alternates bare / certificate k times in one process: per-pair ratios are robust to load drift.
                    var (n, m, streamed, k) = (Int(rest[0]), Int(rest[1]), rest[2] == "streamed", Int(rest[3]));
                    var native = rest[2] == "memory-native";   // the engine's dense route: DenseNative.certifyMatrix
                    using var phi = streamed ? null : Matrices.InMemory(n, m, CertificateBenchmarks.Seed);
                    var ratios = new List<double>();
                    for (var i = 0; i <= k; i++)
                    {
                        var sw = Stopwatch.StartNew();
                        if (streamed) Workloads.BareStreamed(n, m, CertificateBenchmarks.Seed); else Workloads.BareInMemory(phi!);
                        var bare = sw.Elapsed.TotalSeconds;
                        sw.Restart();
                        var cert = streamed ? Workloads.CertifyStreamed(n, m, CertificateBenchmarks.Seed)
                                 : native ? Workloads.CertifyInMemoryNative(phi!) : Workloads.CertifyInMemory(phi!);
                        var c = sw.Elapsed.TotalSeconds;
                        Console.WriteLine($"pair {i}{(i == 0 ? " (warm-up, not counted)" : "")}: bare {bare:F3} s, certificate {c:F3} s ({cert.Verdict}), ratio {c / bare:F3}");
                        if (i > 0) ratios.Add(c / bare);
                    }
                    ratios.Sort();
                    Console.WriteLine($"RESULT pairs {n}x{m} {rest[2]}: median ratio {ratios[ratios.Count / 2]:F3} " +
                                      $"(min {ratios[0]:F3}, max {ratios[^1]:F3}, {ratios.Count} pairs)");
                    return 0;
                }
            case "pairs-native":
                {
                    // The dense certificate on native buffers (DenseNative, what `rf certify --matrix` runs on OpenBLAS) against
                    // a bare float64 syrk + Cholesky on the same kernels and the same kind of buffers, alternated k times after a
                    // warm-up pair; then one certificate with its operator's steps timed (phases).
                    var (n, m, k) = (Int(rest[0]), Int(rest[1]), Int(rest[2]));
                    using var phi = NativeWorkloads.Gaussian(n, m, CertificateBenchmarks.Seed);
                    var ratios = new List<double>();
                    for (var i = 0; i <= k; i++)
                    {
                        var sw = Stopwatch.StartNew();
                        NativeWorkloads.Bare(phi, n, m);
                        var bare = sw.Elapsed.TotalSeconds;
                        sw.Restart();
                        var cert = NativeWorkloads.Certify(phi, n, m, null);
                        var c = sw.Elapsed.TotalSeconds;
                        Console.WriteLine($"pair {i}{(i == 0 ? " (warm-up, not counted)" : "")}: bare {bare:F3} s, certificate {c:F3} s ({cert.Verdict}, σ_min ≥ {cert.SigmaMinLower:G6}), ratio {c / bare:F3}");
                        if (i > 0) ratios.Add(c / bare);
                    }
                    ratios.Sort();
                    var phases = new Dictionary<string, double>();
                    var timed = Stopwatch.StartNew();
                    NativeWorkloads.Certify(phi, n, m, phases);
                    var total = timed.Elapsed.TotalSeconds;
                    Console.WriteLine($"phases: total {total:F3} s = " + string.Join(" + ", phases.Select(p => $"{p.Key} {p.Value:F3}")) +
                                      $" + rest {total - phases.Values.Sum():F3}");
                    Console.WriteLine($"RESULT pairs-native {n}x{m}: median ratio {ratios[ratios.Count / 2]:F3} " +
                                      $"(min {ratios[0]:F3}, max {ratios[^1]:F3}, {ratios.Count} pairs); {NativeBlas.describe()}");
                    return 0;
                }
            case "symv":
                {
                    // DenseNative's Lanczos products (63 of them at 2048 × 8192) on a symmetric n × n matrix stored whole:
                    // NativeBlas.Raw.symvLower (row-major lower = OpenBLAS's column-major upper kernel) against symvUpper.
                    var (n, k) = (Int(rest[0]), Int(rest[1]));
                    using var a = DenseNative.Buffer.OfDoubles((long)n * n);
                    var entries = a.Doubles(checked(n * n));
                    var rng = new Random(1);
                    for (var i = 0; i < n; i++)
                        for (var j = 0; j <= i; j++) entries[i * n + j] = entries[j * n + i] = rng.NextDouble() - 0.5;
                    using var x = DenseNative.Buffer.OfDoubles(n);
                    using var y = DenseNative.Buffer.OfDoubles(n);
                    x.Doubles(n).Fill(1.0);
                    var lowers = new List<double>();
                    var uppers = new List<double>();
                    for (var rep = 0; rep <= k; rep++)
                    {
                        var sw = Stopwatch.StartNew();
                        for (var i = 0; i < 63; i++) NativeBlas.Raw.symvLower(n, a.Pointer, n, x.Pointer, y.Pointer);
                        var lower = sw.Elapsed.TotalMilliseconds;
                        sw.Restart();
                        for (var i = 0; i < 63; i++) NativeBlas.Raw.symvUpper(n, a.Pointer, n, x.Pointer, y.Pointer);
                        var upper = sw.Elapsed.TotalMilliseconds;
                        if (rep > 0) { lowers.Add(lower); uppers.Add(upper); }
                    }
                    lowers.Sort();
                    uppers.Sort();
                    Console.WriteLine(FormattableString.Invariant(
                        $"RESULT symv n={n}: 63 products, lower triangle median {lowers[k / 2]:F1} ms (min {lowers[0]:F1}), upper triangle median {uppers[k / 2]:F1} ms (min {uppers[0]:F1}), {k} pairs"));
                    return 0;
                }
            case "mirror":
                {
                    // NativeBlas.mirrorLower (blocked copies within the storage) against the tensor-copy mirror it
                    // replaced (512-row blocks: tril + transposed tril on the diagonal, a transposed copy elsewhere),
                    // alternated k times on an n × n float64 matrix.
                    var (n, k) = (Int(rest[0]), Int(rest[1]));
                    using var a = randn(new long[] { n, n }, dtype: float64);
                    var olds = new List<double>();
                    var news = new List<double>();
                    for (var rep = 0; rep < k; rep++)
                    {
                        var sw = Stopwatch.StartNew();
                        TensorCopyMirror(a);
                        olds.Add(sw.Elapsed.TotalMilliseconds);
                        sw.Restart();
                        NativeBlas.mirrorLower(a);
                        news.Add(sw.Elapsed.TotalMilliseconds);
                    }
                    olds.Sort();
                    news.Sort();
                    Console.WriteLine(FormattableString.Invariant(
                        $"RESULT mirror n={n}: tensor copies median {olds[k / 2]:F1} ms (min {olds[0]:F1}), blocked copies median {news[k / 2]:F1} ms (min {news[0]:F1}), {k} pairs"));
                    return 0;
                }
            case "kernel-rates":
                {
                    // The machine's float64 kernel rates on the certificate's kernels (NativeBlas), n × n × k.
                    var (n, k) = (Int(rest[0]), Int(rest[1]));
                    Console.WriteLine($"kernels: {NativeBlas.describe()}; threads {get_num_threads()}");
                    using var a = Matrices.InMemory(n, k, CertificateBenchmarks.Seed).to(float64);
                    using var c = zeros(new long[] { n, n }, dtype: float64);
                    for (var rep = 0; rep < 3; rep++)
                    {
                        var sw = Stopwatch.StartNew();
                        NativeBlas.gemmNT(1.0, a, a, 0.0, c);
                        var gemm = sw.Elapsed.TotalSeconds;
                        sw.Restart();
                        NativeBlas.syrkLower(1.0, a, 0.0, c);
                        var syrk = sw.Elapsed.TotalSeconds;
                        c.diagonal().add_(k);
                        sw.Restart();
                        var info = NativeBlas.potrfLower(c);
                        var potrf = sw.Elapsed.TotalSeconds;
                        Console.WriteLine(FormattableString.Invariant(
                            $"RESULT kernel-rates n={n} k={k}: gemm {2.0 * n * n * k / gemm / 1e9:F1} GFLOP/s ({gemm:F3} s), syrk {1.0 * n * n * k / syrk / 1e9:F1} GFLOP/s ({syrk:F3} s), potrf {Math.Pow(n, 3) / 3 / potrf / 1e9:F1} GFLOP/s ({potrf:F3} s, info {info})"));
                    }
                    return 0;
                }
            case "panel-cholesky":
                {
                    // The dense route's factorisation: LAPACK's potrf on the whole n × n matrix against the panel order
                    // (TileCholesky.factorInPlace, panels of s, docs/theory.md §3 "Tile Cholesky in panels"), alternated
                    // k times on copies of the same SPD matrix: what the constant min(n + 1, 2s + ⌈n/s⌉ + 1) costs.
                    var (n, k) = (Int(rest[0]), Int(rest[1]));
                    var panels = rest.Skip(2).Select(Int).ToArray();
                    Console.WriteLine($"kernels: {NativeBlas.describe()}; threads {get_num_threads()}");
                    using var a = Matrices.InMemory(n, n + 64, CertificateBenchmarks.Seed).to(float64);
                    using var g = zeros(new long[] { n, n }, dtype: float64);
                    NativeBlas.syrkLower(1.0, a, 0.0, g);
                    g.diagonal().add_(n);
                    var times = new Dictionary<int, List<double>>();
                    for (var rep = 0; rep <= k; rep++)
                        foreach (var s in new[] { 0 }.Concat(panels))
                        {
                            using var c = g.clone();
                            var sw = Stopwatch.StartNew();
                            var ok = TileCholesky.factorInPlace(s, c);
                            var t = sw.Elapsed.TotalSeconds;
                            if (!ok) throw new InvalidOperationException("not positive definite");
                            if (rep > 0) { if (!times.ContainsKey(s)) times[s] = new(); times[s].Add(t); }
                        }
                    double Median(List<double> v) { v.Sort(); return v[v.Count / 2]; }
                    var lapack = Median(times[0]);
                    foreach (var (s, v) in times)
                        Console.WriteLine(FormattableString.Invariant(
                            $"RESULT panel-cholesky n={n} panel={(s == 0 ? "whole (LAPACK)" : s.ToString(CultureInfo.InvariantCulture))}: median {Median(v):F3} s of {v.Count}, {Median(v) / lapack:F2}x LAPACK, h_C {TileCholesky.depth(n, n, s)}"));
                    return 0;
                }
            case "gram-chunks":
                {
                    // A Gram tile (b × b, m columns) as one product (chunk 0) against the tiled engine's chunked order
                    // (Tiled.gramTile, `chunk` columns per product, docs/theory.md §3 "Blocked accumulation"), off-diagonal
                    // (gemm) and diagonal (syrk), alternated k times: what the smaller constant costs.
                    var (b, m, chunk, k) = (Int(rest[0]), Int(rest[1]), Int(rest[2]), Int(rest[3]));
                    Console.WriteLine($"kernels: {NativeBlas.describe()}; threads {get_num_threads()}");
                    using var ri = Matrices.InMemory(b, m, CertificateBenchmarks.Seed).to(float64);
                    using var rj = Matrices.InMemory(b, m, CertificateBenchmarks.Seed + 1).to(float64);
                    foreach (var diagonal in new[] { false, true })
                    {
                        var ratios = new List<double>();
                        double Time(int c) { var sw = Stopwatch.StartNew(); using var g = Tiled.gramTile(c, true, ri, rj, diagonal); return sw.Elapsed.TotalSeconds; }
                        Time(chunk); // warm-up
                        for (var i = 0; i < k; i++)
                        {
                            var one = Time(0);
                            var chunked = Time(chunk);
                            ratios.Add(chunked / one);
                            Console.WriteLine(FormattableString.Invariant($"  {(diagonal ? "syrk" : "gemm")} pair {i}: one product {one:F3} s, chunks of {chunk} {chunked:F3} s"));
                        }
                        ratios.Sort();
                        Console.WriteLine(FormattableString.Invariant(
                            $"RESULT gram-chunks {(diagonal ? "diagonal (syrk)" : "off-diagonal (gemm)")} b={b} m={m} chunk={chunk}: chunked / one product, median {ratios[ratios.Count / 2]:F3} (min {ratios[0]:F3}, max {ratios[^1]:F3}, {ratios.Count} pairs); h {Gram.accumulationDepth(m, true, chunk)} instead of {m + 1}"));
                    }
                    return 0;
                }
            case "phases":
                {
                    // The dense certificate's steps timed one by one on the library's own functions (the duplicate scan,
                    // private, is the end-to-end time minus the others), beside the bare syrk + Cholesky.
                    var (n, m) = (Int(rest[0]), Int(rest[1]));
                    using var phi = Matrices.InMemory(n, m, CertificateBenchmarks.Seed);
                    for (var rep = 0; rep < 2; rep++)
                    {
                        var sw = Stopwatch.StartNew();
                        double Lap() { var s = sw.Elapsed.TotalSeconds; sw.Restart(); return s; }
                        var bare = Workloads.BareInMemory(phi); var tBare = Lap();
                        var cert = Workloads.CertifyInMemory(phi); var tCert = Lap();
                        using var gram0 = Gram.ofMatrix(Gram.defaultChunkColumns, false, phi); var tGram = Lap();
                        var (g, _) = Gram.scaleBy(true, gram0); var tScale = Lap();
                        var krylov = Certify.estimateRitz(Certify.defaults.KrylovSteps, g.Gram); var lmax = krylov.LambdaMax; var tLmax = Lap();
                        using var work = empty_like(g.Gram);   // as the certificate: one work matrix for its factorisations
                        // the certificate's λ_min estimate: the Ritz shift 0.9·θ_min when θ_min settled (no factorisation of
                        // its own), else inverse iteration with the Cholesky of fl G and its first shift 0.75·λ̂
                        var ritz = Certify.ritzShiftApplies(Certify.defaults, krylov);
                        var shift = ritz ? Certify.defaults.RitzShiftFraction * krylov.LambdaMinRitz : 0.75 * Certify.estimateLambdaMinIn(work, 16, g.Gram);
                        var tLmin = Lap();
                        // the certificate's order of the two factorisations (LAPACK's when it chose any order)
                        var panel = cert.Terms.CholeskyGammaIndex == n + 1 ? 0 : Certify.defaults.CholeskyPanel;
                        bool shifted, trial;
                        { work.copy_(g.Gram); using (var d = work.diagonal()) d.sub_(shift); shifted = Certify.choleskyDiagonal(panel, work) != null; }
                        var tShift = Lap();
                        // the certificate's trials t = f·λ̂_max in its order, up to the first success (each failure is one more factorisation)
                        var trials = 0;
                        trial = false;
                        foreach (var f in Certify.defaults.LambdaMaxFactors)
                        {
                            trials++;
                            work.copy_(g.Gram).neg_(); using (var d = work.diagonal()) d.add_(f * lmax); trial = Certify.choleskyDiagonal(panel, work) != null;
                            if (trial) break;
                        }
                        var tTrial = Lap();
                        var rest2 = tCert - tGram - tScale - tLmax - tLmin - tShift - tTrial;
                        Console.WriteLine(FormattableString.Invariant(
                            $"RESULT phases {n}x{m} rep {rep}: bare {tBare:F3}; certificate {tCert:F3} ({cert.Verdict}, attempts {cert.Terms.ShiftAttempts}, h_C {cert.Terms.CholeskyGammaIndex}) = gram {tGram:F3} + scale {tScale:F3} + λmax est {tLmax:F3} + λmin est {tLmin:F3}{(ritz ? " (the Ritz shift: none)" : "")} + shifted {tShift:F3}{(shifted ? "" : " (failed)")} + σ_max trial(s) {tTrial:F3} ({trials} tried{(trial ? "" : ", all failed")}; the certificate's: {cert.Terms.LambdaMaxTrialAttempts}) + rest (scan, copies) {rest2:F3}; the scaling (in rest's sum) {tScale:F3}"));
                    }
                    return 0;
                }
            default:
                Console.Error.WriteLine($"unknown mode '{mode}'");
                return 64;
        }
    }

    static int Int(string s) => int.Parse(s, CultureInfo.InvariantCulture);

    /// <summary>The mirror NativeBlas.mirrorLower had before its blocked copies (the baseline of <c>mirror</c>).</summary>
    static void TensorCopyMirror(TorchSharp.torch.Tensor c)
    {
        var n = (int)c.shape[0];
        const int r = 512;
        using var scope = NewDisposeScope();
        var blocks = (n + r - 1) / r;
        for (var i = 0; i < blocks; i++)
        {
            var ri = Math.Min(r, n - i * r);
            for (var j = 0; j <= i; j++)
            {
                var rj = Math.Min(r, n - j * r);
                var lower = c.narrow(0, i * r, ri).narrow(1, j * r, rj);
                if (i == j) lower.copy_(lower.tril().add(lower.tril(-1).t()));
                else c.narrow(0, j * r, rj).narrow(1, i * r, ri).copy_(lower.t());
            }
        }
    }
    static long Long(string s) => long.Parse(s, CultureInfo.InvariantCulture);
}
