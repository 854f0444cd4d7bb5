"""Tests of the synthetic world (tools/world.py) and the embedded demo (tools/demo.py).

The world tests are fast. The demo test runs `python -m tools.demo --small`
as a user would, about two minutes on two CPU cores, and checks that
pretraining beats both finetuning alone and the most-frequent-city baseline.
"""
import json
import os
import sys

import pytest

from conftest import SRC, assert_one_line_error, run
from tools import world

FILES = ['wiki.txt', 'birth_places_train.tsv', 'birth_dev.tsv', 'birth_test_inputs.tsv', 'birth_test.tsv']
# The --small demo reached 50, 75 and 55 % against at most 15 % for the other
# two on seeds 0, 1 and 2 (20 dev people): a 20-point margin leaves room for
# other seeds and machines.
MARGIN = 0.20


def qa_rows(text):
    return [line.split('\t') for line in text.split('\n') if line]


def people_of(text):
    return [q[len('Where was '):-len(' born?')] for q, *_ in qa_rows(text)]


def run_module(args, timeout=120):
    return run([sys.executable, '-m', *args], SRC, timeout=timeout)


def test_world_is_seeded(tmp_path):
    a = world.write(str(tmp_path / 'a'), people=30, bios_per_person=3, cities=6, seed=5)
    b = world.write(str(tmp_path / 'b'), people=30, bios_per_person=3, cities=6, seed=5)
    assert sorted(a) == sorted(FILES)
    for name in FILES:
        with open(a[name], 'rb') as fa, open(b[name], 'rb') as fb:
            assert fa.read() == fb.read(), name
    assert world.generate(30, 3, 6, seed=6)['wiki.txt'] != world.generate(30, 3, 6, seed=5)['wiki.txt']


def test_world_files_have_the_course_formats():
    files = world.generate(people=31, bios_per_person=4, cities=8, seed=1)
    wiki = files['wiki.txt']
    assert wiki.endswith('\n') and '\n\n' not in wiki
    assert len(wiki.split('\n')) - 1 == 31 * 4
    for name in ('birth_places_train.tsv', 'birth_dev.tsv', 'birth_test.tsv'):
        text = files[name]
        assert text.endswith('\n')
        for line in text.split('\n')[:-1]:
            question, answer = line.split('\t')
            assert question.startswith('Where was ') and question.endswith(' born?')
            assert answer in world.CITIES[:8]
    inputs = files['birth_test_inputs.tsv']
    assert '\t' not in inputs
    assert inputs.split('\n') == [row[0] for row in qa_rows(files['birth_test.tsv'])] + ['']
    # Every character of the question files occurs in the pretraining corpus (as in the course).
    for name in FILES:
        assert set(files[name]) - {'\t', '\n'} <= set(wiki), name


def test_world_splits_are_disjoint_and_only_train_is_finetuned():
    files = world.generate(people=45, bios_per_person=2, cities=10, seed=2)
    train, dev, test = (set(people_of(files[n])) for n in
                        ('birth_places_train.tsv', 'birth_dev.tsv', 'birth_test.tsv'))
    assert len(train) == len(dev) == 15 and len(test) == 15
    assert not (train & dev) and not (train & test) and not (dev & test)
    lines = files['wiki.txt'].split('\n')
    for name in train | dev | test:  # everyone is in the corpus, dev and test people too
        assert sum(name in line for line in lines) == 2


def test_one_bio_switch():
    one = world.generate(people=20, bios_per_person=1, cities=5, seed=3)
    many = world.generate(people=20, bios_per_person=4, cities=5, seed=3)
    one_lines = one['wiki.txt'].split('\n')[:-1]
    many_lines = many['wiki.txt'].split('\n')[:-1]
    assert len(one_lines) == 20 and len(many_lines) == 80
    for name in people_of(many['birth_dev.tsv']):
        bios = [line for line in many_lines if name in line]
        # Several biographies of one person state the birth place in different wordings.
        first_sentences = {bio.replace(name, 'X').split('.')[0] for bio in bios}
        assert len(bios) == 4 and len(first_sentences) == 4


def test_world_cli(tmp_path):
    out = tmp_path / 'w'
    done = run_module(['tools.world', '--out', str(out), '--people', '12', '--cities', '4'])
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == sorted(FILES + [world.MARKER])
    bad = run_module(['tools.world', '--out', str(out), '--people', '2'])
    assert bad.returncode != 0 and 'Traceback' not in bad.stderr


@pytest.mark.parametrize('args', [['--bogus'], ['--seed', 'x'], ['--device', 'tpu'], ['--out']])
def test_demo_bad_options_give_one_line(args):
    done = run_module(['tools.demo', *args])
    assert done.returncode == 2
    assert_one_line_error(done)
    assert len(done.stderr.strip().split('\n')) == 1, done.stderr


def test_small_demo_pretraining_beats_both_baselines(tmp_path):
    done = run_module(['tools.demo', '--small', '--out', str(tmp_path)], timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with open(tmp_path / 'results.json', encoding='utf-8') as f:
        results = json.load(f)
    for key in ('pretrained_acc', 'nopretrain_acc', 'baseline_acc'):
        assert 0.0 <= results[key] <= 1.0, key
    assert results['seconds'] > 0
    assert results['pretrained_acc'] >= results['nopretrain_acc'] + MARGIN, results
    assert results['pretrained_acc'] >= results['baseline_acc'] + MARGIN, results
    assert 'pretrain + finetune' in done.stdout
    for name in FILES:
        assert (tmp_path / name).exists()
