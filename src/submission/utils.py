"""Utils: the course's helpers: set_seed, sample (one-row greedy or sampled decoding)
and evaluate_places (accuracy of predicted birth places against a TSV)."""
import random

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

from .lib.files import UsageError, read_text


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def top_k_logits(logits, k):
    v, ix = torch.topk(logits, k)
    out = logits.clone()
    out[out < v[:, [-1]]] = -float('Inf')
    return out


@torch.no_grad()
def sample(model, x, steps, temperature=1.0, sample=False, top_k=None):
    """
    take a conditioning sequence of indices in x (of shape (b,t)) and predict the next token in
    the sequence, feeding the predictions back into the model each time. Clearly the sampling
    has quadratic complexity unlike an RNN that is only linear, and has a finite context window
    of block_size, unlike an RNN that has an infinite context window.
    """
    block_size = model.get_block_size()
    model.eval()
    for k in range(steps):
        x_cond = x if x.size(1) <= block_size else x[:, -block_size:]  # crop context if needed
        logits, _ = model(x_cond)
        # pluck the logits at the final step and scale by temperature
        logits = logits[:, -1, :] / temperature
        # optionally crop probabilities to only the top k options
        if top_k is not None:
            logits = top_k_logits(logits, top_k)
        # apply softmax to convert to probabilities
        probs = F.softmax(logits, dim=-1)
        # sample from the distribution or take the most likely
        if sample:
            ix = torch.multinomial(probs, num_samples=1)
        else:
            _, ix = torch.topk(probs, k=1, dim=-1)
        # append to the sequence and continue
        x = torch.cat((x, ix), dim=1)

    return x


def evaluate_places(filepath, predicted_places):
    """ Computes percent of correctly predicted birth places.

    Arguments:
      filepath: path to a file with our name, birth place data.
      predicted_places: a list of strings representing the
          predicted birth place of each person.

    Returns: (total, correct), floats
    """
    with open(filepath, encoding='utf-8') as fin:
        lines = [x.strip().split('\t') for x in fin if x.strip()]
        if not lines or len(lines[0]) == 1:
            print('No gold birth places provided; returning (0,0)')
            return (0, 0)
        true_places = [x[1] for x in lines]
        total = len(true_places)
        assert total == len(predicted_places)
        correct = len(list(filter(lambda x: x[0] == x[1], zip(true_places, predicted_places))))
        return (float(total), float(correct))


def read_eval_lines(path, longest=None):
    """The non-blank lines of an eval file, all alike: every one with an answer, or none
    (and no question longer than `longest` characters)."""
    numbered = [(n, line) for n, line in enumerate(read_text(path, '--eval_corpus_path').split('\n'), 1)
                if line.strip()]
    if not numbered:
        raise UsageError(f'eval file {path} has no questions; pass a file of questions, one per line')
    for n, line in numbered:
        if line.count('\t') > 1:
            raise UsageError(f'{path} line {n} has more than one tab; use "question" or "question<TAB>answer"')
        question = line.split('\t')[0]
        if not question.strip():
            raise UsageError(f'{path} line {n} has an empty question; fix or remove that line')
        if longest is not None and len(question) > longest:
            raise UsageError(f'{path} line {n}: the question is {len(question)} characters, but the synthesizer '
                             f'answers at most {longest} (its attention spans {longest + 32} positions, '
                             f'32 of them for the answer); shorten it')
    # As utils.evaluate_places reads them: the answer of a stripped line.
    answered = [len(line.strip().split('\t')) == 2 for _, line in numbered]
    if any(answered) and not all(answered):
        odd = numbered[answered.index(not answered[0])][0]
        raise UsageError(f'{path} line {odd} {"has" if answered[0] is False else "lacks"} an answer but line '
                         f'{numbered[0][0]} {"does not" if answered[0] is False else "has one"}; give every '
                         f'line an answer, or none')
    return [line for _, line in numbered], answered[0]
