"""A stand-in for `scf.ingest.worker.process` in the ingest pool test: importable by a spawned worker."""

from __future__ import annotations

import time


def slow_first(index: int) -> int:
    """Item 0 finishes last: it sleeps while the others return at once."""
    if index == 0:
        time.sleep(1.5)
    return index


def slow_first_timed(index: int) -> tuple[int, float]:
    """As `slow_first`, returning when the item finished."""
    slow_first(index)
    return index, time.time()
