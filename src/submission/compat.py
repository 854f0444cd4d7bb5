"""Compat: what the installed torch offers, so one codebase runs from the course's torch to today's.

Each name here says whether a feature exists in this torch; where it does not,
the caller takes the nearest older equivalent.
"""
import torch
import torch.nn.functional as F

TORCH = tuple(int(part) for part in torch.__version__.split('+')[0].split('.')[:2])

# scaled_dot_product_attention came in torch 2.0, its `scale` argument in 2.1.
HAS_SDPA = TORCH >= (2, 1) and hasattr(F, 'scaled_dot_product_attention')


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
