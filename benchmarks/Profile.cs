using System.Diagnostics;
using ResearchFramework.MathCore;
using static TorchSharp.torch;

namespace ResearchFramework.Benchmarks;

/// <summary>
/// Where the certificate's time goes: the steps of Gram.ColumnBlockAccumulator.Add and of
/// Certify.certifyGram, re-run one by one (private steps replicated op for op, public ones called).
/// </summary>
public static class Profile
{
    sealed class Timer
    {
        public readonly List<(string Name, double Seconds, bool InCertificate, bool InBare)> Rows = new();
        readonly Dictionary<string, int> index = new();
        public T Time<T>(string name, bool inCert, bool inBare, Func<T> f)
        {
            var sw = Stopwatch.StartNew();
            var r = f();
            var s = sw.Elapsed.TotalSeconds;
            if (index.TryGetValue(name, out var k)) Rows[k] = (name, Rows[k].Seconds + s, inCert, inBare);
            else { index[name] = Rows.Count; Rows.Add((name, s, inCert, inBare)); }
            return r;
        }
    }

    public static void Run(int n, int m, long seed, bool streamed)
    {
        var t = new Timer();
        using var phi = streamed ? null : Matrices.InMemory(n, m, seed);
        using var gram = zeros(new long[] { n, n }, dtype: float64);
        using var rowSquares = zeros(new long[] { n }, dtype: float64);
        var index = 0;
        var start = 0;
        foreach (var width in Matrices.Widths(m))
        {
            using var scope = NewDisposeScope();
            var block = streamed
                ? t.Time("generate block (randn, float32)", true, true, () => Matrices.Block(n, width, seed, index))
                : phi!.narrow(1, start, width);
            index++; start += width;
            // Gram.validateBlock: finite, and no non-zero below the underflow guard (1e-150).
            t.Time("validateBlock: isfinite().all()", true, false, () => isfinite(block).all().item<bool>());
            t.Time("validateBlock: abs, gt, lt, and, any", true, false, () =>
            {
                var a = block.abs();
                return a.gt(0.0).logical_and(a.lt(1e-150)).any().item<bool>();
            });
            var b = t.Time("block to float64", true, true, () => block.detach().to(float64, CPU));
            t.Time("Gram addmm_ (float64 GEMM)", true, true, () => gram.addmm_(b, b.t()));
            t.Time("row squares b.square().sum(1)", true, false, () => rowSquares.add_(b.square().sum(1)));
        }
        var opts = Certify.defaults;
        var lambdaMax = t.Time($"λ_max estimate: Certify.estimateLambdaMax (Krylov, {opts.KrylovSteps} matvecs)", true, false, () => Certify.estimateLambdaMax(opts.KrylovSteps, gram));
        var lambda = t.Time($"λ_min estimate: Certify.estimateLambdaMin (Cholesky + {opts.InverseIterations} inverse its)", true, false,
            () => Certify.estimateLambdaMin(opts.InverseIterations, gram));
        // its two parts
        double invIters;
        {
            using var scope = NewDisposeScope();
            var sw = Stopwatch.StartNew();
            var (l, info) = linalg.cholesky_ex(gram, false);
            info.item<int>();
            var chol = sw.Elapsed.TotalSeconds;
            sw.Restart();
            using var gen = new Generator(20210405UL, CPU);
            var v = randn(new long[] { n, 1 }, dtype: float64, generator: gen);
            v = v.div(v.norm());
            for (var k = 0; k < opts.InverseIterations; k++)
            {
                var y = linalg.solve_triangular(l, v, upper: false);
                var x = linalg.solve_triangular(l.t(), y, upper: true);
                v = x.div(x.norm());
            }
            v.t().mm(gram.mm(v)).item<double>();
            invIters = sw.Elapsed.TotalSeconds;
            Console.WriteLine($"  (estimateLambdaMin parts: cholesky_ex {chol:F3} s, {opts.InverseIterations} inverse iterations {invIters:F3} s)");
        }
        if (!streamed)
        {
            t.Time("duplicate-candidate scan (n² distances)", true, false, () =>
            {
                using var scope = NewDisposeScope();
                var d = gram.diagonal();
                var dist = d.unsqueeze(1).add(d.unsqueeze(0)).sub(gram.mul(2.0));
                return dist.le(1e-6).triu(1).nonzero().shape[0];
            });
        }
        t.Time("shifted Cholesky: clone, diag −= c, cholesky_ex", true, false, () =>
        {
            using var scope = NewDisposeScope();
            var shifted = gram.clone();
            shifted.diagonal().sub_(0.75 * lambda);
            var (_, info) = linalg.cholesky_ex(shifted, false);
            return info.item<int>();
        });
        t.Time("σ_max trial: −fl(G), diag += 1.001·λ̂_max, cholesky_ex", true, false, () =>
        {
            using var scope = NewDisposeScope();
            var trial = gram.neg();
            trial.diagonal().add_(1.001 * lambdaMax);
            var (_, info) = linalg.cholesky_ex(trial, false);
            return info.item<int>();
        });
        t.Time("bare: linalg.cholesky", false, true, () =>
        {
            using var scope = NewDisposeScope();
            return linalg.cholesky(gram)[n - 1, n - 1].item<double>();
        });
        // The post-Gram part of the real certificate, end to end, for comparison with the sum of its steps.
        var post = t.Time("(check) Certify.certifyGram end to end, post-Gram", false, false, () =>
        {
            var g = new Gram.GramMatrix(gram.clone(), n, m, rowSquares.sum().item<double>() * 1.0000001, Array.Empty<int>(), m, "float32", 0.0);
            using var _ = g;
            var subject = ExpressivitySubject.OfMatrix("profile", n, m, false);
            Microsoft.FSharp.Core.FSharpOption<Microsoft.FSharp.Core.FSharpFunc<int, Microsoft.FSharp.Core.FSharpFunc<int, bool>>> rows =
                streamed ? null! : Microsoft.FSharp.Core.FuncConvert.FromFunc<int, int, bool>((i, j) => false);
            return Certify.certifyGram(opts, subject, rows, Stopwatch.StartNew(), g);
        });
        var certTotal = t.Rows.Where(r => r.InCertificate && !r.Name.StartsWith("λ_min estimate")).Sum(r => r.Seconds) + 0.0;
        // estimateLambdaMin counted once (the row), its parts were timed apart.
        certTotal = t.Rows.Where(r => r.InCertificate).Sum(r => r.Seconds);
        var bareTotal = t.Rows.Where(r => r.InBare).Sum(r => r.Seconds);
        Console.WriteLine($"profile {n} x {m} {(streamed ? "streamed" : "in memory")} (seed {seed}), verdict of the check: {post.Verdict}, shift attempts {post.Terms.ShiftAttempts}");
        Console.WriteLine();
        Console.WriteLine("| step | s | % of certificate | in bare LA? |");
        Console.WriteLine("|---|---:|---:|:---:|");
        foreach (var r in t.Rows)
            Console.WriteLine($"| {r.Name} | {r.Seconds:F3} | {(r.InCertificate ? (100 * r.Seconds / certTotal).ToString("F1") + " %" : "—")} | {(r.InBare ? "yes" : "")} |");
        Console.WriteLine($"| **sum, certificate steps** | **{certTotal:F3}** | 100 % | |");
        Console.WriteLine($"| **sum, bare LA steps** | **{bareTotal:F3}** | | |");
        Console.WriteLine($"| ratio certificate / bare | {certTotal / bareTotal:F3} | | |");
    }
}
