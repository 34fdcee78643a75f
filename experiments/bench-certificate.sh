#!/usr/bin/env bash
# Certificate benchmark (docs/BENCHMARKS.md): certificate vs bare float64 mm + Cholesky (in process,
# BenchmarkDotNet), streamed 4096 x 65536 peak memory, and whole-process certify-npy vs
# numpy.linalg.matrix_rank on the same .npy files. About 9-10 minutes on a 2-core machine.
#
#   experiments/bench-certificate.sh            # everything; log + BDN reports under runs/bench-certificate/<UTC stamp>/
#   SKIP_APT=1 SKIP_BUILD=1 experiments/bench-certificate.sh
#   NPY_SIZES="2048x8192" PROFILE=0 ...          # fewer numpy sizes, no phase table (Benchmarks.dll phases)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SEED=20261127
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${BENCH_OUT:-$ROOT/runs/bench-certificate/$STAMP}
DATA=${BENCH_DATA:-${TMPDIR:-/tmp}/rf-bench-certificate}
NPY_SIZES=${NPY_SIZES:-"2048x8192 4096x16384"}
NPY_REPEATS=${NPY_REPEATS:-2}
mkdir -p "$OUT" "$DATA"
exec > >(tee "$OUT/log.txt") 2>&1

echo "== machine"
date -u +%Y-%m-%dT%H:%M:%SZ
uname -srm
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket)' || true
free -g | head -2
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (other jobs share this machine)"

if [ "${SKIP_APT:-0}" != 1 ]; then
  echo "== numpy reference: Debian python3-numpy + OpenBLAS (pthread)"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-numpy libopenblas0-pthread
fi
/usr/bin/python3 -c 'import numpy; print("numpy", numpy.__version__); numpy.show_config()' 2>&1 | grep -iE 'numpy|openblas|name' | head -8 || true

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "== build"
  dotnet tool restore
  dotnet paket restore
  dotnet build ResearchFramework.sln -c Release -v q -nologo
fi
BENCH=(dotnet "$ROOT/benchmarks/bin/Release/net10.0/Benchmarks.dll")
export BENCH_ARTIFACTS="$OUT/BenchmarkDotNet.Artifacts"

# /usr/bin/time -v, summarised: wall seconds and peak RSS.
timed() {
  local label=$1; shift
  local tv="$OUT/time-$label.txt"
  /usr/bin/time -v -o "$tv" "$@"
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$tv")
  rss=$(awk -F': ' '/Maximum resident set size/{printf "%.0f", $2/1024}' "$tv")
  echo "RESULT $label wall_s=$wall peak_rss_MiB=$rss"
}

echo "== 1. in process (BenchmarkDotNet): certificate vs bare mm + cholesky, 2048 x 8192 in memory"
BENCH_CASES="2048x8192:memory" BENCH_ITERATIONS=5 "${BENCH[@]}" bench
echo "== 1b. bare and certificate alternated 9 times in one process (per-pair ratio, robust to load drift)"
"${BENCH[@]}" pairs 2048 8192 memory 9
echo "== 2. in process (BenchmarkDotNet): certificate vs bare mm + cholesky, 4096 x 65536 streamed"
BENCH_CASES="4096x65536:streamed" BENCH_ITERATIONS=2 "${BENCH[@]}" bench

echo "== 3. whole process: streamed 4096 x 65536 certificate (Phi = 1 GiB float32, never materialised)"
timed stream-certify-4096x65536 "${BENCH[@]}" stream-certify 4096 65536 $SEED

echo "== 4. whole process: certify-npy vs numpy.linalg.matrix_rank on the same .npy"
NUMPY_RANK='import sys, numpy as np; a = np.load(sys.argv[1]); print("numpy matrix_rank", a.shape, a.dtype, "=", np.linalg.matrix_rank(a))'
for size in $NPY_SIZES; do
  n=${size%x*}; m=${size#*x}
  f="$DATA/phi_${size}.npy"
  "${BENCH[@]}" gen-npy "$f" "$n" "$m" $SEED
  reps=$NPY_REPEATS; [ "$size" = "2048x8192" ] || reps=1   # larger sizes once: numpy is the slow side
  for r in $(seq 1 "$reps"); do
    timed "certify-npy-$size-$r" "${BENCH[@]}" certify-npy "$f"
    timed "numpy-rank-$size-$r" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 -c "$NUMPY_RANK" "$f"
  done
  rm -f "$f"
done

if [ "${PROFILE:-1}" = 1 ]; then
  echo "== 5. phases: where the certificate's time goes"
  "${BENCH[@]}" phases 2048 8192
  "${BENCH[@]}" phases 4096 16384
fi
echo "== done $(date -u +%Y-%m-%dT%H:%M:%SZ); log: $OUT/log.txt"
grep '^RESULT' "$OUT/log.txt" || true
