"""Shared test fixtures: where the course data is, a scratch copy of src/, and running commands."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, 'src')
sys.path.insert(0, SRC)
# In-process tests use small models, for which one thread beats two on a shared 2-core machine.
torch.set_num_threads(1)
COURSE_FILES = ('wiki.txt', 'birth_places_train.tsv', 'birth_dev.tsv', 'birth_test_inputs.tsv', 'birth_test.tsv')


def find_data():
    """src/data when the course data is there, else ../shared/data (CI). Missing data is a failure."""
    for d in (os.path.join(SRC, 'data'), os.path.join(os.path.dirname(ROOT), 'shared', 'data')):
        if all(os.path.exists(os.path.join(d, f)) for f in COURSE_FILES):
            return os.path.realpath(d)
    raise RuntimeError('course data not found in src/data or ../shared/data')


DATA = find_data()


def data(name):
    return os.path.join(DATA, name)


@pytest.fixture
def src_copy(tmp_path):
    """A copy of src/ (code only) with the course data linked into its data/ folder,
    so commands write their params and predictions there, never into the real src/."""
    dst = tmp_path / 'src'
    shutil.copytree(SRC, dst, ignore=shutil.ignore_patterns(
        'data', '*.params', '*.predictions', '*.ckpt', '*.jsonl', '*.tb', 'reports', '__pycache__'))
    (dst / 'data').mkdir()
    for f in COURSE_FILES:
        os.symlink(data(f), dst / 'data' / f)
    return dst


def run(args, cwd, timeout=600, env=None, **kw):
    """Run a command to completion; returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ, PYTHON=sys.executable, PYTHONUNBUFFERED='1')
    full_env.update(env or {})
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=full_env, **kw)


def run_py(args, cwd=SRC, **kw):
    return run([sys.executable, 'run.py', *args], cwd, **kw)


def assert_one_line_error(p, *needles):
    """A bad input: non-zero exit, one line on stderr starting with 'error:', no traceback."""
    assert p.returncode != 0, p.stdout + p.stderr
    assert 'Traceback' not in p.stderr, p.stderr
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith('error:')]
    assert len(errors) == 1, p.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
