"""grader.py: the course-style autograder of the birth-place knowledge probe.

Run from src/: `python grader.py` runs every test, `python grader.py 1e-0-basic`
one (several ids may be given). The tests the course's grader has keep the
course's ids and points (points.json at the repository root, as the course
lays it out); our own checks end in -extra. Tests of code (1c, 1e, 1f-0,
1g-0, 1g-3 and the extras) run in seconds; tests of trained results (1d,
1f-1/2, 1g-1/2) read the predictions files that ./run.sh writes into
submission/. A test that cannot run here (no course data, no predictions yet)
reports NOT RUN and says why.
"""
import math
import os
import random
import stat
import statistics
import sys
import tempfile
from types import SimpleNamespace

import graderUtil
from graderUtil import Failure, NotRun, require, time_limit

try:
    import torch
except ImportError:
    print('error: PyTorch is not installed; activate the project environment (see README.md)', file=sys.stderr)
    sys.exit(2)

SRC = os.path.dirname(os.path.abspath(__file__))
BLOCK_SIZE = 128
HELPER_SECONDS = 15  # helper.finetune / helper.pretrain must only set up, not train
PAD, MASK = '\u25A1', '\u2047'


def need_data(name):
    """data/<name>, found where the project keeps the course data (src/data)."""
    folder = submission().lib.files.course_data_dir((name,))
    if folder is None:
        raise NotRun(f'data/{name} missing (put the course data in src/data, see src/data/README.md)')
    return os.path.join(folder, name)


def need_submission_file(name):
    path = os.path.join(SRC, 'submission', name)
    if not os.path.exists(path):
        raise NotRun(f'submission/{name} missing')
    return path


def read_text(path):
    shown = os.path.relpath(path, SRC) if path.startswith(SRC + os.sep) else path
    # A pipe would block the grader forever, a device might never end: regular files only.
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        raise Failure(f'{shown} is not a regular file (a pipe, a device or a folder); it should be the file '
                      f'that ./run.sh writes')
    try:
        with open(path, encoding='utf-8') as f:
            return f.read()
    except UnicodeDecodeError:
        raise Failure(f'{shown} is not UTF-8 text') from None
    except OSError as e:
        raise Failure(f'cannot read {shown}: {e.strerror or e}') from None


_cache = {}


def submission():
    """The submission package, imported on first use so that a broken one fails tests, not the grader."""
    if 'submission' not in _cache:
        try:
            import submission as package
        except Exception as e:
            raise Failure(f'cannot import submission: {graderUtil.describe_error(e)}') from None
        _cache['submission'] = package
    return _cache['submission']


def pretrain_dataset():
    """CharCorruptionDataset(wiki.txt, 128), built once: several tests need it."""
    if 'pretrain_dataset' not in _cache:
        text = read_text(need_data('wiki.txt'))
        _cache['pretrain_dataset'] = submission().CharCorruptionDataset(text, BLOCK_SIZE)
    return _cache['pretrain_dataset']


def course_config(dataset):
    return submission().GPTConfig(dataset.vocab_size, BLOCK_SIZE, n_layer=4, n_head=8, n_embd=256)


def cpu_state(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def attention_modules(model):
    sub = submission()
    vanilla = [m for m in model.modules() if type(m) is sub.CausalSelfAttention]
    synth = [m for m in model.modules() if type(m) is sub.SynthesizerAttention]
    return vanilla, synth


def check_model(model, synthesizer):
    sub = submission()
    require(isinstance(model, sub.GPT), f'expected a GPT, got {type(model).__name__}')
    vanilla, synth = attention_modules(model)
    if synthesizer:
        require(len(synth) == 4 and not vanilla,
                f'expected 4 SynthesizerAttention blocks, found {len(synth)} (and {len(vanilla)} CausalSelfAttention)')
    else:
        require(len(vanilla) == 4 and not synth,
                f'expected 4 CausalSelfAttention blocks, found {len(vanilla)} (and {len(synth)} SynthesizerAttention)')


def check_pair(result, helper_name):
    require(isinstance(result, (tuple, list)) and len(result) == 2,
            f'{helper_name} must return (tconf, trainer), got {type(result).__name__}')
    tconf, trainer = result
    sub = submission()
    require(isinstance(tconf, sub.TrainerConfig), f'{helper_name}: tconf is a {type(tconf).__name__}, not a TrainerConfig')
    require(isinstance(trainer, sub.Trainer), f'{helper_name}: trainer is a {type(trainer).__name__}, not a Trainer')
    return tconf, trainer


def check_settings(tconf, expected, what):
    for key, want in expected.items():
        require(hasattr(tconf, key), f'{what}: TrainerConfig has no {key}')
        got = getattr(tconf, key)
        if isinstance(want, bool) or want is None:
            ok = got is want
        elif isinstance(want, tuple):
            ok = tuple(got) == want if isinstance(got, (tuple, list)) else False
        elif isinstance(want, float):
            ok = isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-9)
        else:
            ok = isinstance(got, (int, float)) and got == want
        require(ok, f'{what}: {key} is {got!r}, expected {want!r}')


def expected_settings(dataset, max_epochs, batch_size, learning_rate):
    return {'max_epochs': max_epochs, 'batch_size': batch_size, 'learning_rate': learning_rate,
            'betas': (0.9, 0.95), 'grad_norm_clip': 1.0, 'weight_decay': 0.1,
            'lr_decay': True, 'warmup_tokens': 512 * 20,
            'final_tokens': 200 * len(dataset) * BLOCK_SIZE, 'ckpt_path': None, 'num_workers': 4}


def call_helper(name, *args):
    """helper.<name>(*args) under the 15 s limit; training inside would blow it."""
    sub = submission()
    with time_limit(HELPER_SECONDS, f'helper.{name} (it must set up training, not train)'):
        return check_pair(getattr(sub, name)(*args), f'helper.{name}')


def check_untrained(model, before, helper_name):
    require(same_state(before, cpu_state(model)),
            f'helper.{helper_name} changed the model\'s parameters; it must not train (train() does)')


# ---------------------------------------------------------------- 1c

def test_1c_0():
    dataset = pretrain_dataset()
    model = submission().initialize_vanilla_model(course_config(dataset))
    check_model(model, synthesizer=False)
    model.eval()
    idx = torch.randint(0, dataset.vocab_size, (2, 10), device=next(model.parameters()).device)
    with torch.no_grad():
        out = model(idx)
    require(isinstance(out, tuple) and len(out) == 2, 'GPT.forward must return (logits, loss)')
    require(tuple(out[0].shape) == (2, 10, dataset.vocab_size),
            f'logits have shape {tuple(out[0].shape)}, expected (2, 10, {dataset.vocab_size})')
    n = sum(p.numel() for p in model.parameters())
    return f'{n:,} parameters'


def test_1c_1():
    dataset = pretrain_dataset()
    train_path = need_data('birth_places_train.tsv')
    model = submission().initialize_vanilla_model(course_config(dataset))
    before = cpu_state(model)
    tconf, trainer = call_helper('finetune', None, train_path, dataset, BLOCK_SIZE, model)
    check_untrained(model, before, 'finetune')
    check_settings(tconf, expected_settings(dataset, 75, 256, 6e-4), 'finetune without pretraining')
    require(getattr(trainer, 'model', model) is model, 'the trainer does not train the given model')
    data = getattr(trainer, 'train_dataset', None)
    require(data is not None and len(data) == 2000,
            'the trainer should train on the 2,000 lines of the finetuning corpus'
            + ('' if data is None else f', it has {len(data)} items'))


# ---------------------------------------------------------------- accuracy (1d, 1f, 1g)

def read_answers(path, name):
    # As utils.evaluate_places reads them: non-blank lines, the answer after the tab.
    rows = [line.strip().split('\t') for line in read_text(path).split('\n') if line.strip()]
    if not rows or len(rows[0]) < 2:
        raise NotRun(f'data/{name} has no answers')
    require(all(len(r) >= 2 for r in rows), f'data/{name} has lines without an answer')
    return [r[1] for r in rows]


def read_predictions(path):
    # One prediction per line; an empty line is an (empty) prediction, so only
    # the newline that ends the file is dropped.
    text = read_text(path)
    if text.endswith('\n'):
        text = text[:-1]
    return text.split('\n') if text else []


def accuracy(predictions_name, answers_name):
    """(correct, total) of a predictions file against an answers file, exact matches."""
    predictions_path = need_submission_file(predictions_name)
    answers = read_answers(need_data(answers_name), answers_name)
    predictions = read_predictions(predictions_path)
    require(len(predictions) == len(answers),
            f'submission/{predictions_name} has {len(predictions)} line(s), data/{answers_name} has {len(answers)}; '
            f'one prediction per line is expected')
    return sum(p == a for p, a in zip(predictions, answers)), len(answers)


def accuracy_test(predictions_name, answers_name, min_percent=None, min_correct=None):
    def test():
        correct, total = accuracy(predictions_name, answers_name)
        shown = f'{100 * correct / total:.2f} % ({correct} of {total} correct)'
        if min_correct is not None:
            require(correct >= min_correct, f'{shown}, need at least {min_correct} correct')
        else:
            # Integer comparison, in tenths of a percent: 50 of 500 is exactly 10 %, 14 of 500 2.8 %.
            require(1000 * correct >= round(10 * min_percent) * total, f'{shown}, need at least {min_percent} %')
        return shown
    return test


# ---------------------------------------------------------------- 1e: span corruption

CORRUPTION_BLOCK = 50
CORRUPTION_DRAWS = 1000


def corruption_text():
    """150 seeded lines of random words, all 64 characters long.

    One length for all: then the spread of kept/original length comes from the
    random truncation alone, not from documents of different lengths.
    """
    rng = random.Random(224)
    letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
    lines = []
    for _ in range(150):
        words = []
        while sum(len(w) + 1 for w in words) < 64:
            words.append(''.join(rng.choice(letters) for _ in range(rng.randint(1, 9))))
        lines.append(' '.join(words)[:63] + rng.choice('.,;!?'))
    return '\n'.join(lines)


def corruption_examples():
    """Draw the examples once for all 1e tests: [(document, x, y, decoded string)]."""
    if 'corruption' in _cache:
        return _cache['corruption']
    text = corruption_text()
    documents = text.split('\n')
    dataset = submission().CharCorruptionDataset(text, CORRUPTION_BLOCK)
    vocab = [PAD, MASK] + sorted(set(text))
    stoi = getattr(dataset, 'stoi', None)
    require(stoi == {c: i for i, c in enumerate(vocab)},
            'the vocabulary should be PAD (id 0), MASK (id 1), then the sorted characters of the data')
    require(len(dataset) == len(documents), f'len(dataset) is {len(dataset)}, the data has {len(documents)} lines')
    random.seed(0)
    torch.manual_seed(0)
    examples = []
    for n in range(CORRUPTION_DRAWS):
        idx = n % len(documents)
        item = dataset[idx]
        require(isinstance(item, (tuple, list)) and len(item) == 2, 'an item must be an (x, y) pair')
        x, y = item
        # Only what decoding needs; 1e-0 checks the dtype.
        for name, t in (('x', x), ('y', y)):
            require(isinstance(t, torch.Tensor) and tuple(t.shape) == (CORRUPTION_BLOCK - 1,),
                    f'{name} should be a tensor of length {CORRUPTION_BLOCK - 1}, got '
                    + (f'shape {tuple(t.shape)}' if isinstance(t, torch.Tensor) else type(t).__name__))
        ids = [int(i) for i in x.tolist()] + [int(y[-1])]
        require(all(0 <= i < len(vocab) for i in ids), 'an item holds ids outside the vocabulary')
        examples.append((documents[idx], x, y, ''.join(vocab[i] for i in ids)))
    _cache['corruption'] = examples
    return examples


def split_example(s):
    """(prefix, suffix, masked) of a decoded example, as laid out: prefix ⁇ suffix ⁇ masked [⁇] □..."""
    body = s.rstrip(PAD)
    require(PAD not in body, f'padding in the middle of an example: {s!r}')
    parts = body.split(MASK)
    require(len(parts) in (3, 4), f'splitting on the mask character gives {len(parts)} parts, not 3 or 4: {s!r}')
    require(len(parts) == 3 or parts[3] == '', f'characters after the last mask character: {s!r}')
    return body, parts[0], parts[1], parts[2]


def test_1e_0():
    ratios = []
    limit = int(CORRUPTION_BLOCK * 7 / 8)
    for document, _, _, s in corruption_examples():
        kept = sum(c not in (PAD, MASK) for c in s)
        require(4 <= kept <= limit, f'{kept} characters kept, expected 4 to {limit}: {s!r}')
        ratios.append(kept / len(document))
    spread = statistics.pstdev(ratios)
    require(spread > 0.05, f'the kept length hardly varies (std of kept/original {spread:.4f}, need > 0.05)')
    return f'std of kept/original length {spread:.3f}'


def test_1e_1():
    for document, _, _, s in corruption_examples():
        _, prefix, suffix, masked = split_example(s)
        require(document.startswith(prefix + masked + suffix),
                f'prefix + masked + suffix is not the start of the document: {s!r}')


def test_1e_2():
    for _, x, y, s in corruption_examples():
        for name, t in (('x', x), ('y', y)):
            require(t.dtype == torch.long, f'{name} should be a long tensor, not {t.dtype}')
        require(torch.equal(x[1:], y[:-1]), 'x[1:] should equal y[:-1] (y is x shifted by one)')
        body = s.rstrip(PAD)
        require(PAD not in body, f'padding may only come at the end: {s!r}')
    return f'{CORRUPTION_DRAWS} examples'


def test_1e_3():
    differences = []
    for _, _, _, s in corruption_examples():
        body, _, _, masked = split_example(s)
        differences.append(len(masked) - (len(body) - 2) / 4)
    mean, spread = statistics.fmean(differences), statistics.pstdev(differences)
    require(abs(mean) <= 1.5, f'masked spans average {mean:+.2f} characters off a quarter of the length, need within 1.5')
    require(spread > 0.01, f'the masked length does not vary (std {spread:.4f}, need > 0.01)')
    return f'mean difference {mean:+.2f}, std {spread:.2f}'


# ---------------------------------------------------------------- 1f, 1g: configurations

def test_1f_0():
    dataset = pretrain_dataset()
    model = submission().initialize_vanilla_model(course_config(dataset))
    before = cpu_state(model)
    tconf, trainer = call_helper('pretrain', dataset, BLOCK_SIZE, model)
    check_untrained(model, before, 'pretrain')
    check_settings(tconf, expected_settings(dataset, 650, 128, 6e-3), 'pretrain')
    require(getattr(trainer, 'train_dataset', dataset) is dataset, 'the trainer should train on the pretraining dataset')


def finetune_with_params(initialize):
    """finetune() given a params file: it loads the params and sets 10 epochs."""
    sub = submission()
    dataset = pretrain_dataset()
    train_path = need_data('birth_places_train.tsv')
    torch.manual_seed(1)
    source = getattr(sub, initialize)(course_config(dataset))
    saved = cpu_state(source)
    torch.manual_seed(2)
    model = getattr(sub, initialize)(course_config(dataset))
    require(not same_state(saved, cpu_state(model)), f'{initialize} gives the same weights for two seeds')
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'pretrained.params')
        torch.save(saved, path)
        tconf, _ = call_helper('finetune', path, train_path, dataset, BLOCK_SIZE, model)
    check_settings(tconf, expected_settings(dataset, 10, 256, 6e-4), 'finetune with pretraining')
    require(same_state(saved, cpu_state(model)), 'finetune did not load the params from reading_params_path')
    return model


def test_1f_3():
    finetune_with_params('initialize_vanilla_model')


def test_1g_0():
    model = finetune_with_params('initialize_synthesizer_model')
    check_model(model, synthesizer=True)


# ---------------------------------------------------------------- 1g: attention formulas

N_HEAD = 3


def small_attention(cls):
    """The module on the course's hidden-test shape, in eval mode, with a seeded input."""
    torch.manual_seed(0)
    config = SimpleNamespace(n_head=N_HEAD, n_embd=6, block_size=8, attn_pdrop=0.1, resid_pdrop=0.1)
    module = cls(config)
    module.eval()
    x = torch.randn(11, 7, 6, dtype=torch.float32)
    return module, x


def plain_attention(scores_of_head, values, proj, n_head, T):
    """Heads' softmax(mask(scores)) V, concatenated, then proj."""
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    hs = values.size(-1) // n_head
    heads = []
    for i in range(n_head):
        scores = scores_of_head(i, slice(i * hs, (i + 1) * hs)).masked_fill(~causal, float('-inf'))
        heads.append(torch.softmax(scores, dim=-1) @ values[..., i * hs:(i + 1) * hs])
    return proj(torch.cat(heads, dim=-1))


def synthesizer_reference(module, x):
    T = x.size(1)
    a = module.w1(x)  # X A_i + b1 for every head, side by side
    B, b2 = module.w2[:, :T], module.b2[:T]
    return plain_attention(lambda i, h: torch.relu(a[..., h]) @ B + b2,
                           module.value(x), module.proj, N_HEAD, T)


def dot_product_reference(module, x):
    T, C = x.size(1), x.size(2)
    q, k = module.query(x), module.key(x)
    scale = 1.0 / math.sqrt(C // N_HEAD)
    return plain_attention(lambda i, h: (q[..., h] @ k[..., h].transpose(-2, -1)) * scale,
                           module.value(x), module.proj, N_HEAD, T)


def compare_attention(cls_name, reference):
    cls = getattr(submission(), cls_name)
    module, x = small_attention(cls)
    with torch.no_grad():
        got = module(x)
        require(isinstance(got, torch.Tensor) and tuple(got.shape) == (11, 7, 6),
                f'{cls_name} output should have shape (11, 7, 6)')
        difference = torch.norm(got - reference(module, x)).item()
    require(difference < 1e-8, f'output differs from the handout formula by {difference:.3g} (norm), need < 1e-8')
    # The initial weights are tiny (and b2 is zero), so the check above would
    # not notice some mistakes; repeat with large random weights, where only
    # float32 rounding may differ.
    with torch.no_grad():
        generator = torch.Generator().manual_seed(5)
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
        got, want = module(x), reference(module, x)
        relative = (torch.norm(got - want) / torch.norm(want)).item()
    require(relative < 1e-5, f'with random weights the output differs from the handout formula '
                             f'by {relative:.3g} (relative norm)')
    return f'difference {difference:.2g}'


def test_1g_3():
    return compare_attention('SynthesizerAttention', synthesizer_reference)


def test_1c_2():
    return compare_attention('CausalSelfAttention', dot_product_reference)


# ---------------------------------------------------------------- 4: later course years' variants (ours)

PERCEIVER_PARAMS, ROPE_PARAMS = 3_331_584, 3_290_624  # the course run's, vocabulary 256


def later_model(initialize, *args):
    """A course-sized later-year model (vocabulary 256, as the course's wiki.txt gives), in eval mode."""
    torch.manual_seed(0)
    config = submission().GPTConfig(256, BLOCK_SIZE, n_layer=4, n_head=8, n_embd=256)
    return getattr(submission(), initialize)(config, *args).eval()


def check_keys(model, want_params, shapes, absent):
    state = model.state_dict()
    n = sum(p.numel() for p in model.parameters())
    require(n == want_params, f'{n:,} parameters, the course\'s model has {want_params:,}')
    for key, shape in shapes.items():
        require(key in state, f'state_dict has no {key}')
        require(tuple(state[key].shape) == shape, f'{key} has shape {tuple(state[key].shape)}, expected {shape}')
    for key in absent:
        require(key not in state, f'state_dict should not have {key}')
    return f'{n:,} parameters'


def test_4a_0():
    model = later_model('initialize_perceiver_model', 32)
    return check_keys(model, PERCEIVER_PARAMS, {
        'down_block.C': (1, 32, 256), 'down_block.attn.mask': (1, 1, 128, 128), 'up_block.attn.mask': (1, 1, 128, 128),
        'blocks.0.attn.mask': (1, 1, 32, 32), 'blocks.1.attn.mask': (1, 1, 32, 32),
        'down_block.attn.key.weight': (256, 256), 'up_block.mlp.0.weight': (1024, 256), 'head.weight': (256, 256),
    }, ['blocks.2.attn.mask', 'head.bias'])


def test_4a_1():
    """The bottleneck is causal: changing input t never changes an output before t."""
    model = later_model('initialize_perceiver_model', 32)
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(2, 256, (1, 100), generator=generator)
    device = next(model.parameters()).device
    with torch.no_grad():
        base = model(x.to(device))[0]
        for t in (0, 5, 31, 32, 60, 99):
            changed = x.clone()
            changed[0, t] = 2 + (int(x[0, t]) - 1) % 254
            out = model(changed.to(device))[0]
            require(torch.equal(out[:, :t], base[:, :t]), f'changing input {t} changed an output before {t}')
            require(not torch.equal(out[:, t], base[:, t]), f'changing input {t} did not change output {t}')
    return 'inputs 0, 5, 31, 32, 60, 99'


def test_4b_0():
    model = later_model('initialize_rope_model')
    result = check_keys(model, ROPE_PARAMS, {
        'blocks.0.attn.rope_cache': (128, 16, 2), 'blocks.3.attn.rope_cache': (128, 16, 2),
        'blocks.0.attn.mask': (1, 1, 128, 128), 'tok_emb.weight': (256, 256),
    }, ['pos_emb'])
    cache = model.state_dict()['blocks.0.attn.rope_cache'].cpu()
    theta = 10000.0 ** (-torch.arange(0, 32, 2, dtype=torch.float64) / 32)
    angles = torch.arange(128, dtype=torch.float64)[:, None] * theta
    want = torch.stack([angles.cos(), angles.sin()], -1).float()
    require(torch.allclose(cache, want, atol=1e-5), 'rope_cache[t, i] is not (cos t theta_i, sin t theta_i)')
    return result


def rotated(x, positions):
    sub = submission()
    cache = sub.precompute_rotary_emb(x.size(-1), 128)
    return sub.apply_rotary_emb(x, cache[positions])


def test_4b_1():
    """Rotation keeps every vector's length."""
    x = torch.randn(2, 3, 40, 32, generator=torch.Generator().manual_seed(2))
    y = submission().apply_rotary_emb(x, submission().precompute_rotary_emb(32, 128))
    require(tuple(y.shape) == tuple(x.shape), f'apply_rotary_emb changed the shape to {tuple(y.shape)}')
    require(torch.allclose(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-5), 'the rotation changed vector lengths')
    require(not torch.allclose(y[..., 1:, :], x[..., 1:, :]), 'positions after 0 were not rotated')


def test_4b_2():
    """q . k after rotation depends only on the distance between their positions."""
    generator = torch.Generator().manual_seed(3)
    q, k = torch.randn(50, 32, generator=generator), torch.randn(50, 32, generator=generator)
    m, n = torch.randint(0, 60, (50,), generator=generator), torch.randint(0, 60, (50,), generator=generator)
    first = (rotated(q, m) * rotated(k, n)).sum(-1)
    shifted = (rotated(q, m + 40) * rotated(k, n + 40)).sum(-1)
    require(torch.allclose(first, shifted, atol=1e-4), 'q.k changed when both positions moved by 40')
    moved = (rotated(q, m + 1) * rotated(k, n)).sum(-1)
    require(not torch.allclose(first, moved, atol=1e-4), 'q.k does not depend on the positions at all')


# ---------------------------------------------------------------- registration

grader = graderUtil.Grader()
add = grader.add_basic_part
add('1c-0-hidden', test_1c_0, 'initialize_vanilla_model builds a GPT of 4 CausalSelfAttention blocks')
add('1c-1-basic', test_1c_1, 'finetune without pretraining: settings, and it does not train')
add('1c-2-extra', test_1c_2, 'CausalSelfAttention equals the dot-product formula', max_seconds=15)
add('1d-0-hidden', accuracy_test('vanilla.nopretrain.dev.predictions', 'birth_dev.tsv', min_correct=1),
    'without pretraining: at least 1 dev prediction correct')
add('1d-1-hidden', accuracy_test('vanilla.nopretrain.test.predictions', 'birth_test.tsv', min_correct=1),
    'without pretraining: at least 1 test prediction correct')
add('1e-0-basic', test_1e_0, 'span corruption: 4 to 43 characters kept, the kept length varies')
add('1e-1-basic', test_1e_1, 'span corruption: prefix ⁇ suffix ⁇ masked ⁇ □..., from the start of the document')
add('1e-2-basic', test_1e_2, 'span corruption: long tensors of length 49, y is x shifted by one')
add('1e-3-basic', test_1e_3, 'span corruption: masked span is a quarter of the kept length on average')
add('1f-0-basic', test_1f_0, 'pretrain: settings, and it does not train')
add('1f-1-hidden', accuracy_test('vanilla.pretrain.dev.predictions', 'birth_dev.tsv', min_percent=10),
    'vanilla pretrained: dev accuracy >= 10 %')
add('1f-2-hidden', accuracy_test('vanilla.pretrain.test.predictions', 'birth_test.tsv', min_percent=9),
    'vanilla pretrained: test accuracy >= 9 %')
add('1f-3-extra', test_1f_3, 'vanilla finetune with pretraining: settings, and it loads the params')
add('1g-0-basic', test_1g_0, 'initialize_synthesizer_model and finetune with pretraining')
add('1g-1-hidden', accuracy_test('synthesizer.pretrain.dev.predictions', 'birth_dev.tsv', min_percent=5),
    'synthesizer pretrained: dev accuracy >= 5 %')
add('1g-2-hidden', accuracy_test('synthesizer.pretrain.test.predictions', 'birth_test.tsv', min_percent=4),
    'synthesizer pretrained: test accuracy >= 4 %')
add('1g-3-hidden', test_1g_3, 'SynthesizerAttention equals the handout formula', max_seconds=15)
# Later course years (ours): the perceiver's bottleneck and rotary embeddings, and their pass marks.
add('4a-0-extra', test_4a_0, 'perceiver: the course\'s keys, shapes and 3,331,584 parameters')
add('4a-1-extra', test_4a_1, 'perceiver: the bottleneck is causal (input t never changes outputs before t)')
add('4a-2-extra', accuracy_test('perceiver.pretrain.dev.predictions', 'birth_dev.tsv', min_percent=2.8),
    'perceiver pretrained: dev accuracy >= 2.8 %')
add('4a-3-extra', accuracy_test('perceiver.pretrain.test.predictions', 'birth_test.tsv', min_percent=2.5),
    'perceiver pretrained: test accuracy >= 2.5 %')
add('4b-0-extra', test_4b_0, 'rope: the course\'s keys, shapes, rotary table and 3,290,624 parameters')
add('4b-1-extra', test_4b_1, 'rope: the rotation keeps vector lengths')
add('4b-2-extra', test_4b_2, 'rope: q.k depends only on the distance between positions')
add('4b-3-extra', accuracy_test('rope.pretrain.dev.predictions', 'birth_dev.tsv', min_percent=2.2),
    'rope pretrained: dev accuracy >= 2.2 %')
add('4b-4-extra', accuracy_test('rope.pretrain.test.predictions', 'birth_test.tsv', min_percent=1.6),
    'rope pretrained: test accuracy >= 1.6 %')

if __name__ == '__main__':
    try:
        sys.exit(grader.main(sys.argv[1:]))
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
