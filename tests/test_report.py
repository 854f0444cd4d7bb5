"""`./run.sh report` on a real, tiny run: the report lists every experiment and plots the loss.

A copy of src/ without any trained files, with the synthetic world as its
data, finetunes for 3 steps without pretraining, evaluates on dev, then writes
the report; everything else must show as "not run".
"""
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
matplotlib.use('Agg')
import matplotlib.image

from conftest import SRC, lines_of
from tools import report

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def london(folder, name):
    answers = [line.split('\t')[1] for line in lines_of(folder, name)]
    n = sum(a == 'London' for a in answers)
    return f'{100 * n / len(answers):.2f} % ({n}/{len(answers)})'


def run_sh(src, *args):
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(['./run.sh', *args], cwd=src, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f'./run.sh {" ".join(args)} failed:\n{done.stdout}\n{done.stderr}'
    return done.stdout


def test_report_after_a_tiny_real_run(src_copy, world_data):
    src = src_copy

    run_sh(src, 'vanilla_finetune_without_pretrain', '--max_steps=3')
    run_sh(src, 'vanilla_eval_dev_without_pretrain')
    out = run_sh(src, 'report')

    page = src / 'reports' / 'report.md'
    assert page.is_file()
    assert str(Path('reports') / 'report.md') in out
    text = page.read_text(encoding='utf-8')
    experiments = text.split('## Dev answers')[0]  # the main table; the dev-answers table comes after
    rows = {line.split('|')[1].strip(): [c.strip() for c in line.split('|')[2:-1]]
            for line in experiments.splitlines() if line.startswith('| ') and not line.startswith('| ---')}
    assert set(rows) >= {'vanilla, no pretraining', 'vanilla, pretrain + finetune',
                         'synthesizer, pretrain + finetune', 'London baseline'}

    dev, test, time_, steps, loss, plot = rows['vanilla, no pretraining']
    assert dev.endswith(f'/{len(lines_of(world_data, "birth_dev.tsv"))})')
    assert test == 'not run'  # the test-set evaluation was not run
    assert steps == '3'
    assert float(loss) > 0
    assert rows['vanilla, pretrain + finetune'][:2] == ['not run', 'not run']
    assert rows['synthesizer, pretrain + finetune'] == ['not run'] * 6
    assert rows['London baseline'][:2] == [london(world_data, 'birth_dev.tsv'), london(world_data, 'birth_test.tsv')]

    pngs = sorted((src / 'reports').glob('*.png'))
    assert pngs
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_MAGIC
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 0 and image.shape[1] > 0
        assert f']({png.name})' in text  # linked from report.md
    assert not [p for p in (src / 'reports').iterdir() if p.name.endswith('.tmp')]
    assert not list((src / 'submission').glob('*.ckpt'))


def test_london_cells_on_the_course_data(course_data):
    assert report.london_cells(course_data) == ['5.00 % (25/500)', '4.58 % (20/437)']


def test_report_without_submission_dir(tmp_path):
    done = subprocess.run([sys.executable, 'run.py', '--function=report', f'--submission_dir={tmp_path / "nope"}',
                           f'--data_dir={tmp_path}', f'--report_dir={tmp_path / "reports"}'],
                          cwd=SRC, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and str(tmp_path / 'nope') in lines[0]
    assert not (tmp_path / 'reports').exists()


def test_summarize_log_tells_runs_and_sessions_apart_by_run_id():
    """A log with a finished run, then a new run (another id) stopped and resumed twice, once from
    an older checkpoint: the latest run's steps, sessions and resumes, and its cumulative time.
    A log from before runs had ids tells them apart by resumed_from_step."""
    def session(run, start, steps, elapsed0, **extra):
        records = [dict({'event': 'start', 'resumed_from_step': start}, **({'run': run} if run else {}), **extra)]
        records += [{'step': s, 'epoch': 1, 'loss': 1.0 / s, 'lr': 1e-3, 'elapsed': elapsed0 + s} for s in steps]
        return records
    first = session('a', 0, range(1, 6), 0) + [{'event': 'end', 'step': 5, 'elapsed': 5.0}]
    latest = (session('b', 0, range(1, 4), 0) + session('b', 3, range(4, 8), 0) +
              session('b', 5, range(6, 9), 100) + [{'event': 'end', 'step': 8, 'elapsed': 108.0}])
    summary = report.summarize_log(first + latest)
    assert [s for s, _ in summary['curve']] == list(range(1, 9)) and summary['steps'] == 8
    assert summary['sessions'] == 3 and summary['resumed_at'] == [4, 6]
    assert summary['curve'][5] == (6, 1.0 / 6) and summary['elapsed'] == 108.0
    assert summary['start']['run'] == 'b'
    legacy = [{k: v for k, v in r.items() if k != 'run'} for r in first + latest]
    again = report.summarize_log(legacy)
    assert (again['steps'], again['sessions'], again['resumed_at'], again['elapsed']) == (8, 3, [4, 6], 108.0)
