"""The later course years' variants: perceiver (a bottleneck of learned slots) and rope (rotary embeddings).

Their params move to and from plain course-style models of those years written
here, their fast paths match their exact ones (logits, loss, gradients,
greedy predictions), and the command lines, the demo and the report take them.
"""
import json
import math
import os
import random

import pytest
import torch
import torch.nn as nn
from torch.nn import functional as F

from conftest import assert_one_line_error, lines_of, read, run, run_py
from submission import GPT, CharCorruptionDataset, GPTConfig, NameDataset, apply_rotary_emb, precompute_rotary_emb
from submission.dataset import corruption_spans
from submission.lib import batching
from tools import demo, evaluate, report
from test_course_contract import CourseAttention, CourseBlock

N_LAYER, N_HEAD, N_EMBD = 4, 8, 256


# ---- the course's models of those years, written plainly -----------------------------------

class CourseCrossAttention(CourseAttention):
    """The course's CausalCrossAttention: CausalSelfAttention's modules, keys and values from x_kv."""

    def forward(self, x_kv, x_q):
        Bk, Tk, C = x_kv.size()
        Bq, Tq, _ = x_q.size()
        h = self.n_head
        k = self.key(x_kv).view(Bk, Tk, h, C // h).transpose(1, 2)
        v = self.value(x_kv).view(Bk, Tk, h, C // h).transpose(1, 2)
        q = self.query(x_q).view(Bq, Tq, h, C // h).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.mask[:, :, :Tq, :Tk] == 0, -1e10)
        att = self.attn_drop(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(max(Bk, Bq), Tq, C)
        return self.resid_drop(self.proj(y))


def course_mlp(c):
    return nn.Sequential(nn.Linear(c.n_embd, 4 * c.n_embd), nn.GELU(), nn.Linear(4 * c.n_embd, c.n_embd),
                         nn.Dropout(c.resid_pdrop))


class CourseDown(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.C = nn.Parameter(torch.zeros(1, c.bottleneck_dim, c.n_embd))
        self.ln1, self.ln2 = nn.LayerNorm(c.n_embd), nn.LayerNorm(c.n_embd)
        self.attn, self.mlp = CourseCrossAttention(c), course_mlp(c)

    def forward(self, x):
        z = self.C + self.attn(x, self.ln1(self.C))
        return z + self.mlp(self.ln2(z))


class CourseUp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.n_embd), nn.LayerNorm(c.n_embd)
        self.attn, self.mlp = CourseCrossAttention(c), course_mlp(c)

    def forward(self, y, x):
        u = x + self.attn(self.ln1(y), x)
        return u + self.mlp(self.ln2(u))


class CoursePerceiverGPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.tok_emb = nn.Embedding(c.vocab_size, c.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, c.block_size, c.n_embd))
        self.drop = nn.Dropout(c.embd_pdrop)
        self.down_block = CourseDown(c)
        block_size, c.block_size = c.block_size, c.bottleneck_dim
        self.blocks = nn.Sequential(*[CourseBlock(c) for _ in range(c.n_layer - 2)])
        c.block_size = block_size
        self.up_block = CourseUp(c)
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)

    def forward(self, idx):
        x = self.drop(self.tok_emb(idx) + self.pos_emb[:, :idx.size(1)])
        return self.head(self.ln_f(self.up_block(self.blocks(self.down_block(x)), x)))


class CourseRopeAttention(CourseAttention):
    """The rope year's attention: the course's complex-number rotation of q and k."""

    def __init__(self, c):
        nn.Module.__init__(self)
        self.key, self.query, self.value = (nn.Linear(c.n_embd, c.n_embd) for _ in range(3))
        self.attn_drop, self.resid_drop = nn.Dropout(c.attn_pdrop), nn.Dropout(c.resid_pdrop)
        self.proj = nn.Linear(c.n_embd, c.n_embd)
        hs = c.n_embd // c.n_head
        theta = 10000.0 ** (-torch.arange(0, hs, 2).float() / hs)
        angles = torch.arange(c.block_size).float()[:, None] * theta
        self.register_buffer("rope_cache", torch.stack([angles.cos(), angles.sin()], -1))
        self.register_buffer("mask", torch.tril(torch.ones(c.block_size, c.block_size))
                             .view(1, 1, c.block_size, c.block_size))
        self.n_head = c.n_head

    def rotate(self, x):
        T = x.size(2)
        xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(xc * torch.view_as_complex(self.rope_cache[:T])).flatten(-2)

    def forward(self, x):
        B, T, C = x.size()
        split = lambda t: t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k, q, v = self.rotate(split(self.key(x))), self.rotate(split(self.query(x))), split(self.value(x))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float('-inf'))
        y = (self.attn_drop(F.softmax(att, dim=-1)) @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))


class CourseRopeGPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.tok_emb = nn.Embedding(c.vocab_size, c.n_embd)
        self.drop = nn.Dropout(c.embd_pdrop)
        self.blocks = nn.Sequential(*[CourseBlock(c) for _ in range(c.n_layer)])
        for block in self.blocks:
            block.attn = CourseRopeAttention(c)
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)

    def forward(self, idx):
        return self.head(self.ln_f(self.blocks(self.drop(self.tok_emb(idx)))))


COURSE_MODELS = {'perceiver': CoursePerceiverGPT, 'rope': CourseRopeGPT}
FLAGS = {'perceiver': dict(perceiver=True, bottleneck_dim=32), 'rope': dict(rope=True)}


def conf(variant, vocab=256, **kw):
    return GPTConfig(vocab, 128, n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD, **FLAGS[variant], **kw)


# ---- params move between this project and the course's code of those years -----------------

@pytest.mark.parametrize('variant, params', [('perceiver', 3_331_584), ('rope', 3_290_624)])
def test_keys_shapes_and_parameters_are_the_courses(variant, params, tmp_path):
    torch.manual_seed(0)
    ours = GPT(conf(variant))
    assert sum(p.numel() for p in ours.parameters()) == params
    path = tmp_path / f'{variant}.params'
    torch.save(ours.state_dict(), path)
    course = COURSE_MODELS[variant](conf(variant))
    course.load_state_dict(torch.load(path, weights_only=True))  # strict: the same keys and shapes
    assert list(course.state_dict()) == list(ours.state_dict())  # and in the same order
    ours.eval(), course.eval()
    idx = torch.randint(0, 256, (3, 127))
    assert torch.allclose(ours(idx)[0], course(idx), atol=1e-5)
    # ...and back: the course's weights in our fast model
    torch.manual_seed(1)
    course2 = COURSE_MODELS[variant](conf(variant))
    for p in course2.parameters():  # non-trivial everywhere, C and the LayerNorms included
        p.data.normal_(0, 0.05)
    fast = GPT(conf(variant, exact=False))
    fast.load_state_dict(course2.state_dict())
    fast.eval(), course2.eval()
    assert torch.allclose(fast(idx)[0], course2(idx), atol=1e-4)


def test_rotary_table_and_rotation():
    cache = precompute_rotary_emb(32, 128)
    assert cache.shape == (128, 16, 2)
    assert torch.allclose(cache[5, 3], torch.tensor([math.cos(5 * 10000 ** (-6 / 32)),
                                                      math.sin(5 * 10000 ** (-6 / 32))]), atol=1e-6)
    x = torch.randn(2, 8, 10, 32)
    y = apply_rotary_emb(x, cache)
    assert torch.allclose(y[:, :, 0], x[:, :, 0])  # position 0: no rotation
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-5)
    pairs = x[0, 0, 3].view(-1, 2)
    want = torch.stack([pairs[:, 0] * cache[3, :, 0] - pairs[:, 1] * cache[3, :, 1],
                        pairs[:, 0] * cache[3, :, 1] + pairs[:, 1] * cache[3, :, 0]], -1).flatten()
    assert torch.allclose(y[0, 0, 3], want, atol=1e-6)


# ---- fast against exact --------------------------------------------------------------------

@pytest.fixture(scope='module')
def pre(world_data):
    return CharCorruptionDataset(read(world_data, 'wiki.txt'), 128)


def small_pair(pre, variant, **kw):
    """The course computation and the fast one, same weights, small, dropout off."""
    torch.manual_seed(0)
    flags = dict(perceiver=True, bottleneck_dim=16) if variant == 'perceiver' else FLAGS[variant]
    c = dict(n_layer=4, n_head=4, n_embd=64, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0, **flags, **kw)
    exact = GPT(GPTConfig(pre.vocab_size, 128, **c))
    fast = GPT(GPTConfig(pre.vocab_size, 128, exact=False, **c))
    fast.load_state_dict(exact.state_dict())
    return exact, fast


@pytest.mark.parametrize('variant', ['perceiver', 'rope'])
def test_fast_batches_give_the_exact_loss_and_gradients(pre, variant):
    """rope packs rows (each token rotated by its own position in its example); the perceiver
    cannot, and trims rows to the longest example instead. Same loss, same gradients."""
    exact, fast = small_pair(pre, variant)
    exact.train(), fast.train()
    idx = list(range(64))
    random.seed(5)
    x, y, _ = batching.make_batch(pre, idx, exact=True)
    random.seed(5)
    packed = variant == 'rope'
    fx, fy, pos = batching.make_batch(pre, idx, exact=False, packed=packed)
    assert (fy != 0).sum() == (y != 0).sum()
    assert (fx.shape[0] < x.shape[0]) == packed and fx.shape[1] <= x.shape[1]
    ref = exact(x, y)[1]
    ref.backward()
    grads = {n: p.grad.clone() for n, p in exact.named_parameters()}
    exact.zero_grad()
    same_math = exact(fx, fy, pos=pos)[1]
    assert abs(same_math - ref) < 1e-5
    same_math.backward()
    for n, p in exact.named_parameters():
        assert torch.allclose(p.grad, grads[n], atol=1e-6), n
    assert abs(fast(fx, fy, pos=pos)[1] - ref) < 1e-4  # the fused kernel too


@pytest.mark.parametrize('variant', ['perceiver', 'rope'])
def test_cached_batched_greedy_equals_one_at_a_time(pre, variant, world_data):
    """Every dev and test question and prompts cut from the corpus at lengths 5 to 104, so that
    rows cross the perceiver's 16 slots at different steps: the same predictions as the course's
    one-question-at-a-time sample()."""
    exact, fast = small_pair(pre, variant)
    with torch.no_grad():
        exact.head.weight.mul_(40)
        if variant == 'perceiver':
            exact.pos_emb.normal_(0, 0.5)
        fast.load_state_dict(exact.state_dict())
    qs = [l.split('\t')[0] for l in lines_of(world_data, 'birth_dev.tsv') + lines_of(world_data, 'birth_test.tsv')]
    qs += [doc[:5 + i] for i, doc in enumerate(pre.data[:100])]
    slow = evaluate.predict_places(exact.eval(), qs, pre.stoi, pre.itos, 'cpu', exact=True)
    quick = evaluate.predict_places(fast.eval(), qs, pre.stoi, pre.itos, 'cpu')
    assert len(set(slow)) > 50
    assert quick == slow


@pytest.mark.parametrize('variant', ['vanilla', 'synthesizer', 'rope'])
def test_common_prefix_goes_through_the_model_once(pre, variant, world_data, monkeypatch):
    """Questions that all start "Where was " (one of them no more than that), prefilled in groups
    of at most 256 tokens: each group's prefix is run once, as a batch of one row, then the
    group's rest, and every prediction is still the course's."""
    flags = {'vanilla': {}, 'synthesizer': dict(synthesizer=True), 'rope': dict(rope=True)}[variant]
    torch.manual_seed(0)
    exact = GPT(GPTConfig(pre.vocab_size, 128, n_layer=2, n_head=4, n_embd=32, **flags))
    with torch.no_grad():
        exact.head.weight.mul_(40)
        for blk in exact.blocks:
            if variant == 'synthesizer':
                blk.attn.w2.normal_(0, 0.5), blk.attn.b2.normal_(0, 0.5)
    fast = GPT(GPTConfig(pre.vocab_size, 128, exact=False, n_layer=2, n_head=4, n_embd=32, **flags))
    fast.load_state_dict(exact.state_dict())
    qs = [l.split('\t')[0] for l in lines_of(world_data, 'birth_dev.tsv')] + ['Where was']
    shapes = []
    fast.tok_emb.register_forward_hook(lambda m, inp, out: shapes.append(tuple(inp[0].shape)))
    monkeypatch.setattr(evaluate, 'PREFILL_TOKENS', 256)
    quick = evaluate.predict_places(fast, qs, pre.stoi, pre.itos, 'cpu')
    # The prefill's calls, before the decoding's one character a row: (1, prefix), (rows, rest)
    # for each group, every question in exactly one group. 'Where was' + MASK keeps its last
    # character, so the first group's prefix is 9 characters, the others' "Where was ".
    prefill = shapes[:next(i for i, s in enumerate(shapes) if s[1] == 1)]
    prefixes, groups = prefill[0::2], prefill[1::2]
    assert prefixes[0] == (1, 9) and set(prefixes[1:]) == {(1, 10)} and len(groups) > 3
    assert sum(rows for rows, _ in groups) == len(qs)
    assert all(rows * (t + n) <= 256 for (rows, t), (_, n) in zip(groups, prefixes))
    slow = evaluate.predict_places(exact.eval(), qs, pre.stoi, pre.itos, 'cpu', exact=True)
    assert len(set(slow)) > 10
    assert quick == slow


# ---- command lines -------------------------------------------------------------------------

def test_later_years_run_sh_commands(src_copy, world_data):
    sub = src_copy / 'submission'
    n_dev = len(lines_of(world_data, 'birth_dev.tsv'))
    for variant in ('perceiver', 'rope'):
        for cmd, extra, out in ((f'{variant}_pretrain', ['--max_steps=1'], f'{variant}.pretrain.params'),
                                (f'{variant}_finetune_with_pretrain', ['--max_steps=1'], f'{variant}.finetune.params'),
                                (f'{variant}_eval_dev_with_pretrain', [], f'{variant}.pretrain.dev.predictions'),
                                (f'{variant}_eval_test_with_pretrain', [], f'{variant}.pretrain.test.predictions')):
            p = run(['./run.sh', cmd, *extra], src_copy)
            assert p.returncode == 0, (cmd, p.stderr)
            assert (sub / out).exists(), cmd
            if 'eval_dev' in cmd:
                assert f' out of {n_dev}.0: ' in p.stdout
        state = torch.load(sub / f'{variant}.finetune.params', weights_only=True)
        assert ('down_block.C' in state) == (variant == 'perceiver')
        assert ('blocks.0.attn.rope_cache' in state) == (variant == 'rope') and ('pos_emb' in state) != (variant == 'rope')


def later(src_copy, args, *needles):
    p = run_py(args, cwd=src_copy)
    assert_one_line_error(p, *needles)
    assert not [f for f in os.listdir(src_copy / 'submission') if f.endswith(('.params', '.tmp', '.predictions'))]


@pytest.mark.parametrize('value, needle', [('0', 'out of range'), ('x', 'whole number'), ('128', 'from 1 to 127'),
                                           ('2.5', 'whole number')])
def test_bottleneck_dim_out_of_range(src_copy, value, needle):
    later(src_copy, ['--function=pretrain', '--variant=perceiver', '--pretrain_corpus_path=data/wiki.txt',
                     '--writing_params_path=submission/p.params', f'--bottleneck_dim={value}'], '--bottleneck_dim', needle)


def test_bottleneck_dim_with_another_variant(src_copy):
    later(src_copy, ['--function=pretrain', '--variant=rope', '--pretrain_corpus_path=data/wiki.txt',
                     '--writing_params_path=submission/p.params', '--bottleneck_dim=16'],
          '--bottleneck_dim is for --variant=perceiver')


def test_params_of_another_year_or_size(src_copy, tmp_path, world_data):
    vocab = CharCorruptionDataset(read(world_data, 'wiki.txt'), 128).vocab_size
    torch.manual_seed(0)
    perceiver = tmp_path / 'perceiver.params'
    torch.save(GPT(conf('perceiver', vocab)).state_dict(), perceiver)
    rope64 = tmp_path / 'rope64.params'
    torch.save(GPT(GPTConfig(vocab, 64, n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD, rope=True)).state_dict(),
               rope64)
    evaluate_with = lambda params, variant, *extra: [
        '--function=evaluate', f'--variant={variant}', '--pretrain_corpus_path=data/wiki.txt',
        f'--reading_params_path={params}', '--eval_corpus_path=data/birth_dev.tsv',
        '--outputs_path=submission/out.predictions', *extra]
    later(src_copy, evaluate_with(perceiver, 'rope'), 'holds a perceiver model', '--variant=perceiver')
    later(src_copy, evaluate_with(rope64, 'rope'), 'block size of 64', 'block size 128')
    later(src_copy, evaluate_with(perceiver, 'perceiver', '--bottleneck_dim=8'), '--bottleneck_dim=32')


# ---- the demo and the report ---------------------------------------------------------------

def test_demo_compares_every_variant_over_seeds(tmp_path, monkeypatch):
    """Every variant on two seeds' worlds (a tiny size, so this takes a minute): one row per
    variant with the mean and the spread, written to comparison.md and .json."""
    monkeypatch.setitem(demo.SIZES, 'tiny', dict(demo.SIZES['small'], people=12, pretrain_steps=20,
                                                   finetune_epochs=2, nopretrain_epochs=2))
    text = demo.compare(str(tmp_path), list(demo.VARIANTS), [0, 1], size='tiny', device='cpu')
    rows = [line for line in text.splitlines() if line.startswith('| ') and not line.startswith('| variant')]
    assert [r.split('|')[1].strip() for r in rows] == ['vanilla', 'synthesizer', 'perceiver', 'rope']
    assert (tmp_path / 'comparison.md').read_text() == text + '\n'
    runs = json.loads((tmp_path / 'comparison.json').read_text())
    assert sorted((r['variant'], r['seed']) for r in runs) == sorted(
        (v, s) for v in demo.VARIANTS for s in (0, 1))
    for r in runs:
        assert (tmp_path / f'{r["variant"]}-seed{r["seed"]}' / 'results.json').exists()
        assert 0 <= r['pretrained_acc'] <= 1
    assert ' (' in rows[0] and '-' in rows[0]  # mean (min-max) over the seeds


def test_report_puts_the_variants_side_by_side(src_copy, world_data):
    """Predictions of a perceiver (all right) and a rope model (right only where the
    birthplace is in the person's lines: all of them, in this world) show beside the course's rows."""
    sub = src_copy / 'submission'
    answers = [line.split('\t')[1] for line in lines_of(world_data, 'birth_dev.tsv')]
    (sub / 'perceiver.pretrain.dev.predictions').write_text(''.join(a + '\n' for a in answers))
    (sub / 'rope.pretrain.dev.predictions').write_text(''.join('Lima\n' for _ in answers))
    p = run(['./run.sh', 'report'], src_copy)
    assert p.returncode == 0, p.stderr
    text = (src_copy / 'reports' / 'report.md').read_text()
    assert '| perceiver, pretrain + finetune | 100.00 %' in text
    assert '| rope, pretrain + finetune |' in text
    n = len(answers)
    assert f'{n} of the {n} dev answers occur in the person\'s line of wiki.txt' in text
    lima = sum(a == 'Lima' for a in answers)
    rope_rows = [l for l in text.splitlines() if l.startswith('| rope, pretrain + finetune |')]
    assert len(rope_rows) == 3  # the experiments, the dev answers, the dev answers by how often shown
    assert f'| {100 * lima / n:.1f} % | {100 * lima / n:.1f} % ({lima}/{n}) | — | Lima ({n - lima}) |' in rope_rows[1]
    # By how often pretraining showed each birthplace: the columns count every dev person once,
    # and each cell is the rope predictions' hits among that column's people.
    shown = [report.shown_share(e) for _, e in report.birthplaces(
        [l.split('\t')[0] for l in lines_of(world_data, 'birth_dev.tsv')], answers,
        os.path.join(world_data, 'wiki.txt'))]
    header = [l for l in text.splitlines() if l.startswith('| Experiment | never shown (')][0]
    counts = [int(c.split('(')[-1].rstrip(') ')) for c in header.split('|')[2:-1]]
    assert sum(counts) == n
    for cell, (_, test) in zip(rope_rows[2].split('|')[2:-1], report.SHOWN_BINS):
        where = [test(s) for s in shown]
        k = sum(a == 'Lima' for a, w in zip(answers, where) if w)
        assert cell.strip() == (f'{100 * k / sum(where):.1f} % ({k}/{sum(where)})' if sum(where) else '—')


def test_report_counts_how_often_a_salient_span_pretraining_showed_each_birthplace(src_copy, world_data):
    """A vanilla pretraining with --salient_spans=0.5 (one real step; the share read back from its
    metrics log) gets a by-how-often-shown table of its own, its columns counting the dev people by
    that recipe's draws; the course's table keeps the other experiments, and London closes both."""
    sub = src_copy / 'submission'
    p = run(['./run.sh', 'vanilla_pretrain', '--salient_spans=0.5', '--max_steps=1', '--threads=1'], src_copy)
    assert p.returncode == 0, p.stderr
    questions, answers = zip(*(l.split('\t') for l in lines_of(world_data, 'birth_dev.tsv')))
    guesses = ['Lima'] * len(answers)
    (sub / 'vanilla.pretrain.dev.predictions').write_text(''.join(a + '\n' for a in answers))
    (sub / 'synthesizer.pretrain.dev.predictions').write_text(''.join(g + '\n' for g in guesses))
    p = run(['./run.sh', 'report'], src_copy)
    assert p.returncode == 0, p.stderr
    text = (src_copy / 'reports' / 'report.md').read_text()
    course, salient = text.split('Pretrained with --salient_spans=0.5: 50 % of the draws')[0:2]
    found = report.birthplaces(questions, answers, os.path.join(world_data, 'wiki.txt'))
    for part, share, title in ((course, 0.0, 'synthesizer'), (salient, 0.5, 'vanilla')):
        header = [l for l in part.splitlines() if l.startswith('| Experiment | never shown (')][-1]
        shown = [report.shown_share(end, doc, share) for doc, end in found]
        assert header == report.row(['Experiment'] + [f'{label} ({sum(test(x) for x in shown)})'
                                                      for label, test in report.SHOWN_BINS])
        table = part[part.index(header):].split('\n\n')[0].splitlines()
        assert [l.split('|')[1].strip() for l in table[2:]] == [f'{title}, pretrain + finetune', report.LONDON]
    # The salient recipe shows late birthplaces in other shares of draws than the course's.
    assert [report.shown_share(e, d, 0.5) for d, e in found] != [report.shown_share(e) for d, e in found]


def test_report_reads_a_salient_tail_from_the_pretraining_log(src_copy, world_data):
    """--salient_spans=0.5 --salient_tail=0 (one real step): the report names the tail and counts the
    dev people by those draws, which show a birthplace's following text less often than without it."""
    sub = src_copy / 'submission'
    p = run(['./run.sh', 'vanilla_pretrain', '--salient_spans=0.5', '--salient_tail=0', '--max_steps=1',
             '--threads=1'], src_copy)
    assert p.returncode == 0, p.stderr
    assert report.salient_draws(str(sub), [('pretrain', 'vanilla.pretrain.params')]) == (0.5, 0)
    assert report.salient_draws(str(sub), [('pretrain', 'synthesizer.pretrain.params')]) == (0.0, None)
    questions, answers = zip(*(l.split('\t') for l in lines_of(world_data, 'birth_dev.tsv')))
    (sub / 'vanilla.pretrain.dev.predictions').write_text(''.join(a + '\n' for a in answers))
    p = run(['./run.sh', 'report'], src_copy)
    assert p.returncode == 0, p.stderr
    text = (src_copy / 'reports' / 'report.md').read_text()
    salient = text.split('Pretrained with --salient_spans=0.5 --salient_tail=0: 50 % of the draws')[1]
    assert "up to 112 characters, the span's end + 0 or the line's end, whichever is first" in salient
    found = report.birthplaces(questions, answers, os.path.join(world_data, 'wiki.txt'))
    shown = [report.shown_share(end, doc, 0.5, 0) for doc, end in found]
    header = [l for l in salient.splitlines() if l.startswith('| Experiment | never shown (')][0]
    assert header == report.row(['Experiment'] + [f'{label} ({sum(test(x) for x in shown)})'
                                                  for label, test in report.SHOWN_BINS])


def test_report_counts_the_course_dev_answers_in_wiki(course_data):
    questions, answers = zip(*(l.split('\t') for l in lines_of(course_data, 'birth_dev.tsv')))
    found = report.birthplaces(questions, answers, os.path.join(course_data, 'wiki.txt'))
    ends = [e for _, e in found]
    assert sum(e is not None for e in ends) == 479 and len(ends) == 500
    # How often the course's truncation shows each dev birthplace, by thirds of its draws.
    bins = [sum(test(report.shown_share(e)) for e in ends) for _, test in report.SHOWN_BINS]
    assert bins == [38, 90, 282, 90]
    # The CPU recipe's draws (--salient_spans=0.5) show most of them in two thirds of the draws or more.
    bins = [sum(test(report.shown_share(e, doc, 0.5)) for doc, e in found) for _, test in report.SHOWN_BINS]
    assert bins == [38, 17, 144, 301]
    # With --salient_tail=16 the windows that mask another span end sooner, and show fewer birthplaces.
    bins = [sum(test(report.shown_share(e, doc, 0.5, 16)) for doc, e in found) for _, test in report.SHOWN_BINS]
    assert bins == [38, 28, 253, 181]


def test_shown_share_is_the_course_truncations_share():
    """shown_share(e) against CharCorruptionDataset's own draws (corruption_spans): the share of
    windows that keep at least e characters of a 200-character line."""
    random.seed(0)
    kept = [corruption_spans(200, 128)[0] for _ in range(40000)]
    for end in (1, 4, 5, 30, 60, 100, 112, 113, 150):
        drawn = sum(k >= end for k in kept) / len(kept)
        assert abs(report.shown_share(end) - drawn) < 0.01, (end, report.shown_share(end), drawn)
    assert report.shown_share(4) == 1.0 and report.shown_share(112) == 1 / 109
    assert report.shown_share(113) == report.shown_share(None) == 0.0


def test_shown_share_with_salient_spans_is_their_draws_share():
    """shown_share(e, doc, P) against SalientSpans's own draws of one line, with the course's draws
    beside them: the share of windows (the example's characters less its three masks) that keep
    at least e characters, for P = 0.5 and 1, on a short line and a long one."""
    from submission.lib.recipe import SalientSpans
    short = 'Ann Lee. Ann Lee is a painter who studied in New York City and was born in Paris, France.'
    long = short[:-1] + ', where she lived until 1990 and taught at the Royal Academy in London for years.'
    for doc in (short, long):
        corpus = CharCorruptionDataset(doc, 128)
        for share, tail in ((0.5, None), (1.0, None), (0.5, 16), (1.0, 0)):
            view = SalientSpans(corpus, share, tail)
            random.seed(1)
            kept = [len(view.trimmed(0)[0]) - 2 for _ in range(30000)]
            ends = (doc.index('Paris') + 5, doc.index('Paris') + 12, doc.index('New York') + 3,
                    doc.index('New York') + 20, 20, 4, len(doc) if len(doc) <= 112 else 112)
            for end in ends:
                drawn = sum(k >= end for k in kept) / len(kept)
                assert abs(report.shown_share(end, doc, share, tail) - drawn) < 0.015, \
                    (doc[:20], share, tail, end, drawn)
        assert report.shown_share(50, doc, 0.0) == report.shown_share(50)
    assert report.shown_share(None, long, 0.5) == report.shown_share(113, long, 0.5) == 0.0
    # A short tail shows what follows a span less often: "France" after "Paris", at share 1.
    france = short.index('France') + 6
    assert report.shown_share(france, short, 1.0, 0) < report.shown_share(france, short, 1.0)
    nothing_salient = 'ann lee. ann lee is a painter born in paris.'
    assert report.shown_share(40, nothing_salient, 1.0) == report.shown_share(40)
