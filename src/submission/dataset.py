"""Datasets: the course's CharCorruptionDataset (pretraining) and NameDataset (finetuning).

Both yield (x, y) pairs of block_size-1 long tensors, as in the course. The
vocabulary always comes from the pretraining corpus: id 0 is PAD (□), id 1 is
MASK (⁇), ids 2.. the sorted distinct characters of the corpus.

The span-corruption random draws live in `corruption_spans()`, which the
per-item `CharCorruptionDataset.__getitem__` and the batched fast path in
batching.py both call, so the two make the same examples from the same
random state.
"""
import random

import torch
from torch.utils.data import Dataset

MASK_CHAR = u"\u2047"  # the doublequestion mark ⁇
PAD_CHAR = u"\u25A1"   # the empty square □


class NameDataset(Dataset):
    """Question/answer pairs "Where was X born?<TAB>place", one per line.

    x = question ⁇ answer ⁇ □..., y = □ for the question, then the shifted
    ⁇answer⁇□..., so the loss (ignore_index 0 = □) only teaches the answer.
    """

    def __init__(self, pretraining_dataset, data):
        self.MASK_CHAR = MASK_CHAR
        self.PAD_CHAR = PAD_CHAR
        self.itos = pretraining_dataset.itos
        self.stoi = pretraining_dataset.stoi
        self.block_size = pretraining_dataset.block_size
        # The course drops non-ASCII characters from this file before use.
        lines = data.encode('utf-8').decode('ascii', errors='ignore').split('\n')
        self.data = [line for line in lines if line.strip()]

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        inp, oup = self.data[idx].split('\t')
        x = inp + self.MASK_CHAR + oup + self.MASK_CHAR
        x = x + self.PAD_CHAR * (self.block_size - len(x))
        y = self.PAD_CHAR * (len(inp) - 1) + x[len(inp):]

        x = x[:-1]
        x = torch.tensor([self.stoi[c] for c in x], dtype=torch.long)
        y = torch.tensor([self.stoi[c] for c in y], dtype=torch.long)
        return x, y


def corruption_spans(doc_len, block_size):
    """Draw one span corruption for a document of doc_len characters.

    Returns (kept, start, masked): keep doc[:kept], mask doc[start:start+masked].
    kept is uniform on 4..int(block_size*7/8) (capped by the document's length);
    masked is uniform on [1, kept/2 - 1] (rounded), so it averages kept/4.
    Uses the `random` module, as the course does.
    """
    kept = min(doc_len, random.randint(4, int(block_size * 7 / 8)))
    if kept == 0:
        return 0, 0, 0
    masked = random.randint(1, max(1, round(kept / 2) - 1))
    start = random.randint(0, kept - masked)
    return kept, start, masked


class CharCorruptionDataset(Dataset):
    """Span corruption over the lines of a corpus, one line per item.

    Each item: prefix ⁇ suffix ⁇ masked ⁇ □..., a simplification of T5's
    objective with a single masked span; see corruption_spans().
    """

    def __init__(self, data, block_size):
        self.MASK_CHAR = MASK_CHAR
        self.PAD_CHAR = PAD_CHAR

        chars = list(sorted(list(set(data))))
        assert self.MASK_CHAR not in chars
        assert self.PAD_CHAR not in chars
        chars.insert(0, self.MASK_CHAR)
        chars.insert(0, self.PAD_CHAR)

        self.stoi = {ch: i for i, ch in enumerate(chars)}
        self.itos = {i: ch for i, ch in enumerate(chars)}

        data_size, vocab_size = len(data), len(chars)
        print('data has %d characters, %d unique.' % (data_size, vocab_size))

        self.block_size = block_size
        self.vocab_size = vocab_size
        # The course keeps split('\n'): a trailing newline gives one empty
        # item at the end, which is harmless (its example is ⁇⁇⁇ and padding).
        self.data = data.split('\n')

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        document = self.data[idx]
        kept, start, masked = corruption_spans(len(document), self.block_size)
        document = document[:kept]
        prefix = document[:start]
        masked_content = document[start:start + masked]
        suffix = document[start + masked:]

        s = prefix + self.MASK_CHAR + suffix + self.MASK_CHAR + masked_content + self.MASK_CHAR
        s = s + self.PAD_CHAR * (self.block_size - len(s))

        x = torch.tensor([self.stoi[c] for c in s[:-1]], dtype=torch.long)
        y = torch.tensor([self.stoi[c] for c in s[1:]], dtype=torch.long)
        return x, y
