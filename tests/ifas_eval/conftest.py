"""Shared fixtures of the ifas-eval tests: a tiny random I-FAS checkpoint saved to disk (built once)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    from ifas_model.presets import build_model

    model, processor = build_model("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "tiny" / "final"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
