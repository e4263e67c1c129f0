"""Thin helpers over torch.distributed for runs launched by ``torchrun``."""
import datetime
import os

import torch
import torch.distributed as dist

from utils.errors import UserError


def launched_by_torchrun():
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device_setting):
    """Join the process group torchrun prepared. Returns ``(rank, local_rank, world_size, device)``.

    NCCL on CUDA, Gloo on CPU. A finite timeout makes every rank fail instead of hanging forever
    when one of them dies.
    """
    if not launched_by_torchrun():
        raise UserError("distributed=True needs the torchrun launcher, e.g. "
                           "torchrun --nproc_per_node=2 train.py --distributed True")
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    # Any CUDA setting ("cuda", "cuda:1") means one GPU per rank: torchrun's LOCAL_RANK picks it.
    wants_cuda = device_setting in ("auto", "", None) or str(device_setting).startswith("cuda")
    use_cuda = wants_cuda and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    return rank, local_rank, world_size, device


def is_initialized():
    return dist.is_available() and dist.is_initialized()


def barrier():
    if is_initialized():
        dist.barrier()


def all_reduce_sum(tensor):
    """Sum a tensor over ranks in place (no-op when not distributed)."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_ranks_true(flag):
    """Whether a boolean tensor flag is True on every rank (the local flag when not distributed)."""
    flag = flag.reshape(1).to(torch.int32)
    if is_initialized():
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def broadcast_object(obj, src=0):
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def weights_checksum_agree(model):
    """True when every rank holds the same parameters (compares a float64 checksum per rank).

    Only parameters: DDP broadcasts BN buffers from rank 0 before each forward, so after the last
    step each rank's running statistics hold its own last batch (the saved files are rank 0's).
    """
    if not is_initialized():
        return True
    device = next(model.parameters()).device
    total = torch.zeros(1, dtype=torch.float64, device=device)
    for i, p in enumerate(model.parameters()):
        total += (p.detach().double() * (1 + (i % 7))).sum()
    gathered = [torch.zeros_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def cleanup():
    if is_initialized():
        dist.destroy_process_group()
