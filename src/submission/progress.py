"""Progress: what a training run shows while it runs and leaves behind in its log.

One bar for the whole run (epoch, step, loss, lr, tokens/s, ETA of the run)
when stderr is a terminal; otherwise a plain line every `interval` seconds,
so CI logs and nohup files stay readable. Every step is also appended as a
JSON line (step, epoch, loss, lr, tokens_per_s, elapsed) to the run's
metrics log, and to TensorBoard event files when tensorboard is installed.
"""
import json
import sys
import time


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
    """Appends one JSON object per line; mirrors scalars to TensorBoard if it is installed."""

    def __init__(self, path, enabled=True):
        self.file = open(path, 'a', encoding='utf-8') if (path and enabled) else None
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
        # Flushed every line, so `tail -f` and anything watching the log sees each step.
        self.file.write(json.dumps(record) + '\n')
        self.file.flush()
        if self.tb is not None and 'loss' in record:
            for key in ('loss', 'lr', 'tokens_per_s'):
                if key in record:
                    self.tb.add_scalar(key, record[key], record['step'])

    def close(self):
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
