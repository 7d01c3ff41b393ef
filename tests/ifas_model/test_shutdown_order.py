"""ifas-train releases the trainer (and DDP's hold on the process group) before leaving the process group."""

from __future__ import annotations

import weakref

import pytest


class _FakeTrainer:
    instances: list[weakref.ref] = []

    def __init__(self, config: object) -> None:
        _FakeTrainer.instances.append(weakref.ref(self))
        self.cycle = self  # a reference cycle, as a real trainer with DDP hooks has: only gc frees it

    def fit(self, stop_after: int | None = None) -> dict:
        if stop_after == -1:
            raise ValueError("bad setting")
        return {"steps": 0}


@pytest.mark.parametrize("stop_after", [None, -1])
def test_trainer_is_freed_before_the_process_group_is_destroyed(monkeypatch, tmp_path, stop_after):
    import types

    import click

    import ifas_model.cli as cli
    import ifas_model.training.distributed as distributed
    import ifas_model.training.trainer as trainer_module

    seen = []
    _FakeTrainer.instances.clear()
    monkeypatch.setattr(trainer_module, "Trainer", _FakeTrainer)
    monkeypatch.setattr(distributed, "shutdown_distributed",
                        lambda: seen.append([ref() is None for ref in _FakeTrainer.instances]))
    config = types.SimpleNamespace(output_dir=str(tmp_path / "run"), dist_timeout_min=120)
    if stop_after is None:
        assert cli.run(config, stop_after=stop_after) == {"steps": 0}
    else:
        with pytest.raises(click.ClickException, match="bad setting"):
            cli.run(config, stop_after=stop_after)
    assert seen == [[True]]
