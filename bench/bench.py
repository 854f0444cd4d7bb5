"""Benchmark: the course-style computation against the fast path, on this machine, in one run.

Usage:
    bench.py [--steps=N] [--eval_questions=N] [--precision=P] [--threads=N] [--device=D] [--only=PARTS]

Options:
    --steps=N            pretraining steps per run [default: 8]
    --eval_questions=N   dev questions to decode [default: 500]
    --precision=P        the fast path's precision: fp32, bf16 or auto [default: fp32]
    --threads=N          torch threads for every run (default: run.py's default, all cores)
    --device=D           cpu or cuda [default: cpu]
    --only=PARTS         comma-separated subset of: peak,batches,pretrain,finetune,eval
                         [default: peak,batches,pretrain,finetune,eval]

The baseline is the course-style loop, run.py --exact: fp32, the per-item
dataset, full 127-long rows, plain attention, one question at a time. Every
training and evaluation figure is a whole run.py process on the course data
(the real command line, helpers and trainer), timed from start to end, with
its peak resident memory (its own: each runs alone); step times come from the
run's metrics log. The header names the CPU, its flags and the threads;
`peak` measures this machine's matmul GFLOP/s at the model's shapes, and the
pretraining rows say what fraction of that peak each path's useful work
reaches (useful: non-pad tokens x 6 x matmul parameters, plus attention).
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from docopt import docopt, DocoptExit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, 'src')
sys.path.insert(0, SRC)
from submission.lib import options  # noqa: E402
from submission.lib.files import UsageError, course_data_dir, log_path  # noqa: E402
from submission.lib.options import cpu_flags, cpu_name  # noqa: E402

MATMUL_PARAMS = 4 * (4 * 256 * 256 + 2 * 256 * 1024) + 256 * 256  # 4 blocks' linears, and the head
N_LAYER, N_EMBD = 4, 256


def cpu_header(threads):
    model, shown = cpu_name(), cpu_flags() or ['none of avx2/avx512']
    # What torch's kernels and MKL use may be less than the CPU has (e.g. ATEN_CPU_CAPABILITY=avx2
    # and MKL_ENABLE_INSTRUCTIONS=AVX2 emulate an AVX2-only CPU's instruction set).
    limits = ''.join(f'; {k}={os.environ[k]}' for k in ('ATEN_CPU_CAPABILITY', 'MKL_ENABLE_INSTRUCTIONS',
                                                        'ONEDNN_MAX_CPU_ISA') if k in os.environ)
    return (f'machine: {model}; flags {" ".join(shown)}; torch kernels {torch.backends.cpu.get_cpu_capability()}'
            f'{limits}; {os.cpu_count()} cores; threads {threads}; torch {torch.__version__}; '
            f'python {platform.python_version()}; {time.strftime("%Y-%m-%d")}')


def timed(cmd, cwd=SRC):
    """(seconds, peak resident MB, stdout) of a whole process that prints `PEAK_MB x` on stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f'failed: {" ".join(cmd)}\n{err[-3000:]}')
    peak = 0.0
    for line in err.splitlines():
        if line.startswith('PEAK_MB '):
            peak = float(line.split()[1])
    return seconds, peak, out


def run_py(args, threads):
    """run.py with args, through a wrapper that reports the process's peak resident memory."""
    wrapper = ('import resource, runpy, sys; sys.argv = ["run.py"] + sys.argv[1:]\n'
               'try:\n    runpy.run_path("run.py", run_name="__main__")\n'
               'finally:\n    print("PEAK_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, '
               'file=sys.stderr)\n')
    extra = [f'--threads={threads}'] if threads else []
    return timed([sys.executable, '-c', wrapper, *args, *extra])


def steps_of(log):
    with open(log) as f:
        records = [json.loads(line) for line in f]
    elapsed = [r['elapsed'] for r in records if 'event' not in r]
    return [b - a for a, b in zip(elapsed, elapsed[1:])]


def measure_child(*args):
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'measure.py'), *args],
                         capture_output=True, text=True, check=True).stdout
    return json.loads([l for l in out.splitlines() if l.startswith('RESULT ')][-1][len('RESULT '):])


PARTS = ('peak', 'batches', 'pretrain', 'finetune', 'eval')


def parse(argv=None):
    """(steps, questions, precision, device, threads, parts), every value checked, in one line each."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = docopt(__doc__, argv=argv)
    except DocoptExit:
        raise UsageError(options.docopt_refusal(__doc__, argv, 'bench/bench.py')) from None
    steps = options.whole_number(args['--steps'], '--steps', high=10_000)
    questions = options.whole_number(args['--eval_questions'], '--eval_questions', high=500)
    if args['--precision'] not in ('fp32', 'bf16', 'auto'):
        raise UsageError(f'unknown --precision={args["--precision"]}; use fp32, bf16 or auto')
    if args['--device'] not in ('cpu', 'cuda'):
        raise UsageError(f'unknown --device={args["--device"]}; use cpu or cuda')
    device = options.device_named(args['--device'])
    threads = args['--threads'] and options.whole_number(args['--threads'], '--threads', high=os.cpu_count() * 4)
    only = set(args['--only'].split(','))
    if only - set(PARTS):
        raise UsageError(f'unknown --only part {sorted(only - set(PARTS))[0]}; use some of {",".join(PARTS)}')
    return steps, questions, args['--precision'], device, threads or None, only


def peak_section(all_threads):
    print('## matmul peak (GFLOP/s, best of the model\'s shapes)\n')
    print('| threads | fp32 | bf16 |\n|---:|---:|---:|')
    peak = {}
    for n in sorted({1, all_threads}):
        r = peak[n] = measure_child('peak', str(n))
        print(f'| {n} | {r["fp32"]["peak"]:.1f} | {r["bf16"]["peak"]:.1f} |')
    print()
    return peak


def batch_section(data):
    """The useful work of one pretraining step in FLOP: 6 per parameter per target, and attention."""
    b = measure_child('batches', data, '20')
    attention = b['fast']['attention_pairs'] * 2 * 2 * N_EMBD * N_LAYER * 3  # q.k and att.v, fwd + 2x bwd
    useful = b['fast']['targets'] * 6 * MATMUL_PARAMS + attention
    print(f'## a pretraining batch of 128 (course data)\n\nmake_batch: exact {b["exact"]["ms"]:.1f} ms, '
          f'fast {b["fast"]["ms"]:.1f} ms per step; {b["fast"]["targets"]:.0f} non-pad tokens of '
          f'{128 * 127}; useful work {useful / 1e9:.1f} GFLOP per step '
          f'({attention / 1e9:.1f} of it attention)\n')
    return useful


def pretrain_rows(bench, steps, useful, peak):
    rows = []
    fp = 'bf16' if bench.precision == 'bf16' else 'fp32'
    for variant in ('vanilla', 'synthesizer'):
        res = {}
        for mode in ('exact', 'fast'):
            params = os.path.join(bench.work, f'{variant}.{mode}.params')
            seconds, mb, _ = bench.run(mode, ['--function=pretrain', f'--variant={variant}',
                                              f'--writing_params_path={params}', f'--max_steps={steps}'])
            res[mode] = (seconds, statistics.median(steps_of(log_path(params))[1:]), mb)
        (es, et, em), (fs, ft, fm) = res['exact'], res['fast']
        frac = ''
        if useful and peak:
            top = peak[max(peak)]
            frac = f'{useful / et / 1e9 / top["fp32"]["peak"]:.0%} / {useful / ft / 1e9 / top[fp]["peak"]:.0%}'
        rows.append((f'pretrain {steps} steps, {variant}, batch 128 (whole process)', es, fs, em, fm))
        rows.append((f'  one step, {variant} (median; of peak: exact / fast {frac})', et, ft, None, None))
    return rows


def finetune_rows(bench):
    res = {}
    for mode in ('exact', 'fast'):
        params = os.path.join(bench.work, f'ft.{mode}.params')
        res[mode] = bench.run(mode, ['--function=finetune', '--variant=vanilla', bench.finetune_corpus,
                                     f'--writing_params_path={params}', '--max_epochs=1'])
    return [('finetune epoch (2,000 examples, batch 256, whole process)', res['exact'][0], res['fast'][0],
             res['exact'][1], res['fast'][1])]


def eval_rows(bench, nq):
    """The course's decoding against the fast one on the first nq dev questions, for an untrained
    model (every row decodes to the end) and a briefly finetuned one (rows stop early)."""
    questions = os.path.join(bench.work, 'dev.tsv')
    with open(os.path.join(bench.data, 'birth_dev.tsv'), encoding='utf-8') as f:
        lines = [l for l in f.read().split('\n') if l.strip()][:nq]
    with open(questions, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')
    untrained = os.path.join(bench.work, 'untrained.params')
    subprocess.run([sys.executable, '-c', 'import sys, torch; sys.path.insert(0, "."); '
                    'from submission import GPT, GPTConfig; torch.manual_seed(0); '
                    f'torch.save(GPT(GPTConfig(256, 128, n_layer=4, n_head=8, n_embd=256)).state_dict(), '
                    f'{untrained!r})'], cwd=SRC, check=True, capture_output=True)
    trained = os.path.join(bench.work, 'trained.params')
    run_py(['--function=finetune', '--variant=vanilla', *bench.course, bench.finetune_corpus,
            f'--writing_params_path={trained}', '--max_steps=24', '--precision=fp32'], bench.threads)
    rows = []
    for label, params in (('untrained model: every row decodes 32 characters', untrained),
                          ('finetuned 24 steps: rows stop at their second MASK', trained)):
        res, preds = {}, {}
        for mode in ('exact', 'fast'):
            out = os.path.join(bench.work, f'{mode}.predictions')
            res[mode] = run_py(['--function=evaluate', '--variant=vanilla', *bench.course,
                                f'--reading_params_path={params}', f'--eval_corpus_path={questions}',
                                f'--outputs_path={out}', *(['--exact'] if mode == 'exact' else [])], bench.threads)
            with open(out, encoding='utf-8') as f:
                preds[mode] = f.read()
        same = sum(a == b for a, b in zip(preds['exact'].split('\n'), preds['fast'].split('\n'))) - 1
        rows.append((f'evaluate {nq} dev questions, {label} ({same}/{nq} identical)', res['exact'][0],
                     res['fast'][0], res['exact'][1], res['fast'][1]))
    return rows


class Bench:
    """What every measured run.py shares: the course data, a scratch folder, device, threads, precision."""

    def __init__(self, data, device, threads, precision):
        self.data, self.threads, self.precision = data, threads, precision
        self.work = tempfile.mkdtemp(prefix='bench-')
        self.course = [f'--pretrain_corpus_path={data}/wiki.txt', f'--device={device}']
        self.finetune_corpus = f'--finetune_corpus_path={data}/birth_places_train.tsv'

    def run(self, mode, args):
        """run.py in the course's computation (mode 'exact') or the fast path at the bench's precision."""
        flags = ['--exact'] if mode == 'exact' else [f'--precision={self.precision}']
        return run_py([*args, *self.course, *flags], self.threads)


def print_table(rows):
    print('| measurement | exact (s) | fast (s) | speed-up | peak MB exact | peak MB fast |')
    print('|---|---:|---:|---:|---:|---:|')
    for label, te, tf, me, mf in rows:
        mem = f'{me:.0f} | {mf:.0f}' if me is not None else ' | '
        print(f'| {label} | {te:.3f} | {tf:.3f} | {te / tf:.2f}x | {mem} |')


def main():
    steps, nq, precision, device, threads, only = parse()
    data = course_data_dir()
    if data is None:
        sys.exit('error: the bench needs the course data: put it in src/data (see src/data/README.md)')
    all_threads = threads or torch.get_num_threads()
    print(cpu_header(all_threads))
    print(f'device {device}; fast path precision {precision}; baseline: run.py --exact (fp32)\n')
    bench = Bench(data, device, threads, precision)
    peak = peak_section(all_threads) if 'peak' in only else {}
    useful = batch_section(data) if 'batches' in only or 'pretrain' in only else None
    rows = []
    if 'pretrain' in only:
        rows += pretrain_rows(bench, steps, useful, peak)
    if 'finetune' in only:
        rows += finetune_rows(bench)
    if 'eval' in only:
        rows += eval_rows(bench, nq)
    if rows:
        print_table(rows)


if __name__ == '__main__':
    try:
        main()
    except UsageError as e:
        sys.exit(f'error: {e}')
