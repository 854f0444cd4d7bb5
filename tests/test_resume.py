"""Long runs: SIGTERM, checkpoints, resuming to the same end state, progress output, refusals."""
import json
import os
import signal
import subprocess
import sys
import time

import torch

from conftest import SRC, assert_one_line_error, data, run

# A small real run through the project's Trainer and helper.train (exact mode, CPU,
# fixed seed): 2 epochs over the course wiki at block size 64, 46 steps an epoch.
DRIVER = r'''
import random, sys, torch
sys.path.insert(0, SRC)
torch.set_num_threads(1)
from submission import CharCorruptionDataset, GPT, GPTConfig, Trainer, TrainerConfig, train
out, resume = sys.argv[1], sys.argv[2] == 'resume'
random.seed(0); torch.manual_seed(0)
ds = CharCorruptionDataset(open(WIKI, encoding='utf-8').read(), 64)
model = GPT(GPTConfig(ds.vocab_size, 64, n_layer=2, n_head=2, n_embd=32))
tc = TrainerConfig(max_epochs=2, batch_size=64, learning_rate=3e-3, lr_decay=True, warmup_tokens=2000,
                   final_tokens=200000, exact=True, seed=0, checkpoint_path=out + '.ckpt',
                   checkpoint_every=1e9, resume=resume, settings={'lr': 3e-3, 'epochs': 2},
                   log_path=out + '.log.jsonl', progress=True)
try:
    train(model, out, Trainer(model, ds, None, tc))
except Exception as e:
    print('error: ' + str(e), file=sys.stderr)
    sys.exit(getattr(e, 'code', 2))
'''


def driver(out, mode='fresh'):
    code = f'SRC = {SRC!r}\nWIKI = {data("wiki.txt")!r}\n' + DRIVER
    return [sys.executable, '-c', code, str(out), mode]


def steps_logged(log):
    if not os.path.exists(log):
        return 0
    with open(log) as f:
        return sum(1 for line in f if '"step"' in line and '"event"' not in line)


def test_sigterm_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    ref = tmp_path / 'ref.params'
    p = subprocess.run(driver(ref), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr

    out = tmp_path / 'cut.params'
    proc = subprocess.Popen(driver(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while steps_logged(str(out) + '.log.jsonl') < 10 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert 'checkpoint saved to' in err and '--resume' in err
    assert not out.exists()
    ckpt = torch.load(str(out) + '.ckpt', weights_only=True)
    assert ckpt['epoch'] == 0 and 10 <= ckpt['batch'] < 46  # stopped mid-epoch

    p = subprocess.run(driver(out, 'resume'), capture_output=True, text=True, timeout=600)
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
    assert [r['step'] for r in records if 'event' not in r] == list(range(1, 93))
    # Not on a terminal: plain progress lines, no carriage-return bar.
    assert '\r' not in p.stderr and 'epoch 2/2 step 92/92' in p.stderr


def test_damaged_checkpoint_is_refused_and_params_untouched(tmp_path):
    out = tmp_path / 'm.params'
    out.write_bytes(b'previous params')
    ckpt = str(out) + '.ckpt'
    with open(ckpt, 'wb') as f:
        f.write(b'PK\x03\x04 truncated')
    p = subprocess.run(driver(out, 'resume'), capture_output=True, text=True, timeout=600)
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
