"""Several processes (GPUs, nodes) through plain ``torch.distributed`` + DDP, launched by ``torchrun``.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them the trainer runs in one process.
The backend is NCCL when CUDA is available and gloo otherwise (the two-process CPU test uses gloo).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistState:
    """Where this process stands: its rank, the world size and its device."""

    rank: int
    local_rank: int
    world_size: int
    device: Any  # torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def init_distributed() -> DistState:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1), and pick the device."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", rank=rank, world_size=world)
        logger.info("process group: rank %d of %d (%s)", rank, world, dist.get_backend())
    return DistState(rank, local, world, device)


def shutdown_distributed() -> None:
    """Leave the process group, if joined."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(state: DistState) -> None:
    """Wait for every rank (no-op in one process)."""
    import torch.distributed as dist

    if state.distributed:
        dist.barrier()


def all_reduce_sum(state: DistState, values: list[float]) -> list[float]:
    """Sum a few numbers over the ranks (returns them unchanged in one process)."""
    if not state.distributed:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=state.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_rank(state: DistState, flag: bool) -> bool:
    """True when ``flag`` is true on at least one rank (so every rank takes the same branch)."""
    return all_reduce_sum(state, [1.0 if flag else 0.0])[0] > 0


def gather_lists(state: DistState, items: list[Any]) -> list[Any]:
    """Concatenate a Python list from every rank, in rank order (every rank gets the result)."""
    if not state.distributed:
        return list(items)
    import torch.distributed as dist

    out: list[list[Any]] = [[] for _ in range(state.world_size)]
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]
