"""Compat: what the installed torch offers, so one codebase runs from the course's torch to today's.

Each name here says whether a feature exists in this torch; where it does not,
the caller takes the nearest older equivalent.
"""
import pickle
import types

import torch
import torch.nn.functional as F

TORCH = tuple(int(part) for part in torch.__version__.split('+')[0].split('.')[:2])

# scaled_dot_product_attention came in torch 2.0, its `scale` argument in 2.1.
HAS_SDPA = TORCH >= (2, 1) and hasattr(F, 'scaled_dot_product_attention')
# Viewing a tensor as a dtype of another size (64 random bits as four 16-bit draws): from 1.13.
HAS_DTYPE_VIEW = TORCH >= (1, 13)
# A switch for scaled_dot_product_attention's cuDNN kernel (torch 2.3 and later; before, it had none).
HAS_CUDNN_SDPA = hasattr(torch.backends.cuda, 'enable_cudnn_sdp')
# fp16 autocast and its gradient scaler on the CPU: torch.amp.GradScaler, from 2.3.
HAS_CPU_FP16 = hasattr(torch, 'amp') and hasattr(torch.amp, 'GradScaler')


def fast_path_notes():
    """What the fast path does instead where this torch lacks a feature, one phrase each."""
    notes = []
    if not HAS_SDPA:
        notes.append('attention uses the plain formula (the fused kernel needs torch 2.1)')
    if not HAS_DTYPE_VIEW:
        notes.append('dropout draws one uniform number an element (16-bit draws need torch 1.13)')
    return notes


class NoScaler:
    """What the trainer asks of a gradient scaler, doing nothing: fp32 and bf16 need no scaling."""

    def scale(self, loss):
        return loss

    def unscale_(self, optimizer):
        pass

    def step(self, optimizer):
        optimizer.step()

    def update(self):
        pass

    def is_enabled(self):
        return False

    def state_dict(self):
        return {}


def grad_scaler(device_type, enabled):
    """fp16's gradient scaler for this device (torch.amp's from torch 2.3, CUDA's before), or NoScaler."""
    if not enabled:
        return NoScaler()
    if hasattr(torch, 'amp') and hasattr(torch.amp, 'GradScaler'):
        return torch.amp.GradScaler(device_type)
    return torch.cuda.amp.GradScaler()


# ---------------------------------------------------------------- loading without running code

# What a params file or checkpoint may name when unpickled: containers, tensors and their storages.
SAFE_GLOBALS = {('collections', 'OrderedDict'), ('torch', 'Size'), ('torch._utils', '_rebuild_tensor'),
                ('torch._utils', '_rebuild_tensor_v2'), ('torch._utils', '_rebuild_parameter')}
SAFE_GLOBALS |= {('torch', name) for name in ('FloatStorage', 'DoubleStorage', 'HalfStorage', 'BFloat16Storage',
                                              'LongStorage', 'IntStorage', 'ShortStorage', 'CharStorage',
                                              'ByteStorage', 'BoolStorage', 'UntypedStorage')}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only SAFE_GLOBALS: any other name (a function a payload would
    call) is refused, so loading cannot run code."""

    def find_class(self, module, name):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'{module}.{name} is not a tensor, a storage or a plain container')


def safe_load(path):
    """torch.load of a file onto the CPU without running any code it may hold: weights_only=True
    where torch has it (1.13 and later), else through SafeUnpickler."""
    if TORCH >= (1, 13):
        return torch.load(path, map_location='cpu', weights_only=True)
    return torch.load(path, map_location='cpu', pickle_module=types.SimpleNamespace(
        Unpickler=SafeUnpickler, load=lambda f, **kw: SafeUnpickler(f, **kw).load(), __name__='pickle'))
