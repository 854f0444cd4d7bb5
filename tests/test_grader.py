"""Tests of the course-style autograder (src/grader.py), run as users run it: `python grader.py`.

Runs that must not depend on the user's trained files use a copy of src/
without params, predictions or data, with the real course data linked in.
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / 'src'
DATA_FILES = ('wiki.txt', 'birth_places_train.tsv', 'birth_dev.tsv', 'birth_test_inputs.tsv', 'birth_test.tsv')
STRUCTURAL = ('1c-0-basic', '1c-1-basic', '1e-0-basic', '1e-1-basic', '1e-2-basic', '1e-3-basic',
              '1f-0-basic', '1f-1-basic', '1g-0-basic', '1g-1-basic', '1g-2-basic')
ACCURACY = ('1d-0-basic', '1d-1-basic', '1f-2-basic', '1f-3-basic', '1g-3-basic', '1g-4-basic')


def real_data(name):
    # The grader's own rule: src/data first, else the shared data beside the repository.
    for folder in (SRC / 'data', ROOT.parent / 'shared' / 'data'):
        if (folder / name).is_file():
            return (folder / name).resolve()
    pytest.skip(f'course data file {name} not found in src/data or ../shared/data')


def grade(cwd, *ids):
    return subprocess.run([sys.executable, 'grader.py', *ids], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def results(stdout):
    """{test id: (status, earned, max)} from the report."""
    found, current = {}, None
    for line in stdout.splitlines():
        head = re.match(r'^(\d\w-\d+-basic): ', line)
        if head:
            current = head.group(1)
            continue
        status = re.match(r'^\s+(\d+)/(\d+) (PASS|FAIL|NOT RUN)\b', line)
        if status and current:
            found[current] = (status.group(3), int(status.group(1)), int(status.group(2)))
            current = None
    return found


@pytest.fixture
def clean_src(tmp_path):
    """A copy of src/ with none of the user's trained files, and the course data linked in."""
    copy = tmp_path / 'src'
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns(
        '*.params', '*.predictions', '*.ckpt', '*.jsonl', 'data', '__pycache__', 'reports'))
    (copy / 'data').mkdir()
    for name in DATA_FILES:
        (copy / 'data' / name).symlink_to(real_data(name))
    return copy


def answers(name):
    return [line.split('\t')[1] for line in real_data(name).read_text(encoding='utf-8').split('\n') if line.strip()]


def write_predictions(path, gold, n_correct):
    path.write_text(''.join((a if i < n_correct else 'x') + '\n' for i, a in enumerate(gold)), encoding='utf-8')


def test_structural_tests_pass_in_src():
    for name in DATA_FILES:
        real_data(name)
    run = grade(SRC)
    found = results(run.stdout)
    assert set(found) == set(STRUCTURAL + ACCURACY), run.stdout + run.stderr
    for test_id in STRUCTURAL:
        assert found[test_id][0] == 'PASS', run.stdout
    assert re.search(r'^Total: \d+/\d+ points$', run.stdout, re.M), run.stdout


def test_accuracy_tests_not_run_without_predictions(clean_src):
    run = grade(clean_src)
    found = results(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    for test_id in ACCURACY:
        assert found[test_id][:2] == ('NOT RUN', 0), run.stdout
        assert re.search(rf'^{test_id}: .*\n\s+0/\d+ NOT RUN: submission/\S+\.predictions missing$',
                         run.stdout, re.M), run.stdout
    for test_id in STRUCTURAL:
        assert found[test_id][0] == 'PASS', run.stdout
    earned = sum(e for _, e, _ in found.values())
    most = sum(m for _, _, m in found.values())
    assert f'Total: {earned}/{most} points' in run.stdout


def test_one_test_by_id(clean_src):
    run = grade(clean_src, '1e-0-basic')
    found = results(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert list(found) == ['1e-0-basic'] and found['1e-0-basic'][0] == 'PASS', run.stdout
    assert f'Total: {found["1e-0-basic"][2]}/{found["1e-0-basic"][2]} points' in run.stdout


def test_unknown_id_is_a_one_line_error(clean_src):
    run = grade(clean_src, 'no-such-test')
    assert run.returncode == 2
    assert run.stdout == ''
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert 'no-such-test' in run.stderr and '1e-0-basic' in run.stderr
    assert 'Traceback' not in run.stderr


@pytest.mark.parametrize('dev_correct, test_correct, status, code', [
    (60, 40, 'PASS', 0),   # 12 % dev, 9.15 % test
    (40, 39, 'FAIL', 1),   # 8 % dev, 8.92 % test
])
def test_accuracy_thresholds(clean_src, dev_correct, test_correct, status, code):
    dev, test = answers('birth_dev.tsv'), answers('birth_test.tsv')
    assert len(dev) == 500 and len(test) == 437
    write_predictions(clean_src / 'submission' / 'vanilla.pretrain.dev.predictions', dev, dev_correct)
    write_predictions(clean_src / 'submission' / 'vanilla.pretrain.test.predictions', test, test_correct)
    run = grade(clean_src, '1f-2-basic', '1f-3-basic')
    found = results(run.stdout)
    assert run.returncode == code, run.stdout + run.stderr
    assert found['1f-2-basic'][0] == status and found['1f-3-basic'][0] == status, run.stdout
    assert f'({dev_correct} of 500 correct)' in run.stdout
