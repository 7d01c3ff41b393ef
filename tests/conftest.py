"""Shared test set-up: offline Hub, CPU threads, GPU marker."""

from __future__ import annotations

import os
import tempfile

import pytest

# The Hub is unreachable on these machines: fail immediately instead of retrying for ~23 s (HF_HUB_OFFLINE=1).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# ifas-eval's per-user file-hash cache: one throw-away folder per test session, never the user's ~/.cache
os.environ.setdefault("IFAS_EVAL_CACHE", tempfile.mkdtemp(prefix="ifas-eval-cache-"))


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
