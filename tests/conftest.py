"""Shared test set-up: offline Hub, throw-away caches, GPU marker."""

from __future__ import annotations

import os
import shutil
import tempfile

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
