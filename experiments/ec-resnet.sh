#!/usr/bin/env bash
# Claim 2: EC holds data-dependently for pre-activation ResNet-18 with batch norm at the default
# stage taps (layer1..layer4, concatenated), at initialisation (evaluation mode), for growing n
# until the time budget; compared with the single 512k-feature layer after global pooling
# (tap "flatten"), which cannot have rank n > 512k + 1. Width multiplier k (0.25 by default: the
# narrow variant; 1.0 is the full ResNet-18) and the time budget per dataset are arguments.
# Resumable: finished cases leave runs/ec-resnet/<case>.done.
# Usage: experiments/ec-resnet.sh [RF] [k] [budget-seconds]
set -uo pipefail
cd "$(dirname "$0")/.."
RF=${1:-Host/bin/Release/net10.0/rf}
k=${2:-0.25}
budget=${3:-900}
mkdir -p runs/ec-resnet
for dataset in mnist fashion-mnist; do
  "$RF" data fetch "$dataset" >/dev/null || { echo "cannot fetch $dataset" >&2; exit 1; }
  start=$(date +%s)
  for n in 128 256 512 1024 2048 4096; do
    for taps in stages pooled; do
      case_name="$dataset-k$k-n$n-$taps"
      [ -f "runs/ec-resnet/$case_name.done" ] && continue
      if [ $(( $(date +%s) - start )) -gt "$budget" ]; then echo "time budget reached for $dataset at n=$n"; break 2; fi
      tapset=()
      [ "$taps" = pooled ] && tapset=(--set "Model:Taps:0=flatten")
      echo "== $case_name"
      /usr/bin/time -f "peak RSS %M KB, wall %e s" -o "runs/ec-resnet/$case_name.time" \
        "$RF" certify --config experiments/configs/ec-resnet.json --set "Data:Dataset=$dataset" --set "Data:TrainSubset=$n" \
          --set "Model:WidthMultiplier=$k" "${tapset[@]}" --set "Run:RunName=$case_name" --subset "$n"
      touch "runs/ec-resnet/$case_name.done"
    done
  done
done
