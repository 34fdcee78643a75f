#!/usr/bin/env bash
# Tiled vs dense certificate engine, whole `rf certify --matrix` processes, measured side by side (alternating,
# same file, same machine, same load) → the ratio in docs/BENCHMARKS.md ("Tiled engine").
#
#   experiments/bench-tiled.sh [N M REPEATS TILE]     # default 4096 16384 3 2048
#   TILE_MEMORY_GB=1 experiments/bench-tiled.sh 16384 8192 1 2048   # tiles beyond 1 GB only in files
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
n="${1:-4096}"; m="${2:-16384}"; repeats="${3:-3}"; tile="${4:-2048}"
dir="${BENCH_DIR:-/tmp/rf-bench-tiled}"
mkdir -p "$dir"
rf="$root/Host/bin/Release/net10.0/rf"
file="$dir/x${n}x${m}.npy"
[ -f "$file" ] || dotnet "$root/benchmarks/bin/Release/net10.0/Benchmarks.dll" gen-npy "$file" "$n" "$m" 20261127
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$repeats"); do
    for engine in ${ENGINES:-dense tiled}; do
        rm -rf "$dir/$engine.tiles"
        /usr/bin/time -f "%e s wall, %M KiB peak RSS" -o "$dir/time.txt" \
            "$rf" certify --matrix "$file" --engine "$engine" --tile-size "$tile" --work-dir "$dir/$engine.tiles" ${TILE_MEMORY_GB:+--tile-memory-gb "$TILE_MEMORY_GB"} --json "$dir/$engine.json" \
            >"$dir/$engine.out" 2>"$dir/$engine.err" || true
        verdict=$(grep -m1 'verdict:' "$dir/$engine.out" | sed 's/verdict: //')
        sigma=$(grep -m1 'σ_min ≥' "$dir/$engine.out" | sed 's/ *σ_min ≥ \([^ ]*\).*/\1/')
        echo "run $r $engine: $(cat "$dir/time.txt"), $verdict, σ_min ≥ $sigma"
    done
done
