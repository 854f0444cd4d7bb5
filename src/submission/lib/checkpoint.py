"""Checkpoint: resumable training checkpoints, and params files loaded safely and checked for fit.

A training checkpoint (`<params>.ckpt`) holds what a resumed run needs to
reach the same end state as an uninterrupted one: the trainer's whole
TrainingState (model, optimizer, the schedule's token counter, steps, where in
which epoch it stopped, seconds trained, the run's id), every random number
generator's state (of every rank), and the run's settings (a checkpoint from
other settings is refused). `Checkpointer` is the small object the trainer
keeps: where the checkpoint lives, when the next one is due, and saving and
restoring the state.

Params files are read with `torch.load(weights_only=True)`, so a params file
cannot run code, and `check_params_fit` explains in one line a params file
made for another variant, vocabulary or block size.
"""
import dataclasses
import errno
import json
import os
import random
import shutil
import time

import torch

from . import compat, distributed, files
from .files import UsageError, remove_stale_temporaries, save_torch

FORMAT = 'knowledge-probe-checkpoint/1'


def rng_state(python=None):
    """Every random state of this process; python: the `random` state to record instead of
    the current one (the training batches', see batching.Prefetcher)."""
    state = {'python': python or random.getstate(), 'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state['python'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        # A checkpoint from a machine with more GPUs: each GPU here takes its own state back.
        saved, here = state['cuda'], torch.cuda.device_count()
        for index, rng in enumerate(saved[:here]):
            torch.cuda.set_rng_state(rng, index)
        if len(saved) > here and distributed.is_main():
            print(f'note: the checkpoint holds the random state of {len(saved)} GPUs, this machine has {here}: '
                  f'restored the first {here}', flush=True)


class Checkpointer:
    """A run's resumable checkpoint: its path (None: never written), its period and its settings."""

    def __init__(self, path, every, settings, run_options=None):
        self.path, self.every, self.settings, self.run_options = path, every, settings, run_options or {}
        self.last = time.time()
        if path and distributed.is_main():
            remove_stale_temporaries(path)

    def exists(self):
        return bool(self.path) and os.path.exists(self.path)

    def due(self):
        return bool(self.path) and time.time() - self.last >= self.every

    def save(self, state, everyone=True):
        """Checkpoint the training state (trainer.TrainingState), with every rank's random state
        (everyone=False: this rank's alone, called from one rank)."""
        mine = rng_state(state.batch_random)
        states = distributed.gather_objects(mine) if everyone else [mine]
        if self.path and distributed.is_main():
            save_torch({'format': FORMAT, **state.state_dict(), 'rng': states, 'settings': self.settings,
                        'options': self.run_options}, self.path)
        self.last = time.time()

    def restore(self, state, seed):
        """Load the checkpoint into the training state, and this rank's random state; returns the
        run options it was written with."""
        ckpt = load_checkpoint(self.path)
        check_settings(self.path, ckpt['settings'], self.settings)
        state.load_state_dict(ckpt)
        world, rank, states = distributed.world_size(), distributed.rank(), ckpt['rng']
        if len(states) == world:
            set_rng_state(states[rank])
        else:  # another number of processes: fresh but reproducible streams
            random.seed(seed * 7919 + state.step * 31 + rank)
            torch.manual_seed(seed * 7919 + state.step * 31 + rank)
        state.batch_random = random.getstate()
        return ckpt.get('options', {})

    def resume_or_start(self, state, options):
        """Continue the checkpoint's run (--resume), or start anew: over a checkpoint only when asked
        (--restart), since it holds an interrupted run's work."""
        if not self.exists():
            return
        if options.restart:
            if distributed.is_main():
                print(f'note: --restart: discarding {self.path} and starting over', flush=True)
                os.unlink(self.path)
            return
        if not options.resume:
            raise UsageError(f'{self.path} holds an interrupted run; pass --resume to continue it, or --restart '
                             f'to discard it and start over')
        before = self.restore(state, options.seed)
        if options.max_steps is not None and state.step > options.max_steps:
            raise UsageError(f'--max_steps={options.max_steps}, but the checkpoint {self.path} is at step '
                             f'{state.step} already; give --max_steps={state.step} or more, or --restart')
        self.say_resumed(state, before)

    def keep_end(self, state):
        """Checkpoint the run's end (this rank's random state only), for when its params cannot be
        written; returns the step of the checkpoint kept on disk (None: none)."""
        try:
            self.save(state, everyone=False)
        except OSError:
            pass
        return step_of(self.path)

    def say_resumed(self, state, before):
        """The resuming line, and one note a run option this session changes (before: the run's)."""
        if distributed.is_main():
            print(f'resuming from {self.path}: epoch {state.epoch + 1}, step {state.step}', flush=True)
            for key, now in self.run_options.items():
                if key in before and before[key] != now:
                    print(f'note: resuming with {key} {now} (the run so far: {before[key]})', flush=True)


def run_settings(options, model_config, config, max_epochs, itos):
    """What a resumed run must share with the run that wrote its checkpoint: the options (here
    Options), the model's and the trainer's configs, the epochs, and the vocabulary."""
    base = lambda p: os.path.basename(p) if p else None
    return {
        'function': options.function, 'variant': options.variant, 'bottleneck_dim': options.bottleneck_dim,
        'pretrain_corpus': base(options.pretrain_corpus_path), 'finetune_corpus': base(options.finetune_corpus_path),
        'reading_params': base(options.reading_params_path),
        'max_epochs': max_epochs, 'batch_size': config.batch_size,
        'learning_rate': config.learning_rate, 'vocab_size': model_config.vocab_size,
        'block_size': model_config.block_size, 'exact': options.exact, 'precision': options.precision,
        'seed': options.seed, 'schedule_epochs': options.schedule_epochs, 'weight_decay': config.weight_decay,
        'pretrain_questions': base(options.pretrain_questions), 'salient_spans': options.salient_spans,
        'salient_tail': options.salient_tail,
        'span_completions': options.span_completions, 'name_views': options.name_views,
        'uneven_people': options.uneven_people, 'warmup_people': options.warmup_people,
        'warmup_epochs': options.warmup_epochs,
        'dropout': model_config.attn_pdrop,
        'vocabulary': ''.join(itos[i] for i in range(len(itos))),
    }


def session_options(options, device):
    """How this session runs, which a resumed session may change (each change is said)."""
    return {'--threads': torch.get_num_threads(), '--device': str(device), '--max_steps': options.max_steps,
            '--checkpoint_every': options.checkpoint_every, 'processes': distributed.world_size()}


def resumed_precision(options, params_path):
    """The options a run trains with: a run resumed under --precision=auto keeps the precision its
    checkpoint began with (a note says so where auto would choose another today)."""
    if not (params_path and options.resume and not options.restart and options.precision_why.startswith('auto')):
        return options
    kept = setting_of(files.checkpoint_path(params_path), 'precision')
    if not kept or kept == options.precision:
        return options
    if distributed.is_main():
        print(f'note: resuming in {kept}, the precision the run began with (auto would take '
              f'{options.precision} today)', flush=True)
    return dataclasses.replace(options, precision=kept, precision_why='auto: the precision the run began with')


def stop_if_diverged(model, step, params_path):
    """Weights that are not finite are a run that diverged: stopped here, before its params or
    checkpoint take them (a loss that is not finite alone is a step fp16's gradient scaler skips)."""
    bad = first_not_finite(model.named_parameters())
    if not bad:
        return
    written = f'{params_path} was not written' if params_path else 'no params were written'
    raise UsageError(f'training diverged at step {step}: the loss and {bad} are no longer finite (NaN or inf); '
                     f'{written}; train again with --restart and --precision=fp32 or a lower --learning_rate')


def load_checkpoint(path):
    """Read a training checkpoint, refusing anything damaged or foreign."""
    try:
        ckpt = compat.safe_load(path)
    except Exception as e:
        raise UsageError(f'checkpoint {path} is damaged or truncated ({type(e).__name__}); '
                         f'delete it to start the run over') from None
    if not isinstance(ckpt, dict) or ckpt.get('format') != FORMAT:
        raise UsageError(f'{path} is not a training checkpoint of this project; '
                         f'delete it to start the run over')
    return ckpt


def setting_of(path, key):
    """A setting of the run a checkpoint on disk holds; None without one (the restore reports damage)."""
    try:
        return load_checkpoint(path)['settings'].get(key) if os.path.exists(path) else None
    except (UsageError, KeyError, AttributeError):
        return None


def step_of(path):
    """The step a checkpoint on disk is at; None when there is none (or it cannot be read)."""
    try:
        return load_checkpoint(path)['step'] if path and os.path.exists(path) else None
    except UsageError:
        return None


def failed_write(error, ckpt_path, kept, finished):
    """The one line for a training run that could not write error.filename (a files.WriteError):
    where its work is kept and how to go on. kept: the step of the checkpoint on disk (None:
    none); finished: the training itself is done, only its params were left to write."""
    fix = 'make room' if error.errno in (errno.ENOSPC, errno.EDQUOT) else 'fix that'
    head = f'could not write {error.filename} ({error.strerror}); '
    if kept is None:
        return head + f'no checkpoint of the run could be kept: {fix} and train again'
    if finished:
        return head + (f'the trained model is kept in {ckpt_path} (step {kept}): {fix} and run the same command '
                       f'with --resume to write the params')
    return head + f'the last checkpoint kept is {ckpt_path} (step {kept}): {fix} and run the same command with --resume'


def check_room(params_path, model):
    """Refuse, before any work, a run whose params and checkpoint cannot fit on their disk: at
    the most the disk holds the params, the checkpoint (the model and AdamW's two moments) and,
    while it is replaced, its successor."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    ckpt = files.checkpoint_path(params_path)
    there = os.path.getsize(ckpt) if os.path.exists(ckpt) else 0
    need = weights + 2 * 3 * weights - there
    folder = os.path.dirname(os.path.realpath(params_path))
    free = shutil.disk_usage(folder).free
    if free < need:
        mib = lambda n: f'{n / 2 ** 20:.1f} MiB'
        raise UsageError(f'the disk holding {folder} has {mib(free)} free, but this run writes about {mib(need)} '
                         f'there (its params, and its checkpoint twice while it is replaced); make room or '
                         f'choose another --writing_params_path')


def check_settings(path, saved, current):
    """Refuse a checkpoint whose run settings differ from this run's (in the settings it records:
    a checkpoint from before a setting was recorded is not refused for it)."""
    diffs = ['another vocabulary' if k == 'vocabulary' else f'{k} {saved[k]!r} there, {current.get(k)!r} now'
             for k in sorted(saved) if saved[k] != current.get(k)]
    if diffs:
        raise UsageError(f'checkpoint {path} was written with other settings ({"; ".join(diffs)}); '
                         f'rerun with those settings or delete it to start over')


VOCABULARY_FORMAT = 'knowledge-probe-vocabulary/1'


def save_params(model, path, itos=None):
    """The model's state_dict as a params file, its tensors on the CPU (as the course's
    torch.load(map_location='cpu') reads them anywhere), and beside it (params.vocab.json)
    the vocabulary it was trained with, id by id: the course's params hold only its size."""
    beside = files.vocabulary_path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    written = [files.temporary(path, lambda f: torch.save(state, f))]
    if itos is not None:
        characters = [itos[i] for i in range(len(itos))]
        vocabulary = json.dumps({'format': VOCABULARY_FORMAT, 'characters': characters}) + '\n'
        try:
            written.append(files.temporary(beside, lambda f: f.write(vocabulary.encode('utf-8'))))
        except BaseException:
            files.discard(written)
            raise
    # Both files, or neither: the params and the vocabulary they were trained with land together.
    files.commit(written)
    if itos is None and os.path.exists(beside):
        os.unlink(beside)  # never a stale one beside new params


def check_vocabulary(path, itos):
    """Refuse params trained with another vocabulary than this corpus's, where they say theirs."""
    beside = files.vocabulary_path(path)
    if not os.path.exists(beside):
        return  # course params, or params from before vocabularies were kept
    try:
        with open(beside, encoding='utf-8') as f:
            saved = json.load(f)
        theirs = saved['characters'] if saved.get('format') == VOCABULARY_FORMAT else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        theirs = None
    if not isinstance(theirs, list):
        raise UsageError(f'{beside} (the vocabulary of {path}) is damaged; delete it to load the params '
                         f'without the check')
    ours = [itos[i] for i in range(len(itos))]
    if theirs != ours:
        first = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), min(len(theirs), len(ours)))
        shown = lambda chars: repr(chars[first]) if first < len(chars) else 'nothing'
        raise UsageError(f'{path} was trained with another vocabulary than this pretraining corpus gives '
                         f'({len(theirs)} against {len(ours)} characters; id {first} is {shown(theirs)} there, '
                         f'{shown(ours)} here); use the --pretrain_corpus_path the params were trained with')


def load_params(path):
    """A params file as a state_dict, loaded without running any code it may hold."""
    try:
        state = compat.safe_load(path)
    except FileNotFoundError:
        raise UsageError(f'params file {path} does not exist') from None
    except PermissionError:
        raise UsageError(f'params file {path} cannot be read (permission denied)') from None
    except Exception as e:
        raise UsageError(f'{path} is not a params file, or is damaged or truncated (torch.load failed: '
                         f'{type(e).__name__}); point to a .params file written by training, or train it again') from None
    if isinstance(state, dict) and state.get('format') == FORMAT:
        state = state['model']
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f'{path} is not a params file (no model state_dict inside); '
                         f'point to a .params file written by training')
    whole = [k for k, v in state.items() if not v.is_floating_point()]
    if whole:
        raise UsageError(f'{path} holds {state[whole[0]].dtype} numbers (in {whole[0]}), not a model\'s '
                         f'floating-point weights; point to a .params file written by training')
    bad = first_not_finite(state.items())
    if bad:
        raise UsageError(f'{path} holds values that are not finite (NaN or inf, in {bad}): '
                         f'its training diverged; retrain it, e.g. with a lower learning rate')
    return state


def first_not_finite(named_tensors):
    """The name of the first floating-point tensor holding NaN or inf, or None: a diverged run."""
    return next((name for name, t in named_tensors
                 if t.is_floating_point() and not torch.isfinite(t).all()), None)


def load_into(model, path, itos=None):
    """Read a params file safely, check that it fits the model (and the vocabulary itos, where
    the params say theirs), and load it into the model."""
    state = load_params(path)
    check_params_fit(state, model, path, itos)
    model.load_state_dict(state)


def variant_of(state):
    """Which course year's model a state_dict holds, from its keys."""
    if 'down_block.C' in state:
        return 'perceiver'
    if any(k.endswith('attn.rope_cache') for k in state):
        return 'rope'
    if any(k.endswith('attn.w1.weight') for k in state):
        return 'synthesizer'
    return 'vanilla'


def check_params_fit(state, model, path, itos=None):
    """One-line explanations for a params file made for another variant, width, vocabulary
    (its size, or its characters where params.vocab.json says them), bottleneck or block size."""
    want = model.state_dict()
    made, asked = variant_of(state), variant_of(want)
    if made != asked:
        raise UsageError(f'{path} holds a {made} model but --variant={asked} was asked for; '
                         f'use --variant={made} or a {asked} params file')
    if 'tok_emb.weight' in state and state['tok_emb.weight'].dim() == 2 and \
            state['tok_emb.weight'].shape[1] != want['tok_emb.weight'].shape[1]:
        raise UsageError(f'{path} holds a model {state["tok_emb.weight"].shape[1]} wide (n_embd), these models are '
                         f'{want["tok_emb.weight"].shape[1]} wide (the course\'s); use params of the course\'s model')
    if itos is not None:
        check_vocabulary(path, itos)
    if 'tok_emb.weight' in state and state['tok_emb.weight'].shape != want['tok_emb.weight'].shape:
        raise UsageError(f'{path} was trained with a vocabulary of {state["tok_emb.weight"].shape[0]} '
                         f'characters but this pretraining corpus gives {want["tok_emb.weight"].shape[0]}; '
                         f'use the --pretrain_corpus_path the params were trained with')
    mask = next((k for k in want if k.endswith('attn.mask')), None)
    if mask in state and state[mask].shape[-1] != want[mask].shape[-1]:
        raise UsageError(f'{path} was made for a block size of {state[mask].shape[-1]}, but these models have '
                         f'{want[mask].shape[-1]} (the course\'s); use params made with block size '
                         f'{want[mask].shape[-1]}')
    if made == 'perceiver' and state['down_block.C'].shape != want['down_block.C'].shape:
        slots = state['down_block.C'].shape[1]
        raise UsageError(f'{path} was trained with --bottleneck_dim={slots}, not {want["down_block.C"].shape[1]}; '
                         f'pass --bottleneck_dim={slots}')
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    wrong = [k for k in want if k in state and state[k].shape != want[k].shape]
    if missing or unexpected or wrong:
        what = (missing and f'missing {missing[0]}') or (unexpected and f'unexpected {unexpected[0]}') \
            or f'{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, expected {tuple(want[wrong[0]].shape)}'
        raise UsageError(f'{path} does not fit this model ({what}); '
                         f'it was made with other model settings')
