"""The learning-rate schedule fitted to a run (--schedule_epochs), and the course's kept as it is.

The course's cosine reaches its floor at final_tokens = 200 epochs of block_size
tokens, whatever the number of epochs run; --schedule_epochs=N places it at the
end of N epochs instead. Checked on the formula and through the real command line
(the learning rate every step logs). Data: the synthetic world."""
import json
import math
import sys

import pytest
import torch

from conftest import assert_one_line_error, lines_of, run_py
from submission.dataset import CharCorruptionDataset
from submission.lib.recipe import fitted_schedule
from submission.trainer import TrainerConfig, lr_at

COURSE_PRETRAIN = dict(max_epochs=650, batch_size=128, learning_rate=6e-3, lr_decay=True, warmup_tokens=512 * 20)


def world_corpus(world_data):
    with open(f'{world_data}/wiki.txt', encoding='utf-8') as f:
        return CharCorruptionDataset(f.read(), 128)


def course_config(dataset):
    return TrainerConfig(final_tokens=200 * len(dataset) * 128, **COURSE_PRETRAIN)


def log_records(path):
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f]


def pretrain(world_data, params, *extra):
    return run_py(['--function=pretrain', '--variant=vanilla', f'--pretrain_corpus_path={world_data}/wiki.txt',
                   f'--writing_params_path={params}', '--precision=fp32', '--threads=1', *extra])


@pytest.mark.parametrize('epochs', [3, 10, 40])
def test_fitted_schedule_ends_at_its_floor_and_scales_with_the_run(world_data, epochs):
    data = world_corpus(world_data)
    course = course_config(data)
    fitted = fitted_schedule(course, epochs, data)
    per_epoch = len(data) * 127  # the course counts every position of every row
    assert fitted.max_epochs == epochs and fitted.final_tokens == epochs * per_epoch
    assert (course.max_epochs, course.final_tokens) == (650, 200 * len(data) * 128)  # the course's left alone
    assert lr_at(epochs * per_epoch, fitted) == pytest.approx(6e-4, rel=1e-12)  # the floor, at the last step
    # Warmup as the course's; the decay's midpoint halfway through the run; the course's
    # max(0.1, cosine) meets its floor at 80 % of the run: positions scale with N.
    assert lr_at(5120, fitted) == pytest.approx(3e-3)
    assert lr_at(10240 + (epochs * per_epoch - 10240) / 2, fitted) == pytest.approx(3e-3)
    progress = lambda share: (share * epochs * per_epoch - 10240) / (epochs * per_epoch - 10240)
    assert lr_at(0.7 * epochs * per_epoch, fitted) == pytest.approx(
        6e-3 * 0.5 * (1 + math.cos(math.pi * progress(0.7))))
    assert lr_at(0.7 * epochs * per_epoch, fitted) > 6e-4 * 1.5
    assert lr_at(0.81 * epochs * per_epoch, fitted) == pytest.approx(6e-4)


def test_schedule_epochs_through_the_command_line(world_data, tmp_path):
    """A whole short run: its last step logs the floor; it says its steps and their time."""
    params = tmp_path / 'p.params'
    p = pretrain(world_data, params, '--schedule_epochs=2')
    assert p.returncode == 0, p.stderr
    data = world_corpus(world_data)
    steps = [r for r in log_records(str(params) + '.log.jsonl') if 'event' not in r]
    per_epoch_steps = math.ceil(len(data) / 128)
    assert len(steps) == 2 * per_epoch_steps and steps[-1]['epoch'] == 2
    assert steps[-1]['lr'] == pytest.approx(6e-4, rel=1e-12)
    assert steps[len(steps) // 2 - 1]['lr'] > 2e-3  # still high halfway
    assert f'training {2 * per_epoch_steps} steps (2 epochs of {per_epoch_steps} steps of 128)' in p.stderr
    assert 'estimated time left: ' in p.stderr and ' s a step over steps 2-6)' in p.stderr


def test_course_schedule_and_max_epochs_keep_their_meaning(world_data, tmp_path):
    """Without --schedule_epochs the logged rate is the course's formula (cosine to 200 epochs), also
    with --max_epochs and --max_steps cutting the run."""
    data = world_corpus(world_data)
    course = course_config(data)
    for extra in (['--max_epochs=2'], ['--max_steps=3']):
        params = tmp_path / f'{extra[0][2:].split("=")[0]}.params'
        p = pretrain(world_data, params, *extra)
        assert p.returncode == 0, p.stderr
        steps = [r for r in log_records(str(params) + '.log.jsonl') if 'event' not in r]
        tokens = 0
        for r in steps:
            batch = min(128, len(data) - 128 * ((r['step'] - 1) % math.ceil(len(data) / 128)))
            tokens += batch * 127
            assert r['lr'] == lr_at(tokens, course)
        assert steps[-1]['lr'] > 5.9e-3  # the course's rate is near its peak after a couple of epochs


@pytest.mark.parametrize('value, needle', [
    ('0', 'out of range'), ('-3', 'out of range'), ('ten', 'whole number'), ('2.5', 'whole number'),
    ('100001', 'out of range'),
])
def test_bad_schedule_epochs(world_data, tmp_path, value, needle):
    p = pretrain(world_data, tmp_path / 'x.params', f'--schedule_epochs={value}')
    assert_one_line_error(p, '--schedule_epochs', needle)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize('extra, needle', [
    (['--exact'], '--exact runs the course'), (['--max_epochs=3'], 'drop --max_epochs=3'),
])
def test_schedule_epochs_refused_with_exact_or_max_epochs(world_data, tmp_path, extra, needle):
    p = pretrain(world_data, tmp_path / 'x.params', '--schedule_epochs=5', *extra)
    assert_one_line_error(p, '--schedule_epochs', needle)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- the rest of a recipe of one's own

def test_recipe_options_take_effect_and_are_recorded(world_data, tmp_path):
    params = tmp_path / 'p.params'
    p = pretrain(world_data, params, '--schedule_epochs=1', '--batch_size=32', '--learning_rate=2e-3',
                 '--weight_decay=0', '--dropout=0')
    assert p.returncode == 0, p.stderr
    data = world_corpus(world_data)
    records = log_records(str(params) + '.log.jsonl')
    settings = records[0]['settings']
    assert (settings['batch_size'], settings['learning_rate'], settings['weight_decay'], settings['dropout']) == \
        (32, 2e-3, 0.0, 0.0)
    steps = [r for r in records if 'event' not in r]
    assert len(steps) == math.ceil(len(data) / 32) and steps[-1]['lr'] == pytest.approx(2e-4, rel=1e-12)


@pytest.mark.parametrize('option, needle', [
    ('--batch_size=0', 'out of range'), ('--batch_size=3.5', 'whole number'), ('--learning_rate=0', 'out of range'),
    ('--learning_rate=-1e-3', 'out of range'), ('--learning_rate=fast', 'not a number'),
    ('--learning_rate=1_0', 'digits 0-9'), ('--weight_decay=2', 'out of range'), ('--dropout=0.95', 'out of range'),
    ('--dropout=nan', 'not a number'),
])
def test_bad_recipe_values(world_data, tmp_path, option, needle):
    p = pretrain(world_data, tmp_path / 'x.params', option)
    assert_one_line_error(p, option.split('=')[0], needle)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize('option', ['--batch_size=32', '--learning_rate=1e-3', '--weight_decay=0', '--dropout=0'])
def test_recipe_options_are_refused_with_exact(world_data, tmp_path, option):
    p = pretrain(world_data, tmp_path / 'x.params', option, '--exact')
    assert_one_line_error(p, option.split('=')[0], '--exact runs the course')


def test_pretrain_questions_mix_the_finetuning_questions_into_pretraining(world_data, tmp_path):
    """Every epoch holds the corpus's span corruptions and the questions, shuffled together; the
    held-out sets are refused by name, and the option is pretraining's alone."""
    params = tmp_path / 'p.params'
    train = f'{world_data}/birth_places_train.tsv'
    p = pretrain(world_data, params, '--schedule_epochs=1', '--batch_size=32', f'--pretrain_questions={train}')
    assert p.returncode == 0, p.stderr
    docs = len(world_corpus(world_data))
    questions = len([line for line in open(train, encoding='utf-8') if line.strip()])
    records = log_records(str(params) + '.log.jsonl')
    assert records[0]['settings']['pretrain_questions'] == 'birth_places_train.tsv'
    assert len([r for r in records if 'event' not in r]) == math.ceil((docs + questions) / 32)
    p = pretrain(world_data, tmp_path / 'q.params', f'--pretrain_questions={world_data}/birth_dev.tsv')
    assert_one_line_error(p, 'is a held-out set', 'birth_places_train.tsv')
    p = pretrain(world_data, tmp_path / 'q.params', f'--pretrain_questions={train}', '--exact')
    assert_one_line_error(p, '--pretrain_questions', '--exact runs the course')
    p = run_py(['--function=finetune', '--variant=vanilla', f'--pretrain_corpus_path={world_data}/wiki.txt',
                f'--writing_params_path={tmp_path / "f.params"}', f'--finetune_corpus_path={train}',
                f'--pretrain_questions={train}'])
    assert_one_line_error(p, '--pretrain_questions does nothing with --function=finetune')


def test_cpu_ladder_runs_the_recipe_at_each_budget_and_plots_it(src_copy, tmp_path):
    """bench/cpu_ladder.py beside a scratch src/ (the world as its course data), two budgets cut to a
    few steps: one summary row a budget, with its steps, times and dev accuracy, the test predictions
    written, and the plot; run again, it continues instead of training anew."""
    import shutil
    from conftest import ROOT, run
    bench = tmp_path / 'bench'
    bench.mkdir()
    for name in ('cpu_ladder.py', 'pipeline.py'):
        shutil.copy(f'{ROOT}/bench/{name}', bench / name)
    args = ['vanilla', '1', '2', f'--out={tmp_path / "ladder"}', '--', '--max_steps=2', '--threads=1']
    p = run([sys.executable, str(bench / 'cpu_ladder.py'), *args], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [line.split('\t') for line in (tmp_path / 'ladder' / 'ladder.tsv').read_text().splitlines()]
    assert rows[0][:4] == ['variant', 'epochs', 'seed', 'pretrain_steps']
    assert [(r[0], r[1], r[2], r[3]) for r in rows[1:]] == [('vanilla', '1', '0', '2'), ('vanilla', '2', '0', '2')]
    for r in rows[1:]:
        assert int(r[9]) == len(lines_of(f'{src_copy}/data', 'birth_dev.tsv')) and r[11].endswith('.test.predictions')
    assert (tmp_path / 'ladder' / 'ladder.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    log = tmp_path / 'ladder' / 'vanilla-N1-seed0' / 'vanilla.pretrain.params.log.jsonl'
    assert log_records(str(log))[0]['settings']['schedule_epochs'] == 1
    before = log.read_text()
    p = run([sys.executable, str(bench / 'cpu_ladder.py'), *args], tmp_path)
    assert p.returncode == 0 and log.read_text() == before  # finished stages are kept, not run again


def test_the_cpu_recipe_commands_train_the_recipe_and_take_an_option_given_after_them(src_copy):
    """./run.sh VARIANT_pretrain_cpu writes the course's params file with run.sh's recipe; a recipe
    option given after the command replaces the recipe's own instead of being refused as given twice."""
    from conftest import run
    from submission.lib import files, options
    recipe = dict(option[2:].split('=') for option in files.commands()['synthesizer_pretrain_cpu']
                  if option.split('=')[0] in options.RECIPE)
    sub = src_copy / 'submission'
    p = run(['./run.sh', 'synthesizer_pretrain_cpu', '--max_steps=1', '--threads=1'], src_copy)
    assert p.returncode == 0, p.stderr
    # It starts by saying what to expect, and which command passes the course's marks instead.
    assert p.stderr.splitlines()[0].startswith('note: the CPU recipe took about an hour end to end for vanilla')
    assert "under the course's 10 %" in p.stderr and './run.sh synthesizer_pretrain (' in p.stderr
    settings = log_records(sub / 'synthesizer.pretrain.params.log.jsonl')[0]['settings']
    assert {key: settings[key] for key in recipe} == {key: float(v) if '.' in v or 'e' in v else int(v)
                                                      for key, v in recipe.items()}
    assert settings['variant'] == 'synthesizer' and (sub / 'synthesizer.pretrain.params').exists()
    p = run(['./run.sh', 'vanilla_pretrain_cpu', '--schedule_epochs=1', '--learning_rate=1e-3', '--max_steps=1',
             '--threads=1'], src_copy)
    assert p.returncode == 0, p.stderr
    settings = log_records(sub / 'vanilla.pretrain.params.log.jsonl')[0]['settings']
    assert (settings['schedule_epochs'], settings['learning_rate'], settings['salient_spans']) == \
        (1, 1e-3, float(recipe['salient_spans']))
    p = run(['./run.sh', 'vanilla_pretrain_cpu', '--max_steps=1', '--max_steps=2'], src_copy)
    assert_one_line_error(p, '--max_steps is given twice')


def assert_wrapped_draws(view, corpus, lines=range(50)):
    """view gives the examples of the corpus it wraps, draw for draw, on these lines."""
    import random
    for idx in lines:
        state = random.getstate()
        x, _ = view.trimmed(idx)
        after = random.getstate()
        random.setstate(state)
        assert torch.equal(x, corpus.trimmed(idx)[0]) and random.getstate() == after


def test_salient_spans_mask_a_capitalised_run_of_words_and_keep_it_in_the_window(world_data, tmp_path):
    """--salient_spans=P: with probability P the masked span is a capitalised run of words other than
    the line's name, kept whole in the window; the rest are the course's draws, unchanged."""
    import random
    from submission.lib.recipe import SalientSpans, line_name, salient_spans
    doc = 'Ann Lee. Ann Lee was born in New York City and studied at Oxford.'
    assert [doc[s:e] for s, e in salient_spans(doc, 112)] == ['New York City', 'Oxford']
    assert [doc[s:e] for s, e in salient_spans(doc, 60)] == ['New York City']
    doc = 'The teacher Hugo Lee was born in Paris. Lee taught.'
    assert line_name(doc) == '' and [doc[s:e] for s, e in salient_spans(doc, 112)] == ['The', 'Hugo Lee', 'Paris',
                                                                                          'Lee']
    corpus = world_corpus(world_data)
    salient = SalientSpans(corpus, 1.0)
    mask, itos = 1, corpus.itos
    random.seed(0)
    masked_spans = 0
    for idx in range(len(corpus)):
        x, y = salient.trimmed(idx)
        text = ''.join(itos[int(i)] for i in torch.cat([x, y[-1:]]))
        parts = text.split(itos[mask])
        assert len(parts) == 4 and parts[3] == ''  # prefix MASK suffix MASK span MASK
        window = parts[0] + parts[2] + parts[1]
        assert corpus.data[idx].startswith(window) and len(window) <= 112
        if salient.spans[idx]:
            masked_spans += 1
            assert (len(parts[0]), len(parts[0]) + len(parts[2])) in salient.spans[idx]
            name = line_name(corpus.data[idx]).split()
            assert parts[2][0].isupper() and not set(parts[2].split()) & set(name)
        padded_x, padded_y = salient[idx]
        assert len(padded_x) == len(padded_y) == 127
    assert masked_spans > len(corpus) / 2
    assert_wrapped_draws(SalientSpans(corpus, 0.0), corpus)  # share 0: the course's examples


@pytest.mark.parametrize('tail', [0, 8])
def test_salient_tail_keeps_at_most_n_characters_past_the_masked_span(world_data, tail):
    """--salient_tail=N: a salient draw's window ends between its span's end and N characters past
    it, each length drawn (on lines long enough); without it, up to the course's 112. The examples
    are shorter for it, and the course's draws beside them are unchanged."""
    import random
    from submission.lib.recipe import SalientSpans, salient_window
    corpus = world_corpus(world_data)
    tailed, untailed = SalientSpans(corpus, 1.0, tail), SalientSpans(corpus, 1.0)
    mask, itos = 1, corpus.itos
    random.seed(0)
    past, lengths = set(), []
    for _ in range(3):
        for idx in (i for i in range(len(corpus)) if tailed.spans[i]):
            x, y = tailed.trimmed(idx)
            prefix, suffix, span, _ = ''.join(itos[int(i)] for i in torch.cat([x, y[-1:]])).split(itos[mask])
            window = prefix + span + suffix
            assert corpus.data[idx].startswith(window)
            if len(window) > 4:  # else the course's shortest window, after a span at the line's start
                assert len(suffix) <= tail
                past.add(len(suffix))
            lengths.append(len(x))
    assert past == set(range(tail + 1))
    random.seed(0)
    untailed_lengths = [len(untailed.trimmed(i)[0]) for i in range(len(corpus)) if untailed.spans[i]] * 3
    assert sum(lengths) < sum(untailed_lengths)
    # The window's bounds: never below the span's end or above 112, a short line kept whole.
    assert salient_window(200, 40, 112, tail) == (40, 40 + tail)
    assert salient_window(200, 110, 112, tail) == (110, min(112, 110 + tail))
    assert salient_window(30, 28, 112, tail) == (28, min(30, 28 + tail))
    assert salient_window(200, 2, 112, 0) == (4, 4) and salient_window(200, 40, 112) == (40, 112)
    assert_wrapped_draws(SalientSpans(corpus, 0.0, tail), corpus)  # share 0: the course's examples


def test_salient_tail_trains_through_the_command_line_and_is_refused_where_it_does_nothing(world_data, tmp_path):
    """--salient_tail=N with --salient_spans: trained, recorded in the run's log, the params a course
    params file; a bad N, no salient spans to shorten, --exact, and the functions that do not
    pretrain refused in one line, nothing written."""
    params = tmp_path / 'p.params'
    p = pretrain(world_data, params, '--salient_spans=0.5', '--salient_tail=16', '--max_steps=2')
    assert p.returncode == 0, p.stderr
    settings = log_records(str(params) + '.log.jsonl')[0]['settings']
    assert (settings['salient_spans'], settings['salient_tail']) == (0.5, 16)
    assert 'tok_emb.weight' in torch.load(params, map_location='cpu', weights_only=True)
    bad = tmp_path / 'b.params'
    for value in ('-1', '129', '1.5', 'x'):
        assert_one_line_error(pretrain(world_data, bad, '--salient_spans=0.5', f'--salient_tail={value}'),
                              f'--salient_tail={value}')
    for spans in ([], ['--salient_spans=0']):
        assert_one_line_error(pretrain(world_data, bad, *spans, '--salient_tail=16'),
                              '--salient_tail shortens the windows of --salient_spans')
    assert_one_line_error(pretrain(world_data, bad, '--salient_tail=16', '--exact'), '--exact runs the course')
    p = run_py(['--function=finetune', '--variant=vanilla', f'--pretrain_corpus_path={world_data}/wiki.txt',
                f'--writing_params_path={tmp_path / "f.params"}',
                f'--finetune_corpus_path={world_data}/birth_places_train.tsv', '--salient_tail=16'])
    assert_one_line_error(p, '--salient_tail does nothing with --function=finetune')
    assert not any((tmp_path / name).exists() for name in ('b.params', 'f.params'))


def test_span_completions_are_a_line_cut_before_a_salient_span_then_the_span(world_data):
    """--span_completions=P: with probability P the example is the line up to one of its salient
    spans (within the course's longest window), MASK, the span, MASK: the course's example without
    its suffix, the loss on every position; the rest are the wrapped dataset's draws, unchanged."""
    import random
    from submission.lib.recipe import SpanCompletions, salient_spans
    corpus = world_corpus(world_data)
    corpus.data = corpus.data + ['no span here at all']
    completions = SpanCompletions(corpus, 1.0, corpus.data)
    itos, mask = corpus.itos, 1
    random.seed(0)
    completed = 0
    for idx, doc in enumerate(corpus.data):
        if not salient_spans(doc, 112):  # the wrapped dataset's example, from the same draws
            assert_wrapped_draws(completions, corpus, [idx])
            continue
        x, y = completions.trimmed(idx)
        spans = salient_spans(doc, 112)
        completed += 1
        assert torch.equal(x[1:], y[:-1]) and y[-1] == mask and (x == mask).sum() == 1
        prefix, span = ''.join(itos[int(i)] for i in x).split(itos[mask])
        assert (len(prefix), len(prefix) + len(span)) in spans and doc.startswith(prefix + span)
    assert completed > len(corpus.data) / 2
    padded_x, padded_y = completions[0]
    assert len(padded_x) == len(padded_y) == 127
    assert_wrapped_draws(SpanCompletions(corpus, 0.0, corpus.data), corpus)  # share 0


def test_name_views_are_a_lines_name_then_one_of_its_salient_spans_in_a_questions_form(world_data):
    """--name_views=P: with probability P the example is the line's name, MASK, one of the whole
    line's salient spans (past the course's window too), MASK: NameDataset's example of the
    question "name" and the answer "span", the loss on the answer only; the rest are the wrapped
    dataset's draws, unchanged."""
    import random
    from submission.dataset import NameDataset
    from submission.lib.recipe import NameViews, line_name, salient_spans
    import re
    long_doc = 'Ann Lee. Ann Lee was born in New York City' + ' and lived long' * 8 + ' in Oxford.'
    assert long_doc.index('Oxford') > 112
    # The world's lines with the course's "Full Name." title before them (the world writes none).
    titled = [re.sub(r'^([A-Z]\w+ [A-Z]\w+)\b', r'\1. \1', line) for line in lines_of(world_data, 'wiki.txt')]
    corpus = CharCorruptionDataset('\n'.join(titled + [long_doc, 'no name here. Paris']), 128)
    views = NameViews(corpus, 1.0, corpus.data)
    itos = corpus.itos
    random.seed(0)
    seen_long, viewed = set(), 0
    for idx in range(len(corpus.data)):
        doc, name = corpus.data[idx], line_name(corpus.data[idx])
        spans = [doc[s:e] for s, e in salient_spans(doc, len(doc))]
        if not name or not spans:  # the wrapped dataset's example, from the same draws
            assert_wrapped_draws(views, corpus, [idx])
            continue
        x, y = views.trimmed(idx)
        viewed += 1
        text = ''.join(itos[int(i)] for i in x)
        assert text.startswith(name + '\u2047')
        span = text[len(name) + 1:]
        assert span in spans
        question = NameDataset(f'{name}\t{span}', corpus)
        assert torch.equal(x, question.trimmed(0)[0]) and torch.equal(y, question.trimmed(0)[1])
        assert not y[:len(name) - 1].any() and y[len(name) - 1] == 1  # the loss: MASK span MASK only
        if idx == len(corpus.data) - 2:
            seen_long.add(span)
    assert viewed > len(corpus.data) / 2
    while seen_long != {'New York City', 'Oxford'}:
        seen_long.add(''.join(itos[int(i)] for i in views.trimmed(len(corpus.data) - 2)[0])[len('Ann Lee') + 1:])
    padded_x, padded_y = views[0]
    assert len(padded_x) == len(padded_y) == 127
    # Share 0: the wrapped dataset's examples, draw for draw.
    assert_wrapped_draws(NameViews(corpus, 0.0, corpus.data), corpus)  # share 0


@pytest.mark.parametrize('option', ['--salient_spans', '--span_completions', '--name_views'])
def test_a_recipes_share_of_examples_trains_through_the_command_line_and_is_refused_where_it_does_nothing(
        option, world_data, tmp_path):
    """--salient_spans, --span_completions, --name_views=P: trained (beside salient spans), recorded
    in the run's log, the params a course params file; a share outside 0-1, --exact, and the
    functions that do not pretrain refused in one line, nothing written."""
    params = tmp_path / 'p.params'
    beside = [] if option == '--salient_spans' else ['--salient_spans=0.5']
    p = pretrain(world_data, params, f'{option}=0.3', *beside, '--max_steps=2')
    assert p.returncode == 0, p.stderr
    if option == '--name_views':
        # The world's lines have no "Full Name." title, so there is no name to view: said, not silent.
        assert 'warning: --name_views: only 0 of the corpus' in p.stderr
    settings = log_records(str(params) + '.log.jsonl')[0]['settings']
    assert settings[option[2:]] == 0.3 and settings['salient_spans'] == (0.5 if beside else 0.3)
    state = torch.load(params, map_location='cpu', weights_only=True)  # a course params file
    assert 'tok_emb.weight' in state
    for bad in ('1.5', '-0.1', 'x'):
        assert_one_line_error(pretrain(world_data, tmp_path / 'b.params', f'{option}={bad}'), option)
    assert_one_line_error(pretrain(world_data, tmp_path / 'b.params', f'{option}=0.3', '--exact'),
                          option, '--exact runs the course')
    p = run_py(['--function=finetune', '--variant=vanilla', f'--pretrain_corpus_path={world_data}/wiki.txt',
                f'--writing_params_path={tmp_path / "f.params"}',
                f'--finetune_corpus_path={world_data}/birth_places_train.tsv', f'{option}=0.3'])
    assert_one_line_error(p, f'{option} does nothing with --function=finetune')
    p = run_py(['--function=evaluate', '--variant=vanilla', f'--pretrain_corpus_path={world_data}/wiki.txt',
                f'--reading_params_path={params}', f'--eval_corpus_path={world_data}/birth_dev.tsv',
                f'--outputs_path={tmp_path / "o.predictions"}', f'{option}=0.3'])
    assert_one_line_error(p, f'{option} does nothing with --function=evaluate')
    assert not any((tmp_path / name).exists() for name in ('b.params', 'f.params', 'o.predictions'))


def test_uneven_people_draw_lines_from_a_power_law_fixed_by_the_seed(world_data, tmp_path):
    """--uneven_people=A: every example's line is drawn anew, line of rank r with probability
    proportional to 1 / r ** A; the ranks come from the seed, so a resumed run draws the same way."""
    import collections
    import random
    from submission.lib.recipe import UnevenPeople
    corpus = world_corpus(world_data)
    uneven = UnevenPeople(corpus, 1.0, seed=0)
    drawn_lines = []
    corpus.trimmed = lambda idx: drawn_lines.append(idx) or (torch.ones(3, dtype=torch.long),) * 2
    random.seed(0)
    for i in range(20_000):
        uneven.trimmed(i % len(corpus))
    drawn = collections.Counter(drawn_lines)
    ranks = torch.randperm(len(corpus), generator=torch.Generator().manual_seed(0)).tolist()
    by_rank = sorted(range(len(corpus)), key=lambda i: ranks[i])
    assert drawn.most_common(1)[0][0] == by_rank[0]
    assert 1.6 < drawn[by_rank[0]] / drawn[by_rank[1]] < 2.5  # 1 / 1 against 1 / 2
    share = sum(drawn[i] for i in by_rank[:10]) / 20_000
    harmonic = lambda n: sum(1 / r for r in range(1, n + 1))
    assert abs(share - harmonic(10) / harmonic(len(corpus))) < 0.02
    assert UnevenPeople(corpus, 1.0, seed=0).cumulative == uneven.cumulative
    assert UnevenPeople(corpus, 1.0, seed=1).cumulative != uneven.cumulative
    del corpus.trimmed
    padded_x, _ = uneven[3]
    assert len(padded_x) == 127


def test_uneven_people_through_the_command_line(world_data, tmp_path):
    params = tmp_path / 'u.params'
    p = pretrain(world_data, params, '--uneven_people=0.7', '--salient_spans=0.5', '--max_steps=2')
    assert p.returncode == 0, p.stderr
    settings = log_records(str(params) + '.log.jsonl')[0]['settings']
    assert settings['uneven_people'] == 0.7 and settings['salient_spans'] == 0.5
    for bad in ('0', '4', 'x'):
        assert_one_line_error(pretrain(world_data, tmp_path / 'b.params', f'--uneven_people={bad}'), '--uneven_people')
    assert_one_line_error(pretrain(world_data, tmp_path / 'b.params', '--uneven_people=0.7', '--exact'),
                          '--uneven_people', '--exact runs the course')


def test_warmup_people_train_the_first_epochs_on_a_few_lines_then_on_all(world_data):
    """--warmup_people=K --warmup_epochs=E: the trainer's plan of the first E epochs holds K lines
    only (fixed by the seed), each about len/K times an epoch; later epochs hold every line once."""
    import collections
    from submission.lib.options import Options
    from submission.lib.recipe import WarmupPeople
    from submission.model import GPT, GPTConfig
    from submission.trainer import Trainer
    corpus = world_corpus(world_data)
    warm = WarmupPeople(corpus, 5, 2, seed=0)
    assert warm.people == WarmupPeople(corpus, 5, 2, seed=0).people != WarmupPeople(corpus, 5, 2, seed=1).people
    assert len(set(warm.people)) == 5 and len(warm) == len(corpus)
    model = GPT(GPTConfig(corpus.vocab_size, 128, n_layer=1, n_head=2, n_embd=16, exact=False))
    trainer = Trainer(model, warm, None, TrainerConfig(max_epochs=3, batch_size=16, learning_rate=1e-3),
                      Options(exact=False, device='cpu', precision='fp32'))
    by_epoch = collections.defaultdict(list)
    for step in trainer.batch_plan(0, 0, 0):
        by_epoch[step.epoch] += step.indices
    for epoch in (0, 1):
        drawn = collections.Counter(by_epoch[epoch])
        assert set(drawn) == set(warm.people) and sum(drawn.values()) == len(corpus)
        assert max(drawn.values()) - min(drawn.values()) <= 1
    assert by_epoch[0] != by_epoch[1]
    assert sorted(by_epoch[2]) == list(range(len(corpus)))
    x, y = warm[warm.people[0]]
    assert len(x) == len(y) == 127


def test_warmup_people_through_the_command_line(world_data, tmp_path):
    params = tmp_path / 'w.params'
    p = pretrain(world_data, params, '--warmup_people=20', '--warmup_epochs=1', '--schedule_epochs=2',
                 '--salient_spans=0.5', '--max_steps=2')
    assert p.returncode == 0, p.stderr
    settings = log_records(str(params) + '.log.jsonl')[0]['settings']
    assert (settings['warmup_people'], settings['warmup_epochs']) == (20, 1)
    bad = tmp_path / 'b.params'
    for extra, words in (
            (['--warmup_people=0', '--warmup_epochs=1'], ['--warmup_people']),
            (['--warmup_people=x', '--warmup_epochs=1'], ['--warmup_people', 'whole number']),
            (['--warmup_people=20'], ['--warmup_people needs --warmup_epochs']),
            (['--warmup_epochs=2'], ['--warmup_epochs needs --warmup_people']),
            (['--warmup_people=20', '--warmup_epochs=2', '--schedule_epochs=2'], ['--warmup_epochs=2', '2 epochs']),
            (['--warmup_people=20', '--warmup_epochs=650'], ['--warmup_epochs=650', '650 epochs']),
            (['--warmup_people=100000', '--warmup_epochs=1', '--schedule_epochs=2'], ['--warmup_people=100000',
                                                                                      'lines']),
            (['--warmup_people=20', '--warmup_epochs=1', '--uneven_people=0.7', '--schedule_epochs=2'],
             ['--uneven_people']),
            (['--warmup_people=20', '--warmup_epochs=1', f'--pretrain_questions={world_data}/birth_places_train.tsv',
              '--schedule_epochs=2'], ['--pretrain_questions']),
            (['--warmup_people=20', '--warmup_epochs=1', '--exact'], ['--exact runs the course'])):
        assert_one_line_error(pretrain(world_data, bad, *extra), *words)
    assert not bad.exists()
