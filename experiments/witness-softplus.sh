#!/usr/bin/env bash
# Issue #15: the softplus SPEC §5 witness (narrow layers 3, 3, then one wide layer m = n − 1; Gaussian inputs in R^4,
# seed 1) certified at n = 120 … 4096 by `rf prove fc` with the default certificate route (Auto: the float64 Gram route,
# then the orthogonal route when the Gram route is Inconclusive). Resumable: a size whose certificate exists is skipped.
# Then experiments/report.py --only witness-softplus.
set -euo pipefail
cd "$(dirname "$0")/.."
RF=${RF:-Host/bin/Release/net10.0/rf}
out=runs/witness-softplus
mkdir -p "$out"
for n in ${SIZES:-120 500 1024 2048 4096}; do
  [ -s "$out/n$n.json" ] && continue
  start=$(date +%s%N)
  /usr/bin/time -f "%M" -o "$out/n$n.rss" "$RF" prove fc --n "$n" --widths "3,3,$((n - 1))" --activation softplus --seed 1 \
    --json "$out/n$n.json.tmp" > "$out/n$n.log" 2>&1 || true   # exit 1/2 = Refuted/Inconclusive: still a result
  echo $(( ($(date +%s%N) - start) / 1000000 )) > "$out/n$n.wall-ms"
  mv "$out/n$n.json.tmp" "$out/n$n.json"
  tail -n 3 "$out/n$n.log"
done
