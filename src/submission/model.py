"""Model: the course's GPT (minGPT) with GPTConfig, Block and GPT.

Parameter names, shapes and initialisation follow the course exactly, so a
params file written here loads into plain course code and back. Two options of
our own, both off by default so that course code and the grader see the course
computation:

* GPTConfig(exact=False) makes attention use torch's fused kernel.
* GPT.forward(idx, targets, pos=...) takes packed rows: several examples per
  row, `pos` giving each token's position inside its own example (restarting
  at 0). Tokens then attend only within their example, and the position
  embedding is looked up per token, so every example sees exactly what it
  would see alone in its own row (see batching.py).
* GPT.forward(idx, pos=..., cache=GPT.new_cache()) decodes: each layer keeps
  its keys and values, and each call adds the given positions (the prompt,
  then one character per row at that row's own position; see evaluate.py).
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
    exact = True  # ours: False uses torch's fused attention (same math, other rounding)

    def __init__(self, vocab_size, block_size, **kwargs):
        self.vocab_size = vocab_size
        self.block_size = block_size
        for k, v in kwargs.items():
            setattr(self, k, v)


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
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
            nn.Dropout(config.resid_pdrop),
        )

    def forward(self, x, mask=None, pos=None, cache=None):
        x = x + self.attn(self.ln1(x), mask=mask, pos=pos, cache=cache)
        x = x + self.mlp(self.ln2(x))
        return x


class GPT(nn.Module):
    """The full GPT language model, with a context size of block_size."""

    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        self.drop = nn.Dropout(config.embd_pdrop)
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

    def new_cache(self):
        """An empty key/value cache for decoding with forward(..., cache=)."""
        return [attention.LayerCache(self.block_size) for _ in self.blocks]

    def forward(self, idx, targets=None, pos=None, cache=None):
        b, t = idx.size()
        assert t <= self.block_size, "Cannot forward, model block size is exhausted."
        token_embeddings = self.tok_emb(idx)
        if pos is None:
            position_embeddings = self.pos_emb[:, :t, :]
            mask = None
        else:
            position_embeddings = self.pos_emb[0][pos]
            mask = None if cache is not None else packed_mask(pos)
        x = self.drop(token_embeddings + position_embeddings)
        for i, block in enumerate(self.blocks):
            x = block(x, mask=mask, pos=pos, cache=None if cache is None else cache[i])
        x = self.ln_f(x)
        logits = self.head(x)

        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=0)
        return logits, loss


def packed_mask(pos):
    """(B, 1, T, T) bool: causal, and only within the example a token belongs to.

    A new example starts wherever pos is 0, so a running count of zeros
    numbers the examples of a row.
    """
    seg = (pos == 0).cumsum(dim=1)
    same = seg.unsqueeze(2) == seg.unsqueeze(1)
    return (same & attention.causal_mask(pos.size(1), pos.device)[0]).unsqueeze(1)
