"""Report: one markdown page with every experiment's accuracy, training cost and loss curve.

`./run.sh report` (run.py --function=report) calls main(submission_dir,
data_dir, report_dir). It reads whatever the run.sh commands have left in
submission_dir (params files, their `<params>.log.jsonl` metrics logs and the
predictions files), scores the predictions against data_dir/birth_dev.tsv and
data_dir/birth_test.tsv with utils.evaluate_places, and writes
report_dir/report.md plus one loss-curve PNG per training run. Anything not
made yet shows as "not run", so the report can be written at any point.

The course's three experiments are always listed; a later course year's
variant (perceiver, rope) is listed beside them once any of its files is
there. For the dev set it adds what course reports lack: each experiment's
accuracy split by whether the person's birthplace occurs in their line of
wiki.txt (what pretraining could have stored) and by how often pretraining's
draws put the birthplace in the window (the course's truncation, or, for a
pretraining with --salient_spans (and --salient_tail), that recipe's mix of draws,
in a table of its own), and its most frequent wrong answers.
"""
import collections
import contextlib
import datetime
import io
import json
import math
import os

from submission import utils
from submission.lib.files import UsageError, made_by, writes, atomic_write, log_path, save_text
from submission.lib.options import BLOCK_SIZE, VARIANTS
from submission.lib.recipe import salient_spans, salient_window
from submission.lib.progress import fmt_time

NOT_RUN = 'not run'
try:  # the plots need it; the course's own environment has no matplotlib
    import matplotlib  # noqa: F401
    HAS_MATPLOTLIB = True
except ImportError:
    HAS_MATPLOTLIB = False



def experiment(title, stages, dev_command):
    """(title, [(stage, params file)], predictions prefix), the files those of run.sh's commands."""
    return (title, [(stage, writes()[command]) for stage, command in stages],
            writes()[dev_command][:-len('.dev.predictions')])


def all_experiments():
    """Every experiment of run.sh's commands: the course's three first, then the later years' variants."""
    return [experiment('vanilla, no pretraining', [('finetune', 'vanilla_finetune_without_pretrain')],
                       'vanilla_eval_dev_without_pretrain')] + [
        experiment(f'{variant}, pretrain + finetune',
                   [('pretrain', f'{variant}_pretrain'), ('finetune', f'{variant}_finetune_with_pretrain')],
                   f'{variant}_eval_dev_with_pretrain') for variant in VARIANTS]


LONDON = 'London baseline'


def experiments_in(submission_dir):
    """The course's three experiments, and each later variant that has left a file."""
    names = os.listdir(submission_dir)
    everyone = all_experiments()
    # The course's three are always listed; the later course years' variants once any of their files is there.
    return everyone[:3] + [e for e in everyone[3:] if any(n.startswith(e[2].split('.')[0] + '.') for n in names)]


def read_log(path):
    """The records of a metrics log; a line cut short by a crash, or holding a number that is not
    finite (or too large for a float), is skipped, not fatal."""
    records = []
    with open(path, encoding='utf-8', errors='replace') as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            # A diverged run's loss is NaN or inf, which the report shows; any other number must be finite.
            if isinstance(record, dict) and all(finite(v, allow_nan=key == 'loss') for key, v in record.items()):
                records.append(record)
    return records


def finite(value, allow_nan=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return False
    return allow_nan or math.isfinite(number)


def is_step(record):
    return ('event' not in record and isinstance(record.get('step'), int)
            and isinstance(record.get('loss'), (int, float)))


def summarize_log(records):
    """Steps, loss curve and cost of the latest training run in a log, across its sessions.

    A log holds sessions, each opened by a start record: run.sh passes --resume, so
    a finished command run again starts a new run in the same log, and a stopped
    one resumes in a new session. A start record names its run (an id that a
    resumed run keeps); in logs written before runs had ids, a session resuming from
    a later step than 0 continues the run before it. Within a run, the later record
    of a step is the one the final model went through (a session resumed from an
    older checkpoint repeats steps).
    """
    sessions = []  # (start record, the records after it)
    for r in records:
        if r.get('event') == 'start':
            sessions.append((r, []))
        elif sessions:
            sessions[-1][1].append(r)
    first = len(sessions) - 1
    while first > 0 and same_run(sessions[first - 1][0], sessions[first][0]):
        first -= 1
    run = sessions[first:]
    by_step, resumed_at = {}, []
    for n, (_, rest) in enumerate(run):
        steps = [r for r in rest if is_step(r)]
        if n and steps:
            resumed_at.append(steps[0]['step'])
        by_step.update((r['step'], r) for r in steps)
    timed = [r for _, rest in run for r in rest if isinstance(r.get('elapsed'), (int, float))]
    curve = [(s, by_step[s]['loss']) for s in sorted(by_step)]
    return {
        'start': run[0][0] if run else {},
        'sessions': sum(1 for _, rest in run if any(is_step(r) for r in rest)),
        'resumed_at': resumed_at,
        'curve': curve,
        'steps': curve[-1][0] if curve else 0,
        'final_loss': curve[-1][1] if curve else float('nan'),
        # elapsed is cumulative over resumes, so the last record holds the run's time.
        'elapsed': timed[-1]['elapsed'] if timed else None,
    }


def same_run(earlier, later):
    """Whether a session (its start record) continues the run of the session before it."""
    if 'run' in earlier and 'run' in later:
        return earlier['run'] == later['run']
    return isinstance(later.get('resumed_from_step'), int) and later['resumed_from_step'] > 0


def plot_curve(summary, title, path):
    """Loss against step, written atomically as a PNG (no pyplot: no global backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    steps = [s for s, _ in summary['curve']]
    losses = [l for _, l in summary['curve']]
    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(steps, losses, color='tab:blue', alpha=0.35 if len(steps) > 50 else 1.0,
            linewidth=1, marker='o' if len(steps) <= 20 else None, label='loss')
    if len(steps) > 50:
        # Per-step losses are noisy; a running mean shows the trend.
        window = max(5, len(steps) // 50)
        sums = [0.0]
        for l in losses:
            sums.append(sums[-1] + l)
        smooth = [(sums[i + 1] - sums[max(0, i + 1 - window)]) / min(i + 1, window) for i in range(len(losses))]
        ax.plot(steps, smooth, color='tab:blue', linewidth=1.5, label=f'mean of {window} steps')
    for i, step in enumerate(summary['resumed_at']):
        ax.axvline(step, color='gray', linestyle='--', linewidth=0.8, label='resumed' if i == 0 else None)
    if losses and min(losses) > 0 and max(losses) / min(losses) > 20:
        ax.set_yscale('log')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('optimizer step')
    ax.set_ylabel('training loss')
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(steps) > 50 or summary['resumed_at']:
        ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format='png'))


# The course's pass marks (dev) and the median of the peers' full-schedule GPU runs.
PASS_MARKS = {'vanilla': 10.0, 'synthesizer': 5.0, 'perceiver': 2.8, 'rope': 2.2}
PEERS_MEDIAN = {'vanilla': 24.5, 'synthesizer': 21.6}


def plot_budget(rows, path):
    """Dev accuracy against the pretraining budget (rows of bench/cpu_ladder.py: variant, epochs,
    seed, dev_percent), one line a variant through the mean of its seeds, with the pass marks."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, variant in enumerate(sorted({r['variant'] for r in rows})):
        color = f'C{i}'
        mine = [r for r in rows if r['variant'] == variant]
        budgets = sorted({r['epochs'] for r in mine})
        means = [sum(float(r['dev_percent']) for r in mine if r['epochs'] == n) /
                 len([r for r in mine if r['epochs'] == n]) for n in budgets]
        ax.plot(budgets, means, color=color, marker='o', label=variant)
        ax.scatter([r['epochs'] for r in mine], [float(r['dev_percent']) for r in mine], color=color, s=12,
                   alpha=0.5)
        for value, style, what in ((PASS_MARKS.get(variant), ':', 'pass mark'),
                                   (PEERS_MEDIAN.get(variant), '--', "peers' median (GPU, 650 epochs)")):
            if value is not None:
                ax.axhline(value, color=color, linestyle=style, linewidth=0.8, label=f'{variant} {what}')
    # From zero on both axes, so that one budget or a few close ones read as how far they are.
    ax.set_xlim(0, 1.15 * max(r['epochs'] for r in rows))
    ax.set_ylim(0, max([float(r['dev_percent']) for r in rows] + list(PASS_MARKS.values())
                       + list(PEERS_MEDIAN.values())) * 1.1)
    ax.set_xlabel('pretraining epochs (--schedule_epochs)')
    ax.set_ylabel('dev accuracy (%)')
    ax.set_title('dev accuracy against the pretraining budget')
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format='png'))


def read_predictions(path):
    """The predictions of a file, one per line; None for a file that is not UTF-8 text."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except UnicodeDecodeError:
        return None
    # One line per question, possibly empty: only the final newline is not a prediction.
    lines = text.split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    return lines


def count_questions(path):
    with open(path, encoding='utf-8', errors='replace') as f:
        return len([line for line in f if line.strip()])


def score(answers_path, predictions):
    """'P % (C/T)', 'no answers', or None when the answers file is missing."""
    if not os.path.isfile(answers_path):
        return None
    n = count_questions(answers_path)
    if len(predictions) != n:
        return f'{len(predictions)} predictions for {n} questions: rerun the evaluation'
    # evaluate_places prints a notice for a file without answers; the cell says it instead.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            total, correct = utils.evaluate_places(answers_path, predictions)
    except (UnicodeDecodeError, IndexError):
        return f'{os.path.basename(answers_path)} is not question<TAB>answer lines in UTF-8'
    if not total:
        return 'no answers'
    return f'{100 * correct / total:.2f} % ({int(correct)}/{int(total)})'


def accuracy_cell(submission_dir, data_dir, name, answers_file, params_files, notes, todo):
    path = os.path.join(submission_dir, name)
    if not os.path.isfile(path):
        todo.append(made_by()[name])
        return NOT_RUN
    answers = os.path.join(data_dir, answers_file)
    predictions = read_predictions(path)
    if predictions is None:
        notes.append(f'`{name}` is not UTF-8 text: rerun `./run.sh {made_by()[name]}` to write it again.')
        return 'unreadable'
    cell = score(answers, predictions)
    if cell is None:
        return 'no answers' if answers_file == 'birth_test.tsv' else f'no {answers_file} in {data_dir}'
    newest = [p for p in params_files if os.path.isfile(p) and os.path.getmtime(p) > os.path.getmtime(path)]
    if newest:
        notes.append(f'`{name}` is older than `{os.path.basename(newest[0])}`: '
                     f'rerun `./run.sh {made_by()[name]}` to score the current model.')
        cell += ' (stale)'
    return cell


def fmt_loss(value):
    return 'n/a' if value is None or (isinstance(value, float) and math.isnan(value)) else f'{value:.4f}'


def training_cells(submission_dir, report_dir, stages, notes, runs, todo):
    """Time, steps, final loss and plot link for each stage; several stages share a cell."""
    cells = {'time': [], 'steps': [], 'loss': [], 'plot': []}
    for stage, params in stages:
        params_path = os.path.join(submission_dir, params)
        log = log_path(params_path)
        label = f'{stage}: ' if len(stages) > 1 else ''
        records = read_log(log) if os.path.isfile(log) else []
        if not records:
            if os.path.isfile(params_path):
                text = 'no log'  # params made elsewhere (e.g. course code), so no metrics
            else:
                text = NOT_RUN
                todo.append(made_by()[params])
            for key in cells:
                cells[key].append(label + text)
            continue
        summary = summarize_log(records)
        state = ''
        if not os.path.isfile(params_path):
            state = ' (unfinished)'
            notes.append(f'`{params}` is not written yet: its run is still going or was stopped '
                         f'(`./run.sh {made_by()[params]}` resumes it).')
        elapsed = summary['elapsed']
        cells['time'].append(label + (fmt_time(elapsed) if elapsed is not None else 'n/a') + state)
        cells['steps'].append(label + f'{summary["steps"]:,}')
        cells['loss'].append(label + fmt_loss(summary['final_loss']))
        if summary['curve'] and not HAS_MATPLOTLIB:
            cells['plot'].append(label + 'no plot (matplotlib is not installed)')
        elif summary['curve']:
            png = 'loss-' + params[:-len('.params')] + '.png'
            plot_curve(summary, f'{params}: training loss', os.path.join(report_dir, png))
            cells['plot'].append(f'[{stage}]({png})')
            runs.append((params, png, summary))
        else:
            cells['plot'].append(label + 'no steps yet')
    if len(stages) > 1 and all(v.endswith(NOT_RUN) for v in cells['time']):
        return {key: NOT_RUN for key in cells}
    return {key: '<br>'.join(values) for key, values in cells.items()}


def london_cells(data_dir):
    cells = []
    for name in ('birth_dev.tsv', 'birth_test.tsv'):
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path):
            cells.append('no answers' if name == 'birth_test.tsv' else f'no {name} in {data_dir}')
            continue
        cells.append(score(path, ['London'] * count_questions(path)))
    return cells


def run_details(params, png, summary):
    start = summary['start']
    settings = start.get('settings') or {}
    facts = [f'device {start.get("device", "?")}', f'precision {start.get("precision", "?")}',
             f'{start.get("world_size", 1)} process(es)', f'seed {start.get("seed", "?")}']
    for key in ('max_epochs', 'batch_size', 'learning_rate'):
        if key in settings:
            facts.append(f'{key} {settings[key]}')
    if settings.get('exact'):
        facts.append('exact course computation')
    sessions = summary['sessions']
    if sessions > 1:
        facts.append(f'{sessions} sessions (resumed {sessions - 1} time(s))')
    lines = [f'### {params}', '', f'![{params} training loss]({png})', '',
             '; '.join(facts) + '.', '']
    return lines


def name_of(question):
    """The person of a course question, "Where was NAME born?"."""
    prefix, suffix = 'Where was ', ' born?'
    return question[len(prefix):-len(suffix)] if question.startswith(prefix) and question.endswith(suffix) \
        else question


def biography(lines, name):
    """The person's line of wiki.txt: the first that starts with the name (course lines are
    "Name. text"), else the first that names them; None where none does."""
    return next((line for line in lines if line.startswith(name)), None) or \
        next((line for line in lines if name in line), None)


def place_at(doc, name, place):
    """Where the place is first mentioned in the biography after the name (-1: nowhere). A mention
    inside a repetition of the name ("Lima Cruz. Lima Cruz was born in Lima") is not the place."""
    start = doc.find(name)
    names = [range(i, i + len(name)) for i in range(len(doc)) if doc.startswith(name, i)]
    at = doc.find(place, start + len(name)) if start >= 0 else -1
    while at >= 0 and any(at in r for r in names):
        at = doc.find(place, at + 1)
    return at


def birthplaces(questions, answers, wiki_path):
    """For each question: the person's line of wiki.txt (None where no line names them) and where
    its answer's first mention there ends (a character count; None where the line does not hold it)."""
    with open(wiki_path, encoding='utf-8', errors='replace') as f:
        lines = f.read().split('\n')
    found = []
    for question, answer in zip(questions, answers):
        name = name_of(question)
        doc = biography(lines, name)
        at = place_at(doc, name, answer) if doc else -1
        found.append((doc, at + len(answer) if at >= 0 else None))
    return found


# The course's span corruption keeps the first 4..112 characters of a line, each length alike
# (CharCorruptionDataset: random.randint(4, int(block_size * 7 / 8))).
SHORTEST, LONGEST = 4, int(BLOCK_SIZE * 7 / 8)


def shown_share(end, doc=None, salient=0.0, tail=None):
    """The share of pretraining's draws whose window holds a birthplace ending at `end` (none past
    LONGEST; 0 where there is no end). The course's truncations keep at least `end` characters in
    (LONGEST + 1 - end) / (LONGEST - SHORTEST + 1) of them; with --salient_spans=P, a share P of
    the draws of a line (`doc`) with salient spans keep its start through one of them, drawn alike,
    then to a length drawn alike up to LONGEST or the line's end, or with --salient_tail=N up to N
    characters past the span (recipe.SalientSpans)."""
    if end is None or end > LONGEST:
        return 0.0
    course = (LONGEST - max(end, SHORTEST) + 1) / (LONGEST - SHORTEST + 1)
    spans = salient_spans(doc, LONGEST) if salient and doc else []
    if not spans:
        return course
    held = []
    for _, span_end in spans:
        low, high = salient_window(len(doc), span_end, LONGEST, tail)
        held.append(max(0, high - max(low, end) + 1) / (high - low + 1))
    return (1 - salient) * course + salient * sum(held) / len(held)


SHOWN_BINS = (('never shown', lambda s: s == 0), ('under 1/3 of draws', lambda s: 0 < s < 1 / 3),
              ('1/3 to 2/3', lambda s: 1 / 3 <= s < 2 / 3), ('2/3 or more', lambda s: s >= 2 / 3))


def salient_draws(submission_dir, stages):
    """(share, tail): the --salient_spans share and --salient_tail an experiment's pretraining ran
    with, from its metrics log ((0.0, None): the course's draws, or no pretraining, or no log)."""
    path = next((log_path(os.path.join(submission_dir, params)) for stage, params in stages if stage == 'pretrain'),
                None)
    if not path or not os.path.isfile(path):
        return 0.0, None
    starts = [r for r in read_log(path) if isinstance(r.get('settings'), dict)]
    settings = starts[-1]['settings'] if starts else {}
    share = float(settings.get('salient_spans') or 0)
    return share, settings.get('salient_tail') if share else None


def dev_answers(submission_dir, data_dir, experiments):
    """The dev set, experiment by experiment: accuracy split by whether the birthplace is in
    the person's wiki.txt line, by how often pretraining showed it, and the most frequent wrong
    answers."""
    dev_path, wiki_path = os.path.join(data_dir, 'birth_dev.tsv'), os.path.join(data_dir, 'wiki.txt')
    if not (os.path.isfile(dev_path) and os.path.isfile(wiki_path)):
        return [f'Needs birth_dev.tsv and wiki.txt in `{data_dir}`.', '']
    with open(dev_path, encoding='utf-8', errors='replace') as f:
        rows = [line.strip().split('\t') for line in f if line.strip()]
    if not rows or any(len(r) < 2 for r in rows):
        return [f'`{dev_path}` is not question<TAB>answer lines.', '']
    questions, answers = [r[0] for r in rows], [r[1] for r in rows]
    found = birthplaces(questions, answers, wiki_path)
    stored = [end is not None for _, end in found]
    n_in = sum(stored)

    table = [row(['Experiment', 'Dev accuracy', 'Birthplace in the wiki line', 'Not in the line',
                  'Most frequent wrong answers']), row(['---', '---:', '---:', '---:', '---'])]
    # One table by how often pretraining showed each birthplace for each way of drawing (the
    # course's, or a --salient_spans share and --salient_tail), each listing the experiments
    # pretrained that way; the London baseline closes every table.
    by_shown, london = {(0.0, None): []}, None
    candidates = [(title, f'{prefix}.dev.predictions', salient_draws(submission_dir, stages))
                  for title, stages, prefix in experiments]
    for title, name, salient in candidates + [(LONDON, None, (0.0, None))]:
        if name is None:
            predictions = ['London'] * len(answers)
        else:
            path = os.path.join(submission_dir, name)
            predictions = read_predictions(path) if os.path.isfile(path) else None
            if predictions is None or len(predictions) != len(answers):
                continue
        hits = [p == a for p, a in zip(predictions, answers)]
        wrong = collections.Counter(p for p, h in zip(predictions, hits) if not h).most_common(3)
        commonest = ', '.join(f'{p or "(empty)"} ({n})' for p, n in wrong) or '—'
        table.append(row([title, f'{100 * sum(hits) / len(hits):.1f} %', right(hits, stored),
                          right(hits, [not s for s in stored]), commonest]))
        if name is None:
            london = (title, hits)
        else:
            by_shown.setdefault(salient, []).append((title, hits))
    lines = [f'{n_in} of the {len(answers)} dev answers occur in the person\'s line of wiki.txt; '
             f'pretraining can only have stored those.', '', *table, '',
             f'By how often pretraining showed the birthplace: the course\'s span corruption keeps the '
             f'first {SHORTEST} to {LONGEST} characters of a line, each length alike, so a birthplace that '
             f'ends at character e is in the window in ({LONGEST + 1} - e)/{LONGEST - SHORTEST + 1} of the '
             f'draws, and never past character {LONGEST} (never shown: past it, or not in the line). '
             f'Each cell: the people the experiment answers right, of those in the column.', '']
    for share, tail in sorted(by_shown, key=lambda draws: (draws[0], -1 if draws[1] is None else draws[1])):
        shown = [shown_share(end, doc, share, tail) for doc, end in found]
        bins = [[test(x) for x in shown] for _, test in SHOWN_BINS]
        if share:
            tailed = '' if tail is None else f' --salient_tail={tail}'
            until = ' or the line\'s end' if tail is None else \
                f', the span\'s end + {tail} or the line\'s end, whichever is first'
            lines += [f'Pretrained with --salient_spans={share:g}{tailed}: {100 * share:g} % of the draws of a line '
                      f'with salient spans keep its start through one of them, drawn alike, then to a length drawn '
                      f'alike up to {LONGEST} characters{until}, the other draws are the course\'s; '
                      f'the columns count the dev people by that mix of draws.',
                      '']
        lines += [row(['Experiment'] + [f'{label} ({sum(where)})' for (label, _), where in zip(SHOWN_BINS, bins)]),
                  row(['---'] + ['---:'] * len(SHOWN_BINS))]
        lines += [row([title] + [right(hits, where) for where in bins])
                  for title, hits in by_shown[share, tail] + [london]]
        lines.append('')
    return lines


def right(hits, where):
    """"share % (right/all)" of the hits where `where` holds."""
    n, k = sum(where), sum(h for h, w in zip(hits, where) if w)
    return f'{100 * k / n:.1f} % ({k}/{n})' if n else '—'


def row(cells):
    return '| ' + ' | '.join(c.replace('|', '\\|') for c in cells) + ' |'


def experiments_table(submission_dir, data_dir, report_dir, experiments, notes, runs, todo):
    """The main table: one row per experiment, and the London baseline; plots its loss curves."""
    table = [row(['Experiment', 'Dev accuracy', 'Test accuracy', 'Training time', 'Steps',
                  'Final loss', 'Loss curve']),
             row(['---', '---:', '---:', '---:', '---:', '---:', '---'])]
    for title, stages, prefix in experiments:
        # Predictions come from the last stage's params; older predictions score an older model.
        params_paths = [os.path.join(submission_dir, stages[-1][1])]
        dev = accuracy_cell(submission_dir, data_dir, f'{prefix}.dev.predictions', 'birth_dev.tsv',
                            params_paths, notes, todo)
        test = accuracy_cell(submission_dir, data_dir, f'{prefix}.test.predictions', 'birth_test.tsv',
                             params_paths, notes, todo)
        t = training_cells(submission_dir, report_dir, stages, notes, runs, todo)
        table.append(row([title, dev, test, t['time'], t['steps'], t['loss'], t['plot']]))
    dev, test = london_cells(data_dir)
    table.append(row([LONDON, dev, test, '—', '—', '—', '—']))
    return table


def main(submission_dir, data_dir, report_dir):
    if not os.path.isdir(submission_dir):
        raise UsageError(f'submission directory {submission_dir} does not exist; '
                         f'run from src/ or pass --submission_dir')
    if os.path.exists(report_dir) and not os.path.isdir(report_dir):
        raise UsageError(f'report directory {report_dir} is a file; pass another --report_dir')
    os.makedirs(report_dir, exist_ok=True)

    notes, runs, todo = [], [], []
    experiments = experiments_in(submission_dir)
    table = experiments_table(submission_dir, data_dir, report_dir, experiments, notes, runs, todo)
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    lines = [
        '# Birth-place knowledge probe: results', '',
        f'Written {now} by `./run.sh report` from the files in `{submission_dir}`; '
        f'accuracies are exact matches against `{os.path.join(data_dir, "birth_dev.tsv")}` and '
        f'`{os.path.join(data_dir, "birth_test.tsv")}`.', '',
        '## Experiments', '',
        *table, '',
        'Course pass marks (dev): vanilla pretrain + finetune at least 10 %, synthesizer at least 5 %, '
        'no pretraining at least one correct answer; in later course years perceiver at least 2.8 % '
        '(test 2.5 %), rope at least 2.2 % (test 1.6 %). Training time is the run\'s own time, summed '
        'over resumed sessions; steps and final loss are those of its last optimizer step.', '',
    ]
    if notes:
        lines += ['Notes:', ''] + [f'- {n}' for n in notes] + ['']
    if todo:
        # In the order the course runs them: each training step before its evaluations.
        order = list(made_by().values())
        missing = sorted(set(todo), key=order.index)
        lines += [f'{NOT_RUN.capitalize()} yet (from `src/`):', '', '```',
                  *[f'./run.sh {cmd}' for cmd in missing], '```', '']
    lines += ['## Dev answers', '', *dev_answers(submission_dir, data_dir, experiments), '## Loss curves', '']
    lines += [line for params, png, summary in runs for line in run_details(params, png, summary)] or \
        [f'No training run has logged a step yet ({NOT_RUN}).', '']
    path = os.path.join(report_dir, 'report.md')
    save_text('\n'.join(lines), path)
    print(f'wrote {path}')
    return path
