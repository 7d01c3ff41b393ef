"""Shared test set-up: offline Hub, throw-away caches, GPU marker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The Hub is unreachable on these machines: fail immediately instead of retrying for ~23 s (HF_HUB_OFFLINE=1).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Caches go to throw-away folders removed at the end of the session, never the user's ~/.cache: ifas-eval's
# per-user file-hash cache, and the datasets cache (every load_table of a test folder adds an entry there).
_OWN_CACHES = []
for _var, _prefix in (("IFAS_EVAL_CACHE", "ifas-eval-cache-"), ("HF_DATASETS_CACHE", "hf-datasets-cache-")):
    if _var not in os.environ:
        os.environ[_var] = tempfile.mkdtemp(prefix=_prefix)
        _OWN_CACHES.append(os.environ[_var])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for folder in _OWN_CACHES:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def hold_folder() -> Iterator[Callable[[str | Path, str], subprocess.Popen]]:
    """``hold(folder, command)``: a separate process holding ``folder`` with `scf.locking.output_lock`, as a
    running ``command`` does; returned once the lock is taken. Kill it (``.kill(); .wait()``) to release the
    folder as a crash would; any holder still alive is killed at teardown."""
    holders: list[subprocess.Popen] = []

    def hold(folder: str | Path, command: str) -> subprocess.Popen:
        code = ("import sys, time\nfrom scf.locking import output_lock\n"
                "with output_lock(sys.argv[1], sys.argv[2]):\n    print('held', flush=True)\n    time.sleep(600)\n")
        proc = subprocess.Popen([sys.executable, "-c", code, str(folder), command], stdout=subprocess.PIPE,
                                text=True)
        holders.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in holders:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any("gpu" in item.keywords for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is available on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
