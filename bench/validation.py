"""The validation split: recipes are compared on training people held out of finetuning, never on dev or test.

    python bench/validation.py VARIANT PARAMS --out DIR [--held_out=N] [--split_seed=N] [--corpus=FILE]
                               [--train=FILE] [--device=DEVICE] [--threads=N] [--bottleneck_dim=N]
                               [-- OPTIONS]

N people (default 200) of the finetuning corpus (default src/data/birth_places_train.tsv, 2,000
people) are held out, chosen by --split_seed (default 0), so every recipe meets the same split.
Their biographies stay in the pretraining corpus (default src/data/wiki.txt, which PARAMS was
pretrained on); their questions leave finetuning. For the pretrained PARAMS this measures:

  recall    bench/recall.py's probe on the held-out people's biographies: the birthplace masked,
            the pretrained model fills it in (what pretraining stored, before any finetuning),
            and the nats it pays a birthplace character (which ranks models that recall none);
  answered  the course's finetune of PARAMS on the other people's questions (run.py, its own
            settings; OPTIONS after `--` go to it, e.g. --seed=1), then the course's evaluation
            on the held-out questions.

DIR (new or empty) receives train_split.tsv (the kept lines, in their order: a recipe that
pretrains on questions, --pretrain_questions, takes this file, never the held-out people's),
held_out.tsv, VARIANT.finetune.params, held_out.predictions and validation.json (every figure);
the last line printed sums them up. A run that fails or is interrupted (Ctrl-C, SIGTERM) removes what it wrote.
"""
import contextlib
import io
import json
import os
import random
import shutil
import signal
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(BENCH), 'src')
sys.path.insert(0, SRC)
sys.path.insert(0, BENCH)
import torch  # noqa: E402

import pipeline  # noqa: E402
import recall  # noqa: E402
import run as run_py  # noqa: E402
from submission.dataset import CharCorruptionDataset  # noqa: E402
from submission.lib import files, options  # noqa: E402
from submission.lib.files import UsageError  # noqa: E402


def split(lines, held_out, seed):
    """(kept lines, held-out lines), each in the file's order; the same for the same seed everywhere
    (random.Random's sample is fixed across Python versions for an int seed)."""
    if not 1 <= held_out < len(lines):
        raise UsageError(f'--held_out={held_out} must leave people on both sides of the split: '
                         f'give 1 to {len(lines) - 1} for these {len(lines)} questions')
    chosen = set(random.Random(seed).sample(range(len(lines)), held_out))
    return ([line for i, line in enumerate(lines) if i not in chosen],
            [line for i, line in enumerate(lines) if i in chosen])


def split_options(parser):
    """The split's options and the machine's, as this script and bench/candidates.py take them."""
    parser.add_argument('--held_out', default='200')
    parser.add_argument('--split_seed', default='0')
    parser.add_argument('--corpus', default=os.path.join(SRC, 'data', 'wiki.txt'))
    parser.add_argument('--train', default=os.path.join(SRC, 'data', 'birth_places_train.tsv'))
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', default=None)


def split_options_read(args):
    args.held_out = options.whole_number(args.held_out, '--held_out')
    args.split_seed = options.whole_number(args.split_seed, '--split_seed', low=0)
    args.device = options.device_named(args.device)
    if args.threads:
        options.whole_number(args.threads, '--threads', high=os.cpu_count() * 4)
    for path, option in ((args.corpus, '--corpus'), (args.train, '--train')):
        files.input_file(path, option)
    return args


def arguments(argv):
    argv = sys.argv[1:] if argv is None else argv
    finetune = argv[argv.index('--') + 1:] if '--' in argv else []
    argv = argv[:argv.index('--')] if '--' in argv else argv
    parser = options.ArgumentParser(prog='bench/validation.py', description=__doc__.split('\n')[0])
    parser.add_argument('variant', choices=options.VARIANTS)
    parser.add_argument('params')
    parser.add_argument('--out', required=True)
    split_options(parser)
    parser.add_argument('--bottleneck_dim', default=None, help='perceiver: its number of slots (default 32)')
    args = split_options_read(parser.parse_args(argv))
    args.bottleneck_dim = options.bottleneck_dim(args.bottleneck_dim, args.variant)
    files.input_file(args.params, 'PARAMS')
    args.out = os.path.abspath(args.out)
    if os.path.exists(args.out) and not (os.path.isdir(args.out) and not os.listdir(args.out)):
        raise UsageError(f'--out={args.out} is not a new or empty folder; give a new --out folder')
    return args, finetune


def commands(args, finetune):
    """The finetune's and the evaluation's run.py arguments, checked as run.py checks them."""
    at = lambda name: os.path.join(args.out, name)
    common = [f'--variant={args.variant}', f'--pretrain_corpus_path={args.corpus}', f'--device={args.device}',
              *([f'--threads={args.threads}'] if args.threads else []),
              *([f'--bottleneck_dim={args.bottleneck_dim}'] if args.variant == 'perceiver' else [])]
    tune = ['--function=finetune', *common, f'--reading_params_path={os.path.abspath(args.params)}',
            f'--finetune_corpus_path={at("train_split.tsv")}',
            f'--writing_params_path={at(args.variant + ".finetune.params")}', *finetune]
    evaluate = ['--function=evaluate', *common, f'--reading_params_path={at(args.variant + ".finetune.params")}',
                f'--eval_corpus_path={at("held_out.tsv")}', f'--outputs_path={at("held_out.predictions")}',
                *[o for o in finetune if o.split('=')[0] in options.USES['evaluate']]]
    for stage, argv in (('finetune', tune), ('evaluation', evaluate)):
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # its warnings are the stage's to print
                run_py.parse(argv)
        except UsageError as e:
            raise UsageError(f'the {stage} would refuse its options: {e}') from None
    return tune, evaluate


def run_stage(argv, stage):
    """run.py in its own process, its output shown; exits with its status if it fails."""
    print(f'== {stage}: run.py {" ".join(argv)}', flush=True)
    status = pipeline.run_child([sys.executable, 'run.py', *argv], cwd=SRC)
    if status != 0:
        raise SystemExit(status)


def validate(args, finetune):
    lines = [line for line in files.read_text(args.train, '--train').split('\n') if line.strip()]
    recall.people_of(lines, args.train)  # every line a "Where was X born?<TAB>place"
    kept, held = split(lines, args.held_out, args.split_seed)
    held_people = recall.people_of(held, args.train)
    tune, evaluate = commands(args, finetune)
    os.makedirs(args.out, exist_ok=True)
    for name, chosen in (('train_split.tsv', kept), ('held_out.tsv', held)):
        files.save_text(''.join(line.rstrip('\n') + '\n' for line in chosen), os.path.join(args.out, name))
    seconds = {}
    start = time.time()
    if args.threads:
        torch.set_num_threads(int(args.threads))
    text = files.read_text(args.corpus, '--corpus')
    dataset = CharCorruptionDataset(text, 128)
    model = recall.pretrained(args.variant, args.params, dataset, args.device, args.bottleneck_dim)
    recalled, probed, nats, said = recall.probe(model, dataset, text, held_people, args.device)
    print(f'== recall on the held-out biographies: {said}', flush=True)
    seconds['probe'] = time.time() - start
    for stage, argv in (('finetune', tune), ('evaluate', evaluate)):
        start = time.time()
        run_stage(argv, stage)
        seconds[stage] = time.time() - start
    with open(os.path.join(args.out, 'held_out.predictions'), encoding='utf-8') as f:
        predictions = f.read().split('\n')
    correct = sum(p == place for p, (_, place) in zip(predictions, held_people))
    figures = dict(variant=args.variant, params=os.path.abspath(args.params), held_out=len(held),
                   kept=len(kept), split_seed=args.split_seed, recalled=recalled, probed=probed,
                   nats_per_char=round(nats, 4),
                   correct=correct, accuracy=correct / len(held), finetune_options=finetune,
                   seconds={k: round(v, 1) for k, v in seconds.items()})
    files.save_text(json.dumps(figures, indent=1) + '\n', os.path.join(args.out, 'validation.json'))
    share = f'{100 * recalled / probed:.1f} %' if probed else 'none probed'
    print(f'validation ({args.variant}, split seed {args.split_seed}): recalled {recalled} of {probed} held-out '
          f'birthplaces ({share}, {nats:.3f} nats a character); answered {correct} of {len(held)} held-out questions = '
          f'{100 * correct / len(held):.1f} % after the course\'s finetune on the other {len(kept)}')


def main(argv=None):
    args, finetune = arguments(argv)
    made = not os.path.exists(args.out)
    done = False
    try:
        validate(args, finetune)
        done = True
    finally:
        if not done and os.path.isdir(args.out):
            if made:
                shutil.rmtree(args.out, ignore_errors=True)
            else:
                for name in os.listdir(args.out):
                    path = os.path.join(args.out, name)
                    shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, pipeline.stop)
    try:
        main()
    except (UsageError, OSError) as e:  # OSError: the machine's (a full disk), one line as run.py's
        sys.exit(f'error: {e}')
    except KeyboardInterrupt:
        sys.exit('error: interrupted; what this run wrote is removed')
