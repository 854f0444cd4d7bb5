"""graderUtil: the small framework behind grader.py, the course-style autograder.

Tests register with an id (the course's ids, e.g. 1e-0-basic, for the tests
the course has; ids ending in -extra for our own), a short description and a
time limit. Their points come from points.json, found as the course's
graderUtil finds it: ./points.json (src/) if it exists, else ../points.json
(the repository root, where the course puts it), in the course's format
{"test id": {"points": N}, ...}; entries without a test here (the course's
samples and written parts) are fine. A test passes by returning (optionally a
short detail to show), fails by raising Failure (or anything else), and is
skipped by raising NotRun. The report gives each test's points and a one-line
reason, then the totals.

Exit codes: 0 when no test failed (NOT RUN is not a failure), 1 when one did,
2 for bad input (an unknown test id, a broken points.json).
"""
import contextlib
import io
import json
import math
import os
import signal
import sys
import time
import traceback

SRC = os.path.dirname(os.path.abspath(__file__))


class Failure(Exception):
    """A check that did not hold; the message is the one-line reason."""


class NotRun(Exception):
    """A test that cannot run here (e.g. its predictions file is missing)."""


class TimedOut(BaseException):
    # A BaseException, so that submission code catching Exception cannot swallow it.
    def __init__(self, what, seconds):
        super().__init__(f'{what} did not finish within {seconds} s')


def require(condition, message):
    if not condition:
        raise Failure(message)


# Time limits nest (a whole test, and a helper call inside it), but there is
# only one SIGALRM; each open limit is kept here and the alarm is set for the
# earliest deadline.
_limits = []  # (deadline, seconds, what)


def _arm():
    if not _limits:
        signal.alarm(0)
        return
    left = min(deadline for deadline, _, _ in _limits) - time.monotonic()
    signal.alarm(max(1, math.ceil(left)))


def _on_alarm(signum, frame):
    now = time.monotonic()
    expired = [limit for limit in _limits if limit[0] <= now]
    if not expired:
        _arm()  # alarm() rounds to whole seconds; wait for the rest
        return
    _, seconds, what = min(expired)
    raise TimedOut(what, seconds)


@contextlib.contextmanager
def time_limit(seconds, what):
    """Raise TimedOut if the block runs longer than seconds (no limit where SIGALRM is missing)."""
    if not hasattr(signal, 'SIGALRM'):
        yield
        return
    limit = (time.monotonic() + seconds, seconds, what)
    _limits.append(limit)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    _arm()
    try:
        yield
    finally:
        _limits.remove(limit)
        _arm()
        signal.signal(signal.SIGALRM, previous)


def one_line(text, limit=300):
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


def describe_error(e):
    """'Type: message (at file:line)', pointing into the submission where possible."""
    frames = traceback.extract_tb(e.__traceback__)
    ours = {os.path.join(SRC, 'grader.py'), os.path.join(SRC, 'graderUtil.py')}
    inside = [f for f in frames
              if os.path.abspath(f.filename).startswith(SRC + os.sep) and os.path.abspath(f.filename) not in ours]
    where = ''
    # A SyntaxError's message already names the file and line at fault.
    if (inside or frames) and not isinstance(e, SyntaxError):
        f = (inside or frames)[-1]
        name = os.path.relpath(f.filename, SRC) if inside else os.path.basename(f.filename)
        where = f' (at {name}:{f.lineno})'
    message = one_line(e) or '(no message)'
    return f'{type(e).__name__}: {message}{where}'


def find_points():
    """The course's rule: ./points.json if it exists, else ../points.json (from src/)."""
    here = os.path.join(SRC, 'points.json')
    return here if os.path.exists(here) else os.path.join(os.path.dirname(SRC), 'points.json')


def load_points(path):
    """points.json as {test id: points}; any problem is a one-line ValueError."""
    name = os.path.relpath(path, SRC)
    try:
        with open(path, encoding='utf-8') as f:
            entries = json.load(f)
    except FileNotFoundError:
        raise ValueError(f'{name} is missing; it maps each test id to {{"points": N}}') from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f'cannot read {name}: {one_line(e)}') from None
    except json.JSONDecodeError as e:
        raise ValueError(f'{name} is not valid JSON: {e.msg} at line {e.lineno}') from None
    if not isinstance(entries, dict):
        raise ValueError(f'{name} must be a JSON object mapping test ids to {{"points": N}}')
    points = {}
    for test_id, entry in entries.items():
        value = entry.get('points') if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f'{name}: {test_id} must be {{"points": N}} with N a non-negative number, '
                             f'not {entry!r}')
        points[test_id] = value
    return points


def show_points(value):
    return str(int(value)) if float(value).is_integer() else f'{value:g}'


class Part:
    def __init__(self, part_id, func, description, max_seconds):
        self.id = part_id
        self.func = func
        self.description = description
        self.max_seconds = max_seconds
        self.points = 0


class Grader:
    def __init__(self, points_path=None):
        self.points_path = points_path or find_points()
        self.parts = []

    def add_basic_part(self, part_id, func, description, max_seconds=60):
        if any(p.id == part_id for p in self.parts):
            raise ValueError(f'test id {part_id} registered twice')
        self.parts.append(Part(part_id, func, description, max_seconds))

    def ids(self):
        return [p.id for p in self.parts]

    def select(self, argv):
        """The parts to run: all of them, or the ids given on the command line."""
        if any(a in ('-h', '--help') for a in argv):
            return None
        by_id = {p.id: p for p in self.parts}
        unknown = [a for a in argv if a not in by_id]
        if unknown:
            raise ValueError(f'unknown test id {unknown[0]!r}; valid ids: {", ".join(self.ids())}')
        chosen = list(dict.fromkeys(argv))  # keeps order, drops repeats
        return [by_id[i] for i in chosen] if chosen else list(self.parts)

    def attach_points(self):
        points = load_points(self.points_path)
        for p in self.parts:
            if p.id not in points:
                raise ValueError(f'{os.path.relpath(self.points_path, SRC)} has no entry for test {p.id}')
            p.points = points[p.id]

    def run_part(self, part):
        """(status, earned, reason, seconds) for one part; the part's own output is held back."""
        started = time.monotonic()
        # Submission code prints (vocabulary sizes, parameter counts, progress);
        # keep it out of the report.
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                with time_limit(part.max_seconds, 'the test'):
                    detail = part.func()
            status, earned, reason = 'PASS', part.points, detail or ''
        except NotRun as e:
            status, earned, reason = 'NOT RUN', 0, one_line(e)
        except Failure as e:
            status, earned, reason = 'FAIL', 0, one_line(e)
        except TimedOut as e:
            status, earned, reason = 'FAIL', 0, one_line(e)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # SystemExit too: a submission must not end the grader
            status, earned, reason = 'FAIL', 0, describe_error(e)
        return status, earned, reason, time.monotonic() - started

    def main(self, argv):
        """Run the selected tests, print the report, return the exit code."""
        try:
            parts = self.select(argv)
            if parts is None:
                print('usage: python grader.py [TEST_ID ...]   (no id: run every test)')
                print('test ids: ' + ', '.join(self.ids()))
                return 0
            self.attach_points()
        except ValueError as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
        counts = {'PASS': 0, 'FAIL': 0, 'NOT RUN': 0}
        earned_total = max_total = course_earned = course_max = 0
        for part in parts:
            print(f'{part.id}: {part.description}', flush=True)
            status, earned, reason, seconds = self.run_part(part)
            counts[status] += 1
            earned_total += earned
            max_total += part.points
            if not part.id.endswith('-extra'):
                course_earned += earned
                course_max += part.points
            line = f'    {show_points(earned)}/{show_points(part.points)} {status}'
            if reason:
                line += f': {reason}'
            if status != 'NOT RUN':
                line += f' ({seconds:.1f} s)'
            print(line, flush=True)
        print(f'Passed {counts["PASS"]}, failed {counts["FAIL"]}, not run {counts["NOT RUN"]}')
        print(f'Total: {show_points(earned_total)}/{show_points(max_total)} points')
        print(f'Course tests: {show_points(course_earned)}/{show_points(course_max)} points '
              f'(the rest are our -extra checks)')
        return 1 if counts['FAIL'] else 0
