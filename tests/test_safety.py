"""Nothing lost, nothing silently wrong: the third round of bad inputs, through the real command lines.

Families: training progress that could be lost (a checkpoint started over, two runs on
one params file, a full disk at the end); a model read with another vocabulary or width;
an option quietly ignored; text the model cannot learn from; outputs that cannot be
written; the other entry points (grader, demo, report); messages that name the argument.
Data: the synthetic world. Helpers from test_bad_inputs.py.
"""
import errno
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, SRC, assert_one_line_error, read, run, run_py
from test_bad_inputs import DEV, TRAIN, WIKI, evaluate, finetune, pretrain, refused, snapshot

SMALL = ['--threads=1', '--precision=fp32']


def train(cwd, args, *extra, **kw):
    p = run_py(args + SMALL + list(extra), cwd=cwd, **kw)
    assert p.returncode == 0, p.stderr
    return p


def interrupted_run(cwd, params, corpus=WIKI):
    """A pretraining run stopped by SIGTERM after its first steps: its checkpoint is on disk."""
    proc = subprocess.Popen([sys.executable, 'run.py', *pretrain(params, corpus), *SMALL, '--max_steps=500'], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = os.path.join(cwd, params + '.log.jsonl')
    while not (os.path.exists(log) and '"step": 2,' in open(log).read()):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    assert os.path.exists(os.path.join(cwd, params + '.ckpt'))
    return os.path.join(cwd, params + '.ckpt')


# ---------------------------------------------------------------- training progress is never lost

def test_a_checkpoint_is_never_started_over_without_being_asked(src_copy):
    ckpt = interrupted_run(src_copy, 'submission/vanilla.pretrain.params')
    saved = open(ckpt, 'rb').read()
    # Without --resume: refused, the checkpoint untouched, no params written.
    refused(src_copy, pretrain('submission/vanilla.pretrain.params') + SMALL + ['--max_steps=3'],
            'holds an interrupted run', '--resume', '--restart')
    # Another variant's run over it, asked to resume: refused for its settings, never deleted.
    refused(src_copy, pretrain('submission/vanilla.pretrain.params', variant='synthesizer') + SMALL +
            ['--max_steps=3', '--resume'], 'other settings', 'variant')
    assert open(ckpt, 'rb').read() == saved
    # --restart discards it (said), trains anew, and the finished run leaves no checkpoint.
    p = train(src_copy, pretrain('submission/vanilla.pretrain.params'), '--max_steps=2', '--restart', '--resume')
    assert '--restart: discarding' in p.stdout and 'resuming' not in p.stdout
    assert not os.path.exists(ckpt) and (src_copy / 'submission' / 'vanilla.pretrain.params').exists()


def test_a_second_run_on_the_same_params_is_refused_while_the_first_runs(src_copy):
    params = 'submission/vanilla.pretrain.params'
    first = subprocess.Popen([sys.executable, 'run.py', *pretrain(params), *SMALL, '--max_steps=500'],
                             cwd=src_copy, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = src_copy / (params + '.lock')
    while not lock.exists():
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.05)
    p = run_py(pretrain(params) + SMALL + ['--max_steps=2', '--restart'], cwd=src_copy)
    assert_one_line_error(p, 'is being written by another run', f'process {first.pid}')
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 143
    assert not lock.exists()  # the first run's lock went with it
    train(src_copy, pretrain(params), '--max_steps=2', '--resume')  # and the params path is free again


FULL_DISK = '''
import errno, runpy, sys
sys.path.insert(0, '.')
import submission.lib.files as files
real = files.temporary
def temporary(path, write):
    if path.endswith('.params'):
        raise files.WriteError(errno.ENOSPC, 'No space left on device', path)
    return real(path, write)
files.temporary = temporary
sys.argv = ['run.py'] + sys.argv[1:]
runpy.run_path('run.py', run_name='__main__')
'''


def test_a_full_disk_at_the_end_keeps_the_trained_model(src_copy, tmp_path):
    """The params cannot be written: one line, and the run's end goes to its checkpoint; once
    there is room, the same command with --resume writes params equal to an uninterrupted run's."""
    args = finetune('submission/a.params') + SMALL + ['--max_steps=3', '--exact']
    p = run([sys.executable, '-c', FULL_DISK, *args], src_copy)
    assert_one_line_error(p, 'could not write submission/a.params (No space left on device)',
                          'kept in submission/a.params.ckpt (step 3)', '--resume')
    assert not (src_copy / 'submission' / 'a.params').exists()
    assert run_py(args + ['--resume'], cwd=src_copy).returncode == 0
    train(src_copy, finetune('submission/b.params') + ['--max_steps=3', '--exact'])
    a = torch.load(src_copy / 'submission' / 'a.params', weights_only=True)
    b = torch.load(src_copy / 'submission' / 'b.params', weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert not (src_copy / 'submission' / 'a.params.ckpt').exists()


def test_a_run_whose_weights_turn_nan_stops_in_one_line_and_keeps_them_nowhere(world_data, tmp_path):
    """A loss that is not finite can be a step fp16's scaler skips; weights that are not finite are a
    diverged run (a bf16 perceiver on a GPU ended so): it stops at once, and neither the params file
    nor the checkpoint (written every step here) takes the NaN weights."""
    from submission import CharCorruptionDataset, GPT, GPTConfig, Trainer, TrainerConfig, helper
    from submission.lib import checkpoint, files
    from submission.lib.files import UsageError
    from submission.lib.options import Options
    ds = CharCorruptionDataset(read(world_data, 'wiki.txt'), 64)
    torch.manual_seed(0)
    model = GPT(GPTConfig(ds.vocab_size, 64, n_layer=1, n_head=2, n_embd=16, exact=False))
    calls = []

    def poison(module, inputs, output):  # the third step's logits, as an overflow would leave them
        calls.append(1)
        return output * float('nan') if len(calls) == 3 else output
    model.head.register_forward_hook(poison)
    params = str(tmp_path / 'p.params')
    trainer = Trainer(model, ds, None, TrainerConfig(max_epochs=1, batch_size=16, learning_rate=1e-3),
                      Options(exact=False, device='cpu', precision='fp32', max_steps=6, checkpoint_every=0,
                              progress=False))
    with pytest.raises(UsageError, match=r'^training diverged at step 3: the loss and \S+ are no longer finite') as e:
        helper.train(model, params, trainer)
    assert f'{params} was not written' in str(e.value) and '--precision=fp32' in str(e.value)
    assert '\n' not in str(e.value)
    assert not os.path.exists(params)
    assert checkpoint.step_of(files.checkpoint_path(params)) == 2
    kept = checkpoint.load_checkpoint(files.checkpoint_path(params))['model']
    assert all(torch.isfinite(v).all() for v in kept.values() if v.is_floating_point())


def test_a_loss_that_is_not_finite_with_finite_weights_goes_on(world_data):
    """The fp16 case: an inf loss whose step is skipped leaves the weights as they were; training goes on."""
    from submission import CharCorruptionDataset, GPT, GPTConfig, Trainer, TrainerConfig
    from submission.lib.options import Options
    ds = CharCorruptionDataset(read(world_data, 'wiki.txt'), 64)
    model = GPT(GPTConfig(ds.vocab_size, 64, n_layer=1, n_head=2, n_embd=16, exact=False))
    trainer = Trainer(model, ds, None, TrainerConfig(max_epochs=1, batch_size=16, learning_rate=1e-3),
                      Options(exact=False, device='cpu', precision='fp32', max_steps=4, progress=False))
    real = trainer.optimize
    trainer.optimize = lambda *a: real(*a) * float('inf') if trainer.state.step == 1 else real(*a)
    trainer.train()
    assert trainer.state.step == 4 and math.isfinite(trainer.final_loss)


# ---------------------------------------------------------------- a model read with the wrong vocabulary

def same_size_other_vocabulary(src_copy):
    """The world's corpus with one letter swapped for a character it lacks: same size, other ids."""
    text = (src_copy / WIKI).read_text(encoding='utf-8')
    questions = (src_copy / TRAIN).read_text(encoding='utf-8') + (src_copy / DEV).read_text(encoding='utf-8')
    letter = next(c for c in sorted(set(text)) if c not in questions and c != '\n')
    other = next(c for c in '#%&@+=~^' if c not in text)
    (src_copy / 'data' / 'other.txt').write_text(text.replace(letter, other), encoding='utf-8')
    return 'data/other.txt'


def test_params_read_with_another_vocabulary_of_the_same_size_are_refused(src_copy):
    train(src_copy, finetune('submission/v.params'), '--max_steps=1')
    assert (src_copy / 'submission' / 'v.params.vocab.json').exists()
    other = same_size_other_vocabulary(src_copy)
    args = evaluate('submission/v.params', 'out.txt')
    args[2] = f'--pretrain_corpus_path={other}'
    refused(src_copy, args, 'another vocabulary', 'use the --pretrain_corpus_path the params were trained with')
    ft = finetune('submission/w.params', reading='submission/v.params')
    ft[2] = f'--pretrain_corpus_path={other}'
    refused(src_copy, ft + SMALL + ['--max_steps=1'], 'another vocabulary')
    # Course params (no vocabulary beside them) still load, as course code would load them.
    os.unlink(src_copy / 'submission' / 'v.params.vocab.json')
    assert run_py(args, cwd=src_copy).returncode == 0


def test_resuming_with_another_vocabulary_is_refused(src_copy):
    """The same corpus name and size, other characters: the checkpoint's run cannot go on with it."""
    (src_copy / 'data' / 'copy.txt').write_bytes((src_copy / WIKI).read_bytes())
    interrupted_run(src_copy, 'submission/vanilla.pretrain.params', corpus='data/copy.txt')
    os.replace(src_copy / same_size_other_vocabulary(src_copy), src_copy / 'data' / 'copy.txt')
    p = refused(src_copy, pretrain('submission/vanilla.pretrain.params', corpus='data/copy.txt') + SMALL +
                ['--max_steps=3', '--resume'], 'other settings (another vocabulary)')


def test_params_of_another_width_or_of_whole_numbers_are_named(src_copy, params):
    state = torch.load(params['vanilla'], weights_only=True)
    wide = {k: torch.zeros(*v.shape[:-1], 64) if k == 'tok_emb.weight' else v for k, v in state.items()}
    torch.save(wide, src_copy / 'wide.params')
    refused(src_copy, evaluate('wide.params', 'out.txt'), '64 wide (n_embd)', '256 wide')
    torch.save({k: v.long() for k, v in state.items()}, src_copy / 'ints.params')
    refused(src_copy, evaluate('ints.params', 'out.txt'), 'torch.int64', 'floating-point')


# ---------------------------------------------------------------- an option quietly ignored

def test_max_steps_below_the_checkpoint_and_changed_options_on_resume(src_copy):
    interrupted_run(src_copy, 'submission/vanilla.pretrain.params')
    refused(src_copy, pretrain('submission/vanilla.pretrain.params') + SMALL + ['--max_steps=1', '--resume'],
            '--max_steps=1', 'at step', '--restart')
    p = run_py(pretrain('submission/vanilla.pretrain.params') + ['--precision=fp32', '--threads=2',
                                                                  '--max_steps=4', '--resume'], cwd=src_copy)
    assert p.returncode == 0, p.stderr
    assert 'note: resuming with --threads 2 (the run so far: 1)' in p.stdout
    assert 'note: resuming with --max_steps 4 (the run so far: 500)' in p.stdout


@pytest.mark.parametrize('option', ['--max_steps=1_0', '--max_steps=١٠', '--seed=٣', '--threads=²',
                                    '--checkpoint_every=1_0', '--checkpoint_every=٣٠', '--schedule_epochs=1_0'])
def test_numbers_take_plain_ascii_digits_only(src_copy, option):
    refused(src_copy, pretrain('x.params') + [option], option.split('=')[0], 'digits 0-9')


# ---------------------------------------------------------------- text the model cannot learn from

def warnings_of(p):
    return [line for line in p.stderr.splitlines() if line.startswith('warning: ')]


def test_corpus_with_a_byte_order_mark_or_no_line_breaks_is_warned_of(src_copy):
    text = (src_copy / WIKI).read_text(encoding='utf-8')
    (src_copy / 'data' / 'bom.txt').write_text('\ufeff' + text, encoding='utf-8')
    p = train(src_copy, pretrain('a.params', corpus='data/bom.txt'), '--max_steps=1')
    assert len(warnings_of(p)) == 1 and 'byte-order mark' in warnings_of(p)[0]
    (src_copy / 'data' / 'one.txt').write_text(text.replace('\n', ' '), encoding='utf-8')
    p = train(src_copy, pretrain('b.params', corpus='data/one.txt'), '--max_steps=1')
    assert len(warnings_of(p)) == 1 and f'a line of {len(text):,} characters' in warnings_of(p)[0]
    assert 'one document per line' in warnings_of(p)[0]


def test_finetune_answers_that_are_empty_or_lose_their_characters_are_warned_of(src_copy):
    lines = (src_copy / TRAIN).read_text(encoding='utf-8').splitlines()
    name = lines[2].split('\t')[0]
    lines[2] = f'{name}\t   '
    lines[4] = lines[4].split('\t')[0] + '\tZürich'
    lines[6] = lines[6].split('\t')[0] + '\tçé'
    (src_copy / 'data' / 'odd.tsv').write_text('\n'.join(lines) + '\n', encoding='utf-8')
    p = train(src_copy, finetune('a.params', corpus='data/odd.tsv'), '--max_steps=1')
    warned = warnings_of(p)
    assert len(warned) == 2, p.stderr
    assert "drops characters outside ASCII" in warned[0] and 'ç' in warned[0] and 'ü' in warned[0]
    assert '2 line(s) whose answer is empty' in warned[1] and '(line 3 first)' in warned[1]


# ---------------------------------------------------------------- outputs that cannot be written

@pytest.mark.parametrize('make, path, needle', [
    (None, '/proc/out.predictions', 'no file can be written in /proc'),
    (None, '/sys/kernel/out.predictions', 'no file can be written in /sys/kernel'),
    ('dangling', 'link.predictions', 'which does not exist'),
    (None, 'x.predictions/', 'is a directory'),
], ids=['proc', 'sys', 'dangling-link', 'trailing-slash'])
def test_outputs_that_cannot_be_written_are_found_before_work(src_copy, params, make, path, needle):
    if make == 'dangling':
        os.symlink(src_copy / 'nowhere' / 'x', src_copy / path)
        os.symlink(src_copy / 'nowhere' / 'y', src_copy / path.replace('predictions', 'params'))
    if not os.path.isdir(os.path.dirname(path.rstrip('/')) or '.'):
        pytest.skip(f'no {os.path.dirname(path)} on this machine')
    refused(src_copy, evaluate(params['vanilla'], path), path, needle)
    refused(src_copy, pretrain(path.replace('predictions', 'params')), needle)
    assert not (src_copy / 'x.predictions').exists()


def test_an_output_folder_that_refuses_new_files(src_copy, params):
    """A folder without write permission; for root, who writes anywhere whatever the permissions,
    an immutable one (chattr +i)."""
    folder = src_copy / 'ro'
    folder.mkdir()
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
    elif subprocess.run(['chattr', '+i', str(folder)], capture_output=True).returncode != 0:
        pytest.skip('root here cannot make a folder immutable (chattr +i), and writes into any other')
    try:
        refused(src_copy, evaluate(params['vanilla'], 'ro/out.txt'), 'ro/out.txt', 'no file can be written')
    finally:
        subprocess.run(['chattr', '-i', str(folder)], capture_output=True)
        os.chmod(folder, 0o755)


# ---------------------------------------------------------------- the other entry points

def test_the_grader_reads_no_pipe(src_copy):
    os.mkfifo(src_copy / 'submission' / 'vanilla.nopretrain.dev.predictions')
    shutil.copy(os.path.join(ROOT, 'points.json'), src_copy.parent / 'points.json')
    p = run([sys.executable, 'grader.py', '1d-0-hidden'], src_copy, timeout=120)
    assert p.returncode == 1 and 'Traceback' not in p.stdout + p.stderr  # finished, with that test failed
    assert 'not a regular file' in p.stdout


def test_the_demo_stops_on_ctrl_c_in_one_line_with_130(tmp_path):
    proc = subprocess.Popen([sys.executable, '-m', 'tools.demo', '--small', '--threads=1',
                             f'--out={tmp_path / "demo"}'], cwd=SRC, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while 'pretraining' not in proc.stdout.readline():
        assert proc.poll() is None, proc.stderr.read()
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert 'Traceback' not in err and err.strip().splitlines()[-1] == 'demo interrupted; run it again to start over'


@pytest.mark.parametrize('out', ['submission', '.', 'data/demo'])
def test_the_demo_writes_nothing_into_the_code(src_copy, out):
    refused(src_copy, ['--small', f'--out={out}'], '--out', 'inside the code (src/)',
            command=[sys.executable, '-m', 'tools.demo'])


def test_the_report_skips_numbers_out_of_range(src_copy):
    train(src_copy, finetune('submission/vanilla.model.params'), '--max_steps=2')
    log = src_copy / 'submission' / 'vanilla.model.params.log.jsonl'
    with open(log, 'a', encoding='utf-8') as f:
        f.write('{"step": 3, "epoch": 1, "loss": 1.0, "lr": 1e-3, "tokens_per_s": 1, "elapsed": 1e999}\n')
        f.write('{"step": 4, "epoch": 1, "loss": 1.0, "lr": 1e-3, "tokens_per_s": 1, "elapsed": 1%s}\n' % ('0' * 400))
    p = run(['./run.sh', 'report'], src_copy)
    assert p.returncode == 0 and 'Traceback' not in p.stderr, p.stderr
    assert '| 2 |' in (src_copy / 'reports' / 'report.md').read_text(encoding='utf-8')


# ---------------------------------------------------------------- messages that name the argument

@pytest.mark.parametrize('args, needle', [
    (['--bogus=1'], 'unknown option --bogus'), (['--seed'], '--seed needs a value'),
    (['--exact=yes'], '--exact takes no value'), (['--variant=vanilla'], '--variant is given twice'),
    (['stray'], "unexpected argument 'stray'"), (['--s=1'], 'spell the option out'),
])
def test_run_sh_names_the_argument_it_cannot_take(src_copy, args, needle):
    refused(src_copy, ['vanilla_pretrain', *args], needle, command=['./run.sh'])


# ---------------------------------------------------------------- loading without running code, on every torch

def test_the_restricted_unpickler_loads_params_and_checkpoints_and_refuses_code(src_copy, params, tmp_path,
                                                                              monkeypatch):
    """What loads where torch.load has no weights_only (torch before 1.13), run on today's torch: real
    params and a real checkpoint load; a pickle that would run code is refused, and nothing runs."""
    from submission.lib import compat
    monkeypatch.setattr(compat, 'TORCH', (1, 10))
    state = compat.safe_load(params['vanilla'])
    assert torch.equal(state['head.weight'], torch.load(params['vanilla'], weights_only=True)['head.weight'])
    ckpt = interrupted_run(src_copy, 'submission/vanilla.pretrain.params')
    assert compat.safe_load(ckpt)['step'] >= 2

    class Payload:
        def __reduce__(self):
            return (os.system, (f'touch {tmp_path / "ran"}',))
    torch.save({'tok_emb.weight': Payload()}, tmp_path / 'evil.params')
    with pytest.raises(Exception, match='is not a tensor, a storage or a plain container'):
        compat.safe_load(tmp_path / 'evil.params')
    assert not (tmp_path / 'ran').exists()


def test_auto_precision_on_resume_keeps_the_runs_own(src_copy):
    """A resumed run keeps the precision its run began with (here the one auto would not choose
    on this machine, asked for), where auto's own would refuse the checkpoint for its precision;
    the start line says it, with a note."""
    from submission.lib import options
    auto = options.precision_for('auto', 'cpu', exact=False)[0]
    other = 'fp32' if auto == 'bf16' else 'bf16'
    params = 'submission/vanilla.pretrain.params'
    proc = subprocess.Popen([sys.executable, 'run.py', *pretrain(params), '--threads=1', f'--precision={other}',
                             '--max_steps=500'], cwd=src_copy, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = src_copy / (params + '.log.jsonl')
    while not (log.exists() and '"step": 2,' in log.read_text()):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    p = run_py(pretrain(params) + ['--threads=1', '--max_steps=4', '--resume'], cwd=src_copy)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == f'note: resuming in {other}, the precision the run began with (auto would take {auto} today)'
    assert f', {other}, torch ' in lines[1] and lines[1].endswith('; auto: the precision the run began with')
    assert 'resuming from' in p.stdout
    starts = [json.loads(line) for line in log.read_text().splitlines() if '"event": "start"' in line]
    assert [s['precision'] for s in starts] == [other, other]


# ---------------------------------------------------------------- a full disk, signals, every entry point

@pytest.fixture
def small_disk(tmp_path):
    """make(size): a tmpfs of that size (e.g. '256k'), mounted for the test (root only; elsewhere
    the test is skipped, under CI=true it fails)."""
    mounted = []

    def make(size):
        where = tmp_path / f'disk-{size}-{len(mounted)}'
        where.mkdir()
        p = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(where)],
                           capture_output=True, text=True)
        if p.returncode:
            reason = f'a small disk for this test needs mount -t tmpfs (root): {p.stderr.strip()}'
            if os.environ.get('CI') == 'true':
                pytest.fail(reason)
            pytest.skip(reason)
        mounted.append(where)
        return where
    yield make
    for where in mounted:
        subprocess.run(['umount', '-l', str(where)], capture_output=True)


def fill(disk):
    """Fill a disk to the last byte with a file of zeros; returns it."""
    filler = disk / 'filler'
    with open(filler, 'wb', buffering=0) as f:
        try:
            while True:
                f.write(b'\0' * 65536)
        except OSError:
            pass
        try:
            while True:
                f.write(b'\0')
        except OSError:
            pass
    return filler


def stray(folder):
    """Temporaries and locks left in a folder."""
    return sorted(n for n in os.listdir(folder) if n.endswith(('.tmp', '.lock')))


def test_a_disk_too_small_for_the_run_is_found_before_any_training(src_copy, small_disk):
    disk = small_disk('256k')
    p = refused(src_copy, pretrain(f'{disk}/v.params') + SMALL + ['--max_steps=2'], watch=[disk])
    assert 'the disk holding' in p.stderr and 'MiB free, but this run writes about' in p.stderr
    assert os.listdir(disk) == []


def test_a_disk_that_fills_during_training_keeps_the_last_checkpoint(src_copy, small_disk):
    """One line naming the file and the checkpoint kept; the checkpoint, the log (whole lines
    only) and nothing stray; with room again, --resume finishes the run."""
    disk = small_disk('100m')
    params = f'{disk}/v.params'
    args = pretrain(params) + SMALL + ['--max_steps=40', '--batch_size=16', '--checkpoint_every=0.5']
    proc = subprocess.Popen([sys.executable, 'run.py', *args], cwd=src_copy, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = disk / 'v.params.log.jsonl'
    while not (os.path.exists(params + '.ckpt') and '"step": 3,' in log.read_text()):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    filler = fill(disk)
    _, err = proc.communicate(timeout=300)
    p = subprocess.CompletedProcess(args, proc.returncode, '', err)
    assert_one_line_error(p, 'could not write', 'No space left on device', 'the last checkpoint kept is',
                          f'{params}.ckpt', '--resume')
    kept = int(err.split('(step ')[1].split(')')[0])
    assert torch.load(params + '.ckpt', weights_only=False)['step'] == kept
    records = [json.loads(line) for line in log.read_text().splitlines()]  # no half record
    assert records[-1].get('step', 0) >= kept
    assert stray(disk) == [] and not os.path.exists(params)
    os.unlink(filler)
    p = run_py(args + ['--resume'], cwd=src_copy)
    assert p.returncode == 0, p.stderr
    assert f'resuming from {params}.ckpt' in p.stdout and os.path.exists(params)
    assert stray(disk) == [] and not os.path.exists(params + '.ckpt')


def test_predictions_report_and_world_on_a_full_disk(src_copy, params, small_disk):
    """Each writer on a full disk: one line naming the file, the file already there unchanged,
    nothing stray."""
    disk = small_disk('1m')
    old = disk / 'dev.predictions'
    old.write_text('London\n')
    (disk / 'reports').mkdir()
    fill(disk)
    p = refused(src_copy, evaluate(str(params['vanilla']), str(old)) + ['--threads=1'], watch=[disk])
    assert f'could not write {old} (No space left on device)' in p.stderr and 'make room' in p.stderr
    p = refused(src_copy, ['--function=report', f'--report_dir={disk}/reports'], watch=[disk])
    assert 'could not write' in p.stderr and f'{disk}/reports' in p.stderr
    p = refused(src_copy, ['--out', f'{disk}/world'], command=[sys.executable, '-m', 'tools.world'],
                watch=[disk])
    assert 'could not write' in p.stderr and not (disk / 'world').exists()  # nor a folder of its own
    assert old.read_text() == 'London\n' and stray(disk) == [] and stray(disk / 'reports') == []


def test_the_params_and_their_vocabulary_land_together_or_not_at_all(src_copy, tmp_path, monkeypatch):
    """A full disk while the vocabulary is written: the params already there and theirs stay."""
    from submission.lib import checkpoint, files
    from submission.model import GPT, GPTConfig
    model = GPT(GPTConfig(5, 8, n_layer=1, n_head=1, n_embd=4))
    path = str(tmp_path / 'm.params')
    checkpoint.save_params(model, path, dict(enumerate('abcde')))
    before = snapshot(str(tmp_path))
    real = files.temporary

    def temporary(target, write):
        if target.endswith('.vocab.json'):
            raise files.WriteError(errno.ENOSPC, 'No space left on device', target)
        return real(target, write)
    monkeypatch.setattr(files, 'temporary', temporary)
    with torch.no_grad():
        model.head.weight.add_(1)
    with pytest.raises(files.WriteError, match='could not write .*vocab.json'):
        checkpoint.save_params(model, path, dict(enumerate('abcde')))
    assert snapshot(str(tmp_path)) == before


def pretraining_at_step_two(src_copy, params):
    """A pretraining process of 500 steps, returned once its metrics log has step 2."""
    proc = subprocess.Popen([sys.executable, 'run.py', *pretrain(params), *SMALL, '--max_steps=500'], cwd=src_copy,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = src_copy / (params + '.log.jsonl')
    while not (log.exists() and '"step": 2,' in log.read_text()):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    return proc


def test_two_signals_in_a_row_leave_no_lock(src_copy):
    params = 'submission/vanilla.pretrain.params'
    proc = pretraining_at_step_two(src_copy, params)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and 'second signal' in err
    assert stray(src_copy / 'submission') == []


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_note(src_copy):
    params = 'submission/vanilla.pretrain.params'
    proc = pretraining_at_step_two(src_copy, params)
    proc.kill()
    proc.wait()
    assert stray(src_copy / 'submission') == ['vanilla.pretrain.params.lock']  # SIGKILL cleans nothing
    p = train(src_copy, pretrain(params), '--max_steps=1', '--restart')
    assert f'was left by a run that was killed (process {proc.pid}); taking it over' in p.stdout
    assert stray(src_copy / 'submission') == []


def test_sigterm_outside_training_stops_in_one_line_and_leaves_nothing(src_copy, params):
    """During an evaluation: exit 143 with one line, no predictions, no temporary."""
    out = src_copy / 'submission' / 'x.predictions'
    proc = subprocess.Popen([sys.executable, 'run.py', *evaluate(str(params['vanilla']), str(out)), '--exact',
                             '--threads=1'], cwd=src_copy, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # past start-up, into the answers (the exact decoding takes far longer)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and 'Traceback' not in err, err
    assert [line for line in err.splitlines() if line.strip()][-1].startswith('SIGTERM received: stopped')
    assert not out.exists() and stray(src_copy / 'submission') == []


BENCH = os.path.join(ROOT, 'bench')


@pytest.mark.parametrize('command, needle', [
    (['bench/pipeline.py', 'vanilla', '--out', 'OUT', '--', '--device=cpu', '--precison=bf16'], '--precison=bf16'),
    (['bench/cpu_ladder.py', 'vanilla', '2', '--out', 'OUT', '--', '--no_such_option=1'], '--no_such_option'),
    (['bench/cpu_ladder.py', 'vanilla', '2', '--out', 'OUT', '--seeds=a'], '--seeds=a'),
    (['bench/bench.py', '--stepz=2'], 'unknown option --stepz'),
    (['bench/bench.py', '--only=peak,fast'], 'unknown --only part fast'),
    (['bench/profile_ops.py', '--rows=0'], '--rows=0'),
    (['bench/recall.py', 'vanilla', 'x.params', '--bogus'], 'unrecognized arguments: --bogus'),
    (['bench/stream.py', '--epochs=0'], '--epochs=0'),
])
def test_bench_scripts_refuse_what_they_cannot_take_before_any_work(tmp_path, command, needle):
    command = [sys.executable, os.path.join(ROOT, command[0])] + [str(tmp_path / 'out') if a == 'OUT' else a
                                                                   for a in command[1:]]
    p = run(command, ROOT, timeout=120)
    assert_one_line_error(p, needle)
    assert not (tmp_path / 'out').exists()


def test_gpu_full_refuses_a_misspelt_option_before_making_anything():
    runs = os.path.join(ROOT, 'runs', 'gpu_full')
    before = sorted(os.listdir(runs)) if os.path.isdir(runs) else []
    p = run(['bash', os.path.join(BENCH, 'gpu_full.sh'), 'vanilla', '--', '--device=cpu', '--max_steps=1',
             '--no_such_option=1'], ROOT, timeout=120)
    assert_one_line_error(p, '--no_such_option=1 is an option of no stage')
    assert (sorted(os.listdir(runs)) if os.path.isdir(runs) else []) == before


NAMED = re.compile(r'(\./run\.sh [a-z_]+|python -m (?:submission|tools)\.[\w.]+|python (?:src/)?run\.py|bench/\w+\.(?:py|sh))')


def test_every_command_a_usage_or_error_line_names_works_as_written(src_copy):
    """Each entry point's usage and error lines; every command they name runs its --help (or,
    for ./run.sh, is one of its commands)."""
    said = []
    for command in (['./run.sh'], ['./run.sh', 'vanilla_pretrainn'], [sys.executable, 'run.py'],
                    [sys.executable, 'run.py', '--function=pretrain', '--bogus'],
                    [sys.executable, '-m', 'tools.demo', '--bogus'],
                    [sys.executable, '-m', 'tools.world', '--bogus'],
                    [sys.executable, '-m', 'tools.demo', '--help'],
                    [sys.executable, '-m', 'tools.world', '--help'],
                    [sys.executable, os.path.join(BENCH, 'bench.py'), '--bogus'],
                    [sys.executable, os.path.join(BENCH, 'pipeline.py'), '--bogus'],
                    [sys.executable, os.path.join(BENCH, 'stream.py'), '--bogus']):
        p = run(command, src_copy, timeout=120)
        said.append(p.stdout + p.stderr)
    named = sorted(set(NAMED.findall('\n'.join(said))))
    assert './run.sh demo' in named and 'python -m tools.world' in named, named
    for name in named:
        if name.startswith('./run.sh'):
            p = run(['./run.sh', name.split()[1], '--help'], src_copy, timeout=120)
        elif name.startswith('python -m'):
            p = run([sys.executable, '-m', name.split()[2], '--help'], src_copy, timeout=120)
        elif name.startswith('python'):
            p = run([sys.executable, name.split()[1].replace('src/', ''), '--help'], src_copy, timeout=120)
        else:
            p = run([sys.executable if name.endswith('.py') else 'bash', os.path.join(ROOT, name), '--help'],
                    ROOT, timeout=120)
        assert p.returncode == 0, f'{name}: {p.stdout}{p.stderr}'


def test_two_evaluations_never_write_one_predictions_file_at_once(src_copy, params):
    out = src_copy / 'submission' / 'x.predictions'
    args = evaluate(str(params['vanilla']), str(out)) + ['--threads=1']
    first = subprocess.Popen([sys.executable, 'run.py', *args, '--exact'], cwd=src_copy,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = src_copy / 'submission' / 'x.predictions.lock'
    while not lock.exists():
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.1)
    p = run_py(args, cwd=src_copy)
    assert_one_line_error(p, 'x.predictions is being written by another run', '--outputs_path')
    first.wait(timeout=300)
    assert first.returncode == 0 and len(out.read_text().splitlines()) == 50
    assert not lock.exists()
