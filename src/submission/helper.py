"""Helper: the course's model builders and training settings (parts c, f and g of the handout),
and the later course years' builders, initialize_perceiver_model and initialize_rope_model.

finetune() and pretrain() return (tconf, trainer) without training, as the
course grader expects; train() trains and writes the params file. Each keeps
the course's signature; finetune() and pretrain() also take run.py's Options
as an optional last argument, which they hand to the Trainer.
"""
import os
import random

from .lib import checkpoint, distributed, files
from .dataset import NameDataset, CharCorruptionDataset
from .model import GPT
from .lib.options import default_device
from .trainer import Trainer, TrainerConfig

random.seed(0)
device = default_device()  # where the course builds its models: the GPU when there is one


def model_of_kind(mconf, synthesizer=False, perceiver=False, rope=False):
    # The three switches are set on every build, so a GPTConfig reused for
    # another variant never keeps the last one's.
    mconf.synthesizer, mconf.perceiver, mconf.rope = synthesizer, perceiver, rope
    # run.py puts its --device in the config; the course's own calls build on the default device.
    return GPT(mconf).to(getattr(mconf, 'device', None) or device)


def initialize_vanilla_model(mconf):
    ### [part c]: Make some model here
    return model_of_kind(mconf)


def initialize_synthesizer_model(mconf):
    ### [part g]: Make some other model here
    return model_of_kind(mconf, synthesizer=True)


def initialize_perceiver_model(mconf, bottleneck_dim=32):
    ### the perceiver years' model: a bottleneck of bottleneck_dim slots
    mconf.bottleneck_dim = bottleneck_dim
    return model_of_kind(mconf, perceiver=True)


def initialize_rope_model(mconf):
    ### the rope years' model: rotary position embeddings
    return model_of_kind(mconf, rope=True)


def finetune(reading_params_path, finetune_corpus_path, pretrain_dataset, block_size, model, options=None):
    ### [part c] [part f]: load pretrained params if given, then finetune on the corpus
    ### with the course's settings (75 epochs without pretraining, 10 with).
    max_epochs = 75
    if reading_params_path is not None:
        # map_location cpu, as the handout asks; checked against the model and the vocabulary.
        checkpoint.load_into(model, reading_params_path, pretrain_dataset.itos)
        max_epochs = 10
    tconf = TrainerConfig(max_epochs=max_epochs, batch_size=256, learning_rate=6e-4,
                          lr_decay=True, warmup_tokens=512 * 20,
                          final_tokens=200 * len(pretrain_dataset) * block_size,
                          num_workers=4)
    with open(finetune_corpus_path, encoding='utf-8') as f:
        finetune_dataset = NameDataset(f.read(), pretrain_dataset)
    trainer_obj = Trainer(model, finetune_dataset, None, tconf, options)
    return tconf, trainer_obj


def pretrain(pretrain_dataset, block_size, model, options=None):
    ### [part f]: span-corruption pretraining with the course's settings.
    tconf = TrainerConfig(max_epochs=650, batch_size=128, learning_rate=6e-3,
                          lr_decay=True, warmup_tokens=512 * 20,
                          final_tokens=200 * len(pretrain_dataset) * block_size,
                          num_workers=4)
    trainer_obj = Trainer(model, pretrain_dataset, None, tconf, options)
    return tconf, trainer_obj


def train(model, writing_params_path, trainer_obj):
    ### [part c]: train, then save the model's state_dict (atomically, from rank 0).
    # The trainer keeps its resumable checkpoint and metrics log beside the params file.
    trainer_obj.train(writing_params_path)
    if distributed.is_main():
        try:
            checkpoint.save_params(model, writing_params_path, trainer_obj.train_dataset.itos)
        except files.WriteError as e:  # e.g. a full disk: the trained model goes to the checkpoint instead
            kept = trainer_obj.saver.keep_end(trainer_obj.state)
            raise files.UsageError(checkpoint.failed_write(e, files.checkpoint_path(writing_params_path), kept,
                                                           finished=kept == trainer_obj.state.step)) from None
        ckpt = files.checkpoint_path(writing_params_path)
        if os.path.exists(ckpt):
            os.unlink(ckpt)  # the run is complete; its params file is the result
    return
