#!/usr/bin/env bash
# Issue #12 item 4: the certificate's speed, measured side by side in one run (docs/BENCHMARKS.md, "Speed").
#   1. kernel rates: GFLOP/s of the float64 gemm / syrk / potrf the certificate runs on (OpenBLAS, then libtorch);
#   2. in process: the certificate against a bare float64 syrk + Cholesky of the same Gram (same kernels),
#      alternated pairs (Benchmarks.dll pairs), on each backend;
#   3. whole processes on the same float32 .npy, interleaved REPEATS times: `rf certify --matrix` (OpenBLAS kernels),
#      the same with RF_BLAS=torch, and numpy.linalg.matrix_rank (Debian numpy on OpenBLAS, run with
#      OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset), wall time and peak RSS from /usr/bin/time;
#   4. scaling: `rf certify --matrix --engine tiled` at n = SCALING_NS (m = 2n), time against the flop model
#      n²m' (syrk Gram) + n³ (three n³/3 Choleskys) at the measured gemm rate.
# Needs Debian python3-numpy + libopenblas0-pthread (SKIP_APT=1 to not install them) and a Release build.
# Usage: experiments/bench-speed.sh   (variables: NPY_SIZES="2048x8192 4096x16384", REPEATS=3, SCALING_NS="4096 8192 12288",
#        BENCH_DIR=/tmp/rf-bench-speed). Output: BENCH_DIR/log.txt and a summary at its end.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RF=$ROOT/Host/bin/Release/net10.0/rf
BENCH="dotnet $ROOT/benchmarks/bin/Release/net10.0/Benchmarks.dll"
DIR=${BENCH_DIR:-/tmp/rf-bench-speed}
NPY_SIZES=${NPY_SIZES:-"2048x8192 4096x16384"}
REPEATS=${REPEATS:-3}
SCALING_NS=${SCALING_NS:-"4096 8192 12288"}
mkdir -p "$DIR"
LOG=$DIR/log.txt
: > "$LOG"
say() { echo "$*" | tee -a "$LOG"; }

if [ "${SKIP_APT:-0}" != 1 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-numpy libopenblas0-pthread >/dev/null 2>&1 \
    || say "apt-get failed: numpy/OpenBLAS must already be installed"
fi
say "== $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(lscpu | grep 'Model name' | sed 's/ \+/ /g')"
say "== $("$RF" env 2>/dev/null | grep -E 'certificate kernels|environment:' | head -2 | tr '\n' ' ')"

say "== 1. kernel rates (n = 4096, k = 8192)"
$BENCH kernel-rates 4096 8192 2>&1 | grep -E "RESULT|kernels" | tee -a "$LOG"
RF_BLAS=torch $BENCH kernel-rates 4096 8192 2>&1 | grep -E "RESULT|kernels" | tee -a "$LOG"

say "== 2. in process: certificate vs bare syrk + Cholesky (alternated pairs)"
for size in $NPY_SIZES; do
  n=${size%x*}; m=${size#*x}
  say "-- $n x $m, OpenBLAS kernels"
  $BENCH pairs "$n" "$m" memory 5 2>&1 | grep -E "RESULT" | tee -a "$LOG"
  say "-- $n x $m, libtorch kernels (RF_BLAS=torch)"
  RF_BLAS=torch $BENCH pairs "$n" "$m" memory 3 2>&1 | grep -E "RESULT" | tee -a "$LOG"
done

timed() { # label, command...: appends "label wall_s rss_kib" to $DIR/times.txt
  local label=$1; shift
  /usr/bin/time -f "TIME %e %M" -o "$DIR/time.tmp" "$@" > "$DIR/out.tmp" 2>&1
  local rc=$?
  read -r _ wall rss < <(grep '^TIME ' "$DIR/time.tmp")
  say "$label: ${wall} s, peak RSS $((rss / 1024)) MiB, rc $rc, $(grep -E '^verdict|^[0-9]+$' "$DIR/out.tmp" | head -1)"
  echo "$label $wall $rss" >> "$DIR/times.txt"
}
say "== 3. whole processes, interleaved"
: > "$DIR/times.txt"
for size in $NPY_SIZES; do
  n=${size%x*}; m=${size#*x}
  f=$DIR/x${n}x${m}.npy
  [ -f "$f" ] || $BENCH gen-npy "$f" "$n" "$m" 20261127 | tee -a "$LOG"
  for r in $(seq 1 "$REPEATS"); do
    timed "$size rf-openblas #$r" "$RF" certify --matrix "$f" --engine dense
    timed "$size rf-libtorch #$r" env RF_BLAS=torch "$RF" certify --matrix "$f" --engine dense
    timed "$size numpy-matrix_rank #$r" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 -c \
      'import sys, numpy as np; print(np.linalg.matrix_rank(np.load(sys.argv[1])))' "$f"
  done
done

say "== 4. scaling (tiled engine, m = 2n, tiles of 2048 in memory)"
for n in $SCALING_NS; do
  f=$DIR/x${n}x$((2 * n)).npy
  [ -f "$f" ] || $BENCH gen-npy "$f" "$n" "$((2 * n))" 20261127 | tee -a "$LOG"
  rm -rf "$DIR/work-$n"
  timed "scaling n=$n m=$((2 * n)) tiled" "$RF" certify --matrix "$f" --engine tiled --tile-size 2048 --work-dir "$DIR/work-$n"
  grep -E "gram:|cholesky|estimates" "$DIR/out.tmp" | sed 's/^/    /' | tee -a "$LOG"
  rm -f "$f"; rm -rf "$DIR/work-$n"
done

say "== summary (medians; Markdown in $DIR/summary.md)"
/usr/bin/python3 - "$LOG" "$DIR/times.txt" > "$DIR/summary.md" <<'EOF'
import sys, re, statistics, collections
log, times = open(sys.argv[1]).read(), sys.argv[2]
out = []
out.append("| kernels | gemm GFLOP/s | syrk GFLOP/s | potrf GFLOP/s |")
out.append("|---|---:|---:|---:|")
rates_by = {}
for block in re.split(r"^kernels: ", log, flags=re.M)[1:]:
    name = block.splitlines()[0].split(";")[0]
    rates = re.findall(r"gemm ([\d.]+) GFLOP/s .*syrk ([\d.]+) GFLOP/s .*potrf ([\d.]+) GFLOP/s", block)
    if rates:
        med = [statistics.median(float(r[i]) for r in rates) for i in range(3)]
        rates_by[name.split()[0]] = med
        out.append(f"| {name} | {med[0]:.1f} | {med[1]:.1f} | {med[2]:.1f} |")
out.append("")
out.append("| Φ (n × m) | kernels | certificate / bare syrk + Cholesky, median of pairs (min–max) |")
out.append("|---|---|---:|")
for size, kind, med, lo, hi in re.findall(r"-- (\d+ x \d+), (\S+) kernels.*?\nRESULT pairs \S+ memory: median ratio ([\d.]+) \(min ([\d.]+), max ([\d.]+)", log, flags=re.S):
    out.append(f"| {size} | {kind} | {med} ({lo}–{hi}) |")
out.append("")
rows = collections.defaultdict(list)
for line in open(times):
    parts = line.split()
    if len(parts) < 4: continue
    label, wall, rss = " ".join(parts[:-2]), float(parts[-2]), int(parts[-1])
    rows[label.split(" #")[0]].append((wall, rss))
med = {k: statistics.median(w for w, _ in v) for k, v in rows.items()}
out.append("| whole process | median wall (s) | runs | peak RSS (MiB) |")
out.append("|---|---:|---:|---:|")
for k, v in rows.items():
    if not k.startswith("scaling"):
        out.append(f"| {k} | {med[k]:.2f} | {len(v)} | {max(r for _, r in v) // 1024} |")
out.append("")
for size in sorted({k.split()[0] for k in rows if k.endswith("rf-openblas")}):
    npy, rf, rt = med.get(f"{size} numpy-matrix_rank"), med.get(f"{size} rf-openblas"), med.get(f"{size} rf-libtorch")
    if npy and rf and rt:
        out.append(f"- **{size}**: numpy `matrix_rank` / `rf certify` = **{npy / rf:.2f}×** (OpenBLAS kernels), {npy / rt:.2f}× (libtorch kernels)")
rate = rates_by.get("OpenBLAS", [float("nan")])[0]
out.append("")
out.append(f"| n | m' | wall (s) | flop model n²m' + n³ | model at the gemm rate ({rate:.1f} GFLOP/s) | fraction of the gemm rate | peak RSS (MiB) |")
out.append("|---:|---:|---:|---:|---:|---:|---:|")
for k, v in rows.items():
    m = re.match(r"scaling n=(\d+) m=(\d+)", k)
    if m:
        n, mm = int(m.group(1)), int(m.group(2)) + 1
        flops = n * n * mm + n ** 3
        ideal = flops / (rate * 1e9)
        out.append(f"| {n} | {mm} | {med[k]:.1f} | {flops:.3g} | {ideal:.1f} s | {ideal / med[k]:.2f} | {max(r for _, r in v) // 1024} |")
print("\n".join(out))
EOF
cat "$DIR/summary.md" | tee -a "$LOG"
