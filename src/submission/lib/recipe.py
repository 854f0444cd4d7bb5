"""Recipe: a training recipe of one's own, beside the course's settings, which it never changes.

`with_recipe` gives a run's TrainerConfig the options of its recipe (--batch_size,
--learning_rate, --weight_decay, and --schedule_epochs, which fits the course's
learning-rate schedule to the run: `fitted_schedule`), in a copy of the course's.
`QuestionMix` is the pretraining of --pretrain_questions: the corpus's span
corruptions and a file of question<TAB>answer lines, as NameDataset makes them,
shuffled together every epoch (Allen-Zhu & Li, "Physics of Language Models, Part
3.1", arXiv 2309.14316: questions seen during pretraining make the facts of other
people extractable far sooner). Only the finetuning questions belong there, never
the dev or test ones.
"""
import copy

from .options import OPTIONS

def fitted_schedule(config, epochs, dataset):
    """The course's schedule fitted to a run of `epochs` epochs (--schedule_epochs): the
    same linear warmup, then the cosine ending at the run's last step, where the course's
    max(0.1, cosine) has long reached its floor (0.1 x learning_rate; from 80 % of the
    run on). The course's final_tokens (200 epochs of block_size tokens) would leave a run
    shorter than 200 epochs near its peak rate when it stops. Returns a copy of config;
    the course's own TrainerConfig is left as it is."""
    fitted = copy.copy(config)
    fitted.max_epochs = epochs
    # The tokens of the whole run, as the course counts them: every position of every row.
    fitted.final_tokens = epochs * len(dataset) * (dataset.block_size - 1)
    return fitted


def with_recipe(config, options, dataset):
    """The course's TrainerConfig with a run's own recipe (--batch_size, --learning_rate,
    --weight_decay, --schedule_epochs) in a copy; the course's own is left as it is."""
    given = [o.config for o in OPTIONS if o.config and getattr(options, o.config) is not None]
    mine = copy.copy(config) if given else config
    for key in given:
        setattr(mine, key, getattr(options, key))
    return fitted_schedule(mine, options.schedule_epochs, dataset) if options.schedule_epochs else mine


class QuestionMix:
    """A pretraining corpus and a set of questions as one dataset: items 0..len(corpus)-1 are the
    corpus's span corruptions, the rest the questions (NameDataset examples); the vocabulary and
    block size are the corpus's."""

    def __init__(self, corpus, questions):
        self.corpus, self.questions = corpus, questions
        self.stoi, self.itos = corpus.stoi, corpus.itos
        self.block_size, self.vocab_size = corpus.block_size, corpus.vocab_size

    def __len__(self):
        return len(self.corpus) + len(self.questions)

    def part(self, idx):
        return (self.corpus, idx) if idx < len(self.corpus) else (self.questions, idx - len(self.corpus))

    def __getitem__(self, idx):
        dataset, i = self.part(idx)
        return dataset[i]

    def trimmed(self, idx):
        dataset, i = self.part(idx)
        return dataset.trimmed(i)
