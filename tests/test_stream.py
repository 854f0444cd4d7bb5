"""bench/stream.py: the fast path's stream of pretraining examples against the course's.

A cut-down draw of the comparison passes on the synthetic world and on the course data,
and each kind of defect it exists to find (a truncation off the course's, a packed batch
that loses an example, a learning rate off the course's formula) makes it fail.
"""
import os
import sys

import pytest

from conftest import ROOT, assert_one_line_error, run

sys.path.insert(0, os.path.join(ROOT, 'bench'))
import stream  # noqa: E402
from submission import dataset, trainer  # noqa: E402
from submission.lib import batching  # noqa: E402


def compare(folder, epochs=6, rate_epochs=30):
    lines = []
    failed = stream.compare(os.path.join(folder, 'wiki.txt'),
                            [os.path.join(folder, f) for f in ('birth_places_train.tsv', 'birth_dev.tsv')],
                            epochs, seed=0, rate_epochs=rate_epochs, out=lines.append)
    return failed, lines


def failing(lines):
    return [line.split(':')[0][5:] for line in lines if line.startswith('FAIL')]


def test_the_fast_path_draws_the_course_stream(world_data):
    failed, lines = compare(world_data)
    assert failed == 0, '\n'.join(lines)
    checks = [line for line in lines if line.startswith('ok')]
    assert len(checks) == 11, lines
    assert any('birthplace in the example' in line for line in checks)
    assert 'learning rate at every step: 150 steps (course: 150)' in '\n'.join(lines)


def test_the_course_data_streams_agree(course_data):
    failed, lines = compare(course_data, epochs=3, rate_epochs=650)
    assert failed == 0, '\n'.join(lines)
    text = '\n'.join(lines)
    assert '2938 documents' in text
    assert 'learning rate at every step: 14,950 steps (course: 14,950)' in text


def test_a_truncation_off_the_course_is_found(world_data, monkeypatch):
    def corruption_spans(doc_len, block_size):  # kept at most 100 characters instead of 112
        kept, start, masked = spans(doc_len, block_size)
        if kept > 100:
            kept = 100
            masked = min(masked, kept - start) if start < kept else 1
            start = min(start, kept - masked)
        return kept, start, masked
    spans = dataset.corruption_spans
    monkeypatch.setattr(dataset, 'corruption_spans', corruption_spans)
    # Only the fast path's examples take the changed draws.
    monkeypatch.setattr(dataset.CharCorruptionDataset, '__getitem__', exact_item(spans))
    failed, lines = compare(world_data)
    assert 'truncation length' in failing(lines), lines
    assert failed >= 2


def exact_item(spans):
    real = dataset.CharCorruptionDataset.__getitem__

    def item(self, idx):
        changed = dataset.corruption_spans
        dataset.corruption_spans = spans
        try:
            return real(self, idx)
        finally:
            dataset.corruption_spans = changed
    return item


def test_a_packed_batch_that_loses_an_example_is_found(world_data, monkeypatch):
    real = batching.pack
    monkeypatch.setattr(batching, 'pack', lambda examples, width: real(examples[:-1], width))
    with pytest.raises(AssertionError, match='missing from its packed rows'):
        compare(world_data, epochs=1)


def test_a_learning_rate_off_the_course_is_found(world_data, monkeypatch):
    real = trainer.lr_at
    monkeypatch.setattr(trainer, 'lr_at', lambda tokens, config: real(tokens, config) * 1.001)
    failed, lines = compare(world_data, epochs=1)
    assert failing(lines) == ['learning rate at every step'], lines


def test_bad_arguments_are_one_line(tmp_path):
    script = os.path.join(ROOT, 'bench', 'stream.py')
    p = run([sys.executable, script, '--epochs=0'], ROOT)
    assert_one_line_error(p, '--epochs')
    p = run([sys.executable, script, f'--corpus={tmp_path}/none.txt'], ROOT)
    assert_one_line_error(p, 'none.txt')
