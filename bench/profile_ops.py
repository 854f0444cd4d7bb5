"""Profile one pretraining step and one evaluation of the fast path with torch.profiler.

Usage:
    profile_ops.py [--precision=P] [--threads=N] [--variant=V] [--rows=N]

Options:
    --precision=P   fp32 or bf16 [default: fp32]
    --threads=N     torch threads (default: torch's own choice)
    --variant=V     vanilla or synthesizer [default: vanilla]
    --rows=N        operators to show per table [default: 12]

The step is the real trainer's (helper.pretrain's settings and Options,
Trainer.optimize: autocast, backward, clipping, AdamW) on a batch of 128
course documents; the evaluation decodes the 500 dev questions with an
untrained model (every row decodes all 32 characters, the worst case). Each
is warmed up once, then profiled; the tables list operators by self CPU time.

A second table times the step's operators by the clock instead, each call
on its own, by the first argument's shape (the step after the profiled one):
the profiler can charge one operator with time that is not its own (in a
bf16 step it gave GELU's backward 180 ms that take 18 ms by the clock).
"""
import collections
import os
import random
import sys
import time

import torch
from docopt import docopt, DocoptExit
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'src'))
import run  # noqa: E402
from submission import helper
from tools import evaluate  # noqa: E402
from submission.lib.batching import make_batch  # noqa: E402
from submission.dataset import CharCorruptionDataset  # noqa: E402
from submission.lib.files import UsageError, course_data_dir  # noqa: E402
from submission.model import GPTConfig  # noqa: E402
from submission.lib.options import Options, docopt_refusal, whole_number  # noqa: E402
from submission.trainer import epoch_order  # noqa: E402


def table(prof, rows):
    return prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=rows)


class Clock(TorchDispatchMode):
    """Wall time of every aten call made under it, by (operator, shape of its first argument)."""

    def __init__(self):
        super().__init__()
        self.seconds, self.calls = collections.Counter(), collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        t0 = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        key = (str(func.overloadpacket.__name__), '' if first is None else str(tuple(first.shape)))
        self.seconds[key] += time.perf_counter() - t0
        self.calls[key] += 1
        return out

    def table(self, wall, rows):
        lines = [f'{"ms":>8} {"calls":>5}  operator (first argument\'s shape)']
        lines += [f'{s * 1e3:8.1f} {self.calls[k]:5d}  {k[0]} {k[1]}' for k, s in self.seconds.most_common(rows)]
        matmul = sum(s for k, s in self.seconds.items() if k[0] in ('mm', 'addmm', 'bmm'))
        lines.append(f'step {wall * 1e3:.0f} ms by the clock; operators {sum(self.seconds.values()) * 1e3:.0f} ms, '
                     f'of which matmuls (mm, addmm, bmm) {matmul * 1e3:.0f} ms')
        return '\n'.join(lines)


def arguments():
    """The command line's options, checked, and the course data's folder."""
    try:
        args = docopt(__doc__)
    except DocoptExit:
        raise UsageError(docopt_refusal(__doc__, sys.argv[1:], 'bench/profile_ops.py')) from None
    if args['--precision'] not in ('fp32', 'bf16'):
        raise UsageError(f'unknown --precision={args["--precision"]}; use fp32 or bf16')
    if args['--variant'] not in ('vanilla', 'synthesizer'):
        raise UsageError(f'unknown --variant={args["--variant"]}; use vanilla or synthesizer')
    if args['--threads']:
        torch.set_num_threads(whole_number(args['--threads'], '--threads', high=os.cpu_count() * 4))
    whole_number(args['--rows'], '--rows')
    data = course_data_dir()
    if data is None:
        sys.exit('error: profiling needs the course data: put it in src/data (see src/data/README.md)')
    return args, data


def main():
    args, data = arguments()
    run.keep_freed_memory()  # as run.py's process does
    rows = int(args['--rows'])
    with open(os.path.join(data, 'wiki.txt'), encoding='utf-8') as f:
        ds = CharCorruptionDataset(f.read(), 128)
    random.seed(0)
    torch.manual_seed(0)
    mconf = GPTConfig(ds.vocab_size, 128, n_layer=4, n_head=8, n_embd=256, exact=False)
    init = helper.initialize_synthesizer_model if args['--variant'] == 'synthesizer' else \
        helper.initialize_vanilla_model
    model = init(mconf)
    options = Options(exact=False, device='cpu', precision=args['--precision'], progress=False)
    _, trainer = helper.pretrain(ds, 128, model, options)
    trainer.set_up()
    order = epoch_order(len(ds), 0, 0)

    def step(i):
        x, y, pos = make_batch(ds, order[i * 128:(i + 1) * 128], False)
        trainer.optimize(x, y, pos, int((y != 0).sum()))

    step(0)
    t0 = time.perf_counter()
    step(1)
    plain = time.perf_counter() - t0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(2)
    print(f'## pretraining step ({args["--variant"]}, {args["--precision"]}, {torch.get_num_threads()} threads): '
          f'{plain:.3f} s unprofiled\n')
    print(table(prof, rows))
    clock = Clock()
    t0 = time.perf_counter()
    with clock:
        step(3)
    print(f'\n## the next step\'s operators by the clock\n\n{clock.table(time.perf_counter() - t0, rows)}\n')
    profile_evaluation(data, lambda: init(mconf), ds, rows)


def profile_evaluation(data, untrained_model, ds, rows):
    """The fast decoding of every dev question by an untrained model: every row decodes to the end."""
    with open(os.path.join(data, 'birth_dev.tsv'), encoding='utf-8') as f:
        questions = [line.split('\t')[0] for line in f.read().split('\n') if line.strip()]
    torch.manual_seed(0)
    untrained = untrained_model().eval()
    evaluate.predict_places(untrained, questions[:50], ds.stoi, ds.itos, 'cpu')
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        evaluate.predict_places(untrained, questions, ds.stoi, ds.itos, 'cpu')
    print(f'## evaluation of {len(questions)} dev questions, untrained model: '
          f'{time.perf_counter() - t0:.3f} s profiled\n')
    print(table(prof, rows))


if __name__ == '__main__':
    try:
        main()
    except UsageError as e:
        sys.exit(f'error: {e}')
