"""Trainer: the course's TrainerConfig and Trainer (minGPT), made fast, resumable and distributed.

The course's training loop is kept step for step: AdamW with the course's
weight-decay groups, gradient clipping, and a learning rate that warms up
linearly to warmup_tokens and then follows a cosine to final_tokens with a
floor of 0.1 x learning_rate, where tokens grow by (y >= 0).sum() (every
position of every row) per step.

TrainerConfig holds the course's settings only. How to run them (device,
precision, exact or fast batches, seed, step limits, checkpoints) comes from
one Options object (lib/options.py), given to the Trainer; without one, the
Trainer runs the course computation. train() reads top to bottom: `begin`
(set up, then resume or start: the run's bookkeeping lives in lib/checkpoint.py
and lib/progress.py), then one `optimize` per batch, the schedule, the log and
the checkpoint due, until the last step or a signal.
"""
import contextlib
import logging
import math
import os
import random
import signal
import sys
import time
import uuid

import torch
import torch.optim as optim
from torch.utils.data.dataloader import DataLoader

from .lib import batching, checkpoint, compat, distributed, files, progress
from .lib.recipe import with_recipe
from .lib.files import UsageError, remove_own_files
from .lib.options import Options

logger = logging.getLogger(__name__)

LOG_EVERY = 1.0  # seconds between writes of the metrics log on a GPU (it gets every step)


class TrainerConfig:
    # optimization parameters
    max_epochs = 10
    batch_size = 64
    learning_rate = 3e-4
    betas = (0.9, 0.95)
    grad_norm_clip = 1.0
    weight_decay = 0.1  # only applied on matmul weights
    # learning rate decay params: linear warmup followed by cosine decay to 10% of original
    lr_decay = False
    warmup_tokens = 375e6  # these two numbers come from the GPT-3 paper, but may not be good defaults elsewhere
    final_tokens = 260e9   # (at what point we reach 10% of original LR)
    # checkpoint settings
    ckpt_path = None  # course contract: a state_dict saved at every epoch end when set; run.py never sets it
    num_workers = 0   # course contract: unused; batches are built in this process (exact resume, batching.py)

    def __init__(self, **kwargs):
        for k, v in kwargs.items():
            setattr(self, k, v)


class Interrupted(Exception):
    """Training stopped by a signal after writing its checkpoint."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def lr_at(tokens, config):
    """The course schedule: linear warmup, then cosine to final_tokens, floored at 0.1."""
    if not config.lr_decay:
        return config.learning_rate
    if tokens < config.warmup_tokens:
        lr_mult = float(tokens) / float(max(1, config.warmup_tokens))
    else:
        progress_ = float(tokens - config.warmup_tokens) / float(max(1, config.final_tokens - config.warmup_tokens))
        lr_mult = max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress_)))
    return config.learning_rate * lr_mult


def peak_memory_mb(device):
    """The most memory this process has held: on a GPU, torch's allocations there; else resident memory."""
    if str(device).startswith('cuda'):
        return round(torch.cuda.max_memory_allocated(device) / 2 ** 20)
    try:
        import resource
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    except ImportError:  # not on this platform
        return None


def epoch_order(n, seed, epoch):
    """The shuffled order of an epoch, from (seed, epoch) alone, so a resumed run,
    and every rank of a distributed one, recomputes the same order."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


class TrainingState:
    """What a training run has done, whole: the model, the optimizer and the gradient scaler, the
    schedule's token count, the steps taken, where the next step is in the epoch plan, the batch
    stream's random state, the seconds trained and the run's id. A checkpoint saves and restores
    exactly this (checkpoint.Checkpointer); each step moves it on (advance)."""

    def __init__(self, model, optimizer, scaler):
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.tokens = 0  # the course's counter for the learning-rate schedule
        self.step = 0
        self.epoch = self.batch = 0  # the next step's epoch, and its batch in that epoch
        self.batch_random = random.getstate()  # the batch stream's `random` state after the last batch
        self.elapsed_before = 0.0  # seconds trained in earlier sessions of this run
        self.started = time.time()
        self.run = uuid.uuid4().hex[:12]  # the run's id in the metrics log, kept across resumes

    def advance(self, batch, steps_per_epoch, tokens):
        self.step += 1
        self.tokens += tokens
        epoch, index = batch.step.epoch, batch.step.index + 1
        self.epoch, self.batch = (epoch, index) if index < steps_per_epoch else (epoch + 1, 0)
        self.batch_random = batch.random_state

    def elapsed(self):
        return self.elapsed_before + time.time() - self.started

    def state_dict(self):
        return {'model': self.model.state_dict(), 'optimizer': self.optimizer.state_dict(),
                'scaler': self.scaler.state_dict(), 'tokens': self.tokens, 'step': self.step,
                'epoch': self.epoch, 'batch': self.batch, 'elapsed': self.elapsed(), 'run': self.run}

    def load_state_dict(self, saved):
        self.model.load_state_dict(saved['model'])
        self.optimizer.load_state_dict(saved['optimizer'])
        if self.scaler.is_enabled():
            self.scaler.load_state_dict(saved['scaler'])
        self.tokens, self.step, self.epoch, self.batch = saved['tokens'], saved['step'], saved['epoch'], saved['batch']
        self.elapsed_before, self.started = saved['elapsed'], time.time()
        self.run = saved.get('run', self.run)


class Trainer:

    def __init__(self, model, train_dataset, test_dataset, config, options=None):
        self.model = model  # the model itself; the steps call it through self.runner
        self.train_dataset = train_dataset
        self.test_dataset = test_dataset
        self.options = options or Options.course()
        self.config = with_recipe(config, self.options, train_dataset)
        self.device = self.options.device
        self.device_type = str(self.device).split(':')[0]
        self.max_epochs = self.options.max_epochs or self.config.max_epochs
        self.steps_per_epoch = math.ceil(len(train_dataset) / self.config.batch_size)
        self.total_steps = self.steps_per_epoch * self.max_epochs
        if self.options.max_steps is not None:
            self.total_steps = min(self.total_steps, self.options.max_steps)
        self.runner = None  # the model as the steps call it: wrapped for DDP, compiled (set_up)
        self.state = None  # the run's TrainingState (set_up, then resumed or not)
        self.saver = None  # its checkpoint.Checkpointer (train)
        self.elapsed, self.final_loss = None, float('nan')  # what the run took and ended with

    def save_checkpoint(self):
        # course contract: the course's optional per-epoch state_dict
        if self.config.ckpt_path is not None and distributed.is_main():
            logger.info("saving %s", self.config.ckpt_path)
            checkpoint.save_params(self.model, self.config.ckpt_path)

    def train(self, params_path=None):
        """Train for the configured epochs (or Options.max_steps steps). params_path: the params
        file the run ends in (helper.train passes it), its checkpoint and metrics log beside it."""
        saver, log = self.begin(params_path)
        config, opts, state = self.config, self.options, self.state
        width = self.train_dataset.block_size - 1  # each course row has block_size-1 positions
        stop = StopFlag(saves=bool(saver.path))
        # The perceiver's slots summarise a whole row: its examples cannot share rows.
        batches = batching.Prefetcher(self.train_dataset, self.batch_plan(state.epoch, state.batch, state.step),
                                      opts.exact, self.device, packed=not self.model.config.perceiver)
        self.runner.train()
        try:
            stop.install()
            for batch in batches:
                loss = self.optimize(batch.x, batch.y, batch.pos, batch.targets * batch.step.weight)
                tokens = batch.step.rows * width  # (y >= 0).sum() of the course's full rows, however packed
                state.advance(batch, self.steps_per_epoch, tokens)
                lr = lr_at(state.tokens, config)
                self.set_lr(lr)
                flushed = log.step(state.step, batch.step.epoch + 1, loss, lr, tokens)
                stopping, due = stop.agreed(saver.due())
                if stopping or due:
                    log.flush()
                    flushed = True
                if flushed and not math.isfinite(log.final_loss):
                    checkpoint.stop_if_diverged(self.model, state.step, params_path)
                if stopping or due:
                    saver.save(state)
                if stopping:
                    raise Interrupted(stop.message(saver.path), stop.code)
                if state.batch == 0:
                    self.end_epoch()
        except files.WriteError as e:  # a full disk: the last checkpoint on disk is what is kept
            raise UsageError(checkpoint.failed_write(e, saver.path, checkpoint.step_of(saver.path),
                                                     finished=False)) from None
        finally:
            batches.close()
            stop.uninstall()
            self.final_loss = log.close(peak_memory_mb(self.device))
            self.elapsed = state.elapsed()

    def begin(self, params_path):
        """Set up, then resume the checkpoint's run or start one: (its checkpoint.Checkpointer,
        this session's progress.RunLog)."""
        self.options = opts = checkpoint.resumed_precision(self.options, params_path)
        self.set_up()
        if params_path and distributed.is_main():
            checkpoint.check_room(params_path, self.model)
        settings = checkpoint.run_settings(opts, self.model.config, self.config, self.max_epochs,
                                           self.train_dataset.itos)
        self.saver = saver = checkpoint.Checkpointer(params_path and files.checkpoint_path(params_path),
                                                     opts.checkpoint_every, settings,
                                                     checkpoint.session_options(opts, self.device))
        saver.resume_or_start(self.state, opts)
        self.set_lr(lr_at(self.state.tokens, self.config) if self.state.step else self.config.learning_rate)
        log = progress.open_run_log(params_path and files.log_path(params_path), self.state, settings, opts,
                                    (self.total_steps, self.max_epochs, self.steps_per_epoch, self.config.batch_size),
                                    opts.progress and distributed.is_main(),
                                    every=0.0 if self.device_type == 'cpu' else LOG_EVERY)
        return saver, log

    def set_up(self):
        """The model on its device, the model the steps call (wrapped for DDP, compiled if asked),
        and a fresh training state."""
        distributed.setup(self.device)
        world = distributed.world_size()
        if self.config.batch_size % world:
            raise UsageError(f'batch_size {self.config.batch_size} does not divide over {world} processes; '
                             f'use a number of processes that divides it')
        self.model = self.model.module if hasattr(self.model, 'module') else self.model
        self.model.to(self.device)
        runner = self.model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel
            # The buffers (masks, rotations) never change: nothing to broadcast each step.
            runner = DistributedDataParallel(runner, device_ids=[self.device] if 'cuda' in str(self.device) else None,
                                             broadcast_buffers=False)
        if self.options.compile:
            runner = torch.compile(runner, dynamic=True)
        self.runner = runner
        scaler = compat.grad_scaler(self.device_type, enabled=self.options.precision == 'fp16')
        self.state = TrainingState(self.model, self.make_optimizer(self.model), scaler)

    def make_optimizer(self, model):
        config = self.config
        # The course's grouping: "LayerNorm.weight" matches no name here, so
        # LayerNorm weights and pos_emb are decayed, as in the course.
        no_decay = ["bias", "LayerNorm.weight"]
        params_decay = [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)]
        params_nodecay = [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)]
        optim_groups = [
            {"params": params_decay, "weight_decay": config.weight_decay},
            {"params": params_nodecay, "weight_decay": 0.0},
        ]
        # The fast path's AdamW is torch's fused kernel: the same update in one pass.
        if not self.options.exact:
            try:
                return optim.AdamW(optim_groups, lr=config.learning_rate, betas=config.betas, fused=True)
            except (RuntimeError, TypeError):  # a torch (before 2.0; on CPUs before 2.4) or device without it
                if distributed.is_main():
                    print(f'note: torch {torch.__version__} has no fused AdamW on {self.device_type}; '
                          f'using the standard one', flush=True)
        return optim.AdamW(optim_groups, lr=config.learning_rate, betas=config.betas)

    def set_lr(self, lr):
        for group in self.state.optimizer.param_groups:
            group['lr'] = lr

    def batch_plan(self, epoch, batch, done):
        """A batching.Step for every step from (epoch, batch) on, done steps having been taken.

        Each epoch's order comes from (seed, epoch) alone; every rank takes its
        share of each batch (a rank left without an example joins in with a
        zero-weight one)."""
        B, world, rank = self.config.batch_size, distributed.world_size(), distributed.rank()
        left = self.total_steps - done
        for e in range(epoch, self.max_epochs):
            order = epoch_order(len(self.train_dataset), self.options.seed, e)
            if hasattr(self.train_dataset, 'epoch_lines'):  # a recipe's own lines (recipe.WarmupPeople)
                order = self.train_dataset.epoch_lines(order, e)
            for index in range(batch if e == epoch else 0, self.steps_per_epoch):
                if left <= 0:
                    return
                left -= 1
                chunk = order[index * B:(index + 1) * B]
                mine = chunk[rank::world]
                yield batching.Step(e, index, len(chunk), mine or chunk[:1], 1.0 if mine else 0.0)

    def end_epoch(self):
        # course contract: the course's test loss and per-epoch state_dict (run.py uses neither)
        if self.test_dataset is not None:
            self.evaluate_loss()
        self.save_checkpoint()

    def optimize(self, x, y, pos, targets):
        """One optimizer step of the course's loop; returns the batch's mean loss (on the device).

        targets: this rank's non-pad target count (0 for a zero-weight rank)."""
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        pos = None if pos is None else pos.to(self.device, non_blocking=True)
        # No autocast at all in fp32 (some torch versions refuse even a disabled one on some devices).
        reduced = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(self.options.precision)
        amp = contextlib.nullcontext() if reduced is None else torch.autocast(self.device_type, dtype=reduced)
        with amp:
            if pos is None:
                logits, loss = self.runner(x, y)
            else:
                logits, loss = self.runner(x, y, pos=pos)
            loss = loss.mean()
        if distributed.world_size() > 1:
            # Weight each rank by its share of the batch's targets, so DDP's
            # gradient average equals the one-process mean over all targets. The
            # sums stay on the device: no rank waits for its host.
            both = distributed.all_reduce(torch.stack([loss.new_tensor(float(targets)), loss.detach() * targets]))
            backward_loss = loss * (targets * distributed.world_size() / both[0])
            loss_value = both[1] / both[0]
        else:
            backward_loss, loss_value = loss, loss.detach()
        state = self.state
        self.runner.zero_grad()
        state.scaler.scale(backward_loss).backward()
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_norm_clip)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        return loss_value.float()

    @torch.no_grad()
    def evaluate_loss(self):
        # course contract: the course's test-loss pass; run.py never gives a test_dataset
        self.runner.eval()
        loader = DataLoader(self.test_dataset, batch_size=self.config.batch_size)
        losses = [self.runner(x.to(self.device), y.to(self.device))[1].mean().item() for x, y in loader]
        logger.info("test loss: %f", sum(losses) / max(1, len(losses)))
        self.runner.train()


class StopFlag:
    """SIGINT/SIGTERM ask the loop to checkpoint and stop at the next step; a second one exits at once."""

    def __init__(self, saves=True):
        self.signum = None
        self.saves = saves  # whether a checkpoint is written on the way out
        self.previous = {}
        self.vote = None  # under torchrun: the ranks' last vote, still being summed

    def install(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self.handle)
            except ValueError:  # not the main thread
                pass

    def uninstall(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}
        if self.vote is not None:
            self.vote()  # let the last vote finish before the process group goes

    def handle(self, signum, frame):
        if self.signum is not None:
            print('\nsecond signal: exiting now without a checkpoint', file=sys.stderr, flush=True)
            remove_own_files()  # os._exit skips the cleanup of a checkpoint being written and of the lock
            os._exit(128 + signum)
        self.signum = signum
        doing = 'writing a checkpoint after this step' if self.saves else 'stopping after this step'
        print(f'\n{signal.Signals(signum).name} received: {doing} (send it again to exit at once)',
              file=sys.stderr, flush=True)

    def agreed(self, due):
        """(stop?, checkpoint due?) agreed by every rank, so all of them act together.

        Under torchrun each call starts a vote (a signal here? rank 0's clock says
        a checkpoint is due?) that is summed over the ranks in the background, and
        returns the previous call's result: the ranks act one step later, all at the
        same step, and no rank waits for the sum."""
        if distributed.world_size() == 1:
            return self.signum is not None, due
        previous = self.vote() if self.vote is not None else (0, 0)
        self.vote = distributed.start_sum([self.signum is not None, due and distributed.is_main()])
        return previous[0] > 0, previous[1] > 0

    @property
    def code(self):
        return 128 + (self.signum or signal.SIGTERM)

    def message(self, ckpt_path):
        if not ckpt_path:
            return 'training interrupted; no checkpoint path was set, so nothing was saved'
        return (f'training interrupted; checkpoint saved to {ckpt_path}. Resume with the same command '
                f'plus --resume (./run.sh commands resume by themselves)')
