"""Does bf16 learn as fp32 does? The course's pretraining in both precisions, compared by loss.

    python bench/precision.py VARIANT --out DIR [--steps N] [--fp32_log LOG] [--cudnn_control]
                              [--tolerance PERCENT] [-- OPTIONS]

Runs `run.py --function=pretrain` on the course data (src/data; the fast path at the course's
settings, seed 0) for N steps (default 3000) in fp32 and in bf16, each into DIR, and prints
each run's mean loss over six ranges of N/12 steps (ending at N/6, N/3, ..., N), bf16's over
fp32's, and each run's seconds a step (from its metrics log). OPTIONS after `--` go to both runs (e.g. --device=cuda
--threads=2). --fp32_log takes the fp32 side from an existing metrics log of the same variant,
seed and settings (e.g. a full course pretraining's), instead of training it again.
--cudnn_control (GPUs) adds a bf16 run with cuDNN's attention kernel allowed, which
options.apply_to_torch turns off: where that run drifts and the plain bf16 run does not, the
kernel is what made bf16 diverge. The table goes to stdout and DIR/precision.md; exits 1 when
bf16's loss over the last range is more than PERCENT (default 5) above fp32's.
"""
import os
import statistics
import subprocess
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(BENCH), 'src')
sys.path.insert(0, SRC)
from submission.lib import files, options  # noqa: E402
from tools import report  # noqa: E402
import run as run_py  # noqa: E402
from pipeline import fail  # noqa: E402

# run.py with cuDNN's attention allowed again after the options have switched it off.
CUDNN_ALLOWED = ("import runpy, sys, torch; from submission.lib import options; a = options.apply_to_torch; "
                 "options.apply_to_torch = lambda o: (a(o), torch.backends.cuda.enable_cudnn_sdp(True)); "
                 "sys.argv = ['run.py'] + sys.argv[1:]; runpy.run_path('run.py', run_name='__main__')")


def parse(argv):
    common = argv[argv.index('--') + 1:] if '--' in argv else []
    argv = argv[:argv.index('--')] if '--' in argv else argv
    parser = options.ArgumentParser(prog='bench/precision.py', description=__doc__.split('\n')[0])
    parser.add_argument('variant', choices=options.VARIANTS)
    parser.add_argument('--out', required=True)
    parser.add_argument('--steps', default='3000')
    parser.add_argument('--fp32_log')
    parser.add_argument('--cudnn_control', action='store_true')
    parser.add_argument('--tolerance', default='5')
    args = parser.parse_args(argv)
    args.steps = options.whole_number(args.steps, '--steps', low=12, high=1_000_000)
    args.tolerance = options.fraction(args.tolerance, '--tolerance', high=100)
    if args.fp32_log:
        files.input_file(args.fp32_log, '--fp32_log')
    return args, common


def runs(args, common, data):
    """(name, command, params path) of each training to run, each command checked as run.py would."""
    out = os.path.abspath(args.out)
    todo = []
    for name, file, precision, python in (('fp32', 'fp32', 'fp32', ['run.py']), ('bf16', 'bf16', 'bf16', ['run.py']),
                                          ('bf16, cuDNN attention', 'cudnn', 'bf16', ['-c', CUDNN_ALLOWED])):
        if (name == 'fp32' and args.fp32_log) or (file == 'cudnn' and not args.cudnn_control):
            continue
        params = os.path.join(out, file + '.params')
        arguments = ['--function=pretrain', f'--variant={args.variant}', f'--pretrain_corpus_path={data}/wiki.txt',
                     f'--precision={precision}', f'--writing_params_path={params}', f'--max_steps={args.steps}',
                     '--checkpoint_every=100000'] + common
        try:
            run_py.parse(arguments)
        except files.UsageError as e:
            fail(f'the pretraining would refuse its options: {e}')
        todo.append((name, [sys.executable] + python + arguments, params))
    return todo


def losses(log, steps):
    """(the ends of six ranges of steps/12 steps, the mean loss over each, seconds a step) of a metrics log."""
    records = report.read_log(log)
    curve = dict(report.summarize_log(records)['curve'])
    reached = max(curve, default=0)
    if reached < steps:
        fail(f'{log} reaches step {reached}, not {steps}; give --steps={reached} or less')
    width = steps // 12
    ends = [steps * k // 6 for k in range(1, 7)]
    means = [statistics.mean(curve[s] for s in range(end - width + 1, end + 1) if s in curve) for end in ends]
    timed = [r for r in records if report.is_step(r) and r['step'] <= steps and 'elapsed' in r]
    pace = (timed[-1]['elapsed'] - timed[0]['elapsed']) / max(1, timed[-1]['step'] - timed[0]['step'])
    return ends, means, pace


def table(rows, ends, width):
    """The rows (name, means, pace) as a table, with each one's mean over fp32's."""
    fp32 = rows[0][1]
    lines = ['| run | ' + ' | '.join(f'{e - width + 1}-{e}' for e in ends) + ' | s a step |',
             '|---|' + '---:|' * (len(ends) + 1)]
    for name, means, pace in rows:
        cells = [f'{m:.3f}' + ('' if means is fp32 else f' ({100 * (m / f - 1):+.1f} %)') for m, f in zip(means, fp32)]
        lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {pace:.3f} |')
    return '\n'.join(lines)


def main(argv=None):
    args, common = parse(sys.argv[1:] if argv is None else argv)
    data = files.course_data_dir()
    todo = runs(args, common, data or os.path.join(SRC, 'data'))
    if data is None:
        fail('the course data is missing: put the five course files in src/data (see src/data/README.md)')
    if os.path.isdir(args.out) and os.listdir(args.out):
        fail(f'{args.out} already holds a run; give a new --out folder')
    os.makedirs(args.out, exist_ok=True)
    logs = [('fp32', args.fp32_log)] if args.fp32_log else []
    for name, command, params in todo:
        print(f'{name}: {" ".join(command[1:3])} ... {" ".join(command[6:])}', flush=True)
        code = subprocess.call(command, cwd=SRC)
        if code:
            raise SystemExit(code)
        logs.append((name, files.log_path(params)))
    rows = []
    for name, log in logs:
        ends, means, pace = losses(log, args.steps)
        rows.append((name, means, pace))
    text = table(rows, ends, args.steps // 12)
    print(text)
    files.save_text(text + '\n', os.path.join(args.out, 'precision.md'))
    drift = 100 * (rows[1][1][-1] / rows[0][1][-1] - 1)
    print(f'bf16 over fp32 in the last range: {drift:+.1f} % (tolerance {args.tolerance:g} %)')
    raise SystemExit(0 if drift <= args.tolerance else 1)


if __name__ == '__main__':
    try:
        main()
    except files.UsageError as e:
        fail(e)
