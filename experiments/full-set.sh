#!/usr/bin/env bash
# Issue #12 item 2: EC certificates on whole training sets, on the tiled engine, resumable.
#   resnet-mnist    ResNet-18 (k = 1) stage taps at initialisation (evaluation mode) on all 60,000 MNIST training images
#   resnet-fashion  the same on all 60,000 Fashion-MNIST training images
#   witness         the SPEC §5 witness (tanh, narrow layers 3, 3, one wide layer m = n − 1; Gaussian inputs in R^4, seed 1);
#                   not in the default list (hours at n = 60,000): on the tiled engine Proofs streams the witness's Φ in
#                   row blocks of ≤ 64 MiB (docs/theory.md §4 "Theorem FC"), so memory is the tile budget plus a few
#                   row tiles (2048 × 60,000 float64 = 0.98 GB each), not n² doubles: n = 60,000 fits 24 GB
# Each case runs `rf certify` / `rf prove fc` with `--engine tiled --work-dir runs/full-set/<case>-n<N>/tiles`: tiles,
# spilled feature row tiles and the manifest live there, so a killed run (any moment: Ctrl-C, SIGKILL, a reboot)
# continues from its last finished tile when this script is run again. A finished case leaves
# runs/full-set/<case>-n<N>.json (the certificate), .log and .time (wall seconds summed over the segments of an
# interrupted case, peak RSS in KiB, segments) and is skipped.
# Disk: up to ≈ 4·n² bytes of Gram tiles + 4·n² of one factor beyond the memory budget, plus n·m·4 bytes of spilled
# features while the Gram is formed (n = 60,000, ResNet-18 k = 1: ≈ 23 GB of features, ≈ 29 GB of tiles at most).
# Usage: experiments/full-set.sh [case ...]      (default: resnet-mnist resnet-fashion; N=60000, TILE=2048,
#        TILE_MEMORY_GB=14: the engine's whole budget, tiles beyond it go to files: while the Gram is formed, Gram tiles,
#        a panel of feature row tiles (2048 × 96,000 float64 = 1.5 GB each for the ResNet) and one streamed row tile;
#        before the first factorisation the Gram tiles (14.9 GB at n = 60,000); then one factor's triangle (14.9 GB).
#        The process adds ≈ 2.5 GB (network, libtorch) and transient tiles: keep the budget ≈ machine memory − 10 GB;
#        GRAM_CHUNK, CHOLESKY_PANEL: rf certify's --gram-chunk, --cholesky-panel, default the engine's 1024 and 512)
# Then: experiments/report.py --only full-set   (docs/RESULTS.md)
set -uo pipefail
cd "$(dirname "$0")/.."
RF=${RF:-Host/bin/Release/net10.0/rf}
N=${N:-60000}
TILE=${TILE:-2048}
MEM=${TILE_MEMORY_GB:-14}
# Tiles (32 MiB) are allocated and freed by the thousand: with glibc's dynamic mmap threshold, freed tiles stay in its
# arenas instead of going back to the system, and the n = 60,000 run reached 24 GB of anonymous memory with a 16 GB tile
# budget (OOM-killed, 2026-12-02 17:38 UTC). A fixed threshold sends every allocation of 4 MiB or more through mmap.
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-4194304}
out=runs/full-set
mkdir -p "$out"
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(resnet-mnist resnet-fashion)
for c in "${cases[@]}"; do
  name="$c-n$N"
  [ -s "$out/$name.json" ] && { echo "== $name: done ($out/$name.json)"; continue; }
  echo "== $name (resumes from $out/$name/tiles if a previous run was interrupted)"
  engine=(--engine tiled --tile-size "$TILE" --tile-memory-gb "$MEM" --work-dir "$out/$name/tiles")
  # the blocked order (rf certify only; only the bound's constants depend on it): GRAM_CHUNK=c, CHOLESKY_PANEL=s
  if [ "$c" != witness ]; then
    [ -n "${GRAM_CHUNK:-}" ] && engine+=(--gram-chunk "$GRAM_CHUNK")
    [ -n "${CHOLESKY_PANEL:-}" ] && engine+=(--cholesky-panel "$CHOLESKY_PANEL")
  fi
  case "$c" in
    resnet-mnist|resnet-fashion)
      dataset=mnist; [ "$c" = resnet-fashion ] && dataset=fashion-mnist
      "$RF" data fetch "$dataset" >/dev/null || { echo "cannot fetch $dataset" >&2; exit 1; }
      cmd=("$RF" certify --config experiments/configs/ec-resnet.json --set "Data:Dataset=$dataset" --set "Data:TrainSubset=$N"
           --set "Model:WidthMultiplier=1" --set "Run:RunsDirectory=$out/runs" --set "Run:RunName=$name" --subset "$N"
           "${engine[@]}") ;;
    witness)
      cmd=("$RF" prove fc --n "$N" --widths "3,3,$((N - 1))" --activation tanh --seed 1 "${engine[@]}" --json "$out/$name.json.tmp") ;;
    *) echo "unknown case $c (resnet-mnist, resnet-fashion, witness)" >&2; exit 2 ;;
  esac
  # every segment of an interrupted case is appended: the case's wall time is their sum, its peak RSS their maximum
  /usr/bin/time -a -f "%e %M" -o "$out/$name.segments" "${cmd[@]}" 2>&1 | tee -a "$out/$name.log"
  rc=${PIPESTATUS[0]}
  if [ "$c" != witness ] && [ "$rc" -le 1 ]; then   # rf certify --config writes the certificate into its run directory
    made=$(ls -t "$out"/runs/"$name"*/certificates/init-seed0.json 2>/dev/null | head -1)
    [ -n "$made" ] && cp "$made" "$out/$name.json.tmp"
  fi
  # exit 0 Certified, 1 Refuted/Inconclusive (a result), 2 bad input, other: interrupted or failed (rerun to resume)
  if [ -s "$out/$name.json.tmp" ] && [ "$rc" -le 1 ]; then
    awk '/^[0-9.]+ [0-9]+$/ { w += $1; if ($2 > r) r = $2; k++ } END { printf "%.1f %d %d\n", w, r, k }' "$out/$name.segments" > "$out/$name.time"
    mv "$out/$name.json.tmp" "$out/$name.json"
    rm -rf "$out/$name/tiles"
  else
    echo "== $name: stopped (exit $rc); run the script again to resume" >&2
    exit 1
  fi
done
