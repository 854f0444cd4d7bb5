"""The course's submission package: `from submission import GPT, Trainer, ...` works from src/."""
from .attention import CausalSelfAttention, SynthesizerAttention
from .dataset import CharCorruptionDataset, NameDataset
from .helper import (finetune, initialize_synthesizer_model, initialize_vanilla_model,
                     pretrain, train)
from .model import GPT, GPTConfig
from .trainer import Trainer, TrainerConfig
from .utils import evaluate_places, sample

__all__ = ['GPT', 'GPTConfig', 'CharCorruptionDataset', 'NameDataset', 'TrainerConfig', 'Trainer',
           'evaluate_places', 'sample', 'initialize_vanilla_model', 'initialize_synthesizer_model',
           'finetune', 'pretrain', 'train', 'SynthesizerAttention', 'CausalSelfAttention']
