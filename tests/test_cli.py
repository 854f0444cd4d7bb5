"""The real command lines: every run.sh command end to end, and the bad inputs of the first probe
(test_bad_inputs.py has the rest). Data: the synthetic world, in the course's formats."""
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, assert_one_line_error, lines_of, run, run_py

COURSE = ['--pretrain_corpus_path=data/wiki.txt']


def test_every_run_sh_command_end_to_end(src_copy, world_data):
    """All eleven course commands, in the handout's order, with training cut to a few steps."""
    sub = src_copy / 'submission'
    n_dev, n_test = len(lines_of(world_data, 'birth_dev.tsv')), len(lines_of(world_data, 'birth_test_inputs.tsv'))
    steps = [
        ('vanilla_finetune_without_pretrain', ['--max_steps=2'], 'vanilla.model.params'),
        ('vanilla_eval_dev_without_pretrain', [], 'vanilla.nopretrain.dev.predictions'),
        ('vanilla_eval_test_without_pretrain', [], 'vanilla.nopretrain.test.predictions'),
        ('vanilla_pretrain', ['--max_steps=2'], 'vanilla.pretrain.params'),
        ('vanilla_finetune_with_pretrain', ['--max_steps=2'], 'vanilla.finetune.params'),
        ('vanilla_eval_dev_with_pretrain', [], 'vanilla.pretrain.dev.predictions'),
        ('vanilla_eval_test_with_pretrain', [], 'vanilla.pretrain.test.predictions'),
        ('synthesizer_pretrain', ['--max_steps=2'], 'synthesizer.pretrain.params'),
        ('synthesizer_finetune_with_pretrain', ['--max_steps=2'], 'synthesizer.finetune.params'),
        ('synthesizer_eval_dev_with_pretrain', [], 'synthesizer.pretrain.dev.predictions'),
        ('synthesizer_eval_test_with_pretrain', [], 'synthesizer.pretrain.test.predictions'),
    ]
    for cmd, extra, out in steps:
        p = run(['./run.sh', cmd, *extra], src_copy)
        assert p.returncode == 0, (cmd, p.stdout, p.stderr)
        assert (sub / out).exists(), cmd
        if 'eval_dev' in cmd:
            assert 'Correct: ' in p.stdout and f' out of {n_dev}.0: ' in p.stdout, p.stdout
            assert len((sub / out).read_text(encoding='utf-8').split('\n')) == n_dev + 1
        if 'eval_test' in cmd:
            assert 'no targets provided' in p.stdout, p.stdout
            assert len((sub / out).read_text(encoding='utf-8').split('\n')) == n_test + 1
        if out.endswith('.params'):
            state = torch.load(sub / out, weights_only=True)
            assert state['pos_emb'].shape == (1, 128, 256)
            assert ('blocks.0.attn.w2' in state) == cmd.startswith('synthesizer')
            assert not (sub / (out + '.ckpt')).exists()  # a finished run leaves no checkpoint
            assert (sub / (out + '.log.jsonl')).exists()
    assert not [f for f in os.listdir(sub) if f.endswith('.tmp')]


def test_london_baseline_on_the_course_data(course_src_copy):
    p = run(['./run.sh', 'london_baseline'], course_src_copy)
    assert p.returncode == 0 and '25.0 out of 500.0: 5.0%' in p.stdout


def test_unknown_command(src_copy):
    p = run(['./run.sh', 'vanilla_pretrian'], src_copy)
    assert p.returncode != 0
    assert "Unknown command 'vanilla_pretrian'" in p.stderr.splitlines()[0]
    assert 'vanilla_pretrain' in p.stderr and 'synthesizer_eval_test_with_pretrain' in p.stderr


def test_step_without_its_params_names_the_command(src_copy):
    for cmd, maker in (('vanilla_finetune_with_pretrain', 'vanilla_pretrain'),
                       ('vanilla_eval_dev_with_pretrain', 'vanilla_finetune_with_pretrain'),
                       ('synthesizer_eval_test_with_pretrain', 'synthesizer_finetune_with_pretrain'),
                       ('vanilla_eval_dev_without_pretrain', 'vanilla_finetune_without_pretrain')):
        p = run(['./run.sh', cmd], src_copy)
        assert_one_line_error(p, f'./run.sh {maker}')


def test_missing_course_data_points_to_readme(src_copy):
    os.unlink(src_copy / 'data' / 'wiki.txt')
    p = run(['./run.sh', 'vanilla_pretrain'], src_copy)
    assert_one_line_error(p, 'data/wiki.txt', 'src/data/README.md')


def eval_args(params_path, outputs, eval_path='data/birth_dev.tsv', variant='vanilla', corpus='data/wiki.txt'):
    return ['--function=evaluate', f'--variant={variant}', f'--pretrain_corpus_path={corpus}',
            f'--reading_params_path={params_path}', f'--eval_corpus_path={eval_path}',
            f'--outputs_path={outputs}']


def bad(src_copy, args, *needles):
    p = run_py(args, cwd=src_copy)
    assert_one_line_error(p, *needles)
    return p


def test_bad_function_and_variant(src_copy):
    bad(src_copy, ['--function=pretrian', '--variant=vanilla', *COURSE], 'pretrian', 'pretrain, finetune')
    bad(src_copy, ['--function=pretrain', '--variant=vanila', *COURSE,
                   '--writing_params_path=x.params'], 'vanila', 'vanilla, synthesizer, perceiver or rope')
    bad(src_copy, ['--function=pretrain', '--variant=vanilla', *COURSE, '--writing_params_path=x',
                   '--bogus=1'], 'unknown option --bogus')
    bad(src_copy, ['--function=pretrain', '--variant=vanilla', *COURSE, '--writing_params_path=x',
                   '--max_steps=ten'], '--max_steps')
    bad(src_copy, ['--function=pretrain', '--variant=vanilla', *COURSE, '--writing_params_path=x',
                   '--precision=fp8'], 'fp8')


def test_missing_unreadable_and_empty_corpus(src_copy, tmp_path):
    bad(src_copy, ['--function=pretrain', '--variant=vanilla', '--pretrain_corpus_path=nope.txt',
                   '--writing_params_path=x.params'], 'nope.txt', 'does not exist')
    empty = tmp_path / 'empty.txt'
    empty.write_text('')
    bad(src_copy, ['--function=pretrain', '--variant=vanilla', f'--pretrain_corpus_path={empty}',
                   '--writing_params_path=x.params'], 'empty')
    locked = tmp_path / 'locked.txt'
    locked.write_text('abc\n')
    if os.geteuid() != 0:  # root reads everything
        locked.chmod(0)
        bad(src_copy, ['--function=pretrain', '--variant=vanilla', f'--pretrain_corpus_path={locked}',
                       '--writing_params_path=x.params'], 'cannot be read')
    bad(src_copy, ['--function=pretrain', '--variant=vanilla', f'--pretrain_corpus_path={tmp_path}',
                   '--writing_params_path=x.params'], 'cannot be read')
    bad(src_copy, ['--function=finetune', '--variant=vanilla', *COURSE, '--writing_params_path=x.params',
                   f'--finetune_corpus_path={empty}'], 'empty')
    bad(src_copy, ['--function=finetune', '--variant=vanilla', *COURSE, '--writing_params_path=x.params',
                   '--finetune_corpus_path=missing.tsv'], 'missing.tsv')


def test_outputs_in_missing_directory_checked_before_training(src_copy, params):
    p = bad(src_copy, ['--function=finetune', '--variant=vanilla', *COURSE,
                       '--writing_params_path=no/such/dir/x.params',
                       '--finetune_corpus_path=data/birth_places_train.tsv'], 'no/such/dir', 'does not exist')
    assert 'number of parameters' not in p.stdout  # refused before any model was built
    bad(src_copy, eval_args(params['vanilla'], 'no/such/dir/out.txt'), 'does not exist')


def test_params_of_other_variant_or_vocabulary_or_not_a_checkpoint(src_copy, params, tmp_path):
    out = tmp_path / 'out.txt'
    out.write_text('keep me\n')
    bad(src_copy, eval_args(params['synthesizer'], out), 'synthesizer', '--variant=synthesizer')
    bad(src_copy, eval_args(params['vanilla'], out, variant='synthesizer'), 'vanilla')
    small = tmp_path / 'small.txt'
    small.write_text('abcdefghij\n' * 20)
    bad(src_copy, eval_args(params['vanilla'], out, corpus=small), 'vocabulary', '--pretrain_corpus_path')
    junk = tmp_path / 'junk.params'
    junk.write_bytes(b'this is not a checkpoint')
    bad(src_copy, eval_args(junk, out), 'not a params file')
    pickled = tmp_path / 'pickle.params'
    torch.save([1, 2, 3], pickled)
    bad(src_copy, eval_args(pickled, out), 'not a params file')
    state = torch.load(params['vanilla'])
    name = next(iter(state))
    diverged = tmp_path / 'diverged.params'
    torch.save({**state, name: state[name] * float('nan')}, diverged)
    bad(src_copy, eval_args(diverged, out), 'not finite', name, 'retrain')
    counts = tmp_path / 'counts.params'
    torch.save({k: v.long() for k, v in state.items()}, counts)
    bad(src_copy, eval_args(counts, out), 'torch.int64', 'not a model')
    assert out.read_text() == 'keep me\n'  # nothing already written was touched


def test_params_file_cannot_run_code(src_copy, tmp_path):
    marker = tmp_path / 'pwned'

    class Evil:
        def __reduce__(self):
            return (os.system, (f'touch {marker}',))

    path = tmp_path / 'evil.params'
    torch.save({'tok_emb.weight': Evil()}, path)
    bad(src_copy, eval_args(path, tmp_path / 'o.txt'), 'not a params file')
    assert not marker.exists()


def test_eval_file_with_unknown_characters(src_copy, params, tmp_path):
    lines = (src_copy / 'data' / 'birth_dev.tsv').read_text(encoding='utf-8').split('\n')[:5]
    lines[2] = 'Where was \u0416\u2603 born?\tParis'
    f = tmp_path / 'odd.tsv'
    f.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    out = tmp_path / 'odd.predictions'
    p = run_py(eval_args(params['vanilla'], out, eval_path=f), cwd=src_copy)
    assert p.returncode == 0, p.stderr
    assert 'warning: dropped characters' in p.stderr and '\u2603' in p.stderr
    assert len(out.read_text(encoding='utf-8').split('\n')) == 6  # still one prediction per line


def test_not_utf8_corpus(src_copy, tmp_path):
    f = tmp_path / 'latin1.txt'
    f.write_bytes('caf\xe9\n'.encode('latin-1'))
    bad(src_copy, ['--function=pretrain', '--variant=vanilla', f'--pretrain_corpus_path={f}',
                   '--writing_params_path=x.params'], 'not UTF-8')


def test_bad_finetune_lines(src_copy, tmp_path):
    f = tmp_path / 'bad.tsv'
    f.write_text('Where was A born?\tParis\nno tab here\n')
    bad(src_copy, ['--function=finetune', '--variant=vanilla', *COURSE, '--writing_params_path=x.params',
                   f'--finetune_corpus_path={f}'], 'line 2')


def gpu_full(tmp_path, *args, env=None):
    """bench/gpu_full.sh (and the pipeline it runs) beside the scratch src/, as bench/ is beside src/."""
    bench = tmp_path / 'bench'
    if not bench.exists():
        bench.mkdir()
        for name in ('gpu_full.sh', 'pipeline.py'):
            shutil.copy(os.path.join(ROOT, 'bench', name), bench / name)
    return run(['bash', str(bench / 'gpu_full.sh'), *args], tmp_path, env=env)


def test_gpu_full_sh_runs_the_whole_pipeline_on_a_cpu(src_copy, tmp_path):
    """bench/gpu_full.sh end to end, as its GPU session would run it but on a CPU with one step a
    training run, found by PATH's python3 (no PYTHON, no `python`): every step ends, the
    evaluations get only the options evaluation takes (run.py refuses --precision and --max_steps
    there), $OUT/gpu_full.tsv has a row per step, and every file goes to a run folder of its own,
    none to src/submission (where a leftover checkpoint is left alone)."""
    out, bin_dir = tmp_path / 'out', tmp_path / 'bin'
    out.mkdir(), bin_dir.mkdir()
    (bin_dir / 'python3').write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / 'python3').chmod(0o755)
    (src_copy / 'submission' / 'vanilla.pretrain.params.ckpt').write_bytes(b'a leftover')
    before = sorted(os.listdir(src_copy / 'submission'))
    p = gpu_full(tmp_path, 'vanilla', '--', '--device=cpu', '--max_steps=1', '--precision=fp32',
                 env={'OUT': str(out), 'PYTHON': '', 'PATH': f'{bin_dir}:/usr/bin:/bin'})
    assert p.returncode == 0 and 'error:' not in p.stdout + p.stderr, p.stderr[-2000:]
    rows = [line.split('\t') for line in (out / 'gpu_full.tsv').read_text().splitlines()]
    assert rows[0] == ['label', 'variant', 'stage', 'seconds', 'result', 'device']
    assert [r[2] for r in rows[1:]] == [
        'finetune_without_pretrain', 'eval_dev_without_pretrain', 'eval_test_without_pretrain',
        'pretrain', 'finetune_with_pretrain', 'eval_dev_with_pretrain', 'eval_test_with_pretrain']
    for label, variant, stage, seconds, result, device in rows[1:]:
        assert (label, variant) == ('gpu_full', 'vanilla') and float(seconds) > 0 and device.startswith('cpu (')
        if stage.startswith('eval_dev'):
            assert result.startswith('Correct:')
        elif stage.startswith('eval_test'):
            assert 'no targets' in result
        else:
            assert result.startswith('1 step, ') and 'course tokens/s' in result and 'peak' in result
    assert 'total:' in p.stdout
    assert sorted(os.listdir(src_copy / 'submission')) == before
    assert (src_copy / 'submission' / 'vanilla.pretrain.params.ckpt').read_bytes() == b'a leftover'
    [folder] = os.listdir(tmp_path / 'runs' / 'gpu_full')
    made = os.listdir(tmp_path / 'runs' / 'gpu_full' / folder / 'vanilla')
    assert {'vanilla.model.params', 'vanilla.pretrain.params', 'vanilla.finetune.params',
            'vanilla.pretrain.dev.predictions', 'vanilla.pretrain.test.predictions'} <= set(made)


def test_gpu_full_sh_fails_with_a_failed_step_and_refuses_without_a_gpu(src_copy, tmp_path):
    """A step that fails ends the script with its status and leaves no row for itself; without a
    CUDA GPU the script refuses in one line, before any step, unless told --device=cpu."""
    if not torch.cuda.is_available():
        p = gpu_full(tmp_path, 'vanilla', '--', '--max_steps=1')
        assert_one_line_error(p, 'no CUDA GPU', '--device=cpu')
        assert not (tmp_path / 'runs').exists()
    test_inputs = src_copy / 'data' / 'birth_test_inputs.tsv'  # the third step reads it
    test_inputs.unlink()
    test_inputs.write_text('Where was a born?\nWhere\twas\tb born?\n', encoding='utf-8')
    out = tmp_path / 'out'
    out.mkdir()
    p = gpu_full(tmp_path, 'vanilla', '--', '--device=cpu', '--max_steps=1', env={'OUT': str(out)})
    assert p.returncode == 2, p.stdout[-2000:]
    assert 'line 2 has more than one tab' in p.stderr
    rows = (out / 'gpu_full.tsv').read_text().splitlines()
    assert [r.split('\t')[2] for r in rows[1:]] == ['finetune_without_pretrain', 'eval_dev_without_pretrain']


# ---------------------------------------------------------------- bench/recall.py, the probe of pretraining

def recall_module():
    sys.path.insert(0, os.path.join(ROOT, 'bench'))
    import recall
    return recall


def test_recall_masks_the_birthplace_after_the_name_and_reads_the_fill_until_pad():
    recall = recall_module()
    mask, pad = recall.MASK_CHAR, recall.PAD_CHAR
    doc = 'Lima Cruz. Lima Cruz was born in Lima, Peru, and sang.'
    assert recall.masked_prompt(doc, 'Lima Cruz', 'Lima', 112) == \
        f'Lima Cruz. Lima Cruz was born in {mask}, Peru, and sang.{mask}'
    assert recall.masked_prompt(doc, 'Lima Cruz', 'Lima', 36) is None  # ends past what pretraining shows
    # --tail: the window a --salient_tail recipe shows, at most N characters past the place.
    assert recall.masked_prompt(doc, 'Lima Cruz', 'Lima', 112, tail=6) == f'Lima Cruz. Lima Cruz was born in {mask}, Peru{mask}'
    assert recall.masked_prompt(doc, 'Lima Cruz', 'Lima', 112, tail=0) == f'Lima Cruz. Lima Cruz was born in {mask}{mask}'
    assert recall.masked_prompt(doc, 'Lima Cruz', 'Lima', 40, tail=30) == f'Lima Cruz. Lima Cruz was born in {mask}, P{mask}'
    assert recall.masked_prompt(doc, 'Ann Lee', 'Lima', 112) is None
    itos = [pad, mask, ' ', 'L', 'i', 'm', 'a', ',']
    stoi = {c: i for i, c in enumerate(itos)}

    class Scripted(torch.nn.Module):
        """Writes ' Lima' then PAD, whatever it is shown."""
        def get_block_size(self):
            return 8

        def forward(self, x):
            written = x.shape[1] - self.start
            logits = torch.zeros(1, x.shape[1], len(itos))
            logits[0, -1, stoi[(' Lima' + pad)[written]]] = 1
            return logits, None

    model = Scripted()
    model.start = 3
    assert recall.fill_in(model, 'Li' + mask, stoi, itos, 'cpu', most=20) == ' Lima'
    model.start = 3
    assert recall.fill_in(model, 'Li' + mask, stoi, itos, 'cpu', most=2) == ' L'


def test_recall_scores_each_birthplace_character_given_the_ones_before_it():
    recall = recall_module()
    itos = [recall.PAD_CHAR, recall.MASK_CHAR, ' ', 'L', 'i', 'm', 'a']
    stoi = {c: i for i, c in enumerate(itos)}
    seen = []

    class Knows(torch.nn.Module):
        """Sure of 'Lima' after the prompt (logit 50 on each next character), uniform before it."""
        def forward(self, x):
            seen.append(x.tolist())
            logits = torch.zeros(1, x.shape[1], len(itos))
            for t, c in enumerate('Lima'):
                logits[0, x.shape[1] - 4 + t, stoi[c]] = 50
            return logits, None

    nats, n = recall.surprise(Knows(), 'Li' + recall.MASK_CHAR, 'Lima', stoi, 'cpu')
    assert n == 4 and nats < 1e-6
    assert seen[-1] == [[stoi[c] for c in 'Li' + recall.MASK_CHAR + 'Lim']]  # the last character is not input

    class KnowsNothing(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(1, x.shape[1], len(itos)), None

    nats, n = recall.surprise(KnowsNothing(), 'Li' + recall.MASK_CHAR, 'Lima', stoi, 'cpu')
    assert n == 4 and abs(nats - 4 * math.log(len(itos))) < 1e-5


def test_recall_probes_every_dev_person_of_the_world_and_refuses_bad_files_in_one_line(world_data, params, tmp_path):
    script = os.path.join(ROOT, 'bench', 'recall.py')
    files = [f'--corpus={world_data}/wiki.txt', f'--questions={world_data}/birth_dev.tsv', '--threads=1']
    p = run([sys.executable, script, 'vanilla', str(params['vanilla']), *files, '--examples=2'], tmp_path)
    assert p.returncode == 0, p.stderr
    n_dev = len(lines_of(world_data, 'birth_dev.tsv'))
    last = p.stdout.strip().split('\n')[-1]
    # Every world biography names the city in its first sentence, after the person.
    assert f' of {n_dev} masked birthplaces' in last and f'(0 of {n_dev} questions had none' in last, last
    assert int(last.split()[1]) <= n_dev and p.stdout.count('(answer: ') == 2
    p = run([sys.executable, script, 'vanilla', str(params['vanilla']), *files, '--tail=4', '--examples=1'], tmp_path)
    assert p.returncode == 0, p.stderr
    shown = next(line for line in p.stdout.split('\n') if '(answer: ' in line).split(' -> ')[0]
    assert shown.endswith(recall_module().MASK_CHAR + "'") and len(shown.split(recall_module().MASK_CHAR)[1]) <= 4, shown
    assert p.stdout.strip().endswith(f'(0 of {n_dev} questions had none within 112 characters of a biography; '
                                     'each cut 4 characters after its birthplace)'), p.stdout
    assert_one_line_error(run([sys.executable, script, 'vanilla', str(params['vanilla']), *files, '--tail=-1'],
                              tmp_path), '--tail=-1')
    p = run([sys.executable, script, 'synthesizer', str(params['vanilla']), *files], tmp_path)
    assert_one_line_error(p, 'vanilla', '--variant=vanilla')
    questions = tmp_path / 'questions.tsv'
    questions.write_text('Where was A born?\n', encoding='utf-8')
    p = run([sys.executable, script, 'vanilla', str(params['vanilla']), f'--corpus={world_data}/wiki.txt',
             f'--questions={questions}'], tmp_path)
    assert_one_line_error(p, 'Where was X born?<TAB>place')
    p = run([sys.executable, script, 'vanilla', str(tmp_path / 'none.params'), *files], tmp_path)
    assert_one_line_error(p, 'does not exist')


def test_every_option_is_declared_once_and_documented():
    """run.py's usage text and options.OPTIONS name the same options, each an Options field."""
    import re
    import dataclasses
    import run
    from submission.lib import options
    documented = set(re.findall(r'^ +(--\w+)', run.__doc__, re.M)) - {'--function', '--help'}
    declared = [o.name for o in options.OPTIONS]
    assert sorted(declared) == sorted(documented) and len(set(declared)) == len(declared)
    fields = {f.name for f in dataclasses.fields(options.Options)}
    assert {name[2:] for name in declared} <= fields


# ---------------------------------------------------------------- bench/validation.py, the validation split

def test_validation_holds_out_training_people_finetunes_on_the_rest_and_scores_them(world_data, params, tmp_path):
    script = os.path.join(ROOT, 'bench', 'validation.py')
    out = tmp_path / 'val'
    given = [f'--corpus={world_data}/wiki.txt', f'--train={world_data}/birth_places_train.tsv', '--threads=1']
    p = run([sys.executable, script, 'vanilla', str(params['vanilla']), '--out', str(out), '--held_out=20', *given,
             '--', '--max_steps=2'], tmp_path)
    assert p.returncode == 0, p.stderr
    train = lines_of(world_data, 'birth_places_train.tsv')
    held, kept = lines_of(out, 'held_out.tsv'), lines_of(out, 'train_split.tsv')
    assert len(held) == 20 and len(kept) == len(train) - 20
    assert sorted(held + kept) == sorted(train) and not set(held) & set(kept)
    assert [line for line in train if line in held] == held  # each side in the file's order
    figures = json.loads((out / 'validation.json').read_text())
    predictions = (out / 'held_out.predictions').read_text().split('\n')
    answers = [line.split('\t')[1] for line in held]
    assert figures['correct'] == sum(a == b for a, b in zip(predictions, answers))
    assert figures['held_out'] == 20 and 0 < figures['probed'] <= 20 and figures['finetune_options'] == ['--max_steps=2']
    assert p.stdout.strip().splitlines()[-1] == (
        f'validation (vanilla, split seed 0): recalled {figures["recalled"]} of {figures["probed"]} held-out '
        f'birthplaces ({100 * figures["recalled"] / figures["probed"]:.1f} %, {figures["nats_per_char"]:.3f} nats a '
        f'character); answered {figures["correct"]} of 20 '
        f'held-out questions = {100 * figures["correct"] / 20:.1f} % after the course\'s finetune on the other '
        f'{len(kept)}')
    # The finetune saw the kept people only: its log names the split's file.
    assert str(out / 'train_split.tsv') in p.stdout
    # The same seed, the same split; another seed, another.
    sys.path.insert(0, os.path.join(ROOT, 'bench'))
    import validation
    assert validation.split(train, 20, 0)[1] == held
    assert validation.split(train, 20, 1)[1] != held


def test_validation_refuses_bad_inputs_in_one_line_and_leaves_nothing(world_data, params, tmp_path):
    script = os.path.join(ROOT, 'bench', 'validation.py')
    given = [f'--corpus={world_data}/wiki.txt', f'--train={world_data}/birth_places_train.tsv', '--threads=1']
    n = len(lines_of(world_data, 'birth_places_train.tsv'))
    out = tmp_path / 'val'
    call = lambda *args: run([sys.executable, script, *args], tmp_path)
    for held in ('0', str(n), 'x'):
        assert_one_line_error(call('vanilla', str(params['vanilla']), '--out', str(out), f'--held_out={held}', *given),
                              '--held_out')
    given.append('--held_out=5')
    assert_one_line_error(call('vanilla', str(params['vanilla']), '--out', str(out), *given, '--', '--bogus=1'),
                          'the finetune would refuse its options', '--bogus')
    assert_one_line_error(call('vanilla', str(tmp_path / 'none.params'), '--out', str(out), *given), 'does not exist')
    assert_one_line_error(call('vanilla', str(params['vanilla']), '--out', str(out), given[0], given[-1],
                               f'--train={world_data}/birth_test_inputs.tsv'), 'is not a "Where was X born?<TAB>place"')
    # A failure after the split was written (the synthesizer cannot load vanilla's params) removes it.
    assert_one_line_error(call('synthesizer', str(params['vanilla']), '--out', str(out), *given))
    assert not out.exists()
    out.mkdir()
    (out / 'keep.txt').write_text('mine')
    assert_one_line_error(call('vanilla', str(params['vanilla']), '--out', str(out), *given), 'not a new or empty folder')
    assert (out / 'keep.txt').read_text() == 'mine'


# ---------------------------------------------------------------- bench/candidates.py, recipes on the split

def test_candidates_pretrain_each_on_the_split_skip_what_is_done_and_refuse_bad_ones(world_data, tmp_path):
    script = os.path.join(ROOT, 'bench', 'candidates.py')
    out = tmp_path / 'sweep'
    given = [f'--corpus={world_data}/wiki.txt', f'--train={world_data}/birth_places_train.tsv', '--held_out=20',
             '--threads=1', '--epochs=1', '--base=--max_steps=1 --batch_size=8']
    sweep = [sys.executable, script, 'vanilla', '--out', str(out), *given]
    p = run([*sweep, 'plain=', 'questions=--pretrain_questions={train_split} --batch_size=4'], tmp_path)
    assert p.returncode == 0, p.stderr
    rows = lines_of(out, 'candidates.tsv')
    assert [r.split('\t')[:2] for r in rows] == [['name', 'epochs'], ['plain', '1'], ['questions', '1']]
    # The questions pretrained on are the split's finetuning people, never the held-out ones.
    held = lines_of(out / 'questions.e1.params.validation', 'held_out.tsv')
    kept = lines_of(out / 'split', 'train_split.tsv')
    assert not set(held) & set(kept) and len(held) + len(kept) == len(lines_of(world_data, 'birth_places_train.tsv'))
    log = (out / 'questions.e1.params.log.jsonl').read_text().splitlines()[0]
    assert json.loads(log)['settings']['pretrain_questions'] == 'train_split.tsv'
    assert json.loads(log)['settings']['batch_size'] == 4  # a candidate's own option replaces the base's
    for row in rows[1:]:
        name, _, _, loss, recalled, probed, nats, correct, held_out, _ = row.split('\t')
        figures = json.loads((out / f'{name}.e1.params.validation' / 'validation.json').read_text())
        assert (int(recalled), int(correct), float(nats)) == (figures['recalled'], figures['correct'],
                                                             figures['nats_per_char'])
        assert held_out == '20' and float(nats) > 0 and float(loss) > 0
    assert (out / 'candidates.md').read_text() in p.stdout
    # A rerun finds every row done: nothing trained again.
    p = run([*sweep, 'plain=', 'questions=--pretrain_questions={train_split} --batch_size=4'], tmp_path)
    assert p.returncode == 0 and '== plain' not in p.stdout and lines_of(out, 'candidates.tsv') == rows
    p = run([*sweep, 'bad=--salient_spans=2'], tmp_path)
    assert_one_line_error(p, 'candidate bad', '--salient_spans')
    p = run([*sweep, 'a=', 'a=--dropout=0'], tmp_path)
    assert_one_line_error(p, 'share a name')
    p = run([*sweep, '=--dropout=0'], tmp_path)
    assert_one_line_error(p, 'NAME=OPTIONS')


def stopped_by_sigterm(command, cwd, log):
    """`command` started and sent SIGTERM once `log` has its second training step; the finished process."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED='1'))
    while not (log.exists() and '"step": 2,' in log.read_text()):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def running(path):
    """The processes whose command line names `path`."""
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if str(path).encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def test_a_sweep_stopped_by_sigterm_checkpoints_its_training_and_removes_its_validation(world_data, params, tmp_path):
    given = [f'--corpus={world_data}/wiki.txt', f'--train={world_data}/birth_places_train.tsv', '--held_out=20',
             '--threads=1']
    # The validation's finetune stopped: the script and its run.py end, and every file it wrote goes.
    out = tmp_path / 'val'
    p = stopped_by_sigterm([sys.executable, os.path.join(ROOT, 'bench', 'validation.py'), 'vanilla',
                            str(params['vanilla']), '--out', str(out), *given, '--', '--max_steps=2000'],
                           tmp_path, out / 'vanilla.finetune.params.log.jsonl')
    assert_one_line_error(p, 'interrupted', 'removed')
    assert not out.exists() and not running(out)
    # A candidate's pretraining stopped: it checkpoints, and the same command resumes it.
    out = tmp_path / 'sweep'
    sweep = [sys.executable, os.path.join(ROOT, 'bench', 'candidates.py'), 'vanilla', '--out', str(out), *given,
             '--epochs=1', '--base=--max_steps=60 --batch_size=8', 'plain=']
    p = stopped_by_sigterm(sweep, tmp_path, out / 'plain.e1.params.log.jsonl')
    assert_one_line_error(p, 'interrupted', 'rerun the same command')
    assert (out / 'plain.e1.params.ckpt').exists() and not running(out)
    p = run(sweep, tmp_path)
    assert p.returncode == 0, p.stderr
    assert 'resuming' in p.stdout and not (out / 'plain.e1.params.ckpt').exists()
    assert lines_of(out, 'candidates.tsv')[1].split('\t')[:2] == ['plain', '1']


def test_a_ladder_stopped_by_sigterm_checkpoints_its_pretraining_and_the_same_command_resumes_it(src_copy, tmp_path):
    """bench/cpu_ladder.py (and the pipeline it runs) beside a scratch src/: SIGTERM reaches the
    run.py under way, which checkpoints; the ladder ends with one line, leaves no process behind,
    and the same command resumes the pretraining and finishes the budget."""
    bench = tmp_path / 'bench'
    bench.mkdir()
    for name in ('cpu_ladder.py', 'pipeline.py'):
        shutil.copy(os.path.join(ROOT, 'bench', name), bench / name)
    out = tmp_path / 'ladder'
    ladder = [sys.executable, str(bench / 'cpu_ladder.py'), 'vanilla', '5', f'--out={out}', '--',
              '--max_steps=60', '--threads=1']
    p = stopped_by_sigterm(ladder, tmp_path, out / 'vanilla-N5-seed0' / 'vanilla.pretrain.params.log.jsonl')
    assert_one_line_error(p, 'interrupted', 'rerun the same command')
    assert (out / 'vanilla-N5-seed0' / 'vanilla.pretrain.params.ckpt').exists() and not running(out)
    p = run(ladder, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert 'resuming' in p.stdout and not (out / 'vanilla-N5-seed0' / 'vanilla.pretrain.params.ckpt').exists()
    assert lines_of(out, 'ladder.tsv')[1].split('\t')[:2] == ['vanilla', '5']


@pytest.mark.skipif(not sys.platform.startswith('linux') or platform.libc_ver()[0] != 'glibc',
                    reason="run.py's allocator setting is glibc's (mallopt); other C libraries keep their own")
def test_run_py_keeps_freed_memory_for_the_next_allocation():
    """run.py's process keeps what it frees: a 48 MB tensor made after a 64 MB one was freed
    faults no page in (glibc by default unmaps the 64 MB and faults the 48 MB's 12,288 pages in).
    Smaller than the first, so that it fits the freed block whatever lies after it in the heap."""
    code = ('import resource, sys, torch\n'
            'sys.path.insert(0, "src")\n'
            'if sys.argv[1] == "keep":\n'
            '    import run; run.keep_freed_memory()\n'
            'def faults(n):\n'
            '    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n'
            '    torch.ones(n)\n'
            '    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before\n'
            'faults(16 * 2 ** 20)\n'
            'print(faults(12 * 2 ** 20))\n')
    faults = {how: int(subprocess.run([sys.executable, '-c', code, how], cwd=ROOT, capture_output=True,
                                      text=True, check=True).stdout) for how in ('default', 'keep')}
    assert faults['default'] > 10000 and faults['keep'] < 100, faults
