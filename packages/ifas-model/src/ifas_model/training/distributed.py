"""Several processes (GPUs, nodes) through plain ``torch.distributed`` + DDP, launched by ``torchrun``.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them the trainer runs in one process.
The backend is NCCL when CUDA is available and gloo otherwise (the two-process CPU test uses gloo). Devices:
CUDA GPUs, else the CPU; Apple MPS is not used (a Mac trains on its CPU).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scf.locking import SHARED_PROBE_WAIT_S, not_shared_problem, wait_for_file

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MINUTES = 120
"""Process-group timeout of ``ifas-train`` (``--dist-timeout-min``): how long the other ranks wait at a barrier
while rank 0 alone writes a checkpoint or ``final/``. torch's NCCL default, 10 minutes, is shorter than writing
the ~32 GB checkpoint of the full OPT-2.7B recipe to a file system giving under ~55 MB/s, after which the
watchdog kills the run at every save. Two hours cover ~5 MB/s; a genuinely hung rank holds the GPUs that long
(a crashed one is noticed by torchrun at once). ``scf caption`` waits 24 hours, for its hours-long rank-0
stages."""


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


def init_distributed(timeout_minutes: float | None = None) -> DistState:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1), and pick the device.

    Args:
        timeout_minutes: how long a collective (a barrier while rank 0 writes) may wait before the run is
            aborted; None is `DEFAULT_TIMEOUT_MINUTES`. Ignored when the group already exists.
    """
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
        timeout = datetime.timedelta(minutes=timeout_minutes or DEFAULT_TIMEOUT_MINUTES)
        dist.init_process_group(backend="nccl" if cuda else "gloo", rank=rank, world_size=world, timeout=timeout)
        logger.info("process group: rank %d of %d (%s, timeout %s)", rank, world, dist.get_backend(), timeout)
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


def gather_lists(state: DistState, items: list[Any]) -> list[Any]:
    """Concatenate a Python list from every rank, in rank order (every rank gets the result)."""
    if not state.distributed:
        return list(items)
    import torch.distributed as dist

    out: list[list[Any]] = [[] for _ in range(state.world_size)]
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]


def broadcast_object(state: DistState, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (returned unchanged in one process)."""
    if not state.distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


SHARED_PROBE_PREFIX = ".ifas-train-shared-"
"""Name prefix of the short-lived file by which the ranks check that they see one run folder."""


@contextlib.contextmanager
def hold_run_folder(run_dir: str | Path, state: DistState, command: str = "ifas-train") -> Iterator[None]:
    """Hold the run folder for the whole run (`scf.locking.output_lock`, rank 0) and check every rank sees it.

    Rank 0 takes the lock, which also creates the folder and proves it writable; its outcome is broadcast, so
    when it is refused every rank raises the same one-line `FolderInUse` and exits (none waits at a barrier for
    a rank 0 that has left). With several processes rank 0 then writes a probe file with a fresh random name
    into the folder and each rank looks for it: a rank that does not find it has another folder under the same
    path (a node-local ``--output`` on a multi-node run), and every rank raises one line naming those ranks.

    Raises:
        scf.locking.FolderInUse: another run holds the folder, it cannot be created or written, or the ranks do
            not all see the same folder.
    """
    from scf.locking import FolderInUse, output_lock

    run_dir = Path(run_dir)
    with contextlib.ExitStack() as stack:
        problem, probe = None, None
        if state.is_main:
            try:
                stack.enter_context(output_lock(run_dir, command))
                if state.distributed:
                    probe = run_dir / f"{SHARED_PROBE_PREFIX}{uuid.uuid4().hex}"
                    probe.write_text(socket.gethostname(), encoding="utf-8")
                    stack.callback(probe.unlink, missing_ok=True)
            except FolderInUse as err:
                problem = str(err)
            except OSError as err:  # the probe: a folder that took the lock but cannot be written
                problem = f"{run_dir}: cannot write to this folder ({err.strerror or err})"
        problem, probe = broadcast_object(state, (problem, probe))
        if problem:
            raise FolderInUse(problem)
        if state.distributed:
            seen = wait_for_file(Path(probe), SHARED_PROBE_WAIT_S) if not state.is_main else True
            views = gather_lists(state, [(state.rank, socket.gethostname(), seen)])
            if state.is_main:  # every rank has looked
                Path(probe).unlink(missing_ok=True)
            problem = not_shared_problem(run_dir, views, SHARED_PROBE_WAIT_S, "a run on several nodes needs --output")
            if problem:
                raise FolderInUse(problem)
        yield
