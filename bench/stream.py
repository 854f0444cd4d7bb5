"""Does the fast path train on what the course's code trains on? Its stream of pretraining
examples against the course's, over many draws.

    python bench/stream.py [--epochs=N] [--corpus=FILE] [--people=FILE,FILE] [--seed=S]

Two streams of span-corrupted documents over the same epochs:

* the course's: its DataLoader (shuffle=True, batch_size 128) over
  CharCorruptionDataset, one padded item at a time through `__getitem__`;
* the fast path's: the batches the Trainer feeds the model (its epoch plan, then
  `batching.Prefetcher`: trimmed examples packed into rows), unpacked again by
  their positions, each matched by its text to one document of the step's batch.

For each it measures what decides what the model can learn: the truncation length,
the masked span's length and start, where each person's birthplace falls (wholly
in the visible text, wholly in the masked span, split by it, or cut off by the
truncation), and how often each document is drawn per epoch. Two distributions are
compared with Pearson's chi-square test on their histograms (p below 0.001 is a
difference). Then what a draw cannot show: each target's weight in the loss in a
course batch against the same examples packed, and the learning rate of every
optimizer step of the whole run against the course's formula (minGPT's trainer:
tokens grow by (y >= 0).sum() after each step, the first step at the full rate).
The course's corruption itself (truncation uniform on 4..int(7/8 block_size) for
documents at least that long, masked span a quarter of it on average) is checked
against its definition. Exits 1 when any check fails.
"""
import collections
import math
import os
import random
import sys

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recall  # noqa: E402

SRC = recall.SRC
from submission import helper  # noqa: E402
from submission.dataset import CharCorruptionDataset, MASK_CHAR  # noqa: E402
from submission.lib import batching, files, options  # noqa: E402
from submission.lib.files import UsageError  # noqa: E402
from submission.lib.options import Options  # noqa: E402
from submission.model import GPT, GPTConfig  # noqa: E402

BLOCK = 128
SIGNIFICANT = 1e-3  # p below this: the two streams differ
PLACES = ('visible', 'masked', 'split', 'cut off')


# ---------------------------------------------------------------- the two streams

class Indexed(torch.utils.data.Dataset):
    """The course's items with their index, so that each row of a batch names its document."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        x, y = self.dataset[idx]
        return x, y, idx


def course_stream(dataset, epochs):
    """(epoch, document, example ids) for every item of the course's loader, epoch by epoch."""
    loader = DataLoader(Indexed(dataset), shuffle=True, batch_size=128)
    for epoch in range(epochs):
        for x, y, indices in loader:
            for row in range(len(indices)):
                s = torch.cat([x[row, :1], y[row]])  # the padded string: x = s[:-1], y = s[1:]
                yield epoch, int(indices[row]), s[:int(s.nonzero().max()) + 1].tolist()


def fast_stream(dataset, epochs, seed):
    """(epoch, document, example ids) for every example of the fast path's packed batches."""
    trainer = fast_trainer(dataset, epochs, seed)
    batches = batching.Prefetcher(dataset, trainer.batch_plan(0, 0, 0), exact=False, device='cpu')
    try:
        for batch in batches:
            examples = unpack(batch.x, batch.y, batch.pos)
            for doc, ids in match(examples, batch.step.indices, dataset):
                yield batch.step.epoch, doc, ids
    finally:
        batches.close()


def fast_trainer(dataset, epochs, seed, **kw):
    """The Trainer of `run.py --function=pretrain` on the fast path, for `epochs` epochs."""
    model = GPT(GPTConfig(dataset.vocab_size, BLOCK, n_layer=1, n_head=1, n_embd=8, exact=False))
    options = Options(function='pretrain', exact=False, device='cpu', seed=seed, max_epochs=epochs,
                      progress=False, **kw)
    return helper.pretrain(dataset, BLOCK, model, options)[1]


def unpack(x, y, pos):
    """The examples of packed rows, each as its string of ids (x then y's last id); padding dropped."""
    out = []
    for row in range(x.size(0)):
        starts = (pos[row] == 0).nonzero().flatten().tolist() + [x.size(1)]
        for a, b in zip(starts, starts[1:]):
            if int(x[row, a]) != 0:  # padding is id 0; no example starts with it
                out.append(x[row, a:b].tolist() + [int(y[row, b - 1])])
    return out


def match(examples, indices, dataset):
    """Pair each example with the document of the batch it was cut from (its prefix, masked span
    and suffix put back together begin that document); longest first, each document once."""
    left = collections.Counter(indices)
    paired = []
    for ids in sorted(examples, key=len, reverse=True):
        kept = text_of(ids, dataset)[0]
        doc = next((i for i in left if left[i] and dataset.data[i].startswith(kept)), None)
        if doc is None:
            raise AssertionError(f'a packed example ({kept[:40]!r}) matches no document of its batch')
        left[doc] -= 1
        paired.append((doc, ids))
    if sum(left.values()):
        raise AssertionError(f'{sum(left.values())} document(s) of a batch are missing from its packed rows')
    return paired


def text_of(ids, dataset):
    """(kept text, start of the masked span, its length) of an example prefix MASK suffix MASK masked MASK."""
    parts = ''.join(dataset.itos[i] for i in ids).split(MASK_CHAR)
    if len(parts) != 4 or parts[3]:
        raise AssertionError(f'an example is not prefix MASK suffix MASK masked MASK: {parts!r}')
    prefix, suffix, masked = parts[:3]
    return prefix + masked + suffix, len(prefix), len(masked)


# ---------------------------------------------------------------- what a stream holds

def measure(stream, dataset, places):
    """Histograms of a stream. places: {document: (start, end) of its person's birthplace}."""
    m = {key: collections.Counter() for key in ('kept', 'kept_long', 'masked', 'start', 'quarter', 'place')}
    draws = collections.Counter()  # (epoch, document) -> times drawn
    longest = int(BLOCK * 7 / 8)
    n = 0
    for epoch, doc, ids in stream:
        kept_text, start, masked = text_of(ids, dataset)
        kept = len(kept_text)
        n += 1
        draws[epoch, doc] += 1
        m['kept'][kept] += 1
        if len(dataset.data[doc]) >= longest:
            m['kept_long'][kept] += 1
            m['quarter'][masked - kept / 4] += 1
        m['masked'][masked] += 1
        m['start'][start] += 1
        if doc in places:
            m['place'][where(places[doc], kept, start, masked)] += 1
    m['n'], m['draws'] = n, draws
    return m


def where(place, kept, start, masked):
    """Where a birthplace [a, b) falls in an example: visible, masked, split, or cut off."""
    a, b = place
    if b > kept:
        return 'cut off'
    if b <= start or a >= start + masked:
        return 'visible'
    return 'masked' if start <= a and b <= start + masked else 'split'


def birthplaces(dataset, people):
    """{document: (start, end)} of the first biography of each person whose place it mentions."""
    lines = dataset.data
    first = {}
    for i, line in enumerate(lines):
        first.setdefault(line.split('.')[0], i)
    out = {}
    for name, place in people:
        doc = first.get(name)
        if doc is None:
            doc = next((i for i, line in enumerate(lines) if line.startswith(name) or name in line), None)
        at = recall.place_at(lines[doc], name, place) if doc is not None else -1
        if at >= 0:
            out[doc] = (at, at + len(place))
    return out


# ---------------------------------------------------------------- tests of two samples

def chi_square(a, b, least=5):
    """Pearson's chi-square test that two histograms (Counters) come from one distribution:
    (statistic, degrees of freedom, p). Bins with fewer than `least` expected counts are pooled."""
    na, nb = sum(a.values()), sum(b.values())
    bins, pool, stat, dof = sorted(set(a) | set(b), key=str), [0, 0], 0.0, -1
    cells = []
    for key in bins:
        pool[0] += a.get(key, 0)
        pool[1] += b.get(key, 0)
        if sum(pool) * min(na, nb) / (na + nb) >= least:
            cells.append(pool)
            pool = [0, 0]
    if sum(pool) and cells:
        cells[-1] = [cells[-1][0] + pool[0], cells[-1][1] + pool[1]]
    for ca, cb in cells:
        total = ca + cb
        ea, eb = total * na / (na + nb), total * nb / (na + nb)
        stat += (ca - ea) ** 2 / ea + (cb - eb) ** 2 / eb
        dof += 1
    return stat, max(dof, 0), chi2_p(stat, dof)


def chi2_p(stat, dof):
    """The chi-square distribution's upper tail, through the Wilson-Hilferty cube-root normal
    approximation (within about 0.01 of the exact p from a few degrees of freedom on)."""
    if dof <= 0:
        return 1.0
    z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


def against_uniform(counts, low, high):
    """chi_square of a histogram against the uniform distribution on low..high, as an equal-sized
    ideal sample; with counts outside the range the p is 0."""
    n = sum(counts.values())
    if any(k < low or k > high for k in counts):
        return float('inf'), 0, 0.0
    ideal = collections.Counter({k: n / (high - low + 1) for k in range(low, high + 1)})
    stat = sum((counts.get(k, 0) - e) ** 2 / e for k, e in ideal.items())
    return stat, high - low, chi2_p(stat, high - low)


def mean(counter):
    n = sum(counter.values())
    return sum(k * v for k, v in counter.items()) / n if n else float('nan')


def std(counter):
    mu, n = mean(counter), sum(counter.values())
    return math.sqrt(sum(v * (k - mu) ** 2 for k, v in counter.items()) / n) if n else float('nan')


# ---------------------------------------------------------------- what a draw cannot show

def target_weights(model, x, y, pos):
    """Each target's weight in the loss: with the head's weights zero every logit is 0, so the
    loss's gradient at a target's own logit is its weight times (1/V - 1)."""
    grads = {}

    def keep_gradient(module, inputs, logits):
        logits.register_hook(lambda g: grads.update(g=g))

    handle = model.head.register_forward_hook(keep_gradient)
    try:
        _, loss = model(x, y) if pos is None else model(x, y, pos=pos)
        loss.backward()
    finally:
        handle.remove()
    V = grads['g'].size(-1)
    at_target = grads['g'].gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return torch.where(y != 0, at_target / (1 / V - 1), torch.zeros_like(at_target))


def weights_differ(dataset, seed, batches=3):
    """The largest difference, over a few batches, between an example's share of the loss in the
    course's padded rows and in the fast path's packed rows, cut from the same draws; and the
    largest difference of a target's weight from 1/(the batch's targets)."""
    model = GPT(GPTConfig(dataset.vocab_size, BLOCK, n_layer=1, n_head=1, n_embd=8, exact=False))
    with torch.no_grad():
        model.head.weight.zero_()
    model.eval()
    rng = random.Random(seed)
    worst_example = worst_token = 0.0
    for _ in range(batches):
        indices = rng.sample(range(len(dataset)), min(128, len(dataset)))
        state = random.getstate()
        x, y, _ = batching.make_batch(dataset, indices, exact=True)
        random.setstate(state)
        px, py, ppos = batching.make_batch(dataset, indices, exact=False)
        course = target_weights(model, x, y, None)
        packed = target_weights(model, px, py, ppos)
        n = int((y != 0).sum())
        worst_token = max(worst_token, float((course[y != 0] - 1 / n).abs().max()),
                          float((packed[py != 0] - 1 / n).abs().max()))
        # Each example's share: its row's sum in the course's batch, its segment's in the packed one.
        shares_course = sorted(course.sum(1).tolist())
        segments = (ppos == 0).cumsum(1)
        shares_packed = sorted(float(packed[r][segments[r] == s].sum()) for r in range(px.size(0))
                               for s in segments[r].unique().tolist() if int(px[r][segments[r] == s][0]) != 0)
        worst_example = max(worst_example, max(abs(a - b) for a, b in zip(shares_course, shares_packed)))
        if len(shares_course) != len(shares_packed):
            worst_example = float('inf')
    return worst_example, worst_token


def course_rates(n_docs, epochs, config, width):
    """The learning rate of every optimizer step of the course's trainer (minGPT): the first at
    config.learning_rate; after each step tokens += (y >= 0).sum() and the rate is set anew."""
    rates, tokens, lr = [], 0, config.learning_rate
    for _ in range(epochs):
        for start in range(0, n_docs, config.batch_size):
            rates.append(lr)
            tokens += min(config.batch_size, n_docs - start) * width
            if tokens < config.warmup_tokens:
                mult = tokens / max(1, config.warmup_tokens)
            else:
                progress = (tokens - config.warmup_tokens) / max(1, config.final_tokens - config.warmup_tokens)
                mult = max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))
            lr = config.learning_rate * mult
    return rates


def fast_rates(dataset, epochs, seed):
    """The learning rate of every optimizer step of the fast path's Trainer, running its own loop
    over the course's whole schedule, with the batches' contents and the model's step left out."""
    trainer = fast_trainer(dataset, epochs, seed)
    rates = []

    def step(x, y, pos, targets):
        rates.append(trainer.state.optimizer.param_groups[0]['lr'])
        return torch.tensor(1.0)

    def tiny(dataset_, indices, exact, packed=True):
        return torch.ones(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.long), None

    trainer.optimize = step
    real, batching.make_batch = batching.make_batch, tiny
    try:
        trainer.train()
    finally:
        batching.make_batch = real
    return rates, trainer.config


# ---------------------------------------------------------------- the report

def compare(corpus, people_files, epochs, seed, rate_epochs=650, out=print):
    """Every check, one line each; returns the number that failed."""
    random.seed(seed)
    torch.manual_seed(seed)
    dataset = CharCorruptionDataset(files.read_text(corpus, '--corpus'), BLOCK)
    longest = int(BLOCK * 7 / 8)
    places = {}
    for path in people_files:
        places.update(located_birthplaces(dataset, path, longest, out))
    failed = 0

    def check(name, ok, detail):
        nonlocal failed
        failed += not ok
        out(f'{"ok  " if ok else "FAIL"} {name}: {detail}')

    out(f'{len(dataset)} documents, {epochs} epoch{"s" * (epochs != 1)} ({len(dataset) * epochs:,} draws a stream)')
    course = measure(course_stream(dataset, epochs), dataset, places)
    fast = measure(fast_stream(dataset, epochs, seed), dataset, places)
    for m in (course, fast):
        counts = collections.Counter(m['draws'].values())
        m['once'] = counts == collections.Counter({1: len(dataset) * epochs})
    check('draws per document per epoch', course['once'] and fast['once'],
          'every document exactly once an epoch in ' + ' and '.join(
              name for name, m in (('the course\'s stream', course), ('the fast path\'s', fast)) if m['once'])
          if course['once'] or fast['once'] else 'neither stream draws every document once an epoch')
    distribution_checks(course, fast, longest, check)
    worst_example, worst_token = weights_differ(dataset, seed)
    check('weights in the loss', worst_example < 1e-6 and worst_token < 1e-6,
          f'an example\'s share of the loss, padded against packed: largest difference {worst_example:.1e}; '
          f'a target\'s weight against 1/(targets of the batch): {worst_token:.1e}')
    rates, config = fast_rates(dataset, rate_epochs, seed)
    expected = course_rates(len(dataset), rate_epochs, config, BLOCK - 1)
    worst = max((abs(a - b) / b for a, b in zip(rates, expected)), default=float('inf'))
    check('learning rate at every step', len(rates) == len(expected) and worst < 1e-12,
          f'{len(rates):,} steps (course: {len(expected):,}); largest relative difference {worst:.1e}; '
          f'the rate ends at {rates[-1] / config.learning_rate:.3f} of its peak')
    return failed


def located_birthplaces(dataset, path, longest, out):
    people = recall.people(path)
    mine = birthplaces(dataset, people)
    out(f'{os.path.basename(path)}: {len(mine)} of {len(people)} people have a birthplace in their biography, '
        f'{sum(b > longest for _, b in mine.values())} of them ending past character {longest} (never seen '
        f'whole: the course keeps at most {longest})')
    return mine


def distribution_checks(course, fast, longest, check):
    """The two streams' measured examples drawn from the same distributions, and the course's rules held."""
    for key, what in (('kept', 'truncation length'), ('masked', 'masked span length'),
                      ('start', 'masked span start'), ('place', 'birthplace in the example')):
        stat, dof, p = chi_square(course[key], fast[key])
        if key == 'place':
            shares = lambda m: ', '.join(f'{k} {100 * m[key][k] / max(1, sum(m[key].values())):.2f} %' for k in PLACES)
            detail = f'course {shares(course)}; fast path {shares(fast)}'
        else:
            detail = f'mean {mean(course[key]):.3f} (course) and {mean(fast[key]):.3f} (fast path)'
        check(what, p >= SIGNIFICANT, f'{detail}; chi-square {stat:.1f} on {dof} dof, p = {p:.3f}')
    for name, m in (('course', course), ('fast path', fast)):
        stat, dof, p = against_uniform(m['kept_long'], 4, longest)
        check(f'{name}: truncation of documents of {longest}+ characters uniform on 4..{longest}', p >= SIGNIFICANT,
              f'mean {mean(m["kept_long"]):.2f} (uniform: {(4 + longest) / 2}); chi-square {stat:.1f} on {dof} dof, '
              f'p = {p:.3f}')
        bias = mean(m['quarter'])
        check(f'{name}: masked span a quarter of the kept text', abs(bias) < 1.5 and std(m['quarter']) > 0.01,
              f'mean(masked - kept/4) = {bias:.3f} (the course grader allows 1.5)')


def main(argv=None):
    parser = options.ArgumentParser(prog='bench/stream.py', description=__doc__.split('\n')[0])
    data = os.path.join(SRC, 'data')
    parser.add_argument('--corpus', default=os.path.join(data, 'wiki.txt'))
    parser.add_argument('--people', default=','.join(os.path.join(data, f) for f in
                                                     ('birth_places_train.tsv', 'birth_dev.tsv')),
                        help='question files whose people\'s birthplaces are followed (comma-separated)')
    parser.add_argument('--epochs', default='35', help='epochs of each stream (default 35: '
                        'over 100,000 draws of the course\'s 2,938 documents)')
    parser.add_argument('--rate_epochs', default='650', help='epochs of the learning-rate check')
    parser.add_argument('--seed', default='0')
    args = parser.parse_args(argv)
    args.epochs = options.whole_number(args.epochs, '--epochs', high=options.EPOCH_LIMIT)
    args.rate_epochs = options.whole_number(args.rate_epochs, '--rate_epochs', high=options.EPOCH_LIMIT)
    args.seed = options.whole_number(args.seed, '--seed', low=0, high=options.SEED_LIMIT - 1)
    people = [p for p in args.people.split(',') if p]
    for path, option in [(args.corpus, '--corpus')] + [(p, '--people') for p in people]:
        files.input_file(path, option)
    failed = compare(args.corpus, people, args.epochs, args.seed, args.rate_epochs)
    print(f'{failed} check(s) failed' if failed else 'every check passed: the fast path trains on the course\'s '
          'stream of examples')
    return 1 if failed else 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except UsageError as e:
        sys.exit(f'error: {e}')
