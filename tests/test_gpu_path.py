"""The GPU path, checked on a CPU: what the code decides on a GPU machine, with torch.cuda's
answers faked, and the GPU's own computations (fp16, the fused attention) forced onto the CPU.

(tests/test_fast.py checks the fused attention against the course formula; tests/test_cli.py
runs bench/gpu_full.sh.)"""
import os
import random
import subprocess
import sys

import pytest
import torch
import torch.nn.parallel as nn_parallel

from conftest import assert_one_line_error, read, run, run_py
from submission import helper
from submission.lib import checkpoint, distributed, options
from tools import demo
from submission.dataset import CharCorruptionDataset
from submission.lib.files import UsageError
from submission.model import GPT, GPTConfig
from submission.lib.options import Options
from submission.trainer import Trainer, TrainerConfig


@pytest.fixture
def fake_gpus(monkeypatch):
    """torch.cuda answering as a machine with `count` GPUs of compute capability `capability`."""
    def fake(count=1, capability=(8, 0), name='NVIDIA Fake'):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
        monkeypatch.setattr(torch.cuda, 'device_count', lambda: count)
        monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **kw: True)  # emulation counts here
        monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: name)
    return fake


@pytest.fixture
def world_pre(world_data):
    return CharCorruptionDataset(read(world_data, 'wiki.txt'), 128)


def tiny(world_pre, **kw):
    return GPT(GPTConfig(world_pre.vocab_size, 128, n_layer=1, n_head=2, n_embd=16, exact=False, **kw))


# ---------------------------------------------------------------- precision

@pytest.mark.parametrize('capability', [(9, 0), (8, 0), (7, 5), (6, 1)])
def test_auto_precision_on_gpus(fake_gpus, monkeypatch, capability):
    """fp32 on every GPU, measured: on an H200 bf16's whole step was no faster and bf16 diverged at
    the course's settings; the line says why, by compute capability. bf16 asked for is given."""
    fake_gpus(capability=capability)
    monkeypatch.setattr(options, 'bf16_matmul_gain', lambda device: 4.0)
    precision, why = options.precision_for('auto', 'cuda', exact=False)
    assert precision == 'fp32'
    assert why == (options.GPU_FP32 if capability >= (8, 0) else
                   f'auto: compute capability {capability[0]}.{capability[1]} has no native bf16 (8.0 and later)')
    assert options.precision_for('auto', 'cuda', exact=True) == ('fp32', '')
    assert options.precision_for('bf16', 'cuda', exact=False) == ('bf16', '')  # asked for: given
    assert options.precision_for('fp16', 'cuda', exact=False) == ('fp16', '')


@pytest.mark.parametrize('flags, gain, chosen', [
    (['avx2', 'avx512f', 'avx512_bf16', 'amx_bf16'], 9.0, 'bf16'),  # AMX
    (['avx2', 'avx512f', 'avx512_bf16'], 2.3, 'bf16'),  # AVX512-BF16 that pays (a Zen 4 EPYC)
    (['avx2', 'avx512f', 'avx512_bf16'], 0.8, 'fp32'),  # AVX512-BF16 that does not
    (['avx2'], 1.0, 'fp32'),  # emulated bf16: never measured
])
def test_auto_precision_on_cpus(monkeypatch, flags, gain, chosen):
    measured = []
    monkeypatch.setattr(options, 'cpu_flags', lambda: flags)
    monkeypatch.setattr(options, 'bf16_matmul_gain', lambda device: measured.append(device) or gain)
    precision, why = options.precision_for('auto', 'cpu', exact=False)
    assert precision == chosen
    assert why == ('auto: this CPU has no native bf16 (AVX512-BF16 or AMX)' if 'avx512_bf16' not in flags else
                   f'auto: bf16 matmuls ran {"only " * (chosen == "fp32")}{gain:.1f}x as fast as fp32 here')
    assert measured == ([] if 'avx512_bf16' not in flags else ['cpu'])
    assert options.precision_for('auto', 'cpu', exact=True) == ('fp32', '')


def test_auto_precision_under_several_processes_is_fp32(monkeypatch):
    monkeypatch.setattr(options, 'cpu_flags', lambda: ['avx512_bf16', 'amx_bf16'])
    monkeypatch.setattr(options, 'bf16_matmul_gain', lambda device: 9.0)
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '2')
    assert options.precision_for('auto', 'cpu', exact=False)[0] == 'fp32'


def test_the_bf16_gain_is_measured_on_this_machine():
    gain = options.bf16_matmul_gain('cpu', repeats=1)
    assert gain > 0 and gain == gain


def test_reduced_precision_warns_in_one_line_and_says_when_the_cpu_emulates_bf16(monkeypatch, capsys):
    for precision, native, emulated in (('bf16', True, False), ('bf16', False, True), ('fp16', False, False)):
        monkeypatch.setattr(options, 'cpu_has_native_bf16', lambda: native)
        assert options.precision_for(precision, 'cpu', exact=False) == (precision, '')
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f'warning: --precision={precision} is not the course') \
            and '--precision=fp32' in err[0]
        assert ('emulated' in err[0]) == emulated
    monkeypatch.setattr(options, 'bf16_matmul_gain', lambda device: 2.0)
    options.precision_for('fp32', 'cpu', exact=False)
    options.precision_for('auto', 'cpu', exact=False)
    assert capsys.readouterr().err == ''


def test_fp16_trains_through_the_command_line(world_data, tmp_path):
    """fp16 autocast with its gradient scaler (the -1e10 mask fill overflowed fp16 before)."""
    params = tmp_path / 'p.params'
    p = run_py(['--function=pretrain', '--variant=synthesizer', f'--pretrain_corpus_path={world_data}/wiki.txt',
                f'--writing_params_path={params}', '--precision=fp16', '--max_steps=2', '--threads=1'])
    assert p.returncode == 0, p.stderr
    assert ', fp16, torch ' in p.stdout
    state = torch.load(params, weights_only=True)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


# ---------------------------------------------------------------- older torch

def test_fp32_training_takes_no_autocast_and_no_amp_scaler(world_pre, monkeypatch):
    """In fp32 the step opens no autocast context (torch < 2.5 refuses even a disabled one on
    MPS) and needs no torch.amp.GradScaler (torch < 2.3 has none)."""
    def refuse(*a, **kw):
        raise AssertionError('autocast entered in fp32')
    monkeypatch.setattr(torch, 'autocast', refuse)
    monkeypatch.delattr(torch.amp, 'GradScaler', raising=False)
    model = tiny(world_pre)
    trainer = Trainer(model, world_pre, None, TrainerConfig(max_epochs=1, batch_size=16, learning_rate=1e-3),
                      Options(exact=False, device='cpu', precision='fp32', max_steps=2, progress=False))
    trainer.train()
    assert trainer.state.step == 2 and trainer.final_loss == trainer.final_loss  # not NaN


# ---------------------------------------------------------------- where it runs

def test_every_run_says_where_it_runs(world_data, params, tmp_path):
    common = [f'--pretrain_corpus_path={world_data}/wiki.txt', '--variant=vanilla', '--threads=1']
    runs = [
        ['--function=pretrain', f'--writing_params_path={tmp_path / "a.params"}', '--max_steps=1',
         '--precision=fp32'],
        ['--function=finetune', f'--writing_params_path={tmp_path / "b.params"}', '--max_steps=1',
         f'--finetune_corpus_path={world_data}/birth_places_train.tsv'],
        ['--function=evaluate', f'--reading_params_path={params["vanilla"]}',
         f'--eval_corpus_path={world_data}/birth_dev.tsv', f'--outputs_path={tmp_path / "o.txt"}'],
    ]
    for args in runs:
        p = run_py(args + common)
        assert p.returncode == 0, p.stderr
        first = p.stdout.splitlines()[0]
        assert first.startswith('running on cpu (') and ', 1 thread), ' in first, first
        assert f', torch {torch.__version__}' in first
        # auto (the finetune) says why it chose; a precision named, and evaluation's fp32, need no reason.
        assert ('; auto: ' in first) == args[0].endswith('finetune'), first
    assert ', fp32, ' in first  # evaluation computes in fp32


def test_the_line_names_the_gpu_and_a_cuda_build_that_finds_none(fake_gpus, monkeypatch):
    fake_gpus(name='NVIDIA H200')
    line = options.where_it_runs(Options(device='cuda:0', precision='bf16'))
    assert line.startswith('running on cuda:0 (NVIDIA H200), ') and ', bf16, torch ' in line
    why = 'auto: bf16 matmuls ran 3.1x as fast as fp32 here'
    assert options.where_it_runs(Options(device='cuda:0', precision='bf16', precision_why=why)).endswith(f'; {why}')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.version, 'cuda', '12.4')
    line = options.where_it_runs(Options(device='cpu', precision='fp32'))
    assert 'built for CUDA 12.4 but finds no GPU' in line and 'nvidia-smi' in line


# ---------------------------------------------------------------- the device of the model

def test_models_are_built_where_the_options_say(world_pre, monkeypatch):
    """helper's default device (the GPU when there is one) is for the course's own calls; a config
    that names its device (run.py passes --device) is built there."""
    monkeypatch.setattr(helper, 'device', 'meta')
    conf = dict(n_layer=1, n_head=2, n_embd=16)
    for build in (helper.initialize_vanilla_model, helper.initialize_synthesizer_model,
                  helper.initialize_rope_model):
        model = build(GPTConfig(world_pre.vocab_size, 128, device='cpu', **conf))
        assert {p.device.type for p in model.parameters()} == {'cpu'}
        assert {p.device.type for p in build(GPTConfig(world_pre.vocab_size, 128, **conf)).parameters()} == {'meta'}


# ---------------------------------------------------------------- torchrun

def test_torchrun_gives_every_process_its_own_gpu(fake_gpus, monkeypatch):
    fake_gpus(count=2)
    monkeypatch.setenv('RANK', '1'), monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('LOCAL_RANK', '1'), monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')
    assert options.device_named(None) == 'cuda:1' and options.device_named('cuda') == 'cuda:1'
    with pytest.raises(UsageError, match='would put every process on one GPU'):
        options.device_named('cuda:0')
    monkeypatch.setenv('LOCAL_RANK', '2'), monkeypatch.setenv('LOCAL_WORLD_SIZE', '3')
    with pytest.raises(UsageError, match=r'3 processes on this machine, which has 2 GPU\(s\).*NPROC=2'):
        options.device_named(None)
    assert options.device_named('cpu') == 'cpu'


def test_nproc_checks_everything_in_one_process_first(src_copy):
    """NPROC=2 with a bad input: one error line, not one a process and torchrun's report."""
    p = run(['./run.sh', 'vanilla_pretrain', '--max_steps=0'], src_copy, env={'NPROC': '2'})
    assert_one_line_error(p, '--max_steps=0')
    assert 'ChildFailedError' not in p.stderr and 'torch.distributed' not in p.stderr


def test_ddp_does_not_broadcast_the_constant_buffers(world_pre, monkeypatch):
    made = {}

    class FakeDDP(torch.nn.Module):
        def __init__(self, module, **kw):
            super().__init__()
            self.module = module
            made.update(kw)
    monkeypatch.setattr(nn_parallel, 'DistributedDataParallel', FakeDDP)
    monkeypatch.setattr(distributed, 'world_size', lambda: 2)
    trainer = Trainer(tiny(world_pre), world_pre, None, TrainerConfig(batch_size=16),
                      Options(exact=False, device='cpu', precision='fp32'))
    trainer.set_up()
    assert made == {'device_ids': None, 'broadcast_buffers': False}


# ---------------------------------------------------------------- resuming elsewhere

def test_a_checkpoint_from_a_machine_with_more_gpus_restores_what_fits(fake_gpus, monkeypatch, capsys):
    fake_gpus(count=1)
    restored = []
    monkeypatch.setattr(torch.cuda, 'set_rng_state', lambda state, device='cuda': restored.append(device))
    state = {'python': random.getstate(), 'torch': torch.get_rng_state(),
             'cuda': [torch.zeros(16, dtype=torch.uint8)] * 4}
    checkpoint.set_rng_state(state)
    assert restored == [0]
    assert 'random state of 4 GPUs, this machine has 1: restored the first 1' in capsys.readouterr().out


# ---------------------------------------------------------------- TF32

def test_tf32_on_gpus_for_the_fast_path_only_and_bf16_attention_on_the_math_kernel():
    """In bf16 with a mask, scaled_dot_product_attention's fused kernels (cuDNN's, and the
    memory-efficient one once cuDNN's is off) made vanilla's pretraining diverge on an H100
    where the math kernel follows fp32 (options.apply_to_torch); fp32 keeps the memory-efficient
    kernel, with which it learns."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    cudnn_sdp = torch.backends.cuda.cudnn_sdp_enabled()
    mem_efficient = torch.backends.cuda.mem_efficient_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        torch.backends.cuda.enable_mem_efficient_sdp(True)
        options.apply_to_torch(Options(device='cpu', exact=False, precision='bf16'))
        # a CPU run changes nothing of the GPU's
        assert torch.backends.cuda.cudnn_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
        for half in ('bf16', 'fp16'):
            torch.backends.cuda.enable_mem_efficient_sdp(True)
            options.apply_to_torch(Options(device='cuda', exact=False, precision=half))
            assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
            assert not torch.backends.cuda.cudnn_sdp_enabled()
            assert not torch.backends.cuda.mem_efficient_sdp_enabled(), half
            assert torch.backends.cuda.math_sdp_enabled()
        options.apply_to_torch(Options(device='cuda', exact=False, precision='fp32'))
        assert torch.backends.cuda.mem_efficient_sdp_enabled() and not torch.backends.cuda.cudnn_sdp_enabled()
        options.apply_to_torch(Options(device='cuda', exact=True, precision='fp32'))
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
        torch.backends.cuda.enable_cudnn_sdp(cudnn_sdp)
        torch.backends.cuda.enable_mem_efficient_sdp(mem_efficient)


# ---------------------------------------------------------------- the suite on a GPU machine

def test_the_suite_and_its_commands_run_on_the_cpu():
    """On a GPU machine too: conftest hides the GPUs from this process and every command it starts,
    so NPROC=2 runs never ask for a second GPU and results compare with CPU ones."""
    assert os.environ.get('CUDA_VISIBLE_DEVICES') == ''
    p = run([sys.executable, '-c', 'import os; print(repr(os.environ["CUDA_VISIBLE_DEVICES"]))'], '.')
    assert p.stdout.strip() == "''"


# ---------------------------------------------------------------- the demo's params

def test_demo_params_are_saved_from_the_cpu(tmp_path, monkeypatch):
    """Every tensor the demo saves went through .cpu(), as the params files of run.py do (a demo
    run on a GPU saved CUDA tensors, which torch.load without map_location cannot read elsewhere)."""
    moved = set()
    cpu = torch.Tensor.cpu

    def tracking_cpu(self, *a, **kw):
        out = cpu(self, *a, **kw)
        moved.add(id(out))
        return out
    saved = []
    monkeypatch.setattr(torch.Tensor, 'cpu', tracking_cpu)
    save = torch.save

    def saving(obj, f, *a, **kw):
        if isinstance(obj, dict) and 'tok_emb.weight' in obj:  # a params file's state_dict
            saved.append(obj)
        return save(obj, f, *a, **kw)
    monkeypatch.setattr(torch, 'save', saving)
    monkeypatch.setitem(demo.SIZES, 'small', dict(demo.SIZES['small'], people=30, pretrain_steps=2,
                                                  finetune_epochs=1, nopretrain_epochs=1))
    demo.run(str(tmp_path / 'demo'), size='small', device='cpu', threads=1)
    assert len(saved) == 3
    assert all(id(v) in moved for state in saved for v in state.values())
