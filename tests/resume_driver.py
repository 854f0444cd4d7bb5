"""A small real run for the resume tests: 2 epochs of span corruption through helper.train.

    python resume_driver.py OUT.params WIKI fresh|resume

Exact mode, CPU, one thread, fixed seed: block size 64, batch 16, so a corpus
of 601 lines (the tests' world) takes 38 steps an epoch. It keeps a
checkpoint and a metrics log beside OUT, as run.py's training does.
"""
import os
import random
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'src'))
from submission import CharCorruptionDataset, GPT, GPTConfig, Trainer, TrainerConfig, train  # noqa: E402
from submission.lib.files import UsageError  # noqa: E402
from submission.lib.options import Options  # noqa: E402
from submission.trainer import Interrupted  # noqa: E402

out, wiki, mode = sys.argv[1:4]
torch.set_num_threads(1)
random.seed(0)
torch.manual_seed(0)
with open(wiki, encoding='utf-8') as f:
    ds = CharCorruptionDataset(f.read(), 64)
model = GPT(GPTConfig(ds.vocab_size, 64, n_layer=2, n_head=2, n_embd=32))
tconf = TrainerConfig(max_epochs=2, batch_size=16, learning_rate=3e-3, lr_decay=True, warmup_tokens=2000,
                      final_tokens=200000)
options = Options(exact=True, device='cpu', seed=0, checkpoint_every=1e9, resume=mode == 'resume')
try:
    train(model, out, Trainer(model, ds, None, tconf, options))
except UsageError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
except Interrupted as e:
    print(e, file=sys.stderr)
    sys.exit(e.code)
