"""Checkpoint: atomic file writes, resumable training checkpoints, safe params loading.

Everything the project writes that a crash could truncate (params,
checkpoints, predictions) goes through `atomic_write`: a temporary file in the
same directory, flushed, then renamed over the target, so readers see the old
file or the new one, never half of one.

A training checkpoint (`<params>.ckpt`) holds what a resumed run needs to
reach the same end state as an uninterrupted one: model and optimizer state,
the schedule's token counter, where in which epoch it stopped, every random
number generator's state, and the run's settings (a checkpoint from other
settings is refused).
"""
import os
import random
import tempfile

import torch

FORMAT = 'knowledge-probe-checkpoint/1'


class CheckpointError(Exception):
    """A checkpoint or params file that cannot be used; the message says why and what to do."""


def atomic_write(path, write):
    """Call write(file_object) on a temporary file, then rename it onto path."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_torch(obj, path):
    atomic_write(path, lambda f: torch.save(obj, f))


def save_text(text, path):
    atomic_write(path, lambda f: f.write(text.encode('utf-8')))


def rng_state():
    state = {'python': random.getstate(), 'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state['python'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def load_checkpoint(path):
    """Read a training checkpoint, refusing anything damaged or foreign."""
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise CheckpointError(f'checkpoint {path} is damaged or truncated ({type(e).__name__}); '
                              f'delete it to start the run over') from None
    if not isinstance(ckpt, dict) or ckpt.get('format') != FORMAT:
        raise CheckpointError(f'{path} is not a training checkpoint of this project; '
                              f'delete it to start the run over')
    return ckpt


def check_settings(path, saved, current):
    """Refuse a checkpoint whose run settings differ from this run's."""
    diffs = [f'{k} {saved.get(k)!r} there, {current.get(k)!r} now'
             for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if diffs:
        raise CheckpointError(f'checkpoint {path} was written with other settings ({"; ".join(diffs)}); '
                              f'rerun with those settings or delete it to start over')


def load_params(path):
    """A params file as a state_dict, loaded without running any code it may hold."""
    try:
        state = torch.load(path, map_location=torch.device('cpu'), weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f'params file {path} does not exist') from None
    except PermissionError:
        raise CheckpointError(f'params file {path} cannot be read (permission denied)') from None
    except Exception as e:
        raise CheckpointError(f'{path} is not a params file (torch.load failed: {type(e).__name__}); '
                              f'point to a .params file written by training') from None
    if isinstance(state, dict) and state.get('format') == FORMAT:
        state = state['model']
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f'{path} is not a params file (no model state_dict inside); '
                              f'point to a .params file written by training')
    return state


def check_params_fit(state, model, path):
    """One-line explanations for a params file made for another variant or vocabulary."""
    want = model.state_dict()
    is_synth = any(k.endswith('attn.w1.weight') for k in state)
    model_synth = any(k.endswith('attn.w1.weight') for k in want)
    if is_synth != model_synth:
        made, asked = ('synthesizer', 'vanilla') if is_synth else ('vanilla', 'synthesizer')
        raise CheckpointError(f'{path} holds a {made} model but --variant={asked} was asked for; '
                              f'use --variant={made} or the {asked} params file')
    if 'tok_emb.weight' in state and state['tok_emb.weight'].shape != want['tok_emb.weight'].shape:
        raise CheckpointError(f'{path} was trained with a vocabulary of {state["tok_emb.weight"].shape[0]} '
                              f'characters but this pretraining corpus gives {want["tok_emb.weight"].shape[0]}; '
                              f'use the --pretrain_corpus_path the params were trained with')
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    wrong = [k for k in want if k in state and state[k].shape != want[k].shape]
    if missing or unexpected or wrong:
        what = (missing and f'missing {missing[0]}') or (unexpected and f'unexpected {unexpected[0]}') \
            or f'{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, expected {tuple(want[wrong[0]].shape)}'
        raise CheckpointError(f'{path} does not fit this model ({what}); '
                              f'it was made with other model settings')
