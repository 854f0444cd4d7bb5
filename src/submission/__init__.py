"""The course's submission package: `from submission import GPT, Trainer, ...` works from src/."""
from .attention import (CausalCrossAttention, CausalSelfAttention, SynthesizerAttention,
                        apply_rotary_emb, precompute_rotary_emb)
from .dataset import CharCorruptionDataset, NameDataset
from .helper import (finetune, initialize_perceiver_model, initialize_rope_model, initialize_synthesizer_model,
                     initialize_vanilla_model, pretrain, train)
from .model import GPT, DownProjectBlock, GPTConfig, UpProjectBlock
from .trainer import Trainer, TrainerConfig
from .utils import evaluate_places, sample

__all__ = ['GPT', 'GPTConfig', 'CharCorruptionDataset', 'NameDataset', 'TrainerConfig', 'Trainer',
           'evaluate_places', 'sample', 'initialize_vanilla_model', 'initialize_synthesizer_model',
           'finetune', 'pretrain', 'train', 'SynthesizerAttention', 'CausalSelfAttention',
           # later course years' variants
           'initialize_perceiver_model', 'initialize_rope_model', 'CausalCrossAttention', 'DownProjectBlock',
           'UpProjectBlock', 'precompute_rotary_emb', 'apply_rotary_emb']
