"""`./run.sh report` on a real, tiny run: the report lists every experiment and plots the loss.

A copy of src/ without any trained files, with the course data linked in,
finetunes for 3 steps without pretraining, evaluates on dev, then writes the
report; everything else must show as "not run".
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
matplotlib.use('Agg')
import matplotlib.image

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / 'src'
DATA_FILES = ('wiki.txt', 'birth_places_train.tsv', 'birth_dev.tsv', 'birth_test_inputs.tsv', 'birth_test.tsv')
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def data_file(name):
    for folder in (ROOT.parent / 'shared' / 'data', SRC / 'data'):
        if (folder / name).is_file():
            return (folder / name).resolve()
    raise AssertionError(f'course data file {name} not found in ../shared/data or src/data')


def run_sh(src, *args):
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(['./run.sh', *args], cwd=src, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f'./run.sh {" ".join(args)} failed:\n{done.stdout}\n{done.stderr}'
    return done.stdout


def test_report_after_a_tiny_real_run(tmp_path):
    src = tmp_path / 'src'
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns(
        'data', '*.params', '*.predictions', '*.jsonl', '*.ckpt', '*.tb', 'reports', '__pycache__'))
    (src / 'data').mkdir()
    for name in DATA_FILES:
        (src / 'data' / name).symlink_to(data_file(name))

    run_sh(src, 'vanilla_finetune_without_pretrain', '--max_steps=3')
    run_sh(src, 'vanilla_eval_dev_without_pretrain')
    out = run_sh(src, 'report')

    report = src / 'reports' / 'report.md'
    assert report.is_file()
    assert str(Path('reports') / 'report.md') in out
    text = report.read_text(encoding='utf-8')
    rows = {line.split('|')[1].strip(): [c.strip() for c in line.split('|')[2:-1]]
            for line in text.splitlines() if line.startswith('| ') and not line.startswith('| ---')}
    assert set(rows) >= {'vanilla, no pretraining', 'vanilla, pretrain + finetune',
                         'synthesizer, pretrain + finetune', 'London baseline'}

    dev, test, time_, steps, loss, plot = rows['vanilla, no pretraining']
    assert dev.endswith('/500)')
    assert test == 'not run'  # the test-set evaluation was not run
    assert steps == '3'
    assert float(loss) > 0
    assert rows['vanilla, pretrain + finetune'][:2] == ['not run', 'not run']
    assert rows['synthesizer, pretrain + finetune'] == ['not run'] * 6
    assert rows['London baseline'][:2] == ['5.00 % (25/500)', '4.58 % (20/437)']

    pngs = sorted((src / 'reports').glob('*.png'))
    assert pngs
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_MAGIC
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 0 and image.shape[1] > 0
        assert f']({png.name})' in text  # linked from report.md
    assert not [p for p in (src / 'reports').iterdir() if p.name.endswith('.tmp')]
    assert not list((src / 'submission').glob('*.ckpt'))


def test_report_without_submission_dir(tmp_path):
    done = subprocess.run([sys.executable, 'run.py', '--function=report', f'--submission_dir={tmp_path / "nope"}',
                           f'--data_dir={tmp_path}', f'--report_dir={tmp_path / "reports"}'],
                          cwd=SRC, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and str(tmp_path / 'nope') in lines[0]
    assert not (tmp_path / 'reports').exists()
