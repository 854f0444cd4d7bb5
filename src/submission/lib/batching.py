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

`Prefetcher` builds the batches of a run ahead, in a background thread, so
that a GPU never waits for Python to pack the next one.
"""
import collections
import queue
import random
import threading

import torch

# One step of a run's plan (Trainer.batch_plan): its epoch, its index in the epoch, the course
# rows it counts, this rank's dataset indices, and this rank's weight (0 for a rank with none).
Step = collections.namedtuple('Step', 'epoch index rows indices weight')
# A step's batch: x, y, pos (None unless packed), its non-pad target count, and the batch
# stream's `random` state after it was built.
Batch = collections.namedtuple('Batch', 'step x y pos targets random_state')


def make_batch(dataset, indices, exact, packed=True):
    """(x, y, pos) for the given dataset indices: the course's full rows in exact mode;
    else trimmed examples packed into rows, or (packed=False, for the perceiver) one a row,
    cut to the longest; pos is None but for packed rows."""
    if exact:
        xs, ys = zip(*(dataset[i] for i in indices))
        return torch.stack(xs), torch.stack(ys), None
    examples = [dataset.trimmed(i) for i in indices]
    if packed:
        return pack(examples, dataset.block_size - 1)
    # Padding at a row's end changes nothing before it, and the loss ignores it.
    T = max(len(x) for x, _ in examples)
    x = torch.zeros(len(examples), T, dtype=torch.long)
    y = torch.zeros(len(examples), T, dtype=torch.long)
    for r, (ex, ey) in enumerate(examples):
        x[r, :len(ex)], y[r, :len(ey)] = ex, ey
    return x, y, None


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
    fill, place = [], {}  # tokens in each row so far; example -> (row, column)
    for i in order:
        n = len(examples[i][0])
        r = next((r for r, f in enumerate(fill) if f + n <= width), len(fill))
        if r == len(fill):
            fill.append(0)
        place[i] = (r, fill[r])
        fill[r] += n
    T = max(fill)
    # Every token written at once to its row and column (not three copies an
    # example). Padding keeps id 0 (ignored by the loss) and pos 0 (a one-token
    # example of its own).
    lengths = torch.tensor([len(examples[i][0]) for i in order])
    # Each token's position inside its own example, in the examples' joined order.
    inside = torch.arange(int(lengths.sum())) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    starts = torch.tensor([r * T + c for r, c in (place[i] for i in order)])
    at = torch.repeat_interleave(starts, lengths) + inside
    x, y, pos = (torch.zeros(len(fill) * T, dtype=torch.long) for _ in range(3))
    x[at] = torch.cat([examples[i][0] for i in order])
    y[at] = torch.cat([examples[i][1] for i in order])
    pos[at] = inside
    return x.view(len(fill), T), y.view(len(fill), T), pos.view(len(fill), T)


class Prefetcher:
    """The batches of a run, in order; on a GPU built up to `ahead` steps in advance by a thread.

    plan: an iterator of Steps (Trainer.batch_plan); each is handed out as its Batch.

    Batches come from the dataset's random draws (Python's `random`, as the
    course's dataset uses). While training runs the thread is that stream's
    only user, so the batches, and the random state after each, are exactly
    those of building them in line. `random_state` is the state after the last
    batch handed out: what a checkpoint saves, and what the stream is set back
    to on close, so nothing after training sees the batches built ahead.

    packed: see make_batch. background: build in a thread (default: when the steps run on another
    device than the CPU). On a CPU the thread only takes time from the step's
    own threads, so there batches are built in line.
    """

    def __init__(self, dataset, plan, exact, device, packed=True, background=None, ahead=4):
        self.dataset, self.plan, self.exact, self.packed = dataset, plan, exact, packed
        self.pin = str(device).startswith('cuda')  # pinned memory: copies that overlap the GPU's work
        self.random_state = random.getstate()
        self.thread = None
        if background if background is not None else not str(device).startswith('cpu'):
            self.queue = queue.Queue(maxsize=ahead)
            self.stopping = threading.Event()
            self.thread = threading.Thread(target=self.fill, name='batches', daemon=True)
            self.thread.start()

    def build(self, step):
        x, y, pos = make_batch(self.dataset, step.indices, self.exact, self.packed)
        targets = int((y != 0).sum())
        if self.pin:
            x, y = x.pin_memory(), y.pin_memory()
            pos = None if pos is None else pos.pin_memory()
        return Batch(step, x, y, pos, targets, random.getstate())

    def fill(self):
        try:
            for step in self.plan:
                if not self.put(self.build(step)):
                    return
            self.put(None)
        except BaseException as e:  # handed to the training loop, which raises it
            self.put(e)

    def put(self, item):
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self):
        return self

    def __next__(self):
        if self.thread is None:
            batch = self.build(next(self.plan))
        else:
            batch = self.queue.get()
            if batch is None:
                raise StopIteration
            if isinstance(batch, BaseException):
                raise batch
        self.random_state = batch.random_state
        return batch

    def close(self):
        if self.thread is not None:
            self.stopping.set()
            self.thread.join()
        random.setstate(self.random_state)
