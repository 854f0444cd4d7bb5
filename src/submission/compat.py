"""Compat: what the installed torch offers, so one codebase runs from the course's torch to today's.

Each name here says whether a feature exists in this torch; where it does not,
the caller takes the nearest older equivalent.
"""
import torch
import torch.nn.functional as F

TORCH = tuple(int(part) for part in torch.__version__.split('+')[0].split('.')[:2])

# scaled_dot_product_attention came in torch 2.0, its `scale` argument in 2.1.
HAS_SDPA = TORCH >= (2, 1) and hasattr(F, 'scaled_dot_product_attention')
