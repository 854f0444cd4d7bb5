#!/usr/bin/env bash
# The whole course pipeline on one GPU, timed, for the variants named (default: the course's two).
#
#   bench/gpu_full.sh [VARIANT ...] [-- run.py options, e.g. --precision=bf16]
#
# VARIANT: vanilla, synthesizer, perceiver or rope; vanilla also runs the course's
# finetune without pretraining and its evaluations. Each variant: pretrain (the
# course's 650 epochs), finetune, dev and test evaluation, with the course settings on
# the fast path (bench/pipeline.py). The options after `--` go to every step that
# takes them. Name one variant a call where a call's time is limited: one variant is
# about 15,000 pretraining steps.
#
# It writes into a run folder of its own, runs/gpu_full/<date-time-pid>/ (never into
# src/submission, and never resuming anything), and prints every step's wall time,
# the dev accuracies, the GPU's name and peak memory; where $OUT is set, each step's
# row is appended to $OUT/gpu_full.tsv as the step ends, so a run cut short keeps its
# figures. A failed step ends the script with its exit status.
#
# Without a CUDA GPU it refuses, unless told to run on the CPU: `bench/gpu_full.sh
# vanilla -- --max_steps=1 --device=cpu` runs the whole script on a CPU in about a minute.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
repo=$(cd "$(dirname "$0")/.." && pwd)
variants=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case "$1" in
        vanilla|synthesizer|perceiver|rope) variants+=("$1") ;;
        *) echo "error: unknown variant '$1'; use vanilla, synthesizer, perceiver or rope" >&2; exit 2 ;;
    esac
    shift
done
[ "${1:-}" = "--" ] && shift
[ ${#variants[@]} -gt 0 ] || variants=(vanilla synthesizer)
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
else
    PY=$(command -v python || command -v python3) || { echo "error: no python on PATH; activate the project environment (see README.md) or set PYTHON" >&2; exit 2; }
fi
if [[ " $* " != *" --device=cpu "* ]] && ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
    echo "error: no CUDA GPU here (or this torch has no CUDA); run it on a GPU machine, or add -- --device=cpu to run it on the CPU" >&2
    exit 2
fi
run=$repo/runs/gpu_full/$(date -u +%Y%m%d-%H%M%S)-$$
# Every variant's options checked before anything is made: a misspelt option ends it here.
for v in "${variants[@]}"; do
    "$PY" "$repo/bench/pipeline.py" "$v" --out "$run/$v" --check -- "$@"
done
tsv=${OUT:-$run}/gpu_full.tsv
mkdir -p "$run" "$(dirname "$tsv")"
echo "run folder: $run; rows: $tsv"
start=$(date +%s)
for v in "${variants[@]}"; do
    extra=()
    [ "$v" = vanilla ] && extra=(--nopretrain)
    "$PY" "$repo/bench/pipeline.py" "$v" --out "$run/$v" --tsv "$tsv" --label gpu_full ${extra[@]+"${extra[@]}"} -- "$@"
done
echo
echo "== summary"
column -t -s "$(printf '\t')" "$tsv" 2>/dev/null || cat "$tsv"
echo "total: $(( $(date +%s) - start )) s"
