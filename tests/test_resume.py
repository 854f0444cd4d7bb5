"""Long runs: SIGTERM, checkpoints, resuming to the same end state, progress output, refusals."""
import json
import os
import signal
import subprocess
import sys
import time

import torch

from conftest import HERE, assert_one_line_error, run

DRIVER = os.path.join(HERE, 'resume_driver.py')
STEPS_PER_EPOCH = 38  # resume_driver.py on the tests' world: 601 lines at batch 16


def driver(out, wiki, mode='fresh'):
    return [sys.executable, DRIVER, str(out), wiki, mode]


def steps_logged(log):
    if not os.path.exists(log):
        return 0
    with open(log) as f:
        return sum(1 for line in f if '"step"' in line and '"event"' not in line)


def test_sigterm_mid_epoch_then_resume_matches_uninterrupted(tmp_path, world_data):
    wiki = os.path.join(world_data, 'wiki.txt')
    ref = tmp_path / 'ref.params'
    p = subprocess.run(driver(ref, wiki), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr

    out = tmp_path / 'cut.params'
    proc = subprocess.Popen(driver(out, wiki), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while steps_logged(str(out) + '.log.jsonl') < 10 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert 'checkpoint saved to' in err and '--resume' in err
    assert not out.exists()
    ckpt = torch.load(str(out) + '.ckpt', weights_only=True)
    assert ckpt['epoch'] == 0 and 10 <= ckpt['batch'] < STEPS_PER_EPOCH  # stopped mid-epoch

    p = subprocess.run(driver(out, wiki, 'resume'), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert 'resuming from' in p.stdout
    a, b = torch.load(ref, weights_only=True), torch.load(out, weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit for bit
    assert not os.path.exists(str(out) + '.ckpt')
    records = [json.loads(l) for l in open(str(out) + '.log.jsonl')]
    starts = [r for r in records if r.get('event') == 'start']
    assert len(starts) == 2 and starts[1]['resumed_from_step'] == ckpt['step']
    assert starts[0]['elapsed_before'] == 0 and starts[1]['elapsed_before'] == round(ckpt['elapsed'], 1) > 0
    # bench/pipeline.py (the CPU ladder's rows) sums up the run whole, not its last session.
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'bench'))
    import pipeline
    line, earlier = pipeline.training_summary(str(out) + '.log.jsonl')
    assert line.startswith(f'{2 * STEPS_PER_EPOCH} steps, ') and earlier == starts[1]['elapsed_before']
    assert pipeline.training_summary(str(ref) + '.log.jsonl')[1] == 0
    assert [r['step'] for r in records if 'event' not in r] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    # Not on a terminal: plain progress lines, no carriage-return bar.
    last = 2 * STEPS_PER_EPOCH
    assert '\r' not in p.stderr and f'epoch 2/2 step {last}/{last}' in p.stderr


def test_damaged_checkpoint_is_refused_and_params_untouched(tmp_path, world_data):
    out = tmp_path / 'm.params'
    out.write_bytes(b'previous params')
    ckpt = str(out) + '.ckpt'
    with open(ckpt, 'wb') as f:
        f.write(b'PK\x03\x04 truncated')
    p = subprocess.run(driver(out, os.path.join(world_data, 'wiki.txt'), 'resume'),
                       capture_output=True, text=True, timeout=600)
    assert_one_line_error(p, 'damaged', 'delete it')
    assert out.read_bytes() == b'previous params'


def test_checkpoint_from_other_settings_is_refused(src_copy):
    sub = src_copy / 'submission'
    first = run(['./run.sh', 'vanilla_finetune_without_pretrain', '--max_steps=1'], src_copy)
    assert first.returncode == 0, first.stderr
    # Interrupt a run for real through run.sh, then come back with other settings.
    log = sub / 'vanilla.model.params.log.jsonl'
    os.unlink(log)  # so the wait below sees the new run's steps, not the first run's
    proc = subprocess.Popen(['./run.sh', 'vanilla_finetune_without_pretrain', '--checkpoint_every=0'],
                            cwd=src_copy, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHON=sys.executable))
    deadline = time.time() + 300
    while steps_logged(log) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    before = (sub / 'vanilla.model.params').read_bytes()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert (sub / 'vanilla.model.params.ckpt').exists()
    assert (sub / 'vanilla.model.params').read_bytes() == before  # the old params survive
    p = run(['./run.sh', 'vanilla_finetune_without_pretrain', '--seed=3'], src_copy)
    assert_one_line_error(p, 'other settings', 'seed 0 there, 3 now')
    p = run(['./run.sh', 'vanilla_finetune_without_pretrain', '--max_steps=2'], src_copy)
    assert p.returncode == 0, p.stderr
    assert 'resuming from' in p.stdout
    assert not (sub / 'vanilla.model.params.ckpt').exists()
