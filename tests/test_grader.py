"""Tests of the course-style autograder (src/grader.py), run as users run it: `python grader.py`.

Runs that must not depend on the user's trained files use a copy of src/
without params, predictions or data, with the real course data linked in
(or, for the fresh-machine test, no data at all).
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SRC, copy_src, read

STRUCTURAL = ('1c-0-hidden', '1c-1-basic', '1c-2-extra', '1e-0-basic', '1e-1-basic', '1e-2-basic', '1e-3-basic',
              '1f-0-basic', '1f-3-extra', '1g-0-basic', '1g-3-hidden')
# The later course years' variants: checks of code that need no course data.
LATER = ('4a-0-extra', '4a-1-extra', '4b-0-extra', '4b-1-extra', '4b-2-extra')
ACCURACY = ('1d-0-hidden', '1d-1-hidden', '1f-1-hidden', '1f-2-hidden', '1g-1-hidden', '1g-2-hidden',
            '4a-2-extra', '4a-3-extra', '4b-3-extra', '4b-4-extra')
# The course's test ids and points, synthesizer year (its grader.py).
COURSE_POINTS = {
    '1a-sample': 0, '1b-sample': 0, '1c-0-hidden': 2, '1c-1-basic': 2, '1d-0-hidden': 2, '1d-1-hidden': 4,
    '1e-0-basic': 5, '1e-1-basic': 5, '1e-2-basic': 5, '1e-3-basic': 5, '1f-0-basic': 7, '1f-1-hidden': 5,
    '1f-2-hidden': 8, '1g-0-basic': 4, '1g-1-hidden': 2, '1g-2-hidden': 3, '1g-3-hidden': 5, '3a-0-basic': 1,
    '3b-0-basic': 2, '3c-0-basic': 2, '3d-0-basic': 2, '3e-0-basic': 3,
}


def grade(cwd, *ids):
    return subprocess.run([sys.executable, 'grader.py', *ids], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def results(stdout):
    """{test id: (status, earned, max)} from the report."""
    found, current = {}, None
    for line in stdout.splitlines():
        head = re.match(r'^(\d\w-\d+-\w+): ', line)
        if head:
            current = head.group(1)
            continue
        status = re.match(r'^\s+(\d+)/(\d+) (PASS|FAIL|NOT RUN)\b', line)
        if status and current:
            found[current] = (status.group(3), int(status.group(1)), int(status.group(2)))
            current = None
    return found


@pytest.fixture
def clean_src(tmp_path, course_data):
    """A copy of src/ with none of the user's trained files, the course data linked in,
    and the root's points.json beside it, as in the repository."""
    copy = copy_src(tmp_path, course_data)
    (tmp_path / 'points.json').write_bytes((Path(ROOT) / 'points.json').read_bytes())
    return copy


def answers(course_data, name):
    return [line.split('\t')[1] for line in read(course_data, name).split('\n') if line.strip()]


def write_predictions(path, gold, n_correct):
    path.write_text(''.join((a if i < n_correct else 'x') + '\n' for i, a in enumerate(gold)), encoding='utf-8')


def test_structural_tests_pass_in_src(course_data):
    run = grade(SRC)
    found = results(run.stdout)
    assert set(found) == set(STRUCTURAL + LATER + ACCURACY), run.stdout + run.stderr
    for test_id in STRUCTURAL + LATER:
        assert found[test_id][0] == 'PASS', run.stdout
    assert re.search(r'^Total: \d+/\d+ points$', run.stdout, re.M), run.stdout
    for test_id, (_, _, most) in found.items():  # the course's points for the course's tests
        assert most == COURSE_POINTS.get(test_id, most), (test_id, most)


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
def test_accuracy_thresholds(clean_src, course_data, dev_correct, test_correct, status, code):
    dev, test = answers(course_data, 'birth_dev.tsv'), answers(course_data, 'birth_test.tsv')
    assert len(dev) == 500 and len(test) == 437
    write_predictions(clean_src / 'submission' / 'vanilla.pretrain.dev.predictions', dev, dev_correct)
    write_predictions(clean_src / 'submission' / 'vanilla.pretrain.test.predictions', test, test_correct)
    run = grade(clean_src, '1f-1-hidden', '1f-2-hidden')
    found = results(run.stdout)
    assert run.returncode == code, run.stdout + run.stderr
    assert found['1f-1-hidden'][0] == status and found['1f-2-hidden'][0] == status, run.stdout
    assert f'({dev_correct} of 500 correct)' in run.stdout


def test_grader_finishes_on_a_fresh_machine(tmp_path):
    """No course data (no src/data files): every test that needs
    the data says NOT RUN and why, the others pass, and the grader exits 0."""
    copy = copy_src(tmp_path, None)
    (tmp_path / 'points.json').write_bytes((Path(ROOT) / 'points.json').read_bytes())
    run = grade(copy)
    found = results(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(found) == set(STRUCTURAL + LATER + ACCURACY), run.stdout
    for test_id in ('1c-0-hidden', '1c-1-basic', '1f-0-basic', '1f-3-extra', '1g-0-basic') + ACCURACY:
        assert found[test_id][:2] == ('NOT RUN', 0), run.stdout
    assert 'NOT RUN: data/wiki.txt missing (put the course data in src/data' in run.stdout
    for test_id in ('1e-0-basic', '1e-1-basic', '1e-2-basic', '1e-3-basic', '1c-2-extra', '1g-3-hidden') + LATER:
        assert found[test_id][0] == 'PASS', run.stdout  # they need no course data
    assert re.search(r'^Total: \d+/\d+ points$', run.stdout, re.M)


COURSE_LOOKUP = r"""
import json, os, sys
# The course's graderUtil: ./points.json if it exists, else ../points.json, then
# weights[test id]['points'] for every test it grades.
path = 'points.json' if os.path.exists('points.json') else '../points.json'
with open(path) as f:
    weights = json.load(f)
print(json.dumps({test_id: weights[test_id]['points'] for test_id in sys.argv[1:]}))
"""


def test_the_course_grader_finds_every_id_in_our_points_json():
    """A stand-in for the course's graderUtil, run from src/ as the course runs it: our
    points.json (at the root, where the course puts it) has every course id with its points,
    and nothing of ours in src/ shadows it."""
    assert not os.path.exists(os.path.join(SRC, 'points.json'))
    run = subprocess.run([sys.executable, '-c', COURSE_LOOKUP, *COURSE_POINTS], cwd=SRC,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr  # a KeyError would mean a course id is missing
    assert json.loads(run.stdout) == COURSE_POINTS
    # Our grader gives the course's points for the tests it shares with the course.
    with open(os.path.join(ROOT, 'points.json'), encoding='utf-8') as f:
        ours = json.load(f)
    assert all(test_id in COURSE_POINTS or test_id.endswith('-extra') for test_id in ours)
