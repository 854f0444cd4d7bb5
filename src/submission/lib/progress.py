"""Progress: what a training run shows while it runs and leaves behind in its log.

`RunLog` is all the trainer sees of it: a session's start record, every step,
and its end. Behind it, one bar for the whole run (epoch, step, loss, lr,
tokens/s, ETA of the run) when stderr is a terminal, otherwise a plain line
every `interval` seconds, so CI logs and nohup files stay readable
(`Progress`); and the metrics log beside the params file, one JSON line a
record, mirrored to TensorBoard event files when tensorboard is installed
(`MetricsLog`). A session's start record carries its run's id, which a resumed
run keeps (the checkpoint holds it), so a reader tells runs and their sessions
apart without guessing.
"""
import json
import os
import sys
import time

import torch

from . import distributed
from .files import WriteError


def fmt_time(seconds):
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f'{h}:{rest // 60:02d}:{rest % 60:02d}' if h else f'{rest // 60}:{rest % 60:02d}'


ESTIMATE_AFTER = 5  # steps timed, after the first (which warms up), before the run's time is estimated


class Progress:
    def __init__(self, total_steps, done_steps=0, enabled=True, interval=30.0, stream=None):
        self.total = total_steps
        self.done_at_start = done_steps
        self.enabled = enabled
        self.interval = interval
        self.stream = stream or sys.stderr
        self.start = time.time()
        self.last_line = self.start
        self.first_step = None  # (step, time) when this session's first step was shown
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=done_steps, file=self.stream,
                            dynamic_ncols=True, smoothing=0.05)

    def say(self, text):
        """One line above the bar (or among the plain lines)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def estimate(self, step):
        """Once ESTIMATE_AFTER steps after the first are timed: the wall time of the steps left, said once."""
        now = time.time()
        if self.first_step is None:
            self.first_step = (step, now)
        elif self.first_step and step - self.first_step[0] >= ESTIMATE_AFTER:
            done, since = step - self.first_step[0], now - self.first_step[1]
            self.say(f'estimated time left: {fmt_time((self.total - step) * since / done)} on this machine '
                     f'({since / done:.2f} s a step over steps {self.first_step[0] + 1}-{step})')
            self.first_step = ()  # said

    def update(self, step, epoch, max_epochs, loss, lr, tokens_per_s):
        if not self.enabled:
            return
        self.estimate(step)
        rate = (step - self.done_at_start) / max(1e-9, time.time() - self.start)
        eta = (self.total - step) / rate if rate > 0 else 0.0
        text = (f'epoch {epoch + 1}/{max_epochs} step {step}/{self.total} loss {loss:.4f} '
                f'lr {lr:.2e} {tokens_per_s:,.0f} tok/s')
        if self.bar is not None:
            self.bar.set_description(text, refresh=False)
            self.bar.update(step - self.bar.n)
        elif time.time() - self.last_line >= self.interval or step == self.total:
            self.last_line = time.time()
            print(f'{text} eta {fmt_time(eta)}', file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class MetricsLog:
    """Appends one JSON object per line; mirrors scalars to TensorBoard if it is installed.

    Each line goes to the disk whole or not at all: a write the disk refuses (a full disk)
    is cut back to the line before it and raised as files.WriteError, so the log never ends
    in half a record."""

    def __init__(self, path, enabled=True):
        self.path = path
        self.file = None
        if path and enabled:
            try:
                self.file = open(path, 'ab', buffering=0)
            except OSError as e:
                raise WriteError(e.errno, e.strerror, path) from None
        self.tb = None
        if self.file is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(log_dir=path + '.tb')
            except Exception:
                self.tb = None

    def write(self, record):
        if self.file is None:
            return
        # Unbuffered, so `tail -f` and anything watching the log sees each step.
        line = memoryview((json.dumps(record) + '\n').encode('utf-8'))
        end = self.file.seek(0, os.SEEK_END)
        try:
            while line:
                line = line[self.file.write(line):]
        except OSError as e:
            self.file.truncate(end)
            raise WriteError(e.errno, e.strerror, self.path) from None
        if self.tb is not None and 'loss' in record:
            for key in ('loss', 'lr', 'tokens_per_s'):
                if key in record:
                    self.tb.add_scalar(key, record[key], record['step'])

    def close(self):
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


class RunLog:
    """One training session's log: a start record, every step (step, epoch, loss, lr,
    tokens_per_s, elapsed), an end record; shown on the display as they are written.

    The step losses stay on the device until `flush()`, which writes every `every`
    seconds (0: every step), so a GPU is not made to wait for the host each step: one
    transfer brings back every loss of the window."""

    def __init__(self, path, start, total_steps, max_epochs, state, show=True, every=0.0):
        main = distributed.is_main()
        self.state, self.max_epochs, self.every = state, max_epochs, every
        self.show = Progress(total_steps, state.step, enabled=show and main)
        self.metrics = MetricsLog(path, enabled=main)
        self.metrics.write(start)
        self.pending, self.since, self.final_loss = [], time.time(), float('nan')

    def say(self, text):
        self.show.say(text)

    def step(self, step, epoch, loss, lr, tokens):
        """Whether the step's loss has been written (final_loss is then the step's)."""
        self.pending.append({'step': step, 'epoch': epoch, 'loss': loss, 'lr': lr, 'tokens': tokens})
        if time.time() - self.since < self.every:
            return False
        self.flush()
        return True

    def flush(self):
        now = time.time()
        if self.pending:
            losses = torch.stack([r['loss'] for r in self.pending]).tolist()
            tokens_per_s = sum(r['tokens'] for r in self.pending) / max(now - self.since, 1e-9)
            elapsed = self.state.elapsed()
            for record, loss in zip(self.pending, losses):
                record.update(loss=loss, tokens_per_s=tokens_per_s, elapsed=elapsed)
                del record['tokens']
                self.metrics.write(record)
            last = self.pending[-1]
            self.show.update(last['step'], last['epoch'] - 1, self.max_epochs, last['loss'], last['lr'],
                             tokens_per_s)
            self.final_loss = last['loss']
        self.pending, self.since = [], now

    def close(self, peak_mb):
        """The end record; returns the last loss logged."""
        self.flush()
        self.show.close()
        try:
            self.metrics.write({'event': 'end', 'step': self.state.step, 'loss': self.final_loss,
                                'elapsed': self.state.elapsed(), 'peak_mb': peak_mb})
        except WriteError:
            pass  # a full disk: the run's own error says what is kept; the end record is not worth more
        self.metrics.close()
        return self.final_loss



def open_run_log(path, state, settings, options, plan, show, every):
    """The session's RunLog, its start record written and the run's plan said. settings: the
    run's (checkpoint.run_settings); options: its Options; plan: (total steps, epochs, steps an
    epoch, batch size); show: whether this process shows progress."""
    total, epochs, per_epoch, batch = plan
    start = {'event': 'start', 'run': state.run, 'settings': settings, 'seed': options.seed,
             'resumed_from_step': state.step, 'elapsed_before': round(state.elapsed_before, 1),
             'world_size': distributed.world_size(), 'device': str(options.device), 'precision': options.precision}
    log = RunLog(path, start, total, epochs, state, show, every=every)
    said = f'{epochs} epoch{"s" * (epochs != 1)} of {per_epoch} step{"s" * (per_epoch != 1)} of {batch}'
    if total < epochs * per_epoch:
        said = f'cut short by --max_steps: {said}'
    done = f', {state.step:,} of them done' if state.step else ''
    log.say(f'training {total:,} steps ({said}){done}; their time is estimated after the first few')
    return log
