"""What the project adds to the course's code, beside it: options, checks and files, the fast
path's batches and evaluation, checkpoints, progress and logs, torch.distributed, the synthetic
world, the demo and the report. The course's files (one level up) call into these."""
