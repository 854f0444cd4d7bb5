"""World: a synthetic "knowledge world" in the course's file formats, for the demo.

Invented people (names built from syllables), each with a birth place taken
from a fixed list of real cities, a profession, a birth year and a later home
town. From them it writes what the course ships:

* wiki.txt: one biography per line, newline-terminated: a sentence with the
  birth place, then a few other facts; all people's biographies shuffled together;
* birth_places_train.tsv, birth_dev.tsv, birth_test.tsv: "Where was X born?<TAB>City";
* birth_test_inputs.tsv: the test questions without answers.

The people of the three splits are disjoint. Dev and test people are in the
wiki corpus but never in the finetuning file, so a model can only answer for
them with what pretraining stored, which is the point of the experiment.

Unlike the course's wiki.txt, lines have no "Full Name." title: with one, the
name always sat at the start of the line, where the question never puts it
("Where was X born?"), and the finetuned model answered fewer dev questions.

bios_per_person=1 gives every person one biography; more gives each person
that many, worded differently (other templates, other extra facts).
Allen-Zhu & Li (2023, "Physics of Language Models: Part 3.1") found that facts
seen in only one wording are memorised but hard to extract for people the
question-answer finetuning never saw, while several wordings per person make
them extractable; the demo shows the same contrast.

Everything comes from one seeded random.Random, so the same settings give
byte-identical files.

    python -m tools.world --out DIR [--people N] [--bios-per-person K] [--cities N] [--seed S]
"""
import json
import os
import random
import sys

from submission.lib.files import COURSE_FILES, UsageError, commit, discard, temporary
from submission.lib.options import ArgumentParser

# Written first into every folder the generator fills; a folder that holds
# course-named files but no marker is not ours, and is never written into
# (it may hold the real course data).
MARKER = 'world.json'

# Real cities, ASCII only, one word each so answers stay short; the first
# `cities` of them are used.
CITIES = [
    'Lima', 'Oslo', 'Cairo', 'Dublin', 'Madrid', 'Vienna', 'Lisbon', 'Prague',
    'Berlin', 'Paris', 'Tokyo', 'Quito', 'Athens', 'Warsaw', 'Nairobi', 'Seoul',
    'Havana', 'Manila', 'Bogota', 'Dakar', 'Riga', 'Kyoto', 'Zurich', 'Boston',
    'Chicago', 'Toronto', 'Sydney', 'Mumbai', 'Istanbul', 'Geneva', 'Naples', 'Munich',
]

# Short first names: together with a two-syllable surname a question stays
# short enough for the demo model's block (the evaluator's fast path).
FIRST_NAMES = [
    'Anna', 'Bela', 'Carl', 'Dora', 'Emil', 'Farah', 'Gus', 'Hana', 'Ivo', 'Jana',
    'Karl', 'Lena', 'Milo', 'Nora', 'Otto', 'Pia', 'Rafe', 'Sara', 'Tom', 'Una',
    'Vera', 'Abel', 'Ezra', 'Ida', 'Jon', 'Kira', 'Leo', 'Mara', 'Nils', 'Olga',
    'Paul', 'Rosa', 'Sven', 'Tess', 'Uri', 'Yara', 'Zoe', 'Ines', 'Hugo', 'Lia',
]
# Surnames are an onset syllable plus an ending, e.g. "Bel" + "dor" -> "Beldor".
ONSETS = ['Bel', 'Cor', 'Dal', 'Fen', 'Gar', 'Hol', 'Kes', 'Lor', 'Mar', 'Nor',
          'Pel', 'Quen', 'Ros', 'Sal', 'Tor', 'Val', 'Wen', 'Yor', 'Zan', 'Ard']
ENDINGS = ['dor', 'vik', 'man', 'ley', 'ton', 'ric', 'sen', 'wyn', 'gard', 'mont',
           'ell', 'ard', 'ine', 'ow', 'berg', 'ford', 'ski', 'nez', 'ov', 'ani']

PROFESSIONS = ['painter', 'poet', 'chemist', 'sailor', 'baker', 'judge', 'dancer',
               'architect', 'farmer', 'surgeon', 'pianist', 'novelist', 'engineer',
               'botanist', 'actor', 'teacher', 'weaver', 'banker', 'singer', 'historian']

# Sentences stating the birth place: the city sits at different places, in
# different wordings, and the name at different distances from the line's
# start. Every person gets the first one, the lead-sentence form of
# encyclopedia articles, whose "X, born in" is nearest to the question
# "Where was X born?"; further biographies take the others.
BIRTH_TEMPLATES = [
    '{n}, born in {city}, became {a_job}.',
    '{n} was born in {city} in {year}.',
    '{n}, {a_job} from {city}, was born in {year}.',
    'In {year}, {n} was born in {city}.',
    'The {job} {n} was born and raised in {city}.',
    'Records show that {n} was born in {city}.',
    '{n} is {a_job} born in {city}.',
    'Born in {city} in {year}, {n} became {a_job}.',
]
# Other facts, so the corpus is about more than birth places (and names a
# second city that is not the birth place). {s} is the person as the
# sentence names them: full name or surname.
FACT_TEMPLATES = [
    '{s} later moved to {home}.',
    '{s} worked as {a_job} for many years.',
    '{s} lived in {home} until {late}.',
    'In {late}, {s} settled in {home}.',
    'Friends called {s} a gifted {job}.',
    '{s} died in {home} in {late}.',
]
# The questions need "W" and "?", which plain statements lack; this fact
# supplies them (one biography of the corpus always carries it).
QUESTION_FACT = 'Why did {s} move to {home}? Nobody knows.'


def make_people(rng, n, cities):
    """n people with distinct full names and their facts."""
    if n > len(FIRST_NAMES) * len(ONSETS) * len(ENDINGS):
        raise ValueError(f'at most {len(FIRST_NAMES) * len(ONSETS) * len(ENDINGS)} people')
    names, people = set(), []
    while len(people) < n:
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(ONSETS) + rng.choice(ENDINGS)
        if (first, last) in names:
            continue
        names.add((first, last))
        city = rng.choice(cities)
        # A home town other than the birth place, when there is one.
        others = [c for c in cities if c != city] or cities
        year = rng.randint(1720, 1960)
        job = rng.choice(PROFESSIONS)
        people.append({'first': first, 'last': last, 'name': f'{first} {last}', 'city': city,
                       'home': rng.choice(others), 'job': job,
                       'a_job': ('an ' if job[0] in 'aeiou' else 'a ') + job,
                       'year': year, 'late': year + rng.randint(25, 60)})
    return people


def biography(rng, person, template, question_fact=False):
    """One wiki line: a sentence with the birth place, then a few other facts."""
    facts = rng.sample(FACT_TEMPLATES, rng.randint(0, 2))
    if question_fact:
        facts.insert(0, QUESTION_FACT)
    # Later sentences name the person by full name or surname, as biographies do.
    fill = lambda t: t.format(n=person['name'], s=rng.choice([person['name'], person['last']]), **person)
    return ' '.join(fill(t) for t in [template] + facts)


def question(person):
    return f'Where was {person["name"]} born?'


def generate(people=150, bios_per_person=4, cities=16, seed=0):
    """The world's files as {file name: text}; the same arguments give the same text."""
    if not 1 <= bios_per_person <= len(BIRTH_TEMPLATES):
        raise ValueError(f'bios per person must be 1 to {len(BIRTH_TEMPLATES)}')
    if not 2 <= cities <= len(CITIES):
        raise ValueError(f'cities must be 2 to {len(CITIES)}')
    if people < 3:
        raise ValueError('people must be at least 3 (one per split)')
    rng = random.Random(seed)
    folk = make_people(rng, people, CITIES[:cities])

    bios = []
    for person in folk:
        # Each biography of a person states the birth place in another wording.
        for template in BIRTH_TEMPLATES[:1] + rng.sample(BIRTH_TEMPLATES[1:], bios_per_person - 1):
            bios.append(biography(rng, person, template, question_fact=not bios))
    rng.shuffle(bios)

    # A third of the people each for finetuning, dev and test: finetuning only
    # has to teach the question format, while dev wants many people to score.
    order = list(range(people))
    rng.shuffle(order)
    n_train = n_dev = people // 3
    split = {'train': order[:n_train], 'dev': order[n_train:n_train + n_dev],
             'test': order[n_train + n_dev:]}
    qa = lambda idx: ''.join(f'{question(folk[i])}\t{folk[i]["city"]}\n' for i in idx)
    files = {
        'wiki.txt': ''.join(b + '\n' for b in bios),
        'birth_places_train.tsv': qa(split['train']),
        'birth_dev.tsv': qa(split['dev']),
        'birth_test.tsv': qa(split['test']),
        'birth_test_inputs.tsv': ''.join(question(folk[i]) + '\n' for i in split['test']),
    }
    wiki_chars = set(files['wiki.txt'])
    for name, text in files.items():
        missing = set(text) - wiki_chars - {'\t', '\n'}
        assert not missing, f'{name} has characters not in wiki.txt: {sorted(missing)}'
    return files


def write(out, **settings):
    """Generate the world and write its files into directory out; returns {file name: path}."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f'{out} is a file; give a directory')
    theirs = [n for n in COURSE_FILES if os.path.exists(os.path.join(out, n))]
    if theirs and not os.path.exists(os.path.join(out, MARKER)):
        raise UsageError(f'{out} holds {theirs[0]} but no {MARKER}, so it was not written here and may be the '
                         f'course data; give an empty directory or one this generator wrote')
    texts = generate(**settings)
    texts[MARKER] = json.dumps(settings, sort_keys=True) + '\n'
    made = not os.path.isdir(out)
    os.makedirs(out, exist_ok=True)
    # Every file, or none (a full disk leaves the folder as it was, and no folder it made).
    written = []
    try:
        for name, text in texts.items():
            written.append(temporary(os.path.join(out, name), lambda f, text=text: f.write(text.encode('utf-8'))))
    except BaseException:
        discard(written)
        if made:
            os.rmdir(out)
        raise
    commit(written)
    return {name: os.path.join(out, name) for name in texts if name != MARKER}


def main(argv=None):
    parser = ArgumentParser(prog='python -m tools.world',
                                     description='Write a synthetic birth-place world in the course formats.')
    parser.add_argument('--out', required=True, help='directory to write the files into')
    parser.add_argument('--people', type=int, default=150)
    parser.add_argument('--bios-per-person', type=int, default=4)
    parser.add_argument('--cities', type=int, default=16)
    parser.add_argument('--seed', type=int, default=0)
    try:
        args = parser.parse_args(argv)
        paths = write(args.out, people=args.people, bios_per_person=args.bios_per_person,
                      cities=args.cities, seed=args.seed)
    except (ValueError, UsageError, OSError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    print('wrote ' + ', '.join(sorted(paths.values())))


if __name__ == '__main__':
    main()
