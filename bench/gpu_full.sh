#!/usr/bin/env bash
# The whole course pipeline on one GPU, timed, for the variants named (default: the course's two).
#
#   bench/gpu_full.sh [VARIANT ...] [-- extra run.py options, e.g. --precision=bf16]
#
# The extra options go to every training step; the evaluation steps get only those
# evaluation takes (run.py's list, options.USES; give each as --name=value).
# `bench/gpu_full.sh vanilla -- --max_steps=1 --device=cpu` checks the whole script
# on a CPU in about 30 s.
#
# VARIANT: vanilla, synthesizer, perceiver or rope. vanilla also runs the course's
# finetune-without-pretraining steps. Each variant: pretrain (650 epochs), finetune,
# dev and test evaluation, with the course settings and the fast path. Every step's
# wall time, the dev accuracies, the GPU's name and its peak memory are printed and,
# where $OUT is set (the device tool's output folder), appended to $OUT/gpu_full.tsv
# as each step ends, so a run cut short still leaves its figures. The course data
# comes from src/data, or is linked there from ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/../src"
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
PY=${PYTHON:-python}
# run.py refuses options a function does not use (e.g. --precision or --max_steps with evaluate).
takes=" $("$PY" -c 'from submission.options import USES; print(" ".join(USES["evaluate"]))') "
eval_opts=()
for o in "$@"; do
    if [[ "$takes" == *" ${o%%=*} "* ]]; then eval_opts+=("$o"); fi
done
data=$("$PY" -c 'from submission.files import course_data_dir; print(course_data_dir() or "")')
[ -n "$data" ] || { echo "error: the course data is missing: put it in src/data (see src/data/README.md)" >&2; exit 2; }
mkdir -p data
for f in wiki.txt birth_places_train.tsv birth_dev.tsv birth_test_inputs.tsv birth_test.tsv; do
    [ -e "data/$f" ] || ln -s "$data/$f" "data/$f"
done
gpu=$("$PY" -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU (cpu)")')
echo "device: $gpu; torch $("$PY" -c 'import torch; print(torch.__version__)'); variants: ${variants[*]}"
tsv=${OUT:+$OUT/gpu_full.tsv}
[ -n "$tsv" ] && printf 'step\tseconds\tresult\tdevice\n' > "$tsv"
summary=()
total_start=$(date +%s.%N)
step() {
    local name=$1; shift
    local t0; t0=$(date +%s.%N)
    local out; out=$(./run.sh "$name" "$@" 2>&1 | tee /dev/stderr | grep -E '^Correct:|no targets' || true)
    local dt; dt=$(awk "BEGIN{print $(date +%s.%N) - $t0}")
    # Training steps: the median step, tokens per second and peak memory from the run's metrics log.
    local log; log=$(ls -t submission/*.params.log.jsonl 2>/dev/null | head -1)
    if [[ "$name" != *eval* ]] && [ -n "$log" ]; then
        out=$("$PY" ../bench/measure.py log "$log")
    fi
    summary+=("$(printf '%-40s %8.1f s  %s' "$name" "$dt" "$out")")
    printf '== %s: %.1f s %s\n' "$name" "$dt" "$out"
    [ -n "$tsv" ] && printf '%s\t%.1f\t%s\t%s\n' "$name" "$dt" "$out" "$gpu" >> "$tsv"
    return 0
}
for v in "${variants[@]}"; do
    if [ "$v" = vanilla ]; then
        step vanilla_finetune_without_pretrain "$@"
        step vanilla_eval_dev_without_pretrain "${eval_opts[@]}"
        step vanilla_eval_test_without_pretrain "${eval_opts[@]}"
    fi
    step "${v}_pretrain" "$@"
    step "${v}_finetune_with_pretrain" "$@"
    step "${v}_eval_dev_with_pretrain" "${eval_opts[@]}"
    step "${v}_eval_test_with_pretrain" "${eval_opts[@]}"
done
echo
echo "== summary ($gpu)"
printf '%s\n' "${summary[@]}"
printf 'total: %.1f s\n' "$(awk "BEGIN{print $(date +%s.%N) - $total_start}")"
