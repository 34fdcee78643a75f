#!/usr/bin/env bash
# rf certify --matrix on one .npy: the in-process dense engine and --engine scalapack under mpirun with P = 1, 2, 4
# ranks on localhost, one after the other in one run (ratios side by side), whole process wall time each.
#   benchmarks/scalapack.sh [n m seed [block]]     (default 4096 16384 20261127, NB = 256)
# Needs a Release build (./build.sh setup) and .ci/install-scalapack.sh's packages. One BLAS thread per rank for P ≥ 2
# (OPENBLAS_NUM_THREADS=1); P = 1 runs OpenBLAS on all cores (nproc threads), the dense engine libtorch's default threads.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-4096}; m=${2:-16384}; seed=${3:-20261127}; block=${4:-256}
dir=$(mktemp -d /tmp/rf-scalapack-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
file="$dir/F.npy"
dotnet benchmarks/bin/Release/net10.0/Benchmarks.dll gen-npy "$file" "$n" "$m" "$seed" >/dev/null
rf=$PWD/Host/bin/Release/net10.0/rf
run() { # label, command...; prints "label seconds verdict sigma_min"
  local label=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$dir/out.txt" 2>"$dir/err-$label.txt" || true
  t1=$(date +%s.%N)
  local verdict sigma
  verdict=$(grep -m1 'verdict:' "$dir/out.txt" | sed 's/.*verdict: //')
  sigma=$(grep -m1 'σ_min ≥' "$dir/out.txt" | sed 's/.*σ_min ≥ \([^ ]*\).*/\1/')
  echo "$label $(echo "$t1 - $t0" | bc -l) ${verdict:-?} ${sigma:-?}"
}
load0=$(cut -d' ' -f1-3 /proc/loadavg)
results=()
results+=("$(run dense "$rf" certify --matrix "$file" --engine dense --json "$dir/dense.json")")
for p in 1 2 4; do
  threads=$([ "$p" -gt 1 ] && echo 1 || nproc)
  results+=("$(run "scalapack-P$p" env OPENBLAS_NUM_THREADS="$threads" mpirun --allow-run-as-root --oversubscribe -np "$p" \
    -x OPENBLAS_NUM_THREADS "$rf" certify --matrix "$file" --engine scalapack --block "$block" --json "$dir/s$p.json")")
done
dense=$(echo "${results[0]}" | awk '{print $2}')
echo "load average before: $load0"
echo "| engine | wall s | ratio to dense | verdict | σ_min ≥ |"
echo "|---|---|---|---|---|"
for r in "${results[@]}"; do
  set -- $r
  printf '| %s | %.1f | %.2f | %s | %s |\n' "$1" "$2" "$(echo "$2 / $dense" | bc -l)" "$3" "$4"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
for p in 1 2 4; do # rank 0's phase times
  echo "P = $p: $(grep -h 'rf certify: scalapack: \(Gram\|pdpotrf\|λ_max\|λ_min\)' "$dir/err-scalapack-P$p.txt" | sed 's/rf certify: scalapack: //' | paste -sd ';' -)"
done
