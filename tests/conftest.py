"""Shared test fixtures: the data, a scratch copy of src/, and running commands as users do.

Two kinds of data, both in the course's five file names and formats:

* `world_data`: a synthetic world written once per session by world.py. Tests
  that only need data in the course's format use it, so they run everywhere,
  on a newcomer's machine too.
* `course_data`: the real course data, for tests of course facts (2,938
  items, vocabulary 256, 500 dev questions, the London 5.0 %, ...). It is
  found by the project's one lookup (files.course_data_dir: src/data); without
  it those tests are skipped with one line saying where to put the data,
  except under CI=true, where that is a failure.
"""
import os
import shutil
import subprocess
import sys

# The suite runs on the CPU, on a GPU machine too: torch in this process and in every command
# it starts sees no GPU (so NPROC=2 runs never ask for a second one). Set before torch loads.
os.environ['CUDA_VISIBLE_DEVICES'] = ''

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, 'src')
HERE = os.path.join(ROOT, 'tests')
sys.path.insert(0, SRC)
# In-process tests use small models, for which one thread beats two on a shared 2-core machine.
torch.set_num_threads(1)

from tools import world  # noqa: E402
from submission.lib.files import COURSE_FILES, course_data_dir  # noqa: E402

COURSE_DATA = course_data_dir()
NO_COURSE_DATA = ('course data not found: put the five course files in src/data '
                  '(see src/data/README.md) to run the course-data tests')
# The tests' world: 150 people (50 each for finetuning, dev and test), 4 biographies each.
WORLD = dict(people=150, bios_per_person=4, cities=16, seed=0)


def pytest_report_header(config):
    if COURSE_DATA:
        return f'course data: {COURSE_DATA}'
    return f'course data: none; the course-data tests will be skipped ({NO_COURSE_DATA})'


@pytest.fixture(scope='session')
def course_data():
    """The folder of the real course data (skipped without it; a failure under CI=true)."""
    if COURSE_DATA is None:
        if os.environ.get('CI') == 'true':
            pytest.fail(f'CI=true, but {NO_COURSE_DATA}')
        pytest.skip(NO_COURSE_DATA)
    return COURSE_DATA


@pytest.fixture(scope='session')
def world_data(tmp_path_factory):
    """The folder of a synthetic world in the course's formats."""
    folder = tmp_path_factory.mktemp('world')
    world.write(str(folder), **WORLD)
    return str(folder)


def read(folder, name):
    with open(os.path.join(folder, name), encoding='utf-8') as f:
        return f.read()


def lines_of(folder, name):
    return [line for line in read(folder, name).split('\n') if line.strip()]


def copy_src(tmp_path, data_folder):
    """A copy of src/ (code only) with data_folder's five files linked into its data/,
    so commands write their params and predictions there, never into the real src/."""
    dst = tmp_path / 'src'
    shutil.copytree(SRC, dst, ignore=shutil.ignore_patterns(
        'data', '*.params', '*.predictions', '*.ckpt', '*.jsonl', '*.tb', 'reports', '__pycache__'))
    (dst / 'data').mkdir()
    if data_folder:
        for f in COURSE_FILES:
            os.symlink(os.path.join(data_folder, f), dst / 'data' / f)
    return dst


@pytest.fixture
def src_copy(tmp_path, world_data):
    """A scratch src/ with the synthetic world as its data."""
    return copy_src(tmp_path, world_data)


@pytest.fixture
def course_src_copy(tmp_path, course_data):
    """A scratch src/ with the course data."""
    return copy_src(tmp_path, course_data)


@pytest.fixture(scope='session')
def params(tmp_path_factory, world_data):
    """Real params files of the world's vocabulary, briefly trained: {'vanilla': path, 'synthesizer': path}."""
    folder = tmp_path_factory.mktemp('params')
    out = {}
    for variant in ('vanilla', 'synthesizer'):
        path = folder / f'{variant}.params'
        p = run_py(['--function=finetune', f'--variant={variant}',
                    f'--pretrain_corpus_path={world_data}/wiki.txt', f'--writing_params_path={path}',
                    f'--finetune_corpus_path={world_data}/birth_places_train.tsv', '--max_steps=1'])
        assert p.returncode == 0, p.stderr
        out[variant] = path
    return out


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
