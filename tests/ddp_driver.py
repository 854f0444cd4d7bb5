"""One small training run for the distributed tests: launched plainly or under torchrun.

    python ddp_driver.py OUT.params WIKI TRAIN_TSV [exact|fast]

Dropout is off and the seed fixed, so a run's result depends only on the math,
not on how the batch was split over processes.
"""
import random
import sys

import torch

sys.path.insert(0, __file__.rsplit('/tests/', 1)[0] + '/src')
from submission import distributed  # noqa: E402
from submission import CharCorruptionDataset, GPT, GPTConfig, NameDataset, Trainer, TrainerConfig, train  # noqa: E402

out, wiki, tsv, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
torch.set_num_threads(1)
random.seed(0)
torch.manual_seed(0)
pre = CharCorruptionDataset(open(wiki, encoding='utf-8').read(), 128)
names = NameDataset(pre, open(tsv, encoding='utf-8').read())
conf = GPTConfig(pre.vocab_size, 128, n_layer=2, n_head=4, n_embd=64, fast=mode == 'fast',
                 embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
model = GPT(conf)
tc = TrainerConfig(max_epochs=1, batch_size=128, learning_rate=1e-2, lr_decay=True, warmup_tokens=1,
                   final_tokens=10**6, exact=mode == 'exact', seed=0, max_steps=2, progress=False)
train(model, out, Trainer(model, names, None, tc))
distributed.barrier()
distributed.teardown()
