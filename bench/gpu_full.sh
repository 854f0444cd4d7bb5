#!/usr/bin/env bash
# The whole course pipeline on one GPU, timed: vanilla (finetune without pretraining,
# pretrain 650 epochs, finetune, dev and test evaluation) and synthesizer (pretrain,
# finetune, dev and test evaluation), with the course settings and the fast path.
#
#   bench/gpu_full.sh [extra run.py options, e.g. --precision=bf16]
#
# Prints each step's wall time and the dev accuracies, and a summary table at the end.
# Uses the course data in src/data, or links it there from ../shared/data when missing.
set -euo pipefail
cd "$(dirname "$0")/../src"
for f in wiki.txt birth_places_train.tsv birth_dev.tsv birth_test_inputs.tsv birth_test.tsv; do
    if [ ! -e "data/$f" ] && [ -e "../../shared/data/$f" ]; then ln -s "$(cd ../../shared/data && pwd)/$f" "data/$f"; fi
    [ -e "data/$f" ] || { echo "error: data/$f missing: put the course data in src/data" >&2; exit 2; }
done
python -c 'import torch; print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU (cpu)"); print("torch", torch.__version__)'
summary=()
total_start=$(date +%s.%N)
step() {
    local name=$1; shift
    local t0; t0=$(date +%s.%N)
    local out; out=$(./run.sh "$name" "$@" 2>&1 | tee /dev/stderr | grep -E '^Correct:|no targets' || true)
    local dt; dt=$(awk "BEGIN{print $(date +%s.%N) - $t0}")
    summary+=("$(printf '%-40s %8.1f s  %s' "$name" "$dt" "$out")")
    printf '== %s: %.1f s %s\n' "$name" "$dt" "$out"
}
step vanilla_finetune_without_pretrain "$@"
step vanilla_eval_dev_without_pretrain "$@"
step vanilla_eval_test_without_pretrain "$@"
step vanilla_pretrain "$@"
step vanilla_finetune_with_pretrain "$@"
step vanilla_eval_dev_with_pretrain "$@"
step vanilla_eval_test_with_pretrain "$@"
step synthesizer_pretrain "$@"
step synthesizer_finetune_with_pretrain "$@"
step synthesizer_eval_dev_with_pretrain "$@"
step synthesizer_eval_test_with_pretrain "$@"
echo
echo "== summary"
printf '%s\n' "${summary[@]}"
printf 'total: %.1f s\n' "$(awk "BEGIN{print $(date +%s.%N) - $total_start}")"
