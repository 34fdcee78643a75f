#!/usr/bin/env bash
# Visible Phase II (Theorem P, docs/RESULTS.md Claim 4): the compare jobs of experiments/phase-two/*.json (base vs
# two-phase with the gradient and the preconditioned readout rules, 3 seeds each), through the worker's spool
# runs/spool-phase-two (resumable: rerun after an interruption). Pass job names to run a subset. Then
# experiments/report.py --only phase-two.
COMPARE_SET=phase-two exec "$(dirname "$0")/compare.sh" "$@"
