"""Multi-process meta-training with ``torch.distributed`` (launched by ``torchrun``).

Every rank draws the same meta-batch (the samplers are seeded identically), runs
its contiguous share of the tasks, and the meta-gradients are all-reduced after
the outer backward. The loss of each rank is its tasks' summed loss divided by
the *whole* meta-batch size, so the all-reduced (summed) gradient equals the
single-process gradient of the mean loss. This works with the double backward
of second-order MAML, which the DistributedDataParallel wrapper does not
support. Only rank 0 writes checkpoints, metrics and results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "init_distributed", "shard_bounds"]


def shard_bounds(num_tasks: int, world_size: int, rank: int) -> tuple[int, int]:
    """``[start, stop)`` of ``rank``'s contiguous share of ``num_tasks`` tasks."""
    base, extra = divmod(num_tasks, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@dataclass
class DistributedContext:
    """Rank information; a single process is ``world_size == 1``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, num_tasks: int) -> slice:
        start, stop = shard_bounds(num_tasks, self.world_size, self.rank)
        return slice(start, stop)

    def all_reduce_gradients(self, parameters, stop: bool = False) -> bool:
        """Sum gradients over ranks (flattened into one buffer: one collective).

        ``stop`` (this rank saw Ctrl-C/SIGTERM) rides along in the same buffer, so all
        ranks learn in the same iteration whether any of them was asked to stop (a
        rank stopping alone would leave the others waiting in the next collective).

        Returns:
            whether any rank asked to stop (``stop`` itself with one process).
        """
        if not self.enabled:
            return stop
        params = [p for p in parameters if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flag = torch.ones(1, dtype=grads[0].dtype, device=grads[0].device) * float(stop)
        flat = torch.cat([g.reshape(-1) for g in grads] + [flag])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n
        return bool(flat[-1].item() > 0)

    def all_gather_cat(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate a 1-d tensor of possibly different lengths across ranks, in rank order."""
        if not self.enabled:
            return tensor
        length = torch.tensor([tensor.numel()], device=tensor.device)
        lengths = [torch.zeros_like(length) for _ in range(self.world_size)]
        dist.all_gather(lengths, length)
        longest = int(max(int(x) for x in lengths))
        padded = torch.zeros(longest, dtype=tensor.dtype, device=tensor.device)
        padded[: tensor.numel()] = tensor.reshape(-1)
        gathered = [torch.zeros_like(padded) for _ in range(self.world_size)]
        dist.all_gather(gathered, padded)
        return torch.cat([g[: int(n)] for g, n in zip(gathered, lengths)])

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shutdown(self) -> None:
        """Wait for every rank, then destroy the process group."""
        if self.enabled and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def broadcast_object(self, obj):
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def init_distributed(device_name: str) -> DistributedContext:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``).

    Uses NCCL when the run is on CUDA (each rank on ``cuda:LOCAL_RANK``) and gloo
    on CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    on_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if on_cuda else "gloo")
    if on_cuda:
        torch.cuda.set_device(local_rank)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)
