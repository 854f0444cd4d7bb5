"""Attention: the course's attention modules of every year, exact and fast.

* CausalSelfAttention: dot-product attention; with config.rope (2024-25 course
  years) its queries and keys are rotated by their positions
  (`precompute_rotary_emb`, `apply_rotary_emb`).
* SynthesizerAttention: the dense Synthesizer (the synthesizer year).
* CausalCrossAttention: queries from one sequence, keys and values from
  another, as the Perceiver-style bottleneck uses (the perceiver year).

Every module keeps its course's parameter names, shapes and buffers, so
state_dicts load into plain course code and back. Each splits its work in two:
making per-head queries, keys, values (and an additive key bias), and `mix()`,
which attends over them with one of two computations (`kernel_for` chooses):

* `plain_attention`, the formula written out: the course's computation
  (`--exact`), or the same formula made cheaper (the scores masked in place, a
  cheaper dropout sampler, `dropout()`) for the fast path's CPU training and
  for cached decoding (evaluate.py: a `LayerCache` keeps a layer's keys and
  values, and each step adds one position per row);
* `fused_attention`, torch's scaled_dot_product_attention: the fast path
  elsewhere (GPUs, CPU inference without a cache).

The synthesizer fits the same mould: its score for query i and key j is
relu(x_i A + b1) . B[:, j] + b2[j], i.e. a dot product of the query with a
"key" that is column j of w2, plus a bias that depends only on the key's
position. So its keys are rows of w2^T picked by position, and b2 is a bias.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .lib import compat


# ---------------------------------------------------------------- the modules


class CausalSelfAttention(nn.Module):
    """Multi-head masked self-attention with a projection at the end (course names);
    with config.rope, queries and keys rotated by position (rotary embeddings)."""

    def __init__(self, config):
        super().__init__()
        add_projections(self, config)
        self.rope = getattr(config, 'rope', False)
        if self.rope:
            # Persistent, registered before the mask, as in the course's rope year.
            head_size = config.n_embd // config.n_head
            assert head_size % 2 == 0, 'rotary embeddings need an even head size'
            self.register_buffer("rope_cache", precompute_rotary_emb(head_size, config.block_size))
        add_causal_mask(self, config)
        self.n_head = config.n_head
        self.exact = getattr(config, "exact", True)
        self.kernel = getattr(config, "kernel", "auto")

    def heads(self, x, pos):
        C = x.size(-1)
        if self.exact or not self.training:
            k, q, v = self.key(x), self.query(x), self.value(x)
        else:
            # One matmul for the three projections: a wider one runs closer to the
            # machine's peak. The weights stay the course's three Linears; joining
            # them costs a copy per call, which only training's large batches repay.
            w = torch.cat([self.query.weight, self.key.weight, self.value.weight])
            b = torch.cat([self.query.bias, self.key.bias, self.value.bias])
            q, k, v = F.linear(x, w, b).split(C, dim=-1)
        q, k, v = (split_heads(t, self.n_head) for t in (q, k, v))
        if self.rope:
            # Each token is rotated by its own position: restarting per example in
            # packed rows, and the row's position when decoding.
            angles = self.rope_cache if pos is None else self.rope_cache[pos].unsqueeze(1)
            q, k = apply_rotary_emb(q, angles), apply_rotary_emb(k, angles)
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
        self.attn_drop = dropout_layer(config, config.attn_pdrop)
        self.resid_drop = dropout_layer(config, config.resid_pdrop)
        add_causal_mask(self, config)
        self.n_head = config.n_head
        self.block_size = config.block_size
        nn.init.uniform_(self.w2, -0.001, 0.001)
        self.exact = getattr(config, "exact", True)
        self.kernel = getattr(config, "kernel", "auto")

    def heads(self, x, pos):
        B, T, C = x.size()
        assert T <= self.block_size - 1, "synthesizer attention needs T <= block_size - 1"
        if self.exact or not self.training:
            a, v = self.w1(x), self.value(x)
        else:  # one matmul for both projections, as in CausalSelfAttention.heads
            w = torch.cat([self.w1.weight, self.value.weight])
            a, v = F.linear(x, w, torch.cat([self.w1.bias, self.value.bias])).split(C, dim=-1)
        q, v = F.relu(split_heads(a, self.n_head)), split_heads(v, self.n_head)
        if pos is None:
            # (T, hs), not (1, 1, T, hs): q @ k^T is then the course's q @ w2[:, :T], one matmul
            # over every head and row, rounded exactly as the course's.
            k = self.w2[:, :T].t()
            bias = self.b2[:T].view(1, 1, 1, T)
        else:
            # Packed rows restart positions per example: key j uses column pos[j].
            k = self.w2.t()[pos].unsqueeze(1)
            bias = self.b2[pos].view(B, 1, 1, T)
        return q, k, v, bias, 1.0

    def forward(self, x, layer_past=None, mask=None, pos=None, cache=None):
        # layer_past: course contract, unused (decoding uses `cache`)
        return self_attention(self, x, mask, pos, cache)


class CausalCrossAttention(nn.Module):
    """Queries from x_q, keys and values from x_kv (the perceiver year's bottleneck).

    Query i may look at keys 0..i: the course's (1, 1, block, block) tril mask,
    cut to [:Tq, :Tk]. x_q may have batch 1 (the bottleneck's learned basis) where
    x_kv has B.
    """

    def __init__(self, config):
        super().__init__()
        add_projections(self, config)
        add_causal_mask(self, config)
        self.n_head = config.n_head
        self.exact = getattr(config, "exact", True)
        self.kernel = getattr(config, "kernel", "auto")

    def keys_values(self, x_kv):
        return split_heads(self.key(x_kv), self.n_head), split_heads(self.value(x_kv), self.n_head)

    def queries(self, x_q):
        return split_heads(self.query(x_q), self.n_head)

    def attend(self, q, k, v, mask):
        """attend() with the course's scaling, projected; the caller's mask, or the course's."""
        if mask is None:
            mask = self.mask[:, :, :q.size(2), :k.size(2)] != 0
        return mix(self, q, k, v, None, mask, 1.0 / math.sqrt(k.size(-1)))

    def forward(self, x_kv, x_q):
        k, v = self.keys_values(x_kv)
        return self.attend(self.queries(x_q), k, v, None)


# ---------------------------------------------------------------- the shared math

def plain_attention(q, k, v, bias, mask, scale, dropout_p, course=True):
    """softmax(q k^T * scale + bias, masked) v, for (B, h, T, d) heads, written out.

    q, k, v may have batch 1 where the others have B (broadcast); k may be (Tk, d), the
    same keys for every row and head (the synthesizer's). bias: None or
    additive (B or 1, 1, 1, Tk) per-key scores; mask: bool (B or 1, 1, Tq, Tk),
    True where a query may look at a key.

    course=True is the course's computation (out-of-place masked_fill with
    -1e10, F.dropout). course=False is the same formula made cheaper, for the
    fast path's CPU training and decoding: the mask filled in place, and the
    cheaper dropout sampler.
    """
    att = q @ k.transpose(-2, -1)
    if course or scale != 1.0:  # the synthesizer's scale is 1: no pass over the scores for it
        att = att * scale
    if bias is not None:
        att = att + bias
    if course:
        att = att.masked_fill(~mask, -1e10)
    else:
        # In place and outside autograd: softmax's gradient is exactly 0 where
        # its output is, so masked_fill's backward (a copy of the scores'
        # gradient, zeroed there) would change no bit; this skips two passes
        # over the (B, h, T, T) scores, forward and backward. The dtype's own
        # minimum, since -1e10 overflows fp16; exp() of either is exactly 0.
        with torch.no_grad():
            att.masked_fill_(~mask, torch.finfo(att.dtype).min)
    att = F.softmax(att, dim=-1)
    if course:
        att = F.dropout(att, dropout_p, training=dropout_p > 0)
    elif dropout_p > 0:
        # Dropout's 1/(1-p) applied to the output, which is smaller than the weights.
        return ((att * keep_mask(att, dropout_p)) @ v) * (1.0 / (1.0 - dropout_p))
    return att @ v


def fused_attention(q, k, v, bias, mask, scale, dropout_p):
    """The same as plain_attention, through torch's scaled_dot_product_attention."""
    k = k.expand(1, 1, *k.shape) if k.dim() == 2 else k  # keys shared by every row and head
    B, h, T = max(q.size(0), k.size(0)), q.size(1), q.size(2)
    q, k, v = q.expand(B, h, -1, -1), k.expand(B, h, -1, -1), v.expand(B, h, -1, -1)
    if bias is not None:
        # Fold the per-key bias into the dot product: [q, 1] . [k_j, bias_j / scale]
        # = q . k_j + bias_j / scale, so SDPA needs only the boolean mask and
        # keeps its fused kernel (a float mask would force the slow path). The
        # fused CUDA kernels take head widths that are multiples of 8: the
        # synthesizer's 32 + 1 is padded with zeros to 40, which adds 0 to every score.
        width = q.size(-1) + 1
        pad = -width % 8
        q = torch.cat([q, q.new_ones(B, h, T, 1), q.new_zeros(B, h, T, pad)], dim=-1)
        col = (bias / scale).transpose(-2, -1).expand(B, h, -1, -1).to(k.dtype)
        k = torch.cat([k, col, k.new_zeros(B, h, k.size(2), pad)], dim=-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)


KERNELS = ('auto', 'plain', 'fused')


def kernel_for(module, q, cache):
    """Which attention a call takes: the course's formula (exact mode), else the module's
    `kernel` ('plain' or 'fused'), where 'auto' means: the plain formula when training on a
    CPU (the fused kernel there has no cheaper dropout and, with the in-place mask, is no
    faster at the course's rows and slower at short ones) and when decoding (a query or two
    a row: the fused kernel saves nothing); the fused kernel elsewhere, where torch has it."""
    if module.exact:
        return 'course'
    if module.kernel != 'auto':
        return module.kernel
    if cache is not None or (q.device.type == 'cpu' and torch.is_grad_enabled()) or not compat.HAS_SDPA:
        return 'plain'
    return 'fused'


def mix(module, q, k, v, bias, mask, scale, cache=None):
    """The attention (see kernel_for), then heads side by side, the output projection and residual dropout."""
    p = module.attn_drop.p if module.training else 0.0
    kernel = kernel_for(module, q, cache)
    if kernel == 'fused':
        y = fused_attention(q, k, v, bias, mask, scale, p)
    else:
        y = plain_attention(q, k, v, bias, mask, scale, p, course=kernel == 'course')
    B, h, T, d = y.shape
    return module.resid_drop(module.proj(y.transpose(1, 2).contiguous().view(B, T, h * d)))


def self_attention(module, x, mask, pos, cache=None):
    """The forward pass of both self-attention modules: heads, attend, project."""
    T = x.size(1)
    q, k, v, bias, scale = module.heads(x, pos)
    if cache is not None:
        k, v, bias = cache.extend(k, v, bias, pos)
    elif mask is None:
        mask = module.mask[:, :, :T, :T] != 0
    return mix(module, q, k, v, bias, mask, scale, cache)


def visible_upto(size, pos):
    """(B, 1, t, size) bool: a query at position pos[b, i] sees slots 0..pos[b, i] of a cache."""
    return (torch.arange(size, device=pos.device) <= pos.unsqueeze(-1)).unsqueeze(1)


def split_heads(t, n_head):
    """(B, T, C) -> (B, n_head, T, C / n_head)."""
    B, T, C = t.size()
    return t.view(B, T, n_head, C // n_head).transpose(1, 2)


class LayerCache:
    """One layer's keys, values (and key bias) for decoding `rows` rows, slot p holding position p.

    A call either fills positions p..p+t-1 of every row (the prompts,
    left-aligned; a short row's padding is cached too, never attended, and
    overwritten as that row decodes; a call of batch 1 fills every row alike:
    the prompts' common prefix), or adds one position per row, each at its own
    (pos, shape (rows, 1)). It returns whole buffers (of the call's batch):
    exactly `size` slots, attended over in full under the caller's mask, so the
    batched matmuls read contiguous memory (slices of a longer buffer read
    strided memory, slower per slot on CPUs).
    `section(start, stop)` is a cache of some of the rows, whose writes land
    here: the prompts are filled a few rows at a time, then all rows decode.
    """

    def __init__(self, size, rows, whole=None, start=0):
        self.size, self.rows = size, rows
        self.whole, self.start = whole, start
        self.k = self.v = self.bias = None

    def section(self, start, stop):
        return LayerCache(self.size, stop - start, self, start)

    def allocate(self, k, v, bias):
        """The buffers, made on first use (their heads, width and dtype are the first call's)."""
        if self.whole is not None:
            self.whole.allocate(k, v, bias)
            rows = slice(self.start, self.start + self.rows)
            self.k, self.v = self.whole.k[rows], self.whole.v[rows]
            self.bias = None if bias is None else self.whole.bias[rows]
        elif self.k is None:
            self.k = k.new_zeros(self.rows, k.size(1), self.size, k.size(-1))
            self.v = v.new_zeros(self.rows, v.size(1), self.size, v.size(-1))
            self.bias = None if bias is None else bias.new_zeros(self.rows, 1, 1, self.size)

    def keep(self, rows):
        """Only these rows (a long tensor of row numbers) from now on, in this order."""
        self.k, self.v = self.k[rows], self.v[rows]
        self.bias = None if self.bias is None else self.bias[rows]
        self.rows = len(rows)

    def extend(self, k, v, bias, pos):
        b, t = pos.shape
        if self.k is None:
            self.allocate(k, v, bias)
        k = k.expand(b, -1, -1, -1)
        bias = None if bias is None else bias.expand(b, -1, -1, -1)
        if t == 1 and b == self.rows:  # one position per row, each at its own
            rows, at = torch.arange(b, device=pos.device), pos[:, 0]
            self.k[rows, :, at], self.v[rows, :, at] = k[:, :, 0], v[:, :, 0]
            if bias is not None:
                self.bias[rows, 0, 0, at] = bias[:, 0, 0, 0]
        else:  # the same positions in every row
            p = int(pos[0, 0])
            self.k[:, :, p:p + t], self.v[:, :, p:p + t] = k, v
            if bias is not None:
                self.bias[..., p:p + t] = bias
        return self.k[:b], self.v[:b], None if bias is None else self.bias[:b]


def causal_mask(T, device):
    return torch.ones(T, T, dtype=torch.bool, device=device).tril_().view(1, 1, T, T)


# ---------------------------------------------------------------- rotary embeddings

def precompute_rotary_emb(dim, max_positions):
    """(max_positions, dim/2, 2): cache[t, i] = (cos t*theta_i, sin t*theta_i), theta_i = 10000^(-2i/dim)."""
    theta = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    angles = torch.arange(max_positions, dtype=torch.float32)[:, None] * theta[None, :]
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)


def apply_rotary_emb(x, rope_cache):
    """Rotate adjacent pairs (x0, x1), (x2, x3), ... of x (..., T, dim) by their position's angles.

    rope_cache: the course's (max_positions, dim/2, 2), cut here to the T positions
    0..T-1; or already picked per token, (..., T, dim/2, 2) (packed rows and
    decoding, where each token has its own position). The course writes this as
    a complex product; these are its real and imaginary parts, which also run
    in bf16.
    """
    if rope_cache.dim() == 3:
        rope_cache = rope_cache[:x.size(-2)]
    pairs = x.unflatten(-1, (-1, 2))
    cos, sin = rope_cache[..., 0].to(x.dtype), rope_cache[..., 1].to(x.dtype)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)


# ---------------------------------------------------------------- dropout

def dropout(x, p, training=True):
    """F.dropout for the fast path, with a cheaper sampler on CPUs.

    There torch's Bernoulli sampler costs more than the rest of dropout; here
    each element takes 16 random bits (four per 64-bit draw) and is dropped
    when they fall below round(p * 2^16), so with probability p to within
    2^-17 (0.1000061 for the course's 0.1), far cheaper (docs/PERFORMANCE.md).
    Elsewhere (GPUs) torch's own fused dropout.
    """
    if not training or p == 0:
        return x
    if x.device.type != 'cpu':
        return F.dropout(x, p, training=True)
    keep = keep_mask(x, p)
    if x.dtype == torch.float32:
        # fp32 applies a Python number's scale at fp32 anyway, so a mask of 0 and
        # 1/(1-p) gives the same bits, and backward is one product instead of two.
        return x * keep.mul_(1.0 / (1.0 - p))
    # The scale as a Python number, so it is applied at the computation's own precision
    # (bf16's nearest 1/0.9 is 1.109375: a multiplier tensor of x's dtype would be that).
    return x * keep * (1.0 / (1.0 - p))


def keep_mask(x, p):
    """A tensor of x's shape and dtype: 1 (keep) with probability 1 - p, else 0.

    Multiplying by it is exact (x * 1 is x) and, on CPUs, two to three times cheaper
    forward and backward than masked_fill with a bool mask at the model's shapes
    (docs/PERFORMANCE.md): the product is one vectorised pass each way.
    """
    if not compat.HAS_DTYPE_VIEW:  # torch before 1.13: one uniform draw an element
        return (torch.rand(x.shape, device=x.device) >= p).to(x.dtype)
    n = x.numel()
    bits = torch.randint(-2 ** 63, 2 ** 63 - 1, ((n + 3) // 4,), dtype=torch.int64).view(torch.int16)
    # Compared straight into x's dtype: a bool mask converted afterwards costs three times more.
    keep = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    return torch.ge(bits[:n].view(x.shape), round(p * 2 ** 16) - 2 ** 15, out=keep)


class Dropout(nn.Dropout):
    """nn.Dropout that samples with `dropout()`: the fast path's dropout layers."""

    def forward(self, x):
        return dropout(x, self.p, self.training)


def dropout_layer(config, p):
    """The course's nn.Dropout, or the fast path's cheaper one."""
    return nn.Dropout(p) if getattr(config, 'exact', True) else Dropout(p)


# ---------------------------------------------------------------- building the modules

def add_projections(module, config):
    """The course's key, query, value, dropouts and output projection, in its order."""
    assert config.n_embd % config.n_head == 0
    module.key = nn.Linear(config.n_embd, config.n_embd)
    module.query = nn.Linear(config.n_embd, config.n_embd)
    module.value = nn.Linear(config.n_embd, config.n_embd)
    module.attn_drop = dropout_layer(config, config.attn_pdrop)
    module.resid_drop = dropout_layer(config, config.resid_pdrop)
    module.proj = nn.Linear(config.n_embd, config.n_embd)


def add_causal_mask(module, config):
    # Persistent, as in the course: it is part of the saved state_dict.
    module.register_buffer("mask", torch.tril(torch.ones(config.block_size, config.block_size))
                           .view(1, 1, config.block_size, config.block_size))
