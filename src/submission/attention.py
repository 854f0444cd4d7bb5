"""Attention: the course's dot-product CausalSelfAttention and SynthesizerAttention.

Both modules keep the course's parameter names, shapes and buffers, so their
state_dicts load into plain course code and back. Each splits its work in two:
`heads()` makes per-head queries, keys, values and an additive key bias, and
`attend()` mixes them. That split lets one piece of math serve three callers:

* the exact course computation (explicit scores, masked_fill, softmax, dropout),
* the fast path (torch's fused scaled_dot_product_attention), and
* cached decoding (evaluate.py): a `LayerCache` keeps each layer's keys and
  values, and each step adds one position per row.

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


def self_attention(module, x, mask, pos, cache=None):
    """The forward pass both attention modules share: heads, attend, project."""
    B, T, C = x.size()
    q, k, v, bias, scale = module.heads(x, pos)
    exact = module.exact
    if cache is not None:
        k, v, bias, mask = cache.extend(k, v, bias, pos)
        # The plain formula here: on the cache's strided slices the fused kernel
        # would first copy them, which costs more than it saves for one query.
        exact = True
    elif mask is None:
        mask = module.mask[:, :, :T, :T] != 0
    p = module.attn_drop.p if module.training else 0.0
    y = attend(q, k, v, bias, mask, scale, p, exact)
    y = y.transpose(1, 2).contiguous().view(B, T, C)
    return module.resid_drop(module.proj(y))


class LayerCache:
    """One layer's keys, values and key bias for decoding B rows, each up to `size` positions.

    A call either fills positions 0..t-1 of every row (the prompt), or adds one
    position per row, each row at its own position (pos, shape (B, 1)). It
    returns the cached keys, values and bias up to the furthest position, and
    the mask that lets each query see its own row's positions up to its own.
    Short rows' padding in the prompt is cached too but masked out, then
    overwritten as those rows decode.
    """

    def __init__(self, size):
        self.size = size
        self.k = self.v = self.bias = None

    def extend(self, k, v, bias, pos):
        B, t = pos.shape
        if self.k is None:
            self.k = k.new_zeros(B, k.size(1), self.size, k.size(-1))
            self.v = v.new_zeros(B, v.size(1), self.size, v.size(-1))
            self.bias = None if bias is None else bias.new_zeros(B, 1, 1, self.size)
        k = k.expand(B, -1, -1, -1)
        bias = None if bias is None else bias.expand(B, -1, -1, -1)
        if t > 1:
            self.k[:, :, :t], self.v[:, :, :t] = k, v
            if bias is not None:
                self.bias[..., :t] = bias
        else:
            rows, at = torch.arange(B, device=pos.device), pos[:, 0]
            self.k[rows, :, at], self.v[rows, :, at] = k[:, :, 0], v[:, :, 0]
            if bias is not None:
                self.bias[rows, 0, 0, at] = bias[:, 0, 0, 0]
        S = int(pos.max()) + 1
        mask = torch.arange(S, device=pos.device).view(1, 1, 1, S) <= pos.view(B, 1, t, 1)
        return self.k[:, :, :S], self.v[:, :, :S], None if bias is None else self.bias[..., :S], mask


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
        self.exact = getattr(config, "exact", True)

    def heads(self, x, pos):
        B, T, C = x.size()
        split = lambda t: t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k, q, v = split(self.key(x)), split(self.query(x)), split(self.value(x))
        return q, k, v, None, 1.0 / math.sqrt(k.size(-1))

    def forward(self, x, layer_past=None, mask=None, pos=None, cache=None):
        # layer_past: course contract, unused (decoding uses `cache`)
        return self_attention(self, x, mask, pos, cache)


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
        self.exact = getattr(config, "exact", True)

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

    def forward(self, x, layer_past=None, mask=None, pos=None, cache=None):
        # layer_past: course contract, unused (decoding uses `cache`)
        return self_attention(self, x, mask, pos, cache)
