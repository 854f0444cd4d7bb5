"""Trainer: the course's TrainerConfig and Trainer (minGPT), made fast, resumable and distributed.

The course's training loop is kept step for step: AdamW with the course's
weight-decay groups, gradient clipping, and a learning rate that warms up
linearly to warmup_tokens and then follows a cosine to final_tokens with a
floor of 0.1 x learning_rate, where tokens grow by (y >= 0).sum() (every
position of every row) per step. Options of our own, all set as TrainerConfig
attributes and all off by default:

* exact=False: packed batches and fused attention (batching.py), with the
  token counter still counting full course rows, so the schedule is the same;
* precision, device, compile: where and in which dtype the math runs;
* seed, max_steps; checkpoint_path, checkpoint_every, resume, settings: a
  resumable checkpoint written every few minutes, at epoch ends, and on
  SIGINT/SIGTERM (checkpoint.py);
* log_path, progress: the metrics log and the progress display (progress.py);
* under torchrun, DistributedDataParallel over the ranks (distributed.py).
"""
import logging
import math
import os
import random
import signal
import sys
import time

import torch
import torch.optim as optim
from torch.utils.data.dataloader import DataLoader

from . import batching, checkpoint, distributed, progress

logger = logging.getLogger(__name__)


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
    ckpt_path = None
    num_workers = 0  # for DataLoader
    # ours
    exact = True
    precision = 'fp32'
    device = None
    compile = False
    seed = 0
    max_steps = None
    checkpoint_path = None
    checkpoint_every = 300.0  # seconds
    resume = False
    settings = None
    log_path = None
    progress = True

    def __init__(self, **kwargs):
        for k, v in kwargs.items():
            setattr(self, k, v)


class TrainingError(Exception):
    """Settings that cannot train; the message says what to change."""


class Interrupted(Exception):
    """Training stopped by a signal after writing its checkpoint."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def pick_device(requested=None):
    if requested:
        return requested
    if torch.cuda.is_available():
        return 'cuda'
    if getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available():
        return 'mps'
    return 'cpu'


def pick_precision(precision, device):
    """fp32, bf16 or fp16; 'auto' is bf16 where the hardware computes it natively.

    On CPUs with native bf16 matrix instructions (AVX512-BF16 or AMX), bf16
    autocast measured 1.3-1.4x faster per step than fp32 for this model
    (docs/PERFORMANCE.md); elsewhere it is emulated and slower, so auto keeps fp32.
    """
    if precision != 'auto':
        return precision
    if str(device).startswith('cuda'):
        return 'bf16' if torch.cuda.is_bf16_supported() else 'fp32'
    if str(device) == 'cpu' and cpu_has_native_bf16():
        return 'bf16'
    return 'fp32'


def cpu_has_native_bf16():
    try:
        with open('/proc/cpuinfo') as f:
            flags = f.read()
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


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


def epoch_order(n, seed, epoch):
    """The shuffled order of an epoch, from (seed, epoch) alone, so a resumed run,
    and every rank of a distributed one, recomputes the same order."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


class Trainer:

    def __init__(self, model, train_dataset, test_dataset, config):
        self.model = model
        self.train_dataset = train_dataset
        self.test_dataset = test_dataset
        self.config = config
        self.device = pick_device(config.device)
        self.tokens = 0
        self.step = 0

    def save_checkpoint(self):
        if self.config.ckpt_path is not None and distributed.is_main():
            ckpt_model = self.model.module if hasattr(self.model, "module") else self.model
            logger.info("saving %s", self.config.ckpt_path)
            checkpoint.save_torch(ckpt_model.state_dict(), self.config.ckpt_path)

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
        # On a GPU the fused AdamW kernel does the same update in one launch.
        fused = not config.exact and next(model.parameters()).is_cuda
        return optim.AdamW(optim_groups, lr=config.learning_rate, betas=config.betas,
                           **({'fused': True} if fused else {}))

    def train(self):
        config = self.config
        self.device = distributed.setup(self.device)
        raw_model = self.model.module if hasattr(self.model, 'module') else self.model
        raw_model.to(self.device)
        precision = 'fp32' if config.exact else pick_precision(config.precision, self.device)
        model = raw_model
        if distributed.world_size() > 1:
            from torch.nn.parallel import DistributedDataParallel
            model = DistributedDataParallel(raw_model, device_ids=[self.device] if 'cuda' in str(self.device) else None)
        if config.compile:
            model = torch.compile(model, dynamic=True)
        self.model = model
        optimizer = self.make_optimizer(raw_model)
        device_type = str(self.device).split(':')[0]
        amp_dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(precision)
        scaler = torch.amp.GradScaler(device_type, enabled=precision == 'fp16')

        world, rank = distributed.world_size(), distributed.rank()
        B = config.batch_size
        if B % world:
            raise TrainingError(f'batch_size {B} does not divide over {world} processes; '
                                f'use a number of processes that divides it')
        n = len(self.train_dataset)
        steps_per_epoch = math.ceil(n / B)
        total_steps = steps_per_epoch * config.max_epochs
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        width = self.train_dataset.block_size - 1  # each course row has block_size-1 positions

        start_epoch, start_batch, elapsed_before = 0, 0, 0.0
        self.tokens, self.step = 0, 0
        ckpt_path = config.checkpoint_path
        if config.resume and ckpt_path and os.path.exists(ckpt_path):
            start_epoch, start_batch, elapsed_before = self.restore(ckpt_path, raw_model, optimizer,
                                                                    scaler, precision)
        lr = lr_at(self.tokens, config)
        for group in optimizer.param_groups:
            group['lr'] = lr if self.step else config.learning_rate

        show = progress.Progress(total_steps, self.step, enabled=config.progress and distributed.is_main())
        metrics = progress.MetricsLog(config.log_path, enabled=distributed.is_main())
        metrics.write({'event': 'start', 'settings': config.settings, 'seed': config.seed,
                       'resumed_from_step': self.step, 'world_size': world,
                       'device': str(self.device), 'precision': precision})
        stop = StopFlag()
        stop.install()
        started = time.time()
        last_ckpt = started
        loss_value = float('nan')

        def write_checkpoint(epoch, batch):
            states = distributed.gather_objects(checkpoint.rng_state())
            if ckpt_path and distributed.is_main():
                checkpoint.save_torch({
                    'format': checkpoint.FORMAT, 'model': raw_model.state_dict(),
                    'optimizer': optimizer.state_dict(), 'scaler': scaler.state_dict(),
                    'tokens': self.tokens, 'step': self.step, 'epoch': epoch, 'batch': batch,
                    'rng': states, 'settings': config.settings or {},
                    'elapsed': elapsed_before + time.time() - started,
                }, ckpt_path)

        try:
            for epoch in range(start_epoch, config.max_epochs):
                model.train()
                order = epoch_order(n, config.seed, epoch)
                first = start_batch if epoch == start_epoch else 0
                for it in range(first, steps_per_epoch):
                    if config.max_steps is not None and self.step >= config.max_steps:
                        break
                    t0 = time.time()
                    chunk = order[it * B:(it + 1) * B]
                    mine = chunk[rank::world]
                    weight = 1.0
                    if not mine:  # fewer examples than ranks: join in with a zero-weight example
                        mine, weight = chunk[:1], 0.0
                    x, y, pos = batching.make_batch(self.train_dataset, mine, config.exact)
                    x, y = x.to(self.device), y.to(self.device)
                    pos = pos.to(self.device) if pos is not None else None
                    loss_value = self.optimize(model, raw_model, optimizer, scaler, x, y, pos, weight,
                                               device_type, amp_dtype)
                    self.step += 1

                    # (y >= 0).sum() of the course's full rows, whatever the packing.
                    self.tokens += len(chunk) * width
                    lr = lr_at(self.tokens, config)
                    for param_group in optimizer.param_groups:
                        param_group['lr'] = lr

                    dt = time.time() - t0
                    tok_s = len(chunk) * width / max(dt, 1e-9)
                    show.update(self.step, epoch, config.max_epochs, loss_value, lr, tok_s)
                    metrics.write({'step': self.step, 'epoch': epoch + 1, 'loss': loss_value, 'lr': lr,
                                   'tokens_per_s': tok_s, 'elapsed': elapsed_before + time.time() - started})

                    due = ckpt_path and time.time() - last_ckpt >= config.checkpoint_every
                    stopping, due = stop.agreed(bool(due), self.device)
                    if stopping:
                        write_checkpoint(epoch, it + 1)
                        raise Interrupted(stop.message(ckpt_path), stop.code)
                    if due:
                        write_checkpoint(epoch, it + 1)
                        last_ckpt = time.time()
                else:
                    if self.test_dataset is not None:
                        self.evaluate_loss(model)
                    self.save_checkpoint()
                    if ckpt_path and time.time() - last_ckpt >= config.checkpoint_every:
                        write_checkpoint(epoch + 1, 0)
                        last_ckpt = time.time()
                    continue
                break  # max_steps reached
        finally:
            stop.uninstall()
            show.close()
            metrics.write({'event': 'end', 'step': self.step, 'loss': loss_value,
                           'elapsed': elapsed_before + time.time() - started})
            metrics.close()
        self.elapsed = elapsed_before + time.time() - started
        self.final_loss = loss_value

    def restore(self, ckpt_path, raw_model, optimizer, scaler, precision):
        """Load a checkpoint into the run; returns (epoch, batch, elapsed) to continue from."""
        config, world, rank = self.config, distributed.world_size(), distributed.rank()
        ckpt = checkpoint.load_checkpoint(ckpt_path)
        checkpoint.check_settings(ckpt_path, ckpt['settings'], config.settings or {})
        raw_model.load_state_dict(ckpt['model'])
        optimizer.load_state_dict(ckpt['optimizer'])
        if precision == 'fp16':
            scaler.load_state_dict(ckpt['scaler'])
        self.tokens, self.step = ckpt['tokens'], ckpt['step']
        states = ckpt['rng']
        if len(states) == world:
            checkpoint.set_rng_state(states[rank])
        else:  # another number of processes: fresh but reproducible streams
            random.seed(config.seed * 7919 + self.step * 31 + rank)
            torch.manual_seed(config.seed * 7919 + self.step * 31 + rank)
        if distributed.is_main():
            print(f'resuming from {ckpt_path}: epoch {ckpt["epoch"] + 1}, step {self.step}', flush=True)
        return ckpt['epoch'], ckpt['batch'], ckpt['elapsed']

    def optimize(self, model, raw_model, optimizer, scaler, x, y, pos, weight, device_type, amp_dtype):
        """One optimizer step of the course's loop; returns the batch's mean loss."""
        with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None):
            if pos is None:
                logits, loss = model(x, y)
            else:
                logits, loss = model(x, y, pos=pos)
            loss = loss.mean()
        if distributed.world_size() > 1:
            # Weight each rank by its share of the batch's targets, so DDP's
            # gradient average equals the one-process mean over all targets.
            mine = float((y != 0).sum()) * weight
            total, loss_sum = distributed.all_sum([mine, float(loss.detach()) * mine], self.device)
            backward_loss = loss * (mine * distributed.world_size() / total)
            loss_value = loss_sum / total
        else:
            backward_loss = loss
            loss_value = loss.item()
        model.zero_grad()
        scaler.scale(backward_loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), self.config.grad_norm_clip)
        scaler.step(optimizer)
        scaler.update()
        return loss_value

    @torch.no_grad()
    def evaluate_loss(self, model):
        model.eval()
        loader = DataLoader(self.test_dataset, batch_size=self.config.batch_size)
        losses = [model(x.to(self.device), y.to(self.device))[1].mean().item() for x, y in loader]
        logger.info("test loss: %f", sum(losses) / max(1, len(losses)))
        model.train()


class StopFlag:
    """SIGINT/SIGTERM ask the loop to checkpoint and stop at the next step; a second one exits at once."""

    def __init__(self):
        self.signum = None
        self.previous = {}

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

    def handle(self, signum, frame):
        if self.signum is not None:
            print('\nsecond signal: exiting now without a checkpoint', file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.signum = signum
        print(f'\n{signal.Signals(signum).name} received: writing a checkpoint after this step '
              f'(send it again to exit at once)', file=sys.stderr, flush=True)

    def agreed(self, due, device):
        """(stop?, checkpoint due?) agreed by every rank, so all of them act together."""
        if distributed.world_size() == 1:
            return self.signum is not None, due
        s, d = distributed.all_sum([self.signum is not None, due and distributed.is_main()], device)
        return s > 0, d > 0

    @property
    def code(self):
        return 128 + (self.signum or signal.SIGTERM)

    def message(self, ckpt_path):
        if not ckpt_path:
            return 'training interrupted; no checkpoint path was set, so nothing was saved'
        return (f'training interrupted; checkpoint saved to {ckpt_path}. Resume with the same command '
                f'plus --resume (./run.sh commands resume by themselves)')
