"""Benchmark: the exact course computation against the fast path, on this machine, in one run.

Usage:
    bench.py [--steps=N] [--eval_questions=N] [--device=D] [--precision=P] [--threads=N]

Options:
    --steps=N            pretraining steps to time per mode [default: 6]
    --eval_questions=N   dev questions to decode [default: 500]
    --device=D           cpu or cuda [default: cpu]
    --precision=P        the fast path's precision: fp32, bf16 or fp16 [default: fp32]
    --threads=N          torch CPU threads per measurement (default: torch's own choice)

Each measurement runs in its own subprocess (so peak memory is that
measurement's own) through the project's real Trainer and evaluation code on
the course data, and the script prints the time of each and the ratios
exact / fast. Training steps are timed from the trainer's metrics log after
two warm-up steps; the finetune epoch is 2,000 examples at batch 256 (8
steps); evaluation is greedy decoding of the dev questions.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from docopt import docopt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, 'src')


def data_dir():
    local = os.path.join(SRC, 'data')
    if os.path.exists(os.path.join(local, 'wiki.txt')):
        return local
    return os.path.join(os.path.dirname(ROOT), 'shared', 'data')


CHILD = r'''
import json, random, resource, sys, time, torch
sys.path.insert(0, SRC)
from submission.dataset import CharCorruptionDataset, NameDataset
from submission.model import GPT, GPTConfig
from submission.trainer import Trainer, TrainerConfig
from submission import evaluate
task, mode, steps, nq, device, precision, log, threads = sys.argv[1:9]
if threads != 'default':
    torch.set_num_threads(int(threads))
exact = mode == 'exact'
steps, nq = int(steps), int(nq)
random.seed(0); torch.manual_seed(0)
text = open(DATA + '/wiki.txt', encoding='utf-8').read()
ds = CharCorruptionDataset(text, 128)
conf = GPTConfig(ds.vocab_size, 128, n_layer=4, n_head=8, n_embd=256,
                 synthesizer=task == 'pretrain_synthesizer', fast=not exact)
model = GPT(conf)
result = {}
if task == 'prep':
    data = NameDataset(ds, open(DATA + '/birth_places_train.tsv', encoding='utf-8').read())
    tc = TrainerConfig(max_epochs=3, batch_size=256, learning_rate=3e-3, exact=False, progress=False)
    Trainer(model, data, None, tc).train()
    torch.save(model.state_dict(), PARAMS)
elif task.startswith('pretrain') or task == 'finetune':
    if task == 'finetune':
        data = NameDataset(ds, open(DATA + '/birth_places_train.tsv', encoding='utf-8').read())
        tc = TrainerConfig(max_epochs=1, batch_size=256, learning_rate=6e-4, lr_decay=True,
                           warmup_tokens=512 * 20, final_tokens=200 * len(ds) * 128)
    else:
        data = ds
        tc = TrainerConfig(max_epochs=650, batch_size=128, learning_rate=6e-3, lr_decay=True,
                           warmup_tokens=512 * 20, final_tokens=200 * len(ds) * 128, max_steps=steps)
    tc.exact, tc.precision, tc.device, tc.log_path, tc.progress = exact, precision, device, log, False
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    Trainer(model, data, None, tc).train()
    result['total_s'] = time.time() - t0
    rows = [json.loads(l) for l in open(log)]
    el = [r['elapsed'] for r in rows if 'step' in r and 'event' not in r]
    result['step_times'] = [b - a for a, b in zip(el, el[1:])]
    result['first_step_s'] = el[0]
else:
    # A model that answers in the course's format (question ⁇ place ⁇), so decoding
    # can stop where the course's would not: trained once, shared by both modes.
    model.load_state_dict(torch.load(PARAMS, weights_only=True))
    model.to(device)
    lines = [l for l in open(DATA + '/birth_dev.tsv', encoding='utf-8').read().split('\n') if l][:nq]
    qs = [l.split('\t')[0] for l in lines]
    t0 = time.time()
    preds = evaluate.predict_places(model, qs, ds.stoi, ds.itos, device, exact=exact)
    result['total_s'] = time.time() - t0
    result['preds'] = preds
if device.startswith('cuda'):
    result['peak_mb'] = torch.cuda.max_memory_allocated() / 2**20
else:
    result['peak_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print('RESULT ' + json.dumps(result))
'''


PARAMS = os.path.join(tempfile.gettempdir(), 'bench-finetuned.params')


def measure(task, mode, steps, nq, device, precision, threads):
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, 'log.jsonl')
        code = f'SRC = {SRC!r}\nDATA = {data_dir()!r}\nPARAMS = {PARAMS!r}\n' + CHILD
        out = subprocess.run([sys.executable, '-c', code, task, mode, str(steps), str(nq), device,
                              precision, log, threads], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f'{task}/{mode} failed:\n{out.stderr[-2000:]}')
    line = [l for l in out.stdout.splitlines() if l.startswith('RESULT ')][-1]
    return json.loads(line[len('RESULT '):])


def step_time(r):
    times = r['step_times'][1:] or r['step_times']  # the first timed step still warms caches
    return statistics.median(times)


def main():
    args = docopt(__doc__)
    steps, nq = int(args['--steps']), int(args['--eval_questions'])
    device, precision = args['--device'], args['--precision']
    threads = args['--threads'] or 'default'
    print(f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
          f'python {platform.python_version()}; device {device}; fast precision {precision}; threads {threads}; '
          f'{time.strftime("%Y-%m-%d")}')
    rows = []
    for task, label in (('pretrain_vanilla', 'pretrain step, vanilla, batch 128'),
                        ('pretrain_synthesizer', 'pretrain step, synthesizer, batch 128')):
        e = measure(task, 'exact', steps, nq, device, 'fp32', threads)
        f = measure(task, 'fast', steps, nq, device, precision, threads)
        rows.append((label, step_time(e), step_time(f), e['peak_mb'], f['peak_mb']))
    e = measure('finetune', 'exact', steps, nq, device, 'fp32', threads)
    f = measure('finetune', 'fast', steps, nq, device, precision, threads)
    rows.append(('finetune epoch (2,000 examples, batch 256)', sum(e['step_times']) + e['first_step_s'],
                 sum(f['step_times']) + f['first_step_s'], e['peak_mb'], f['peak_mb']))
    measure('prep', 'fast', steps, nq, device, 'fp32', threads)
    e = measure('eval', 'exact', steps, nq, device, 'fp32', threads)
    f = measure('eval', 'fast', steps, nq, device, 'fp32', threads)
    same = sum(a == b for a, b in zip(e['preds'], f['preds']))
    rows.append((f'evaluate {nq} dev questions', e['total_s'], f['total_s'], e['peak_mb'], f['peak_mb']))

    print(f'\n| measurement | exact (s) | fast (s) | speed-up | peak MB exact | peak MB fast |')
    print('|---|---:|---:|---:|---:|---:|')
    for label, te, tf, me, mf in rows:
        print(f'| {label} | {te:.3f} | {tf:.3f} | {te / tf:.1f}x | {me:.0f} | {mf:.0f} |')
    print(f'\nevaluation: {same}/{nq} identical predictions (same weights: 24 finetuning steps, fast path)')


if __name__ == '__main__':
    main()
