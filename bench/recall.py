"""Did pretraining store the facts? A probe of a pretrained model, before any finetuning.

    python bench/recall.py VARIANT PARAMS [--corpus=FILE] [--questions=FILE] [--examples=N]
                           [--tail=N] [--device=DEVICE] [--threads=N]

For every question<TAB>answer line of QUESTIONS (default: src/data/birth_dev.tsv), the person's
biography is found in the pretraining corpus (default: src/data/wiki.txt; the first line that
starts with the name, else the first that holds it), the answer's first mention after the name is
masked, and the model fills the mask in greedily, in the format span corruption taught it
(prefix MASK suffix MASK, then the masked text, ended by a PAD or a MASK). A biography counts
only where the answer ends within the first int(block_size * 7 / 8) characters, the longest
document pretraining shows the model. A birthplace is recalled when the filled-in text, less
spaces at its ends, begins with it (the model does not know where the masked span ends); and the
birthplace is scored, character by character, given the masked biography (nats a character: it
falls before any birthplace is recalled, so it ranks models that recall none). The line
printed says how many masked birthplaces the model recalls; a model that recalls few of them cannot answer "Where was X born?" about
people it was not finetuned on, however it is finetuned. The finetuned model's own probe is the
course's dev evaluation. With --tail=N the biography is cut N characters after the birthplace:
the windows a --salient_tail=N recipe shows around a masked place, where the whole line's suffix
would be a form that recipe's salient draws never trained.
"""
import argparse
import os
import sys

import torch

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'src')
sys.path.insert(0, SRC)
from submission.dataset import CharCorruptionDataset, MASK_CHAR, PAD_CHAR  # noqa: E402
from submission import utils  # noqa: E402
from submission.lib import checkpoint, files, options  # noqa: E402
from submission.lib.files import UsageError  # noqa: E402
import run  # noqa: E402
from tools.report import biography, place_at  # noqa: E402


def masked_prompt(doc, name, place, longest, tail=None):
    """The biography with the place's first mention after the name masked, in span corruption's
    order (prefix MASK suffix MASK), or None where the place is not within the first `longest`
    characters (see place_at); with `tail`, at most that many characters after the place."""
    at = place_at(doc, name, place)
    if at < 0 or at + len(place) > longest:
        return None
    doc = doc[:longest if tail is None else min(longest, at + len(place) + tail)]
    return doc[:at] + MASK_CHAR + doc[at + len(place):] + MASK_CHAR


def people(path):
    """(name, place) of every "Where was X born?<TAB>place" line of a questions file."""
    lines, answered = utils.read_eval_lines(path)
    return people_of(lines if answered else [line.split('\t')[0] for line in lines], path)


def people_of(lines, path):
    """(name, place) of question<TAB>answer lines read from `path`, each "Where was X born?"."""
    out = []
    for fields in (line.strip().split('\t') for line in lines):
        if len(fields) != 2 or not fields[0].startswith('Where was ') or not fields[0].endswith(' born?'):
            raise UsageError(f'{path}: "{fields[0]}" is not a "Where was X born?<TAB>place" line; '
                             f'give a file of questions with their answers')
        out.append((fields[0][len('Where was '):-len(' born?')], fields[1]))
    return out


@torch.no_grad()
def fill_in(model, prompt, stoi, itos, device, most):
    """The course's greedy sampler (utils.sample) for `most` characters after the prompt, read up
    to the first PAD or MASK."""
    ids = [stoi[c] for c in prompt if c in stoi]
    completion = utils.sample(model, torch.tensor([ids], device=device), most, sample=False)[0, len(ids):]
    text = ''.join(itos[int(i)] for i in completion)
    return text.replace(PAD_CHAR, MASK_CHAR).split(MASK_CHAR)[0]


@torch.no_grad()
def surprise(model, prompt, place, stoi, device):
    """(nats, characters): what the model pays to write the birthplace after the prompt, each
    character given the ones before it (teacher-forced). Unlike the greedy fill it moves before
    any birthplace is recalled, so it ranks models on recall's plateau. Prompt and place fit the
    block: the prompt is at most `longest` characters less the place, plus two masks."""
    ids = [stoi[c] for c in prompt + place if c in stoi]
    n = sum(c in stoi for c in place)
    logits, _ = model(torch.tensor([ids[:-1]], device=device))
    # logits[t] scores ids[t + 1]: the place's characters are scored by the last n positions.
    logp = torch.log_softmax(logits[0, -n:].float(), dim=-1)
    return -logp.gather(1, torch.tensor(ids[-n:], device=device)[:, None]).sum().item(), n


def main(argv=None):
    parser = options.ArgumentParser(prog='bench/recall.py', description=__doc__.split('\n')[0])
    parser.add_argument('variant', choices=['vanilla', 'synthesizer', 'perceiver', 'rope'])
    parser.add_argument('params')
    parser.add_argument('--corpus', default=os.path.join(SRC, 'data', 'wiki.txt'))
    parser.add_argument('--questions', default=os.path.join(SRC, 'data', 'birth_dev.tsv'))
    parser.add_argument('--examples', default='0', help='print the first N probes')
    parser.add_argument('--tail', default=None, help='show at most N characters after the masked birthplace')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', default=None)
    parser.add_argument('--bottleneck_dim', default=None, help='perceiver: its number of slots (default 32)')
    args = parser.parse_args(argv)
    args.examples = options.whole_number(args.examples, '--examples', low=0)
    args.tail = args.tail and options.whole_number(args.tail, '--tail', low=0)
    args.threads = args.threads and options.whole_number(args.threads, '--threads', high=os.cpu_count() * 4)
    args.bottleneck_dim = options.bottleneck_dim(args.bottleneck_dim, args.variant)
    args.device = options.device_named(args.device)
    for path, option in ((args.params, 'PARAMS'), (args.corpus, '--corpus'), (args.questions, '--questions')):
        files.input_file(path, option)
    if args.threads:
        torch.set_num_threads(args.threads)
    text = files.read_text(args.corpus, '--corpus')
    dataset = CharCorruptionDataset(text, 128)
    model = pretrained(args.variant, args.params, dataset, args.device, args.bottleneck_dim)
    print(probe(model, dataset, text, people(args.questions), args.device, args.examples, args.tail)[3])


def pretrained(variant, params, dataset, device, bottleneck_dim=None):
    """The params file's model, as run.py builds it for the corpus's vocabulary, ready to decode."""
    o = argparse.Namespace(variant=variant, exact=False, device=device, dropout=None, bottleneck_dim=bottleneck_dim)
    model = run.build_model(o, dataset)
    checkpoint.load_into(model, params, dataset.itos)
    return model.eval()


def probe(model, dataset, text, questions, device, examples=0, tail=None):
    """(recalled, probed, nats a birthplace character, the line that says so) for (name, place)
    questions: each birthplace masked in its person's biography of the corpus `text` (cut `tail`
    characters after it, if given), filled in by the model, and scored (surprise)."""
    longest = int(dataset.block_size * 7 / 8)  # CharCorruptionDataset's longest truncation
    lines = text.split('\n')
    probed = recalled = nats = chars = 0
    for name, place in questions:
        doc = biography(lines, name)
        prompt = masked_prompt(doc, name, place, longest, tail) if doc else None
        if prompt is None:
            continue
        guess = fill_in(model, prompt, dataset.stoi, dataset.itos, device, len(place) + 8)
        probed += 1
        paid, n = surprise(model, prompt, place, dataset.stoi, device)
        nats, chars = nats + paid, chars + n
        recalled += guess.strip().startswith(place)  # the span's length is unknown to the model
        if probed <= examples:
            print(f'{prompt!r} -> {guess!r} (answer: {place})')
    share = f' = {100 * recalled / probed:.1f} %' if probed else ''
    per_char = nats / chars if chars else float('nan')
    return recalled, probed, per_char, (
        f'recalled {recalled} of {probed} masked birthplaces{share}, {per_char:.3f} nats a birthplace character '
        f'({len(questions) - probed} of {len(questions)} questions had none within {longest} characters of a '
        f'biography{"" if tail is None else f"; each cut {tail} characters after its birthplace"})')


if __name__ == '__main__':
    try:
        main()
    except UsageError as e:
        sys.exit(f'error: {e}')
