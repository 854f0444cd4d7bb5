"""Files: every input the project reads and every output it writes goes through here.

* Inputs are checked before any work starts. A path that is missing (naming
  the ./run.sh command that makes it, or where the course data goes), not a
  regular file (reading a FIFO hangs, /dev/zero never ends), unreadable, or not
  UTF-8 text gets one line saying so and what to do.
* Outputs are checked too: their folder exists and can be written, they are
  not a folder or a device, and no output of a run, nor the checkpoint, metrics
  log or temporary file beside it, is also one of its inputs (compared by real
  path, so ./x, ../src/x and symlinks are all caught).
* Writes are atomic: a temporary file in the same folder, flushed, then renamed
  over the target, so readers see the old file or the new one, never half of
  one. A hard exit (a second Ctrl-C) removes the temporary being written, and
  the next run removes any a crash left behind.
* `commands()`, `writes()` and `made_by()`: each ./run.sh command's run.py
  options, which file it writes, and which command makes each file. run.sh is
  the one home of the command table; it is read from there when first asked.
* `course_data_dir()`: the one place that says where the course data is.
* `UsageError`: the one kind of error a user can fix; the message names the
  problem and the fix, and the command lines print it as one `error:` line.
"""
import errno
import fnmatch
import functools
import glob
import io
import os
import re
import stat
import tempfile

import torch

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # src/
ROOT = os.path.dirname(SRC)
DATA = os.path.join(SRC, 'data')  # where the course data goes (src/data/README.md)
COURSE_FILES = ('wiki.txt', 'birth_places_train.tsv', 'birth_dev.tsv', 'birth_test_inputs.tsv', 'birth_test.tsv')


class UsageError(Exception):
    """A bad input or setting; the message names the problem and the fix."""


class WriteError(OSError):
    """A file that could not be written (a full disk, a read-only one, a quota): nothing was
    written there, and a file already there is unchanged. Its filename is the file asked for."""

    def __str__(self):
        hint = {errno.ENOSPC: 'make room on that disk', errno.EDQUOT: 'make room within your disk quota',
                errno.EROFS: 'that disk is read-only', errno.EFBIG: 'the file is too large for that disk'}
        fix = hint.get(self.errno, 'check that folder and its permissions')
        return (f'could not write {self.filename} ({self.strerror}); nothing was written there (a file '
                f'already there is unchanged): {fix} or choose another path, and run the command again')


def course_data_dir(names=COURSE_FILES):
    """src/data, where the course data goes (src/data/README.md), when it holds the named
    course files; None when it does not."""
    if all(os.path.isfile(os.path.join(DATA, name)) for name in names):
        return os.path.realpath(DATA)
    return None


@functools.lru_cache(maxsize=None)
def commands():
    """{./run.sh command: its run.py options}, in run.sh's order (its "$NAME" settings spelled out),
    read from run.sh the first time it is asked for."""
    with open(os.path.join(SRC, 'run.sh'), encoding='utf-8') as f:
        text = f.read()
    settings = dict(re.findall(r'^([A-Z_]+)="(.*)"$', text, re.M))
    spelled = lambda body: re.sub(r'\$([A-Z_]+)\b', lambda m: settings.get(m.group(1), m.group(0)), body)
    return {command: re.findall(r'--\w+(?:=\S+)?', spelled(body))
            for command, body in re.findall(r'^([a-z_]+)\)\n(.*?);;', text, re.M | re.S)}


def writes():
    """{./run.sh command: the file name it writes in submission/}."""
    return {command: option.split('/')[-1] for command, args in commands().items() for option in args
            if option.startswith(('--writing_params_path=$S/', '--outputs_path=$S/'))}


def made_by():
    """{file name: the first ./run.sh command that writes it (the course's, before our variants)}."""
    first = {}
    for command, name in writes().items():
        first.setdefault(name, command)
    return first


# ---------------------------------------------------------------- inputs

def input_file(path, what):
    """path, checked: an existing, readable, regular file."""
    if not path:
        raise UsageError(f'{what} is required')
    if not os.path.exists(path):
        name = os.path.basename(path)
        made = made_by()
        if name in made:
            raise UsageError(f'{path} does not exist yet: make it first with ./run.sh {made[name]}')
        if name in COURSE_FILES:
            raise UsageError(f'{path} does not exist: put the course data in src/data (see src/data/README.md)')
        raise UsageError(f'{what} {path} does not exist; check the path')
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise UsageError(f'{what} {path} is a directory and cannot be read as a file; give a file path')
    if not stat.S_ISREG(mode):
        raise UsageError(f'{what} {path} is not a regular file (a pipe or a device); give a file path')
    if not os.access(path, os.R_OK):
        raise UsageError(f'{what} {path} cannot be read (permission denied); check its permissions')
    return path


def read_text(path, what):
    """The text of a checked input file (universal newlines: CRLF files read as LF)."""
    try:
        with open(input_file(path, what), encoding='utf-8') as f:
            return f.read()
    except UnicodeDecodeError:
        with open(path, 'rb') as f:
            utf16 = f.read(2) in (b'\xff\xfe', b'\xfe\xff')
        kind = 'UTF-16 text' if utf16 else 'UTF-8 text (Latin-1 or another encoding?)'
        raise UsageError(f'{what} {path} is not {"UTF-8 but " if utf16 else ""}{kind}; save it as UTF-8 '
                         f'(e.g. iconv -f {"utf-16" if utf16 else "latin1"} -t utf-8)') from None


# ---------------------------------------------------------------- outputs

def output_file(path, what):
    """path, checked: a file that can be (re)written in an existing folder, tried for real (a
    temporary file made and removed beside it), since permissions alone do not say it: root
    passes every permission check, and /proc, /sys or a read-only disk refuse new files."""
    if not path:
        raise UsageError(f'{what} is required')
    if path.endswith(os.sep) or os.path.isdir(path):
        raise UsageError(f'{what} {path} is a directory; give a file path')
    if os.path.islink(path) and not os.path.exists(path):
        raise UsageError(f'{what} {path} is a symlink to {os.readlink(path)}, which does not exist; '
                         f'remove the link or give another path')
    real = os.path.realpath(path)  # a symlinked output is written through the link
    directory = os.path.dirname(real)
    if not os.path.isdir(directory):
        raise UsageError(f'{what} {path}: directory {directory} does not exist; create it or choose another path')
    if os.path.exists(real) and not stat.S_ISREG(os.stat(real).st_mode):
        raise UsageError(f'{what} {path} is not a regular file (a pipe or a device); give a file path')
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(real) + '.', suffix='.tmp')
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UsageError(f'{what} {path}: no file can be written in {directory} ({e.strerror}); '
                         f'choose another path') from None
    return path


# ---------------------------------------------------------------- the files beside a params file

def checkpoint_path(params_path):
    """The resumable checkpoint of the run that writes params_path."""
    return params_path + '.ckpt'


def log_path(params_path):
    """The metrics log of the runs that wrote params_path."""
    return params_path + '.log.jsonl'


def vocabulary_path(params_path):
    """The vocabulary params_path was trained with (absent beside course params)."""
    return params_path + '.vocab.json'


def lock_path(params_path):
    """Held by the run writing params_path, while it runs."""
    return params_path + '.lock'


def companions(params_path):
    """The files a training run writes beside its params: (description, path)."""
    return [('its checkpoint', checkpoint_path(params_path)), ('its metrics log', log_path(params_path)),
            ('its vocabulary', vocabulary_path(params_path)), ('its lock', lock_path(params_path))]


class WriterLock:
    """One run at a time writes a params file: held from before any work until the run ends.

    An advisory lock (flock) on params.lock, which the kernel drops when the holder
    dies, so a killed run never blocks the next; the file is removed when the run ends,
    and by a hard exit (remove_own_files). One that a killed run (SIGKILL) left is
    taken over, with a note saying so. Once held, the temporaries a killed writer of the file
    left are removed (no live writer can own them)."""

    def __init__(self, params_path, option='--writing_params_path'):
        self.params_path, self.path, self.fd, self.option = params_path, lock_path(params_path), None, option

    def __enter__(self):
        import fcntl
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode('ascii', 'replace').strip() or 'another process'
                os.close(fd)
                raise UsageError(f'{self.params_path} is being written by another run ({holder}); wait for it '
                                 f'to end or give another {self.option}') from None
            # The holder before us may have removed the file after we opened it: lock the one there now.
            if os.path.exists(self.path) and os.path.samestat(os.fstat(fd), os.stat(self.path)):
                break
            os.close(fd)
        left = os.read(fd, 32).decode('ascii', 'replace').strip()
        if left:
            print(f'note: {self.path} was left by a run that was killed ({left}); taking it over', flush=True)
        _locks.add(self.path)
        os.ftruncate(fd, 0)
        try:
            os.pwrite(fd, f'process {os.getpid()}'.encode('ascii'), 0)
        except OSError:
            pass  # a full disk: the lock holds without its holder's name, and the run's own write says why it fails
        self.fd = fd
        for path in (self.params_path, vocabulary_path(self.params_path)):
            remove_stale_temporaries(path)
        return self

    def __exit__(self, *exc):
        _locks.discard(self.path)
        os.unlink(self.path)
        os.close(self.fd)


def check_outputs_spare_inputs(inputs, outputs):
    """Refuse a run whose outputs (or the files written beside them) are among its inputs.

    inputs, outputs: [(option, path)]; a training output brings its checkpoint and
    metrics log. Compared by real path, before anything is written.
    """
    given = [(option, path, os.path.realpath(path)) for option, path in inputs if path]
    for out_option, out_path in outputs:
        targets = [(out_option, out_path)]
        if out_option == '--writing_params_path':
            targets += companions(out_path)
        for what, target in targets:
            real = os.path.realpath(target)
            temporaries = os.path.join(os.path.dirname(real), '.' + os.path.basename(real) + '.*.tmp')
            for in_option, in_path, in_real in given:
                if in_real == real or fnmatch.fnmatch(in_real, temporaries):
                    named = out_option if what == out_option else f'{what} (beside {out_option} {out_path})'
                    raise UsageError(f'{in_option} {in_path} is also {named}: writing it would destroy '
                                     f'that input; choose another {out_option}')


# ---------------------------------------------------------------- atomic writes

_writing = set()  # temporaries being written right now, for remove_own_files()
_locks = set()  # writer locks held right now, for remove_own_files()


def atomic_write(path, write):
    """Call write(file_object), then put what it wrote at path at once: a temporary file
    beside path, flushed to disk, then renamed onto path. A symlinked output is written
    through the link (at its real path). A disk that refuses the bytes (full, read-only)
    raises WriteError and leaves path as it was."""
    commit([temporary(path, write)])


def temporary(path, write):
    """What write(file_object) writes, on a new temporary file beside path, synced to disk:
    (temporary, real path) for commit(). write() writes into memory first, so that every
    disk error is one of the OSErrors raised here (torch.save's own writer reports a full
    disk as a RuntimeError about its zip stream), and a failed write leaves nothing."""
    real = os.path.realpath(path)
    buffer = io.BytesIO()
    write(buffer)
    data = memoryview(buffer.getbuffer())
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(real), prefix='.' + os.path.basename(real) + '.',
                                   suffix='.tmp')
    except OSError as e:
        raise WriteError(e.errno, e.strerror, path) from None
    _writing.add(tmp)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    except BaseException as e:
        os.close(fd)
        discard([(tmp, real)])
        if isinstance(e, OSError):
            raise WriteError(e.errno, e.strerror, path) from None
        raise
    os.close(fd)
    return tmp, real


def commit(written):
    """Rename temporaries (from temporary()) onto their paths: renames need no room on the disk,
    so files written together land together."""
    for tmp, real in written:
        os.replace(tmp, real)
        _writing.discard(tmp)


def discard(written):
    """Remove temporaries that will not be committed."""
    for tmp, _ in written:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        _writing.discard(tmp)


def save_torch(obj, path):
    atomic_write(path, lambda f: torch.save(obj, f))


def save_text(text, path):
    atomic_write(path, lambda f: f.write(text.encode('utf-8')))


def remove_own_files():
    """Delete the temporaries of writes in progress and the writer locks held: for exits that
    skip `finally` (os._exit), so that a hard exit leaves nothing of its own behind."""
    for path in list(_writing) + list(_locks):
        try:
            os.unlink(path)
        except OSError:
            pass


def remove_stale_temporaries(path):
    """Delete temporaries of path that an earlier, killed run left behind."""
    real = os.path.realpath(path)
    pattern = os.path.join(glob.escape(os.path.dirname(real)), '.' + glob.escape(os.path.basename(real)) + '.*.tmp')
    for tmp in glob.glob(pattern):
        if tmp not in _writing:
            try:
                os.unlink(tmp)
            except OSError:
                pass
