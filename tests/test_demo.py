"""The synthetic knowledge world and the demo that runs the experiment on it."""
import json
import sys

from conftest import SRC, run
from submission import world


def people_of(tsv):
    return {line.split('\t')[0] for line in tsv.split('\n') if line}


def test_world_is_seeded_split_and_course_shaped():
    a = world.generate(people=60, bios_per_person=4, cities=8, seed=3)
    assert a == world.generate(people=60, bios_per_person=4, cities=8, seed=3)
    assert a != world.generate(people=60, bios_per_person=4, cities=8, seed=4)
    train, dev, test = (people_of(a[f]) for f in ('birth_places_train.tsv', 'birth_dev.tsv', 'birth_test.tsv'))
    assert train and dev and test
    assert not (train & dev) and not (train & test) and not (dev & test)
    assert people_of(a['birth_test_inputs.tsv']) == test
    assert all('\t' not in line for line in a['birth_test_inputs.tsv'].split('\n'))
    for name in ('birth_places_train.tsv', 'birth_dev.tsv', 'birth_test.tsv'):
        for line in a[name].rstrip('\n').split('\n'):
            q, city = line.split('\t')
            assert q.startswith('Where was ') and q.endswith(' born?') and city in world.CITIES[:8]
    wiki = a['wiki.txt']
    assert wiki.endswith('\n') and len(wiki.rstrip('\n').split('\n')) == 60 * 4
    assert set(''.join(a.values())) - {'\t', '\n'} <= set(wiki)
    one = world.generate(people=60, bios_per_person=1, cities=8, seed=3)
    assert len(one['wiki.txt'].rstrip('\n').split('\n')) == 60


def test_world_cli_writes_the_five_files(tmp_path):
    p = run([sys.executable, '-m', 'submission.world', '--out', str(tmp_path), '--people', '30'], SRC)
    assert p.returncode == 0, p.stderr
    for name in ('wiki.txt', 'birth_places_train.tsv', 'birth_dev.tsv', 'birth_test_inputs.tsv', 'birth_test.tsv'):
        assert (tmp_path / name).stat().st_size > 0


def test_small_demo_shows_the_pretraining_gain(tmp_path):
    p = run([sys.executable, '-m', 'submission.demo', '--small', '--out', str(tmp_path)], SRC, timeout=900)
    assert p.returncode == 0, p.stderr
    r = json.loads((tmp_path / 'results.json').read_text())
    assert set(r) >= {'pretrained_acc', 'nopretrain_acc', 'baseline_acc', 'seconds'}
    assert 0 <= r['nopretrain_acc'] <= 1 and 0 <= r['baseline_acc'] <= 1
    assert r['pretrained_acc'] >= r['nopretrain_acc'] + 0.10, r
    assert r['pretrained_acc'] >= r['baseline_acc'] + 0.10, r
    assert 'pretrained' in p.stdout.lower()


def test_demo_bad_option(tmp_path):
    p = run([sys.executable, '-m', 'submission.demo', '--seed', 'x'], SRC)
    assert p.returncode != 0 and 'Traceback' not in p.stderr and '--seed' in p.stderr
