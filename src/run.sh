#!/bin/bash
# The course's commands, spelled as in the handout, the later course years'
# perceiver_* and rope_* commands, and the project's own (demo, london_baseline,
# report). Anything after the command goes to run.py,
# e.g. ./run.sh vanilla_pretrain --max_epochs=2. Training commands resume
# from their checkpoint when one exists; exec hands signals (Ctrl-C, kill) straight
# to Python so an interrupted run checkpoints. NPROC=N runs through torchrun on N
# processes (GPUs, or CPU processes with gloo), after one process has checked the
# command line and every file.
cd "$(dirname "$0")" || exit 1
if [ -n "$PYTHON" ]; then
    PY=$PYTHON
    command -v "$PY" >/dev/null 2>&1 || { echo "error: PYTHON=$PY is not a command; set PYTHON to a Python interpreter, or unset it" >&2; exit 2; }
else
    PY=$(command -v python || command -v python3) || { echo "error: no python on PATH; activate the project environment (see README.md) or set PYTHON" >&2; exit 2; }
fi
# Without this, a python outside the project environment ends in an ImportError's traceback.
"$PY" -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ('torch', 'docopt')))" 2>/dev/null || {
    echo "error: $PY has no torch or no docopt; activate the project environment (source .venv/bin/activate, or conda activate XCS224N) or set PYTHON to its python" >&2; exit 2; }
case "$NPROC" in
    ''|1) ;;
    *[!0-9]*|0*) echo "error: NPROC=$NPROC is not a number of processes; give a whole number, 1 or more" >&2; exit 2 ;;
esac
go() {  # run.py with these arguments; with NPROC, one process checks them all first, then torchrun runs
    if [ -n "$NPROC" ] && [ "$NPROC" != "1" ]; then
        # A bad input is then one line, not one per process followed by torchrun's report.
        RUN_SH_NPROC=$NPROC "$PY" run.py "$@" || exit $?
        exec "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" run.py "$@"
    fi
    exec "$PY" run.py "$@"
}
D=./data
S=./submission
# The CPU recipe (the *_pretrain_cpu commands; README.md, docs/RESULTS.md): the course's own settings,
# half of the masked spans a name, place or date with the line's name in view (salient spans), and
# the course's schedule fitted to the 240 epochs a 2-core CPU with native bf16 trains in about an hour.
CPU_RECIPE="--schedule_epochs=240 --salient_spans=0.5"
recipe_go() {  # go, where an option given after the command replaces the CPU recipe's own
    local own=("${@:1:$# - ${#GIVEN[@]}}") kept=() a g
    echo "note: the CPU recipe took about an hour end to end for vanilla on 2 cores of a CPU with native bf16 (AMD EPYC; 3 to 5 hours in fp32, as on CPUs with AVX2 only) and answered 7.7 % of dev (a mean of 3 seeds: 7.2, 6.6 and 9.4 %), under the course's 10 % (the synthesizer's: 5.6 % of dev, one seed, over its 5 %, in 3.5 hours of fp32 on an AVX2-only CPU; the perceiver's and rope's not yet measured); the course's pass marks need the course's own schedule, ./run.sh ${cmd%_cpu} (vanilla: 26.4 % of dev in 2 hours on 2 CPU cores with native bf16, 22.4 % after 7 hours in fp32; minutes on a GPU)" >&2
    for a in "${own[@]}"; do
        for g in "${GIVEN[@]}"; do
            [[ " $CPU_RECIPE " == *" $a "* && "${g%%=*}" == "${a%%=*}" ]] && continue 2
        done
        kept+=("$a")
    done
    go "${kept[@]}" "${GIVEN[@]}"
}
cmd="$1"
shift
GIVEN=("$@")
case "$cmd" in
vanilla_finetune_without_pretrain)
    go --function=finetune --variant=vanilla --pretrain_corpus_path=$D/wiki.txt --writing_params_path=$S/vanilla.model.params --finetune_corpus_path=$D/birth_places_train.tsv --resume "$@" ;;
vanilla_eval_dev_without_pretrain)
    go --function=evaluate --variant=vanilla --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/vanilla.model.params --eval_corpus_path=$D/birth_dev.tsv --outputs_path=$S/vanilla.nopretrain.dev.predictions "$@" ;;
vanilla_eval_test_without_pretrain)
    go --function=evaluate --variant=vanilla --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/vanilla.model.params --eval_corpus_path=$D/birth_test_inputs.tsv --outputs_path=$S/vanilla.nopretrain.test.predictions "$@" ;;
vanilla_pretrain)
    go --function=pretrain --variant=vanilla --pretrain_corpus_path=$D/wiki.txt --writing_params_path=$S/vanilla.pretrain.params --resume "$@" ;;
vanilla_finetune_with_pretrain)
    go --function=finetune --variant=vanilla --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/vanilla.pretrain.params --writing_params_path=$S/vanilla.finetune.params --finetune_corpus_path=$D/birth_places_train.tsv --resume "$@" ;;
vanilla_eval_dev_with_pretrain)
    go --function=evaluate --variant=vanilla --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/vanilla.finetune.params --eval_corpus_path=$D/birth_dev.tsv --outputs_path=$S/vanilla.pretrain.dev.predictions "$@" ;;
vanilla_eval_test_with_pretrain)
    go --function=evaluate --variant=vanilla --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/vanilla.finetune.params --eval_corpus_path=$D/birth_test_inputs.tsv --outputs_path=$S/vanilla.pretrain.test.predictions "$@" ;;
synthesizer_pretrain)
    go --function=pretrain --variant=synthesizer --pretrain_corpus_path=$D/wiki.txt --writing_params_path=$S/synthesizer.pretrain.params --resume "$@" ;;
synthesizer_finetune_with_pretrain)
    go --function=finetune --variant=synthesizer --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/synthesizer.pretrain.params --writing_params_path=$S/synthesizer.finetune.params --finetune_corpus_path=$D/birth_places_train.tsv --resume "$@" ;;
synthesizer_eval_dev_with_pretrain)
    go --function=evaluate --variant=synthesizer --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/synthesizer.finetune.params --eval_corpus_path=$D/birth_dev.tsv --outputs_path=$S/synthesizer.pretrain.dev.predictions "$@" ;;
synthesizer_eval_test_with_pretrain)
    go --function=evaluate --variant=synthesizer --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/synthesizer.finetune.params --eval_corpus_path=$D/birth_test_inputs.tsv --outputs_path=$S/synthesizer.pretrain.test.predictions "$@" ;;
perceiver_pretrain)
    go --function=pretrain --variant=perceiver --pretrain_corpus_path=$D/wiki.txt --writing_params_path=$S/perceiver.pretrain.params --resume "$@" ;;
perceiver_finetune_with_pretrain)
    go --function=finetune --variant=perceiver --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/perceiver.pretrain.params --writing_params_path=$S/perceiver.finetune.params --finetune_corpus_path=$D/birth_places_train.tsv --resume "$@" ;;
perceiver_eval_dev_with_pretrain)
    go --function=evaluate --variant=perceiver --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/perceiver.finetune.params --eval_corpus_path=$D/birth_dev.tsv --outputs_path=$S/perceiver.pretrain.dev.predictions "$@" ;;
perceiver_eval_test_with_pretrain)
    go --function=evaluate --variant=perceiver --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/perceiver.finetune.params --eval_corpus_path=$D/birth_test_inputs.tsv --outputs_path=$S/perceiver.pretrain.test.predictions "$@" ;;
rope_pretrain)
    go --function=pretrain --variant=rope --pretrain_corpus_path=$D/wiki.txt --writing_params_path=$S/rope.pretrain.params --resume "$@" ;;
rope_finetune_with_pretrain)
    go --function=finetune --variant=rope --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/rope.pretrain.params --writing_params_path=$S/rope.finetune.params --finetune_corpus_path=$D/birth_places_train.tsv --resume "$@" ;;
rope_eval_dev_with_pretrain)
    go --function=evaluate --variant=rope --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/rope.finetune.params --eval_corpus_path=$D/birth_dev.tsv --outputs_path=$S/rope.pretrain.dev.predictions "$@" ;;
rope_eval_test_with_pretrain)
    go --function=evaluate --variant=rope --pretrain_corpus_path=$D/wiki.txt --reading_params_path=$S/rope.finetune.params --eval_corpus_path=$D/birth_test_inputs.tsv --outputs_path=$S/rope.pretrain.test.predictions "$@" ;;
vanilla_pretrain_cpu)
    recipe_go --function=pretrain --variant=vanilla --pretrain_corpus_path=$D/wiki.txt --writing_params_path=$S/vanilla.pretrain.params --resume $CPU_RECIPE "$@" ;;
synthesizer_pretrain_cpu)
    recipe_go --function=pretrain --variant=synthesizer --pretrain_corpus_path=$D/wiki.txt --writing_params_path=$S/synthesizer.pretrain.params --resume $CPU_RECIPE "$@" ;;
perceiver_pretrain_cpu)
    recipe_go --function=pretrain --variant=perceiver --pretrain_corpus_path=$D/wiki.txt --writing_params_path=$S/perceiver.pretrain.params --resume $CPU_RECIPE "$@" ;;
rope_pretrain_cpu)
    recipe_go --function=pretrain --variant=rope --pretrain_corpus_path=$D/wiki.txt --writing_params_path=$S/rope.pretrain.params --resume $CPU_RECIPE "$@" ;;
london_baseline)
    exec "$PY" run.py --function=london_baseline --eval_corpus_path=$D/birth_dev.tsv "$@" ;;
report)
    exec "$PY" run.py --function=report --submission_dir=$S --data_dir=$D --report_dir=./reports "$@" ;;
demo)
    exec "$PY" -m tools.demo "$@" ;;
*)
    if [ -z "$cmd" ]; then echo "Usage: ./run.sh COMMAND [run.py options]. Valid commands:" >&2
    else echo "Unknown command '$cmd'. Valid commands:" >&2; fi
    echo "  vanilla_finetune_without_pretrain vanilla_eval_dev_without_pretrain vanilla_eval_test_without_pretrain" >&2
    echo "  vanilla_pretrain vanilla_finetune_with_pretrain vanilla_eval_dev_with_pretrain vanilla_eval_test_with_pretrain" >&2
    echo "  synthesizer_pretrain synthesizer_finetune_with_pretrain synthesizer_eval_dev_with_pretrain synthesizer_eval_test_with_pretrain" >&2
    echo "  later course years: perceiver_pretrain perceiver_finetune_with_pretrain perceiver_eval_dev_with_pretrain perceiver_eval_test_with_pretrain" >&2
    echo "  rope_pretrain rope_finetune_with_pretrain rope_eval_dev_with_pretrain rope_eval_test_with_pretrain" >&2
    echo "  the CPU recipe: vanilla_pretrain_cpu synthesizer_pretrain_cpu perceiver_pretrain_cpu rope_pretrain_cpu" >&2
    echo "  demo london_baseline report" >&2
    exit 2 ;;
esac
