"""scf.prefetch.prefetched: results in job order, tasks ahead of the consumer, errors at their job."""

from __future__ import annotations

import threading
import time

import pytest


def test_results_come_in_order_and_run_ahead_of_the_consumer():
    from scf.prefetch import prefetched

    started: list[int] = []
    lock = threading.Lock()

    def task(job: int, part: int):
        def run():
            with lock:
                started.append(job)
            time.sleep(0.01 * ((job + part) % 3))  # finish out of order
            return (job, part)
        return run

    jobs = list(range(6))
    got = []
    for i, parts in enumerate(prefetched(jobs, lambda j: [task(j, p) for p in range(3)], threads=4, ahead=2)):
        got.append(parts)
        if i == 0:
            time.sleep(0.1)
            with lock:
                assert set(started) >= {0, 1, 2}  # the next two jobs were started while job 0 was consumed
    assert got == [[(j, p) for p in range(3)] for j in jobs]
    assert list(prefetched(jobs, lambda j: [task(j, 0)], threads=0)) == [[(j, 0)] for j in jobs]


def test_a_failing_task_raises_when_its_job_is_reached():
    from scf.prefetch import prefetched

    def tasks(job: int):
        def run():
            if job == 2:
                raise ValueError("job 2 failed")
            return job
        return [run]

    seen = []
    with pytest.raises(ValueError, match="job 2 failed"):
        for parts in prefetched(list(range(5)), tasks, threads=2):
            seen += parts
    assert seen == [0, 1]


def test_a_job_handed_out_is_not_kept_alive_by_the_prefetcher():
    """review (ifas-eval H2 follow-up): the generator held the futures of the job it had handed out until the
    next job was asked for, so a caller that dropped a batch (hundreds of MB of pixels) still had it in memory."""
    import gc
    import weakref

    from scf.prefetch import prefetched

    class Batch:
        pass

    refs = []

    def make():
        b = Batch()
        refs.append(weakref.ref(b))
        return b

    gen = prefetched(list(range(4)), lambda job: [make], threads=2, ahead=1)
    first = next(gen)
    del first
    gc.collect()
    assert refs[0]() is None  # freed while the generator is suspended
    assert len(list(gen)) == 3
