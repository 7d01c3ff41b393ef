"""Ordered prefetching: run each job's tasks in a thread pool, a few jobs ahead of the consumer."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any


def prefetched(jobs: Sequence[Any], tasks: Callable[[Any], list[Callable[[], Any]]], threads: int,
               ahead: int = 2) -> Iterator[list[Any]]:
    """For each job in order, the results of ``tasks(job)`` (a list of no-argument callables), in order.

    With ``threads`` > 0 a pool of that many threads runs the tasks of the current job and of the next
    ``ahead`` jobs while the caller works on what it was given (image decoding and resizing release the GIL,
    so this keeps a GPU fed); with 0 each job's tasks run in the caller when it asks for the job. A task's
    exception is raised when its job is reached.
    """
    if threads <= 0:
        for job in jobs:
            yield [task() for task in tasks(job)]
        return
    import concurrent.futures
    from collections import deque

    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        pending = deque([pool.submit(t) for t in tasks(job)] for job in jobs[: ahead + 1])
        for i in range(len(jobs)):
            if i + ahead + 1 < len(jobs):
                pending.append([pool.submit(t) for t in tasks(jobs[i + ahead + 1])])
            # No name keeps this job's futures: once handed out, its results belong to the caller alone and are
            # freed when the caller drops them, not held here until the next job is asked for.
            yield [f.result() for f in pending.popleft()]
