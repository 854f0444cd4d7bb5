#!/usr/bin/env bash
# Behaviour did not move: a short pipeline run from two checkouts gives byte-identical
# params and predictions and the same printed lines.
#
#   bench/same_behaviour.sh BASE [OTHER]      git refs; OTHER defaults to HEAD
#
# Each ref is checked out into a temporary folder, a synthetic world (world.py of OTHER,
# 150 people) is linked into its src/data, and the same ./run.sh commands run in each
# (one thread): short exact-mode training (--exact, fp32), then longer fast-path
# training whose models answer in the course's format, evaluated exactly and fast.
# After every command the params and predictions files are kept. The exact-mode
# commands' files and every command's printed lines must match bit for bit; the
# fast path's are reported (a change that moves its numbers shows here). Same machine, same
# threads: fp32 results differ in their last bits between CPUs, so compare
# checkouts on one machine, never against stored digests.
set -euo pipefail
base=${1:?usage: bench/same_behaviour.sh BASE [OTHER]}
other=${2:-HEAD}
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
work=$(mktemp -d)
trap 'git -C "$repo" worktree remove --force "$work/a" 2>/dev/null; git -C "$repo" worktree remove --force "$work/b" 2>/dev/null; rm -rf "$work"' EXIT
git -C "$repo" worktree add -q --detach "$work/a" "$base"
git -C "$repo" worktree add -q --detach "$work/b" "$other"
# The world generator of OTHER (tools/world.py, or submission/world.py before the move).
(cd "$work/b/src" && { "$py" -m tools.world --out "$work/world" --people 150 ||
    "$py" -m submission.world --out "$work/world" --people 150; } >/dev/null 2>&1)
export OMP_NUM_THREADS=1 PYTHON=$py

run_all() {  # $1: checkout; writes $1/out/<n>.stdout for every command
    local src=$1/src n=0
    mkdir -p "$1/out" "$1/files"
    rm -rf "$src/data"; mkdir "$src/data"
    for f in "$work"/world/*; do ln -s "$f" "$src/data/"; done
    while read -r cmd args; do
        [ "$cmd" = "--" ] && { echo "$n" > "$1/exact_steps"; continue; }
        n=$((n + 1))
        touch "$1/stamp"
        # shellcheck disable=SC2086
        (cd "$src" && ./run.sh "$cmd" $args) >"$1/out/$n.$cmd.stdout" 2>"$1/out/$n.$cmd.stderr" \
            || { echo "FAILED in $1: ./run.sh $cmd $args"; cat "$1/out/$n.$cmd.stderr"; exit 1; }
        # The params or predictions this command wrote.
        find "$src/submission" -maxdepth 1 \( -name '*.params' -o -name '*.predictions' \) -newer "$1/stamp" |
            while read -r f; do cp "$f" "$1/files/$n.$(basename "$f")"; done
    done <<'STEPS'
vanilla_finetune_without_pretrain --max_steps=3 --exact
vanilla_pretrain --max_steps=4 --exact
vanilla_finetune_with_pretrain --max_steps=3 --exact
vanilla_eval_dev_with_pretrain --exact
synthesizer_pretrain --max_steps=4 --exact
synthesizer_finetune_with_pretrain --max_steps=3 --exact
synthesizer_eval_dev_with_pretrain --exact
-- the fast path from here on (fp32, named: the default's precision, written out)
vanilla_finetune_without_pretrain --max_epochs=60 --precision=fp32
vanilla_eval_dev_without_pretrain --exact
vanilla_eval_test_without_pretrain
vanilla_pretrain --max_steps=20 --precision=fp32
vanilla_finetune_with_pretrain --max_epochs=20 --precision=fp32
vanilla_eval_dev_with_pretrain
synthesizer_pretrain --max_steps=20 --precision=fp32
synthesizer_finetune_with_pretrain --max_epochs=20 --precision=fp32
synthesizer_eval_dev_with_pretrain --exact
synthesizer_eval_test_with_pretrain
STEPS
}

echo "base  $base = $(git -C "$repo" rev-parse --short "$base")"
echo "other $other = $(git -C "$repo" rev-parse --short "$other")"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), 1 thread, $(date +%F)"
run_all "$work/a"
run_all "$work/b"
status=0
exact_steps=$(cat "$work/a/exact_steps")
fast_differ=0
echo "params and predictions after each command (commands 1-$exact_steps in exact mode):"
for f in "$work"/a/files/*; do
    name=$(basename "$f")
    if cmp -s "$f" "$work/b/files/$name"; then
        printf '  same   %-48s %s\n' "$name" "$(sha256sum <"$f" | cut -c1-16)"
    elif [ "${name%%.*}" -le "$exact_steps" ]; then
        printf '  DIFFER %s (exact mode)\n' "$name"; status=1
    else
        printf '  differ %s (fast path)\n' "$name"; fast_differ=1
    fi
done
[ "$(ls "$work/a/files" | wc -l)" = "$(ls "$work/b/files" | wc -l)" ] || { echo "  DIFFER: other files"; status=1; }
echo "printed lines (stdout of every command):"
for f in "$work"/a/out/*.stdout; do
    name=$(basename "$f")
    if diff -q "$f" "$work/b/out/$name" >/dev/null; then
        printf '  same   %s\n' "$name"
    elif [ "${name%%.*}" -le "$exact_steps" ] || ! grep -q '^Correct:' "$f"; then
        printf '  DIFFER %s\n' "$name"; diff "$f" "$work/b/out/$name" | head -5; status=1
    else  # a fast-path accuracy line: it moves with the fast path's numbers
        printf '  differ %s (fast path): %s -> %s\n' "$name" "$(grep '^Correct:' "$f")" \
            "$(grep '^Correct:' "$work/b/out/$name")"; fast_differ=1
    fi
done
if [ $status = 0 ]; then
    echo "exact mode: bitwise equal; printed lines equal"
    [ $fast_differ = 0 ] && echo "fast path: bitwise equal too" || echo "fast path: numbers differ (see above)"
else
    echo "BEHAVIOUR CHANGED"
fi
exit $status
