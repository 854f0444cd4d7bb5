"""
Pretrain, finetune or evaluate the birth-place model (the course's run.py, with options of our own).

Usage:
    run.py --function=FUNCTION [--variant=VARIANT] [--pretrain_corpus_path=FILE] [options]
    run.py (-h | --help)

pretrain, finetune and evaluate need --variant and --pretrain_corpus_path;
report reads --submission_dir and --data_dir; london_baseline needs --eval_corpus_path.

Course options:
    --function=FUNCTION             pretrain, finetune or evaluate (ours: report, london_baseline)
    --variant=VARIANT               vanilla or synthesizer
    --pretrain_corpus_path=FILE     the pretraining corpus; the vocabulary always comes from it
    --writing_params_path=FILE      where training writes the model's params
    --finetune_corpus_path=FILE     question<TAB>answer lines to finetune on
    --reading_params_path=FILE      params to start from (finetune) or to evaluate
    --eval_corpus_path=FILE         questions to answer (with answers: accuracy is printed)
    --outputs_path=FILE             where evaluation writes one prediction per line

Our options:
    --max_epochs=N                  override the course's number of epochs (smoke tests)
    --max_steps=N                   stop after N optimizer steps
    --seed=N                        seed for every source of randomness [default: 0]
    --device=DEVICE                 cuda, mps or cpu (default: the first available in that order)
    --precision=P                   auto, fp32, bf16 or fp16 [default: auto]
    --compile                       torch.compile the model
    --exact                         the plain course computation: fp32, per-item dataset,
                                    full-length rows, one-question-at-a-time evaluation
    --resume                        continue from WRITING_PARAMS_PATH.ckpt if it exists
    --checkpoint_every=SECONDS      seconds between resumable checkpoints [default: 300]
    --submission_dir=DIR            report: where params, logs and predictions are [default: submission]
    --data_dir=DIR                  report: where the course data is [default: data]
    --report_dir=DIR                report: where to write the report [default: reports]
"""
import os
import random
import sys

import torch
from docopt import docopt, DocoptExit

from submission import checkpoint, distributed, evaluate, utils
from submission.report import MADE_BY
from submission.dataset import CharCorruptionDataset, MASK_CHAR
from submission.helper import (finetune, initialize_synthesizer_model, initialize_vanilla_model,
                               pretrain, train)
from submission.model import GPTConfig
from submission.trainer import Interrupted, TrainingError, pick_device

FUNCTIONS = ('pretrain', 'finetune', 'evaluate', 'report', 'london_baseline')
VARIANTS = ('vanilla', 'synthesizer')
class UsageError(Exception):
    """A bad input; the message names the problem and the fix."""


def readable_file(path, what):
    if path is None:
        raise UsageError(f'{what} is required')
    if not os.path.exists(path):
        made_by = MADE_BY.get(os.path.basename(path))
        if made_by:
            raise UsageError(f'{path} does not exist yet: make it first with ./run.sh {made_by}')
        if os.path.basename(path) in ('wiki.txt', 'birth_places_train.tsv', 'birth_dev.tsv',
                                      'birth_test_inputs.tsv', 'birth_test.tsv'):
            raise UsageError(f'{path} does not exist: put the course data in src/data '
                             f'(see src/data/README.md)')
        raise UsageError(f'{what} {path} does not exist')
    if os.path.isdir(path) or not os.access(path, os.R_OK):
        raise UsageError(f'{what} {path} cannot be read; check the path and its permissions')
    return path


def read_text(path, what):
    try:
        with open(readable_file(path, what), encoding='utf-8') as f:
            return f.read()
    except UnicodeDecodeError:
        raise UsageError(f'{what} {path} is not UTF-8 text; pass the course text file') from None


def writable_path(path, what):
    if path is None:
        raise UsageError(f'{what} is required')
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f'{what} {path}: directory {directory} does not exist; create it or choose another path')
    if os.path.isdir(path):
        raise UsageError(f'{what} {path} is a directory; give a file path')
    return path


def number(args, key, kind=int, minimum=1):
    value = args[key]
    if value is None:
        return None
    try:
        value = kind(value)
    except ValueError:
        raise UsageError(f'{key}={args[key]} is not a number') from None
    if value < minimum:
        raise UsageError(f'{key} must be at least {minimum}')
    return value


def read_questions(path, stoi):
    """Questions of an eval file, with characters outside the vocabulary dropped (with a warning)."""
    lines = [line for line in read_text(path, '--eval_corpus_path').split('\n') if line.strip()]
    questions, dropped = [], set()
    for line in lines:
        q = line.split('\t')[0]
        dropped.update(c for c in q if c not in stoi or c == MASK_CHAR)
        questions.append(''.join(c for c in q if c in stoi and c != MASK_CHAR))
    if dropped:
        print(f'warning: dropped characters outside the vocabulary from {path}: '
              f'{"".join(sorted(dropped))!r}', file=sys.stderr)
    return questions


def check_finetune_corpus(text, stoi, path):
    body = text.encode('utf-8').decode('ascii', errors='ignore')
    lines = [line for line in body.split('\n') if line.strip()]
    if not lines:
        raise UsageError(f'finetune corpus {path} is empty; pass a file of question<TAB>answer lines')
    for n, line in enumerate(lines, 1):
        if line.count('\t') != 1:
            raise UsageError(f'{path} line {n} is not "question<TAB>answer"; fix that line')
    missing = set(body) - set(stoi) - {'\n', '\t'}
    if missing:
        raise UsageError(f'{path} has characters that are not in the pretraining corpus '
                         f'({"".join(sorted(missing))!r}); the vocabulary comes from --pretrain_corpus_path')


def settings_of(args, tconf, mconf):
    """What a resumed run must share with the run that wrote the checkpoint."""
    base = lambda p: os.path.basename(p) if p else None
    return {
        'function': args['--function'], 'variant': args['--variant'],
        'pretrain_corpus': base(args['--pretrain_corpus_path']),
        'finetune_corpus': base(args['--finetune_corpus_path']),
        'reading_params': base(args['--reading_params_path']),
        'max_epochs': tconf.max_epochs, 'batch_size': tconf.batch_size,
        'learning_rate': tconf.learning_rate, 'vocab_size': mconf.vocab_size,
        'block_size': mconf.block_size, 'exact': bool(args['--exact']),
        'precision': args['--precision'], 'seed': tconf.seed,
    }


def run_training(args, tconf, trainer, model, mconf):
    writing = args['--writing_params_path']
    tconf.exact = bool(args['--exact'])
    tconf.precision = args['--precision']
    tconf.device = trainer.device
    tconf.compile = bool(args['--compile'])
    tconf.seed = number(args, '--seed', minimum=0)
    if args['--max_epochs'] is not None:
        tconf.max_epochs = number(args, '--max_epochs')
    tconf.max_steps = number(args, '--max_steps')
    tconf.checkpoint_every = number(args, '--checkpoint_every', float, minimum=0)
    tconf.checkpoint_path = writing + '.ckpt'
    tconf.log_path = writing + '.log.jsonl'
    tconf.settings = settings_of(args, tconf, mconf)
    tconf.resume = bool(args['--resume'])
    if os.path.exists(tconf.checkpoint_path) and distributed.is_main():
        if tconf.resume:
            ckpt = checkpoint.load_checkpoint(tconf.checkpoint_path)
            checkpoint.check_settings(tconf.checkpoint_path, ckpt['settings'], tconf.settings)
        else:
            print(f'note: starting over; {tconf.checkpoint_path} exists (pass --resume to continue it)')
    fresh = not (tconf.resume and os.path.exists(tconf.checkpoint_path))
    if fresh and os.path.exists(tconf.log_path) and distributed.is_main():
        os.unlink(tconf.log_path)  # a fresh run gets a fresh log; a resumed one appends
    train(model, writing, trainer)
    if distributed.is_main():
        print(f'wrote {writing}')


def run_evaluate(args, model, pretrain_dataset, device):
    reading = readable_file(args['--reading_params_path'], '--reading_params_path')
    eval_path = readable_file(args['--eval_corpus_path'], '--eval_corpus_path')
    outputs = writable_path(args['--outputs_path'], '--outputs_path')
    state = checkpoint.load_params(reading)
    checkpoint.check_params_fit(state, model, reading)
    model.load_state_dict(state)
    model.to(device)
    questions = read_questions(eval_path, pretrain_dataset.stoi)
    # Under torchrun each rank answers a contiguous share; rank 0 writes them in order.
    world, rank = distributed.world_size(), distributed.rank()
    share = -(-len(questions) // world)
    mine = questions[rank * share:(rank + 1) * share]
    preds = evaluate.predict_places(model, mine, pretrain_dataset.stoi, pretrain_dataset.itos,
                                    device, exact=bool(args['--exact']))
    predictions = [p for part in distributed.gather_objects(preds) for p in part]
    if not distributed.is_main():
        return
    checkpoint.save_text(''.join(p + '\n' for p in predictions), outputs)
    total, correct = utils.evaluate_places(eval_path, predictions)
    if total > 0:
        print('Correct: {} out of {}: {}%'.format(correct, total, correct / total * 100))
    else:
        print('Predictions written to {}; no targets provided'.format(outputs))


def london_baseline(args):
    path = readable_file(args['--eval_corpus_path'], '--eval_corpus_path')
    n = len([line for line in read_text(path, '--eval_corpus_path').split('\n') if line.strip()])
    total, correct = utils.evaluate_places(path, ['London'] * n)
    if total > 0:
        print('London baseline: Correct: {} out of {}: {}%'.format(correct, total, correct / total * 100))
    else:
        print(f'{path} has no answers; the London baseline needs a file with answers')
        sys.exit(2)


def main(argv=None):
    try:
        args = docopt(__doc__, argv=argv)
    except DocoptExit:
        raise UsageError('unrecognised or incomplete arguments; see python run.py --help') from None
    function, variant = args['--function'], args['--variant']
    if function not in FUNCTIONS:
        raise UsageError(f'unknown --function={function}; use one of {", ".join(FUNCTIONS)}')
    if function == 'report':
        from submission import report
        report.main(args['--submission_dir'], args['--data_dir'], args['--report_dir'])
        return
    if function == 'london_baseline':
        return london_baseline(args)
    if variant is None or args['--pretrain_corpus_path'] is None:
        raise UsageError(f'--function={function} needs --variant and --pretrain_corpus_path')
    if variant not in VARIANTS:
        raise UsageError(f'unknown --variant={variant}; use vanilla or synthesizer')
    if args['--precision'] not in ('auto', 'fp32', 'bf16', 'fp16'):
        raise UsageError(f'unknown --precision={args["--precision"]}; use auto, fp32, bf16 or fp16')
    for key in ('--max_epochs', '--max_steps'):
        number(args, key)
    number(args, '--checkpoint_every', float, minimum=0)
    seed = number(args, '--seed', minimum=0)

    # Check every input and output path before any work starts.
    text = read_text(args['--pretrain_corpus_path'], '--pretrain_corpus_path')
    if not text.strip():
        raise UsageError(f'pretraining corpus {args["--pretrain_corpus_path"]} is empty; pass the course wiki.txt')
    if function in ('pretrain', 'finetune'):
        writable_path(args['--writing_params_path'], '--writing_params_path')
    if function == 'finetune':
        ft_text = read_text(args['--finetune_corpus_path'], '--finetune_corpus_path')
        if args['--reading_params_path'] is not None:
            readable_file(args['--reading_params_path'], '--reading_params_path')
    if function == 'evaluate':
        readable_file(args['--reading_params_path'], '--reading_params_path')
        readable_file(args['--eval_corpus_path'], '--eval_corpus_path')
        writable_path(args['--outputs_path'], '--outputs_path')

    device = distributed.setup(pick_device(args['--device']))
    random.seed(seed)
    torch.manual_seed(seed)

    # Keep the block size fixed at 128 for this assignment
    block_size = 128
    pretrain_dataset = CharCorruptionDataset(text, block_size)
    if function == 'finetune':
        check_finetune_corpus(ft_text, pretrain_dataset.stoi, args['--finetune_corpus_path'])

    # We don't suggest you change these hyperparameters, as they're known to work.
    mconf = GPTConfig(pretrain_dataset.vocab_size, pretrain_dataset.block_size,
                      n_layer=4, n_head=8, n_embd=256, fast=not args['--exact'])
    if variant == 'vanilla':
        model = initialize_vanilla_model(mconf)
    else:
        model = initialize_synthesizer_model(mconf)

    if function == 'pretrain':
        tconf, trainer = pretrain(pretrain_dataset, block_size, model)
        trainer.device = device
        run_training(args, tconf, trainer, model, mconf)
    elif function == 'finetune':
        tconf, trainer = finetune(args['--reading_params_path'], args['--finetune_corpus_path'],
                                  pretrain_dataset, block_size, model)
        trainer.device = device
        run_training(args, tconf, trainer, model, mconf)
    else:
        run_evaluate(args, model, pretrain_dataset, device)


if __name__ == '__main__':
    try:
        main()
        distributed.barrier()  # ranks leave together, after rank 0 has written its files
    except (UsageError, checkpoint.CheckpointError, TrainingError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        sys.exit(e.code)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
    finally:
        distributed.teardown()
