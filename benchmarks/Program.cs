namespace ResearchFramework.Benchmarks; static class Program { static int Main() { return 0; } }
