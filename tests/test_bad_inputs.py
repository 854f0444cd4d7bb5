"""Bad inputs, as a demanding user gives them, through the real command lines.

Every case must end in one `error:` line naming the problem and the fix, a
non-zero exit and no traceback, and must leave every file as it was: nothing
written, nothing lost, no temporary file left behind. The families: an output
that is also an input; paths that are not regular files; finetune and eval
lines the model cannot take; options the machine cannot honour or the function
does not use; numbers out of range or not finite; characters the course
reserves; run.sh's own settings; and what a failed or killed run leaves.
"""
import hashlib
import os
import signal
import stat
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, SRC, assert_one_line_error, run, run_py

WIKI, TRAIN, DEV, TEST_INPUTS = 'data/wiki.txt', 'data/birth_places_train.tsv', 'data/birth_dev.tsv', \
    'data/birth_test_inputs.tsv'


def snapshot(*folders):
    """{path: digest} of every file under the folders (symlinks as their target's content)."""
    found = {}
    for folder in folders:
        for root, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if d != '__pycache__']
            for name in names:
                path = os.path.join(root, name)
                mode = os.stat(path).st_mode if os.path.exists(path) else 0
                if stat.S_ISREG(mode):
                    with open(path, 'rb') as f:
                        found[path] = hashlib.sha256(f.read()).hexdigest()
                else:
                    found[path] = 'not a regular file'
    return found


def refused(cwd, args, *needles, watch=(), command=None, timeout=120, env=None):
    """Run run.py (or `command`) with args: a one-line error, and every watched file as it was."""
    folders = [str(cwd), *map(str, watch)]
    before = snapshot(*folders)
    if command is None:
        p = run_py(args, cwd=cwd, timeout=timeout, env=env)
    else:
        p = run(command + args, cwd, timeout=timeout, env=env)
    assert_one_line_error(p, *needles)
    assert snapshot(*folders) == before, 'a refused run changed, added or removed a file'
    return p


def evaluate(params, outputs, eval_path=DEV, variant='vanilla'):
    return ['--function=evaluate', f'--variant={variant}', f'--pretrain_corpus_path={WIKI}',
            f'--reading_params_path={params}', f'--eval_corpus_path={eval_path}', f'--outputs_path={outputs}']


def pretrain(writing, corpus=WIKI, variant='vanilla'):
    return ['--function=pretrain', f'--variant={variant}', f'--pretrain_corpus_path={corpus}',
            f'--writing_params_path={writing}']


def finetune(writing, corpus=TRAIN, reading=None):
    args = ['--function=finetune', '--variant=vanilla', f'--pretrain_corpus_path={WIKI}',
            f'--writing_params_path={writing}', f'--finetune_corpus_path={corpus}']
    return args + ([f'--reading_params_path={reading}'] if reading else [])


# ---------------------------------------------------------------- an output that is also an input

@pytest.fixture
def work(src_copy, params, tmp_path):
    """src_copy with a params file of its own in submission/ (a finished vanilla pretraining)."""
    target = src_copy / 'submission' / 'vanilla.pretrain.params'
    target.write_bytes(params['vanilla'].read_bytes())
    return src_copy


def test_outputs_path_is_the_eval_file(work):
    refused(work, evaluate('submission/vanilla.pretrain.params', DEV), '--eval_corpus_path', 'destroy')


def test_outputs_path_is_the_params_being_read(work):
    p = 'submission/vanilla.pretrain.params'
    refused(work, evaluate(p, p), '--reading_params_path', 'choose another --outputs_path')


def test_outputs_path_is_the_corpus_by_another_spelling(work):
    refused(work, evaluate('submission/vanilla.pretrain.params', './data/../data/wiki.txt'),
            '--pretrain_corpus_path', 'destroy')


def test_outputs_path_is_a_symlink_to_the_eval_file(work):
    os.symlink(os.path.realpath(work / DEV), work / 'link.tsv')
    refused(work, evaluate('submission/vanilla.pretrain.params', 'link.tsv'), '--eval_corpus_path')


def test_writing_params_path_is_the_pretraining_corpus(work):
    refused(work, pretrain(WIKI), '--pretrain_corpus_path', '--writing_params_path')


def test_writing_params_path_is_the_finetune_corpus(work):
    refused(work, finetune(TRAIN), '--finetune_corpus_path', '--writing_params_path')


def test_writing_params_path_is_the_params_being_read(work):
    p = 'submission/vanilla.pretrain.params'
    refused(work, finetune(p, reading=p), '--reading_params_path', '--writing_params_path')


def test_checkpoint_or_log_beside_the_output_is_an_input(work):
    # The run would write its metrics log over its own corpus, and its checkpoint over the params it reads.
    (work / 'data' / 'copy.txt.log.jsonl').write_bytes((work / WIKI).read_bytes())
    refused(work, pretrain('data/copy.txt', corpus='data/copy.txt.log.jsonl'), 'its metrics log')
    (work / 'submission' / 'ft.params.ckpt').write_bytes((work / 'submission' / 'vanilla.pretrain.params')
                                                         .read_bytes())
    refused(work, finetune('submission/ft.params', reading='submission/ft.params.ckpt'), 'its checkpoint')


def test_demo_and_world_never_write_over_the_course_data(src_copy):
    # run.sh demo --out data would have overwritten wiki.txt and the question files.
    refused(src_copy, ['data'], 'world.json', 'course data', command=[sys.executable, '-m', 'tools.world', '--out'])
    refused(src_copy, ['data'], 'inside the code (src/)', command=['./run.sh', 'demo', '--small', '--out'])


# ---------------------------------------------------------------- paths that are not regular files

@pytest.mark.parametrize('which', ['pretrain', 'finetune', 'eval', 'params'])
def test_a_fifo_as_an_input_is_refused_not_read(work, which):
    fifo = work / 'pipe'
    os.mkfifo(fifo)
    args = {'pretrain': pretrain('x.params', corpus='pipe'), 'finetune': finetune('x.params', corpus='pipe'),
            'eval': evaluate('submission/vanilla.pretrain.params', 'o.txt', eval_path='pipe'),
            'params': evaluate('pipe', 'o.txt')}[which]
    refused(work, args, 'pipe', 'not a regular file', timeout=60)  # reading it would hang


def test_a_device_as_corpus_or_output_is_refused(work):
    refused(work, pretrain('x.params', corpus='/dev/zero'), '/dev/zero', 'not a regular file')
    refused(work, evaluate('submission/vanilla.pretrain.params', '/dev/null'), '/dev/null', 'not a regular file')
    assert stat.S_ISCHR(os.stat('/dev/null').st_mode)


def test_an_empty_path_is_refused(work):
    refused(work, evaluate('submission/vanilla.pretrain.params', ''), '--outputs_path is required')


# ---------------------------------------------------------------- finetune and eval lines the model cannot take

@pytest.mark.parametrize('exact', [False, True])
def test_finetune_question_longer_than_the_block(src_copy, exact):
    (src_copy / 'long.tsv').write_text('Where was A born?\tParis\n\nWhere was ' + 'X' * 120 + ' born?\tLima\n')
    refused(src_copy, finetune('x.params', corpus='long.tsv') + ['--exact'] * exact, 'line 3', 'too long')


@pytest.mark.parametrize('exact', [False, True])
def test_finetune_line_with_an_empty_question(src_copy, exact):
    (src_copy / 'empty_q.tsv').write_text('Where was A born?\tParis\n\tLima\n')
    refused(src_copy, finetune('x.params', corpus='empty_q.tsv') + ['--exact'] * exact, 'line 2', 'empty question')


@pytest.mark.parametrize('content, needles', [
    ('Where was A born?\tParis\nWhere was B born?\n', ('line 2', 'lacks an answer')),
    ('Where was A born?\nWhere was B born?\tParis\n', ('line 2', 'has an answer')),
    ('Where was A born?\tParis\tLima\n', ('line 1', 'more than one tab')),
    ('\n\n  \n', ('no questions',)),
    ('Where was A born?\tParis\n\tLima\n', ('line 2', 'empty question')),
], ids=['answer-missing', 'answer-extra', 'two-tabs', 'blank', 'empty-question'])
def test_eval_files_whose_lines_do_not_all_look_alike(work, content, needles):
    (work / 'odd.tsv').write_text(content)
    refused(work, evaluate('submission/vanilla.pretrain.params', 'o.txt', eval_path='odd.tsv'), *needles)


def test_eval_question_too_long_for_the_synthesizer(work, params):
    (work / 'submission' / 'synth.params').write_bytes(params['synthesizer'].read_bytes())
    (work / 'long.tsv').write_text('Where was A born?\nWhere was ' + 'x' * 90 + ' born?\n')
    refused(work, evaluate('submission/synth.params', 'o.txt', eval_path='long.tsv', variant='synthesizer'),
            'line 2', 'at most 95')


def test_london_baseline_without_answers(src_copy):
    refused(src_copy, ['--function=london_baseline', f'--eval_corpus_path={TEST_INPUTS}'], 'no answers')


def test_corpus_with_the_reserved_mask_or_pad_character(src_copy):
    for char in ('\u2047', '\u25A1'):
        (src_copy / 'odd.txt').write_text(f'Alice was born in Paris.\nBob {char} was born in Lima.\n', encoding='utf-8')
        refused(src_copy, pretrain('x.params', corpus='odd.txt'), 'line 2', f'U+{ord(char):04X}')


# ---------------------------------------------------------------- options

@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has CUDA')
def test_cuda_on_a_machine_without_cuda(src_copy):
    refused(src_copy, pretrain('x.params') + ['--device=cuda'], 'no CUDA', '--device=cpu')
    refused(src_copy, ['--seed', '1', '--device', 'cuda', '--small'], 'no CUDA',
            command=[sys.executable, '-m', 'tools.demo'])


@pytest.mark.parametrize('device', ['tpu', 'cuda:x', 'cpu:0', ''])
def test_unknown_devices(src_copy, device):
    refused(src_copy, pretrain('x.params') + [f'--device={device}'], '--device')


@pytest.mark.parametrize('option, needle', [
    ('--checkpoint_every=inf', 'finite'), ('--checkpoint_every=nan', 'finite'),
    ('--checkpoint_every=1e999', 'finite'), ('--checkpoint_every=-1', 'finite'),
    ('--seed=4294967296', 'out of range'), ('--seed=99999999999999999999999', 'out of range'),
    ('--seed=1.5', 'whole number'), ('--max_steps=1e3', 'whole number'), ('--max_epochs=2.5', 'whole number'),
    ('--threads=0', 'out of range'), ('--threads=many', 'whole number'),
])
def test_numbers_out_of_range_or_not_finite(src_copy, option, needle):
    refused(src_copy, pretrain('x.params') + [option], option.split('=')[0], needle)


@pytest.mark.parametrize('args, needle', [
    (evaluate('p.params', 'o.txt') + ['--max_steps=2'], '--max_steps does nothing with --function=evaluate'),
    (evaluate('p.params', 'o.txt') + ['--writing_params_path=w.params'], '--writing_params_path does nothing'),
    (pretrain('x.params') + ['--reading_params_path=p.params'], '--reading_params_path does nothing'),
    (pretrain('x.params') + ['--outputs_path=o.txt'], '--outputs_path does nothing'),
    (['--function=london_baseline', f'--eval_corpus_path={DEV}', '--variant=vanilla'], '--variant does nothing'),
    (['--function=report', '--seed=3'], '--seed does nothing'),
    (pretrain('x.params') + ['--exact', '--precision=bf16'], '--exact computes in fp32'),
    (pretrain('x.params') + ['--variant=synthesizer'], '--variant is given twice'),
], ids=['eval-max-steps', 'eval-writing', 'pretrain-reading', 'pretrain-outputs', 'london-variant',
        'report-seed', 'exact-bf16', 'repeated'])
def test_options_the_function_does_not_use_or_contradict(src_copy, args, needle):
    refused(src_copy, args, needle)


# ---------------------------------------------------------------- run.sh's own settings

@pytest.mark.parametrize('env, needle', [
    ({'NPROC': 'two'}, 'NPROC=two'), ({'NPROC': '0'}, 'NPROC=0'), ({'NPROC': '-2'}, 'NPROC=-2'),
    ({'PYTHON': '/no/such/python'}, 'PYTHON=/no/such/python'),
])
def test_run_sh_environment(src_copy, env, needle):
    refused(src_copy, [], needle, command=['./run.sh', 'vanilla_finetune_without_pretrain'], env=env)


def test_run_sh_with_a_python_outside_the_project_environment(src_copy, tmp_path):
    """A python without torch (here the tests' own, told to skip its site-packages) gets one line
    naming it and the fix, not run.py's ImportError."""
    bare = tmp_path / 'python'
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    refused(src_copy, [], f'{bare} has no torch', command=['./run.sh', 'vanilla_finetune_without_pretrain'],
            env={'PYTHON': str(bare)})


# ---------------------------------------------------------------- what failed and killed runs leave

def test_a_run_that_fails_at_start_keeps_the_previous_log_and_params(src_copy):
    sub = src_copy / 'submission'
    p = run(['./run.sh', 'vanilla_finetune_without_pretrain', '--max_steps=1'], src_copy)
    assert p.returncode == 0, p.stderr
    log, params = sub / 'vanilla.model.params.log.jsonl', sub / 'vanilla.model.params'
    assert log.exists() and params.exists()
    (src_copy / 'bad.tsv').write_text('\tParis\n')
    refused(src_copy, finetune('submission/vanilla.model.params', corpus='bad.tsv'), 'empty question')
    # A run that gets further, to its damaged checkpoint, before failing leaves them too.
    (sub / 'vanilla.model.params.ckpt').write_bytes(b'not a checkpoint')
    before = log.read_bytes(), params.read_bytes()
    p = run(['./run.sh', 'vanilla_finetune_without_pretrain', '--max_steps=1'], src_copy)
    assert_one_line_error(p, 'damaged')
    assert (log.read_bytes(), params.read_bytes()) == before


def test_a_killed_checkpoint_write_leaves_no_temporary(tmp_path):
    """The second Ctrl-C while a checkpoint is being written exits at once; the
    temporary file of that write is removed, not left behind (40 MB for the course model)."""
    code = f'''
import os, signal, sys, time
sys.path.insert(0, {SRC!r})
from submission.lib.files import atomic_write
from submission.trainer import StopFlag
StopFlag().install()
def write(f):
    f.write(b'x' * 1000000)
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)
atomic_write({str(tmp_path / 'run.params.ckpt')!r}, write)
'''
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 128 + signal.SIGINT, p.stderr
    assert 'second signal: exiting now' in p.stderr
    assert os.listdir(tmp_path) == []


def test_a_later_run_removes_temporaries_a_killed_run_left(src_copy):
    sub = src_copy / 'submission'
    # A checkpoint, params, vocabulary and predictions being written when their run was killed.
    stale = [sub / f'.vanilla.model.params{kind}.k1ll3d.tmp' for kind in ('.ckpt', '', '.vocab.json')]
    stale.append(sub / '.vanilla.nopretrain.dev.predictions.k1ll3d.tmp')
    for path in stale:
        path.write_bytes(b'half a file')
    p = run(['./run.sh', 'vanilla_finetune_without_pretrain', '--max_steps=1'], src_copy)
    assert p.returncode == 0, p.stderr
    p = run(['./run.sh', 'vanilla_eval_dev_without_pretrain'], src_copy)
    assert p.returncode == 0, p.stderr
    assert not any(path.exists() for path in stale)
    assert not [f for f in os.listdir(sub) if f.endswith(('.tmp', '.lock'))]


def test_report_with_unreadable_predictions_and_log(src_copy):
    sub = src_copy / 'submission'
    (sub / 'vanilla.nopretrain.dev.predictions').write_bytes(b'Par\xe9s\n' * 3)
    (sub / 'vanilla.model.params.log.jsonl').write_bytes(b'{"step": 1, "loss": 2.0}\n\xff\xfe garbage\n')
    p = run(['./run.sh', 'report'], src_copy)
    assert p.returncode == 0 and 'Traceback' not in p.stderr, p.stderr
    text = (src_copy / 'reports' / 'report.md').read_text(encoding='utf-8')
    assert 'unreadable' in text and 'not UTF-8 text' in text


@pytest.mark.parametrize('args, needle', [(['vanila'], "unknown variant 'vanila'"),
                                          (['rope', 'all'], "unknown variant 'all'")])
def test_gpu_full_refuses_an_unknown_variant_before_doing_anything(args, needle):
    before = sorted(os.listdir(SRC))
    p = run(['bash', os.path.join(ROOT, 'bench', 'gpu_full.sh'), *args], ROOT, timeout=60)
    assert_one_line_error(p, needle, 'use vanilla, synthesizer, perceiver or rope')
    assert p.returncode == 2 and sorted(os.listdir(SRC)) == before
