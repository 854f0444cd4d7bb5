"""Distributed: torch.distributed set-up for runs launched with torchrun.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here
is a single-process no-op. GPUs use NCCL, CPUs gloo. Only rank 0 writes files.
"""
import os

import torch
import torch.distributed as dist


def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def is_main():
    return rank() == 0


def launched_by_torchrun():
    return 'RANK' in os.environ and 'WORLD_SIZE' in os.environ


def launched_world_size():
    """How many processes torchrun launched (1 without it), known before the group is joined."""
    return int(os.environ['WORLD_SIZE']) if launched_by_torchrun() else 1


def local_rank():
    return int(os.environ.get('LOCAL_RANK', 0))


def setup(device):
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPUs); a no-op otherwise.

    The device is decided by options.py (under torchrun, cuda means this rank's
    own GPU, cuda:LOCAL_RANK); here it only picks the backend."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    if str(device).startswith('cuda'):
        torch.cuda.set_device(device)
        dist.init_process_group('nccl')
    else:
        dist.init_process_group('gloo')
    global _votes
    _votes = dist.new_group(backend='gloo')


_votes = None  # a CPU-side group for start_sum: its small sums never touch (or wait for) a GPU


def teardown():
    if dist.is_initialized():
        dist.destroy_process_group()


def start_sum(values):
    """Begin summing a few numbers over all ranks, in the background; returns a function
    that waits for the sums and returns them (as floats)."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if not dist.is_initialized():
        return t.tolist
    work = dist.all_reduce(t, group=_votes, async_op=True)

    def result():
        work.wait()
        return t.tolist()
    return result


def all_reduce(tensor):
    """Sum a tensor over all ranks, in place; NCCL queues it on the GPU, so no host waits."""
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def gather_objects(obj):
    """A list with every rank's obj, in rank order."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier():
    if dist.is_initialized():
        dist.barrier()
