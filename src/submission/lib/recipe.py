"""Recipe: a training recipe of one's own, beside the course's settings, which it never changes.

`with_recipe` gives a run's TrainerConfig the options of its recipe (--batch_size,
--learning_rate, --weight_decay, and --schedule_epochs, which fits the course's
learning-rate schedule to the run: `fitted_schedule`), in a copy of the course's.
`QuestionMix` is the pretraining of --pretrain_questions: the corpus's span
corruptions and a file of question<TAB>answer lines, as NameDataset makes them,
shuffled together every epoch (Allen-Zhu & Li, "Physics of Language Models, Part
3.1", arXiv 2309.14316: questions seen during pretraining make the facts of other
people extractable far sooner). Only the finetuning questions belong there, never
the dev or test ones. `SalientSpans` is --salient_spans=P: with probability P the
masked span is a capitalised run of words (a place, a person, an institution) and
the window keeps it whole (salient span masking: Guu et al., REALM, arXiv
2002.08909; Roberts et al., arXiv 2002.08910), with --salient_tail=N at most N
characters past it. `UnevenPeople` is --uneven_people=A:
each example's line drawn from a power law over the people instead of each line
once an epoch. `NameViews` is --name_views=P: with probability P the example is the
line's name alone, then one of its salient spans, in the form of a question's
example (name MASK span MASK), so that a fact is stored where the name alone
retrieves it, as "Where was X born?" must (Allen-Zhu & Li 3.1: a fact stored only
in the context of its one biography is not extracted by a question).
`SpanCompletions` is --span_completions=P: with probability P the example is the line
up to one of its salient spans, MASK, the span, MASK: a question's form, the fact
written right after the first MASK, where the finetuned model must write it.
`WarmupPeople` is --warmup_people=K --warmup_epochs=E: the run's first E epochs draw
from K people only, then every epoch goes through them all. Each is a
`CorpusView` of the dataset it wraps.
"""
import bisect
import copy
import itertools
import random
import re

import torch

from .batching import encode
from .files import UsageError
from .options import OPTIONS, warn

WORD = re.compile(r"[\w'-]+")

def fitted_schedule(config, epochs, dataset):
    """The course's schedule fitted to a run of `epochs` epochs (--schedule_epochs): the
    same linear warmup, then the cosine ending at the run's last step, where the course's
    max(0.1, cosine) has long reached its floor (0.1 x learning_rate; from 80 % of the
    run on). The course's final_tokens (200 epochs of block_size tokens) would leave a run
    shorter than 200 epochs near its peak rate when it stops. Returns a copy of config;
    the course's own TrainerConfig is left as it is."""
    fitted = copy.copy(config)
    fitted.max_epochs = epochs
    # The tokens of the whole run, as the course counts them: every position of every row.
    fitted.final_tokens = epochs * len(dataset) * (dataset.block_size - 1)
    return fitted


def with_recipe(config, options, dataset):
    """The course's TrainerConfig with a run's own recipe (--batch_size, --learning_rate,
    --weight_decay, --schedule_epochs) in a copy; the course's own is left as it is."""
    given = [o.config for o in OPTIONS if o.config and getattr(options, o.config) is not None]
    mine = copy.copy(config) if given else config
    for key in given:
        setattr(mine, key, getattr(options, key))
    return fitted_schedule(mine, options.schedule_epochs, dataset) if options.schedule_epochs else mine


class CorpusView:
    """A pretraining dataset made from another: its vocabulary, block size and length are the
    corpus's, and its per-item example is its trimmed one padded to the block, as the course's
    __getitem__ pads its own."""

    def __init__(self, corpus):
        self.corpus = corpus
        self.stoi, self.itos = corpus.stoi, corpus.itos
        self.block_size, self.vocab_size = corpus.block_size, corpus.vocab_size

    def __len__(self):
        return len(self.corpus)

    def __getitem__(self, idx):
        x, y = self.trimmed(idx)
        pad = torch.zeros(self.block_size - 1 - len(x), dtype=torch.long)
        return torch.cat([x, pad]), torch.cat([y, pad])


class QuestionMix(CorpusView):
    """A pretraining corpus and a set of questions as one dataset: items 0..len(corpus)-1 are the
    corpus's span corruptions, the rest the questions (NameDataset examples)."""

    def __init__(self, corpus, questions):
        super().__init__(corpus)
        self.questions = questions

    def __len__(self):
        return len(self.corpus) + len(self.questions)

    def part(self, idx):
        return (self.corpus, idx) if idx < len(self.corpus) else (self.questions, idx - len(self.corpus))

    def __getitem__(self, idx):
        dataset, i = self.part(idx)
        return dataset[i]

    def trimmed(self, idx):
        dataset, i = self.part(idx)
        return dataset.trimmed(i)


def line_name(doc):
    """The name a line begins with, as the course's wiki.txt writes it ("Ann Lee. Ann Lee was born
    ..."): its text before the first '. ' when every word there is capitalised; else ''."""
    head = doc.split('. ', 1)[0] if '. ' in doc else ''
    words = WORD.findall(head)
    return head if words and all(w[0].isupper() for w in words) else ''


def salient_spans(doc, longest):
    """(start, end) of every run of capitalised words (one space between them) that ends within the
    first `longest` characters, leaving out the line's name (line_name) and any word of it: the
    name is shown at the line's start, so masking it again teaches little."""
    name = line_name(doc)
    own = set(WORD.findall(name))
    spans, run = [], None
    for word in WORD.finditer(doc):
        capital = word.group()[0].isupper() and word.group() not in own and word.start() >= len(name)
        if capital and run and doc[run[1]:word.start()] == ' ':
            run[1] = word.end()
        else:
            if run:
                spans.append(tuple(run))
            run = [word.start(), word.end()] if capital else None
    if run:
        spans.append(tuple(run))
    return [(s, e) for s, e in spans if e <= longest]


def salient_window(length, end, longest, tail=None):
    """The bounds of a salient draw's window, the characters it keeps from the line's start, for a
    span ending at `end`: the span's end (at least the course's shortest, 4) to the course's
    longest, or to `tail` characters past the span (--salient_tail), each alike; a line shorter
    than that keeps all of it. Also the report's measure of how often a birthplace was shown
    (tools/report.shown_share)."""
    low = min(max(end, 4), length)
    high = min(length, longest) if tail is None else min(length, longest, end + tail)
    return low, max(low, high)


class SalientSpans(CorpusView):
    """The corpus's span corruption, where with probability `share` the masked span is one of the
    line's salient spans, drawn uniformly, and the window is cut after it, uniformly between its end
    and the course's longest (int(block_size * 7 / 8)), or with `tail` (--salient_tail=N) at most
    N characters past it; a line with none keeps the course's draw. The example's format is the
    course's: prefix MASK suffix MASK span MASK. A short tail makes the salient examples about as
    short as the course's (on wiki.txt the course's average 59 tokens, salient ones 84, 69 with a
    tail of 16), and a step's cost follows its tokens on the packed fast path."""

    def __init__(self, corpus, share, tail=None):
        super().__init__(corpus)
        self.share, self.tail = share, tail
        self.longest = int(corpus.block_size * 7 / 8)
        self.spans = [salient_spans(doc, self.longest) for doc in corpus.data]

    def __len__(self):
        return len(self.corpus)

    def trimmed(self, idx):
        if not self.share or random.random() >= self.share or not self.spans[idx]:  # share 0: the course's draws
            return self.corpus.trimmed(idx)
        start, end = random.choice(self.spans[idx])
        kept = random.randint(*salient_window(len(self.corpus.data[idx]), end, self.longest, self.tail))
        return self.corpus.corrupted(idx, kept, start, end - start)


class UnevenPeople(CorpusView):
    """Some people far more often than others (--uneven_people=A): every example's line is drawn
    anew, line i with probability proportional to 1 / rank_i ** A, the ranks a fixed shuffle of the
    lines (from `seed`), so an epoch is len(corpus) draws of a power law instead of each line once
    (Zucchet et al., arXiv 2503.21676: exponents 0.6-0.8 shorten the plateau before recall)."""

    def __init__(self, corpus, power, seed):
        super().__init__(corpus)
        ranks = torch.randperm(len(corpus), generator=torch.Generator().manual_seed(seed)).tolist()
        self.cumulative = list(itertools.accumulate((rank + 1) ** -power for rank in ranks))

    def trimmed(self, idx):
        line = bisect.bisect_right(self.cumulative, random.random() * self.cumulative[-1])
        return self.corpus.trimmed(min(line, len(self.cumulative) - 1))


class WarmupPeople(CorpusView):
    """A warm-up on a few people (--warmup_people=K --warmup_epochs=E): each of the run's first E
    epochs is as many examples as the corpus has lines, all from K of them (a fixed shuffle of the
    lines from `seed`), each about len/K times, in the epoch's own random order; from epoch E on,
    every line once an epoch as the course has it. Zucchet et al. (arXiv 2503.21676) find that
    recall appears after a plateau that grows with the number of people, and that starting on
    fewer people shortens it. The trainer takes each epoch's order from `epoch_lines`."""

    def __init__(self, corpus, people, epochs, seed):
        super().__init__(corpus)
        # The epochs are checked with the other options (options.check_warmup); the people need the corpus.
        if people >= len(corpus):
            raise UsageError(f'--warmup_people={people} is not fewer than the corpus\'s {len(corpus)} lines; '
                             f'give fewer')
        self.people = torch.randperm(len(corpus), generator=torch.Generator().manual_seed(seed)).tolist()[:people]
        self.epochs = epochs

    def trimmed(self, idx):
        return self.corpus.trimmed(idx)

    def epoch_lines(self, order, epoch):
        """The lines of an epoch whose shuffled order of every line is `order`."""
        if epoch >= self.epochs:
            return order
        return [self.people[i % len(self.people)] for i in order]


class SpanCompletions(CorpusView):
    """The line up to one of its salient spans, then the span (--span_completions=P): with
    probability `share` an example is prefix MASK span MASK, the span drawn uniformly from the
    line's salient spans that end within the course's longest window, the prefix the line before
    it, the loss on every position as on the course's examples; the other draws, and a line with
    no span, keep the example of the dataset it wraps. It is the course's prefix MASK suffix MASK
    span MASK without the suffix: span corruption writes the text after the first MASK, and a
    finetuning question ("Where was X born?" MASK place MASK) its answer."""

    def __init__(self, corpus, share, lines):
        super().__init__(corpus)
        self.share = share
        longest = int(self.block_size * 7 / 8)
        self.lines = [encode(doc[:longest], self.stoi) for doc in lines]
        self.spans = [salient_spans(doc, longest) for doc in lines]

    def trimmed(self, idx):
        if not self.spans[idx] or not self.share or random.random() >= self.share:  # the wrapped dataset's draws
            return self.corpus.trimmed(idx)
        start, end = random.choice(self.spans[idx])
        doc, mask = self.lines[idx], torch.ones(1, dtype=torch.long)  # id 1 is MASK
        s = torch.cat([doc[:start], mask, doc[start:end], mask])
        return s[:-1], s[1:]


class NameViews(CorpusView):
    """The line's name alone, then one of its salient spans (--name_views=P): with probability
    `share` an example is name MASK span MASK, the span drawn uniformly from the whole line's
    salient spans (salient_spans, past the course's window too), in NameDataset's form, the loss
    on MASK span MASK only, as a finetuning question's is on its answer; a line without a name or
    spans, and the other draws, keep the example of the dataset it wraps. The question "Where was
    X born?" gives the model the name and nothing of the biography: span corruption's windows
    always show the biography before a masked birthplace, and a fact learned only there is recalled
    from the biography, not from the name."""

    def __init__(self, corpus, share, lines):
        super().__init__(corpus)
        self.share = share
        self.views = []
        for doc in lines:
            name = line_name(doc)
            spans = [doc[s:e] for s, e in salient_spans(doc, len(doc))] if name else []
            # name MASK span MASK must fit a row of block_size - 1 inputs and targets
            spans = [span for span in spans if len(name) + len(span) + 2 <= self.block_size]
            self.views.append((encode(name, self.stoi), [encode(span, self.stoi) for span in spans]))
        viewed = sum(1 for _, spans in self.views if spans)
        if viewed < len(lines) / 2:
            warn(f'--name_views: only {viewed:,} of the corpus\'s {len(lines):,} lines begin with a name and hold '
                 f'a capitalised run of words past it (the course\'s wiki.txt: "Ann Lee. Ann Lee was born in '
                 f'Paris ..."); the others keep their usual examples')

    def trimmed(self, idx):
        name, spans = self.views[idx]
        if not spans or not self.share or random.random() >= self.share:  # the wrapped dataset's draws
            return self.corpus.trimmed(idx)
        mask = torch.ones(1, dtype=torch.long)  # id 1 is MASK
        s = torch.cat([name, mask, random.choice(spans), mask])
        x, y = s[:-1], s[1:].clone()
        y[:len(name) - 1] = 0  # PAD, ignored by the loss: the name is given, as a question is
        return x, y
