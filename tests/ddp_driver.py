"""One small training run for the distributed tests: launched plainly or under torchrun.

    python ddp_driver.py OUT.params WIKI TRAIN_TSV exact|fast [STEPS [resume|interrupt_at=N]]

Finetuning (fixed examples) at batch 16, so the tests' world (50 questions)
takes 4 steps an epoch. Dropout is off and the seed fixed, so a run's result
depends only on the math, not on how the batch was split over processes. It
keeps a checkpoint and a metrics log beside OUT. With interrupt_at=N, rank 0
alone sends itself SIGTERM once N steps are done, as a scheduler killing one
process would.
"""
import os
import random
import signal
import sys
import threading
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'src'))
from submission.lib import distributed  # noqa: E402
from submission import CharCorruptionDataset, GPT, GPTConfig, NameDataset, Trainer, TrainerConfig, train  # noqa: E402
from submission.lib.options import Options  # noqa: E402
from submission.trainer import Interrupted  # noqa: E402

out, wiki, tsv, mode = sys.argv[1:5]
steps = int(sys.argv[5]) if len(sys.argv) > 5 else 2
resume = len(sys.argv) > 6 and sys.argv[6] == 'resume'
interrupt_at = int(sys.argv[6].split('=')[1]) if len(sys.argv) > 6 and sys.argv[6].startswith('interrupt_at=') else None
torch.set_num_threads(1)
random.seed(0)
torch.manual_seed(0)
pre = CharCorruptionDataset(open(wiki, encoding='utf-8').read(), 128)
names = NameDataset(open(tsv, encoding='utf-8').read(), pre)
conf = GPTConfig(pre.vocab_size, 128, n_layer=2, n_head=4, n_embd=64, exact=mode == 'exact',
                 embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
model = GPT(conf)
tc = TrainerConfig(max_epochs=3, batch_size=16, learning_rate=1e-3, lr_decay=True, warmup_tokens=1,
                   final_tokens=10**6)
options = Options(exact=mode == 'exact', device='cpu', precision='fp32', seed=0, max_steps=steps,
                  progress=False, checkpoint_every=1e9, resume=resume)
trainer = Trainer(model, names, None, tc, options)
if interrupt_at and os.environ.get('RANK', '0') == '0':
    def watch():
        while trainer.state is None or trainer.state.step < interrupt_at:
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, daemon=True).start()
try:
    train(model, out, trainer)
except Interrupted as e:
    print(e, file=sys.stderr)
    sys.exit(e.code)
distributed.barrier()
distributed.teardown()
