"""The course's pipeline for one variant, in a run folder of its own, every stage timed.

    python bench/pipeline.py VARIANT --out DIR [--tsv FILE] [--label TEXT] [--nopretrain]
                             [--pretrain=OPTIONS] [-- OPTIONS]

Stages, each a run.py process on the course data (src/data, see src/data/README.md):
pretrain, finetune, evaluate on dev, evaluate on the test inputs; with --nopretrain
first the course's finetune without pretraining and its two evaluations. Every file
goes to DIR (VARIANT.pretrain.params, ..., the course's names), never to
src/submission, and a stage never resumes: DIR must not hold a run already
(bench/cpu_ladder.py alone continues its pipelines: run(resume=True); a training it
resumes is timed whole, the seconds its checkpoint had trained added to this process's).
OPTIONS after `--` go to every stage that takes them (run.py refuses an option a
function does not use, so evaluation gets only its own: options.USES); --pretrain
options go to pretraining alone (e.g. --pretrain="--schedule_epochs=100").

Each stage's line goes to stdout and, as the stage ends, a row to FILE (TSV:
label, variant, stage, seconds, result, device): a run cut short keeps what it
measured. A stage that fails ends the pipeline with its exit status; Ctrl-C or SIGTERM stops
the stage under way as run.py stops (a training checkpoints) before the pipeline ends.
bench/gpu_full.sh and bench/cpu_ladder.py run it.
"""
import contextlib
import io
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(BENCH), 'src')
sys.path.insert(0, SRC)
from submission.lib import files, options  # noqa: E402
from tools import report  # noqa: E402
import run as run_py  # noqa: E402

COLUMNS = ['label', 'variant', 'stage', 'seconds', 'result', 'device']


def training_summary(log):
    """The latest run in a metrics log, across its sessions: one line (steps, time a step, tokens/s,
    peak memory), and the seconds its earlier sessions trained (0 unless it resumed)."""
    with open(log, encoding='utf-8') as f:
        records = [json.loads(line) for line in f if line.strip()]
    run = report.summarize_log(records)
    latest = max(i for i, r in enumerate(records) if r.get('event') == 'start')
    rate = statistics.median(r['tokens_per_s'] for r in records[latest:] if report.is_step(r)) \
        if run['steps'] else 0
    end = next((r for r in records[latest:] if r.get('event') == 'end'), {})
    mean = (run['elapsed'] or 0) / max(1, run['steps'])
    return (f'{run["steps"]} step{"" if run["steps"] == 1 else "s"}, {1000 * mean:.1f} ms a step on average, '
            f'{rate:,.0f} course tokens/s, peak {end.get("peak_mb")} MB'), records[latest].get('elapsed_before', 0)


def stages(variant, out, data, nopretrain):
    """(stage, run.py arguments) of the pipeline, the course's file names in out."""
    corpus = [f'--variant={variant}', f'--pretrain_corpus_path={data}/wiki.txt']
    train = f'--finetune_corpus_path={data}/birth_places_train.tsv'
    at = lambda name: os.path.join(out, f'{variant}.{name}')

    def evaluations(kind, params, prefix):
        return [(f'eval_{split}_{kind}', ['--function=evaluate', *corpus, f'--eval_corpus_path={data}/{inputs}',
                                         f'--reading_params_path={at(params)}',
                                         f'--outputs_path={at(f"{prefix}.{split}.predictions")}'])
                for split, inputs in (('dev', 'birth_dev.tsv'), ('test', 'birth_test_inputs.tsv'))]
    todo = []
    if nopretrain:
        todo.append(('finetune_without_pretrain', ['--function=finetune', *corpus, train,
                                                   f'--writing_params_path={at("model.params")}']))
        todo += evaluations('without_pretrain', 'model.params', 'nopretrain')
    todo.append(('pretrain', ['--function=pretrain', *corpus, f'--writing_params_path={at("pretrain.params")}']))
    todo.append(('finetune_with_pretrain', ['--function=finetune', *corpus, train,
                                            f'--reading_params_path={at("pretrain.params")}',
                                            f'--writing_params_path={at("finetune.params")}']))
    return todo + evaluations('with_pretrain', 'finetune.params', 'pretrain')


def stop(signum, frame):
    """SIGTERM stops this script as Ctrl-C does, through its cleanup."""
    raise KeyboardInterrupt


def run_child(command, cwd=None, on_line=None):
    """A child process run to its end, its exit status returned; on_line, if given, gets each line of
    its stdout as it comes. Stopped (Ctrl-C, or SIGTERM to this process, which is passed on), the
    child is waited for, its last lines still read, before this process stops: a training
    checkpoints on either, and nothing it writes may outlive this script's cleanup."""
    child = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE if on_line else None, text=True)

    def pass_on(signum, frame):
        child.send_signal(signal.SIGTERM)
        raise KeyboardInterrupt

    def read_to_end():
        for line in child.stdout if on_line else ():
            on_line(line)

    before = signal.signal(signal.SIGTERM, pass_on)
    try:
        read_to_end()
        return child.wait()
    except KeyboardInterrupt:
        # The child has been told; a second SIGTERM is passed on too (run.py then exits at once).
        signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
        read_to_end()
        child.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, before)


def run_stage(args, python):
    """Run run.py, its output shown as it comes; (exit status, the last 'Correct:' or 'no targets'
    line, the device line). Stopped (Ctrl-C, SIGTERM), run.py is passed the signal and waited for
    (run_child): a training checkpoints before the pipeline stops."""
    seen = {'result': '', 'device': ''}

    def on_line(line):
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.startswith('Correct:') or 'no targets' in line:
            seen['result'] = line.strip()
        elif line.startswith('running on '):
            seen['device'] = line[len('running on '):].strip()
    status = run_child([python, 'run.py', *args], cwd=SRC, on_line=on_line)
    return status, seen['result'], seen['device']


def append_row(tsv, row):
    if not tsv:
        return
    new = not os.path.exists(tsv) or os.path.getsize(tsv) == 0
    with open(tsv, 'a', encoding='utf-8') as f:
        if new:
            f.write('\t'.join(COLUMNS) + '\n')
        f.write('\t'.join(str(row[c]) for c in COLUMNS) + '\n')


def fail(message):
    print(f'error: {message}', file=sys.stderr)
    raise SystemExit(2)


def stage_options(stage, args, common, pretrain_options, finetune_options):
    """The options a stage gets: those of `common` its function takes (options.USES), and the
    pretraining's or the finetuning's own."""
    takes = options.USES[args[0].split('=')[1]]
    extra = [o for o in common if o.split('=')[0] in takes]
    if stage == 'pretrain':
        extra += list(pretrain_options)
    elif stage == 'finetune_with_pretrain':
        extra += list(finetune_options)
    return extra


def check_options(todo, common):
    """Before any work: every option given is taken by some stage (a misspelt one would be left
    out of every stage, silently), and every stage's command line is one run.py accepts."""
    taken = {o.split('=')[0] for _, _, extra in todo for o in extra}
    unknown = [o for o in common if o.split('=')[0] not in taken]
    if unknown:
        fail(f'{unknown[0]} is an option of no stage of the pipeline (pretraining, finetuning or evaluation); '
             f'check its spelling against python src/run.py --help')
    for stage, args, extra in todo:
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # its warnings are the stage's to print
                run_py.parse(args + extra)
        except files.UsageError as e:
            fail(f'the {stage} stage would refuse its options: {e}')


def run(variant, out, tsv=None, label='', nopretrain=False, pretrain_options=(), common=(), python=None,
        resume=False, finetune_options=(), check=False):
    """The whole pipeline; returns {stage: {'seconds', 'result', 'device'}}. Raises SystemExit with
    a failed stage's exit status. resume: continue a pipeline in out, skipping the stages whose
    output is there (their rows are not repeated) and resuming a training stage's checkpoint.
    check: only check the options and the folder, and do nothing."""
    python = python or sys.executable
    data = files.course_data_dir()
    out = os.path.abspath(out)
    todo = [(stage, args, stage_options(stage, args, common, pretrain_options, finetune_options))
            for stage, args in stages(variant, out, data or files.DATA, nopretrain)]
    check_options(todo, common)
    if data is None:
        fail('the course data is missing: put the five course files in src/data (see src/data/README.md)')
    if os.path.isdir(out) and os.listdir(out) and not resume:
        fail(f'{out} already holds a run; give a new --out folder')
    if check:
        return {}
    os.makedirs(out, exist_ok=True)
    results = {}
    for stage, args, extra in todo:
        function = args[0].split('=')[1]
        written = [a.split('=', 1)[1] for a in args if a.startswith(('--writing_params_path=', '--outputs_path='))][0]
        if resume and os.path.exists(written):
            continue
        if resume and function != 'evaluate':
            extra.append('--resume')
        print(f'== {variant} {stage}: run.py {" ".join(args + extra)}', flush=True)
        start = time.time()
        status, result, device = run_stage(args + extra, python)
        seconds = time.time() - start
        if status != 0:
            print(f'== {variant} {stage} failed (exit status {status}) after {seconds:.1f} s', flush=True)
            raise SystemExit(status)
        if function != 'evaluate':
            # A resumed training's stage is the whole run: this process and its earlier sessions.
            result, earlier = training_summary(files.log_path(written))
            seconds += earlier
        row = dict(label=label, variant=variant, stage=stage, seconds=f'{seconds:.1f}', result=result,
                   device=device)
        append_row(tsv, row)
        results[stage] = row
        print(f'== {variant} {stage}: {seconds:.1f} s; {result}', flush=True)
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    common = []
    if '--' in argv:
        common = argv[argv.index('--') + 1:]
        argv = argv[:argv.index('--')]
    parser = options.ArgumentParser(prog='bench/pipeline.py', description=__doc__.split('\n')[0])
    parser.add_argument('variant', choices=options.VARIANTS)
    parser.add_argument('--out', required=True)
    parser.add_argument('--tsv')
    parser.add_argument('--label', default='')
    parser.add_argument('--nopretrain', action='store_true',
                        help="also the course's finetune without pretraining and its evaluations, first")
    parser.add_argument('--pretrain', default='')
    parser.add_argument('--check', action='store_true', help='check the options and the folder only')
    args = parser.parse_args(argv)
    run(args.variant, args.out, args.tsv, args.label, args.nopretrain, shlex.split(args.pretrain), common,
        check=args.check)


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, stop)
    try:
        main()
    except files.UsageError as e:
        fail(e)
    except KeyboardInterrupt:
        sys.exit('error: interrupted; the stage under way was stopped (a training checkpoints; '
                 'bench/cpu_ladder.py resumes its pipelines)')
