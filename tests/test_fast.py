"""The fast path against the exact course computation, which serves as the oracle.

Data in the course's format: the synthetic world (tests/conftest.py)."""
import random

import pytest
import torch
import torch.nn.functional as F

from conftest import lines_of, read
from submission import GPT, CharCorruptionDataset, GPTConfig, NameDataset
from submission import attention
from submission.lib import batching
from tools import evaluate
from submission.model import packed_mask


@pytest.fixture(scope='module')
def pre(world_data):
    return CharCorruptionDataset(read(world_data, 'wiki.txt'), 128)


@pytest.fixture(scope='module')
def names(pre, world_data):
    return NameDataset(read(world_data, 'birth_places_train.tsv'), pre)


def pair(pre, synth, **kw):
    """Two models with the same weights: the course computation and the fast one."""
    torch.manual_seed(0)
    conf = dict(n_layer=2, n_head=4, n_embd=64, synthesizer=synth, **kw)
    exact = GPT(GPTConfig(pre.vocab_size, 128, **conf))
    fast = GPT(GPTConfig(pre.vocab_size, 128, exact=False, **conf))
    fast.load_state_dict(exact.state_dict())
    if synth:  # make w2/b2 matter, so a wrong key column would show
        with torch.no_grad():
            for blk_e, blk_f in zip(exact.blocks, fast.blocks):
                blk_e.attn.w2.normal_(0, 0.3), blk_e.attn.b2.normal_(0, 0.3)
                blk_f.attn.w2.copy_(blk_e.attn.w2), blk_f.attn.b2.copy_(blk_e.attn.b2)
    return exact.eval(), fast.eval()


def test_fast_corruption_matches_per_item(pre):
    for seed in range(3):
        idx = list(range(seed * 150, seed * 150 + 150)) + [len(pre) - 1]
        random.seed(seed)
        items = [pre[i] for i in idx]
        random.seed(seed)
        fast = [pre.trimmed(i) for i in idx]
        for (x, y), (fx, fy) in zip(items, fast):
            n = len(fx)
            assert torch.equal(x[:n], fx) and torch.equal(y[:n], fy)
            assert not y[n:].any()  # what the fast path drops is padding only


@pytest.mark.parametrize('synth', [False, True])
def test_logits_match_in_eval_fp32(pre, synth):
    exact, fast = pair(pre, synth)
    random.seed(0)
    x, y, _ = batching.make_batch(pre, list(range(64)), exact=True)
    with torch.no_grad():
        assert (exact(x)[0] - fast(x)[0]).abs().max() < 1e-4



def test_pack_places_examples_first_fit_longest_first():
    """Lengths 5, 3, 4, 2 into rows of 7: the 5 opens row 0, the 4 row 1, the 3 fits after
    the 4, the 2 after the 5; each token keeps its id, its target and its position inside
    its own example, and padding is id 0 at position 0."""
    examples = [(torch.arange(10, 10 + n), torch.arange(50, 50 + n)) for n in (5, 3, 4, 2)]
    x, y, pos = batching.pack(examples, 7)
    assert x.tolist() == [[10, 11, 12, 13, 14, 10, 11], [10, 11, 12, 13, 10, 11, 12]]
    assert y.tolist() == [[50, 51, 52, 53, 54, 50, 51], [50, 51, 52, 53, 50, 51, 52]]
    assert pos.tolist() == [[0, 1, 2, 3, 4, 0, 1], [0, 1, 2, 3, 0, 1, 2]]
    x, y, pos = batching.pack(examples[:1] + examples[3:], 9)  # 5 + 2 in one row of 7, cut to 7
    assert x.tolist() == [[10, 11, 12, 13, 14, 10, 11]] and pos.tolist() == [[0, 1, 2, 3, 4, 0, 1]]
    x, y, pos = batching.pack([examples[0], examples[0]], 7)  # two rows; padding id 0, pos 0
    assert x.tolist() == [[10, 11, 12, 13, 14], [10, 11, 12, 13, 14]]
    x, y, pos = batching.pack([examples[0], examples[3], examples[2]], 6)
    assert x.tolist() == [[10, 11, 12, 13, 14, 0], [10, 11, 12, 13, 10, 11]]
    assert y[0, 5] == 0 and pos[0, 5] == 0

@pytest.mark.parametrize('synth', [False, True])
@pytest.mark.parametrize('dataset', ['pretrain', 'finetune'])
def test_packed_loss_equals_unpacked(pre, names, synth, dataset):
    ds = pre if dataset == 'pretrain' else names
    exact, fast = pair(pre, synth)
    idx = list(range(len(ds)))[-128:]
    random.seed(7)
    x, y, _ = batching.make_batch(ds, idx, exact=True)
    random.seed(7)
    px, py, pos = batching.make_batch(ds, idx, exact=False)
    assert px.shape[0] < x.shape[0] * 0.75  # packing saves rows
    assert (py != 0).sum() == (y != 0).sum()
    assert sorted(py[py != 0].tolist()) == sorted(y[y != 0].tolist())
    with torch.no_grad():
        ref = exact(x, y)[1]
        assert abs(exact(px, py, pos=pos)[1] - ref) < 1e-5  # same math, packed
        assert abs(fast(px, py, pos=pos)[1] - ref) < 1e-4   # fused kernel, packed


def test_packed_gradients_match(pre):
    exact, _ = pair(pre, False)
    exact.train()
    for m in exact.modules():  # dropout off: compare the math, not random numbers
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    random.seed(3)
    x, y, _ = batching.make_batch(pre, list(range(32)), exact=True)
    random.seed(3)
    px, py, pos = batching.make_batch(pre, list(range(32)), exact=False)
    exact(x, y)[1].backward()
    g1 = {n: p.grad.clone() for n, p in exact.named_parameters()}
    exact.zero_grad()
    exact(px, py, pos=pos)[1].backward()
    for n, p in exact.named_parameters():
        assert torch.allclose(p.grad, g1[n], atol=1e-6), n



def attention_inputs(B, h, T, d, with_bias):
    """A packed row of two examples (a missing mask would let them see each other), q, k, v that
    want gradients, a per-key bias or None, and an output gradient."""
    torch.manual_seed(0)
    mask = packed_mask(torch.cat([torch.arange(7), torch.arange(T - 7)]).expand(B, T))
    q, k, v = (torch.randn(B, h, T, d, requires_grad=True) for _ in range(3))
    bias = torch.randn(B, 1, 1, T) if with_bias else None
    return mask, q, k, v, bias, torch.randn(B, h, T, d)


@pytest.mark.parametrize('p', [0.1, 0.0])
@pytest.mark.parametrize('with_bias', [False, True])
def test_cpu_training_attention_is_the_course_formula_under_its_dropout_mask(with_bias, p):
    """Training on a CPU (gradients on) takes the cheaper plain formula (16-bit dropout sampler,
    scores masked in place outside autograd), with dropout and without (the demo's). Under the
    same keep mask its output and its gradients for q, k and v are the course's formula's, on
    a packed row of two examples (a missing mask would let them see each other), with and
    without the synthesizer's per-key bias."""
    B, h, T, scale = 3, 2, 20, 0.3
    mask, q, k, v, bias, g = attention_inputs(B, h, T, 8, with_bias)

    torch.manual_seed(1)
    out = attention.plain_attention(q, k, v, bias, mask, scale, p, course=False)
    out.backward(g)
    got = [out.detach()] + [t.grad for t in (q, k, v)]
    q.grad = k.grad = v.grad = None

    torch.manual_seed(1)  # the same draws: the keep mask plain_attention() used
    keep = attention.keep_mask(torch.empty(B, h, T, T), p) if p else torch.ones(B, h, T, T, dtype=torch.bool)
    att = (q @ k.transpose(-2, -1)) * scale + (0 if bias is None else bias)
    att = F.softmax(att.masked_fill(~mask, -1e10), dim=-1)
    ref = (att * keep / (1 - p)) @ v
    ref.backward(g)
    want = [ref.detach()] + [t.grad for t in (q, k, v)]
    assert abs(1 - keep.float().mean() - p) < 0.03  # the mask drops about p of the weights
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_cpu_dropout_is_the_course_formula_under_its_keep_mask(dtype):
    """The fast path's dropout layers on a CPU (the 16-bit sampler, a 0/1 multiplier of the
    activations' dtype): under the same draws, output and gradient are bit for bit those of
    nn.Dropout's formula, zeroing the dropped elements and scaling the rest by 1/(1-p) at the
    computation's precision (not bf16's rounded 1/0.9); about p of the elements are dropped."""
    p = 0.1
    torch.manual_seed(0)
    x = torch.randn(6, 50, 64).to(dtype).requires_grad_()
    g = torch.randn(6, 50, 64).to(dtype)
    torch.manual_seed(1)
    out = attention.dropout(x, p)
    out.backward(g)
    torch.manual_seed(1)
    keep = attention.keep_mask(x, p)
    assert keep.dtype == dtype and set(keep.unique().tolist()) == {0.0, 1.0}
    assert abs(1 - keep.float().mean() - p) < 0.01
    ref = x.detach().masked_fill(keep == 0, 0.0) * (1 / (1 - p))
    assert torch.equal(out.detach(), ref)
    assert torch.equal(x.grad, g.masked_fill(keep == 0, 0.0) * (1 / (1 - p)))
    assert torch.equal(attention.dropout(x, p, training=False), x)


@pytest.mark.parametrize('with_bias', [False, True])
def test_fused_attention_with_gradients_is_the_course_formula(with_bias, monkeypatch):
    """The GPU's training attention (scaled_dot_product_attention, the synthesizer's bias folded
    into q and k and padded to a multiple of 8 wide), run on the CPU: without dropout its output
    and its gradients for q, k and v are the course formula's, on a packed row of two examples."""
    scale = 0.3
    mask, q, k, v, bias, g = attention_inputs(3, 2, 20, 32, with_bias)
    widths = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, 'scaled_dot_product_attention', lambda q, k, *a, **kw: widths.append(
        (q.size(-1), k.size(-1))) or sdpa(q, k, *a, **kw))

    out = attention.fused_attention(q, k, v, bias, mask, scale, 0.0)
    out.backward(g)
    got = [out.detach()] + [t.grad for t in (q, k, v)]
    q.grad = k.grad = v.grad = None
    ref = attention.plain_attention(q, k, v, bias, mask, scale, 0.0, course=True)
    ref.backward(g)
    want = [ref.detach()] + [t.grad for t in (q, k, v)]
    assert widths == [(40, 40)] if with_bias else widths == [(32, 32)]  # 32 + 1 padded to 40
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-5)


def test_fused_attention_drops_at_the_rate_asked():
    """Its dropout (torch's, inside the kernel) at p = 0.1: uniform weights over the visible keys
    and one-hot values show each weight; about a tenth of them are 0, the rest scaled by 1/(1-p)."""
    torch.manual_seed(0)
    B, h, T = 8, 4, 64
    q = k = torch.zeros(B, h, T, T)
    v = torch.eye(T).expand(B, h, T, T)
    mask = attention.causal_mask(T, 'cpu')
    out = attention.fused_attention(q, k, v, None, mask, 1.0, 0.1)
    seen = out[mask.expand(B, h, T, T)]
    weights = (1.0 / torch.arange(1, T + 1)).view(1, 1, T, 1).expand(B, h, T, T)[mask.expand(B, h, T, T)]
    dropped = (seen == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.01, dropped
    kept = seen != 0
    assert torch.allclose(seen[kept], weights[kept] / 0.9, rtol=1e-5)


@pytest.mark.parametrize('synth', [False, True])
def test_whole_model_trains_the_same_with_either_attention(pre, synth):
    """A model switched to the fused kernel (GPTConfig(kernel='fused'), the GPU's choice) and one
    on the course's computation give the same packed loss and gradients, dropout off."""
    torch.manual_seed(0)
    conf = dict(n_layer=2, n_head=4, n_embd=32, synthesizer=synth, embd_pdrop=0.0, resid_pdrop=0.0,
                attn_pdrop=0.0)
    exact = GPT(GPTConfig(pre.vocab_size, 128, **conf))
    fused = GPT(GPTConfig(pre.vocab_size, 128, exact=False, kernel='fused', **conf))
    fused.load_state_dict(exact.state_dict())
    random.seed(3)
    x, y, pos = batching.make_batch(pre, list(range(32)), exact=False)
    losses, grads = [], []
    for m in (exact, fused):
        m.train()
        loss = m(x, y, pos=pos)[1]
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad for n, p in m.named_parameters()})
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-6), n


def test_prefill_groups_prompts_up_to_the_token_budget():
    """Prompts sorted by length go into the cache in consecutive groups, each padded to its
    longest within the budget (a prompt longer than the budget alone), each as large as the
    budget allows: the short prompts in large groups, the long tail in small ones."""
    lens = [25] * 100 + list(range(30, 60)) + [40, 300]
    runs = evaluate.prefill_chunks(lens, budget=2048)
    assert runs[0] == (0, 81) and runs[-1] == (len(lens) - 1, len(lens))  # 81 * 25 <= 2048 < 82 * 25
    assert [a for a, _ in runs[1:]] == [b for _, b in runs[:-1]]  # every prompt once, in order
    for start, stop in runs:
        assert stop - start == 1 or (stop - start) * max(lens[start:stop]) <= 2048
        if stop < len(lens):  # the next prompt would not have fitted
            assert (stop + 1 - start) * max(lens[start:stop + 1]) > 2048


@pytest.mark.parametrize('synth', [False, True])
def test_batched_greedy_equals_one_at_a_time_on_dev(pre, synth, world_data):
    """Same params, every dev and test question and prompts cut from the corpus at
    lengths 5 to 104 (so rows of many lengths share a batch, and the longest go the
    course's way; the synthesizer, whose attention spans 127 positions, gets up to
    95): the cached batched decoder and the course's one-question-at-a-time sample()
    give identical predictions. Random weights, scaled up so the logits are decisive:
    the prompts get varied strings."""
    torch.manual_seed(0)
    conf = dict(n_layer=2, n_head=4, n_embd=32, synthesizer=synth)
    model = GPT(GPTConfig(pre.vocab_size, 128, **conf))
    with torch.no_grad():
        model.head.weight.mul_(40)
        model.pos_emb.normal_(0, 0.5)
        if synth:
            for blk in model.blocks:
                blk.attn.w2.normal_(0, 0.5), blk.attn.b2.normal_(0, 0.5)
    qs = [l.split('\t')[0] for l in lines_of(world_data, 'birth_dev.tsv') + lines_of(world_data, 'birth_test.tsv')]
    qs += [doc[:5 + i] for i, doc in enumerate(pre.data[:91 if synth else 100])]
    slow = evaluate.predict_places(model, qs, pre.stoi, pre.itos, 'cpu', exact=True)
    fast_model = GPT(GPTConfig(pre.vocab_size, 128, exact=False, **conf))
    fast_model.load_state_dict(model.state_dict())
    rows = []  # the batch of each decoding step (one character a row)

    def decoding(module, inputs, output):
        if inputs[0].size(1) == 1:
            rows.append(inputs[0].size(0))
    fast_model.tok_emb.register_forward_hook(decoding)
    fast = evaluate.predict_places(fast_model, qs, pre.stoi, pre.itos, 'cpu')
    assert len(set(slow)) > 50  # varied enough that a wrong position or cache would show
    assert fast == slow
    # Rows that have answered leave the batch (and the cache) while the others go on (here the
    # vanilla model's rows answer at different steps; the synthesizer's do not).
    assert rows[0] > min(rows) > 0 or synth


def test_prefetched_batches_equal_batches_built_in_line(pre, names):
    """The background thread (what a GPU run uses) hands out the batches that building them in
    line gives, in the same order, with the same random state after each; stopped after 7
    steps and restarted from there with that state, as a resumed run is, it goes on with the
    same batches. Packed pretraining batches (random) and exact finetuning ones (fixed)."""
    for ds, exact in ((pre, False), (names, True)):
        steps = [batching.Step(e, it, 16, list(range(it * 16, it * 16 + 16)), 1.0) for e in range(2) for it in range(3)]
        random.seed(3)
        inline = []
        for step in steps:
            x, y, pos = batching.make_batch(ds, step[3], exact)
            inline.append(((x, y, pos), random.getstate()))

        def same(got, want):
            (x, y, pos), state = want
            assert torch.equal(got.x, x) and torch.equal(got.y, y)
            assert (got.pos is None and pos is None) or torch.equal(got.pos, pos)
            assert got.targets == int((y != 0).sum()) and got.random_state == state

        random.seed(3)
        first = batching.Prefetcher(ds, iter(steps), exact, 'cpu', background=True)
        for want in inline[:4]:
            same(next(first), want)
        first.close()  # the thread had built further; the stream goes back to after step 4
        assert random.getstate() == inline[3][1]
        second = batching.Prefetcher(ds, iter(steps[4:]), exact, 'cpu', background=True)
        for want in inline[4:]:
            same(next(second), want)
            assert second.random_state == want[1]
        with pytest.raises(StopIteration):
            next(second)
        second.close()
        assert random.getstate() == inline[-1][1]
