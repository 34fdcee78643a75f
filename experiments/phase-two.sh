#!/usr/bin/env bash
# Visible Phase II (Theorem P): base vs two-phase with the gradient readout rule and with the preconditioned rule.
# Every experiments/phase-two/*.json is an `rf compare` job (base vs two-phase, same T, 3 seeds).
# The jobs go through the worker's spool (runs/spool), so an interrupted run resumes where it
# stopped: rerun this script (or `rf worker --spool runs/spool --once`). Pass job names to run a
# subset, e.g. experiments/phase-two.sh mnist-preconditioned-ridge. Then experiments/report.py.
set -uo pipefail
cd "$(dirname "$0")/.."
RF=${RF:-Host/bin/Release/net10.0/rf}
spool=runs/spool-phase-two
mkdir -p "$spool/inbox"
"$RF" data fetch mnist >/dev/null && "$RF" data fetch fashion-mnist >/dev/null || { echo "cannot fetch the data" >&2; exit 1; }
jobs=("$@")
[ ${#jobs[@]} -eq 0 ] && jobs=($(ls experiments/phase-two/*.json | xargs -n1 basename | sed 's/\.json$//'))
for name in "${jobs[@]}"; do
  if [ -e "$spool/done/$name.json" ] || [ -e "$spool/running/$name.json" ] || [ -e "$spool/inbox/$name.json" ]; then continue; fi
  rm -f "$spool/failed/$name.json" "$spool/failed/$name.error.txt"
  cp "experiments/phase-two/$name.json" "$spool/inbox/$name.json"
done
"$RF" worker --spool "$spool" --once
