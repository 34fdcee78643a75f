#!/usr/bin/env bash
# Claim 3: same hyper-parameters and iterations, comparable generalisation, plus the guarantee.
# Every experiments/compare/*.json is an `rf compare` job (base vs two-phase, same T, 3 seeds);
# COMPARE_SET=phase-two runs experiments/phase-two/*.json through runs/spool-phase-two instead (experiments/phase-two.sh).
# The jobs go through the worker's spool (runs/spool), so an interrupted run resumes where it
# stopped: rerun this script (or `rf worker --spool runs/spool --once`). Pass job names to run a
# subset, e.g. experiments/compare.sh mlp-mnist-sgdm. Then experiments/report.py.
set -uo pipefail
cd "$(dirname "$0")/.."
RF=${RF:-Host/bin/Release/net10.0/rf}
set=${COMPARE_SET:-compare}
spool=runs/spool$([ "$set" = compare ] || echo "-$set")
mkdir -p "$spool/inbox"
"$RF" data fetch mnist >/dev/null && "$RF" data fetch fashion-mnist >/dev/null || { echo "cannot fetch the data" >&2; exit 1; }
jobs=("$@")
[ ${#jobs[@]} -eq 0 ] && jobs=($(ls experiments/$set/*.json | xargs -n1 basename | sed 's/\.json$//'))
for name in "${jobs[@]}"; do
  # running jobs sit in running/<owner>/ (the worker's lease folder); an interrupted one is resumed from there, never queued again
  if [ -e "$spool/done/$name.json" ] || compgen -G "$spool/running/*/$name.json" >/dev/null || [ -e "$spool/running/$name.json" ] \
     || [ -e "$spool/inbox/$name.json" ]; then continue; fi
  rm -f "$spool/failed/$name.json" "$spool/failed/$name.error.txt"
  cp "experiments/$set/$name.json" "$spool/inbox/$name.json"
done
"$RF" worker --spool "$spool" --once
