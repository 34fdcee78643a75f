#!/usr/bin/env bash
# Issue #13 item 5: the visible Phase II on a whole training set — the compare jobs of experiments/phase-two-full/*.json
# (base vs two-phase with the preconditioned readout of Theorem P, frozen body, λ = 0), through the worker's spool
# runs/spool-phase-two-full. Resumable: run it again after any interruption (the worker resumes the job from its last
# checkpoint; the switch's tiled certificate resumes from its tile files in the run directory).
#   resnet-mnist-full   ResNet-18 (k = 1, stage taps m = 96,000), all 60,000 MNIST training images, Adam, batch 128,
#                       τ = 300, T = 360, one seed; Certificate: tiled, tiles of 2048, 14 GB in memory. Φ̃_τ (46 GB in
#                       float64) is streamed (docs/theory.md §4 "Φ̃ streamed"): certified from row blocks, its factor
#                       from the certificate's Gram tiles, the rows kept for Phase II (7 GB in memory, ≈ 20 GB in
#                       float32 row files).
# Disk: ≈ 23 GB of feature row files + ≈ 15 GB of Gram tiles + ≈ 15 GB of factor tiles at the peak, all in the switch
# certificate's kept folder until the run completes. A resume after the switch reads them back instead of forming them
# again: the factor's finished tiles (a stop inside the factor loses at most one tile; a stop after it, none), else the
# factor from the Gram tiles (no second Gram); the feature rows and outputs beyond the memory budget (no forward passes
# for them). The worker starts a killed job again as long as it made progress since its last start.
# Memory: the tile budget (14 GB) + the network and one row block; nothing else heavy may run beside it.
# Then: experiments/report.py --only phase-two-full
set -uo pipefail
# Freed tiles must go back to the system (experiments/full-set.sh: glibc's dynamic mmap threshold kept them).
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-4194304}
COMPARE_SET=phase-two-full exec "$(dirname "$0")/compare.sh" "$@"
