"""Options: what one run was asked to do, as one frozen object, checked once.

run.py turns its command line into an Options (`from_command_line`), the demo
builds one from its own flags, and nothing changes it afterwards. Every value
is checked here, with a one-line UsageError for a bad one, and the device and
the precision are decided here, once for the whole run: the trainer and the
evaluation read them and never decide again.

Options() defaults as the command line does (the fast path, on this
machine's default device, in fp32); Options.course() is
the course's computation, which a Trainer given no Options runs.
"""
import argparse
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

import torch

from . import compat, distributed, files
from .files import UsageError

FUNCTIONS = ('pretrain', 'finetune', 'evaluate', 'report', 'london_baseline')
TRAINS = ('pretrain', 'finetune')
VARIANTS = ('vanilla', 'synthesizer', 'perceiver', 'rope')
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
SEED_LIMIT = 2 ** 32  # seeds feed torch.manual_seed and the epoch order, which must not overflow
BOTTLENECK_DIM = 32  # the perceiver's slots, as the course's initialize_perceiver_model has them
BLOCK_SIZE = 128  # the course's block size for every run
PRETRAIN_EPOCHS = 650  # the course's pretraining epochs (helper.py's TrainerConfig)
EPOCH_LIMIT = 100_000  # far beyond any run, and small enough that token counts stay exact in floats
BATCH_LIMIT = 65_536


class Option(NamedTuple):
    """One of run.py's options, declared once: its name; `read` turns its text into the Options
    field of the same name (None: read with others, in from_command_line); the functions that
    use it (any other function refuses it: it would be ignored silently, e.g.
    --reading_params_path with pretrain) and those that need it; `recipe`: it sets a recipe
    of one's own (never with --exact); `config`: the TrainerConfig setting it replaces there."""
    name: str
    read: Optional[Callable]
    uses: tuple
    needed: tuple = ()
    recipe: bool = False
    config: Optional[str] = None


TRAINED = ('pretrain', 'finetune', 'evaluate')  # the functions that build a model
OPTIONS = (
    Option('--variant', lambda t: choice(t, VARIANTS, '--variant'), TRAINED, needed=TRAINED),
    Option('--bottleneck_dim', None, TRAINED),  # with --variant: bottleneck_dim()
    Option('--pretrain_corpus_path', str, TRAINED, needed=TRAINED),
    Option('--writing_params_path', str, TRAINS, needed=TRAINS),
    Option('--finetune_corpus_path', str, ('finetune',), needed=('finetune',)),
    Option('--reading_params_path', str, ('finetune', 'evaluate'), needed=('evaluate',)),
    Option('--eval_corpus_path', str, ('evaluate', 'london_baseline'), needed=('evaluate', 'london_baseline')),
    Option('--outputs_path', str, ('evaluate',), needed=('evaluate',)),
    Option('--max_epochs', lambda t: whole_number(t, '--max_epochs'), TRAINS),
    Option('--schedule_epochs', None, TRAINS, recipe=True),  # with --max_epochs: schedule()
    Option('--batch_size', lambda t: whole_number(t, '--batch_size', high=BATCH_LIMIT), TRAINS, recipe=True,
           config='batch_size'),
    Option('--learning_rate', lambda t: fraction(t, '--learning_rate', open_low=True), TRAINS, recipe=True,
           config='learning_rate'),
    Option('--weight_decay', lambda t: fraction(t, '--weight_decay'), TRAINS, recipe=True, config='weight_decay'),
    Option('--dropout', lambda t: fraction(t, '--dropout', high=0.9), TRAINS, recipe=True),
    Option('--pretrain_questions', str, ('pretrain',), recipe=True),
    Option('--salient_spans', lambda t: fraction(t, '--salient_spans'), ('pretrain',), recipe=True),
    Option('--salient_tail', lambda t: whole_number(t, '--salient_tail', low=0, high=BLOCK_SIZE), ('pretrain',),
           recipe=True),
    Option('--span_completions', lambda t: fraction(t, '--span_completions'), ('pretrain',), recipe=True),
    Option('--name_views', lambda t: fraction(t, '--name_views'), ('pretrain',), recipe=True),
    Option('--uneven_people', lambda t: fraction(t, '--uneven_people', high=3.0, open_low=True), ('pretrain',),
           recipe=True),
    Option('--warmup_people', lambda t: whole_number(t, '--warmup_people'), ('pretrain',), recipe=True),
    Option('--warmup_epochs', lambda t: whole_number(t, '--warmup_epochs', high=EPOCH_LIMIT), ('pretrain',),
           recipe=True),
    Option('--max_steps', lambda t: whole_number(t, '--max_steps'), TRAINS),
    Option('--seed', lambda t: whole_number(t, '--seed', low=0, high=SEED_LIMIT - 1), TRAINS),
    Option('--device', None, TRAINED),  # device_named(), its default this machine's
    Option('--precision', None, TRAINS),  # with the device and --exact, last: precision_for()
    Option('--compile', bool, TRAINS),
    Option('--exact', bool, TRAINED),
    Option('--resume', bool, TRAINS),
    Option('--restart', bool, TRAINS),
    Option('--checkpoint_every', lambda t: seconds(t, '--checkpoint_every'), TRAINS),
    Option('--threads', lambda t: whole_number(t, '--threads', high=os.cpu_count() * 4), TRAINED),
    Option('--submission_dir', str, ('report',)),
    Option('--data_dir', str, ('report',)),
    Option('--report_dir', str, ('report',)),
)
USES = {function: tuple(o.name for o in OPTIONS if function in o.uses) for function in FUNCTIONS}
NEEDS = {function: tuple(o.name for o in OPTIONS if function in o.needed) for function in FUNCTIONS}
# A training recipe of one's own: settings that change what the course computes, so never with --exact.
RECIPE = tuple(o.name for o in OPTIONS if o.recipe)


def default_device():
    if torch.cuda.is_available():
        return cuda_device()
    if getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available():
        return 'mps'
    return 'cpu'


@dataclass(frozen=True)
class Options:
    # The course's options.
    function: str = None
    variant: str = 'vanilla'
    pretrain_corpus_path: str = None
    writing_params_path: str = None
    finetune_corpus_path: str = None
    reading_params_path: str = None
    eval_corpus_path: str = None
    outputs_path: str = None
    bottleneck_dim: int = None  # perceiver only (default BOTTLENECK_DIM)
    # Ours, defaulting as the command line does: the fast path on this machine's default
    # device, in fp32 (Options.course(): the course's computation).
    exact: bool = False
    device: str = field(default_factory=default_device)
    precision: str = 'fp32'  # the command line's auto: precision_for
    precision_why: str = ''  # how auto chose it, for the start line
    compile: bool = False
    seed: int = 0
    max_epochs: int = None  # None: the course's number for the run
    schedule_epochs: int = None  # N: train N epochs on the course's schedule fitted to them
    # None: the course's (helper.py's TrainerConfig, GPTConfig's dropouts)
    batch_size: int = None
    learning_rate: float = None
    weight_decay: float = None
    dropout: float = None
    pretrain_questions: str = None  # question<TAB>answer lines pretrained on beside the corpus
    salient_spans: float = None  # the share of examples whose masked span is a salient span
    salient_tail: int = None  # the most characters a salient example's window keeps past its span
    span_completions: float = None  # the share of examples that are a line cut at a salient span, then the span
    name_views: float = None  # the share of examples that are a line's name and one of its salient spans
    uneven_people: float = None  # the power law's exponent over the lines drawn
    warmup_people: int = None  # the lines the first warmup_epochs epochs draw from
    warmup_epochs: int = None
    max_steps: int = None
    threads: int = None     # None: torch's own choice
    resume: bool = False
    restart: bool = False  # discard an interrupted run's checkpoint and start over (wins over resume)
    checkpoint_every: float = 300.0  # seconds
    progress: bool = True
    submission_dir: str = 'submission'
    data_dir: str = 'data'
    report_dir: str = 'reports'

    @classmethod
    def course(cls, **kw):
        """The course's computation (fp32, per-item batches, its attention and dropout, one question
        at a time), as a Trainer given no Options runs."""
        return cls(exact=True, precision='fp32', **kw)


def whole_number(text, option, low=1, high=None):
    """A whole number written in plain ASCII digits (int() would also take 1_0 and other scripts' digits)."""
    if not isinstance(text, str) or not re.fullmatch(r'[+-]?[0-9]+', text):
        raise UsageError(f'{option}={text} is not a whole number; write it in digits 0-9')
    value = int(text)
    if value < low or (high is not None and value > high):
        bound = f'from {low} to {high}' if high is not None else f'at least {low}'
        raise UsageError(f'{option}={text} is out of range; give a whole number {bound}')
    return value


def seconds(text, option):
    """A number of seconds written in plain ASCII (float() would also take 1_0 and other scripts' digits)."""
    words = ('inf', '+inf', 'infinity', '+infinity', 'nan')  # refused below, as not finite
    if not re.fullmatch(r'[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?', text) and text.lower() not in words:
        raise UsageError(f'{option}={text} is not a number of seconds; write it in digits 0-9')
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise UsageError(f'{option}={text} must be a finite number of seconds, 0 or more')
    return value


def cuda_device():
    """Under torchrun each process takes its own GPU."""
    return f'cuda:{distributed.local_rank()}' if distributed.launched_by_torchrun() else 'cuda'


def check_gpus_for_torchrun(device):
    """Under torchrun: one GPU per process on this machine, chosen by its local rank, never given."""
    if not distributed.launched_by_torchrun() or not device.startswith('cuda'):
        return
    if device != cuda_device():
        raise UsageError(f'--device={device} under torchrun would put every process on one GPU; each process '
                         f'takes its own (cuda:LOCAL_RANK): give --device=cuda or leave it out')
    check_processes(device, int(os.environ.get('LOCAL_WORLD_SIZE', distributed.local_rank() + 1)))


def check_processes(device, processes):
    """processes on this machine, each on a GPU of its own when the device is a GPU."""
    count = torch.cuda.device_count() if device.startswith('cuda') else processes
    if processes > count:
        raise UsageError(f'{processes} processes on this machine, which has {count} GPU(s): start at most '
                         f'{count} (NPROC={count}), or pass --device=cpu')


def device_named(text):
    """A device this machine has: cpu, cuda, cuda:N or mps."""
    if text is None:
        device = default_device()
        check_gpus_for_torchrun(device)
        return device
    kind, _, index = text.partition(':')
    if kind not in ('cpu', 'cuda', 'mps') or (index and (kind != 'cuda' or not index.isdigit())):
        raise UsageError(f'unknown --device={text}; use cpu, cuda, cuda:N or mps')
    if kind == 'cuda' and not torch.cuda.is_available():
        raise UsageError(f'--device={text}: this machine has no CUDA GPU (or this torch has no CUDA); '
                         f'use --device=cpu')
    if kind == 'cuda' and index and int(index) >= torch.cuda.device_count():
        raise UsageError(f'--device={text}: this machine has {torch.cuda.device_count()} CUDA GPU(s); '
                         f'use cuda:0 to cuda:{torch.cuda.device_count() - 1}')
    if kind == 'mps' and not (getattr(torch.backends, 'mps', None) is not None
                              and torch.backends.mps.is_available()):
        raise UsageError(f'--device={text}: Apple MPS is not available here; use --device=cpu')
    device = cuda_device() if text == 'cuda' else text
    check_gpus_for_torchrun(device)
    return device


def bottleneck_dim(text, variant):
    """The perceiver's number of slots: 1 to block_size - 1 (default 32); only with --variant=perceiver."""
    if variant != 'perceiver':
        if text is not None:
            raise UsageError(f'--bottleneck_dim is for --variant=perceiver, not --variant={variant}; remove it')
        return None
    if text is None:
        return BOTTLENECK_DIM
    return whole_number(text, '--bottleneck_dim', low=1, high=BLOCK_SIZE - 1)


def fraction(text, option, high=1.0, open_low=False):
    """A number from 0 (excluded if open_low) to high, in plain ASCII."""
    if not re.fullmatch(r'[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?', text):
        raise UsageError(f'{option}={text} is not a number; write it in digits 0-9')
    value = float(text)
    if not (0 < value if open_low else 0 <= value) or value > high:
        raise UsageError(f'{option}={text} is out of range; give a number {"above" if open_low else "from"} 0 '
                         f'{"and at most" if open_low else "to"} {high}')
    return value


def choice(text, choices, option):
    if text not in choices:
        raise UsageError(f'unknown {option}={text}; use {", ".join(choices[:-1])} or {choices[-1]}')
    return text


def check_recipe(args, exact):
    """The recipe options are ours: refused with --exact, which is the course's computation."""
    given = [key for key in RECIPE if args.get(key) is not None]
    if exact and given:
        raise UsageError(f'{given[0]} sets a recipe of our own; --exact runs the course\'s: drop one of them')


def check_warmup(values):
    """--warmup_people=K and --warmup_epochs=E go together, end before the run does, and leave the
    choice of lines to the warm-up (not with --uneven_people, which draws its own, or with
    --pretrain_questions, whose questions would keep every person in view). K is checked against
    the corpus once it is read (run.py)."""
    people, epochs = values.get('warmup_people'), values.get('warmup_epochs')
    if (people is None) != (epochs is None):
        given, missing = ('--warmup_people', '--warmup_epochs') if epochs is None else \
            ('--warmup_epochs', '--warmup_people')
        raise UsageError(f'{given} needs {missing} too: the warm-up is its people and its epochs')
    if people is None:
        return
    for other in ('uneven_people', 'pretrain_questions'):
        if values.get(other) is not None:
            raise UsageError(f'--warmup_people and --{other} both choose what an epoch holds; drop one of them')
    run = values.get('schedule_epochs') or values.get('max_epochs') or PRETRAIN_EPOCHS
    if epochs >= run:
        raise UsageError(f'--warmup_epochs={epochs} is not fewer than the run\'s {run} epochs; give fewer, '
                         f'so that the run goes on to every line')


def check_salient_tail(values):
    """--salient_tail=N shortens the windows of --salient_spans's draws: nothing without them."""
    if values.get('salient_tail') is not None and not values.get('salient_spans'):
        raise UsageError(f'--salient_tail shortens the windows of --salient_spans\'s draws, and there are none; '
                         f'give --salient_spans=P (above 0) too, or drop --salient_tail')


def schedule(text, max_epochs):
    """--schedule_epochs=N: a whole number of epochs, 1 to EPOCH_LIMIT; not with --max_epochs (which
    cuts the course's schedule short instead of fitting one)."""
    if text is None:
        return None
    if max_epochs is not None:
        raise UsageError(f'--schedule_epochs={text} sets the number of epochs itself; drop --max_epochs={max_epochs}')
    return whole_number(text, '--schedule_epochs', high=EPOCH_LIMIT)


def cpu_flags():
    """Which of the vector instruction sets that decide this model's speed the CPU has."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = next((line.split(':', 1)[1].split() for line in f if line.startswith('flags')), [])
    except OSError:
        flags = []
    return [flag for flag in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if flag in flags]


def cpu_has_native_bf16():
    return bool({'avx512_bf16', 'amx_bf16'} & set(cpu_flags()))


def precision_for(text, device, exact):
    """(precision, why): fp32, bf16 or fp16, and for auto the reason of its choice (else '').

    auto is bf16 where the device computes bf16 natively and, measured at this model's shapes,
    faster (auto_precision); fp32 elsewhere. bf16 and fp16 asked for by name are given, with a
    one-line warning. The exact course computation is fp32.
    """
    if text not in PRECISIONS:
        raise UsageError(f'unknown --precision={text}; use {", ".join(PRECISIONS)}')
    if exact:
        if text not in ('auto', 'fp32'):
            raise UsageError(f'--exact computes in fp32 as the course does; drop --precision={text}')
        return 'fp32', ''
    if text == 'fp16' and device == 'cpu' and not compat.HAS_CPU_FP16:
        raise UsageError(f'--precision=fp16 on the CPU needs torch 2.3 or newer, this is torch {torch.__version__}; '
                         f'use --precision=fp32 or bf16')
    if text == 'auto':
        return auto_precision(device)
    if text in ('bf16', 'fp16'):
        emulated = text == 'bf16' and device == 'cpu' and not cpu_has_native_bf16()
        warn(f'--precision={text} is not the course\'s fp32: the loss follows fp32\'s closely but not exactly '
             f'(docs/RESULTS.md)'
             + ('; this CPU has no native bf16 instructions (AVX512-BF16 or AMX), so bf16 is also emulated, '
                'many times slower' if emulated else '') + '; use --precision=fp32 for the course\'s computation')
    return text, ''


BF16_GAIN = 1.3  # how much faster bf16's matmuls must be than fp32's for auto to take bf16
GPU_FP32 = ('auto: fp32 on GPUs, where bf16 was no faster at this model\'s size and diverged at the course\'s '
            'settings (an H200; --precision=bf16 asks for it)')


def auto_precision(device):
    """(precision, why) for --precision=auto: bf16 on a CPU with native bf16 (AVX512-BF16 or AMX)
    whose bf16 matmuls at this model's shapes run at least BF16_GAIN times as fast as its fp32
    ones; else fp32, and on every GPU (GPU_FP32). Under several processes, fp32: each would
    measure for itself, and they must agree."""
    if distributed.launched_world_size() > 1:
        return 'fp32', 'auto: fp32 under several processes, which must agree'
    if device == 'cpu':
        if not cpu_has_native_bf16():
            return 'fp32', 'auto: this CPU has no native bf16 (AVX512-BF16 or AMX)'
    elif device.startswith('cuda'):
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            return 'fp32', f'auto: compute capability {major}.{minor} has no native bf16 (8.0 and later)'
        # Measured on an NVIDIA H200 (docs/RESULTS.md): at this model's size fp32's whole step (TF32)
        # was not slower than bf16's, and bf16 diverged at the course's settings.
        return 'fp32', GPU_FP32
    else:
        return 'fp32', f'auto: fp32 on {device}'
    gain = bf16_matmul_gain(device)
    if gain < BF16_GAIN:
        return 'fp32', f'auto: bf16 matmuls ran only {gain:.1f}x as fast as fp32 here'
    return 'bf16', f'auto: bf16 matmuls ran {gain:.1f}x as fast as fp32 here'


def bf16_matmul_gain(device, repeats=3):
    """fp32's time over bf16's for the model's widest matmul at a pretraining step's shape
    (128 rows of 127 positions, 256 -> 1024), best of `repeats` each (about 0.2 s on a 2-core CPU)."""
    import time
    x = torch.randn(128 * 127, 256, device=device)
    w = torch.randn(1024, 256, device=device)
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = x.to(dtype), w.to(dtype)
        times = []
        for _ in range(repeats + 1):  # the first call warms up
            if device.startswith('cuda'):
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            torch.nn.functional.linear(a, b)
            if device.startswith('cuda'):
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        best[dtype] = min(times[1:])
    return best[torch.float32] / best[torch.bfloat16]


def apply_to_torch(o):
    """torch's process-wide switches that the options decide: the CPU threads, and on GPUs TF32
    matmuls (10-bit mantissas in fp32 matmuls, several times faster on Ampere and later) for the
    fast path, strict fp32 for --exact, the course's computation; and never cuDNN's attention.

    scaled_dot_product_attention prefers cuDNN's kernel for bf16 and fp16 with a mask on recent
    GPUs (it takes no fp32), and that kernel's backward has given wrong gradients with an explicit
    mask on H100/H200 (pytorch/pytorch#139298, #196678). Every fused call here passes a
    mask (packed rows). In bf16 and fp16 the memory-efficient kernel, which takes masked calls
    once cuDNN's is off, is switched off too, leaving the math kernel: with it vanilla's bf16
    pretraining follows fp32's on an H100, and with either fused kernel it diverged
    (`bench/precision.py`, docs/RESULTS.md). fp32 keeps the memory-efficient kernel, with which
    it learns."""
    if o.threads:
        torch.set_num_threads(o.threads)
    if o.device.startswith('cuda'):
        torch.backends.cuda.matmul.allow_tf32 = not o.exact
        torch.backends.cudnn.allow_tf32 = not o.exact
        if compat.HAS_CUDNN_SDPA:
            torch.backends.cuda.enable_cudnn_sdp(False)
        if compat.HAS_SDPA:  # without it no fused kernel runs, and torch has no switch for one
            torch.backends.cuda.enable_mem_efficient_sdp(o.precision not in ('bf16', 'fp16'))


def cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine() or 'unknown CPU'


def where_it_runs(o):
    """One line: the device (GPU or CPU by name), the precision, threads and torch, and a CUDA
    build that finds no GPU (a driver mismatch would otherwise fall back to the CPU unseen)."""
    threads = torch.get_num_threads()
    threads = f'{threads} thread{"s" * (threads != 1)}'
    if o.device.startswith('cuda'):
        device = f'{o.device} ({torch.cuda.get_device_name(o.device)}), {threads} on the CPU'
    elif o.device == 'mps':
        device = f'mps (Apple GPU), {threads} on the CPU'
    else:
        device = f'cpu ({cpu_name()}, {threads})'
    line = f'running on {device}, {o.precision}, torch {torch.__version__}'
    if o.precision_why:
        line += f'; {o.precision_why}'
    if distributed.world_size() > 1:
        line += f', {distributed.world_size()} processes'
    if o.device == 'cpu' and torch.version.cuda and not torch.cuda.is_available():
        line += (f'; this torch is built for CUDA {torch.version.cuda} but finds no GPU (check the driver '
                 f'with nvidia-smi)')
    return line


def warn(text):
    """One line on stderr (from one process under torchrun)."""
    if distributed.local_rank() == 0:
        print(f'warning: {text}', file=sys.stderr)


class ArgumentParser(argparse.ArgumentParser):
    """argparse for our other entry points (the demo, the world, the bench scripts): a bad
    argument is a UsageError, one line naming it, where argparse would print its usage first."""

    def error(self, message):
        raise UsageError(f'{message}; see {self.prog} --help')


def docopt_refusal(doc, argv, command):
    """What docopt could not take in argv (a command line for the usage text doc), named, and
    what to do instead: the first unknown, ambiguous, repeated or ill-valued option."""
    takes_value = dict((name, bool(value)) for name, value in re.findall(r'^ +(--\w+)(=\w+)?', doc, re.M))
    seen, args = set(), iter(argv)
    for arg in args:
        name, eq, _ = arg.partition('=')
        if not arg.startswith('--'):
            return f'unexpected argument {arg!r}: every argument is an --option=value; see {command} --help'
        # docopt takes any unambiguous start of an option's name.
        matches = [known for known in takes_value if known == name] or \
            [known for known in takes_value if known.startswith(name)]
        if not matches:
            return f'unknown option {name}; see {command} --help for the options'
        if len(matches) > 1:
            return f'{name} could be {" or ".join(matches)}; spell the option out'
        name = matches[0]
        if name in seen:
            return f'{name} is given twice; keep one'
        seen.add(name)
        if takes_value[name] and not eq and next(args, '--').startswith('--'):
            return f'{name} needs a value ({name}=...); see {command} --help'
        if not takes_value[name] and eq:
            return f'{name} takes no value; write it alone'
    usage = re.sub(r'\[[^\]]*\]', '', doc.split('Usage:')[-1].split('\n\n')[0])  # what is not optional
    required = re.search(r'--\w+=[A-Z]+', usage)
    needed = f'{required.group(0)} is required; ' if required else ''
    return f'incomplete arguments: {needed}see {command} --help'


def from_command_line(args):
    """Options from run.py's docopt dictionary; every check of a value is here."""
    function = args['--function']
    if function not in FUNCTIONS:
        raise UsageError(f'unknown --function={function}; use one of {", ".join(FUNCTIONS)}')
    given = {key for key, value in args.items() if key.startswith('--') and value not in (None, False)}
    unused = sorted(given - set(USES[function]) - {'--function'})
    if unused:
        raise UsageError(f'{unused[0]} does nothing with --function={function}; remove it')
    missing = [key for key in NEEDS[function] if key not in given]
    if missing:
        raise UsageError(f'--function={function} needs {" and ".join(missing)}')
    values = {o.name[2:]: o.read(args[o.name]) for o in OPTIONS if o.read and o.name in given}
    # What depends on more than one option.
    exact = values.get('exact', False)
    values['bottleneck_dim'] = bottleneck_dim(args['--bottleneck_dim'], values.get('variant'))
    if args['--compile'] and not hasattr(torch, 'compile'):
        raise UsageError(f'--compile needs torch 2.0 or newer, this is torch {torch.__version__}; drop --compile')
    check_recipe(args, exact)
    values['schedule_epochs'] = schedule(args['--schedule_epochs'], args['--max_epochs'])
    check_warmup(values)
    check_salient_tail(values)
    values['device'] = device = device_named(args['--device'])
    # Last, once every other value is good: auto may time a few matmuls (a resumed run keeps its own:
    # checkpoint.resumed_precision). Evaluation is fp32 on every path.
    precision = precision_for(args['--precision'] or 'auto', device, exact) if function in TRAINS else ('fp32', '')
    values['precision'], values['precision_why'] = precision
    return Options(function=function, **values)
