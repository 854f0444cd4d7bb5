"""Evaluation: birth-place predictions for a file of questions.

The course decodes one question at a time with utils.sample, re-running the
whole prefix for each of 32 greedy steps (about 0.29 s a question on two CPU
cores). Here all questions are decoded together: one forward pass over the
questions fills a key/value cache, then each step feeds only the newest
character of every row, each at its own position, and decoding stops once
every row has written its second MASK. The prediction rule is the course's:
the text between the first and second MASK of the completion.

Synthesizer attention fits the same cache: its "keys" are columns of w2
picked by position and its bias is b2 at that position (see attention.py).
"""
import torch

from . import utils
from .attention import attend
from .dataset import MASK_CHAR

STEPS = 32  # greedy characters per question, as in the course


def prediction_from(completion):
    """The course's rule: the text between the first and second MASK."""
    parts = completion.split(MASK_CHAR)
    return parts[1] if len(parts) > 1 else ''


@torch.no_grad()
def predict_one(model, ids, itos, device):
    """The course's way: utils.sample on one question."""
    x = torch.tensor(ids, dtype=torch.long)[None, ...].to(device)
    pred = utils.sample(model, x, STEPS, sample=False)[0]
    return prediction_from(''.join(itos[int(i)] for i in pred))


@torch.no_grad()
def predict_batch(model, prompts, itos, device, steps=STEPS):
    """Greedy decoding of many prompts (lists of ids, each ending in MASK) at once."""
    model.eval()
    B, block = len(prompts), model.get_block_size()
    lens = torch.tensor([len(p) for p in prompts], device=device)
    L = int(lens.max())
    x = torch.zeros(B, L, dtype=torch.long, device=device)
    for r, p in enumerate(prompts):
        x[r, :len(p)] = torch.tensor(p)
    cache = [dict() for _ in model.blocks]
    rows = torch.arange(B, device=device)

    # Prefill: every row from position 0; a short row's padding is written
    # into the cache but masked out, and overwritten as that row decodes.
    pos = torch.arange(L, device=device).expand(B, L)
    hidden = run_cached(model, x, pos, cache, block)
    nxt = logits_of(model, hidden[rows, lens - 1]).argmax(-1)
    out = [nxt]
    done = nxt == 1
    for step in range(1, steps):
        if bool(done.all()):
            break
        hidden = run_cached(model, nxt[:, None], (lens + step - 1)[:, None], cache, block)
        nxt = logits_of(model, hidden[:, -1]).argmax(-1)
        out.append(nxt)
        done |= nxt == 1
    generated = torch.stack(out, 1).tolist()
    preds = []
    for g in generated:
        text = ''.join(itos[i] for i in g)
        preds.append(text.split(MASK_CHAR)[0])
    return preds


def logits_of(model, hidden):
    """The model's output head, applied only where a next character is wanted."""
    return model.head(model.ln_f(hidden))


def run_cached(model, idx, pos, cache, block):
    """Forward idx (B, t) at positions pos (B, t), reading and extending the layer caches;
    returns the last layer's hidden states (before ln_f and the head)."""
    B, t = idx.shape
    x = model.tok_emb(idx) + model.pos_emb[0][pos]
    slots = torch.arange(block, device=idx.device)
    for layer, blk in zip(cache, model.blocks):
        attn = blk.attn
        h = blk.ln1(x)
        q, k, v, bias, scale = attn.heads(h, pos)
        if not layer:
            layer['k'] = k.new_zeros(B, k.size(1), block, k.size(-1))
            layer['v'] = v.new_zeros(B, v.size(1), block, v.size(-1))
            layer['bias'] = None if bias is None else bias.new_zeros(B, 1, 1, block)
        k, bias = k.expand(B, -1, -1, -1), None if bias is None else bias.expand(B, -1, -1, -1)
        if t > 1:  # prefill: every row holds positions 0..t-1
            layer['k'][:, :, :t], layer['v'][:, :, :t] = k, v
            if bias is not None:
                layer['bias'][..., :t] = bias
        else:  # one new character per row, each at its own position
            rows, at = torch.arange(B, device=idx.device), pos[:, 0]
            layer['k'][rows, :, at], layer['v'][rows, :, at] = k[:, :, 0], v[:, :, 0]
            if bias is not None:
                layer['bias'][rows, 0, 0, at] = bias[:, 0, 0, 0]
        S = int(pos.max()) + 1
        mask = (slots[:S].view(1, 1, 1, S) <= pos.view(B, 1, t, 1))
        kb = layer['bias'][..., :S] if bias is not None else None
        # The plain formula here: on the cache's strided slices the fused kernel
        # would first copy them, which costs more than it saves for one query.
        y = attend(q, layer['k'][:, :, :S], layer['v'][:, :, :S], kb, mask, scale, 0.0, exact=True)
        x = x + attn.proj(y.transpose(1, 2).reshape(B, t, -1))
        x = x + blk.mlp(blk.ln2(x))
    return x


def predict_places(model, questions, stoi, itos, device, exact=False, batch_size=256):
    """One prediction per question (questions without their MASK; characters outside
    the vocabulary must already be dropped)."""
    prompts = [[stoi[c] for c in q] + [stoi[MASK_CHAR]] for q in questions]
    block = model.get_block_size()
    preds = [None] * len(prompts)
    batched = [] if exact else [i for i, p in enumerate(prompts) if len(p) + STEPS - 1 <= block - 1]
    # Similar lengths together: less padding in the prefill, and a batch whose
    # rows have all answered stops early.
    batched.sort(key=lambda i: len(prompts[i]))
    for start in range(0, len(batched), batch_size):
        chunk = batched[start:start + batch_size]
        for i, p in zip(chunk, predict_batch(model, [prompts[i] for i in chunk], itos, device)):
            preds[i] = p
    # Exact mode, and prompts too long for the cache, go the course's way.
    for i, p in enumerate(prompts):
        if preds[i] is None:
            preds[i] = predict_one(model, p, itos, device)
    return preds
