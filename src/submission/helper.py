"""Helper: the course's model builders and training settings (parts c, f and g of the handout).

finetune() and pretrain() return (tconf, trainer) without training, as the
course grader expects; train() trains and writes the params file.
"""
import os
import random

import torch

from . import checkpoint, distributed
from .dataset import NameDataset, CharCorruptionDataset
from .model import GPT
from .trainer import Trainer, TrainerConfig

random.seed(0)
device = torch.cuda.current_device() if torch.cuda.is_available() else 'cpu'


def initialize_vanilla_model(mconf):
    attention_model = None
    ### [part c]: Make some model here
    mconf.synthesizer = False
    attention_model = GPT(mconf).to(device)
    return attention_model


def initialize_synthesizer_model(mconf):
    attention_model = None
    ### [part g]: Make some other model here
    mconf.synthesizer = True
    attention_model = GPT(mconf).to(device)
    return attention_model


def finetune(reading_params_path, finetune_corpus_path, pretrain_dataset, block_size, model):
    ### [part c] [part f]: load pretrained params if given, then finetune on the corpus
    ### with the course's settings (75 epochs without pretraining, 10 with).
    trainer_obj = None  # Trainer object (see trainer.py for more details)
    tconf = None  # TrainerConfig object (see trainer.py for more details)
    max_epochs = 75
    if reading_params_path is not None:
        state = checkpoint.load_params(reading_params_path)  # map_location cpu, as the handout asks
        checkpoint.check_params_fit(state, model, reading_params_path)
        model.load_state_dict(state)
        max_epochs = 10
    tconf = TrainerConfig(max_epochs=max_epochs, batch_size=256, learning_rate=6e-4,
                          lr_decay=True, warmup_tokens=512 * 20,
                          final_tokens=200 * len(pretrain_dataset) * block_size,
                          num_workers=4)
    with open(finetune_corpus_path, encoding='utf-8') as f:
        finetune_dataset = NameDataset(pretrain_dataset, f.read())
    trainer_obj = Trainer(model, finetune_dataset, None, tconf)
    return tconf, trainer_obj


def pretrain(pretrain_dataset, block_size, model):
    ### [part f]: span-corruption pretraining with the course's settings.
    trainer_obj = None  # Trainer object (see trainer.py for more details)
    tconf = None  # TrainerConfig object (see trainer.py for more details)
    tconf = TrainerConfig(max_epochs=650, batch_size=128, learning_rate=6e-3,
                          lr_decay=True, warmup_tokens=512 * 20,
                          final_tokens=200 * len(pretrain_dataset) * block_size,
                          num_workers=4)
    trainer_obj = Trainer(model, pretrain_dataset, None, tconf)
    return tconf, trainer_obj


def train(model, writing_params_path, trainer_obj):
    ### [part c]: train, then save the model's state_dict (atomically, from rank 0).
    trainer_obj.train()
    if distributed.is_main():
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        checkpoint.save_torch(state, writing_params_path)
        ckpt = trainer_obj.config.checkpoint_path
        if ckpt and os.path.exists(ckpt):
            os.unlink(ckpt)  # the run is complete; its params file is the result
    return
