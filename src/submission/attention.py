"""Attention: the course's dot-product CausalSelfAttention and SynthesizerAttention.

Both modules keep the course's parameter names, shapes and buffers, so their
state_dicts load into plain course code and back. Each splits its work in two:
`heads()` makes per-head queries, keys, values and an additive key bias, and
`attend()` mixes them. That split lets one piece of math serve three callers:

* the exact course computation (explicit scores, masked_fill, softmax, dropout),
* the fast path (torch's fused scaled_dot_product_attention), and
* cached decoding in evaluate.py, which calls `heads()` one position at a time.

The synthesizer fits the same mould: its score for query i and key j is
relu(x_i A + b1) . B[:, j] + b2[j], i.e. a dot product of the query with a
"key" that is column j of w2, plus a bias that depends only on the key's
position. So its keys are rows of w2^T picked by position, and b2 is a bias.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def attend(q, k, v, bias, mask, scale, dropout_p, exact):
    """softmax(q k^T * scale + bias, masked) v, for (B, h, T, d) heads.

    bias: None or additive (B or 1, 1, 1, T) per-key scores; mask: bool
    (B or 1, 1, T, T), True where a query may look at a key.
    """
    if exact:
        att = (q @ k.transpose(-2, -1)) * scale
        if bias is not None:
            att = att + bias
        # -1e10 as in the course; exp() of it is exactly 0 either way.
        att = att.masked_fill(~mask, -1e10)
        att = F.softmax(att, dim=-1)
        att = F.dropout(att, dropout_p, training=dropout_p > 0)
        return att @ v
    B, h, T, _ = q.shape
    k = k.expand(B, h, -1, -1)
    if bias is not None:
        # Fold the per-key bias into the dot product: [q, 1] . [k_j, bias_j / scale]
        # = q . k_j + bias_j / scale, so SDPA needs only the boolean mask and
        # keeps its fused kernel (a float mask would force the slow path).
        q = torch.cat([q, q.new_ones(B, h, T, 1)], dim=-1)
        col = (bias / scale).transpose(-2, -1).expand(B, h, -1, -1).to(k.dtype)
        k = torch.cat([k, col], dim=-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                          dropout_p=dropout_p, scale=scale)


def self_attention(module, x, mask, pos):
    """The forward pass both attention modules share: heads, attend, project."""
    B, T, C = x.size()
    if mask is None:
        mask = module.mask[:, :, :T, :T] != 0
    q, k, v, bias, scale = module.heads(x, pos)
    p = module.attn_drop.p if module.training else 0.0
    y = attend(q, k, v, bias, mask, scale, p, module.exact)
    y = y.transpose(1, 2).contiguous().view(B, T, C)
    return module.resid_drop(module.proj(y))


def causal_mask(T, device):
    return torch.ones(T, T, dtype=torch.bool, device=device).tril_().view(1, 1, T, T)


class CausalSelfAttention(nn.Module):
    """Multi-head masked self-attention with a projection at the end (course names)."""

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.key = nn.Linear(config.n_embd, config.n_embd)
        self.query = nn.Linear(config.n_embd, config.n_embd)
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        # Persistent, as in the course: it is part of the saved state_dict.
        self.register_buffer("mask", torch.tril(torch.ones(config.block_size, config.block_size))
                             .view(1, 1, config.block_size, config.block_size))
        self.n_head = config.n_head
        self.exact = not getattr(config, "fast", False)

    def heads(self, x, pos):
        B, T, C = x.size()
        split = lambda t: t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k, q, v = split(self.key(x)), split(self.query(x)), split(self.value(x))
        return q, k, v, None, 1.0 / math.sqrt(k.size(-1))

    def forward(self, x, layer_past=None, mask=None, pos=None):
        return self_attention(self, x, mask, pos)


class SynthesizerAttention(nn.Module):
    """Dense Synthesizer attention (Tay et al. 2020) in the course's variant.

    Head i scores: ReLU(X A_i + b1) B + b2, where X A_i + b1 is head i's slice
    of w1(x), B = w2[:, :T] is shared by all heads and b2 = b2[:T].
    """

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.w1 = nn.Linear(config.n_embd, config.n_embd)
        # block_size - 1 columns: course inputs are block_size-long strings minus one char.
        self.w2 = nn.Parameter(torch.zeros(config.n_embd // config.n_head, config.block_size - 1))
        self.b2 = nn.Parameter(torch.zeros(config.block_size - 1))
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        self.register_buffer("mask", torch.tril(torch.ones(config.block_size, config.block_size))
                             .view(1, 1, config.block_size, config.block_size))
        self.n_head = config.n_head
        self.block_size = config.block_size
        nn.init.uniform_(self.w2, -0.001, 0.001)
        self.exact = not getattr(config, "fast", False)

    def heads(self, x, pos):
        B, T, C = x.size()
        assert T <= self.block_size - 1, "synthesizer attention needs T <= block_size - 1"
        split = lambda t: t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = F.relu(split(self.w1(x)))
        v = split(self.value(x))
        if pos is None:
            k = self.w2[:, :T].t().view(1, 1, T, -1)
            bias = self.b2[:T].view(1, 1, 1, T)
        else:
            # Packed rows restart positions per example: key j uses column pos[j].
            k = self.w2.t()[pos].unsqueeze(1)
            bias = self.b2[pos].view(B, 1, 1, T)
        return q, k, v, bias, 1.0

    def forward(self, x, layer_past=None, mask=None, pos=None):
        return self_attention(self, x, mask, pos)
