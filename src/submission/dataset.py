"""Datasets: the course's CharCorruptionDataset (pretraining) and NameDataset (finetuning).

Both yield (x, y) pairs of block_size-1 long tensors, as in the course. The
vocabulary always comes from the pretraining corpus: id 0 is PAD (□), id 1 is
MASK (⁇), ids 2.. the sorted distinct characters of the corpus.

The span-corruption random draws live in `corruption_spans()`, which both
the per-item `CharCorruptionDataset.__getitem__` and its `trimmed()` (the
fast path's example: ids without the trailing padding, for packed batches in
batching.py) call, so the two make the same example from the same random
state. NameDataset's `trimmed()` cuts its fixed examples the same way.
"""
import random

import torch
from torch.utils.data import Dataset

from .lib.batching import encode
from .lib.files import UsageError, read_text
from .lib.options import warn

MASK_CHAR = u"\u2047"  # the doublequestion mark ⁇
PAD_CHAR = u"\u25A1"   # the empty square □


class NameDataset(Dataset):
    """Question/answer pairs "Where was X born?<TAB>place", one per line.

    x = question ⁇ answer ⁇ □..., y = □ for the question, then the shifted
    ⁇answer⁇□..., so the loss (ignore_index 0 = □) only teaches the answer.
    """

    def __init__(self, data, pretraining_dataset):
        self.MASK_CHAR = MASK_CHAR
        self.PAD_CHAR = PAD_CHAR
        self.itos = pretraining_dataset.itos
        self.stoi = pretraining_dataset.stoi
        self.block_size = pretraining_dataset.block_size
        # The course drops non-ASCII characters from this file before use.
        lines = data.encode('utf-8').decode('ascii', errors='ignore').split('\n')
        self.data = [line for line in lines if line.strip()]
        self._trimmed = None

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

    def trimmed(self, idx):
        """self[idx] without its trailing padding: (x, y) of equal length.

        The items are fixed, so they are built once, with __getitem__ itself."""
        if self._trimmed is None:
            self._trimmed = []
            for i in range(len(self)):
                x, y = self[i]
                n = int(y.nonzero().max()) + 1
                self._trimmed.append((x[:n], y[:n]))
        return self._trimmed[idx]


def check_finetune_corpus(path, stoi, block_size):
    """Refuse, by line number, a line the course's NameDataset cannot turn into an example; warn
    of what it takes but cannot learn from (characters it drops, answers left empty)."""
    raw = read_text(path, '--finetune_corpus_path')
    # As NameDataset reads it: non-ASCII characters dropped, blank lines skipped.
    text = raw.encode('utf-8').decode('ascii', errors='ignore')
    dropped = sorted(set(raw) - set(text))
    if dropped:
        warn(f'the course drops characters outside ASCII from {path}: {"".join(dropped)!r} '
                     f'are not learned')
    numbered = [(n, line) for n, line in enumerate(text.split('\n'), 1) if line.strip()]
    if not numbered:
        raise UsageError(f'finetune corpus {path} is empty; pass a file of question<TAB>answer lines')
    empty = []
    for n, line in numbered:
        if line.count('\t') != 1:
            raise UsageError(f'{path} line {n} is not "question<TAB>answer"; fix that line')
        question, answer = line.split('\t')
        if not question:
            raise UsageError(f'{path} line {n} has an empty question; fix or remove that line')
        if not answer.strip():
            empty.append(n)
        if len(question) + len(answer) + 2 > block_size:
            raise UsageError(f'{path} line {n} is too long: question and answer are {len(question) + len(answer)} '
                             f'characters, at most {block_size - 2} fit the block of {block_size}; shorten it')
        missing = sorted(set(line) - set(stoi) - {'\t'})
        if missing:
            raise UsageError(f'{path} line {n} has characters that are not in the pretraining corpus '
                             f'({"".join(missing)!r}); the vocabulary comes from --pretrain_corpus_path')
    if empty:
        warn(f'{path} has {len(empty)} line(s) whose answer is empty once the course has dropped its '
                     f'non-ASCII characters (line {empty[0]} first): the model learns to answer nothing there')


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
        self._ids = None  # the lines as ids, encoded once on first use by trimmed()

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

    def trimmed(self, idx):
        """self[idx] without its trailing padding, from the same random draws:
        (x, y) of equal length, cut from ids encoded once, with no per-character loop."""
        return self.corrupted(idx, *corruption_spans(len(self.data[idx]), self.block_size))

    def corrupted(self, idx, kept, start, masked):
        """The trimmed example of line idx for one draw of corruption_spans (or a recipe's own)."""
        if self._ids is None:
            self._ids = torch.split(encode(''.join(self.data), self.stoi), [len(doc) for doc in self.data])
        doc = self._ids[idx]
        mask = torch.ones(1, dtype=torch.long)  # id 1 is MASK
        s = torch.cat([doc[:start], mask, doc[start + masked:kept], mask, doc[start:start + masked], mask])
        return s[:-1], s[1:]
