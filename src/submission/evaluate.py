"""Evaluation: birth-place predictions for a file of questions.

The course decodes one question at a time with utils.sample, re-running the
whole prefix for each of 32 greedy steps (about 0.29 s a question on two CPU
cores). Here all questions are decoded together: one forward pass over the
questions fills the model's key/value cache (GPT.forward with cache=), then
each step feeds only the newest character of every row, each at its own
position, and decoding stops once every row has written its second MASK.
This file only batches, sorts and stops; the model does the math. The
prediction rule is the course's: the text between the first and second MASK
of the completion.
"""
import torch

from . import utils
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
    B = len(prompts)
    lens = torch.tensor([len(p) for p in prompts], device=device)
    L = int(lens.max())
    x = torch.zeros(B, L, dtype=torch.long, device=device)
    for r, p in enumerate(prompts):
        x[r, :len(p)] = torch.tensor(p)
    # Room for the prompts and every step but the last, whose character is not fed back.
    cache = model.new_cache(L + steps - 1)
    logits, _ = model(x, pos=torch.arange(L, device=device).expand(B, L), cache=cache)
    nxt = logits[torch.arange(B, device=device), lens - 1].argmax(-1)
    out = [nxt]
    done = nxt == 1
    for step in range(1, steps):
        if bool(done.all()):
            break
        logits, _ = model(nxt[:, None], pos=(lens + step - 1)[:, None], cache=cache)
        nxt = logits[:, -1].argmax(-1)
        out.append(nxt)
        done |= nxt == 1
    generated = torch.stack(out, 1).tolist()
    return [''.join(itos[i] for i in g).split(MASK_CHAR)[0] for g in generated]


def predict_places(model, questions, stoi, itos, device, exact=False, batch_size=128):
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
