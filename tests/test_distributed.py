"""torch.distributed on CPU with gloo and 2 processes, launched by torchrun as users would."""
import os
import sys

import pytest
import torch

from conftest import HERE, lines_of, run
from submission import GPT, GPTConfig

TORCHRUN = [sys.executable, '-m', 'torch.distributed.run', '--standalone']


def world_files(world_data):
    return [os.path.join(world_data, 'wiki.txt'), os.path.join(world_data, 'birth_places_train.tsv')]


@pytest.mark.parametrize('mode', ['exact', 'fast'])
def test_two_ranks_of_8_equal_one_rank_of_16(tmp_path, mode, world_data):
    """Two optimizer steps: 2 ranks x 8 examples give the parameters of 1 rank x 16.
    In fast mode the ranks pack different numbers of targets, which the loss weighting must absorb."""
    args = [os.path.join(HERE, 'ddp_driver.py'), None, *world_files(world_data), mode]
    one, two = tmp_path / 'one.params', tmp_path / 'two.params'
    p = run([sys.executable] + [a if a else str(one) for a in args], tmp_path)
    assert p.returncode == 0, p.stderr
    p = run(TORCHRUN + ['--nproc_per_node=2'] + [a if a else str(two) for a in args], tmp_path)
    assert p.returncode == 0, p.stderr
    a, b = torch.load(one, weights_only=True), torch.load(two, weights_only=True)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    torch.manual_seed(0)  # the driver's initial weights: training did move them
    init = GPT(GPTConfig(a['tok_emb.weight'].shape[0], 128, n_layer=2, n_head=4, n_embd=64))
    assert (init.head.weight - a['head.weight']).abs().max() > 1e-3


def test_run_sh_under_torchrun_finetunes_and_evaluates_like_one_process(src_copy, world_data):
    sub = src_copy / 'submission'
    p = run(['./run.sh', 'vanilla_finetune_without_pretrain', '--max_steps=1'], src_copy, env={'NPROC': '2'})
    assert p.returncode == 0, p.stderr
    assert (sub / 'vanilla.model.params').exists()
    assert p.stdout.count('wrote ') == 1  # only rank 0 writes
    p = run(['./run.sh', 'vanilla_eval_dev_without_pretrain'], src_copy, env={'NPROC': '2'})
    assert p.returncode == 0, p.stderr
    two = (sub / 'vanilla.nopretrain.dev.predictions').read_text(encoding='utf-8')
    assert p.stdout.count('Correct: ') == 1
    p = run(['./run.sh', 'vanilla_eval_dev_without_pretrain'], src_copy)
    assert p.returncode == 0, p.stderr
    one = (sub / 'vanilla.nopretrain.dev.predictions').read_text(encoding='utf-8')
    assert one == two and len(one.split('\n')) == len(lines_of(world_data, 'birth_dev.tsv')) + 1


def test_batch_that_does_not_divide_over_ranks_is_refused(src_copy):
    p = run(['./run.sh', 'vanilla_finetune_without_pretrain', '--max_steps=1'], src_copy, env={'NPROC': '3'})
    assert p.returncode != 0
    assert 'batch_size 256 does not divide over 3 processes' in p.stderr
    assert not (src_copy / 'submission' / 'vanilla.model.params').exists()


def test_checkpoint_from_two_ranks_resumes_on_one(tmp_path, world_data):
    """Interrupt a 2-rank run mid-epoch, resume it in one process: it ends where an
    uninterrupted one-process run ends (dropout off, so only the math matters)."""
    driver = os.path.join(HERE, 'ddp_driver.py')
    common = [*world_files(world_data), 'exact', '10']
    ref, cut = tmp_path / 'ref.params', tmp_path / 'cut.params'
    p = run([sys.executable, driver, str(ref)] + common, tmp_path)
    assert p.returncode == 0, p.stderr
    p = run(TORCHRUN + ['--nproc_per_node=2', driver, str(cut)] + common + ['interrupt_at=3'], tmp_path)
    assert p.returncode != 0 and 'checkpoint saved to' in p.stderr, p.stderr
    ckpt = torch.load(str(cut) + '.ckpt', weights_only=True)
    assert 3 <= ckpt['step'] < 10 and len(ckpt['rng']) == 2
    p = run([sys.executable, driver, str(cut)] + common + ['resume'], tmp_path)
    assert p.returncode == 0, p.stderr
    assert 'resuming from' in p.stdout
    a, b = torch.load(ref, weights_only=True), torch.load(cut, weights_only=True)
    for k in a:
        # Adam's normalised steps magnify last-bit differences of the 2-rank sum over 10 steps.
        assert torch.allclose(a[k], b[k], atol=1e-4), (k, (a[k] - b[k]).abs().max())
