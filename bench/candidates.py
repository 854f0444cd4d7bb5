"""Candidates for a pretraining recipe, each pretrained at each budget and measured on the validation split.

    python bench/candidates.py VARIANT --out DIR --epochs=E[,E...] [--base=OPTIONS] [--held_out=N]
                               [--split_seed=N] [--corpus=FILE] [--train=FILE] [--device=DEVICE]
                               [--threads=N] NAME=OPTIONS [NAME=OPTIONS ...]

Each candidate NAME is pretrained on the corpus (default src/data/wiki.txt) for E epochs, its
learning-rate schedule fitted to them (--schedule_epochs=E), with run.py's options
--base (default the first CPU recipe's settings, on which docs/RESULTS.md's candidates were first
measured: --batch_size=32 --learning_rate=2e-3 --dropout=0 --weight_decay=0; --base='' for the
course's own) and its own OPTIONS, which replace the base's of the same name; `{train_split}` in them names the split's finetuning people
(DIR/split/train_split.tsv: e.g. `questions=--pretrain_questions={train_split}`), never the
held-out ones. Each pretrained model is measured by bench/validation.py (same split for all: the
held-out people's birthplaces recalled and the nats paid for them, then their questions answered
after the course's finetune on the others). Dev and test are not touched.

Every finished (NAME, E) is a row of DIR/candidates.tsv; a rerun skips them and resumes a
pretraining cut short (Ctrl-C or SIGTERM: the pretraining under way checkpoints, a validation
under way is removed), so a sweep carries across interruptions. The table of every row is printed
at the end and written to DIR/candidates.md.
"""
import json
import os
import re
import shutil
import signal
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(BENCH), 'src')
sys.path.insert(0, SRC)
sys.path.insert(0, BENCH)
import pipeline  # noqa: E402
import run as run_py  # noqa: E402
import validation  # noqa: E402
from submission.lib import files, options  # noqa: E402
from submission.lib.files import UsageError  # noqa: E402

FIRST_RECIPE = '--batch_size=32 --learning_rate=2e-3 --dropout=0 --weight_decay=0'
COLUMNS = ('name', 'epochs', 'pretrain_s', 'loss', 'recalled', 'probed', 'nats_per_char', 'correct', 'held_out',
           'options')


def arguments(argv):
    parser = options.ArgumentParser(prog='bench/candidates.py', description=__doc__.split('\n')[0])
    parser.add_argument('variant', choices=options.VARIANTS)
    parser.add_argument('candidates', nargs='+', metavar='NAME=OPTIONS')
    parser.add_argument('--out', required=True)
    parser.add_argument('--epochs', required=True)
    parser.add_argument('--base', default=FIRST_RECIPE)
    validation.split_options(parser)
    args = validation.split_options_read(parser.parse_args(sys.argv[1:] if argv is None else argv))
    args.epochs = [options.whole_number(e, '--epochs', high=options.EPOCH_LIMIT) for e in args.epochs.split(',')]
    args.out = os.path.abspath(args.out)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f'--out={args.out} is a file; give a folder (new, or a sweep\'s to resume it)')
    args.candidates = [candidate(text, args) for text in args.candidates]
    if len({name for name, _ in args.candidates}) != len(args.candidates):
        raise UsageError('two candidates share a name; give each NAME=OPTIONS its own name')
    return args


def candidate(text, args):
    """(name, run.py options) of NAME=OPTIONS, the options checked as run.py checks them."""
    name, _, given = text.partition('=')
    if not re.fullmatch(r'[\w.-]+', name):
        raise UsageError(f'candidate "{text}" has no name of letters, digits, "_", "-" or "."; write it NAME=OPTIONS')
    split = os.path.join(args.out, 'split', 'train_split.tsv')
    own = given.split()
    base = [o for o in args.base.split() if o.split('=')[0] not in {g.split('=')[0] for g in own}]
    chosen = [o.replace('{train_split}', split) for o in base + own]
    check = [o.replace(split, args.train) for o in chosen]  # the split is written later; its source exists
    try:
        run_py.parse(pretraining(args, name, args.epochs[0], check))
    except UsageError as e:
        raise UsageError(f'candidate {name}: {e}') from None
    return name, chosen


def pretraining(args, name, epochs, chosen):
    return ['--function=pretrain', f'--variant={args.variant}', f'--pretrain_corpus_path={args.corpus}',
            f'--writing_params_path={params_of(args, name, epochs)}', f'--schedule_epochs={epochs}', f'--device={args.device}', '--resume',
            *([f'--threads={args.threads}'] if args.threads else []), *chosen]


def params_of(args, name, epochs):
    return os.path.join(args.out, f'{name}.e{epochs}.params')


def measure(args, name, epochs, chosen):
    """The row of one candidate at one budget: pretrained (resumed where cut short), then validated."""
    start = time.time()
    print(f'== {name}, {epochs} epochs: run.py {" ".join(pretraining(args, name, epochs, chosen))}', flush=True)
    if pipeline.run_child([sys.executable, 'run.py', *pretraining(args, name, epochs, chosen)], cwd=SRC):
        raise SystemExit(f'error: the pretraining of candidate {name} at {epochs} epochs failed (above); '
                         f'rerun the same command to resume it')
    seconds = time.time() - start
    params = params_of(args, name, epochs)
    with open(params + '.log.jsonl', encoding='utf-8') as f:
        records = [json.loads(line) for line in f if line.strip()]
    loss = next(r['loss'] for r in reversed(records) if r.get('event') == 'end')
    seconds = next((r['elapsed'] for r in reversed(records) if r.get('event') == 'end'), seconds)
    out = params + '.validation'
    if not os.path.exists(os.path.join(out, 'validation.json')):
        if os.path.isdir(out):
            shutil.rmtree(out)
        argv = [args.variant, params, '--out', out, f'--held_out={args.held_out}',
                f'--split_seed={args.split_seed}', f'--corpus={args.corpus}', f'--train={args.train}',
                f'--device={args.device}', *([f'--threads={args.threads}'] if args.threads else [])]
        if pipeline.run_child([sys.executable, os.path.join(BENCH, 'validation.py'), *argv]):
            raise SystemExit(f'error: the validation of candidate {name} at {epochs} epochs failed (above)')
    with open(os.path.join(out, 'validation.json'), encoding='utf-8') as f:
        v = json.load(f)
    return dict(name=name, epochs=epochs, pretrain_s=round(seconds), loss=round(loss, 4), recalled=v['recalled'],
                probed=v['probed'], nats_per_char=v['nats_per_char'], correct=v['correct'],
                held_out=v['held_out'], options=' '.join(chosen).replace(args.out + os.sep, 'DIR/'))


def rows_in(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    return [dict(zip(COLUMNS, line.split('\t'))) for line in lines[1:]]


def table(rows):
    head = ('| candidate | epochs | pretraining | loss | held-out birthplaces recalled | nats a birthplace '
            'character | held-out questions answered | options |\n|---|---:|---:|---:|---:|---:|---:|---|\n')
    return head + ''.join(
        f'| {r["name"]} | {r["epochs"]} | {int(r["pretrain_s"]) / 60:.1f} min | {float(r["loss"]):.3f} | '
        f'{r["recalled"]}/{r["probed"]} | {float(r["nats_per_char"]):.3f} | {r["correct"]}/{r["held_out"]} = '
        f'{100 * int(r["correct"]) / int(r["held_out"]):.1f} % | `{r["options"]}` |\n' for r in rows)


def main(argv=None):
    args = arguments(argv)
    os.makedirs(os.path.join(args.out, 'split'), exist_ok=True)
    lines = [line for line in files.read_text(args.train, '--train').split('\n') if line.strip()]
    kept, _ = validation.split(lines, args.held_out, args.split_seed)
    files.save_text(''.join(line + '\n' for line in kept), os.path.join(args.out, 'split', 'train_split.tsv'))
    path = os.path.join(args.out, 'candidates.tsv')
    rows = rows_in(path)
    done = {(r['name'], int(r['epochs'])) for r in rows}
    for epochs in args.epochs:
        for name, chosen in args.candidates:
            if (name, epochs) in done:
                continue
            rows.append(measure(args, name, epochs, chosen))
            files.save_text('\t'.join(COLUMNS) + '\n' + ''.join(
                '\t'.join(str(r[c]) for c in COLUMNS) + '\n' for r in rows), path)
    files.save_text(table(rows), os.path.join(args.out, 'candidates.md'))
    print(table(rows), end='')


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, pipeline.stop)
    try:
        main()
    except (UsageError, OSError) as e:
        sys.exit(f'error: {e}')
    except KeyboardInterrupt:
        sys.exit('error: interrupted; rerun the same command to resume the sweep')
