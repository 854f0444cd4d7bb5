"""Every command in the course's own environment (Python 3.8, torch 1.10: `make test-course-env` runs
this file there), and params moving between it and today's.

In today's environment these run too, as a check of the same commands; the cross-environment
tests need OTHER_PYTHON, the interpreter of the other environment (`make test-course-env` sets it
to the project's .venv), and are skipped without it. Data: the synthetic world.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, SRC, assert_one_line_error, run, run_py

OTHER = os.environ.get('OTHER_PYTHON')
VARIANTS = ('vanilla', 'synthesizer', 'perceiver', 'rope')
FAST = ['--threads=1', '--max_steps=2']


def course_lines(stdout):
    """The lines the course's own code prints, numbers of accuracy masked (they may differ in last bits)."""
    kept = [line for line in stdout.splitlines()
            if line.startswith(('data has ', 'number of parameters: ', 'Correct: ', 'Predictions written', 'wrote '))]
    return [re.sub(r'Correct: .*', 'Correct: C out of T: P%', line) for line in kept]


@pytest.mark.parametrize('variant', VARIANTS)
def test_every_step_of_every_variant(src_copy, variant):
    """pretrain, finetune (with and without pretraining for vanilla), and evaluate on dev (fast and
    exact) and on the test inputs, through run.sh, a few steps a training run."""
    steps = [(f'{variant}_pretrain', FAST), (f'{variant}_finetune_with_pretrain', FAST),
             (f'{variant}_eval_dev_with_pretrain', []), (f'{variant}_eval_dev_with_pretrain', ['--exact']),
             (f'{variant}_eval_test_with_pretrain', [])]
    if variant == 'vanilla':
        steps = [('vanilla_finetune_without_pretrain', FAST + ['--exact']),
                 ('vanilla_eval_dev_without_pretrain', [])] + steps
    for command, extra in steps:
        p = run(['./run.sh', command, *extra], src_copy)
        assert p.returncode == 0, (command, p.stdout, p.stderr)
        assert 'Traceback' not in p.stderr
        lines = course_lines(p.stdout)
        if 'eval_dev' in command:
            assert lines[-1] == 'Correct: C out of T: P%', p.stdout
        elif 'eval_test' in command:
            assert lines[-1].startswith('Predictions written to '), p.stdout
        else:
            assert lines[-1].startswith('wrote ./submission/'), p.stdout


def test_london_baseline_report_and_grader(src_copy):
    p = run(['./run.sh', 'london_baseline'], src_copy)
    assert p.returncode == 0 and p.stdout.startswith('London baseline: Correct: '), p.stderr
    assert run(['./run.sh', 'vanilla_finetune_without_pretrain', *FAST], src_copy).returncode == 0
    p = run(['./run.sh', 'report'], src_copy)
    assert p.returncode == 0 and 'Traceback' not in p.stderr, p.stderr
    shutil.copy(os.path.join(ROOT, 'points.json'), src_copy.parent / 'points.json')
    p = run([sys.executable, 'grader.py', '1c-0-hidden', '1e-0-basic', '1e-1-basic', '1g-3-hidden'], src_copy,
            timeout=600)
    assert p.returncode == 0 and 'Passed 4, failed 0' in p.stdout, p.stdout + p.stderr


def test_demo(tmp_path):
    p = run([sys.executable, '-m', 'tools.demo', '--small', '--threads=2', f'--out={tmp_path}'], SRC,
            timeout=900)
    assert p.returncode == 0, p.stderr
    assert 'pretrain + finetune' in p.stdout and (tmp_path / 'results.json').exists()


def test_a_params_file_whose_pickle_would_run_code_is_refused(src_copy, tmp_path):
    """Loading never runs code: torch.load(weights_only=True) where torch has it, a restricted
    unpickler where it does not (torch before 1.13)."""
    class Payload:
        def __reduce__(self):
            return (os.system, (f'touch {tmp_path / "ran"}',))
    torch.save({'tok_emb.weight': Payload()}, tmp_path / 'evil.params')
    p = run_py(['--function=evaluate', '--variant=vanilla', '--pretrain_corpus_path=data/wiki.txt',
                f'--reading_params_path={tmp_path / "evil.params"}', '--eval_corpus_path=data/birth_dev.tsv',
                f'--outputs_path={tmp_path / "out.txt"}'], cwd=src_copy)
    assert_one_line_error(p, 'is not a params file')
    assert not (tmp_path / 'ran').exists() and not (tmp_path / 'out.txt').exists()


def test_compile_is_refused_where_torch_lacks_it(src_copy):
    if hasattr(torch, 'compile'):
        pytest.skip(f'torch {torch.__version__} has torch.compile')
    p = run_py(['--function=pretrain', '--variant=vanilla', '--pretrain_corpus_path=data/wiki.txt',
                '--writing_params_path=x.params', '--compile'], cwd=src_copy)
    assert_one_line_error(p, '--compile needs torch 2.0 or newer')


@pytest.mark.skipif(not OTHER, reason='OTHER_PYTHON (the other environment) not set: make test-course-env sets it')
def test_params_and_checkpoints_move_between_the_environments(src_copy):
    """Params written here are evaluated there and back, a run checkpointed in one environment
    resumes in the other, and both print the course's same lines."""
    here, there = sys.executable, OTHER
    for writer, reader in ((here, there), (there, here)):
        p = run([writer, 'run.py', '--function=finetune', '--variant=rope', '--pretrain_corpus_path=data/wiki.txt',
                 '--writing_params_path=submission/x.params', '--finetune_corpus_path=data/birth_places_train.tsv',
                 *FAST, '--restart'], src_copy)
        assert p.returncode == 0, p.stderr
        outputs = []
        for python in (reader, writer):
            p = run([python, 'run.py', '--function=evaluate', '--variant=rope', '--pretrain_corpus_path=data/wiki.txt',
                     '--reading_params_path=submission/x.params', '--eval_corpus_path=data/birth_dev.tsv',
                     '--outputs_path=submission/x.predictions', '--exact'], src_copy)
            assert p.returncode == 0, p.stderr
            outputs.append(course_lines(p.stdout))
        assert outputs[0] == outputs[1] and outputs[0][-1] == 'Correct: C out of T: P%'
    # A run stopped here after its first steps resumes there, and finishes.
    for writer, reader in ((here, there), (there, here)):
        args = ['run.py', '--function=pretrain', '--variant=vanilla', '--pretrain_corpus_path=data/wiki.txt',
                '--writing_params_path=submission/k.params', '--threads=1', '--precision=fp32']
        proc = subprocess.Popen([writer, *args, '--max_steps=500', '--restart'], cwd=src_copy,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        log = src_copy / 'submission' / 'k.params.log.jsonl'
        while not (log.exists() and log.read_text().count('"step"') >= 2):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
        p = run([reader, *args, '--max_steps=10', '--resume'], src_copy)
        assert p.returncode == 0 and 'resuming from ' in p.stdout, p.stderr
        assert not (src_copy / 'submission' / 'k.params.ckpt').exists()
        log.unlink()
