#!/usr/bin/env bash
# Claim 1, the width-2 and softplus rows (issue #15): are their float32 feature matrices full rank only through float32
# rounding? The same certificate at the default initialisation (`rf certify`, seed 0, m = 2n) with the network and
# its features in float64 (Model:Precision=float64: the weights are drawn in float64, a different draw from the same
# distribution as the float32 rows of experiments/ec-fc.sh). Narrow width 32 with tanh is the control.
# Resumable: a finished case leaves runs/ec-fc-float64/<case>.done and is skipped.
# Usage: [DATASETS="mnist fashion-mnist"] [SIZES="256 1024"] [SPECS="tanh-2 softplus-2 softplus-32 tanh-32"] experiments/ec-fc-float64.sh [RF]; then experiments/report.py --only ec-fc-margins
set -uo pipefail
cd "$(dirname "$0")/.."
RF=${1:-Host/bin/Release/net10.0/rf}
mkdir -p runs/ec-fc-float64
for dataset in ${DATASETS:-mnist fashion-mnist}; do
  "$RF" data fetch "$dataset" >/dev/null || { echo "cannot fetch $dataset" >&2; exit 1; }
  for n in ${SIZES:-256 1024}; do
    for spec in ${SPECS:-tanh-2 softplus-2 softplus-32 tanh-32}; do
      act=${spec%-*} narrow=${spec#*-} wide=$((2 * n))
      case_name="$dataset-n$n-$act-w$narrow-m$wide"
      [ -f "runs/ec-fc-float64/$case_name.done" ] && continue
      echo "== $case_name (float64)"
      "$RF" certify --config experiments/configs/ec-fc.json --set "Data:Dataset=$dataset" --set "Data:TrainSubset=$n" \
        --set "Model:Activation=$act" --set "Model:HiddenWidths:0=$narrow" --set "Model:WideWidth=$wide" \
        --set Model:Precision=float64 --set Run:RunsDirectory=runs/ec-fc-float64 --set "Run:RunName=init64-$case_name" --subset "$n"
      touch "runs/ec-fc-float64/$case_name.done"
    done
  done
done
