"""Evaluation: birth-place predictions for a file of questions.

The course decodes one question at a time with utils.sample, re-running the
whole prefix for each of 32 greedy steps. Here questions are decoded together,
up to DECODE_ROWS at a time:
forward passes over the questions, a group of similar lengths at a time (at
most PREFILL_TOKENS, padding included), fill the model's key/value cache
(GPT.forward with cache=; the "Where was " that every question starts with is
computed once a group), then each step feeds only
the newest character of every row, each at its own position, and decoding
stops once every row has written its second MASK.
This file only batches, sorts and stops; the model does the math. The
prediction rule is the course's: the text between the first and second MASK
of the completion.
"""
import torch

from submission import utils
from submission.dataset import MASK_CHAR

STEPS = 32  # greedy characters per question, as in the course
PREFILL_TOKENS = 2048  # prompt tokens (padding included) run into the cache together
DECODE_ROWS = 256   # rows decoded together (their cache: 0.7 MB a row for dev questions)
COMPACT = 0.75  # the rows still decoding are taken out of the batch once they are this share or less


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


def common_prefix(prompts, most):
    """How many leading ids all prompts share, at most `most`."""
    n = 0
    while n < most and all(p[n] == prompts[0][n] for p in prompts):
        n += 1
    return n


def prefill_chunks(lens, budget):
    """(start, stop) runs of consecutive prompts (of these lengths, shortest first) each padded to
    its longest at most `budget` tokens (or one prompt): the long prompts of the tail go in smaller
    groups, so their padding does not multiply the work of the shorter ones beside them."""
    runs, start = [], 0
    while start < len(lens):
        stop, longest = start + 1, lens[start]
        while stop < len(lens) and (stop + 1 - start) * max(longest, lens[stop]) <= budget:
            longest = max(longest, lens[stop])
            stop += 1
        runs.append((start, stop))
        start = stop
    return runs


def prefill(model, prompts, cache, device):
    """The prompts (lists of ids of similar lengths) into an empty cache, left-aligned;
    each row's first generated id."""
    B = len(prompts)
    lens = torch.tensor([len(p) for p in prompts], device=device)
    L = int(lens.max())
    x = torch.zeros(B, L, dtype=torch.long, device=device)
    for r, p in enumerate(prompts):
        x[r, :len(p)] = torch.tensor(p)
    # The prompts' common prefix ("Where was ", a third of a prompt) is the same
    # keys and values in every row: computed once, for all rows. Each row keeps
    # at least its last character for the second pass, which gives its logits.
    # The perceiver's slots summarise a whole prompt, so it takes them in one pass.
    shared = 0 if model.config.perceiver else common_prefix(prompts, int(lens.min()) - 1)
    if shared:
        model(x[:1, :shared], pos=torch.arange(shared, device=device)[None], cache=cache)
    logits, _ = model(x[:, shared:], pos=torch.arange(shared, L, device=device).expand(B, -1), cache=cache)
    return logits[torch.arange(B, device=device), lens - 1 - shared].argmax(-1)


@torch.no_grad()
def predict_batch(model, prompts, itos, device, steps=STEPS):
    """Greedy decoding of many prompts (lists of ids, each ending in MASK, shortest first) at once.

    The prompts go into the cache a group at a time (similar lengths: little
    padding, see prefill_chunks); then every row decodes together, as the matmuls
    of one character a row cost less per row in a larger batch (docs/PERFORMANCE.md)."""
    model.eval()
    B = len(prompts)
    lengths = [len(p) for p in prompts]
    # Room for the prompts and every step but the last, whose character is not fed back.
    cache = model.new_cache(max(lengths) + steps - 1, B)
    firsts = []
    for start, stop in prefill_chunks(lengths, PREFILL_TOKENS):
        firsts.append(prefill(model, prompts[start:stop], model.cache_section(cache, start, stop), device))
    nxt = torch.cat(firsts)
    lens = torch.tensor(lengths, device=device)
    # A row's answer ends at its second MASK (id 1); what it would write after is never read.
    generated = torch.ones(B, steps, dtype=torch.long, device=device)
    generated[:, 0] = nxt
    rows = torch.arange(B, device=device)  # the rows in the batch, as numbered in `generated`
    done = nxt == 1
    for step in range(1, steps):
        left = len(rows) - int(done.sum())
        if left == 0:
            break
        if left <= COMPACT * len(rows):
            # Most rows have answered (answers are a few characters; a few rows run all 32
            # steps): decode only the rest, dropping the others from the cache.
            keep = (~done).nonzero()[:, 0]
            model.keep_rows(cache, keep)
            rows, nxt, done = rows[keep], nxt[keep], done[keep]
        logits, _ = model(nxt[:, None], pos=(lens[rows] + step - 1)[:, None], cache=cache)
        nxt = logits[:, -1].argmax(-1)
        generated[rows, step] = nxt
        done |= nxt == 1
    return [''.join(itos[i] for i in g).split(MASK_CHAR)[0] for g in generated.tolist()]


def predict_places(model, questions, stoi, itos, device, exact=False, batch_size=DECODE_ROWS):
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
