"""
Pretrain, finetune or evaluate the birth-place model (the course's run.py, with options of our own).

Usage:
    run.py --function=FUNCTION [--variant=VARIANT] [--pretrain_corpus_path=FILE] [options]
    run.py (-h | --help)

pretrain, finetune and evaluate need --variant and --pretrain_corpus_path;
report reads --submission_dir and --data_dir; london_baseline needs --eval_corpus_path.
An option the function does not use is refused.

Course options:
    --function=FUNCTION             pretrain, finetune or evaluate (ours: report, london_baseline)
    --variant=VARIANT               vanilla or synthesizer (later course years: perceiver, rope)
    --pretrain_corpus_path=FILE     the pretraining corpus; the vocabulary always comes from it
    --writing_params_path=FILE      where training writes the model's params
    --finetune_corpus_path=FILE     question<TAB>answer lines to finetune on
    --reading_params_path=FILE      params to start from (finetune) or to evaluate
    --eval_corpus_path=FILE         questions to answer (with answers: accuracy is printed)
    --outputs_path=FILE             where evaluation writes one prediction per line

Our options:
    --bottleneck_dim=M              perceiver: the bottleneck's number of slots (default 32)
    --max_epochs=N                  override the course's number of epochs (smoke tests)
    --schedule_epochs=N             train N epochs, the learning rate's decay fitted to them
    --batch_size=B                  examples a step (default: the course's, 128 pretraining, 256 finetuning)
    --learning_rate=LR              the peak learning rate (default: the course's, 6e-3 and 6e-4)
    --weight_decay=W                AdamW's weight decay (default: the course's 0.1)
    --dropout=P                     every dropout of the model (default: the course's 0.1)
    --pretrain_questions=FILE       pretrain on these question<TAB>answer lines too, beside the corpus
                                    (the finetuning questions; never dev or test ones)
    --salient_spans=P               mask a capitalised run of words (a name, a place) with probability P
    --salient_tail=N                keep at most N characters past such a masked run (default: up to 112)
    --span_completions=P            with probability P an example is a line cut before one of its capitalised
                                    runs of words, MASK, the run: a finetuning question's form
    --name_views=P                  with probability P an example is a line's name, then one of its
                                    capitalised runs of words: a fact learned from the name alone
    --uneven_people=A               draw each example's line from a power law over the lines, exponent A
    --warmup_people=K               the first warmup_epochs epochs draw every example from K lines only
    --warmup_epochs=E               (both together; the K lines a fixed shuffle by --seed)
    --max_steps=N                   stop after N optimizer steps
    --seed=N                        seed for every source of randomness (default 0)
    --device=DEVICE                 cpu, cuda, cuda:N or mps (default: the first available of cuda, mps, cpu)
    --precision=P                   auto, fp32, bf16 or fp16 (default auto: bf16 where the device computes
                                    it natively and faster, else fp32; fp32 with --exact)
    --threads=N                     CPU threads for torch (default: torch's own choice)
    --compile                       torch.compile the model
    --exact                         the plain course computation: fp32, per-item dataset,
                                    full-length rows, one-question-at-a-time evaluation
    --resume                        continue from WRITING_PARAMS_PATH.ckpt if it exists
    --restart                       discard WRITING_PARAMS_PATH.ckpt and start over
    --checkpoint_every=SECONDS      seconds between resumable checkpoints (default 300)
    --submission_dir=DIR            report: where params, logs and predictions are (default submission)
    --data_dir=DIR                  report: where the course data is (default data)
    --report_dir=DIR                report: where to write the report (default reports)
"""
import contextlib
import ctypes
import gc
import os
import random
import re
import signal
import sys

import torch
from docopt import docopt, DocoptExit

from submission.dataset import MASK_CHAR, PAD_CHAR, CharCorruptionDataset, NameDataset, check_finetune_corpus
from submission.lib import compat, distributed, files, options
from tools import evaluate
from submission.lib import checkpoint
from submission.lib.checkpoint import load_into
from submission.lib.files import UsageError
from submission.lib.recipe import NameViews, QuestionMix, SalientSpans, SpanCompletions, UnevenPeople, WarmupPeople
from submission.helper import (finetune, initialize_perceiver_model, initialize_rope_model,
                               initialize_synthesizer_model, initialize_vanilla_model, pretrain, train)
from submission.model import GPTConfig
from submission.trainer import Interrupted
from submission.utils import evaluate_places, read_eval_lines

# Keep the block size fixed at 128 for this assignment
BLOCK_SIZE = options.BLOCK_SIZE
HELD_OUT = ('birth_dev.tsv', 'birth_test.tsv', 'birth_test_inputs.tsv')  # never trained on
LONG_LINE = 8 * BLOCK_SIZE  # a line this long is a corpus not split into documents (the course's longest: 522)


def parse(argv=None):
    """The command line as one checked, frozen Options."""
    try:
        args = docopt(__doc__, argv=argv)
    except DocoptExit:
        raise UsageError(options.docopt_refusal(__doc__, sys.argv[1:] if argv is None else argv,
                                                'python run.py')) from None
    return options.from_command_line(args)


def check_files(o):
    """Every input readable, every output writable, no output among the inputs: before any work."""
    inputs = [('--pretrain_corpus_path', o.pretrain_corpus_path), ('--finetune_corpus_path', o.finetune_corpus_path),
              ('--reading_params_path', o.reading_params_path), ('--eval_corpus_path', o.eval_corpus_path),
              ('--pretrain_questions', o.pretrain_questions)]
    outputs = [('--writing_params_path', o.writing_params_path), ('--outputs_path', o.outputs_path)]
    inputs = [(option, path) for option, path in inputs if path is not None]
    outputs = [(option, path) for option, path in outputs if path is not None]
    for option, path in inputs:
        files.input_file(path, option)
    for option, path in outputs:
        files.output_file(path, option)
    files.check_outputs_spare_inputs(inputs, outputs)


def pretraining_dataset(path):
    """The CharCorruptionDataset of the pretraining corpus at path (the vocabulary), checked."""
    text = files.read_text(path, '--pretrain_corpus_path')
    if not text.strip():
        raise UsageError(f'pretraining corpus {path} is empty; pass the course wiki.txt')
    # The course's code takes both of these as they are: warned, not refused.
    if text.startswith('\ufeff'):
        options.warn(f'{path} starts with a byte-order mark (U+FEFF), which the course\'s dataset makes a '
                     f'character of the vocabulary; save the file as UTF-8 without it')
    if '\0' in text:
        options.warn(f'{path} holds {text.count(chr(0)):,} NUL character(s), as a binary file would; the course\'s '
                     f'dataset makes them a character of the vocabulary: remove them')
    longest = max(text.split('\n'), key=len)
    if len(longest) > LONG_LINE:
        kept = int(BLOCK_SIZE * 7 / 8)
        options.warn(f'{path} has a line of {len(longest):,} characters; the course\'s dataset makes each line '
                     f'one document and trains on at most its first {kept}: put one document per line')
    for char, name in ((MASK_CHAR, 'MASK'), (PAD_CHAR, 'PAD')):
        if char in text:
            line = text[:text.index(char)].count('\n') + 1
            raise UsageError(f'{path} line {line} holds {char} (U+{ord(char):04X}), which the course reserves '
                             f'for {name}; remove it from the corpus')
    return CharCorruptionDataset(text, BLOCK_SIZE)


def questions_of(path, lines, stoi):
    """Questions of an eval file, with characters outside the vocabulary dropped (with a warning)."""
    questions, dropped = [], set()
    for line in lines:
        q = line.split('\t')[0]
        dropped.update(c for c in q if c not in stoi or c == MASK_CHAR)
        questions.append(''.join(c for c in q if c in stoi and c != MASK_CHAR))
    if dropped:
        print(f'warning: dropped characters outside the vocabulary from {path}: '
              f'{"".join(sorted(dropped))!r}', file=sys.stderr)
    return questions


def question_mix(path, corpus):
    """The corpus with the questions of path mixed into its pretraining (--pretrain_questions)."""
    if os.path.basename(path) in HELD_OUT:
        raise UsageError(f'--pretrain_questions={path} is a held-out set: pretraining on it would answer its '
                         f'questions from memory; give the finetuning questions (birth_places_train.tsv)')
    check_finetune_corpus(path, corpus.stoi, BLOCK_SIZE)
    return QuestionMix(corpus, NameDataset(files.read_text(path, '--pretrain_questions'), corpus))


def run_training(o, pretrain_dataset, model):
    if o.function == 'pretrain':
        tconf, trainer = pretrain(pretrain_dataset, BLOCK_SIZE, model, o)
    else:
        tconf, trainer = finetune(o.reading_params_path, o.finetune_corpus_path, pretrain_dataset,
                                  BLOCK_SIZE, model, o)
    train(model, o.writing_params_path, trainer)
    if distributed.is_main():
        print(f'wrote {o.writing_params_path}')


def run_evaluate(o, pretrain_dataset, model, lines):
    load_into(model, o.reading_params_path, pretrain_dataset.itos)
    model.to(o.device)
    questions = questions_of(o.eval_corpus_path, lines, pretrain_dataset.stoi)
    # Under torchrun each rank answers a contiguous share; rank 0 writes them in order.
    world, rank = distributed.world_size(), distributed.rank()
    share = -(-len(questions) // world)
    mine = questions[rank * share:(rank + 1) * share]
    preds = evaluate.predict_places(model, mine, pretrain_dataset.stoi, pretrain_dataset.itos,
                                    o.device, exact=o.exact)
    predictions = [p for part in distributed.gather_objects(preds) for p in part]
    if not distributed.is_main():
        return
    files.save_text(''.join(p + '\n' for p in predictions), o.outputs_path)
    total, correct = evaluate_places(o.eval_corpus_path, predictions)
    if total > 0:
        print('Correct: {} out of {}: {}%'.format(correct, total, correct / total * 100))
    else:
        print('Predictions written to {}; no targets provided'.format(o.outputs_path))


def london_baseline(o):
    lines, answered = read_eval_lines(o.eval_corpus_path)
    if not answered:
        raise UsageError(f'{o.eval_corpus_path} has no answers; the London baseline needs a file with answers')
    total, correct = evaluate_places(o.eval_corpus_path, ['London'] * len(lines))
    print('London baseline: Correct: {} out of {}: {}%'.format(correct, total, correct / total * 100))


def build_model(o, pretrain_dataset):
    # We don't suggest you change these hyperparameters, as they're known to work.
    mconf = GPTConfig(pretrain_dataset.vocab_size, pretrain_dataset.block_size,
                      n_layer=4, n_head=8, n_embd=256, exact=o.exact, device=o.device)
    if o.dropout is not None:  # a recipe of one's own: every dropout of the model at once
        mconf.embd_pdrop = mconf.resid_pdrop = mconf.attn_pdrop = o.dropout
    if o.variant == 'vanilla':
        return initialize_vanilla_model(mconf)
    if o.variant == 'synthesizer':
        return initialize_synthesizer_model(mconf)
    if o.variant == 'perceiver':
        return initialize_perceiver_model(mconf, o.bottleneck_dim)
    return initialize_rope_model(mconf)


def main(argv=None):
    o = parse(argv)
    if o.function == 'report':
        from tools import report
        report.main(o.submission_dir, o.data_dir, o.report_dir)
        return
    if o.function == 'london_baseline':
        files.input_file(o.eval_corpus_path, '--eval_corpus_path')
        return london_baseline(o)
    check_files(o)
    if o.function in options.TRAINS:
        o = checkpoint.resumed_precision(o, o.writing_params_path)  # before the line that says it
    options.apply_to_torch(o)
    distributed.setup(o.device)
    checking = os.environ.get('RUN_SH_NPROC')  # run.sh's check of everything before it starts torchrun
    if distributed.is_main() and not checking:
        print(options.where_it_runs(o), flush=True)
        if not o.exact and compat.fast_path_notes():
            print(f'note: torch {torch.__version__}: {"; ".join(compat.fast_path_notes())}', flush=True)
    random.seed(o.seed)
    torch.manual_seed(o.seed)

    pretrain_dataset = pretraining_dataset(o.pretrain_corpus_path)
    lines = pretrain_dataset.data
    if o.salient_spans:
        pretrain_dataset = SalientSpans(pretrain_dataset, o.salient_spans, o.salient_tail)
    if o.span_completions:
        pretrain_dataset = SpanCompletions(pretrain_dataset, o.span_completions, lines)
    if o.name_views:
        pretrain_dataset = NameViews(pretrain_dataset, o.name_views, lines)
    if o.uneven_people:
        pretrain_dataset = UnevenPeople(pretrain_dataset, o.uneven_people, o.seed)
    if o.warmup_people:
        pretrain_dataset = WarmupPeople(pretrain_dataset, o.warmup_people, o.warmup_epochs, o.seed)
    if o.pretrain_questions:
        pretrain_dataset = question_mix(o.pretrain_questions, pretrain_dataset)
    if o.function == 'finetune':
        check_finetune_corpus(o.finetune_corpus_path, pretrain_dataset.stoi, BLOCK_SIZE)
    elif o.function == 'evaluate':
        longest = BLOCK_SIZE - 1 - evaluate.STEPS if o.variant == 'synthesizer' else None
        eval_lines, _ = read_eval_lines(o.eval_corpus_path, longest)
    if checking:
        return options.check_processes(o.device, int(checking))
    model = build_model(o, pretrain_dataset)
    # One run at a time writes a params or predictions file (rank 0 writes them under torchrun).
    option, written = ('--outputs_path', o.outputs_path) if o.function == 'evaluate' else \
        ('--writing_params_path', o.writing_params_path)
    with files.WriterLock(written, option) if distributed.is_main() else contextlib.nullcontext():
        if o.function == 'evaluate':
            run_evaluate(o, pretrain_dataset, model, eval_lines)
        else:
            run_training(o, pretrain_dataset, model)


def stop_on_signal(signum, frame):
    """SIGTERM outside training (which checkpoints on it): stop as Ctrl-C does, through every
    `finally`, so a file being written and the writer's lock are cleaned up."""
    raise Interrupted(f'{signal.Signals(signum).name} received: stopped; a file being written was left '
                      f'as it was before', 128 + signum)


def keep_freed_memory():
    """Let glibc's malloc keep freed memory for the next allocation instead of handing it back.

    By default a block over its mmap threshold (at most 32 MB) goes back to the
    system when freed, and the next one is faulted in again page by page, zeroed:
    a CPU training step allocates and frees hundreds of MB of activations, and
    paid 14,000-34,000 page faults a step for it on average (docs/PERFORMANCE.md).
    The heap then holds what the largest steps need (resident memory about 8 %
    higher); the computation is untouched. Other C libraries (macOS, musl) keep
    their ways."""
    if not sys.platform.startswith('linux'):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-4, 0)  # M_MMAP_MAX: no block of its own mapping; all from the heap
        libc.mallopt(-1, 2 ** 31 - 1)  # M_TRIM_THRESHOLD: the heap's free top kept, up to 2 GiB
    except (OSError, AttributeError):
        pass


if __name__ == '__main__':
    keep_freed_memory()
    # torch's hundreds of thousands of Python objects live as long as the process:
    # frozen, the garbage collector skips them in its passes (torch.optim's first use
    # imports torch._dynamo) and at exit. Frozen again at exit for what came since.
    gc.freeze()
    signal.signal(signal.SIGTERM, stop_on_signal)
    try:
        main()
        distributed.barrier()  # ranks leave together, after rank 0 has written its files
    except UsageError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        sys.exit(e.code)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
    except files.WriteError as e:  # a full or read-only disk: the atomic write left the old file as it was
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        print(f'error: {e.strerror or e}' + (f': {e.filename}' if e.filename else ''), file=sys.stderr)
        sys.exit(1)
    finally:
        distributed.teardown()
        gc.freeze()
