"""The CPU recipe at several pretraining budgets: pretrain, finetune and dev evaluation for each,
timed, one summary row a budget, and a plot of dev accuracy against the budget.

    python bench/cpu_ladder.py VARIANT EPOCHS [EPOCHS ...] [--seeds=0,1,2] [--out=DIR]
                               [--recipe=OPTIONS] [--finetune=OPTIONS] [--plot=FILE] [-- OPTIONS]

For each budget N and seed, bench/pipeline.py runs the course's pipeline in a folder of its
own, DIR/VARIANT-N<N>-seed<S>/ (default DIR: runs/cpu_ladder), pretraining with the recipe
(default: the recipe options of run.sh's VARIANT_pretrain_cpu) and --schedule_epochs=N, then
the course's finetune (with --finetune options, if any) and both evaluations. Run again, it continues: finished
stages are kept, an interrupted training resumes from its checkpoint (and its row counts the
seconds and steps of every session of it). OPTIONS after `--` go to
every stage that takes them (e.g. --threads=2).

Every budget's row (variant, N, seed, pretraining steps, each stage's wall time, dev accuracy,
the test predictions file, the machine) goes to DIR/ladder.tsv, rewritten from every pipeline's
stages.tsv after each pipeline, and the plot (report.plot_budget) to DIR/ladder.png (or --plot).
"""
import glob
import os
import re
import shlex
import signal
import sys

import pipeline

sys.path.insert(0, pipeline.SRC)
from submission.lib import files, options  # noqa: E402
from tools import report  # noqa: E402

ROOT = os.path.dirname(pipeline.SRC)
COLUMNS = ['variant', 'epochs', 'seed', 'pretrain_steps', 'pretrain_s', 'finetune_s', 'eval_dev_s', 'total_s',
           'dev_correct', 'dev_total', 'dev_percent', 'test_predictions', 'machine']


def read_tsv(path):
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    return [dict(zip(lines[0].split('\t'), line.split('\t'))) for line in lines[1:]]


def summary_row(folder):
    """One budget's row from its pipeline's stage rows; None until its dev evaluation is done."""
    stages = {r['stage']: r for r in read_tsv(os.path.join(folder, 'stages.tsv'))} \
        if os.path.exists(os.path.join(folder, 'stages.tsv')) else {}
    if 'eval_dev_with_pretrain' not in stages:
        return None
    variant, epochs, seed = re.fullmatch(r'(\w+)-N(\d+)-seed(\d+)', os.path.basename(folder)).groups()
    correct, total = re.match(r'Correct: ([\d.]+) out of ([\d.]+)', stages['eval_dev_with_pretrain']['result']).groups()
    seconds = {stage: float(stages[stage]['seconds']) for stage in
               ('pretrain', 'finetune_with_pretrain', 'eval_dev_with_pretrain')}
    test = os.path.join(folder, f'{variant}.pretrain.test.predictions')
    return {
        'variant': variant, 'epochs': int(epochs), 'seed': int(seed),
        'pretrain_steps': int(stages['pretrain']['result'].split()[0]),
        'pretrain_s': f'{seconds["pretrain"]:.0f}', 'finetune_s': f'{seconds["finetune_with_pretrain"]:.0f}',
        'eval_dev_s': f'{seconds["eval_dev_with_pretrain"]:.0f}', 'total_s': f'{sum(seconds.values()):.0f}',
        'dev_correct': int(float(correct)), 'dev_total': int(float(total)),
        'dev_percent': f'{100 * float(correct) / float(total):.1f}',
        'test_predictions': os.path.relpath(test, ROOT) if os.path.exists(test) else 'not written',
        'machine': f'{stages["pretrain"]["device"]}; flags {" ".join(options.cpu_flags()) or "-"}',
    }


def write_summary(out, plot):
    rows = [row for row in map(summary_row, sorted(glob.glob(os.path.join(out, '*-N*-seed*')))) if row]
    rows.sort(key=lambda r: (r['variant'], r['epochs'], r['seed']))
    files.save_text(''.join('\t'.join(str(r[c]) for c in COLUMNS) + '\n' for r in [dict(zip(COLUMNS, COLUMNS))] + rows),
                    os.path.join(out, 'ladder.tsv'))
    if rows and report.HAS_MATPLOTLIB:
        report.plot_budget(rows, plot)
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    common = argv[argv.index('--') + 1:] if '--' in argv else []
    argv = argv[:argv.index('--')] if '--' in argv else argv
    parser = options.ArgumentParser(prog='bench/cpu_ladder.py', description=__doc__.split('\n')[0])
    parser.add_argument('variant', choices=options.VARIANTS)
    parser.add_argument('epochs', nargs='+', type=int)
    parser.add_argument('--seeds', default='0')
    parser.add_argument('--out', default=os.path.join(ROOT, 'runs', 'cpu_ladder'))
    parser.add_argument('--recipe')
    parser.add_argument('--finetune', default='')
    parser.add_argument('--plot')
    args = parser.parse_args(argv)
    plot = args.plot or os.path.join(args.out, 'ladder.png')
    # Without the course data the pipeline's own check says so, after the options are checked.
    recipe = shlex.split(args.recipe) if args.recipe is not None else [
        option.replace('$D/', files.DATA + '/') for option in files.commands()[f'{args.variant}_pretrain_cpu']
        if option.split('=')[0] in options.RECIPE and not option.startswith('--schedule_epochs=')]
    seeds = [options.whole_number(s, '--seeds', low=0, high=options.SEED_LIMIT - 1) for s in args.seeds.split(',')]
    for n in args.epochs:
        for seed in seeds:
            folder = os.path.join(args.out, f'{args.variant}-N{n}-seed{seed}')
            pipeline.run(args.variant, folder, os.path.join(folder, 'stages.tsv'), f'N={n} seed={seed}',
                         pretrain_options=recipe + [f'--schedule_epochs={n}'],
                         finetune_options=shlex.split(args.finetune), common=common + [f'--seed={seed}'],
                         resume=True)
            write_summary(args.out, plot)
    for row in write_summary(args.out, plot):
        print('\t'.join(str(row[c]) for c in COLUMNS[:-1]))


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, pipeline.stop)
    try:
        main()
    except files.UsageError as e:
        pipeline.fail(e)
    except KeyboardInterrupt:
        sys.exit('error: interrupted; rerun the same command to resume (a training resumes from its checkpoint)')
