"""Batching: the batches the trainer feeds the model, exact or packed.

Exact mode stacks the course's per-item tensors: full block_size-1 rows, most
of them padding (only 47 % of pretraining positions and under 40 % of
finetuning positions carry a target). The fast path drops each example's
trailing padding and packs several examples into one row, with `pos` giving
every token's position inside its own example; model.py turns `pos` into
per-example attention. Since the loss ignores padding, the packed batch holds
exactly the unpacked batch's targets and gives the same loss.

Each dataset gives its own trimmed example (`dataset.trimmed(i)`, in
dataset.py), from the same random draws as its per-item one.
"""
import torch


def make_batch(dataset, indices, exact):
    """(x, y, pos) for the given dataset indices; pos is None in exact mode."""
    if exact:
        xs, ys = zip(*(dataset[i] for i in indices))
        return torch.stack(xs), torch.stack(ys), None
    return pack([dataset.trimmed(i) for i in indices], dataset.block_size - 1)


def encode(text, stoi):
    """Ids of every character of text, through a lookup table (no per-char loop)."""
    if not text:
        return torch.zeros(0, dtype=torch.long)
    codes = torch.frombuffer(bytearray(text.encode('utf-32-le')), dtype=torch.int32).long()
    table = torch.full((max(map(ord, stoi)) + 1,), -1, dtype=torch.long)
    table[torch.tensor([ord(c) for c in stoi])] = torch.tensor(list(stoi.values()))
    if len(codes) and int(codes.max()) >= len(table):
        raise KeyError('character outside the vocabulary')
    ids = table[codes]
    if (ids < 0).any():
        raise KeyError('character outside the vocabulary')
    return ids


def pack(examples, width):
    """Pack (x, y) examples into rows of at most `width` tokens (first fit, longest first)."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i][0]))
    rows, fill = [], []
    for i in order:
        n = len(examples[i][0])
        for r in range(len(rows)):
            if fill[r] + n <= width:
                rows[r].append(i)
                fill[r] += n
                break
        else:
            rows.append([i])
            fill.append(n)
    T = max(fill)
    # Padding keeps id 0 (ignored by the loss) and pos 0 (a one-token example of its own).
    x = torch.zeros(len(rows), T, dtype=torch.long)
    y = torch.zeros(len(rows), T, dtype=torch.long)
    pos = torch.zeros(len(rows), T, dtype=torch.long)
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            ex, ey = examples[i]
            n = len(ex)
            x[r, at:at + n] = ex
            y[r, at:at + n] = ey
            pos[r, at:at + n] = torch.arange(n)
            at += n
    return x, y, pos
