"""The course's contract, checked on real modules: its datasets, model, attention variants,
trainer and helper, with the names, shapes and settings the handout gives them.

Facts of the course data (sizes, vocabulary, final_tokens, the London baseline)
are checked on the course data (`course_data`, skipped without it); every
other rule on the synthetic world in the course's formats, so it runs everywhere.
"""
import math
import os
import random
import statistics

import pytest
import torch
import torch.nn as nn
from torch.nn import functional as F

from conftest import read
from submission import (GPT, CharCorruptionDataset, GPTConfig, NameDataset, Trainer, TrainerConfig,
                        SynthesizerAttention, CausalSelfAttention, evaluate_places, finetune,
                        initialize_synthesizer_model, initialize_vanilla_model, pretrain, sample)
from submission.trainer import lr_at

MASK, PAD = '\u2047', '\u25A1'


@pytest.fixture(scope='module')
def wiki(course_data):
    return read(course_data, 'wiki.txt')


@pytest.fixture(scope='module')
def pre(wiki):
    """The course's pretraining dataset."""
    return CharCorruptionDataset(wiki, 128)


@pytest.fixture(scope='module')
def world_pre(world_data):
    """A pretraining dataset of the synthetic world."""
    return CharCorruptionDataset(read(world_data, 'wiki.txt'), 128)


def course_conf(ds, **kw):
    return GPTConfig(ds.vocab_size, ds.block_size, n_layer=4, n_head=8, n_embd=256, **kw)


# ---- section 4: data and vocabulary -------------------------------------------------------

def test_vocabulary_ids_and_sizes(wiki, pre):
    assert len(wiki) == 418352
    assert pre.stoi[PAD] == 0 and pre.stoi[MASK] == 1
    assert pre.vocab_size == 256
    chars = sorted(set(wiki))
    assert [pre.itos[i] for i in range(2, 256)] == chars
    assert len(pre) == 2938  # 2,937 lines and the empty item after the final newline
    assert 200 * len(pre) * 128 == 75_212_800


def test_empty_item_is_harmless(world_pre):
    assert world_pre.data[-1] == ''  # the corpus ends with a newline, as the course's does
    x, y = world_pre[len(world_pre) - 1]
    assert x.shape == y.shape == (127,)
    assert (y != 0).sum() >= 1  # still something to predict, no crash


def test_name_dataset_lengths(pre, course_data):
    for name, n in (('birth_places_train.tsv', 2000), ('birth_dev.tsv', 500), ('birth_test.tsv', 437)):
        assert len(NameDataset(read(course_data, name), pre)) == n


def test_name_dataset_example(world_pre, world_data):
    pre = world_pre
    ds = NameDataset(read(world_data, 'birth_places_train.tsv'), pre)
    assert len(ds) == len(read(world_data, 'birth_places_train.tsv').strip().split('\n'))
    q, a = ds.data[0].split('\t')
    x, y = ds[0]
    assert x.dtype == y.dtype == torch.long and x.shape == y.shape == (127,)
    xs = ''.join(pre.itos[int(i)] for i in x)
    ys = ''.join(pre.itos[int(i)] for i in y)
    full = q + MASK + a + MASK
    assert xs == (full + PAD * (128 - len(full)))[:-1]
    assert ys == PAD * (len(q) - 1) + (full + PAD * (128 - len(full)))[len(q):]


def test_name_dataset_drops_non_ascii(pre, course_data):
    raw = read(course_data, 'birth_places_train.tsv')
    assert any(ord(c) > 127 for c in raw)  # the course file has some (124 lines)
    ds = NameDataset(raw, pre)
    assert all(ord(c) < 128 for line in ds.data for c in line)


def test_birth_characters_are_in_wiki(pre, course_data):
    for name in ('birth_places_train.tsv', 'birth_dev.tsv', 'birth_test_inputs.tsv', 'birth_test.tsv'):
        text = read(course_data, name)
        assert set(text) - {'\n', '\t'} <= set(pre.stoi)


# ---- section 5: span corruption -----------------------------------------------------------

@pytest.mark.parametrize('corpus', ['world', 'course'])
def test_span_corruption_properties(corpus, request):
    pre = request.getfixturevalue('pre' if corpus == 'course' else 'world_pre')
    random.seed(1)
    masked_minus_quarter, kept_ratio = [], []
    for _ in range(3000):
        idx = random.randrange(len(pre) - 1)
        doc = pre.data[idx]
        x, y = pre[idx]
        assert x.dtype == torch.long and x.shape == y.shape == (127,)
        assert torch.equal(x[1:], y[:-1])
        s = ''.join(pre.itos[int(i)] for i in x) + pre.itos[int(y[-1])]
        body = s.rstrip(PAD)
        assert PAD not in body  # pads only at the end
        parts = body.split(MASK)
        assert len(parts) in (3, 4)
        prefix, suffix, masked = parts[0], parts[1], parts[2]
        kept = prefix + masked + suffix
        assert doc.startswith(kept)
        assert 4 <= len(kept) <= int(128 * 7 / 8)
        kept_ratio.append(len(kept) / len(doc))
        masked_minus_quarter.append(len(masked) - (len(body) - 2) / 4)
    assert statistics.pstdev(kept_ratio) > 0.05
    assert abs(statistics.mean(masked_minus_quarter)) < 1.5
    assert statistics.pstdev(masked_minus_quarter) > 0.01


def test_every_truncation_length_is_possible():
    ds = CharCorruptionDataset('a' * 200 + '\n' + 'b' * 200, 128)
    random.seed(0)
    seen = set()
    for _ in range(20000):
        x, y = ds[0]
        seen.add(int(((x != 0) & (x != 1)).sum()) + int(y[-1] not in (0, 1)))
    assert seen == set(range(4, int(128 * 7 / 8) + 1))


# ---- section 6: model ----------------------------------------------------------------------

class CourseAttention(nn.Module):
    """The course's CausalSelfAttention, written plainly here as the reference."""

    def __init__(self, c):
        super().__init__()
        self.key, self.query, self.value = (nn.Linear(c.n_embd, c.n_embd) for _ in range(3))
        self.attn_drop, self.resid_drop = nn.Dropout(c.attn_pdrop), nn.Dropout(c.resid_pdrop)
        self.proj = nn.Linear(c.n_embd, c.n_embd)
        self.register_buffer("mask", torch.tril(torch.ones(c.block_size, c.block_size))
                             .view(1, 1, c.block_size, c.block_size))
        self.n_head = c.n_head

    def forward(self, x):
        B, T, C = x.size()
        k = self.key(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = self.query(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = self.value(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float('-inf'))
        att = self.attn_drop(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))


class CourseSynth(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.w1 = nn.Linear(c.n_embd, c.n_embd)
        self.w2 = nn.Parameter(torch.zeros(c.n_embd // c.n_head, c.block_size - 1))
        self.b2 = nn.Parameter(torch.zeros(c.block_size - 1))
        self.value = nn.Linear(c.n_embd, c.n_embd)
        self.proj = nn.Linear(c.n_embd, c.n_embd)
        self.attn_drop, self.resid_drop = nn.Dropout(c.attn_pdrop), nn.Dropout(c.resid_pdrop)
        self.register_buffer("mask", torch.tril(torch.ones(c.block_size, c.block_size))
                             .view(1, 1, c.block_size, c.block_size))
        self.n_head = c.n_head

    def forward(self, x):
        B, T, C = x.size()
        h = F.relu(self.w1(x)).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = self.value(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = h @ self.w2[:, :T] + self.b2[:T]
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float('-inf'))
        att = self.attn_drop(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))


class CourseBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.n_embd), nn.LayerNorm(c.n_embd)
        self.attn = CourseSynth(c) if c.synthesizer else CourseAttention(c)
        self.mlp = nn.Sequential(nn.Linear(c.n_embd, 4 * c.n_embd), nn.GELU(),
                                 nn.Linear(4 * c.n_embd, c.n_embd), nn.Dropout(c.resid_pdrop))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CourseGPT(nn.Module):
    """A plain course-style GPT: the params files must load into this and back."""

    def __init__(self, c):
        super().__init__()
        self.tok_emb = nn.Embedding(c.vocab_size, c.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, c.block_size, c.n_embd))
        self.drop = nn.Dropout(c.embd_pdrop)
        self.blocks = nn.Sequential(*[CourseBlock(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)

    def forward(self, idx):
        x = self.drop(self.tok_emb(idx) + self.pos_emb[:, :idx.size(1), :])
        return self.head(self.ln_f(self.blocks(x)))


@pytest.mark.parametrize('synth', [False, True])
def test_state_dict_round_trip_through_course_code(world_pre, synth, tmp_path):
    pre = world_pre
    torch.manual_seed(0)
    ours = GPT(course_conf(pre, synthesizer=synth))
    path = tmp_path / 'm.params'
    torch.save(ours.state_dict(), path)
    course = CourseGPT(course_conf(pre, synthesizer=synth))
    course.load_state_dict(torch.load(path, weights_only=True))  # strict: same keys and shapes
    ours.eval(), course.eval()
    idx = torch.randint(0, pre.vocab_size, (3, 127))
    assert torch.allclose(ours(idx)[0], course(idx), atol=1e-5)
    # ...and back: course weights into our model
    torch.manual_seed(1)
    course2 = CourseGPT(course_conf(pre, synthesizer=synth))
    ours2 = GPT(course_conf(pre, synthesizer=synth, exact=False))
    ours2.load_state_dict(course2.state_dict())
    ours2.eval(), course2.eval()
    assert torch.allclose(ours2(idx)[0], course2(idx), atol=1e-4)


def test_parameter_names_shapes_and_init(pre):
    torch.manual_seed(0)
    sd = GPT(course_conf(pre)).state_dict()
    assert sd['tok_emb.weight'].shape == (256, 256)
    assert sd['pos_emb'].shape == (1, 128, 256) and not sd['pos_emb'].any()
    assert sd['blocks.0.attn.mask'].shape == (1, 1, 128, 128)
    for k in ('key', 'query', 'value', 'proj'):
        assert sd[f'blocks.3.attn.{k}.weight'].shape == (256, 256)
        assert not sd[f'blocks.3.attn.{k}.bias'].any()
    assert sd['blocks.0.mlp.0.weight'].shape == (1024, 256) and sd['blocks.0.mlp.2.weight'].shape == (256, 1024)
    assert 'head.bias' not in sd and sd['head.weight'].shape == (256, 256)
    assert abs(sd['blocks.0.mlp.0.weight'].std().item() - 0.02) < 0.001
    assert torch.all(sd['ln_f.weight'] == 1) and not sd['ln_f.bias'].any()
    n = sum(v.numel() for k, v in sd.items() if not k.endswith('attn.mask'))
    assert 3.2e6 < n < 3.4e6
    ssd = GPT(course_conf(pre, synthesizer=True)).state_dict()
    assert ssd['blocks.0.attn.w2'].shape == (32, 127) and ssd['blocks.0.attn.b2'].shape == (127,)
    assert ssd['blocks.0.attn.w2'].abs().max() <= 0.001 and ssd['blocks.0.attn.w2'].std() > 1e-4
    assert 'blocks.0.attn.w1.weight' in ssd and 'blocks.0.attn.key.weight' not in ssd
    c = GPTConfig(10, 8)
    assert (c.embd_pdrop, c.resid_pdrop, c.attn_pdrop, c.synthesizer) == (0.1, 0.1, 0.1, False)


def test_forward_returns_logits_and_ignore_pad_loss(world_pre):
    pre = world_pre
    torch.manual_seed(0)
    m = GPT(course_conf(pre))
    m.eval()
    x, y = pre[0]
    logits, loss = m(x[None], y[None])
    assert logits.shape == (1, 127, pre.vocab_size) and m.get_block_size() == 128
    ref = F.cross_entropy(logits[0][y != 0], y[y != 0])
    assert torch.allclose(loss, ref, atol=1e-6)
    assert m(x[None])[1] is None


def synth_formula(attn, x):
    """The synthesizer's attention as the handout defines it, computed plainly head by head."""
    B, T, C = x.shape
    h = attn.n_head
    d = C // h
    a = attn.w1(x)
    v = attn.value(x)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    outs = []
    for i in range(h):
        s = F.relu(a[..., i * d:(i + 1) * d]) @ attn.w2[:, :T] + attn.b2[:T]
        s = s.masked_fill(~mask, float('-inf'))
        outs.append(F.softmax(s, dim=-1) @ v[..., i * d:(i + 1) * d])
    return attn.proj(torch.cat(outs, dim=-1))


@pytest.mark.parametrize('fast', [False, True])
def test_synthesizer_equals_formula(fast):
    torch.manual_seed(0)
    attn = SynthesizerAttention(GPTConfig(10, 8, n_head=3, n_embd=6, exact=not fast))
    with torch.no_grad():  # non-trivial w2/b2 so a dropped b2 or wrong column would show
        attn.w2.normal_()
        attn.b2.normal_()
    attn.eval()
    x = torch.randn(11, 7, 6)
    diff = (attn(x) - synth_formula(attn, x)).norm().item()
    assert diff < (1e-8 if not fast else 1e-5)
    torch.manual_seed(0)
    plain = SynthesizerAttention(GPTConfig(10, 8, n_head=3, n_embd=6))
    plain.eval()
    assert (plain(x) - synth_formula(plain, x)).norm().item() < 1e-8


def test_vanilla_attention_equals_formula():
    torch.manual_seed(0)
    conf = GPTConfig(10, 8, n_head=3, n_embd=6)
    ours, ref = CausalSelfAttention(conf), CourseAttention(conf)
    ref.load_state_dict(ours.state_dict())
    ours.eval(), ref.eval()
    x = torch.randn(11, 7, 6)
    assert (ours(x) - ref(x)).norm().item() < 1e-8


# ---- section 7: training -------------------------------------------------------------------

def test_trainer_config_defaults():
    c = TrainerConfig()
    assert (c.max_epochs, c.batch_size, c.learning_rate, c.betas, c.grad_norm_clip, c.weight_decay,
            c.lr_decay, c.warmup_tokens, c.final_tokens, c.ckpt_path, c.num_workers) == \
        (10, 64, 3e-4, (0.9, 0.95), 1.0, 0.1, False, 375e6, 260e9, None, 0)
    assert TrainerConfig(max_epochs=3, foo=1).foo == 1


def test_schedule_values():
    c = TrainerConfig(learning_rate=6e-3, lr_decay=True, warmup_tokens=512 * 20, final_tokens=75_212_800)
    assert lr_at(0, c) == 0.0
    assert lr_at(5120, c) == pytest.approx(3e-3)
    assert lr_at(10240, c) == pytest.approx(6e-3)
    mid = 10240 + (75_212_800 - 10240) / 2
    assert lr_at(mid, c) == pytest.approx(3e-3)
    assert lr_at(75_212_800, c) == pytest.approx(6e-4)
    # The course formula keeps taking the cosine past final_tokens (progress > 1), so
    # the rate climbs off the floor again during the last two thirds of pretraining.
    # Faithful means keeping that: at 2 x final_tokens the cosine is back at its peak.
    assert lr_at(10240 + 2 * (75_212_800 - 10240), c) == pytest.approx(6e-3)
    progress = (242_000_000 - 10240) / (75_212_800 - 10240)
    assert lr_at(242_000_000, c) == pytest.approx(6e-3 * max(0.1, 0.5 * (1 + math.cos(math.pi * progress))))
    assert lr_at(123, TrainerConfig(learning_rate=1e-3)) == 1e-3  # no decay: constant


def test_weight_decay_groups(world_pre):
    m = GPT(course_conf(world_pre))
    opt = Trainer(m, world_pre, None, TrainerConfig()).make_optimizer(m)
    decay, nodecay = opt.param_groups
    names = {id(p): n for n, p in m.named_parameters()}
    assert decay['weight_decay'] == 0.1 and nodecay['weight_decay'] == 0.0
    assert all('bias' in names[id(p)] for p in nodecay['params'])
    decayed = {names[id(p)] for p in decay['params']}
    assert 'pos_emb' in decayed and 'ln_f.weight' in decayed  # the course's faithful quirk


def test_helper_settings(pre, course_data, tmp_path):
    m = initialize_vanilla_model(course_conf(pre))
    assert isinstance(m.blocks[0].attn, CausalSelfAttention)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    tconf, trainer = finetune(None, os.path.join(course_data, 'birth_places_train.tsv'), pre, 128, m)
    assert isinstance(trainer, Trainer) and len(trainer.train_dataset) == 2000
    assert (tconf.max_epochs, tconf.batch_size, tconf.learning_rate, tconf.lr_decay, tconf.warmup_tokens,
            tconf.final_tokens, tconf.num_workers) == (75, 256, 6e-4, True, 10240, 75_212_800, 4)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # no training happened
    path = tmp_path / 'p.params'
    torch.manual_seed(5)
    other = initialize_vanilla_model(course_conf(pre))
    torch.save(other.state_dict(), path)
    tconf, trainer = finetune(str(path), os.path.join(course_data, 'birth_places_train.tsv'), pre, 128, m)
    assert tconf.max_epochs == 10
    assert torch.equal(m.state_dict()['head.weight'], other.state_dict()['head.weight'].to(m.head.weight.device))
    tconf, trainer = pretrain(pre, 128, m)
    assert (tconf.max_epochs, tconf.batch_size, tconf.learning_rate, tconf.lr_decay, tconf.warmup_tokens,
            tconf.final_tokens, tconf.num_workers) == (650, 128, 6e-3, True, 10240, 75_212_800, 4)
    s = initialize_synthesizer_model(course_conf(pre))
    assert isinstance(s.blocks[0].attn, SynthesizerAttention)


# ---- section 8: evaluation ------------------------------------------------------------------

def test_evaluate_places(course_data):
    dev, inputs = os.path.join(course_data, 'birth_dev.tsv'), os.path.join(course_data, 'birth_test_inputs.tsv')
    answers = [l.split('\t')[1] for l in read(course_data, 'birth_dev.tsv').split('\n') if l]
    preds = answers[:123] + ['nowhere'] * (500 - 123)
    assert evaluate_places(dev, preds) == (500.0, 123.0)
    assert evaluate_places(dev, ['London'] * 500) == (500.0, 25.0)
    assert evaluate_places(inputs, ['x'] * 437) == (0, 0)


def test_sample_extends_by_steps(world_pre):
    torch.manual_seed(0)
    m = GPT(GPTConfig(world_pre.vocab_size, 128, n_layer=1, n_head=2, n_embd=16))
    x = torch.tensor([[5, 6, 7]])
    out = sample(m, x, 10)
    assert out.shape == (1, 13) and torch.equal(out[:, :3], x)
    assert torch.equal(out, sample(m, x, 10))  # greedy is deterministic
    assert sample(m, x, 5, temperature=0.8, sample=True, top_k=5).shape == (1, 8)


# ---- sections 2, 4, 6, 7, 8: the public signatures a student's course code calls -----------

COURSE_SIGNATURES = {
    # name: the course's parameters, in order, with their defaults ('*' for **kwargs)
    'NameDataset': ['data', 'pretraining_dataset'],  # the text first, as the course calls them
    'CharCorruptionDataset': ['data', 'block_size'],
    'GPTConfig': ['vocab_size', 'block_size', '**kwargs'],
    'GPT': ['config'],
    'GPT.forward': ['idx', 'targets=None'],
    'GPT.get_block_size': [],
    'CausalSelfAttention': ['config'],
    'CausalSelfAttention.forward': ['x', 'layer_past=None'],
    'SynthesizerAttention': ['config'],
    'SynthesizerAttention.forward': ['x', 'layer_past=None'],
    'TrainerConfig': ['**kwargs'],
    'Trainer': ['model', 'train_dataset', 'test_dataset', 'config'],
    'Trainer.train': [],
    'initialize_vanilla_model': ['mconf'],
    'initialize_synthesizer_model': ['mconf'],
    'finetune': ['reading_params_path', 'finetune_corpus_path', 'pretrain_dataset', 'block_size', 'model'],
    'pretrain': ['pretrain_dataset', 'block_size', 'model'],
    'train': ['model', 'writing_params_path', 'trainer_obj'],
    'evaluate_places': ['filepath', 'predicted_places'],
    'sample': ['model', 'x', 'steps', 'temperature=1.0', 'sample=False', 'top_k=None'],
}


@pytest.mark.parametrize('name', sorted(COURSE_SIGNATURES))
def test_public_signature_is_the_courses(name):
    """Course code calls these positionally: the course's parameters come first, in the
    course's order, with its defaults; anything of ours comes after, with a default."""
    import inspect
    import submission
    obj = submission
    for part in name.split('.'):
        obj = getattr(obj, part)
    params = [p for p in inspect.signature(obj).parameters.values() if p.name != 'self']

    def shown(p):
        if p.kind is p.VAR_KEYWORD:
            return f'**{p.name}'
        return p.name if p.default is p.empty else f'{p.name}={p.default!r}'

    want = COURSE_SIGNATURES[name]
    assert [shown(p) for p in params[:len(want)]] == want
    assert all(p.default is not p.empty or p.kind is p.VAR_KEYWORD for p in params[len(want):]), \
        f'{name}: parameters of ours after the course\'s must have defaults'
