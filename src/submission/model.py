"""Model: the course's GPT (minGPT) with GPTConfig, Block and GPT, in every course year's variant.

* vanilla (CausalSelfAttention) and synthesizer (SynthesizerAttention) blocks;
* perceiver (the 2023-24 course years): the input is squeezed into
  `bottleneck_dim` learned slots (DownProjectBlock), the middle blocks run on
  the slots, and UpProjectBlock brings them back to every position;
* rope (from 2024-25): no position embedding; queries and keys are rotated by
  their positions in every layer.

Parameter names, shapes and initialisation follow each year's course exactly,
so a params file written here loads into plain course code and back. Options
of our own, all off by default so that course code and the grader see the
course computation:

* GPTConfig(exact=False) is the fast path (attention.kernel_for says which
  attention computation; GPTConfig(kernel=...) forces one).
* `pos`, wherever it is passed, is each token's position inside its own
  example, the position the course's model would give it alone in a row.
* GPT.forward(idx, targets, pos=...) takes packed rows: several examples per
  row, pos restarting at 0 where each begins. Tokens then attend only within
  their example, and the position (embedding or rotation) is each token's
  own, so every example sees exactly what it would see alone in its own row
  (see lib/batching.py). The perceiver cannot pack: its slots summarise a
  whole row, so examples sharing a row would share slots; its fast path trims
  rows instead.
* GPT.forward(idx, pos=..., cache=GPT.new_cache(size, rows)) decodes, one
  example (a question) a row: each layer keeps its keys and values, and each
  call adds the given positions (the prompts, then one character per row, each
  at its own position; see tools/evaluate.py). The perceiver keeps three
  kinds (see `PerceiverCache`).
"""
import torch
import torch.nn as nn
from torch.nn import functional as F

from . import attention


class GPTConfig:
    """Base GPT config; params common to all GPT versions."""
    embd_pdrop = 0.1
    resid_pdrop = 0.1
    attn_pdrop = 0.1
    synthesizer = False
    perceiver = False    # later course years: the bottleneck ...
    bottleneck_dim = None  # ... of this many slots
    rope = False         # later course years: rotary embeddings
    exact = True  # ours: False is the fast path (same math, other rounding)
    kernel = 'auto'  # ours: the fast path's attention: auto, plain or fused (attention.kernel_for)

    def __init__(self, vocab_size, block_size, **kwargs):
        self.vocab_size = vocab_size
        self.block_size = block_size
        for k, v in kwargs.items():
            setattr(self, k, v)


def mlp(config):
    """Linear 4x, GELU, Linear, Dropout: the course's mlp (keys mlp.0, mlp.2)."""
    return nn.Sequential(
        nn.Linear(config.n_embd, 4 * config.n_embd),
        nn.GELU(),
        nn.Linear(4 * config.n_embd, config.n_embd),
        attention.dropout_layer(config, config.resid_pdrop),
    )


class Block(nn.Module):
    """An unassuming Transformer block."""

    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        if config.synthesizer:
            self.attn = attention.SynthesizerAttention(config)
        else:
            self.attn = attention.CausalSelfAttention(config)
        self.mlp = mlp(config)

    def forward(self, x, mask=None, pos=None, cache=None):
        x = x + self.attn(self.ln1(x), mask=mask, pos=pos, cache=cache)
        x = x + self.mlp(self.ln2(x))
        return x


class DownProjectBlock(nn.Module):
    """The input squeezed into bottleneck_dim slots: z = C + attn(x_kv=X, x_q=ln1(C)), then the mlp.

    C is a learned basis, one row per slot. Slot j attends to input positions
    0..j, so inputs at positions >= bottleneck_dim are never attended here.
    """

    def __init__(self, config):
        super().__init__()
        self.C = nn.Parameter(torch.empty(1, config.bottleneck_dim, config.n_embd))
        nn.init.xavier_uniform_(self.C)
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.attn = attention.CausalCrossAttention(config)
        self.mlp = mlp(config)

    def forward(self, x_input, cache=None, slots=None, pos=None):
        """All slots (B or 1, M, C), or with `slots` (B, 1) one slot per row, attending the
        inputs' keys and values (cached by position when decoding)."""
        k, v = self.attn.keys_values(x_input)
        mask = None
        if cache is not None:  # slot j sees the positions up to j
            k, v, _ = cache.extend(k, v, None, pos)
            at = torch.arange(self.C.size(1), device=k.device).view(1, -1) if slots is None else slots
            mask = attention.visible_upto(k.size(2), at)
        basis = self.C if slots is None else self.C[0][slots]
        x = basis + self.attn.attend(self.attn.queries(self.ln1(basis)), k, v, mask)
        return x + self.mlp(self.ln2(x))


class UpProjectBlock(nn.Module):
    """The slots brought back to every position: u = X + attn(x_kv=ln1(y), x_q=X), then the mlp.

    Output position t attends to slots 0..min(t, bottleneck_dim - 1).
    """

    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.attn = attention.CausalCrossAttention(config)
        self.mlp = mlp(config)

    def forward(self, y, x_input, cache=None, slots=None, pos=None):
        """y: the slots (all, or with `slots` the one per row being added to the cache)."""
        k, v = self.attn.keys_values(self.ln1(y))
        mask = None
        if cache is not None:
            k, v, _ = cache.extend(k, v, None, slots)
            mask = attention.visible_upto(k.size(2), pos)
        x = x_input + self.attn.attend(self.attn.queries(x_input), k, v, mask)
        return x + self.mlp(self.ln2(x))


class PerceiverCache:
    """A perceiver's decoding state: the inputs' keys and values for the down-projection (slot =
    position), and each middle block's and the up-projection's keys and values (slot = bottleneck
    slot). Slot j depends on inputs 0..j only, so once a row has passed position j, slot j is final;
    a row at position p adds or redoes slot min(p, M - 1) (redoing the last one changes nothing)."""

    def __init__(self, layers):
        self.layers = layers
        self.inputs, self.middle, self.slots = layers[0], layers[1:-1], layers[-1]


class GPT(nn.Module):
    """The full GPT language model, with a context size of block_size."""

    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        if not config.rope:
            self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        self.drop = attention.dropout_layer(config, config.embd_pdrop)
        if config.perceiver:
            # Course names: down_block, blocks (n_layer - 2, on the slots), up_block.
            self.down_block = DownProjectBlock(config)
            slots = GPTConfig(config.vocab_size, config.bottleneck_dim,
                              **{k: v for k, v in vars(config).items() if k not in ('vocab_size', 'block_size')})
            self.blocks = nn.Sequential(*[Block(slots) for _ in range(config.n_layer - 2)])
            self.up_block = UpProjectBlock(config)
        else:
            # nn.Sequential only for the course's key names (blocks.0.*, ...).
            self.blocks = nn.Sequential(*[Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.block_size = config.block_size
        self.config = config
        self.apply(self._init_weights)
        print("number of parameters: {}".format(sum(p.numel() for p in self.parameters())))

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

    def get_block_size(self):
        return self.block_size

    def new_cache(self, size, rows):
        """An empty key/value cache for decoding `rows` rows with forward(..., cache=), `size` positions long."""
        if self.config.perceiver:
            slots = self.config.bottleneck_dim
            return PerceiverCache([attention.LayerCache(size, rows)] +
                                  [attention.LayerCache(slots, rows) for _ in range(len(self.blocks) + 1)])
        return [attention.LayerCache(size, rows) for _ in self.blocks]

    def cache_section(self, cache, start, stop):
        """Rows start..stop-1 of a new_cache, as a cache of their own whose writes land in it."""
        if self.config.perceiver:
            return PerceiverCache([layer.section(start, stop) for layer in cache.layers])
        return [layer.section(start, stop) for layer in cache]

    def keep_rows(self, cache, rows):
        """Only these rows of a new_cache from now on (decoding drops the rows that have answered)."""
        for layer in cache.layers if self.config.perceiver else cache:
            layer.keep(rows)

    def forward(self, idx, targets=None, pos=None, cache=None):
        b, t = idx.size()
        assert t <= self.block_size, "Cannot forward, model block size is exhausted."
        x = self.tok_emb(idx)
        if not self.config.rope:
            x = x + (self.pos_emb[:, :t, :] if pos is None else self.pos_emb[0][pos])
        x = self.drop(x)
        if self.config.perceiver:
            x = self.perceive(x, pos, cache)
        else:
            mask = None
            if cache is not None:  # each row's query sees its own positions up to its own
                mask = attention.visible_upto(cache[0].size, pos)
            elif pos is not None:
                mask = packed_mask(pos)
            for i, block in enumerate(self.blocks):
                x = block(x, mask=mask, pos=pos, cache=None if cache is None else cache[i])
        x = self.ln_f(x)
        logits = self.head(x)

        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=0)
        return logits, loss

    def perceive(self, x, pos, cache):
        """down_block, the middle blocks on the slots, up_block; with a cache, the decoding form."""
        if cache is None:
            return self.up_block(self.blocks(self.down_block(x)), x)
        M = self.config.bottleneck_dim
        B, t, _ = x.shape
        # The prompts make every slot (a short row's later slots are redone as it reaches
        # them); afterwards each call adds, per row, the slot of its position.
        slots = None if t > 1 else pos.clamp(max=M - 1)
        slot_pos = torch.arange(M, device=x.device).expand(B, M) if slots is None else slots
        z = self.down_block(x, slots=slots, cache=cache.inputs, pos=pos)
        mask = attention.visible_upto(M, slot_pos)
        for block, layer in zip(self.blocks, cache.middle):
            z = block(z, mask=mask, pos=slot_pos, cache=layer)
        return self.up_block(z, x, cache=cache.slots, slots=slot_pos, pos=pos)


def packed_mask(pos):
    """(B, 1, T, T) bool: causal, and only within the example a token belongs to.

    A new example starts wherever pos is 0, so a running count of zeros
    numbers the examples of a row.
    """
    seg = (pos == 0).cumsum(dim=1)
    same = seg.unsqueeze(2) == seg.unsqueeze(1)
    return (same & attention.causal_mask(pos.size(1), pos.device)[0]).unsqueeze(1)
