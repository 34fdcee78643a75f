#!/usr/bin/env bash
# Claim 1 (SPEC §5): fully-connected nets with narrow hidden layers and one wide layer satisfy EC
# on real data. For MNIST and Fashion-MNIST subsets n = 256, 1024, 4096, narrow widths 2 and 32,
# tanh and softplus:
#   - wide width m = 2n: the certificate at the default (PyTorch) initialisation (`rf certify`) and
#     after Phase I (the switch certificate of `rf train`, τ = 100);
#   - wide width m = n − 1 (the theorem's minimum): the constructive witness of SPEC §5 on the same
#     inputs (`rf prove fc --dataset`), certified;
#   - the negative side: m = n/2 (so m + 1 < n) is Refuted.
# Resumable: a finished case leaves runs/ec-fc/<case>.done and is skipped.
# Usage: [ONLY=REGEX] experiments/ec-fc.sh [RF]   (RF defaults to Host/bin/Release/net10.0/rf); then experiments/report.py
#   ONLY (an extended regex on the case name, e.g. 'n(256|1024)-|-w2-|softplus') runs only the matching cases, so the
#   cases that matter can go first on a slow machine; the rest run on a later call (resumable).
set -uo pipefail
cd "$(dirname "$0")/.."
RF=${1:-Host/bin/Release/net10.0/rf}
mkdir -p runs/ec-fc
for dataset in mnist fashion-mnist; do
  "$RF" data fetch "$dataset" >/dev/null || { echo "cannot fetch $dataset" >&2; exit 1; }
  for n in 256 1024 4096; do
    for act in tanh softplus; do
      for narrow in 2 32; do
        for wide in "$((2 * n))" "$((n / 2))"; do
          [ "$wide" != "$((2 * n))" ] && [ "$act" != tanh ] && continue   # the negative side once per (dataset, n, width)
          case_name="$dataset-n$n-$act-w$narrow-m$wide"
          [ -f "runs/ec-fc/$case_name.done" ] && continue
          [ -n "${ONLY:-}" ] && ! grep -Eq -- "$ONLY" <<<"$case_name" && continue
          common=(--config experiments/configs/ec-fc.json --set "Data:Dataset=$dataset" --set "Data:TrainSubset=$n"
                  --set "Model:Activation=$act" --set "Model:HiddenWidths:0=$narrow" --set "Model:WideWidth=$wide")
          echo "== $case_name"
          "$RF" certify "${common[@]}" --set "Run:RunName=init-$case_name" --subset "$n"
          if [ "$wide" = "$((2 * n))" ]; then
            "$RF" train "${common[@]}" --set "Run:RunName=phase1-$case_name" --set "Training:BatchSize=$(( n < 512 ? n : 512 ))" \
              2> >(tee "runs/ec-fc/phase1-$case_name.stderr" >&2) || true
            "$RF" prove fc --dataset "$dataset" --n "$n" --widths "$narrow,$((n - 1))" --activation "$act" \
              --json "runs/ec-fc/witness-$dataset-n$n-$act-w$narrow.json" || true
          fi
          touch "runs/ec-fc/$case_name.done"
        done
      done
    done
  done
done
